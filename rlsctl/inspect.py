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
    ColumnGrant,
    DefaultRevoke,
    Extension,
    Function,
    FunctionGrant,
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


def live_objects(conn: psycopg.Connection, state: DeclaredState, operator: str | None) -> Live:
    found: list[Obj] = []
    found += _roles(conn, state, operator)
    found += _schemas(conn, state)
    found += _default_privileges(conn, state)
    installed = catalog.installed_extensions(conn)
    found += [Extension(name, installed[name]) for name in state.extensions if name in installed]
    found += _functions(conn, state)
    managed_tables = {table.name for table in state.tables}
    tables = catalog.tables(conn, state.schema)
    found += [
        TableSecurity(name, table.owner, table.rls_enabled, table.rls_forced)
        for name, table in tables.items()
        if name in managed_tables
    ]
    found += [
        Policy(p.table, p.name, p.command, p.permissive, p.roles, p.using, p.check)
        for p in _stored_policies(conn, state)
        if p.table in managed_tables
    ]
    grants, unmanaged = _grants(conn, state, managed_tables)
    found += grants
    found += [
        Trigger(t.table, t.name, t.function_schema, t.function_name)
        for t in catalog.triggers(conn, state.schema)
        if t.table in managed_tables and t.function_schema == state.helper_schema
    ]
    return Live({obj.key: obj for obj in found}, tuple(unmanaged))


def _roles(conn: psycopg.Connection, state: DeclaredState, operator: str | None) -> list[Obj]:
    found: list[Obj] = []
    for role in catalog.roles(conn, "", state.managed_role_names):
        if role.superuser or role.bypassrls:
            kind = "SUPERUSER" if role.superuser else "BYPASSRLS"
            raise UsageError(f"role {role.name} is {kind}; rlsctl will not manage it (nothing was changed)")
        found.append(Role(role.name, role.login, role.createrole, role.createdb, role.comment))
    if operator is not None:
        for row in catalog.roles(conn, "", (operator,)):
            found += [Membership(name, operator) for name in row.member_of if name in state.managed_role_names]
    return found


def _schemas(conn: psycopg.Connection, state: DeclaredState) -> list[Obj]:
    names = sorted({state.helper_schema, state.schema})
    found: list[Obj] = [Schema(name, owner) for name, owner in catalog.schemas(conn, names).items() if name != "public"]
    managed = set(state.managed_role_names)
    for privilege in catalog.schema_privileges(conn, names):
        public_managed = privilege.schema == state.helper_schema or privilege.privilege == "CREATE"
        if privilege.grantee in managed or (privilege.grantee == "PUBLIC" and public_managed):
            found.append(SchemaPrivilege(privilege.schema, privilege.grantee, privilege.privilege))
    return found


def _default_privileges(conn: psycopg.Connection, state: DeclaredState) -> list[Obj]:
    return [
        DefaultRevoke(row.creator)
        for row in catalog.default_privileges(conn, [state.owner, state.definer])
        if row.objtype == "f" and row.schema is None and not row.public_granted
    ]


def _functions(conn: psycopg.Connection, state: DeclaredState) -> list[Obj]:
    found: list[Obj] = []
    for fn in catalog.functions(conn, state.helper_schema):
        if fn.from_extension:
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
    return found


def _grants(
    conn: psycopg.Connection, state: DeclaredState, managed_tables: set[str]
) -> tuple[list[Obj], list[LiveGrant]]:
    managed_roles = set(state.managed_role_names) | {"PUBLIC"}
    found: list[Obj] = []
    unmanaged: list[LiveGrant] = []
    for grant in catalog.grants(conn, state.schema):
        if grant.table not in managed_tables:
            continue
        if grant.grantee not in managed_roles and not state.prune_unmanaged_grants:
            unmanaged.append(grant)
        elif grant.column is None:
            found.append(TableGrant(grant.table, grant.grantee, grant.privilege))
        else:
            found.append(ColumnGrant(grant.table, grant.column, grant.grantee, grant.privilege))
    return found, unmanaged


def _stored_policies(conn: psycopg.Connection, state: DeclaredState) -> list[catalog.LivePolicy]:
    with conn.transaction(force_rollback=True):
        statements.run(conn, "stored_form_settings")
        return catalog.policies(conn, state.schema)


def normalise_policies(
    conn: psycopg.Connection, state: DeclaredState, declared: Objects, live: Objects, templates: Path | None
) -> Objects:
    """Declared policies that exist live, with USING/CHECK in the server's stored form.

    A declared policy that cannot be probed (a role or helper it names does
    not exist yet) keeps its source text, so it compares as changed.
    """
    wanted = [obj for key, obj in declared.items() if isinstance(obj, Policy) and key in live]
    if not wanted:
        return declared
    probe_state = replace(state, schema="pg_temp")
    stored: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    with conn.transaction(force_rollback=True):
        statements.run(conn, "stored_form_settings")
        for table in sorted({policy.table for policy in wanted}):
            probe_table = render_template("ops/probe_table.sql.j2", templates, table=table, schema=state.schema)
            conn.execute(probe_table.encode())
        for number, policy in enumerate(wanted):
            probe = replace(policy, name=f"rlsctl_probe_{number}")
            try:
                with conn.transaction():
                    conn.execute(call_macro("objects/policy.sql.j2", "create", templates, probe, probe_state).encode())
            except psycopg.Error:
                continue
        rows = catalog.fetch(conn, "temp_policies")
        by_name = {row["name"]: row for row in rows}
        for number, policy in enumerate(wanted):
            row = by_name.get(f"rlsctl_probe_{number}")
            if row is not None:
                stored[(policy.table, policy.name)] = (row["using_expr"], row["check_expr"])
    result = dict(declared)
    for policy in wanted:
        if (policy.table, policy.name) in stored:
            using, check = stored[(policy.table, policy.name)]
            result[policy.key] = replace(policy, using=using, check=check)
    return result
