"""The live side of the diff: the catalog, read into the objects of `rlsctl.objects`.

Only what rlsctl manages is read: the declared roles and their memberships,
the helper and project schemas, the default privileges of the roles that
create objects (and those of any role that give a managed role or PUBLIC
something), the helper schema's functions and tables, and on the declared
tables that exist their RLS flags, policies, grants and triggers.

Grants to roles the project does not declare (a backup tool, monitoring, a
migration tool), memberships of such roles in the declared ones that give
no control over objects (the app's login role in the app role), and triggers
of others on managed tables are returned separately as unmanaged: reported,
left alone. With `prune_unmanaged_grants` such grants are managed (and so
revoked); memberships stay unmanaged. Grants to PUBLIC are always managed.
Deliberate exceptions, managed whoever holds them: EXECUTE on a SECURITY
DEFINER helper (it lends the helper owner's rights), membership in the
owner, definer and keys roles unless listed in `members:` (it lends their
objects and keys), anything on rlsctl's helper-schema tables (see docs/diff.md).

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

from rlsctl.catalog import queries as catalog
from rlsctl.catalog.queries import LiveGrant
from rlsctl.declare.compile import DeclaredState
from rlsctl.pg import statements
from rlsctl.pg.render import call_macro, render_template
from rlsctl.state.objects import (
    HELPER_TABLES,
    MANAGED_DEFAULT_TYPES,
    TRIGGER_NAMES,
    ActiveKey,
    ColumnGrant,
    DefaultPrivilege,
    EncryptedColumnRecord,
    Extension,
    Function,
    FunctionGrant,
    KeyRegistry,
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


@dataclass(frozen=True)
class Live:
    objects: Objects
    unmanaged: tuple[Obj, ...]  # grants to and memberships of roles the project does not declare
    # function key -> keys of the live policies that call it (they go before the function can)
    dependents: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # "schema.name(arg types)" of functions whose owner the session cannot act as (a trusted
    # extension's, owned by the bootstrap superuser): their grants cannot change here.
    foreign_functions: frozenset[str] = frozenset()


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
    managed_roles = list(state.managed_role_names)
    queries: dict[str, dict[str, Any]] = {
        "roles": {"prefix": "", "names": managed_roles},
        "memberships": {"names": managed_roles},
        "schemas": {"schemas": schemas},
        "schema_privileges": {"schemas": schemas},
        "default_privileges": {"roles": list(state.creators), "grantees": managed_roles, "schemas": schemas},
        "installed_extensions": {},
        "functions": {"schema": state.helper_schema},
        "tables": {"schemas": schemas},
        "policies": {"schemas": schemas},
        "table_privileges": {"schemas": schemas},
        "column_privileges": {"schemas": schemas},
        "triggers": {"schema": state.schema},
    }
    with conn.transaction(force_rollback=True):
        statements.run(conn, "stored_form_settings")
        rows = dict(zip(queries, catalog.fetch_many(conn, list(queries.items())), strict=True))
        helper_tables = {row["name"] for row in rows["tables"] if row["schema"] == state.helper_schema}
        key_data = (
            _key_store_data(conn, state, templates, "encrypted_column" in helper_tables)
            if "encryption_key" in helper_tables and state.encryption is not None
            else None
        )
    return _load(state, operator, rows, key_data)


def _load(
    state: DeclaredState, operator: str | None, rows: dict[str, list[dict[str, Any]]], key_data: dict[str, Any] | None
) -> Live:
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
        if row["schema"] == state.schema and row["name"] in managed_tables
    )
    _helper_tables(found, [row for row in rows["tables"] if row["schema"] == state.helper_schema], state)
    ours = _our_tables(state, managed_tables)
    policies = [_policy(row, state) for row in rows["policies"] if (row["schema"], row["table_name"]) in ours]
    found.managed.extend(policy for policy, _ in policies)
    live_grants = [catalog.live_grant(row) for row in rows["table_privileges"] + rows["column_privileges"]]
    _grants(found, [g for g in live_grants if (g.schema, g.table) in ours], state)
    for row in rows["triggers"]:
        if row["table_name"] in managed_tables:
            trigger = _trigger(catalog.live_trigger(row), state)
            # rlsctl's by name (whatever they call) or by what they call; others' are reported only.
            found.add(trigger, trigger.name in TRIGGER_NAMES or trigger.ours)
    if key_data is not None and key_data["found"]:
        found.managed.append(ActiveKey(state.helper_schema))
    if key_data is not None:
        found.managed.extend(
            EncryptedColumnRecord(state.helper_schema, table, column) for table, column in key_data["recorded"]
        )
    foreign = frozenset(
        f"{state.helper_schema}.{row['name']}({row['arg_types']})"
        for row in rows["functions"]
        if not row["acts_as_owner"]
    )
    return Live(
        {obj.key: obj for obj in found.managed},
        tuple(found.unmanaged),
        _dependents([live for _, live in policies]),
        foreign,
    )


def _our_tables(state: DeclaredState, managed_tables: set[str]) -> set[tuple[str, str]]:
    """(schema, table) of the tables whose policies and grants rlsctl manages."""
    return {(state.schema, name) for name in managed_tables} | {(state.helper_schema, name) for name in HELPER_TABLES}


def _helper_tables(found: _Sorted, rows: list[dict[str, Any]], state: DeclaredState) -> None:
    """rlsctl's own tables of the helper schema are managed; any other table there is
    reported and left alone (apply never drops a table)."""
    for row in rows:
        table = TableSecurity(row["name"], row["owner"], row["rls_enabled"], row["rls_forced"], state.helper_schema)
        found.add(table, row["name"] in HELPER_TABLES)
        if row["name"] == "encryption_key":
            found.managed.append(KeyStore(state.helper_schema, row["owner"]))
        if row["name"] == "encrypted_column":
            found.managed.append(KeyRegistry(state.helper_schema, row["owner"]))


def _policy(row: dict[str, Any], state: DeclaredState) -> tuple[Policy, catalog.LivePolicy]:
    live = catalog.live_policy(row)
    schema = None if row["schema"] == state.schema else row["schema"]
    policy = Policy(live.table, live.name, live.command, live.permissive, live.roles, live.using, live.check)
    return replace(policy, schema=schema), live


def _trigger(live: catalog.LiveTrigger, state: DeclaredState) -> Trigger:
    return Trigger(
        table=live.table,
        name=live.name,
        function_schema=live.function_schema,
        function_name=live.function_name,
        events=live.events,
        enabled=live.enabled,
        timing=live.timing,
        level=live.level,
        columns=live.columns,
        when=live.when,
        args=live.args,
        ours=live.function_schema == state.helper_schema,
        definition=live.definition,
    )


def _key_store_data(
    conn: psycopg.Connection, state: DeclaredState, templates: Path | None, registry: bool
) -> dict[str, Any]:
    """Whether an active data key exists, and the columns recorded as encrypted: one round trip."""
    sql = render_template("ops/active_key_exists.sql.j2", templates, schema=state.helper_schema, registry=registry)
    row = conn.execute(sql.encode()).fetchone()
    assert row is not None
    return {"found": bool(row[0]), "recorded": [tuple(pair) for pair in row[1]]}


def _role(role: catalog.LiveRole) -> Role:
    # SUPERUSER and BYPASSRLS are read, not refused here: drift reports them, apply refuses them.
    return Role(role.name, role.login, role.createrole, role.createdb, role.comment, role.superuser, role.bypassrls)


def _memberships(found: _Sorted, rows: list[dict[str, Any]], state: DeclaredState, operator: str | None) -> None:
    """A managed role's own memberships are managed (none is declared: they are extra).
    So are the operator's memberships in managed roles, and any membership in the
    owner, definer and keys roles: a member may SET ROLE to them, then disable RLS,
    replace helpers or read the key store. The roles listed in a role's `members:`
    are expected there: neither drift nor reported. Other roles' memberships in the
    other managed roles (the app's login role in the app role) are unmanaged, even
    with pruning: they are how the application connects."""
    roles = {role.name: role for role in state.roles}
    for row in rows:
        membership = Membership(row["role"], row["member"])
        role = roles.get(row["role"])
        if row["member"] in roles:
            found.add(membership, True)
        elif role is not None and row["member"] not in role.members:
            found.add(membership, row["member"] == operator or role.privileged)


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
    """The creator roles' defaults are managed by grantee. Another role's defaults are read
    only where they give a managed role or PUBLIC something (a migration tool's role opening
    every table it creates before apply runs): all managed, so extra, except PostgreSQL's
    built-in EXECUTE on functions for PUBLIC, which every role has."""
    creators = set(state.creators)
    for row in rows:
        if row["objtype"] not in MANAGED_DEFAULT_TYPES:
            continue
        default = DefaultPrivilege(
            row["creator"], row["objtype"], row["schema"], row["grantee"], row["privilege"], row["repairable"]
        )
        if row["creator"] in creators:
            found.add(default, _managed_grantee(row["grantee"], state))
        elif default != DefaultPrivilege(row["creator"], "f", None, "PUBLIC", "EXECUTE"):
            found.managed.append(default)


def _functions(found: _Sorted, functions: list[catalog.LiveFunction], state: DeclaredState) -> None:
    for fn in functions:
        grants = [
            FunctionGrant(state.helper_schema, fn.name, fn.arg_types, grantee, fn.acts_as_owner)
            for grantee in fn.executors
        ]
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
    """Grants on managed tables, each with its grantor (None: the table owner). Anything on
    rlsctl's helper-schema tables is managed whoever holds it: only their owner reads them."""
    for grant in live_grants:
        obj: TableGrant | ColumnGrant
        schema = None if grant.schema == state.schema else grant.schema
        obj = TableGrant(grant.table, grant.grantee, grant.privilege, grant.grantable, schema, grant.grantor)
        if grant.column is not None:
            obj = ColumnGrant(grant.table, grant.column, grant.grantee, grant.privilege, grant.grantable, schema)
            obj = replace(obj, grantor=grant.grantor)
        # The table owner's grants apply itself revokes; another grantor's only as that role.
        obj = replace(obj, repairable=grant.grantor is None or grant.acts_as_grantor)
        found.add(obj, schema is not None or _managed_grantee(grant.grantee, state))


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
