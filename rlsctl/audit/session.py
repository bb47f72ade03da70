"""Read the audit log's chain from a database, in one snapshot, and walk it (rlsctl.audit.chain)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from typing import Any

import psycopg
from psycopg import IsolationLevel

from rlsctl.audit import order
from rlsctl.audit.chain import (
    NOTHING_ADDED,
    Break,
    Verdict,
    anchors_from,
    covered,
    head_digest,
    head_document,
    rows_in_batches,
    walk,
)
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
    """Walk the lanes and the one order in one snapshot (rlsctl.audit.chain, rlsctl.audit.order)."""
    state = chained_state(conn, project)
    try:
        return _verify(conn, project, state, expected)
    except psycopg.errors.UndefinedFunction as exc:
        # A database applied by an older rlsctl (before the order): apply creates what is missing.
        raise UsageError(
            f"{exc.diag.message_primary}: this database lacks rlsctl's audit functions of this version; run "
            "rlsctl apply (rlsctl drift names what differs)"
        ) from None


def _verify(
    conn: psycopg.Connection, project: Project, state: DeclaredState, expected: dict[str, Any] | None
) -> tuple[Verdict, DeclaredState]:
    log = state.audit.log.table  # type: ignore[union-attr]
    with _snapshot(conn, state.audit):  # type: ignore[arg-type]
        found = conn.execute(_sql(state, "ops/audit_anchors.sql.j2", project), {"log": log})
        row = found.fetchone()
        assert row is not None
        anchors = anchors_from(row[0])
        listed, checkpoints = covered(anchors)
        with conn.cursor(name="rlsctl_audit_rows") as cursor, conn.cursor(name="rlsctl_audit_order") as by_seq:
            by_seq.execute(_sql(state, "ops/audit_order.sql.j2", project, by_seq=True), {"log": log})
            sealed = order.Entries(order.entries(rows_in_batches(by_seq)), listed, checkpoints)
            cursor.execute(_sql(state, "ops/audit_rows.sql.j2", project))
            verdict = walk(log, _tapped(rows_in_batches(cursor), sealed), anchors, expected)
            sealed.finish()
        with conn.cursor(name="rlsctl_audit_order_links") as by_pos:
            by_pos.execute(_sql(state, "ops/audit_order.sql.j2", project, by_seq=False), {"log": log})
            wanted = _expected_order(expected)
            linked = order.links(order.entries(rows_in_batches(by_pos)), wanted[0] if wanted else None)
    removed = sum(checkpoint.removed for checkpoint in anchors.checkpoints.values()) + len(anchors.trimmed)
    return _with_order(verdict, sealed, linked, wanted, removed, expected), state


def _tapped(rows: Iterator[tuple[Any, ...]], sealed: order.Entries) -> Iterator[tuple[Any, ...]]:
    """The rows on their way to the lane walk, each met with its place in the order."""
    for row in rows:
        row_id, seq, lane, _prev, digest, _content = row
        if seq is not None and lane is not None and digest is not None:
            sealed.check_row(int(seq), int(lane), bytes(digest), row_id)
        yield row


def _expected_order(expected: dict[str, Any] | None) -> tuple[int, str] | None:
    found = (expected or {}).get("order")
    return (int(found[0]), str(found[1])) if isinstance(found, list) and len(found) == 2 else None


def _with_order(
    verdict: Verdict,
    sealed: order.Entries,
    linked: order.Links,
    wanted: tuple[int, str] | None,
    removed: int,
    expected: dict[str, Any] | None,
) -> Verdict:
    found = [*sealed.breaks, *linked.breaks]
    breaks = [Break(b.kind, b.detail, b.seq, b.lane) for b in sorted(found, key=lambda b: (b.pos or 0, b.seq or 0))]
    if linked.start > removed:
        # The seal folds only positions whose rows retention removed: a start past them was not its.
        detail = (f"the order starts after position {linked.start}, but retention removed only {removed} rows: "
                  "positions were folded away that retention did not remove")  # fmt: skip
        breaks.append(Break("order-start", detail))
    notes = [note for note in verdict.notes if note != NOTHING_ADDED]
    if expected is not None and not breaks and expected.get("head") == head_digest(
        verdict.log, verdict.heads, linked.head
    ):
        notes.append(NOTHING_ADDED)
    if wanted is not None:
        pos, digest = wanted
        if pos <= linked.start:
            notes.append(f"the exported head's order position {pos} was trimmed by retention: nothing to compare")
        elif linked.wanted is None:
            breaks.append(Break("gone", f"position {pos} of the order, where the exported head ends, is gone"))
        elif linked.wanted.hex() != digest:
            breaks.append(Break("rewritten", f"position {pos} of the order has hash {linked.wanted.hex()[:16]}…, "
                                f"the exported head says {digest[:16]}…: the order was rewritten"))  # fmt: skip
    return replace(
        verdict, breaks=verdict.breaks + tuple(breaks), notes=tuple(notes), order=linked.head,
        sealed=sealed.sealed, pending=sealed.pending,
    )  # fmt: skip


def seal(conn: psycopg.Connection, project: Project) -> int:
    """Seal every committed row into the one order (audit_seal(), as the owner role); how many."""
    state = chained_state(conn, project)
    spec = state.audit
    assert spec is not None and spec.log is not None
    with conn.transaction():
        _, superuser, _ = db.current_identity(conn)
        if not superuser:
            try:
                with conn.transaction():
                    statements.run(conn, "set_role", role=spec.sealer)
            except psycopg.errors.InsufficientPrivilege:
                raise UsageError(
                    f"rlsctl audit seal runs as the owner role {spec.sealer}: connect as a superuser or a login "
                    "in that role"
                ) from None
        row = conn.execute(_sql(state, "ops/audit_seal.sql.j2", project), {"log": spec.log.table}).fetchone()
        statements.run(conn, "reset_role")
    assert row is not None
    return int(row[0])


def export_head(conn: psycopg.Connection, project: Project, where: str) -> tuple[Verdict, dict[str, Any]]:
    """The head of a chain that verifies, sealed first when the login may (so that the order's head
    covers every committed row); a broken chain has no head worth keeping."""
    with suppress(UsageError):  # a reader: the head covers the order as the last seal left it
        seal(conn, project)
    verdict, _ = verify(conn, project)
    exported_at = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return verdict, head_document(verdict, where, exported_at)


def _sql(state: DeclaredState, name: str, project: Project, **extra: Any) -> bytes:
    text = render_template(name, project.root / "templates", state=state, helper_schema=state.helper_schema, **extra)
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
            become_reader(conn, spec)
            yield
    finally:
        conn.rollback()
        conn.isolation_level, conn.read_only, conn.autocommit = previous


def become_reader(conn: psycopg.Connection, spec: AuditSpec) -> None:
    """In the current transaction, act as a role that sees every row of the log: the login itself
    when it bypasses RLS, else the first of project.audit.readers it may SET ROLE to (UsageError:
    none). Shared with the compliance report, which reads the log the same way."""
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
