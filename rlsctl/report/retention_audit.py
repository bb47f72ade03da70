"""Section 5, retention and audit: retention's rules, holds, runs and pg_cron jobs (`rlsctl retention
status`), the audit triggers as declared against the catalog, `rlsctl audit verify` with its head,
and the latest of rlsctl's own operations the audit log records."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from rlsctl import audit
from rlsctl.catalog import queries as catalog
from rlsctl.declare.audit import audit_objects
from rlsctl.declare.audit_spec import AuditSpec
from rlsctl.declare.state import DeclaredState
from rlsctl.pg import statements
from rlsctl.policy.project import Project
from rlsctl.report import queries
from rlsctl.report.model import (
    AuditTrigger,
    ChainCheck,
    CronJob,
    Hold,
    Operation,
    RetentionRule,
    RetentionRunRow,
    Schedule,
    utc_text,
)
from rlsctl.retention import Retention, status
from rlsctl.retention.schedule import job_name
from rlsctl.state.objects import AUDIT_TRIGGERS, Trigger

SHOWN_RUNS = 20  # the latest runs, all tables together
_, APPEND_ONLY, NO_TRUNCATE, CHAIN = AUDIT_TRIGGERS
PURPOSE = {
    APPEND_ONLY: "append-only: refuses updates, and deletes but retention's of expired rows",
    NO_TRUNCATE: "refuses TRUNCATE",
    CHAIN: "links each new row into the hash chain",
}


def rules(state: DeclaredState) -> tuple[RetentionRule, ...]:
    if state.retention is None:
        return ()
    return tuple(
        RetentionRule(t.table, t.column, t.days, t.role, t.hold_role, t.static_hold)
        for t in sorted(state.retention.tables, key=lambda t: t.table)
    )


def holds_and_runs(
    conn: psycopg.Connection, project: Project, where: str
) -> tuple[tuple[Hold, ...], tuple[RetentionRunRow, ...]]:
    """The holds in force and the latest runs (`rlsctl retention status`, as the helper tables' owner)."""
    rows = status(Retention(conn, project, where), SHOWN_RUNS)
    holds = tuple(
        Hold(row.table, row.tenant, utc_text(row.at), row.actor, _reason(row.detail))
        for row in sorted((r for r in rows if r.kind == "hold"), key=lambda r: (r.table, r.tenant or "", r.at))
    )
    runs = tuple(
        RetentionRunRow(
            row.table,
            utc_text(row.at),
            row.actor,
            row.via,
            row.removed or 0,
            round(row.seconds or 0.0, 3),
            row.cutoff,
            bool(row.dry_run),
            row.detail,
        )
        for row in sorted((r for r in rows if r.kind == "run"), key=lambda r: (r.at, r.table), reverse=True)
    )
    return holds, runs


def _reason(detail: str | None) -> str:
    return detail or ""


def schedule(conn: psycopg.Connection) -> Schedule:
    """pg_cron's retention jobs for this database, when pg_cron keeps its jobs here."""
    where = statements.run(conn, "cron_database")[0]
    cron_database, database = where["cron_database"], where["database"]
    if not cron_database:
        return Schedule("pg_cron is not loaded: no job runs retention inside the database", ())
    if cron_database != database:
        return Schedule(
            f"pg_cron keeps its jobs in database {cron_database}: read them there "
            "(`rlsctl retention schedule` keeps them in step)",
            (),
        )
    if not statements.run(conn, "cron_installed"):
        return Schedule(f"pg_cron is loaded but not created in {database}", ())
    rows = statements.run(conn, "cron_jobs", prefix=job_name(database, ""))
    jobs = tuple(CronJob(row["jobname"], row["schedule"], row["active"]) for row in rows)
    return Schedule(f"pg_cron jobs in {database}: {len(jobs)}", jobs)


def triggers(conn: psycopg.Connection, state: DeclaredState) -> tuple[AuditTrigger, ...]:
    """Each trigger the audit log needs (rlsctl.declare.audit), as the catalog has it."""
    live = {(t.table, t.name): t for t in catalog.triggers(conn, state.schema, state.helper_schema)}
    found = []
    for wanted in audit_objects(state):
        if not isinstance(wanted, Trigger):
            continue
        there = live.get((wanted.table, wanted.name))
        found.append(
            AuditTrigger(
                wanted.table,
                wanted.name,
                PURPOSE.get(wanted.name) or f"writes each {_words(wanted.event_list)} to the log",
                there is not None,
                there is not None and there.fires,
            )
        )
    return tuple(sorted(found, key=lambda t: (t.table, t.trigger)))


def _words(events: tuple[str, ...]) -> str:
    """("INSERT", "DELETE", "UPDATE") -> "insert, delete and update"."""
    names = [event.lower() for event in events]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def chain(conn: psycopg.Connection, project: Project) -> ChainCheck:
    """`rlsctl audit verify`: every row against its hash chain, in one snapshot."""
    verdict, _ = audit.verify(conn, project)
    first = verdict.first
    return ChainCheck(
        ok=verdict.ok,
        rows=verdict.rows,
        lanes=len(verdict.heads),
        trimmed=sum(checkpoint.removed for checkpoint in verdict.checkpoints),
        head=verdict.head,
        breaks=len(verdict.breaks),
        first_break=f"{first.row}: {first.detail}" if first is not None else None,
        notes=tuple(verdict.notes),
    )


def operations(conn: psycopg.Connection, state: DeclaredState) -> tuple[Operation, ...]:
    """The latest of each of rlsctl's own operations (apply, migrate, rollback, keys runs)."""
    spec = state.audit
    if spec is None or spec.log is None:
        return ()
    with _reading_log(conn, spec):
        rows = conn.execute(queries.operations_sql(spec, state.schema)).fetchall()
    return tuple(Operation(job, action, utc_text(at), digest) for job, action, at, digest in rows)


@contextmanager
def _reading_log(conn: psycopg.Connection, spec: AuditSpec) -> Iterator[None]:
    """A read-only transaction, rolled back, as a role that sees every row of the log: the login
    itself when it bypasses RLS, else the first of project.audit.readers it may SET ROLE to."""
    previous = conn.read_only
    conn.read_only = True
    try:
        with conn.transaction(force_rollback=True):
            audit.become_reader(conn, spec)
            yield
    finally:
        conn.read_only = previous
