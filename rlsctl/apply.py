"""`rlsctl apply`: bring the security layer of a live database to the declared state.

Everything happens in one transaction under the advisory lock: read the
catalog (after the lock, so a waiting apply plans afresh), check the project
against it, render, execute statement by statement, commit. Any error rolls
back and names the statement; the database is left as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import psycopg
from psycopg import errors as pgerrors

from rlsctl import catalog
from rlsctl.ddl import split_statements
from rlsctl.declare import DeclaredState, HelperFn, declare
from rlsctl.errors import MissingExtension, UsageError
from rlsctl.phases import phase_creating
from rlsctl.project import Project
from rlsctl.render import render_state
from rlsctl.schema import Schema
from rlsctl.txn import lock_wait_message, locked_transaction
from rlsctl.validate import validate


@dataclass(frozen=True)
class Plan:
    state: DeclaredState
    script: str
    statements: tuple[str, ...]
    pending: tuple[tuple[str, int | None], ...]  # declared tables not present, with their phase


@dataclass(frozen=True)
class ApplyReport:
    where: str
    plan: Plan
    dry_run: bool

    @property
    def managed(self) -> tuple[str, ...]:
        return tuple(table.name for table in self.plan.state.tables)


def live_schema(conn: psycopg.Connection, project: Project, phase: int | None) -> Schema:
    """The live tables; with `phase`, only what the migrations up to that phase create."""
    live = catalog.read_schema(conn, project.schema_name)
    if phase is None:
        return live
    upto = project.migrated_schema(phase)
    tables = []
    for table in live.tables:
        if not upto.has_table(table.name):
            continue
        wanted = upto.table(table.name)
        columns = tuple(column for column in table.columns if wanted.has_column(column.name))
        tables.append(replace(table, columns=columns))
    return replace(live, tables=tuple(tables))


def make_plan(conn: psycopg.Connection, project: Project, where: str, phase: int | None = None) -> Plan:
    schema = live_schema(conn, project, phase)
    validate(project, project.migrated_schema().union(schema))
    _check_extensions(conn, project, where)
    state = declare(project, schema)
    drop_policies = _undeclared_policies(conn, project, state)
    drop_functions = _undeclared_functions(conn, project, state)
    script = render_state(state, project.root / "templates", drop_policies=drop_policies, drop_functions=drop_functions)
    pending = tuple((name, phase_creating(project.phases, name, project.schema_name)) for name in state.pending)
    return Plan(state, script, tuple(split_statements(script, "rendered SQL")), pending)


def _check_extensions(conn: psycopg.Connection, project: Project, where: str) -> None:
    wanted = list(project.settings.extensions)
    if not wanted:
        return
    found = catalog.extensions(conn, wanted)
    missing = [name for name in wanted if name not in found]
    if missing:
        raise MissingExtension(
            f"{where}: extension {missing[0]!r} is not installed on the server "
            f"(the project needs it: install its package, e.g. postgresql-15-{missing[0]} or postgresql-contrib)"
        )


def _undeclared_policies(conn: psycopg.Connection, project: Project, state: DeclaredState) -> dict[str, list[str]]:
    """Policies on managed tables that the project does not declare: apply removes them."""
    declared = {(table.name, policy.name) for table in state.tables for policy in table.policies}
    managed = {table.name for table in state.tables}
    extra: dict[str, list[str]] = {}
    for policy in catalog.policies(conn, project.schema_name):
        if policy.table in managed and (policy.table, policy.name) not in declared:
            extra.setdefault(policy.table, []).append(policy.name)
    return extra


def _undeclared_functions(conn: psycopg.Connection, project: Project, state: DeclaredState) -> list[HelperFn]:
    """Functions the helper owner owns in the helper schema that the state no longer has."""
    declared = {(fn.name, fn.args) for fn in state.helper_functions}
    return [
        HelperFn(fn.name, fn.arg_types, policy_helper=False)
        for fn in catalog.functions(conn, project.helper_schema)
        if fn.owner == state.definer and not fn.from_extension and (fn.name, fn.arg_types) not in declared
    ]


def apply(
    conn: psycopg.Connection,
    project: Project,
    where: str,
    *,
    phase: int | None = None,
    dry_run: bool = False,
    lock_timeout: float = 10.0,
) -> ApplyReport:
    try:
        with locked_transaction(conn, lock_timeout, where):
            plan = make_plan(conn, project, where, phase)
            execute_statements(conn, plan.statements, where, lock_timeout)
            if dry_run:
                raise _DryRunDone(plan)
    except _DryRunDone as done:
        return ApplyReport(where, done.plan, dry_run=True)
    return ApplyReport(where, plan, dry_run=False)


class _DryRunDone(Exception):
    """Leaves the transaction by rolling it back after a successful dry run."""

    def __init__(self, plan: Plan) -> None:
        super().__init__("dry run")
        self.plan = plan


def execute_statements(
    conn: psycopg.Connection, sql_statements: tuple[str, ...], where: str, lock_timeout: float
) -> None:
    """Run statements one by one so an error names the one that failed."""
    for number, statement in enumerate(sql_statements, start=1):
        try:
            conn.execute(statement.encode())
        except pgerrors.LockNotAvailable as exc:
            raise UsageError(lock_wait_message(exc, where, lock_timeout)) from None
        except psycopg.Error as exc:
            raise UsageError(
                f"{where}: statement {number} failed ({_head(statement)}): {_message(exc)}; nothing was changed"
            ) from None


def _head(statement: str) -> str:
    for line in statement.splitlines():
        line = line.strip()
        if line and not line.startswith("--"):
            return line[:80]
    return "?"


def _message(exc: psycopg.Error) -> str:
    diag = exc.diag
    text = diag.message_primary or str(exc).strip().splitlines()[0]
    return text
