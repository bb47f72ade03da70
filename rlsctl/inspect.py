"""The live side of the diff: the catalog, read into the objects of `rlsctl.objects`.

Only what rlsctl manages is read: the declared roles, the helper and project
schemas, the helper schema's functions, and on the declared tables that
exist their RLS flags, policies, grants to the declared roles and to PUBLIC,
and the triggers calling helper functions. Grants on those tables to roles the
project does not declare are returned separately as unmanaged.

Policy expressions are compared in the form the server stores them: the
declared ones are created on column-for-column copies of their tables in
pg_temp, inside a savepoint that is rolled back, and read back with
pg_get_expr under the same search_path as the live ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import psycopg

from rlsctl import catalog, statements
from rlsctl.catalog import LiveGrant
from rlsctl.declare import DeclaredState
from rlsctl.errors import UsageError
from rlsctl.objects import (
    ActiveKey,
    ColumnGrant,
    DefaultRevoke,
    Extension,
    Function,
    FunctionGrant,
    KeyStore,
    Membership,
    Obj,
    Objects,
    Policy,
    Role,
    Schema,
    SchemaPrivilege,
    TableGrant,
    TableSecurity,
    Trigger,
)
from rlsctl.render import call_macro, render_template


@dataclass(frozen=True)
class Live:
    objects: Objects
    unmanaged: tuple[LiveGrant, ...]  # grants on managed tables to roles the project does not declare


def live_objects(
    conn: psycopg.Connection, state: DeclaredState, operator: str | None, templates: Path | None = None
) -> Live:
    """Every managed object as the catalog has it: all reads in one round trip."""
    schemas = sorted({state.helper_schema, state.schema})
    creators = [state.owner, state.definer]
    with conn.transaction(force_rollback=True):
        statements.run(conn, "stored_form_settings")
        rows = catalog.fetch_many(
            conn,
            [
                ("roles", {"prefix": "", "names": [*state.managed_role_names, *([operator] if operator else [])]}),
                ("schemas", {"schemas": schemas}),
                ("schema_privileges", {"schemas": schemas}),
                ("default_privileges", {"roles": creators}),
                ("installed_extensions", {}),
                ("functions", {"schema": state.helper_schema}),
                ("tables", {"schema": state.schema}),
                ("policies", {"schema": state.schema}),
                ("table_privileges", {"schema": state.schema}),
                ("column_privileges", {"schema": state.schema}),
                ("triggers", {"schema": state.schema}),
                ("key_store", {"schema": state.helper_schema}),
            ],
        )
        key_store = rows[-1]
        active_key = bool(key_store) and state.encryption is not None and _active_key_exists(conn, state, templates)
    (
        roles,
        schema_rows,
        schema_privileges,
        defaults,
        extensions,
        functions,
        tables,
        policies,
        table_privileges,
        column_privileges,
        triggers,
        _,
    ) = rows
    managed_tables = {table.name for table in state.tables}
    found: list[Obj] = []
    found += _roles([catalog.live_role(row) for row in roles], state, operator)
    found += _schemas(schema_rows, schema_privileges, state)
    found += [
        DefaultRevoke(row["creator"])
        for row in defaults
        if row["objtype"] == "f" and row["schema"] is None and not row["public_granted"]
    ]
    installed = {row["name"]: row["schema"] for row in extensions}
    found += [Extension(name, installed[name]) for name in state.extensions if name in installed]
    found += _functions([catalog.live_function(row) for row in functions], state)
    found += [
        TableSecurity(row["name"], row["owner"], row["rls_enabled"], row["rls_forced"])
        for row in tables
        if row["name"] in managed_tables
    ]
    found += [
        Policy(p.table, p.name, p.command, p.permissive, p.roles, p.using, p.check)
        for p in map(catalog.live_policy, policies)
        if p.table in managed_tables
    ]
    live_grants = [catalog.live_table_grant(row) for row in table_privileges]
    live_grants += [catalog.live_column_grant(row) for row in column_privileges]
    grants, unmanaged = _grants(live_grants, state, managed_tables)
    found += grants
    found += [
        Trigger(row["table_name"], row["name"], row["function_schema"], row["function_name"], row["events"])
        for row in triggers
        if row["table_name"] in managed_tables and row["function_schema"] == state.helper_schema
    ]
    found += [KeyStore(state.helper_schema, row["owner"]) for row in key_store]
    if active_key:
        found.append(ActiveKey(state.helper_schema))
    return Live({obj.key: obj for obj in found}, tuple(unmanaged))


def _active_key_exists(conn: psycopg.Connection, state: DeclaredState, templates: Path | None) -> bool:
    sql = render_template("ops/active_key_exists.sql.j2", templates, schema=state.helper_schema)
    row = conn.execute(sql.encode()).fetchone()
    return bool(row and row[0])


def _roles(roles: list[catalog.LiveRole], state: DeclaredState, operator: str | None) -> list[Obj]:
    found: list[Obj] = []
    for role in roles:
        if role.name not in state.managed_role_names:
            continue
        if role.superuser or role.bypassrls:
            kind = "SUPERUSER" if role.superuser else "BYPASSRLS"
            raise UsageError(f"role {role.name} is {kind}; rlsctl will not manage it (nothing was changed)")
        found.append(Role(role.name, role.login, role.createrole, role.createdb, role.comment))
    for role in roles:
        if role.name == operator:
            found += [Membership(name, operator) for name in role.member_of if name in state.managed_role_names]
    return found


def _schemas(schema_rows: list[dict], privileges: list[dict], state: DeclaredState) -> list[Obj]:
    found: list[Obj] = [Schema(row["name"], row["owner"]) for row in schema_rows if row["name"] != "public"]
    managed = set(state.managed_role_names)
    for row in privileges:
        public_managed = row["schema"] == state.helper_schema or row["privilege"] == "CREATE"
        if row["grantee"] in managed or (row["grantee"] == "PUBLIC" and public_managed):
            found.append(SchemaPrivilege(row["schema"], row["grantee"], row["privilege"]))
    return found


def _functions(functions: list[catalog.LiveFunction], state: DeclaredState) -> list[Obj]:
    found: list[Obj] = []
    managed = {*state.managed_role_names, "PUBLIC"}
    for fn in functions:
        if fn.from_extension:
            # Extension functions are not ours, but who may execute them is (EXECUTE revoked from PUBLIC).
            found += [
                FunctionGrant(state.helper_schema, fn.name, fn.arg_types, grantee)
                for grantee in fn.executors
                if grantee in managed
            ]
            continue
        found.append(
            Function(
                schema=state.helper_schema,
                name=fn.name,
                arg_types=fn.arg_types,
                returns=fn.returns,
                language=fn.language,
                volatility=fn.volatility,
                security_definer=fn.security_definer,
                config=fn.config,
                body=fn.body,
                owner=fn.owner,
                arg_decl=fn.args,
            )
        )
        found += [FunctionGrant(state.helper_schema, fn.name, fn.arg_types, grantee) for grantee in fn.executors]
        if fn.owner_executes:
            found.append(FunctionGrant(state.helper_schema, fn.name, fn.arg_types, fn.owner))
    return found


def _grants(
    live_grants: list[LiveGrant], state: DeclaredState, managed_tables: set[str]
) -> tuple[list[Obj], list[LiveGrant]]:
    managed_roles = set(state.managed_role_names) | {"PUBLIC"}
    found: list[Obj] = []
    unmanaged: list[LiveGrant] = []
    for grant in live_grants:
        if grant.table not in managed_tables:
            continue
        if grant.grantee not in managed_roles and not state.prune_unmanaged_grants:
            unmanaged.append(grant)
        elif grant.column is None:
            found.append(TableGrant(grant.table, grant.grantee, grant.privilege))
        else:
            found.append(ColumnGrant(grant.table, grant.column, grant.grantee, grant.privilege))
    return found, unmanaged


def normalise_policies(
    conn: psycopg.Connection, state: DeclaredState, declared: Objects, live: Objects, templates: Path | None
) -> Objects:
    """Declared policies that exist live, with USING/CHECK in the server's stored form.

    All probes go to the server in one round trip; only if one of them fails
    (a role or helper it names does not exist yet) are they retried one by
    one. A declared policy that cannot be probed keeps its source text, so
    it compares as changed.
    """
    wanted = [obj for key, obj in declared.items() if isinstance(obj, Policy) and key in live]
    if not wanted:
        return declared
    probe_state = replace(state, schema="pg_temp")
    tables = sorted({policy.table for policy in wanted})
    setup = [render_template("ops/probe_table.sql.j2", templates, table=t, schema=state.schema) for t in tables]
    probes = [
        call_macro("objects/policy.sql.j2", "create", templates, replace(p, name=f"rlsctl_probe_{n}"), probe_state)
        for n, p in enumerate(wanted)
    ]
    with conn.transaction(force_rollback=True):
        statements.run(conn, "stored_form_settings")
        conn.execute(";\n".join(setup).encode())
        try:
            with conn.transaction():
                conn.execute("\n".join(probes).encode())
        except psycopg.Error:
            for probe in probes:
                try:
                    with conn.transaction():
                        conn.execute(probe.encode())
                except psycopg.Error:
                    continue
        by_name = {row["name"]: row for row in catalog.fetch(conn, "temp_policies")}
    result = dict(declared)
    for number, policy in enumerate(wanted):
        row = by_name.get(f"rlsctl_probe_{number}")
        if row is not None:
            result[policy.key] = replace(policy, using=row["using_expr"], check=row["check_expr"])
    return result
