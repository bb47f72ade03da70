"""Shared by the apply benchmark and the tests: a generated project of N tenant tables, and a
connection that counts the queries and round trips rlsctl sends."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg


class CountingCursor(psycopg.Cursor):
    """Counts every statement; one outside a pipeline is one round trip."""

    def execute(self, *args: Any, **kwargs: Any) -> CountingCursor:  # type: ignore[override]
        connection = self.connection
        if isinstance(connection, CountingConnection):
            connection.queries += 1
            if not connection.in_pipeline:
                connection.round_trips += 1
        return super().execute(*args, **kwargs)  # type: ignore[return-value]


class CountingConnection(psycopg.Connection):
    """A pipeline (many statements, one round trip) counts once."""

    queries = 0
    round_trips = 0
    in_pipeline = False

    @contextmanager
    def pipeline(self) -> Iterator[psycopg.Pipeline]:  # type: ignore[override]
        outer = self.in_pipeline
        if not outer:
            self.round_trips += 1
        self.in_pipeline = True
        try:
            with super().pipeline() as pipeline:
                yield pipeline
        finally:
            self.in_pipeline = outer

    def reset_counts(self) -> None:
        self.queries = self.round_trips = 0

    @property
    def counts(self) -> tuple[int, int]:
        return self.queries, self.round_trips


def counting_connection(dsn: str) -> CountingConnection:
    return CountingConnection.connect(dsn, autocommit=True, cursor_factory=CountingCursor)


def scale_project(tables: int, parent: Path | None = None) -> Path:
    """A project (in `parent`, else a new temporary directory): three tenancy tables and
    `tables` tenant tables, each with three app policies (select, insert, update)."""
    root = Path(tempfile.mkdtemp(prefix=f"rlsctl-scale-{tables}-", dir=parent))
    (root / "policies").mkdir()
    (root / "migrations" / "0_scale").mkdir(parents=True)
    ddl = [
        "CREATE TABLE account (id text PRIMARY KEY);",
        "CREATE TABLE tenant (id text PRIMARY KEY, owner_id text NOT NULL REFERENCES account(id));",
        "CREATE INDEX ON tenant(owner_id);",
        "CREATE TABLE member (id text PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenant(id), "
        "account_id text NOT NULL REFERENCES account(id), level text NOT NULL);",
        "CREATE INDEX ON member(tenant_id); CREATE INDEX ON member(account_id);",
    ]
    policies = [
        "project: {name: scale, role_prefix: scale_}",
        "roles: {owner: {kind: owner}, app: {kind: app}, definer: {kind: definer}}",
        "tenancy:",
        "  tenants: {table: tenant, key: id, owner: owner_id}",
        "  membership: {table: member, tenant: tenant_id, user: account_id, rank: level}",
        "  ranks: [reader, writer]",
        "tables:",
        "  account: {policies: {app: {select: {self: id}}}}",
        "  tenant: {tenant: id, policies: {app: {select: {tenant_role: reader}}}}",
        "  member: {tenant: tenant_id, policies: {app: {select: {tenant_role: reader}}}}",
    ]
    for n in range(tables):
        ddl.append(
            f"CREATE TABLE t{n} (id text PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenant(id), body text);"
        )
        ddl.append(f"CREATE INDEX ON t{n}(tenant_id);")
        policies.append(
            f"  t{n}: {{tenant: tenant_id, policies: {{app: {{select: {{tenant_role: reader}}, "
            "insert: {tenant_role: writer}, update: {tenant_role: writer}}}}"
        )
    (root / "migrations" / "0_scale" / "01_scale.up.sql").write_text("\n".join(ddl) + "\n")
    (root / "migrations" / "0_scale" / "01_scale.down.sql").write_text("SELECT 1;\n")
    (root / "policies" / "scale.yaml").write_text("\n".join(policies) + "\n")
    return root
