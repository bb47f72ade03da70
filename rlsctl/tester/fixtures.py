"""Fixture data for `rlsctl test`, resolved against the schema that exists.

The project declares named rows per table (`fixtures.rows`), candidate rows
for INSERT cells (`fixtures.inserts`), UPDATE cases (`fixtures.updates`) and
the principals to impersonate. Values may be:

- a plain YAML scalar, list (SQL array) or mapping (JSON);
- `"@name"`: the primary key of the fixture row called `name`;
- `"@self"` (inserts only): the acting principal's user id;
- `{ago: "100 days"}`: that long before now, in UTC, as timestamp columns hold it (docs/migrations.md);
- `{from_now: "30 days"}`: that long after now, in UTC (an expiry);
- `{sha256: "raw"}`: the lowercase hex SHA-256 of a text (an API key's hash).

Columns and tables that do not exist in this phase are dropped, and so are
rows whose references point at dropped rows; a table, column, row or role that
no phase has is an error naming the file and line (`check_names`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from rlsctl.errors import UsageError
from rlsctl.policy.model import Fixtures
from rlsctl.policy.project import Project
from rlsctl.schema.tables import Schema, Table

SELF = "@self"
AGO = re.compile(r"^\s*(\d+)\s*(day|days|hour|hours|minute|minutes)\s*$")
NAMESPACE = uuid.UUID("6f1c3f0e-7a55-4d0e-9b8f-2b7a5c1d4e90")


@dataclass(frozen=True)
class FixtureRow:
    table: str
    name: str
    values: dict[str, Any]  # column -> resolved Python value (SELF still a marker in inserts)


@dataclass(frozen=True)
class Resolved:
    rows: tuple[FixtureRow, ...]  # in load order (parents first)
    inserts: tuple[FixtureRow, ...]
    updates: dict[str, dict[str, dict[str, Any]]]  # table -> case -> column -> value
    keys: dict[str, Any]  # row name -> primary key value

    def rows_of(self, table: str) -> list[FixtureRow]:
        return [row for row in self.rows if row.table == table]


def _ago(spec: Any, where: str) -> dt.datetime:
    if not isinstance(spec, str) or not AGO.match(spec):
        raise UsageError(f"{where}: ago takes e.g. '100 days', '3 hours', got {spec!r}")
    amount, unit = AGO.match(spec).groups()  # type: ignore[union-attr]
    unit = unit.rstrip("s") + "s"
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return now - dt.timedelta(**{unit: int(amount)})


def primary_key_value(table: Table, name: str) -> Any:
    """A deterministic key for a fixture row that does not give one."""
    if len(table.primary_key) != 1:
        raise UsageError(f"fixtures: table {table.name!r} needs a single-column primary key for fixtures")
    column = table.column(table.primary_key[0])
    if column.type == "uuid":
        return str(uuid.uuid5(NAMESPACE, f"{table.name}/{name}"))
    if column.type in ("text", "character varying") or column.type.startswith(("character varying", "varchar")):
        return f"rlsctl-test-{name}"
    raise UsageError(
        f"fixtures: give {table.name}.{column.name} explicitly for row {name!r} "
        f"(cannot invent a value of type {column.type})"
    )


def resolve(fixtures: Fixtures, schema: Schema) -> Resolved:
    names = _all_names(fixtures)
    keys: dict[str, Any] = {}
    raw_rows: dict[str, tuple[str, dict[str, Any]]] = {}
    for table_name, rows in fixtures.rows.items():
        table = schema.get(table_name)
        if table is None:
            continue
        for name, values in rows.items():
            pk = table.primary_key[0] if len(table.primary_key) == 1 else None
            keys[name] = values[pk] if pk and pk in values else primary_key_value(table, name)
            raw_rows[name] = (table_name, values)
    kept = _drop_dangling(raw_rows, names)
    ordered = _load_order(kept, schema)
    rows = tuple(
        FixtureRow(table, name, _values(schema.table(table), name, values, keys, names, inserting=False))
        for name, (table, values) in ordered
    )
    inserts = tuple(
        FixtureRow(table_name, name, _values(schema.table(table_name), name, values, keys, names, inserting=True))
        for table_name, candidates in fixtures.inserts.items()
        if schema.has_table(table_name)
        for name, values in candidates.items()
        if _refs_present(values, kept, names)
    )
    updates: dict[str, dict[str, dict[str, Any]]] = {}
    for table_name, cases in fixtures.updates.items():
        if not schema.has_table(table_name):
            continue
        for case, values in cases.items():
            present = {
                column: _value(value, keys, names, f"fixtures.updates.{table_name}.{case}.{column}", inserting=False)
                for column, value in values.items()
                if schema.has_column(table_name, column)
            }
            # A case about columns this phase lacks has nothing to set.
            if present and _refs_present(values, kept, names):
                updates.setdefault(table_name, {})[case] = present
    return Resolved(rows, inserts, updates, keys)


def _all_names(fixtures: Fixtures) -> set[str]:
    seen: dict[str, str] = {}
    for table, rows in fixtures.rows.items():
        for name in rows:
            if name in seen:
                raise UsageError(f"fixtures: row name {name!r} is used in both {seen[name]} and {table}")
            seen[name] = table
    return set(seen)


def _refs(values: dict[str, Any]) -> set[str]:
    return {
        value[1:]
        for value in values.values()
        if isinstance(value, str) and value.startswith("@") and not value.startswith("@@") and value != SELF
    }


def _refs_present(values: dict[str, Any], kept: dict[str, tuple[str, dict[str, Any]]], names: set[str]) -> bool:
    for ref in _refs(values):
        if ref not in names:
            raise UsageError(f"fixtures: reference @{ref} names no fixture row")
        if ref not in kept:
            return False
    return True


def _drop_dangling(
    raw: dict[str, tuple[str, dict[str, Any]]], names: set[str]
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Rows whose references lead to rows of absent tables cannot be loaded in this phase."""
    kept = dict(raw)
    changed = True
    while changed:
        changed = False
        for name, (_, values) in list(kept.items()):
            if not _refs_present(values, kept, names):
                del kept[name]
                changed = True
    return kept


def _load_order(
    kept: dict[str, tuple[str, dict[str, Any]]], schema: Schema
) -> list[tuple[str, tuple[str, dict[str, Any]]]]:
    """Rows sorted so that every row comes after the rows it references."""
    ordered: list[tuple[str, tuple[str, dict[str, Any]]]] = []
    placed: set[str] = set()
    pending = dict(kept)
    while pending:
        ready = [name for name, (_, values) in pending.items() if _refs(values) <= placed]
        if not ready:
            raise UsageError(f"fixtures: rows reference each other in a cycle: {', '.join(sorted(pending))}")
        for name in ready:
            ordered.append((name, pending.pop(name)))
            placed.add(name)
    return ordered


def _values(
    table: Table, name: str, values: dict[str, Any], keys: dict[str, Any], names: set[str], inserting: bool
) -> dict[str, Any]:
    resolved = {
        column: _value(value, keys, names, f"fixtures {table.name}.{name}.{column}", inserting)
        for column, value in values.items()
        if table.has_column(column)
    }
    if len(table.primary_key) == 1 and table.primary_key[0] not in resolved and name in keys:
        resolved[table.primary_key[0]] = keys[name]
    if inserting and len(table.primary_key) == 1 and table.primary_key[0] not in resolved:
        resolved[table.primary_key[0]] = primary_key_value(table, name)
    return resolved


def _value(value: Any, keys: dict[str, Any], names: set[str], where: str, inserting: bool) -> Any:
    if isinstance(value, str) and value.startswith("@@"):
        return value[1:]
    if value == SELF:
        if not inserting:
            raise UsageError(f"{where}: @self is only meaningful in fixtures.inserts")
        return SELF
    if isinstance(value, str) and value.startswith("@"):
        ref = value[1:]
        if ref not in names:
            raise UsageError(f"{where}: @{ref} names no fixture row")
        return keys[ref]
    if isinstance(value, dict) and set(value) == {"ago"}:
        return _ago(value["ago"], where)
    if isinstance(value, dict) and set(value) == {"from_now"}:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return now + (now - _ago(value["from_now"], where))
    if isinstance(value, dict) and set(value) == {"sha256"}:
        if not isinstance(value["sha256"], str):
            raise UsageError(f"{where}: sha256 takes a text, got {value['sha256']!r}")
        return sha256_hex(value["sha256"])
    return value


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sql_value(value: Any, column_type: str) -> Any:
    """The Python value to quote for a column: JSON text for json/jsonb mappings and lists."""
    if column_type in ("json", "jsonb") and isinstance(value, dict | list | bool | int | float):
        return json.dumps(value, sort_keys=True)
    return value


def filled(table: Table, values: dict[str, Any], schema: Schema) -> dict[str, Any]:
    """Give NOT NULL columns without a default a plain value, so short fixtures stay valid."""
    result = dict(values)
    enums = dict(schema.enums)
    for column in table.columns:
        if column.name in result or not column.not_null or column.has_default:
            continue
        enum = enums.get(column.type.strip('"'))
        result[column.name] = enum[0] if enum else _placeholder(column.type, column.name)
    return result


def _placeholder(column_type: str, name: str) -> Any:
    if column_type.endswith("[]"):
        return []
    if column_type.startswith(("timestamp", "date")):
        return dt.datetime(2026, 1, 1)
    if column_type in ("integer", "bigint", "smallint", "numeric", "real", "double precision"):
        return 0
    if column_type == "boolean":
        return False
    if column_type in ("json", "jsonb"):
        return {}
    return f"fixture {name}"


def check_names(project: Project, schema: Schema) -> None:
    """Refuse a fixture naming a table, column, row or role that does not exist in any phase
    (`schema`: every table and column the migrations ever create, and the live ones).

    Without this a typo (`org_idd:`) is silently dropped with the cases that needed it: a
    table or column that a *later* phase creates is skipped in earlier phases on purpose,
    one that no phase creates is a mistake."""
    fixtures = project.fixtures
    if fixtures is None:
        return
    names = _all_names(fixtures)
    for section, tables in (("rows", fixtures.rows), ("inserts", fixtures.inserts)):
        for table_name, rows in tables.items():
            _check_table(project, schema, ("fixtures", section, table_name), table_name)
            for name, values in rows.items():
                for column, value in values.items():
                    path = ("fixtures", section, table_name, name, column)
                    _check_column(project, schema, path, table_name, column)
                    _check_reference(project, path, value, names)
    for table_name, cases in fixtures.updates.items():
        _check_table(project, schema, ("fixtures", "updates", table_name), table_name)
        for case, values in cases.items():
            for column, value in values.items():
                path = ("fixtures", "updates", table_name, case, column)
                _check_column(project, schema, path, table_name, column)
                _check_reference(project, path, value, names)
    for name, principal in fixtures.principals.items():
        if principal.role not in project.roles:
            raise project.error(
                ("fixtures", "principals", name, "role"),
                f"principal {name!r}: no role {principal.role!r} is declared "
                f"(roles: {', '.join(sorted(project.roles))})",
            )
        if principal.user and principal.user not in names:
            raise project.error(
                ("fixtures", "principals", name, "user"),
                f"principal {name!r}: user {principal.user!r} names no fixture row",
            )


def _check_table(project: Project, schema: Schema, path: tuple[str, ...], table: str) -> None:
    if not schema.has_table(table):
        raise project.error(path, f"fixtures: no phase creates a table {table!r}")


def _check_column(project: Project, schema: Schema, path: tuple[str, ...], table: str, column: str) -> None:
    if not schema.has_column(table, column):
        known = ", ".join(c.name for c in schema.table(table).columns)
        raise project.error(path, f"fixtures: table {table} has no column {column!r} in any phase (columns: {known})")


def _check_reference(project: Project, path: tuple[str, ...], value: Any, names: set[str]) -> None:
    is_reference = isinstance(value, str) and value.startswith("@") and not value.startswith("@@")
    if is_reference and value != SELF and value[1:] not in names:
        raise project.error(path, f"fixtures: {value} names no fixture row")
