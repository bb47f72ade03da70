"""The live side of the diff: the catalog, read into the objects of `rlsctl.state.objects`.

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

What is managed comes from a `ManagedScope` (rlsctl.state.scope), never from
the declared policies: this side knows nothing of what is declared. Policy
expressions are compared in the server's stored form (rlsctl.change.normalise).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg

from rlsctl.catalog import queries as catalog
from rlsctl.catalog.queries import LiveGrant
from rlsctl.pg import statements
from rlsctl.pg.templates import render_template
from rlsctl.state.objects import (
    API_KEY_SEQUENCES,
    BUILTIN_FUNCTIONS,
    HELPER_TABLES,
    KEY_REGISTRY_TABLE,
    KEY_STORE_TABLE,
    MANAGED_DEFAULT_TYPES,
    OWN_TABLES,
    ROW_JUDGING_TRIGGERS,
    TRIGGER_NAMES,
    ActiveKey,
    ColumnGrant,
    DefaultPrivilege,
    EncryptedColumnRecord,
    Extension,
    Function,
    FunctionGrant,
    KeyTable,
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
    UndeclaredTable,
    UntrustedCode,
)
from rlsctl.state.scope import ManagedScope


@dataclass(frozen=True)
class Live:
    objects: Objects
    unmanaged: tuple[Obj, ...]  # grants to and memberships of roles the project does not declare
    # function key -> keys of the live policies that call it (they go before the function can)
    dependents: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # "schema.name(arg types)" of functions whose owner the session cannot act as (a trusted
    # extension's, owned by the bootstrap superuser): their grants cannot change here.
    foreign_functions: frozenset[str] = frozenset()
    # Schemas whose owner the session cannot act as (the platform's `extensions`): no GRANT there.
    foreign_schemas: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Sorted:
    """Live objects split into managed ones and unmanaged ones (reported, left alone)."""

    managed: list[Obj] = field(default_factory=list)
    unmanaged: list[Obj] = field(default_factory=list)

    def add(self, obj: Obj, managed: bool) -> None:
        (self.managed if managed else self.unmanaged).append(obj)


def live_objects(
    conn: psycopg.Connection, scope: ManagedScope, operator: str | None, templates: Path | None = None
) -> Live:
    """Every managed object as the catalog has it: all reads in one round trip."""
    schemas = sorted({scope.helper_schema, scope.schema})
    managed_roles = list(scope.managed_role_names)
    queries: dict[str, dict[str, Any]] = {
        "roles": {"prefix": "", "names": list(scope.created_role_names)},
        "memberships": {"names": managed_roles},
        "schemas": {"schemas": schemas},
        "schema_privileges": {"schemas": schemas},
        "default_privileges": {"roles": list(scope.creators), "grantees": managed_roles, "schemas": schemas},
        "extension_sites": {},
        "functions": {"schema": scope.helper_schema},
        "tables": {"schemas": schemas},
        "sequences": {"schema": scope.helper_schema},
        "policies": {"schemas": schemas},
        "table_privileges": {"schemas": schemas},
        "column_privileges": {"schemas": schemas},
        "triggers": {"schema": scope.schema},
        "undeclared_tables": {
            "schema": scope.schema,
            "tables": list(scope.declared_tables or scope.tables),
            "sequences": list(scope.sequences),
            "roles": [role for role in managed_roles if role != scope.owner_role],
        },
    }
    if scope.keys_role is not None:
        queries["untrusted_code"] = untrusted_code_params(scope, scope.keys_tables, scope.keys_read_tables)
    queries["builtin_function_grants"] = {"functions": list(BUILTIN_FUNCTIONS), "roles": managed_roles}
    if scope.keys_role is not None and scope.required_functions:
        queries["required_access"] = {
            "role": scope.keys_role,
            "functions": list(scope.required_functions),
            "schemas": list(scope.required_schemas),
        }
    with conn.transaction(force_rollback=True):
        statements.run(conn, "stored_form_settings")
        rows = dict(zip(queries, catalog.fetch_many(conn, list(queries.items())), strict=True))
        helper_tables = {row["name"] for row in rows["tables"] if row["schema"] == scope.helper_schema}
        key_data = (
            _key_store_data(conn, scope, templates, KEY_REGISTRY_TABLE in helper_tables)
            if KEY_STORE_TABLE in helper_tables and scope.encrypted
            else None
        )
    return _load(scope, operator, rows, key_data)


def _load(
    scope: ManagedScope, operator: str | None, rows: dict[str, list[dict[str, Any]]], key_data: dict[str, Any] | None
) -> Live:
    managed_tables = set(scope.tables)
    found = _Sorted()
    found.managed.extend(_role(catalog.live_role(row)) for row in rows["roles"])
    _memberships(found, rows["memberships"], scope, operator)
    found.managed.extend(Schema(row["name"], row["owner"]) for row in rows["schemas"] if row["name"] != "public")
    _schema_privileges(found, rows["schema_privileges"], scope)
    _default_privileges(found, rows["default_privileges"], scope)
    installed = {row["name"]: row for row in rows["extension_sites"]}
    found.managed.extend(
        Extension(
            name,
            installed[name]["schema"],
            installed[name]["movable"],
            tuple(installed[name]["writers"]),
            installed[name]["owner_is_session"],
        )
        for name in scope.extensions
        if name in installed
    )
    _functions(found, [catalog.live_function(row) for row in rows["functions"]], scope)
    found.managed.extend(
        TableSecurity(row["name"], row["owner"], row["rls_enabled"], row["rls_forced"])
        for row in rows["tables"]
        if row["schema"] == scope.schema and row["name"] in managed_tables
    )
    _helper_tables(found, [row for row in rows["tables"] if row["schema"] == scope.helper_schema], scope)
    found.managed.extend(
        KeyTable(scope.helper_schema, row["name"], row["owner"])
        for row in rows["sequences"]
        if row["name"] in API_KEY_SEQUENCES
    )
    ours = _our_tables(scope, managed_tables)
    policies = [_policy(row, scope) for row in rows["policies"] if (row["schema"], row["table_name"]) in ours]
    found.managed.extend(policy for policy, _ in policies)
    live_grants = [catalog.live_grant(row) for row in rows["table_privileges"] + rows["column_privileges"]]
    _grants(found, [g for g in live_grants if (g.schema, g.table) in ours], scope)
    live_triggers = [
        catalog.live_trigger(row, scope.helper_schema)
        for row in rows["triggers"]
        if row["table_name"] in managed_tables
    ]
    for trigger in live_triggers:
        # rlsctl's by name (whatever they call) or by what they call; others' are reported only.
        found.add(trigger, trigger.name in TRIGGER_NAMES or trigger.ours)
    found.managed.extend(_triggers_after_ours(live_triggers))
    if key_data is not None and key_data["found"]:
        found.managed.append(ActiveKey(scope.helper_schema))
    if key_data is not None:
        found.managed.extend(
            EncryptedColumnRecord(scope.helper_schema, table, column) for table, column in key_data["recorded"]
        )
    found.managed.extend(
        UntrustedCode(row["table_name"], row["what"], row["name"], row["detail"])
        for row in rows.get("untrusted_code", [])
    )
    found.managed.extend(
        UndeclaredTable(row["name"], row["what"], row["rls"], tuple(row["reached_by"]), tuple(row["parent_of"]))
        for row in rows["undeclared_tables"]
    )
    builtin = rows.get("builtin_function_grants", [])
    found.managed.extend(
        FunctionGrant(row["schema"], row["name"], row["arg_types"], row["grantee"], row["acts_as_owner"])
        for row in builtin
    )
    required = rows.get("required_access", [])
    for row in required:
        if row["granted"] and row["kind"] == "function":
            found.managed.append(FunctionGrant(row["schema"], row["name"], row["arg_types"], scope.keys_role or ""))
        elif row["granted"]:
            found.managed.append(SchemaPrivilege(row["schema"], scope.keys_role or "", "USAGE"))
    foreign = frozenset(
        f"{row.get('schema', scope.helper_schema)}.{row['name']}({row['arg_types']})"
        for row in [*rows["functions"], *builtin, *(r for r in required if r["kind"] == "function")]
        if not row["acts_as_owner"]
    )
    foreign_schemas = frozenset(
        row["schema"] for row in required if row["kind"] == "schema" and not row["acts_as_owner"]
    )
    return Live(
        {obj.key: obj for obj in found.managed},
        tuple(found.unmanaged),
        _dependents([live for _, live in policies]),
        foreign,
        foreign_schemas,
    )


def untrusted_code_params(
    scope: ManagedScope, tables: tuple[str, ...], read_tables: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The parameters of catalog/sql/untrusted_code.sql: tables the keys role rewrites, and reads."""
    return {
        "schema": scope.schema,
        "tables": list(tables),
        "read_tables": list(read_tables),
        "helper_schema": scope.helper_schema,
        "trusted_owners": list(scope.helper_owners),
        "trusted_functions": list(scope.trusted_functions),
        "trusted_extensions": list(scope.extensions),
        "keys_role": scope.keys_role,
        "columns": list(scope.encrypted_columns),
    }


def _our_tables(scope: ManagedScope, managed_tables: set[str]) -> set[tuple[str, str]]:
    """(schema, table) of the tables whose policies and grants rlsctl manages, and of the sequences
    their serial columns draw from."""
    return (
        {(scope.schema, name) for name in (*managed_tables, *scope.sequences)}
        | {(scope.helper_schema, name) for name in HELPER_TABLES}
    )


def _helper_tables(found: _Sorted, rows: list[dict[str, Any]], scope: ManagedScope) -> None:
    """rlsctl's own tables of the helper schema are managed; any other table there is
    reported and left alone (apply never drops a table)."""
    for row in rows:
        table = TableSecurity(row["name"], row["owner"], row["rls_enabled"], row["rls_forced"], scope.helper_schema)
        found.add(table, row["name"] in HELPER_TABLES)
        if row["name"] in OWN_TABLES:
            found.managed.append(KeyTable(scope.helper_schema, row["name"], row["owner"]))


def _policy(row: dict[str, Any], scope: ManagedScope) -> tuple[Policy, catalog.LivePolicy]:
    live = catalog.live_policy(row)
    schema = None if row["schema"] == scope.schema else row["schema"]
    policy = Policy(live.table, live.name, live.command, live.permissive, live.roles, live.using, live.check)
    return replace(policy, schema=schema), live


def _key_store_data(
    conn: psycopg.Connection, scope: ManagedScope, templates: Path | None, registry: bool
) -> dict[str, Any]:
    """Whether an active data key exists, and the columns recorded as encrypted: one round trip."""
    sql = render_template("ops/active_key_exists.sql.j2", templates, schema=scope.helper_schema, registry=registry)
    row = conn.execute(sql.encode()).fetchone()
    assert row is not None
    return {"found": bool(row[0]), "recorded": [tuple(pair) for pair in row[1]]}


def _triggers_after_ours(triggers: list[Trigger]) -> list[UntrustedCode]:
    """BEFORE row triggers fire in name order, and rlsctl's are named to come last (zz_...):
    another's that still sorts after one of them may change the row after the guard judged it
    (a task moved across organisations by a "helpful" trigger) or put plaintext back after
    encryption."""
    ours: dict[str, list[str]] = {}
    for trigger in triggers:
        if trigger.name in ROW_JUDGING_TRIGGERS:  # the ones that judge, stamp, encrypt or hash NEW
            ours.setdefault(trigger.table, []).append(trigger.name)
    found: list[UntrustedCode] = []
    for trigger in triggers:
        passed = sorted(name for name in ours.get(trigger.table, ()) if name < trigger.name)
        writes = "INSERT" in trigger.events or "UPDATE" in trigger.events
        if trigger.name in TRIGGER_NAMES or trigger.ours or not passed or not writes:
            continue
        if trigger.timing != "BEFORE" or trigger.level != "ROW" or trigger.enabled == "D":
            continue
        detail = (
            f"fires after {', '.join(passed)} (BEFORE triggers run in name order) and may change the row "
            f"after rlsctl judged or encrypted it: rename it to sort before {passed[0]}, or drop it"
        )
        found.append(UntrustedCode(trigger.table, "trigger", trigger.name, detail, runs_in_keys_sessions=False))
    return found


def _role(role: catalog.LiveRole) -> Role:
    # SUPERUSER and BYPASSRLS are read, not refused here: drift reports them, apply refuses them.
    return Role(role.name, role.login, role.createrole, role.createdb, role.comment, role.superuser, role.bypassrls)


def _memberships(found: _Sorted, rows: list[dict[str, Any]], scope: ManagedScope, operator: str | None) -> None:
    """A managed role's own memberships are managed (none is declared: they are extra).
    So are the operator's memberships in managed roles, and any membership in the
    owner, definer and keys roles: a member may SET ROLE to them, then disable RLS,
    replace helpers or read the key store. The roles listed in a role's `members:`
    are expected there: neither drift nor reported. Other roles' memberships in the
    other managed roles (the app's login role in the app role) are unmanaged, even
    with pruning: they are how the application connects. Memberships in the platform's
    roles (`external`) are the platform's: not read at all."""
    roles = {role.name: role for role in scope.roles}
    for row in rows:
        membership = Membership(row["role"], row["member"])
        role = roles.get(row["role"])
        if role is not None and role.external:
            continue
        if row["member"] in roles:
            found.add(membership, True)
        elif role is not None and row["member"] not in role.members:
            found.add(membership, row["member"] == operator or role.privileged)


# Table privileges row-level security does not filter: TRUNCATE empties every tenant's rows, and
# TRIGGER lets the grantee attach a trigger that sees every row anyone writes. Managed whoever holds
# them (never declared: revoked from undeclared roles too), like EXECUTE on a SECURITY DEFINER helper.
PAST_RLS = ("TRIGGER", "TRUNCATE")


def _past_rls(grant: LiveGrant) -> bool:
    return grant.column is None and grant.privilege in PAST_RLS


def _managed_grantee(grantee: str, scope: ManagedScope) -> bool:
    """Whether a grant to `grantee` is managed: True for declared roles and PUBLIC, else pruning decides."""
    if grantee in scope.managed_role_names or grantee == "PUBLIC":
        return True
    return scope.prune_unmanaged_grants


def _schema_privileges(found: _Sorted, rows: list[dict[str, Any]], scope: ManagedScope) -> None:
    for row in rows:
        privilege = SchemaPrivilege(row["schema"], row["grantee"], row["privilege"])
        if row["grantee"] == "PUBLIC":
            # USAGE on a project schema is PostgreSQL's default and harmless; CREATE anywhere is not.
            if row["schema"] == scope.helper_schema or row["privilege"] == "CREATE":
                found.add(privilege, True)
            continue
        found.add(privilege, _managed_grantee(row["grantee"], scope))


def _default_privileges(found: _Sorted, rows: list[dict[str, Any]], scope: ManagedScope) -> None:
    """The creator roles' defaults are managed by grantee. Another role's defaults are read
    only where they give a managed role or PUBLIC something (a migration tool's role opening
    every table it creates before apply runs): all managed, so extra, except PostgreSQL's
    built-in EXECUTE on functions for PUBLIC, which every role has, and what another role's
    defaults give the platform's roles (Supabase's, for what its own login creates): unmanaged."""
    creators = set(scope.creators)
    external = set(scope.external_role_names)
    for row in rows:
        if row["objtype"] not in MANAGED_DEFAULT_TYPES:
            continue
        default = DefaultPrivilege(
            row["creator"], row["objtype"], row["schema"], row["grantee"], row["privilege"], row["repairable"]
        )
        if row["creator"] in creators:
            found.add(default, _managed_grantee(row["grantee"], scope))
        elif row["grantee"] in external:
            found.unmanaged.append(default)
        elif default != DefaultPrivilege(row["creator"], "f", None, "PUBLIC", "EXECUTE"):
            found.managed.append(default)


def _functions(found: _Sorted, functions: list[catalog.LiveFunction], scope: ManagedScope) -> None:
    for fn in functions:
        grants = [
            FunctionGrant(scope.helper_schema, fn.name, fn.arg_types, grantee, fn.acts_as_owner)
            for grantee in fn.executors
        ]
        if fn.from_extension:
            # Extension functions are not ours, nor secrets: who may execute them is left alone, but
            # that the keys role can execute those it calls (required_access, below).
            continue
        found.managed.append(
            Function(
                schema=scope.helper_schema,
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
                leakproof=fn.leakproof,
                strict=fn.strict,
            )
        )
        for grant in grants:
            # EXECUTE on a SECURITY DEFINER helper lends its owner's rights: managed whoever holds it.
            found.add(grant, fn.security_definer or _managed_grantee(grant.grantee, scope))
        if fn.owner_executes:
            found.managed.append(FunctionGrant(scope.helper_schema, fn.name, fn.arg_types, fn.owner))


def _grants(found: _Sorted, live_grants: Iterable[LiveGrant], scope: ManagedScope) -> None:
    """Grants on managed tables, each with its grantor (None: the table owner). Anything on
    rlsctl's helper-schema tables is managed whoever holds it: only their owner reads them."""
    for grant in live_grants:
        obj: TableGrant | ColumnGrant
        schema = None if grant.schema == scope.schema else grant.schema
        obj = TableGrant(grant.table, grant.grantee, grant.privilege, grant.grantable, schema, grant.grantor,
                         sequence=grant.sequence)  # fmt: skip
        if grant.column is not None:
            obj = ColumnGrant(grant.table, grant.column, grant.grantee, grant.privilege, grant.grantable, schema)
            obj = replace(obj, grantor=grant.grantor)
        # The table owner's grants apply itself revokes; another grantor's only as that role.
        obj = replace(obj, repairable=grant.grantor is None or grant.acts_as_grantor)
        found.add(obj, schema is not None or _managed_grantee(grant.grantee, scope) or _past_rls(grant))


def _dependents(policies: list[catalog.LivePolicy]) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for policy in policies:
        for function in policy.functions:
            found.setdefault(f"function {function}", []).append(f"policy {policy.table}.{policy.name}")
    return {key: tuple(keys) for key, keys in found.items()}
