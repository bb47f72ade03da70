"""`rlsctl migrate` and `rlsctl rollback`: the phased DDL, recorded in the helper schema.

Each phase runs in its own transaction, as the owner role, under the
advisory lock (statements that write rows run with `row_security = off`:
one that RLS would filter fails loudly instead of silently touching no
rows), and is validated before it commits: no constraint left NOT
VALID, and every table that existed before has the same number of rows
after (counted in one snapshot; a table whose rows the counting role cannot
all see under RLS is reported as not verified rather than compared).
`rollback --to N` reverts phases in reverse order in one transaction and
re-applies the security layer for the tables that remain.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import IsolationLevel

from rlsctl.catalog import queries as catalog
from rlsctl.change import apply as applying
from rlsctl.change.plan import plan_for_database
from rlsctl.change.record import record_operation, state_digest
from rlsctl.change.txn import locked_transaction
from rlsctl.declare.audit import log_table
from rlsctl.declare.compile import declare
from rlsctl.declare.validate import validate
from rlsctl.errors import UsageError
from rlsctl.migrate import backup
from rlsctl.migrate.losses import Loss, grown, probe
from rlsctl.pg import statements
from rlsctl.pg.db import Target
from rlsctl.pg.sql import ident, qualified
from rlsctl.pg.templates import render_template
from rlsctl.policy.project import Project
from rlsctl.schema.ddl import changes_data, concurrent_index, split_statements
from rlsctl.schema.phases import Phase, Step, phase_creating
from rlsctl.schema.tables import Schema
from rlsctl.state.objects import TRIGGER_NAMES

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PhaseResult:
    phase: int
    name: str
    statements: int
    backup: Path | None
    unverified: tuple[str, ...]  # tables whose row counts could not be compared


@dataclass
class MigrateReport:
    where: str
    ran: list[PhaseResult] = field(default_factory=list)
    baselined: list[int] = field(default_factory=list)
    already: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Applied:
    phase: int
    name: str
    checksum: str
    baseline: bool


def _render(project: Project, name: str, **context: object) -> str:
    return render_template(name, project.root / "templates", **context)


def applied_phases(conn: psycopg.Connection, project: Project) -> list[Applied]:
    if not _phase_table_exists(conn, project):
        return []
    rows = conn.execute(_render(project, "ops/applied_phases.sql.j2", helper_schema=project.helper_schema).encode())
    return [Applied(r[0], r[1], r[2], r[3]) for r in rows.fetchall()]


BOOTSTRAP_KINDS = {"role", "membership", "schema", "schema_privilege", "default_privilege"}


def _bootstrap(conn: psycopg.Connection, project: Project, where: str, lock_timeout: float) -> None:
    """The roles (the owner runs the phases), the helper schema, and the applied_phase table."""
    state = declare(project, Schema(name=project.schema_name))
    plan = plan_for_database(conn, state, project.root / "templates", kinds=BOOTSTRAP_KINDS)
    applying.refuse_if_needed(plan)
    applying.execute_statements(conn, plan.sql, where, lock_timeout)
    if not _phase_table_exists(conn, project):
        script = _render(project, "bootstrap.sql.j2", helper_schema=project.helper_schema, owner=state.owner)
        applying.execute_statements(conn, tuple(split_statements(script, "bootstrap SQL")), where, lock_timeout)


def _phase_table_exists(conn: psycopg.Connection, project: Project) -> bool:
    name = qualified(project.helper_schema, "applied_phase")
    rows = statements.run(conn, "phase_table_exists", name=name)
    return bool(rows and rows[0]["present"])


def _check_recorded(project: Project, recorded: list[Applied]) -> None:
    by_number = {phase.number: phase for phase in project.phases}
    for row in recorded:
        phase = by_number.get(row.phase)
        if phase is None:
            raise UsageError(f"the database records phase {row.phase}, which the project's migrations lack")
        if not row.baseline and row.checksum != phase.checksum():
            raise UsageError(
                f"phase {phase.label} was edited after it was applied (checksum differs); "
                "add a new step or phase instead of editing an applied one"
            )


def migrate(
    conn: psycopg.Connection,
    project: Project,
    target: Target,
    *,
    to: int | None = None,
    baseline: int | None = None,
    backup_dir: Path | None = None,
    lock_timeout: float = 10.0,
    progress: Progress = lambda message: None,
) -> MigrateReport:
    where = target.where
    last = project.phases[-1].number if project.phases else -1
    goal = last if to is None else to
    if goal > last or (goal < 0 and project.phases):
        raise UsageError(f"--to {goal}: the project has phases 0..{last}")
    report = MigrateReport(where)
    # Every refusal that does not need rlsctl's own objects comes before the
    # bootstrap creates them, so a refused run leaves the database as it was:
    # policy files apply would refuse first (the bootstrap creates their roles).
    validate(project, project.migrated_schema().union(catalog.read_schema(conn, project.schema_name)))
    if baseline is not None:
        if to is not None or backup_dir is not None:
            raise UsageError("--baseline records phases without running them: it takes neither --to nor --backup-dir")
        _check_baseline(conn, project, where, baseline, last)
    if backup_dir is not None:
        backup.check_can_dump(conn, project.schema_name, where)

    def bootstrap() -> None:
        with locked_transaction(conn, lock_timeout, where):
            _bootstrap(conn, project, where, lock_timeout)

    applying.retrying(bootstrap)
    recorded = applied_phases(conn, project)
    _check_recorded(project, recorded)
    done = {row.phase for row in recorded}
    if baseline is not None:
        return _baseline(conn, project, where, baseline, done, report, lock_timeout)
    if done and max(done) > goal:
        raise UsageError(f"{where}: phases up to {max(done)} are applied; use `rlsctl rollback --to {goal}`")
    if any(phase.number not in done and phase.number <= goal for phase in project.phases):
        _check_owner_owns_tables(conn, project, where, done)
    for phase in project.phases:
        if phase.number > goal:
            break
        if phase.number in done:
            report.already.append(phase.number)
            continue
        dumped = None
        if backup_dir is not None:
            progress(f"backing up before phase {phase.label}")
            dumped = backup.dump(target, conn, backup_dir, phase.number)
        progress(f"running phase {phase.label}")
        report.ran.append(_run_phase(conn, project, phase, where, lock_timeout, dumped))
    return report


def _check_owner_owns_tables(conn: psycopg.Connection, project: Project, where: str, done: set[int]) -> None:
    """Phases run as the owner role, so it must own the tables earlier phases made.

    After `--baseline`, another tool's role still owns them until `rlsctl apply`
    hands them to the owner role; running a phase before that would fail
    half-way with a bare "permission denied".
    """
    if not done:
        return
    owner = project.role_name(project.role_of_kind("owner"))
    made = set(project.migrated_schema(max(done)).table_names)
    foreign = sorted(
        (name, table.owner) for name, table in catalog.tables(conn, project.schema_name).items()
        if name in made and table.owner != owner
    )  # fmt: skip
    if foreign:
        name, holder = foreign[0]
        raise UsageError(
            f"{where}: table {project.schema_name}.{name} is owned by {holder}, not {owner}, which runs the "
            "migrations: run `rlsctl apply` first (it hands the tables to the owner role); nothing was changed"
        )


def _check_baseline(conn: psycopg.Connection, project: Project, where: str, upto: int, last: int) -> None:
    """Adopting phases 0..upto is a claim about the schema: check it against the catalog."""
    if upto > last:
        raise UsageError(f"--baseline {upto}: the project has phases 0..{last}")
    live = catalog.read_schema(conn, project.schema_name)
    expected = project.migrated_schema(upto)
    for table in expected.tables:
        creator = phase_creating(project.phases, table.name, project.schema_name)
        if not live.has_table(table.name):
            raise UsageError(
                f"{where}: --baseline {upto}: table {project.schema_name}.{table.name} (phase {creator}) "
                f"does not exist, so the database is not at phase {upto}; nothing was recorded"
            )
        missing = [column for column in table.column_names if not live.has_column(table.name, column)]
        if missing:
            raise UsageError(
                f"{where}: --baseline {upto}: column {table.name}.{missing[0]} does not exist, "
                f"so the database is not at phase {upto}; nothing was recorded"
            )


def _baseline(
    conn: psycopg.Connection,
    project: Project,
    where: str,
    upto: int,
    done: set[int],
    report: MigrateReport,
    lock_timeout: float,
) -> MigrateReport:
    """Record phases 0..upto as applied without running them (the DDL came from another tool)."""
    with locked_transaction(conn, lock_timeout, where):
        for phase in project.phases:
            if phase.number > upto or phase.number in done:
                continue
            _record(conn, project, phase, baseline=True)
            report.baselined.append(phase.number)
    return report


def _record(conn: psycopg.Connection, project: Project, phase: Phase, baseline: bool) -> None:
    sql = _render(project, "ops/record_phase.sql.j2", helper_schema=project.helper_schema)
    conn.execute(
        sql.encode(), {"phase": phase.number, "name": phase.name, "checksum": phase.checksum(), "baseline": baseline}
    )


def _audit_phase(conn: psycopg.Connection, project: Project, phase: Phase) -> None:
    """system:migrate in the audit log, in the phase's transaction, once apply has made the log's
    recording function (docs/audit.md): a database migrated before its first apply records nothing."""
    if project.settings.audit is None:
        return
    state = declare(project, catalog.read_schema(conn, project.schema_name))
    details = {"phase": phase.number, "name": phase.name, "checksum": phase.checksum()}
    record_operation(conn, state, "migrate", "migrate", details, project.root / "templates")


def _run_phase(
    conn: psycopg.Connection, project: Project, phase: Phase, where: str, lock_timeout: float, dumped: Path | None
) -> PhaseResult:
    steps = [(step, tuple(split_statements(step.up_sql(), str(step.up)))) for step in phase.steps]
    concurrent = [concurrent_index(statement) is not None for _, found in steps for statement in found]
    if concurrent and all(concurrent):
        return _run_concurrent_phase(conn, project, phase, steps, where, lock_timeout, dumped)
    if any(concurrent):
        raise UsageError(
            f"{where}: phase {phase.label} mixes CREATE INDEX CONCURRENTLY with other statements: PostgreSQL cannot "
            "run it in the phase's transaction; put the concurrent indexes in a phase of their own "
            "(rlsctl lint --write-index-phase writes one)"
        )
    owner = project.role_name(project.role_of_kind("owner"))
    # One snapshot for the counts before and after, so concurrent writers to
    # tables this phase does not lock cannot fake a difference.
    previous = conn.isolation_level
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    try:
        with locked_transaction(conn, lock_timeout, where):
            statements.run(conn, "set_role", role=owner)
            statements.run(conn, "search_path", path=ident(project.schema_name))
            before, unverified = _count_rows(conn, project)
            count = 0
            for step, step_statements in steps:
                _run_step(conn, step_statements, f"{where} phase {phase.label} {step.up.name}", lock_timeout)
                count += len(step_statements)
            _validate_phase(conn, project, phase, before, unverified)
            _record(conn, project, phase, baseline=False)
            _audit_phase(conn, project, phase)
    finally:
        conn.isolation_level = previous
    return PhaseResult(phase.number, phase.name, count, dumped, tuple(sorted(unverified)))


def _run_concurrent_phase(
    conn: psycopg.Connection,
    project: Project,
    phase: Phase,
    steps: list[tuple[Step, tuple[str, ...]]],
    where: str,
    lock_timeout: float,
    dumped: Path | None,
) -> PhaseResult:
    """A phase made only of CREATE INDEX CONCURRENTLY: each statement on its own, outside a
    transaction (writers keep writing while the index builds; the build waits for transactions
    older than it, without a lock timeout), as the owner role; then the phase is recorded. A
    build that fails leaves an INVALID index behind: it is dropped, and the phase is not
    recorded, so the next migrate runs it again (IF NOT EXISTS skips what was built)."""
    owner = project.role_name(project.role_of_kind("owner"))
    count = 0
    statements.run(conn, "set_role", role=owner)
    statements.run(conn, "session_search_path", path=ident(project.schema_name))
    try:
        for step, step_statements in steps:
            for statement in step_statements:
                _build_index(conn, project, statement, f"{where} phase {phase.label} {step.up.name}")
                count += 1
    finally:
        statements.run(conn, "reset_role")
        statements.run(conn, "reset_search_path")
    with locked_transaction(conn, lock_timeout, where):
        statements.run(conn, "set_role", role=owner)
        _record(conn, project, phase, baseline=False)
        _audit_phase(conn, project, phase)
    return PhaseResult(phase.number, phase.name, count, dumped, ())


def _build_index(conn: psycopg.Connection, project: Project, statement: str, where: str) -> None:
    found = concurrent_index(statement)
    assert found is not None
    schema, name = found
    try:
        conn.execute(statement.encode())
    except psycopg.Error as exc:
        if name:
            where_built = schema or project.schema_name
            drop = _render(project, "ops/drop_index_concurrently.sql.j2", schema=where_built, index=name)
            with contextlib.suppress(psycopg.Error):  # the INVALID index a failed build leaves
                if statements.run(conn, "index_invalid", schema=where_built, name=name):
                    conn.execute(drop.encode())
        detail = (exc.diag.message_primary or str(exc)).splitlines()[0]
        raise UsageError(f"{where}: {detail}; the phase is not recorded (run migrate again)") from None


def _run_step(conn: psycopg.Connection, step_statements: tuple[str, ...], where: str, lock_timeout: float) -> None:
    """Run a step; statements that write rows run with row_security = off.

    On a secured table the owner role writes nothing through RLS, so an UPDATE
    in a migration would silently change no rows. With row_security off it
    fails instead. DDL keeps row security on: PostgreSQL validates a new
    foreign key with a query that RLS applies to.
    """
    for statement in step_statements:
        data = changes_data(statement)
        if data:
            statements.run(conn, "row_security", value="off")
        applying.execute_statements(conn, (statement,), where, lock_timeout)
        if data:
            statements.run(conn, "row_security", value="on")


def _count_rows(conn: psycopg.Connection, project: Project) -> tuple[dict[str, int], set[str]]:
    """Row counts of the tables the current role can see whole; the others are unverified."""
    visible = {
        row["table_name"]: row["sees_all"] for row in statements.run(conn, "row_visibility", schema=project.schema_name)
    }
    counts: dict[str, int] = {}
    unverified: set[str] = set()
    for table, sees_all in visible.items():
        if not sees_all:
            unverified.add(table)
            continue
        sql = _render(project, "ops/count_rows.sql.j2", schema=project.schema_name, table=table)
        counts[table] = conn.execute(sql.encode()).fetchone()[0]  # type: ignore[index]
    return counts, unverified


def _validate_phase(
    conn: psycopg.Connection, project: Project, phase: Phase, before: dict[str, int], unverified: set[str]
) -> None:
    invalid = statements.run(conn, "invalid_constraints", schema=project.schema_name)
    if invalid:
        first = invalid[0]
        raise UsageError(
            f"phase {phase.label} left constraint {first['name']} on {first['table_name']} NOT VALID; rolled back"
        )
    after, _ = _count_rows(conn, project)
    for table, count in before.items():
        if table in after and after[table] != count:
            raise UsageError(
                f"phase {phase.label} changed the row count of {table} ({count} -> {after[table]}); rolled back"
            )


# -- rollback ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RollbackReport:
    where: str
    reverted: tuple[int, ...]
    reapplied: bool
    losses: tuple[Loss, ...] = ()  # tables and columns dropped while holding data
    dry_run: bool = False
    backup: Path | None = None


Confirm = Callable[[list[Loss]], bool]

AUDIT_EXPORT = (
    "{where}: rolling back to phase {to} would drop {tables}, the audit history; export it first: "
    "rerun with --backup-dir DIR (rlsctl dumps the database there before reverting), or dump it "
    "yourself (pg_dump --data-only --table=... DB > audit.sql) and pass --audit-exported; "
    "nothing was changed"
)


def rollback(
    conn: psycopg.Connection,
    project: Project,
    where: str,
    *,
    to: int,
    lock_timeout: float = 10.0,
    progress: Progress = lambda message: None,
    dry_run: bool = False,
    confirm: Confirm | None = None,
    backup_dir: Path | None = None,
    target: Target | None = None,
    audit_exported: bool = False,
) -> RollbackReport:
    """Revert the phases after `to`. What the down scripts would drop while it holds data is found
    first (in a savepoint, rolled back): `dry_run` stops there; otherwise `confirm` must accept
    it (None: refuse), and an audit log goes only once exported (`backup_dir` or `audit_exported`)."""
    last = project.phases[-1].number if project.phases else -1
    if to > last:  # "nothing to roll back" would hide the typo, as migrate --to refuses it
        raise UsageError(f"--to {to}: the project has phases 0..{last}")
    recorded = applied_phases(conn, project)
    _check_recorded(project, recorded)
    done = sorted((row.phase for row in recorded), reverse=True)
    to_revert = [number for number in done if number > to]
    if not to_revert:
        return RollbackReport(where, (), reapplied=False, dry_run=dry_run)
    def revert_quietly() -> None:
        _revert(conn, project, where, to_revert, lock_timeout, _quiet)

    with locked_transaction(conn, lock_timeout, where):
        found = probe(conn, project, revert_quietly)
    if dry_run:
        return RollbackReport(where, tuple(to_revert), reapplied=False, losses=tuple(found), dry_run=True)
    _check_losses(found, where, to, confirm, exported=audit_exported or backup_dir is not None)
    dumped = None
    if backup_dir is not None:
        backup.check_can_dump(conn, project.schema_name, where)
        progress(f"backing up {conn.info.dbname} before the rollback")
        dumped = backup.dump(target or Target("", where), conn, backup_dir, f"rollback-to-{to}")
    with locked_transaction(conn, lock_timeout, where):
        _recheck(conn, project, where, found, revert_quietly, lock_timeout)
        secured = _is_secured(conn, project)
        log = _audit_log_oid(conn, project)
        _revert(conn, project, where, to_revert, lock_timeout, progress)
        _forget_dropped_log(conn, project, log)
        if secured:
            progress("re-applying the security layer for the tables that remain")
            plan = applying.make_plan(conn, project, where)
            applying.execute_statements(conn, plan.sql, where, lock_timeout)
            templates = project.root / "templates"
            details = {"to": to, "reverted": to_revert, "state": state_digest(plan.state, templates)}
            record_operation(conn, plan.state, "rollback", "rollback", details, templates)
    return RollbackReport(where, tuple(to_revert), reapplied=secured, losses=tuple(found), backup=dumped)


def _audit_log_oid(conn: psycopg.Connection, project: Project) -> int | None:
    """The audit log table as the rollback finds it (its OID: a name can be given to another table)."""
    if project.settings.audit is None:
        return None
    return _oid(conn, project.schema_name, log_table(project))


def _oid(conn: psycopg.Connection, schema: str, name: str) -> int | None:
    return statements.run(conn, "relation_oid", schema=schema, name=name)[0]["oid"]  # type: ignore[no-any-return]


def _forget_dropped_log(conn: psycopg.Connection, project: Project, before: int | None) -> None:
    """When this rollback's down scripts dropped the audit log (exported first, `_check_losses`),
    its chain's bookkeeping goes too: a log created again by a later migrate starts a chain of its
    own, where the old lane heads made `rlsctl audit verify` report it broken for good. Only the
    table the rollback found, gone for good (not renamed: its OID no longer exists); a log renamed
    out of the way before the rollback, or by a down script, keeps its chain."""
    if before is None or not statements.run(conn, "relation_gone", oid=before)[0]["gone"]:
        return
    if _oid(conn, project.helper_schema, "audit_lane") is None:
        return  # the chain's tables were never made: nothing to forget
    definer = project.role_name(project.role_of_kind("definer"))
    sql = _render(project, "ops/audit_forget_log.sql.j2", definer=definer, helper_schema=project.helper_schema,
                  log=log_table(project))  # fmt: skip
    conn.execute(sql.encode())


def _recheck(
    conn: psycopg.Connection, project: Project, where: str, confirmed: list[Loss], revert: Callable[[], None],
    lock_timeout: float,
) -> None:  # fmt: skip
    """Between the question and now, rows may have been written to what goes: the tables are
    locked against writers, counted again, and anything beyond what was confirmed stops it."""
    for schema, name in sorted({loss.at for loss in confirmed}):
        sql = _render(project, "ops/rollback_lock.sql.j2", schema=schema, table=name)
        applying.execute_statements(conn, (sql,), where, lock_timeout)
    more = grown(confirmed, probe(conn, project, revert))
    if more:
        listed = "; ".join(str(loss) for loss in more)
        raise UsageError(f"{where}: data changed since the rollback was confirmed: {listed}; nothing was changed")


def _quiet(message: str) -> None:
    """The probe runs the down scripts once without telling: only the real run reports progress."""


def _check_losses(found: list[Loss], where: str, to: int, confirm: Confirm | None, exported: bool) -> None:
    audit = [loss.table for loss in found if loss.audit]
    if audit and not exported:
        raise UsageError(AUDIT_EXPORT.format(where=where, to=to, tables=", ".join(audit)))
    if found and (confirm is None or not confirm(found)):
        listed = "; ".join(str(loss) for loss in found)
        raise UsageError(
            f"{where}: rolling back to phase {to} drops data: {listed}. Confirm with --yes (see it first with "
            "--dry-run; keep a copy with --backup-dir DIR); nothing was changed"
        )


def _revert(
    conn: psycopg.Connection, project: Project, where: str, to_revert: list[int], lock_timeout: float,
    progress: Progress,
) -> None:  # fmt: skip
    """The down scripts of `to_revert`, newest first, as the owner role (rlsctl's policies and guard
    triggers go first: they depend on what the scripts drop)."""
    by_number = {phase.number: phase for phase in project.phases}
    owner = project.role_name(project.role_of_kind("owner"))
    _drop_security_objects(conn, project, where, lock_timeout)
    for number in to_revert:
        phase = by_number[number]
        progress(f"reverting phase {phase.label}")
        statements.run(conn, "set_role", role=owner)
        statements.run(conn, "search_path", path=ident(project.schema_name))
        for step in reversed(phase.steps):
            step_statements = tuple(split_statements(step.down_sql(), str(step.down)))
            # As in migrate: a statement writing rows fails loudly instead of silently changing
            # nothing under the tables' forced RLS (data copied back before a drop, say).
            _run_step(conn, step_statements, f"{where} rollback {step.down.name}", lock_timeout)
        # Still as the owner role, which owns applied_phase: code the owner put on its own
        # table must never run as the connecting role (a superuser, often).
        conn.execute(
            _render(project, "ops/unrecord_phase.sql.j2", helper_schema=project.helper_schema).encode(),
            {"phase": number},
        )
        statements.run(conn, "reset_role")
        statements.run(conn, "secure_path")


def _is_secured(conn: psycopg.Connection, project: Project) -> bool:
    """apply has run here: rlsctl's helper functions exist."""
    return any(fn.name == "current_user_id" for fn in catalog.functions(conn, project.helper_schema))


def _drop_security_objects(conn: psycopg.Connection, project: Project, where: str, lock_timeout: float) -> None:
    """Policies and guard triggers on declared tables depend on what the down scripts drop."""
    declared = set(project.tables)
    policies = [p for p in catalog.policies(conn, project.schema_name) if p.table in declared]
    triggers = [
        t
        for t in catalog.triggers(conn, project.schema_name, project.helper_schema)
        if t.table in declared and (t.ours or t.name in TRIGGER_NAMES)
    ]
    script = _render(
        project, "ops/drop_policies.sql.j2", schema=project.schema_name, policies=policies, triggers=triggers
    )
    if script.strip():
        applying.execute_statements(conn, tuple(split_statements(script, "rollback SQL")), where, lock_timeout)
