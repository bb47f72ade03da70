"""`rlsctl test`: impersonate every principal on fixture data and compare each cell.

Everything happens in one transaction that is always rolled back. Each
statement runs in its own savepoint as the principal (`SET LOCAL ROLE` and
the identity setting), so one principal's writes never leak into the next
cell. A denied UPDATE or DELETE is judged by the rows it affected, since RLS
makes it succeed with 0 rows; a denied INSERT, or any command without the
privilege, raises.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from rlsctl.catalog import queries as catalog
from rlsctl.change.apply import live_schema
from rlsctl.declare.compile import declare
from rlsctl.declare.state import DeclaredState
from rlsctl.errors import UsageError
from rlsctl.pg import statements
from rlsctl.pg.templates import render_template
from rlsctl.policy.project import Project
from rlsctl.schema.tables import Column, Schema, Table
from rlsctl.tester.evaluate import ApiSession, Evaluator, Outcome, Principal
from rlsctl.tester.fixtures import SELF, FixtureRow, Resolved, filled, resolve, sha256_hex, sql_value

COMMANDS = ("select", "insert", "update", "delete")
INSUFFICIENT_PRIVILEGE = "42501"


@dataclass(frozen=True)
class CellContext:
    """What an expectation needs to decide one cell."""

    table: str
    command: str
    case: str  # the fixture row, insert candidate, or "<update case>:<row>"
    principal: Principal
    row: dict[str, Any]  # old row (select/update/delete) or new row (insert)
    new: dict[str, Any] | None  # the row after an UPDATE
    world: dict[str, list[dict[str, Any]]]
    set_columns: tuple[str, ...] = ()  # the columns an UPDATE sets (even to their current value)


Expectation = Callable[[CellContext], bool]


@dataclass(frozen=True)
class Cell:
    table: str
    command: str
    case: str
    principal: str
    expected: bool
    expected_detail: str
    actual: Outcome

    @property
    def ok(self) -> bool:
        return self.expected == self.actual.allowed and not self.actual.detail.startswith("unexpected")


@dataclass(frozen=True)
class MatrixResult:
    where: str
    principals: tuple[Principal, ...]
    tables: tuple[str, ...]
    cells: tuple[Cell, ...]

    @property
    def failures(self) -> tuple[Cell, ...]:
        return tuple(cell for cell in self.cells if not cell.ok)


# -- principals -----------------------------------------------------------------------------


def principals_of(project: Project, resolved: Resolved) -> tuple[Principal, ...]:
    """The declared principals whose user row exists in this phase."""
    fixtures = project.fixtures
    assert fixtures is not None
    found: list[Principal] = []
    for name, declared in fixtures.principals.items():
        role = project.role_name(declared.role)
        if declared.id is not None:
            found.append(Principal(name, declared.role, role, declared.id, True, declared.description))
        elif declared.api_key is not None:
            session = api_session(project, resolved, declared.api_key)
            found.append(
                Principal(name, declared.role, role, None, False, declared.description, declared.api_key, session)
            )
        elif declared.user is None or declared.user == "":
            sets = declared.user == ""
            found.append(Principal(name, declared.role, role, None, sets, declared.description))
        elif declared.user in resolved.keys:
            user = str(resolved.keys[declared.user])
            found.append(Principal(name, declared.role, role, user, True, declared.description))
    return tuple(found)


def api_session(project: Project, resolved: Resolved, raw_key: str) -> ApiSession | None:
    """What authenticate_api_key(raw_key) records over the fixture rows: None for a wrong or expired key."""
    api = project.settings.api_keys
    if api is None:
        return None
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for row in resolved.rows_of(api.table):
        values = row.values
        if values.get(api.hash) != sha256_hex(raw_key):
            continue
        expires = values.get(api.expires) if api.expires else None
        if isinstance(expires, dt.datetime) and expires <= now:
            return None
        return ApiSession(values.get(api.tenant), tuple(values.get(api.scopes) or ()))
    return None


def _check_literal_ids(conn: psycopg.Connection, project: Project) -> None:
    """A principal's literal id must be a valid user id, or every cell would fail for the wrong reason."""
    assert project.fixtures is not None
    identity_type = project.settings.identity.type
    for name, declared in project.fixtures.principals.items():
        if declared.id is None:
            continue
        check = render_template(
            "ops/cast_check.sql.j2", project.root / "templates", value=declared.id, type=identity_type
        )
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(check.encode())
        except psycopg.Error as exc:
            raise project.error(
                ("fixtures", "principals", name, "id"),
                f"id {declared.id!r} is not a valid {identity_type}: {_first(exc)}",
            ) from None


def refuse_false_greens(conn: psycopg.Connection, project: Project, state: DeclaredState, roles: list[str]) -> None:
    """Exit 2 rather than test a role for which RLS proves nothing."""
    tables = [table.name for table in state.tables]
    for row in statements.run(conn, "role_risks", schema=project.schema_name, tables=tables, roles=roles):
        if row["superuser"] or row["bypassrls"]:
            kind = "SUPERUSER" if row["superuser"] else "BYPASSRLS"
            raise UsageError(f"refusing to test as {row['role']}: it is {kind}, so RLS would not apply to it")
        if row["owns_unforced"]:
            raise UsageError(
                f"refusing to test as {row['role']}: it owns {row['owns_unforced'][0]}, whose RLS is not "
                "forced, so its policies would not apply"
            )
        if row["role"] == state.app and row["owns"]:
            raise UsageError(f"refusing to test as {row['role']}: the application role owns {row['owns'][0]}")
    missing = set(roles) - {
        row["role"]
        for row in statements.run(conn, "role_risks", schema=project.schema_name, tables=tables, roles=roles)
    }
    if missing:
        raise UsageError(f"role {sorted(missing)[0]} does not exist: run `rlsctl apply` first")


# -- the run ------------------------------------------------------------------------------------


class Runner:
    def __init__(self, conn: psycopg.Connection, project: Project, schema: Schema, state: DeclaredState) -> None:
        self.conn = conn
        self.project = project
        self.schema = schema
        self.state = state
        self.templates = project.root / "templates"

    def sql(self, name: str, **context: Any) -> bytes:
        return render_template(
            f"ops/{name}.sql.j2", self.templates, schema=self.project.schema_name, **context
        ).encode()

    def key(self, table: str) -> Column:
        found = self.schema.table(table)
        if len(found.primary_key) != 1:
            raise UsageError(f"rlsctl test needs a single-column primary key on {table}")
        return found.column(found.primary_key[0])

    def insert_row(self, table: Table, values: dict[str, Any], returning: bool) -> dict[str, Any] | None:
        full = filled(table, values, self.schema)
        columns = [table.column(name) for name in full]
        typed = {column.name: sql_value(full[column.name], column.type) for column in columns}
        cursor = self.conn.execute(
            self.sql("tester_insert", table=table, columns=columns, values=typed, returning=returning)
        )
        return cursor.fetchone()[0] if returning else None  # type: ignore[index]

    def impersonate(self, principal: Principal) -> None:
        if not principal.sets_identity:
            statements.run(self.conn, "impersonate_role", role=principal.role)
            if principal.api_key is not None:
                self.conn.execute(
                    self.sql("tester_api_key", helper_schema=self.state.helper_schema), {"raw_key": principal.api_key}
                )
            return
        setting = self.project.settings.identity.setting
        user = principal.user_id if principal.user_id is not None else ""
        statements.run(self.conn, "impersonate", role=principal.role, setting=setting, user_id=user)


def run_matrix(
    conn: psycopg.Connection, project: Project, where: str, expect: Expectation | None = None
) -> MatrixResult:
    if project.fixtures is None:
        raise UsageError("the project declares no fixtures section: rlsctl test has nothing to run")
    schema = live_schema(conn, project, None)
    state = declare(project, schema)
    if not state.tables:
        raise UsageError(f"{where}: no declared table exists yet: run `rlsctl migrate` and `rlsctl apply`")
    resolved = resolve(project.fixtures, schema)
    # API-key principals only where the key table exists in this phase.
    principals = tuple(p for p in principals_of(project, resolved) if p.api_key is None or state.api_keys is not None)
    refuse_false_greens(conn, project, state, sorted({p.role for p in principals}))
    _check_literal_ids(conn, project)
    runner = Runner(conn, project, schema, state)
    managed = [table.name for table in state.tables]
    operator = catalog.current_role(conn)
    cells: list[Cell] = []
    with conn.transaction(force_rollback=True):
        statements.run(conn, "test_settings")
        loaded_tables = sorted({row.table for row in resolved.rows if row.table in managed})
        if not operator.bypasses_rls and loaded_tables:
            conn.execute(runner.sql("tester_force", tables=loaded_tables, force=False))
        world = _load(runner, resolved, managed)
        candidates = _candidates(runner, resolved, principals, managed, project)
        if not operator.bypasses_rls and loaded_tables:
            conn.execute(runner.sql("tester_force", tables=loaded_tables, force=True))
        for principal in principals:
            evaluator = Evaluator(state, world, principal)
            for table in managed:
                cells += _table_cells(runner, evaluator, principal, table, world, resolved, candidates, expect)
    return MatrixResult(where, principals, tuple(managed), tuple(cells))


def _load(runner: Runner, resolved: Resolved, managed: list[str]) -> dict[str, list[dict[str, Any]]]:
    world: dict[str, list[dict[str, Any]]] = {}
    for row in resolved.rows:
        try:
            runner.insert_row(runner.schema.table(row.table), row.values, returning=False)
        except psycopg.Error as exc:
            raise UsageError(f"fixture row {row.table}.{row.name} cannot be loaded: {_first(exc)}") from None
    for table in {row.table for row in resolved.rows}:
        keys = [row.values[runner.key(table).name] for row in resolved.rows_of(table)]
        cursor = runner.conn.execute(runner.sql("tester_read_back", table=table, key=runner.key(table), keys=keys))
        world[table] = [record[0] for record in cursor.fetchall()]
    return world


def _candidates(
    runner: Runner, resolved: Resolved, principals: tuple[Principal, ...], managed: list[str], project: Project
) -> dict[tuple[str, str], dict[str, Any]]:
    """The full new row of each (candidate, principal) as the server would store it (defaults filled)."""
    result: dict[tuple[str, str], dict[str, Any]] = {}
    for candidate in resolved.inserts:
        if candidate.table not in managed:
            continue
        for principal in principals:
            values = _with_self(candidate, principal)
            if values is None:
                continue
            table = runner.schema.table(candidate.table)
            try:
                with runner.conn.transaction(force_rollback=True):
                    stored = runner.insert_row(table, values, returning=True)
            except (pgerrors.UniqueViolation, pgerrors.ForeignKeyViolation):
                # For this principal the row cannot exist (it is already there,
                # or it names a user row that does not): nothing to test.
                continue
            except psycopg.Error:
                # The row cannot exist (e.g. no identity gives a NULL key); the
                # cell still runs: the policy must refuse it before the constraint.
                stored = filled(table, values, runner.schema)
            result[(candidate.name, principal.name)] = stored or {}
    return result


def _with_self(candidate: FixtureRow, principal: Principal) -> dict[str, Any] | None:
    values = dict(candidate.values)
    for column, value in values.items():
        if value == SELF:
            values[column] = principal.user_id
    return values


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _table_cells(
    runner: Runner,
    evaluator: Evaluator,
    principal: Principal,
    table: str,
    world: dict[str, list[dict[str, Any]]],
    resolved: Resolved,
    candidates: dict[tuple[str, str], dict[str, Any]],
    expect: Expectation | None,
) -> list[Cell]:
    key = runner.key(table)
    rows = world.get(table, [])
    names = {str(row.values[key.name]): row.name for row in resolved.rows_of(table)}
    cells: list[Cell] = []

    def decide(
        command: str,
        case: str,
        row: dict[str, Any],
        new: dict[str, Any] | None,
        predicted: Outcome,
        set_columns: tuple[str, ...] = (),
    ) -> tuple[bool, str]:
        if expect is None:
            return predicted.allowed, predicted.detail
        context = CellContext(table, command, case, principal, row, new, world, set_columns)
        verdict = expect(context)
        return verdict, "allowed" if verdict else "denied"

    # SELECT: one query for all fixture rows of the table.
    visible, error = _run_select(runner, principal, table, key, [row[key.name] for row in rows])
    for row in rows:
        name = names.get(str(row[key.name]), str(row[key.name]))
        actual = error or (Outcome(True, "visible") if str(row[key.name]) in visible else Outcome(False, "hidden"))
        expected, detail = decide("select", name, row, None, evaluator.select(table, row, (key.name,)))
        cells.append(Cell(table, "select", name, principal.name, expected, detail, actual))
    # INSERT: each candidate row.
    for candidate in resolved.inserts:
        if candidate.table != table or (candidate.name, principal.name) not in candidates:
            continue
        new = candidates[(candidate.name, principal.name)]
        given = _with_self(candidate, principal) or {}
        predicted = evaluator.insert(table, new, tuple(filled(runner.schema.table(table), given, runner.schema)))
        actual = _run_write(runner, principal, "tester_insert", table=runner.schema.table(table), insert_values=given)
        expected, detail = decide("insert", candidate.name, new, None, predicted)
        cells.append(Cell(table, "insert", candidate.name, principal.name, expected, detail, actual))
    # UPDATE: each case on each row.
    for case, values in _update_cases(runner, table, resolved).items():
        for row in rows:
            name = names.get(str(row[key.name]), str(row[key.name]))
            new = {**row, **_jsonable(values)}
            predicted = evaluator.update(table, row, new, tuple(values), (key.name,))
            actual = _run_write(
                runner, principal, "tester_update", table=table, set_values=values, key=key, key_value=row[key.name]
            )
            expected, detail = decide("update", f"{case}:{name}", row, new, predicted, tuple(values))
            cells.append(Cell(table, "update", f"{case}:{name}", principal.name, expected, detail, actual))
    # DELETE: each row.
    for row in rows:
        name = names.get(str(row[key.name]), str(row[key.name]))
        predicted = evaluator.delete(table, row, (key.name,))
        actual = _run_write(runner, principal, "tester_delete", table=table, key=key, key_value=row[key.name])
        expected, detail = decide("delete", name, row, None, predicted)
        cells.append(Cell(table, "delete", name, principal.name, expected, detail, actual))
    return cells


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """Update values as the read-back JSON would show them (timestamps as ISO text)."""
    return {column: value.isoformat() if hasattr(value, "isoformat") else value for column, value in values.items()}


def _update_cases(runner: Runner, table: str, resolved: Resolved) -> dict[str, dict[str, Any]]:
    declared = resolved.updates.get(table)
    if declared:
        return declared
    # Default: "touch" the first non-key column the app may update, setting it
    # to a new value (a no-op value would never fire the guards).
    spec = runner.state.table(table)
    app_key = runner.project.role_of_kind("app")
    grant = spec.grant_for(app_key, "UPDATE")
    columns = [c for c in runner.schema.table(table).columns if c.name not in spec.primary_key]
    if grant is not None and grant.columns is not None:
        columns = [c for c in columns if c.name in grant.columns] or columns
    text_columns = [c for c in columns if c.type == "text"]
    column = (text_columns or columns)[0]
    return {"touch": {column.name: "rlsctl test touch" if column.type == "text" else None}}


def _run_select(
    runner: Runner, principal: Principal, table: str, key: Column, keys: list[Any]
) -> tuple[set[str], Outcome | None]:
    statement = runner.sql("tester_select", table=table, key=key, keys=keys)
    try:
        with runner.conn.transaction(force_rollback=True):
            runner.impersonate(principal)
            return {row[0] for row in runner.conn.execute(statement).fetchall()}, None
    except psycopg.Error as exc:
        return set(), _error_outcome(exc)


def _run_write(runner: Runner, principal: Principal, template: str, **context: Any) -> Outcome:
    if template == "tester_insert":
        table: Table = context["table"]
        full = filled(table, context["insert_values"], runner.schema)
        columns = [table.column(name) for name in full]
        typed = {column.name: sql_value(full[column.name], column.type) for column in columns}
        statement = runner.sql(template, table=table, columns=columns, values=typed, returning=False)
    elif template == "tester_update":
        table_name: str = context["table"]
        set_values: dict[str, Any] = context["set_values"]
        columns = [runner.schema.table(table_name).column(name) for name in set_values]
        typed = {column.name: sql_value(set_values[column.name], column.type) for column in columns}
        statement = runner.sql(
            template,
            table=table_name,
            columns=columns,
            values=typed,
            key=context["key"],
            key_value=context["key_value"],
        )
    else:
        statement = runner.sql(template, table=context["table"], key=context["key"], key_value=context["key_value"])
    try:
        with runner.conn.transaction(force_rollback=True):
            runner.impersonate(principal)
            cursor = runner.conn.execute(statement)
            affected = cursor.rowcount
    except psycopg.Error as exc:
        return _error_outcome(exc)
    if template == "tester_insert":
        return Outcome(True, "inserted")
    return Outcome(affected > 0, f"{affected} row{'s' if affected != 1 else ''}")


def _error_outcome(exc: psycopg.Error) -> Outcome:
    state = getattr(exc, "sqlstate", None)
    message = _first(exc)
    if state == INSUFFICIENT_PRIVILEGE or isinstance(exc, pgerrors.InsufficientPrivilege):
        return Outcome(False, f"error: {message}")
    return Outcome(False, f"unexpected error {state}: {message}")
