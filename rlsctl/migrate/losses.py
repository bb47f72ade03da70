"""What a rollback would destroy: tables dropped, columns dropped or retyped, rows deleted.

`rollback --to 0` used to drop tables holding rows without a word. The down scripts are run
in a savepoint that is always rolled back, and every table outside PostgreSQL's own schemas
is compared before and after them: tables and columns that go, columns whose type changes
(`varchar(3)` truncates), and row counts (a TRUNCATE or DELETE of a table that stays). Forced
row-level security is lifted inside the savepoint, so the tables' owner (or a member of it)
counts every row; a table this session still cannot count whole counts as holding data:
nobody can say it does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from rlsctl.pg import statements
from rlsctl.pg.templates import render_template
from rlsctl.policy.project import Project

Table = tuple[str, str]  # (schema, name)


@dataclass(frozen=True)
class Loss:
    table: str  # the table's name; schema-qualified outside the project's schema
    column: str | None  # None: the whole table (or, with deleted_only, some of its rows)
    held: int | None  # rows (or values of the column); None: this session cannot count them
    audit: bool = False  # the table holds the audit history (tables: audit_log: true)
    deleted_only: bool = False  # the table stays; a down script deletes `held` of its rows
    retyped: str = ""  # the column stays with another type ("varchar(255) -> varchar(3)")
    at: Table = ("", "")  # (schema, name) of the table

    def __str__(self) -> str:
        if self.deleted_only:
            held = "rows" if self.held is None else f"{self.held} row{'s' if self.held != 1 else ''}"
            return f"{held} deleted from table {self.table}"
        what = f"column {self.table}.{self.column}" if self.column else f"table {self.table}"
        if self.retyped:
            what += f" retyped {self.retyped}"
        if self.held is None:
            return f"{what} (its rows are hidden from this session by row-level security)"
        unit = "value" if self.column else "row"
        return f"{what} ({self.held} {unit}{'s' if self.held != 1 else ''})"

    @property
    def key(self) -> tuple[str, str | None, bool]:
        return (self.table, self.column, self.deleted_only)


@dataclass(frozen=True)
class _Snapshot:
    columns: dict[Table, dict[str, str]]  # table -> column -> type
    counted: dict[Table, bool]
    forced: set[Table]


def probe(conn: psycopg.Connection, project: Project, revert: Callable[[], None]) -> list[Loss]:
    """Run `revert` in a savepoint that is always rolled back; what it would destroy that holds data.
    (rlsctl's helper schema is rlsctl's own bookkeeping: a rollback unrecords phases there.)"""
    with conn.transaction(force_rollback=True):
        before = _snapshot(conn, project)
        _lift_forced_rls(conn, project, before)
        rows_before = {table: _count(conn, project, table, None) for table in before.columns if before.counted[table]}
        rows_before = {table: count for table, count in rows_before.items() if count is not None}
        revert()
        after = _snapshot(conn, project)
        rows_after = {table: _count(conn, project, table, None) for table in rows_before if table in after.columns}
    dropped = [table for table in before.columns if table not in after.columns]
    changed = [
        (table, column, kind, after.columns[table].get(column))
        for table in before.columns if table in after.columns
        for column, kind in before.columns[table].items()
        if after.columns[table].get(column) != kind
    ]  # fmt: skip
    found = _dropped_tables(project, dropped, rows_before, before)
    found += _deleted_rows(project, rows_before, rows_after)
    found += _changed_columns(conn, project, before, changed)
    return found


def _snapshot(conn: psycopg.Connection, project: Project) -> _Snapshot:
    rows = [row for row in statements.run(conn, "relation_columns") if row["schema"] != project.helper_schema]
    columns = {(r["schema"], r["name"]): dict(c.split(" ", 1) for c in r["columns"]) for r in rows}
    return _Snapshot(
        columns,
        {(r["schema"], r["name"]): r["counted"] for r in rows},
        {(r["schema"], r["name"]) for r in rows if r["forced"]},
    )


def _lift_forced_rls(conn: psycopg.Connection, project: Project, snapshot: _Snapshot) -> None:
    """NO FORCE ROW LEVEL SECURITY where this session may (one savepoint each: where it may
    not, the table is simply not counted)."""
    for schema, name in sorted(snapshot.forced):
        if not snapshot.counted[(schema, name)]:
            continue
        sql = render_template("ops/rollback_unforce.sql.j2", project.root / "templates", schema=schema, table=name)
        try:
            with conn.transaction():
                conn.execute(sql.encode())
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.LockNotAvailable):
            # Not ours to lift, or busy: the table is not counted, so it counts as holding data.
            snapshot.counted[(schema, name)] = False


def _dropped_tables(project: Project, dropped: list[Table], rows: dict[Table, int], before: _Snapshot) -> list[Loss]:
    found: list[Loss] = []
    for table in sorted(dropped):
        held = rows.get(table)  # None: not counted (hidden, or not readable by this session)
        if held != 0:
            found.append(Loss(_label(project, table), None, held, _is_audit_log(project, table), at=table))
    return found


def _deleted_rows(project: Project, before: dict[Table, int], after: dict[Table, int | None]) -> list[Loss]:
    return [
        Loss(_label(project, table), None, (before[table] or 0) - count, _is_audit_log(project, table),
             deleted_only=True, at=table)
        for table, count in sorted(after.items())
        if count is not None and before[table] is not None and count < before[table]
    ]


def _changed_columns(
    conn: psycopg.Connection, project: Project, before: _Snapshot, changed: list[tuple[Table, str, str, str | None]]
) -> list[Loss]:
    """Columns dropped or retyped: counted in their own savepoint (forced RLS lifted again)."""
    found: list[Loss] = []
    with conn.transaction(force_rollback=True):
        _lift_forced_rls(conn, project, before)
        for table, column, kind, now in sorted(changed, key=lambda item: item[:2]):
            held = _count(conn, project, table, column) if before.counted[table] else None
            if held != 0:
                retyped = f"{kind} -> {now}" if now is not None else ""
                found.append(Loss(_label(project, table), column, held, retyped=retyped, at=table))
    return found


def _label(project: Project, table: Table) -> str:
    schema, name = table
    return name if schema == project.schema_name else f"{schema}.{name}"


def _is_audit_log(project: Project, table: Table) -> bool:
    schema, name = table
    decl = project.tables.get(name) if schema == project.schema_name else None
    return decl is not None and decl.audit_log


def _count(conn: psycopg.Connection, project: Project, table: Table, column: str | None) -> int | None:
    """Rows (or values of `column`); None when this session may not read the table at all."""
    schema, name = table
    sql = render_template(
        "ops/count_values.sql.j2", project.root / "templates", schema=schema, table=name, column=column
    )
    try:
        with conn.transaction():
            row = conn.execute(sql.encode()).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return None
    return int(row[0]) if row else 0


def grown(confirmed: list[Loss], now: list[Loss]) -> list[Loss]:
    """What the rollback would now destroy beyond what was confirmed (rows written meanwhile)."""
    before = {loss.key: loss for loss in confirmed}
    found: list[Loss] = []
    for loss in now:
        old = before.get(loss.key)
        if old is None or (loss.held is None) != (old.held is None) or (loss.held or 0) > (old.held or 0):
            found.append(loss)
    return found
