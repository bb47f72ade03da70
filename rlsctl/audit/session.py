"""Read the audit log's chain from a database, in one snapshot, and walk it (rlsctl.audit.chain)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import IsolationLevel

from rlsctl.audit.chain import Verdict, anchors_from, head_document, rows_in_batches, walk
from rlsctl.change.apply import live_schema
from rlsctl.declare.audit_spec import AuditSpec
from rlsctl.declare.compile import declare
from rlsctl.declare.state import DeclaredState
from rlsctl.errors import UsageError
from rlsctl.pg import db, statements
from rlsctl.pg.templates import render_template
from rlsctl.policy.project import Project


def chained_state(conn: psycopg.Connection, project: Project) -> DeclaredState:
    """The declared state for the live schema; refuses a project or database without a chain."""
    state = declare(project, live_schema(conn, project, None))
    spec = state.audit
    if spec is None:
        raise UsageError("the project declares no audit log (project.audit in the policy files, docs/audit.md)")
    if spec.log is None or spec.chain is None or not spec.chained:
        raise UsageError(
            "the audit log has no hash chain in this database (project.audit.chain, and the migration that adds "
            "its columns: docs/audit.md); run rlsctl migrate and apply first"
        )
    return state


def verify(
    conn: psycopg.Connection, project: Project, expected: dict[str, Any] | None = None
) -> tuple[Verdict, DeclaredState]:
    state = chained_state(conn, project)
    with _snapshot(conn, state.audit):  # type: ignore[arg-type]
        found = conn.execute(_sql(state, "ops/audit_anchors.sql.j2", project), {"log": state.audit.log.table})  # type: ignore[union-attr]
        row = found.fetchone()
        assert row is not None
        anchors = anchors_from(row[0])
        with conn.cursor(name="rlsctl_audit_rows") as cursor:
            cursor.execute(_sql(state, "ops/audit_rows.sql.j2", project))
            verdict = walk(state.audit.log.table, rows_in_batches(cursor), anchors, expected)  # type: ignore[union-attr]
    return verdict, state


def export_head(conn: psycopg.Connection, project: Project, where: str) -> tuple[Verdict, dict[str, Any]]:
    """The head of a chain that verifies; a broken chain has no head worth keeping."""
    verdict, _ = verify(conn, project)
    exported_at = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return verdict, head_document(verdict, where, exported_at)


def _sql(state: DeclaredState, name: str, project: Project) -> bytes:
    text = render_template(name, project.root / "templates", state=state, helper_schema=state.helper_schema)
    return text.encode()


@contextmanager
def _snapshot(conn: psycopg.Connection, spec: AuditSpec) -> Iterator[None]:
    """One read-only REPEATABLE READ transaction: the rows and the lanes' heads as one moment
    saw them (an insert moves both in its own transaction). Read as a role that sees every
    row and may read the anchors, unless the login bypasses RLS."""
    previous = (conn.isolation_level, conn.read_only, conn.autocommit)
    conn.autocommit = False
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    try:
        with conn.transaction():
            _become_reader(conn, spec)
            yield
    finally:
        conn.rollback()
        conn.isolation_level, conn.read_only, conn.autocommit = previous


def _become_reader(conn: psycopg.Connection, spec: AuditSpec) -> None:
    _, superuser, bypassrls = db.current_identity(conn)
    if superuser or bypassrls:
        return
    for role in spec.readers:
        try:
            with conn.transaction():  # a savepoint: a role this login is not in is refused
                statements.run(conn, "set_role", role=role)
        except psycopg.errors.InsufficientPrivilege:
            continue
        return
    raise UsageError(
        f"rlsctl audit reads every row of {spec.log.table if spec.log else 'the log'}: connect as a superuser or a "
        f"login in one of the roles {', '.join(spec.readers)} (project.audit.readers)"
    )
