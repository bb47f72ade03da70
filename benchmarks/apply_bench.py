"""Benchmark apply, in-process (interpreter start excluded), against a baseline from the same run.

    python benchmarks/apply_bench.py [--server DSN] [--rounds N]

1. PromptCraft at phase 4: a full apply on a freshly migrated database vs
   executing the same statements through one psycopg connection (target:
   within 1.5x), and a no-op apply (target: under 0.3 s).
2. Scale: a generated project with 10 and with 1,000 tenant tables (3,000
   policies): the number of queries a no-op plan sends must not grow with the
   number of tables, and its time is printed beside it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rlsctl import apply as applying  # noqa: E402
from rlsctl import migrate as migrating  # noqa: E402
from rlsctl.db import Target  # noqa: E402
from rlsctl.diffing import read_plan  # noqa: E402
from rlsctl.project import Project, load_project  # noqa: E402

QUERIES = 0


class CountingCursor(psycopg.Cursor):
    def execute(self, *args, **kwargs):  # type: ignore[override]
        global QUERIES
        QUERIES += 1
        return super().execute(*args, **kwargs)


class Server:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.created: list[str] = []
        self.prefixes: list[str] = []

    def database(self) -> tuple[str, str]:
        name = f"rlsctl_bench_{secrets.token_hex(4)}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return name, conninfo.make_conninfo(self.dsn, dbname=name)

    def prefix(self) -> str:
        prefix = f"bench{secrets.token_hex(3)}_"
        self.prefixes.append(prefix)
        return prefix

    def cleanup(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for name in self.created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for prefix in self.prefixes:
                for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (prefix,)):
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def connect(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=True, cursor_factory=CountingCursor)


def migrated(server: Server, project: Project) -> str:
    _, dsn = server.database()
    with connect(dsn) as conn:
        migrating.migrate(conn, project, Target(dsn, "bench"))
    return dsn


def promptcraft(server: Server, rounds: int) -> None:
    full, raw, noop = [], [], []
    for _ in range(rounds):
        project = load_project(ROOT, role_prefix=server.prefix())
        applied_dsn = migrated(server, project)
        with connect(applied_dsn) as conn:
            started = time.perf_counter()
            report = applying.apply(conn, project, "bench")
            full.append(time.perf_counter() - started)
            for _ in range(5):
                started = time.perf_counter()
                again = applying.apply(conn, project, "bench")
                noop.append(time.perf_counter() - started)
                assert again.plan.empty, "a second apply must run nothing"
        # Baseline: the very same statements, executed raw on an identically migrated database.
        raw_project = load_project(ROOT, role_prefix=server.prefix())
        raw_dsn = migrated(server, raw_project)
        statements = [s.sql.replace(project.role_prefix, raw_project.role_prefix) for s in report.plan.statements]
        with connect(raw_dsn) as conn:
            started = time.perf_counter()
            with conn.transaction():
                for statement in statements:
                    conn.execute(statement.encode())
            raw.append(time.perf_counter() - started)
    cold = full[0]  # the first apply of the process also compiles the templates
    full_s, raw_s, noop_s = statistics.median(full[1:] or full), statistics.median(raw), statistics.median(noop)
    print(f"PromptCraft, phase 4 ({rounds} rounds; warm = median after the first)")
    print(f"  full apply, cold    {cold * 1000:8.1f} ms  ({len(report.plan.statements)} statements)")
    print(f"  full apply, warm    {full_s * 1000:8.1f} ms")
    print(f"  raw execution       {raw_s * 1000:8.1f} ms  (same statements, one at a time, one psycopg connection)")
    print(f"  ratio warm / raw    {full_s / raw_s:8.2f} x  (target <= 1.5)")
    print(f"  ratio cold / raw    {cold / raw_s:8.2f} x")
    print(f"  no-op apply         {noop_s * 1000:8.1f} ms  (target < 300 ms)")


def scale_project(tables: int) -> Path:
    root = Path(tempfile.mkdtemp(prefix=f"rlsctl-bench-{tables}-"))
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


def scale(server: Server) -> None:
    global QUERIES
    print("No-op plan as tables grow")
    for tables in (10, 1000):
        project = load_project(scale_project(tables), role_prefix=server.prefix())
        dsn = migrated(server, project)
        with connect(dsn) as conn:
            applying.apply(conn, project, "bench", lock_timeout=60)
            QUERIES = 0
            started = time.perf_counter()
            plan = read_plan(conn, project, "bench", None)
            elapsed = time.perf_counter() - started
            assert plan.empty
        policies = sum(len(t.policies) for t in plan.state.tables)
        print(f"  {tables:5d} tables, {policies:5d} policies: {QUERIES:3d} queries, {elapsed * 1000:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--server", default=os.environ.get("RLSCTL_TEST_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    server = Server(args.server)
    try:
        promptcraft(server, args.rounds)
        scale(server)
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
