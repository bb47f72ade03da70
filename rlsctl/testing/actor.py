"""A principal inside a test's transaction: run statements as it, and assert what it may do.

Every statement runs in a savepoint of its own, so a denial (an error) leaves the actor usable
for the next statement. What an actor writes stays visible until its `with` block ends; the
block's savepoint is then rolled back (`as_owner` keeps its writes until the test ends).

Denied means what PostgreSQL makes of a denial under RLS (docs/access-matrix.md, "How a denial
looks"): an error with SQLSTATE 42501 (a failed WITH CHECK, a missing privilege), or an UPDATE,
DELETE or SELECT that touches no row. Any other error is a failure, never a denial: a typo or a
constraint must not pass as a policy doing its job. For the same reason, an operation on a row
(`Delete("membership", "m_owner")`) that touches nothing only counts as denied if that row
exists, which is checked as the connecting role; a SELECT, UPDATE or DELETE of the test's own
SQL, only if it touches some row when run again as the owner role with RLS lifted (in a
savepoint, rolled back), since a typo in its WHERE clause would touch nothing either.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import psycopg

from rlsctl.schema.tables import Table
from rlsctl.tester.fixtures import sql_value
from rlsctl.testing import explain, queries
from rlsctl.testing.explain import Statement
from rlsctl.testing.ops import Delete, Insert, Operation, Select, Update
from rlsctl.testing.prepared import Prepared

INSUFFICIENT_PRIVILEGE = "42501"
# Commands that RLS denies by filtering rows away rather than by raising.
FILTERED = ("SELECT", "UPDATE", "DELETE", "MERGE")
# Of those, the ones a test's own SQL is run again as the owner for, to see that they touch some
# row: not MERGE, which as the owner could insert what it did not find.
CHECKED_AS_OWNER = ("SELECT", "UPDATE", "DELETE")


@dataclass(frozen=True)
class Outcome:
    rows: int
    status: str  # the command tag, e.g. "UPDATE 0" (empty after an error)
    error: psycopg.Error | None

    @property
    def command(self) -> str | None:
        return self.status.split()[0] if self.status else None


class Actor:
    """One principal; the object a `with rlsctl_tx.as_...()` block yields."""

    def __init__(self, prepared: Prepared, principal: str, role: str, authenticated: bool = True) -> None:
        self._prepared = prepared
        self.principal = principal  # how messages name it, e.g. "ADMIN of <tenant table> 'x' (user 'u', role app)"
        self.role = role  # the PostgreSQL role it acts as
        self.authenticated = authenticated  # False only for an API key that did not authenticate

    def __repr__(self) -> str:
        return f"<Actor {self.principal}>"

    # -- running statements ---------------------------------------------------------------------

    def execute(self, statement: str | Operation, params: Any = None) -> psycopg.Cursor[Any]:
        """Run a statement as this principal; its effect stays until the `with` block ends.
        A database error is raised as psycopg raises it (the actor stays usable)."""
        prepared = self.statement(statement, params)
        with self._prepared.conn.transaction():
            return self._prepared.conn.execute(prepared.sql, prepared.params)

    def visible_keys(self, table: str) -> set[str]:
        """The keys (as text) of every row of `table` this principal can see."""
        return self._keys(self._lookup(table, None, None))

    def statement(self, statement: str | Operation, params: Any = None) -> Statement:
        """The SQL an operation renders to (through rlsctl's templates), or the test's own SQL,
        with the command and table the messages name."""
        if isinstance(statement, str):
            command, table = explain.classify(statement)
            return Statement(statement, command, table, params)
        if params is not None:
            raise TypeError("parameters go with SQL text: an operation carries its own values")
        return self._render(statement)

    # -- assertions -----------------------------------------------------------------------------

    def assert_visible(self, table: str, key: Any = None, *, where: Mapping[str, Any] | None = None) -> None:
        """The row with `key` (or some row whose columns hold `where`'s values) is visible."""
        __tracebackhide__ = True
        lookup = self._lookup(table, key, where)
        if self._keys(lookup):
            return
        problem = f"{_what(lookup, where)} is not visible, expected it to be"
        if not self._exists(lookup):
            problem += " (and no such row exists at all: check the key or the test's data)"
        self._fail(lookup, problem)

    def assert_not_visible(self, table: str, key: Any = None, *, where: Mapping[str, Any] | None = None) -> None:
        """The row with `key` (or every row whose columns hold `where`'s values) is hidden; the row
        must exist, or hiding it would prove nothing."""
        __tracebackhide__ = True
        lookup = self._lookup(table, key, where)
        seen = self._keys(lookup)
        if seen:
            shown = "" if lookup.key is not None else f" (keys {sorted(seen)})"
            self._fail(lookup, f"{_what(lookup, where)} is visible{shown}, expected it hidden")
        if not self._exists(lookup):
            self._fail(lookup, f"{_what(lookup, where)} does not exist at all, so hiding it proves nothing")

    def assert_denied(self, statement: str | Operation, params: Any = None) -> None:
        """The statement raises 42501 (insufficient privilege, a failed WITH CHECK) or, for SELECT,
        UPDATE, DELETE and MERGE, touches no row although it is aimed at one (see the module's
        docstring). It is rolled back either way."""
        __tracebackhide__ = True
        prepared = self.statement(statement, params)
        outcome = self._run(prepared, keep=False)
        if outcome.error is not None:
            if outcome.error.sqlstate == INSUFFICIENT_PRIVILEGE:
                return
            self._fail(prepared, f"expected a denial (SQLSTATE 42501), got an error: {_error(outcome.error)}")
        command = outcome.command or prepared.command
        if command in FILTERED and outcome.rows == 0:
            self._check_aimed_at_a_row(prepared, command)
            return
        self._fail(prepared, f"expected it to be denied, but it was allowed ({_rows(outcome.rows)})")

    def assert_rows_affected(self, statement: str | Operation, n: int, params: Any = None) -> None:
        """The statement succeeds and affects (or, for SELECT, returns) exactly `n` rows; its
        effect stays until the `with` block ends."""
        __tracebackhide__ = True
        prepared = self.statement(statement, params)
        outcome = self._run(prepared, keep=True)
        if outcome.error is not None:
            self._fail(prepared, f"expected {_rows(n)}, got an error: {_error(outcome.error)}")
        if outcome.rows != n:
            self._fail(prepared, f"expected {_rows(n)}, got {_rows(outcome.rows)}")

    # -- helpers --------------------------------------------------------------------------------

    def _render(self, operation: Operation) -> Statement:
        prepared = self._prepared
        runner = prepared.runner
        table = prepared.table(operation.table)
        _check_values(table, operation)
        if isinstance(operation, Insert):
            sql = runner.insert_sql(table, prepared.values(operation.values))
            return Statement(sql.encode(), operation.command, table.name)
        key = prepared.key(operation.key)
        if isinstance(operation, Select):
            sql = runner.select_sql(table.name, [key])
        elif isinstance(operation, Update):
            sql = runner.update_sql(table.name, prepared.values(operation.values), key)
        else:
            assert isinstance(operation, Delete)
            sql = runner.delete_sql(table.name, key)
        return Statement(sql.encode(), operation.command, table.name, key=str(key))

    def _lookup(self, table_name: str, key: Any, where: Mapping[str, Any] | None) -> Statement:
        """A SELECT of the keys of the rows a visibility assertion is about."""
        if key is not None and where is not None:
            raise TypeError("give a key or `where`, not both")
        prepared = self._prepared
        table = prepared.table(table_name)
        if key is not None:
            return self._render(Select(table.name, key))
        values = prepared.values(where or {})
        _check_columns(table, values, "where=")
        columns = [table.column(name) for name in values]
        typed = {column.name: sql_value(values[column.name], column.type) for column in columns}
        sql = queries.render(
            "select_where", schema=prepared.project.schema_name, table=table.name,
            key=prepared.runner.key(table.name), columns=columns, values=typed,
        )  # fmt: skip
        return Statement(sql, "SELECT", table.name)

    def _run(self, statement: Statement, keep: bool) -> Outcome:
        """Run in a savepoint: released when `keep` (the effect stays), else rolled back."""
        conn = self._prepared.conn
        try:
            with conn.transaction(force_rollback=not keep):
                cursor = conn.execute(statement.sql, statement.params)
                return Outcome(max(cursor.rowcount, 0), cursor.statusmessage or "", None)
        except psycopg.Error as exc:
            return Outcome(0, "", exc)

    def _check_aimed_at_a_row(self, statement: Statement, command: str) -> None:
        """Fail if a statement that touched no row was aimed at none either: RLS denying it and a
        typo in its key or WHERE clause look the same (0 rows). An operation's row must exist (as
        the connecting role sees it); a statement of the test's own must touch a row as the owner."""
        __tracebackhide__ = True
        if statement.key is not None:
            if not self._exists(self._lookup(statement.table or "", statement.key, None)):
                self._fail(statement, f"row {statement.key!r} does not exist at all, so a denial proves nothing")
            return
        if command in CHECKED_AS_OWNER and self._touches_nothing_as_owner(statement):
            owner = self._prepared.state.owner
            self._fail(
                statement,
                f"it touches no row even as the owner role {owner} with RLS lifted, so a denial proves nothing: "
                "check its WHERE clause and parameters (a key with a typo?)",
            )

    def _touches_nothing_as_owner(self, statement: Statement) -> bool:
        """Run as the owner role with FORCE lifted (a savepoint, rolled back), the statement touches
        no row. An error there tells nothing either way (say, a function only the application role
        may call; a per-row trigger or constraint only fails on a row it reached): False."""
        try:
            with self._prepared.as_owner_role() as conn:
                return conn.execute(statement.sql, statement.params).rowcount == 0
        except psycopg.Error:
            return False

    def _keys(self, lookup: Statement) -> set[str]:
        with self._prepared.conn.transaction(force_rollback=True):
            return {row[0] for row in self._prepared.conn.execute(lookup.sql).fetchall()}

    def _exists(self, lookup: Statement) -> bool:
        with self._prepared.as_connecting_role() as conn:
            return conn.execute(lookup.sql).fetchone() is not None

    def _fail(self, statement: Statement, problem: str) -> NoReturn:
        __tracebackhide__ = True
        policies = None
        if statement.table is not None and self._prepared.schema.has_table(statement.table):
            policies = explain.policies_for(
                self._prepared.conn, self._prepared.project.schema_name, statement.table, self.role, statement.command
            )
        raise AssertionError(explain.message(self.principal, self.role, statement, problem, policies))


def _check_values(table: Table, operation: Operation) -> None:
    """The columns an Insert or Update sets exist (and an Update sets some)."""
    if isinstance(operation, Insert | Update):
        _check_columns(table, operation.values, type(operation).__name__)
    if isinstance(operation, Update) and not operation.values:
        raise ValueError(f'Update on "{table.name}": no column to set (give it `values`)')


def _check_columns(table: Table, values: Mapping[str, Any], what: str) -> None:
    """A ValueError naming the table, the first unknown column and the columns there are, rather
    than a KeyError from deep inside the templates."""
    unknown = [name for name in values if not table.has_column(name)]
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, table.column_names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    columns = ", ".join(f'"{column}"' for column in table.column_names)
    raise ValueError(f'{what} on "{table.name}": no column {name!r}{hint}; its columns are {columns}')


def _what(lookup: Statement, where: Mapping[str, Any] | None) -> str:
    if lookup.key is not None:
        return f"row {lookup.key!r}"
    if where:
        return "a row where " + ", ".join(f"{column} = {value!r}" for column, value in where.items())
    return "any row"


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _error(exc: psycopg.Error) -> str:
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else type(exc).__name__
    return f"{exc.sqlstate or '?'} {first}"
