"""The live side of the diff: the catalog, read into the objects of `rlsctl.objects`.

Only what rlsctl manages is read: the declared roles and their memberships,
the helper and project schemas, the default privileges of the roles that
create objects, the helper schema's functions, and on the declared tables
that exist their RLS flags, policies, grants and the triggers calling helper
functions.

Grants to roles the project does not declare (a backup tool, monitoring, a
migration tool) and memberships of such roles in the declared ones (the app's
login role) are returned separately as unmanaged: reported, left alone. With
`prune_unmanaged_grants` such grants are managed (and so revoked); memberships
stay unmanaged. Grants to PUBLIC are always managed. One deliberate
exception: EXECUTE on a SECURITY DEFINER helper is managed whoever holds it,
because it lends the helper owner's rights (see docs/diff.md).

Policy expressions are compared in the form the server stores them: the
declared ones are created on column-for-column copies of their tables in
pg_temp, inside a savepoint that is rolled back, and read back with
pg_get_expr under the same search_path as the live ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg

from rlsctl import catalog, statements
from rlsctl.catalog import LiveGrant
from rlsctl.declare import DeclaredState
from rlsctl.objects import (
    MANAGED_DEFAULT_TYPES,
    ActiveKey,
    ColumnGrant,
    DefaultPrivilege,
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
    unmanaged: tuple[Obj, ...]  # grants to and memberships of roles the project does not declare
    # function key -> keys of the live policies that call it (they go before the function can)
    dependents: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Sorted:
    """Live objects split into managed ones and unmanaged ones (reported, left alone)."""

    managed: list[Obj] = field(default_factory=list)
    unmanaged: list[Obj] = field(default_factory=list)

    def add(self, obj: Obj, managed: bool) -> None:
        (self.managed if managed else self.unmanaged).append(obj)


def live_objects(
    conn: psycopg.Connection, state: DeclaredState, operator: str | None, templates: Path | None = None
) -> Live:
    """Every managed object as the catalog has it: all reads in one round trip."""
    schemas = sorted({state.helper_schema, state.schema})
    queries: dict[str, dict[str, Any]] = {
        "roles": {"prefix": "", "names": list(state.managed_role_names)},
        "memberships": {"names": list(state.managed_role_names)},
        "schemas": {"schemas": schemas},
        "schema_privileges": {"schemas": schemas},
        "default_privileges": {"roles": list(state.creators)},
        "installed_extensions": {},
        "functions": {"schema": state.helper_schema},
        "tables": {"schema": state.schema},
        "policies": {"schema": state.schema},
        "table_privileges": {"schema": state.schema},
        "column_privileges": {"schema": state.schema},
        "triggers": {"schema": state.schema},
        "key_store": {"schema": state.helper_schema},
    }
    with conn.transaction(force_rollback=True):
        statements.run(conn, "stored_form_settings")
        rows = dict(zip(queries, catalog.fetch_many(conn, list(queries.items())), strict=True))
        active_key = (
            bool(rows["key_store"]) and state.encryption is not None and _active_key_exists(conn, state, templates)
        )
    return _load(state, operator, rows, active_key)


def _load(state: DeclaredState, operator: str | None, rows: dict[str, list[dict[str, Any]]], active_key: bool) -> Live:
    managed_tables = {table.name for table in state.tables}
    found = _Sorted()
    found.managed.extend(_role(catalog.live_role(row)) for row in rows["roles"])
    _memberships(found, rows["memberships"], state, operator)
    found.managed.extend(Schema(row["name"], row["owner"]) for row in rows["schemas"] if row["name"] != "public")
    _schema_privileges(found, rows["schema_privileges"], state)
    _default_privileges(found, rows["default_privileges"], state)
    installed = {row["name"]: row["schema"] for row in rows["installed_extensions"]}
    found.managed.extend(Extension(name, installed[name]) for name in state.extensions if name in installed)
    _functions(found, [catalog.live_function(row) for row in rows["functions"]], state)
    found.managed.extend(
        TableSecurity(row["name"], row["owner"], row["rls_enabled"], row["rls_forced"])
        for row in rows["tables"]
        if row["name"] in managed_tables
    )
    policies = [p for p in map(catalog.live_policy, rows["policies"]) if p.table in managed_tables]
    found.managed.extend(Policy(p.table, p.name, p.command, p.permissive, p.roles, p.using, p.check) for p in policies)
    live_grants = [catalog.live_table_grant(row) for row in rows["table_privileges"]]
    live_grants += [catalog.live_column_grant(row) for row in rows["column_privileges"]]
    _grants(found, [g for g in live_grants if g.table in managed_tables], state)
    found.managed.extend(
        Trigger(
            row["table_name"], row["name"], row["function_schema"], row["function_name"], row["events"], row["enabled"]
        )
        for row in rows["triggers"]
        if row["table_name"] in managed_tables and row["function_schema"] == state.helper_schema
    )
    found.managed.extend(KeyStore(state.helper_schema, row["owner"]) for row in rows["key_store"])
    if active_key:
        found.managed.append(ActiveKey(state.helper_schema))
    return Live(
        {obj.key: obj for obj in found.managed},
        tuple(found.unmanaged),
        _dependents(policies),
    )


def _trigger(row: dict[str, Any]) -> Trigger:
    return Trigger(
        row["table_name"], row["name"], row["function_schema"], row["function_name"], row["events"], row["enabled"]
    )


def _active_key_exists(conn: psycopg.Connection, state: DeclaredState, templates: Path | None) -> bool:
    sql = render_template("ops/active_key_exists.sql.j2", templates, schema=state.helper_schema)
    row = conn.execute(sql.encode()).fetchone()
    return bool(row and row[0])


def _role(role: catalog.LiveRole) -> Role:
    # SUPERUSER and BYPASSRLS are read, not refused here: drift reports them, apply refuses them.
    return Role(role.name, role.login, role.createrole, role.createdb, role.comment, role.superuser, role.bypassrls)


def _memberships(found: _Sorted, rows: list[dict[str, Any]], state: DeclaredState, operator: str | None) -> None:
    """A managed role's own memberships are managed (none is declared: they are extra).
    So are the operator's memberships in managed roles. Other roles' memberships in
    managed roles (the app's login role in the app role) are unmanaged, even with pruning:
    they are how the application connects."""
    managed = set(state.managed_role_names)
    for row in rows:
        membership = Membership(row["role"], row["member"])
        if row["member"] in managed:
            found.add(membership, True)
        elif row["role"] in managed:
            found.add(membership, row["member"] == operator)


def _managed_grantee(grantee: str, state: DeclaredState) -> bool:
    """Whether a grant to `grantee` is managed: True for declared roles and PUBLIC, else pruning decides."""
    if grantee in state.managed_role_names or grantee == "PUBLIC":
        return True
    return state.prune_unmanaged_grants


def _schema_privileges(found: _Sorted, rows: list[dict[str, Any]], state: DeclaredState) -> None:
    for row in rows:
        privilege = SchemaPrivilege(row["schema"], row["grantee"], row["privilege"])
        if row["grantee"] == "PUBLIC":
            # USAGE on a project schema is PostgreSQL's default and harmless; CREATE anywhere is not.
            if row["schema"] == state.helper_schema or row["privilege"] == "CREATE":
                found.add(privilege, True)
            continue
        found.add(privilege, _managed_grantee(row["grantee"], state))


def _default_privileges(found: _Sorted, rows: list[dict[str, Any]], state: DeclaredState) -> None:
    for row in rows:
        if row["objtype"] not in MANAGED_DEFAULT_TYPES:
            continue
        default = DefaultPrivilege(row["creator"], row["objtype"], row["schema"], row["grantee"], row["privilege"])
        found.add(default, _managed_grantee(row["grantee"], state))


def _functions(found: _Sorted, functions: list[catalog.LiveFunction], state: DeclaredState) -> None:
    for fn in functions:
        grants = [FunctionGrant(state.helper_schema, fn.name, fn.arg_types, grantee) for grantee in fn.executors]
        if fn.from_extension:
            # Extension functions are not ours, but who may execute them is (EXECUTE revoked from PUBLIC).
            for grant in grants:
                found.add(grant, _managed_grantee(grant.grantee, state))
            continue
        found.managed.append(
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
        for grant in grants:
            # EXECUTE on a SECURITY DEFINER helper lends its owner's rights: managed whoever holds it.
            found.add(grant, fn.security_definer or _managed_grantee(grant.grantee, state))
        if fn.owner_executes:
            found.managed.append(FunctionGrant(state.helper_schema, fn.name, fn.arg_types, fn.owner))


def _grants(found: _Sorted, live_grants: Iterable[LiveGrant], state: DeclaredState) -> None:
    for grant in live_grants:
        obj: Obj
        if grant.column is None:
            obj = TableGrant(grant.table, grant.grantee, grant.privilege, grant.grantable)
        else:
            obj = ColumnGrant(grant.table, grant.column, grant.grantee, grant.privilege, grant.grantable)
        found.add(obj, _managed_grantee(grant.grantee, state))


def _dependents(policies: list[catalog.LivePolicy]) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for policy in policies:
        for function in policy.functions:
            found.setdefault(f"function {function}", []).append(f"policy {policy.table}.{policy.name}")
    return {key: tuple(keys) for key, keys in found.items()}


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
