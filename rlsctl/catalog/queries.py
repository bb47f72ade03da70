"""Read the live catalog: one plain `.sql` file per object kind, loaded into frozen objects.

The queries read `pg_catalog` directly (never information_schema, which hides
grants of roles the session is not a member of). Each returns rows of one
shape; the functions here turn them into the objects of `rlsctl.schema.tables` and
of this module, each with a stable key.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import psycopg
from psycopg.rows import dict_row

from rlsctl.pg.sql import trigger_when
from rlsctl.resources import catalog_sql_dir
from rlsctl.schema.tables import Column, ExtensionSite, ForeignKey, Index, Schema, Table
from rlsctl.state.objects import Trigger


@cache
def query_text(name: str) -> str:
    return (catalog_sql_dir() / f"{name}.sql").read_text(encoding="utf-8")


def fetch(conn: psycopg.Connection, name: str, **params: Any) -> list[dict[str, Any]]:
    """Run catalog query `name` (rlsctl/catalog/sql/<name>.sql) and return its rows as dicts."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query_text(name), params or None)
        return list(cur.fetchall())


def fetch_many(conn: psycopg.Connection, queries: list[tuple[str, dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """Several catalog queries in one round trip (pipeline mode), results in order."""
    cursors = [conn.cursor(row_factory=dict_row) for _ in queries]
    try:
        with conn.pipeline():
            for cursor, (name, params) in zip(cursors, queries, strict=True):
                cursor.execute(query_text(name), params or None)
        return [list(cursor.fetchall()) for cursor in cursors]
    finally:
        for cursor in cursors:
            cursor.close()


# -- live objects ----------------------------------------------------------------


@dataclass(frozen=True)
class LiveTable:
    name: str
    owner: str
    rls_enabled: bool
    rls_forced: bool
    kind: str
    schema: str = ""


@dataclass(frozen=True)
class LivePolicy:
    table: str
    name: str
    command: str
    permissive: bool
    roles: tuple[str, ...]
    using: str | None
    check: str | None
    functions: tuple[str, ...] = ()  # "schema.name(arg types)" of the functions it calls

    @property
    def key(self) -> str:
        return f"{self.table}.{self.name}"


@dataclass(frozen=True)
class LiveGrant:
    table: str
    grantee: str
    privilege: str
    column: str | None = None  # None: table-level
    grantable: bool = False  # WITH GRANT OPTION
    grantor: str | None = None  # None: the table owner
    schema: str = ""
    acts_as_grantor: bool = True  # the session may SET ROLE to the grantor
    sequence: bool = False  # on a sequence (table_privileges.sql reads them too)

    @property
    def key(self) -> str:
        target = self.table if self.column is None else f"{self.table}.{self.column}"
        by = "" if self.grantor is None else f" (granted by {self.grantor})"
        return f"{self.privilege} on {target} to {self.grantee}{by}"


@dataclass(frozen=True)
class LiveFunction:
    name: str
    args: str
    arg_types: str
    returns: str
    owner: str
    security_definer: bool
    volatility: str
    config: tuple[str, ...]
    language: str
    body: str
    executors: tuple[str, ...]  # roles other than the owner that may execute it
    from_extension: bool
    owner_executes: bool = True  # the owner's own EXECUTE (revoking it breaks SECURITY DEFINER callers)
    acts_as_owner: bool = True  # the session may change its grants (superuser or member of the owner)
    leakproof: bool = False
    strict: bool = False  # RETURNS NULL ON NULL INPUT


@dataclass(frozen=True)
class LiveRole:
    name: str
    superuser: bool
    bypassrls: bool
    login: bool
    createrole: bool
    member_of: tuple[str, ...]
    createdb: bool = False
    comment: str | None = None


@dataclass(frozen=True)
class CurrentRole:
    name: str
    superuser: bool
    bypassrls: bool
    createrole: bool

    @property
    def bypasses_rls(self) -> bool:
        return self.superuser or self.bypassrls


# -- readers -------------------------------------------------------------------------


def current_role(conn: psycopg.Connection) -> CurrentRole:
    row = fetch(conn, "current_role")[0]
    return CurrentRole(row["rolname"], row["rolsuper"], row["rolbypassrls"], row["rolcreaterole"])


def read_schema(conn: psycopg.Connection, schema: str) -> Schema:
    """Tables, columns, keys, indexes and enums of `schema` as the server has them."""
    one = {"schema": schema}
    column_rows, constraint_rows, index_rows, table_rows, enum_rows, site_rows = fetch_many(
        conn,
        [("columns", one), ("constraints", one), ("indexes", one), ("tables", {"schemas": [schema]}), ("enums", one),
         ("extension_sites", {})],
    )  # fmt: skip
    columns: dict[str, list[Column]] = {}
    for row in column_rows:
        column = Column(row["name"], row["type"], row["not_null"], row["has_default"], row["sequence"])
        columns.setdefault(row["table_name"], []).append(column)
    primary: dict[str, tuple[str, ...]] = {}
    foreign: dict[str, list[ForeignKey]] = {}
    for row in constraint_rows:
        if row["kind"] == "p":
            primary[row["table_name"]] = tuple(row["columns"])
        elif row["kind"] == "f":
            fk = ForeignKey(row["name"], tuple(row["columns"]), row["ref_table"], tuple(row["ref_columns"]))
            foreign.setdefault(row["table_name"], []).append(fk)
    indexes: dict[str, list[Index]] = {}
    for row in index_rows:
        index = Index(row["name"], tuple(c for c in row["columns"] if c is not None), row["is_unique"])
        indexes.setdefault(row["table_name"], []).append(index)
    tables = tuple(
        Table(
            name=row["name"],
            columns=tuple(columns.get(row["name"], ())),
            primary_key=primary.get(row["name"], ()),
            foreign_keys=tuple(foreign.get(row["name"], ())),
            indexes=tuple(indexes.get(row["name"], ())),
        )
        for row in table_rows
    )
    enums = tuple((row["name"], tuple(row["labels"])) for row in enum_rows)
    sites = tuple(
        ExtensionSite(row["name"], row["schema"], tuple(row["writers"]), row["owner_is_session"], row["movable"])
        for row in site_rows
    )
    return Schema(name=schema, tables=tables, enums=enums, extensions=sites)


def tables(conn: psycopg.Connection, schema: str) -> dict[str, LiveTable]:
    return {row["name"]: LiveTable(**row) for row in fetch(conn, "tables", schemas=[schema])}


def live_policy(row: dict[str, Any]) -> LivePolicy:
    return LivePolicy(
        table=row["table_name"],
        name=row["name"],
        command=row["command"],
        permissive=row["permissive"],
        roles=tuple(row["roles"]),
        using=row["using_expr"],
        check=row["check_expr"],
        functions=tuple(row.get("functions") or ()),
    )


def policies(conn: psycopg.Connection, schema: str) -> list[LivePolicy]:
    return [live_policy(row) for row in fetch(conn, "policies", schemas=[schema])]


def live_grant(row: dict[str, Any]) -> LiveGrant:
    """A row of table_privileges.sql or column_privileges.sql."""
    return LiveGrant(
        table=row["table_name"],
        grantee=row["grantee"],
        privilege=row["privilege"],
        column=row.get("column_name"),
        grantable=row["grantable"],
        grantor=row["grantor"],
        schema=row["schema"],
        acts_as_grantor=row["acts_as_grantor"],
        sequence=bool(row.get("is_sequence")),
    )


def grants(conn: psycopg.Connection, schema: str) -> list[LiveGrant]:
    found = [live_grant(row) for row in fetch(conn, "table_privileges", schemas=[schema])]
    found += [live_grant(row) for row in fetch(conn, "column_privileges", schemas=[schema])]
    return found


def live_function(row: dict[str, Any]) -> LiveFunction:
    return LiveFunction(
        name=row["name"],
        args=row["args"],
        arg_types=row["arg_types"],
        returns=row["returns"],
        owner=row["owner"],
        security_definer=row["security_definer"],
        volatility=row["volatility"],
        config=tuple(row["config"] or ()),
        language=row["language"],
        body=row["body"],
        executors=tuple(row["executors"]),
        from_extension=row["from_extension"],
        owner_executes=row["owner_executes"],
        acts_as_owner=row["acts_as_owner"],
        leakproof=bool(row.get("leakproof")),
        strict=bool(row.get("strict")),
    )


def functions(conn: psycopg.Connection, schema: str) -> list[LiveFunction]:
    return [live_function(row) for row in fetch(conn, "functions", schema=schema)]


def live_trigger(row: dict[str, Any], helper_schema: str | None = None) -> Trigger:
    """A row of triggers.sql as the trigger object drift compares; `ours` when it calls a
    function of `helper_schema`."""
    fields = dict(row)
    fields["table"] = fields.pop("table_name")
    has_when = fields.pop("has_when")
    return Trigger(
        **fields | {
            "columns": tuple(row["columns"]),
            "when": trigger_when(row["definition"]) if has_when else None,
            "ours": row["function_schema"] == helper_schema,
        }
    )


def triggers(conn: psycopg.Connection, schema: str, helper_schema: str | None = None) -> list[Trigger]:
    return [live_trigger(row, helper_schema) for row in fetch(conn, "triggers", schema=schema)]


def live_role(row: dict[str, Any]) -> LiveRole:
    return LiveRole(
        name=row["name"],
        superuser=row["superuser"],
        bypassrls=row["bypassrls"],
        login=row["login"],
        createrole=row["createrole"],
        member_of=tuple(row["member_of"]),
        createdb=row["createdb"],
        comment=row["comment"],
    )


def roles(conn: psycopg.Connection, prefix: str, names: tuple[str, ...] = ()) -> list[LiveRole]:
    """Roles whose names start with `prefix` (unless it is empty), or are in `names`."""
    return [live_role(row) for row in fetch(conn, "roles", prefix=prefix, names=list(names))]


@dataclass(frozen=True)
class LiveSchemaPrivilege:
    schema: str
    owner: str
    grantee: str
    privilege: str


def schemas(conn: psycopg.Connection, names: list[str]) -> dict[str, str]:
    """Schema name -> owner, for the schemas that exist."""
    return {row["name"]: row["owner"] for row in fetch(conn, "schemas", schemas=names)}


def schema_privileges(conn: psycopg.Connection, names: list[str]) -> list[LiveSchemaPrivilege]:
    return [LiveSchemaPrivilege(**row) for row in fetch(conn, "schema_privileges", schemas=names)]


@dataclass(frozen=True)
class LiveDefaultPrivilege:
    """One privilege that objects `creator` creates later give `grantee` (schema None: everywhere)."""

    creator: str
    objtype: str
    schema: str | None
    grantee: str
    privilege: str
    grantable: bool
    repairable: bool = True  # the session may ALTER DEFAULT PRIVILEGES FOR ROLE creator


def default_privileges(
    conn: psycopg.Connection, roles: list[str], grantees: list[str] | None = None, schemas: list[str] | None = None
) -> list[LiveDefaultPrivilege]:
    """Default privileges of `roles` in full, and other roles' explicit ones that give
    `grantees` or PUBLIC something globally or in `schemas`."""
    rows = fetch(conn, "default_privileges", roles=roles, grantees=grantees or [], schemas=schemas or [])
    return [LiveDefaultPrivilege(**row) for row in rows]


def installed_extensions(conn: psycopg.Connection) -> dict[str, str]:
    """Extension name -> the schema it is installed in."""
    return {row["name"]: row["schema"] for row in fetch(conn, "installed_extensions")}


def schema_owner(conn: psycopg.Connection, schema: str) -> str | None:
    rows = fetch(conn, "schema_exists", schema=schema)
    return rows[0]["owner"] if rows else None


def extensions(conn: psycopg.Connection, names: list[str]) -> dict[str, str | None]:
    """Extension name -> the schema it is installed in, None where it is only available on
    the server (absent: not available at all)."""
    return {row["name"]: row["schema"] for row in fetch(conn, "extensions", names=names)}
