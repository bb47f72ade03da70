"""Compile the policy model into the declared state (rlsctl.declare.state).

`declare(project, schema)` turns the policy model into roles, policies,
grants, guards and helper functions for exactly the tables and columns that
exist in `schema`. The templates render this state as SQL; `rlsctl test`
evaluates the same bound expressions to know what every principal may do.
"""

from __future__ import annotations

from dataclasses import replace

from rlsctl.declare import expr as e
from rlsctl.declare.audit import audit_spec, audit_writer
from rlsctl.declare.bind import (
    Binder,
    BindError,
    api_key_parents,
    api_key_rows_function,
    api_keys_exist,
    bind,
    retention_cutoff,
    tenancy_exists,
)
from rlsctl.declare.functions import catalogue
from rlsctl.declare.retention import retention_spec
from rlsctl.declare.state import (
    PRIVILEGE,
    ApiKeyParent,
    ApiKeySpec,
    DeclaredState,
    EncryptedColumn,
    EncryptionSpec,
    GrantSpec,
    GuardSpec,
    PolicySpec,
    RoleSpec,
    TableSpec,
    TenancySpec,
    extension_schema,
)
from rlsctl.policy.columns import columns_named, exists_reads
from rlsctl.policy.conditions import Cond
from rlsctl.policy.model import ColumnList, Guard, TableDecl, UpdateRule
from rlsctl.policy.project import Project
from rlsctl.schema.tables import Schema, Table, with_time_zone


def declare(project: Project, schema: Schema) -> DeclaredState:
    managed = [name for name in sorted(project.tables) if schema.has_table(name)]
    pending = tuple(name for name in sorted(project.tables) if not schema.has_table(name))
    tenancy = _tenancy(project, schema)
    tables = tuple(_table(project, schema, name, tenancy) for name in managed)
    roles = tuple(
        RoleSpec(key, project.role_name(key), decl.kind, decl.description, decl.members, decl.external)
        for key, decl in sorted(project.roles.items())
    )
    identity = project.settings.identity
    keys_role = project.role_name(project.role_of_kind("keys")) if _has_kind(project, "keys") else None
    state = DeclaredState(
        project_name=project.settings.name,
        schema=project.schema_name,
        helper_schema=project.helper_schema,
        identity_setting=identity.setting,
        identity_expression=identity.expression,
        identity_type=canonical_type(identity.type),
        extensions=project.settings.extensions,
        extension_schemas=tuple(
            (name, extension_schema(schema, name, project.helper_schema)) for name in project.settings.extensions
        ),
        prune_unmanaged_grants=project.settings.prune_unmanaged_grants,
        roles=roles,
        owner=project.role_name(project.role_of_kind("owner")),
        app=project.role_name(project.role_of_kind("app")),
        definer=project.role_name(project.role_of_kind("definer")),
        tables=tables,
        pending=pending,
        pending_columns=_pending_columns(project, schema, managed),
        tenancy=tenancy,
        keys=keys_role,
        encryption=_encryption(project, schema, tables),
        api_keys=_api_keys(project, schema),
        api_key_parents=_api_key_parents(project, schema),
        retention=retention_spec(project, schema),
        audit=audit_spec(project, schema),
    )
    tenancy, api_keys = state.tenancy, state.api_keys
    if tenancy is not None and api_keys is not None and api_keys.tenant_type == tenancy.tenant_id_type:
        state = replace(state, tables=tuple(_merging_principals(table) for table in state.tables))
    return replace(state, helper_functions=catalogue(state))


def _merging_principals(table: TableSpec) -> TableSpec:
    return replace(table, policies=tuple(replace(policy, merge_principals=True) for policy in table.policies))


def _pending_columns(project: Project, schema: Schema, managed: list[str]) -> tuple[tuple[str, str], ...]:
    through_exists = exists_reads(project)  # once: it walks every table's rules
    return tuple(
        (name, column)
        for name in managed
        for column in columns_named(project, name, project.tables[name], through_exists)
        if not schema.has_column(name, column)
    )


def _api_key_parents(project: Project, schema: Schema) -> tuple[ApiKeyParent, ...]:
    if not _has_kind(project, "keys"):
        return ()
    found = []
    for name in api_key_parents(project, schema):
        table = schema.table(name)
        if len(table.primary_key) != 1:
            raise BindError(f"api_key conditions reach {name!r} through via: it needs a one-column primary key")
        key = table.primary_key[0]
        reach = _api_key_reach(project, schema, name)
        found.append(ApiKeyParent(name, key, table.column(key).type, api_key_rows_function(name), reach))
    return tuple(found)


def _has_kind(project: Project, kind: str) -> bool:
    return any(decl.kind == kind for decl in project.roles.values())


def _encryption(project: Project, schema: Schema, tables: tuple[TableSpec, ...]) -> EncryptionSpec | None:
    columns: list[EncryptedColumn] = []
    for name, decl in sorted(project.tables.items()):
        table = schema.get(name)
        if table is None:
            continue
        for column, decrypting in [(c, False) for c in decl.encrypted] + [(c, True) for c in decl.decrypting]:
            if table.has_column(column):
                kind = "jsonb" if table.column(column).type == "jsonb" else "text"
                columns.append(EncryptedColumn(name, column, kind, decrypting))
    if not columns or not _has_kind(project, "keys"):
        return None
    settings = project.settings.encryption
    encrypted_tables = {c.table for c in columns if not c.decrypting}
    # Who writes encrypted columns (and so calls encrypt() through the trigger): the roles
    # granted INSERT or UPDATE on their tables, and the owner role, which owns them (data
    # migrations, rlsctl test's fixtures). encrypt() gives nothing away: it returns ciphertext.
    writers = sorted(
        {
            grant.role
            for t in tables
            if t.name in encrypted_tables
            for grant in t.grants
            if grant.privilege in ("INSERT", "UPDATE")
        }
        | {project.role_name(project.role_of_kind("owner"))}
    )
    return EncryptionSpec(
        master_key_setting=settings.master_key_setting,
        readers=tuple(project.role_name(key) for key in settings.readers),
        writers=tuple(role for role in writers if role != project.role_name(project.role_of_kind("keys"))),
        columns=tuple(columns),
        crypto_schema=extension_schema(schema, "pgcrypto", project.helper_schema),
        master_key_file=settings.master_key_file,
    )


def _api_keys(project: Project, schema: Schema) -> ApiKeySpec | None:
    keys = project.settings.api_keys
    if keys is None or not api_keys_exist(project, schema) or not _has_kind(project, "keys"):
        return None
    table = schema.table(keys.table)
    return ApiKeySpec(
        table=keys.table,
        key=keys.key,
        tenant=keys.tenant,
        hash=keys.hash,
        scopes=keys.scopes,
        expires=keys.expires if keys.expires and table.has_column(keys.expires) else None,
        name=keys.name if keys.name and table.has_column(keys.name) else None,
        raw_prefix=keys.raw_prefix,
        tenant_type=table.column(keys.tenant).type,
        key_type=table.column(keys.key).type,
        expires_with_zone=bool(keys.expires) and table.has_column(keys.expires)
        and with_time_zone(table.column(keys.expires).type),
    )


def _tenancy(project: Project, schema: Schema) -> TenancySpec | None:
    tenancy = project.tenancy
    if tenancy is None or not tenancy_exists(project, schema):
        return None
    membership = tenancy.membership
    key_type = schema.table(tenancy.tenants.table).column(tenancy.tenants.key).type
    return TenancySpec(
        tenants_table=tenancy.tenants.table,
        tenants_key=tenancy.tenants.key,
        tenants_owner=tenancy.tenants.owner,
        membership_table=membership.table if membership else None,
        membership_tenant=membership.tenant if membership else None,
        membership_user=membership.user if membership else None,
        membership_rank=membership.rank if membership else None,
        ranks=tenancy.ranks,
        tenant_id_type=key_type,
    )


def _table(project: Project, schema: Schema, name: str, tenancy: TenancySpec | None) -> TableSpec:
    decl = project.tables[name]
    table = schema.table(name)
    policies: list[PolicySpec] = []
    grants: list[GrantSpec] = []
    for role_key, rules in sorted(decl.policies.items()):
        role = project.role_name(role_key)
        visible = bind(project, schema, role_key, rules.select, name) if rules.select is not None else e.FALSE
        for command in rules.declared():
            policy = _policy(project, schema, name, role_key, command, getattr(rules, command), visible)
            if policy is not None:
                policies.append(policy)
            grant = _grant(decl, table, role_key, role, command)
            # The owner role owns the table and so holds every privilege already.
            if grant.columns != () and project.roles[role_key].kind != "owner":
                grants.append(grant)
    policies += _definer_policies(project, schema, name, tenancy)
    grants += _definer_grants(project, name, tenancy)
    retention_policies, retention_grants = _retention(project, schema, name, decl, table)
    policies += retention_policies
    grants += retention_grants
    keys_policies, keys_grants = _keys_role(project, schema, name, decl, table, tenancy)
    policies += keys_policies
    grants += keys_grants
    audit_policies, audit_grants = audit_writer(project, name, table)
    policies += audit_policies
    grants += audit_grants
    sequences = tuple(sorted({column.sequence for column in table.columns if column.sequence is not None}))
    guards = tuple(
        _guard(project, schema, name, guard)
        for guard in decl.guards
        if any(table.has_column(column) for column in guard.changed)
    )
    return TableSpec(
        name=name,
        primary_key=table.primary_key,
        policies=tuple(sorted(policies, key=lambda p: p.name)),
        grants=tuple(grants),
        guards=guards,
        plan_with_tenants=decl.plan_with_tenants,
        sequences=sequences,
        sequence_grants=_sequence_grants(sequences, grants),
    )


def _sequence_grants(sequences: tuple[str, ...], grants: list[GrantSpec]) -> tuple[GrantSpec, ...]:
    """USAGE on the sequences the table's serial columns draw from, for every role that may insert
    (the default's nextval() runs with the inserting role's rights, whichever columns it names);
    never SELECT, whose last_value tells every tenant how many rows all of them created (SEC016)."""
    inserters = {(grant.role_key, grant.role) for grant in grants if grant.privilege == "INSERT"}
    return tuple(
        GrantSpec(sequence, "USAGE", role_key, role, None)
        for sequence in sequences
        for role_key, role in sorted(inserters)
    )


def _policy(
    project: Project,
    schema: Schema,
    table: str,
    role_key: str,
    command: str,
    rule: Cond | UpdateRule,
    visible: e.Pred,
) -> PolicySpec | None:
    """One permissive policy, or None when its condition can never hold.

    UPDATE and DELETE policies include the role's SELECT rule: PostgreSQL
    applies SELECT policies to an UPDATE or DELETE only when the statement
    reads the table (a WHERE or RETURNING), so without it `UPDATE t SET x = 1`
    with no WHERE would reach rows the role cannot see.
    """
    role = project.role_name(role_key)
    name = f"{role_key}_{command}"
    visible = _role_scoped(visible, role)
    ranks = project.tenancy.ranks if project.tenancy is not None else ()
    if isinstance(rule, UpdateRule):
        using = _role_scoped(_and_visible(bind(project, schema, role_key, rule.using, table), visible, ranks), role)
        check = bind(project, schema, role_key, rule.check, table) if rule.check is not None else None
        if check == e.TRUE:
            # A check that constrains nothing falls back to USING (the stricter choice).
            check = None
        if check is not None:
            # The new row must stay visible to the writer, WHERE clause or not: PostgreSQL
            # applies the SELECT policies to it only when the statement reads the table,
            # so without this a WHERE-less UPDATE could hide a row from its writer (an
            # ADMIN unsharing every prompt of the team at once).
            check = _and_visible(check, visible, ranks)
        if e.never_true(using) or (check is not None and e.never_true(check)):
            return None
        return _scoped_members(PolicySpec(table, name, command, role_key, role, using, check))
    bound = _role_scoped(bind(project, schema, role_key, rule, table), role)
    if e.never_true(bound):
        return None
    if command == "insert":
        return _scoped_members(PolicySpec(table, name, command, role_key, role, None, bound))
    if command == "delete":
        bound = _and_visible(bound, visible, ranks)
        if e.never_true(bound):
            return None
    return _scoped_members(PolicySpec(table, name, command, role_key, role, bound, None))


def _and_visible(condition: e.Pred, visible: e.Pred, ranks: tuple[str, ...]) -> e.Pred:
    """`condition AND visible`, or `condition` alone when it already implies `visible` (an ADMIN's
    rows are among a MEMBER's): each repeated helper is one more InitPlan to plan and run in every
    statement (docs/performance.md)."""
    return condition if e.implies(condition, visible, ranks) else e.and_(condition, visible)


def _scoped_members(policy: PolicySpec) -> PolicySpec:
    """`api_key_member` asks for the members of the key's team; the helper answers only keys
    holding a scope the same rule requires, so a rule without one would never hold."""
    for pred in (policy.using, policy.check):
        if pred is not None and not all(e.member_scopes(pred)):
            raise BindError(
                f"{policy.table}: the {policy.command} rule of {policy.role_key} uses api_key_member without an "
                "api_key scope: combine it with `api_key: SCOPE` in the same rule (all: [...])"
            )
    return policy


def _role_scoped(pred: e.Pred, role: str) -> e.Pred:
    """A condition that is simply true still names its role (see expr.RoleMember)."""
    return e.RoleMember(role) if pred == e.TRUE else pred


def _columns(table: Table, chosen: ColumnList | None) -> tuple[str, ...] | None:
    if chosen is None:
        return None
    if chosen.only is not None:
        return tuple(c for c in chosen.only if table.has_column(c))
    return tuple(c for c in table.column_names if c not in chosen.except_)


def _grant(decl: TableDecl, table: Table, role_key: str, role: str, command: str) -> GrantSpec:
    privileges = decl.columns.get(role_key)
    chosen = getattr(privileges, command, None) if privileges and command != "delete" else None
    return GrantSpec(table.name, PRIVILEGE[command], role_key, role, _columns(table, chosen))


def _definer_policies(project: Project, schema: Schema, table: str, tenancy: TenancySpec | None) -> list[PolicySpec]:
    """The helper owner reads only the session user's own tenancy rows (docs/threat-model.md, Guarantees)."""
    if tenancy is None:
        return []
    definer_key = project.role_of_kind("definer")
    definer = project.role_name(definer_key)
    column = None
    if table == tenancy.tenants_table and tenancy.tenants_owner:
        column = tenancy.tenants_owner
    elif table == tenancy.membership_table:
        column = tenancy.membership_user
    if column is None:
        return []
    using = e.compare(e.Col(0, column), "=", e.Identity())
    return [PolicySpec(table, f"{definer_key}_select", "select", definer_key, definer, using, None)]


def _definer_grants(project: Project, table: str, tenancy: TenancySpec | None) -> list[GrantSpec]:
    if tenancy is None:
        return []
    definer_key = project.role_of_kind("definer")
    definer = project.role_name(definer_key)
    if table == tenancy.tenants_table:
        columns = (tenancy.tenants_key, *((tenancy.tenants_owner,) if tenancy.tenants_owner else ()))
    elif table == tenancy.membership_table:
        columns = tuple(c for c in (tenancy.membership_tenant, tenancy.membership_user, tenancy.membership_rank) if c)
    else:
        return []
    return [GrantSpec(table, "SELECT", definer_key, definer, columns)]


def _retention(
    project: Project, schema: Schema, name: str, decl: TableDecl, table: Table
) -> tuple[list[PolicySpec], list[GrantSpec]]:
    """The retention role may see and delete expired rows, and nothing younger.

    It may also lock them (`retention_lock`): a batch takes its rows with FOR UPDATE SKIP
    LOCKED, which PostgreSQL allows only to a role with UPDATE privilege and an UPDATE
    policy. That policy's check is false, so no UPDATE of the role ever succeeds: it
    locks expired rows and changes none (docs/retention.md)."""
    retention = decl.retention
    if retention is None or retention.legal_hold or not table.has_column(retention.column):
        return [], []
    if retention.role not in project.roles:
        raise BindError(f"table {name!r}: retention role {retention.role!r} is not declared in roles")
    role = project.role_name(retention.role)
    expired = e.compare(e.Col(0, retention.column), "<", retention_cutoff(table, retention.column, retention.days))
    policies = [
        PolicySpec(name, f"{retention.role}_{command}", command, retention.role, role, expired, None)
        for command in ("select", "delete")
    ]
    policies.append(PolicySpec(name, f"{retention.role}_lock", "update", retention.role, role, expired, e.FALSE))
    # The batches read the tenant column too: rows of a tenant on hold stay.
    tenant = (decl.tenant,) if isinstance(decl.tenant, str) and table.has_column(decl.tenant) else ()
    # ctid: the block walk addresses its batch by block range (docs/retention.md, Speed).
    readable = (*table.primary_key, retention.column, *tenant, "ctid")
    grants = [
        GrantSpec(name, "SELECT", retention.role, role, tuple(dict.fromkeys(readable))),
        GrantSpec(name, "DELETE", retention.role, role, None),
        GrantSpec(name, "UPDATE", retention.role, role, (retention.column,)),
    ]
    return policies, grants


def _keys_role(
    project: Project, schema: Schema, name: str, decl: TableDecl, table: Table, tenancy: TenancySpec | None
) -> tuple[list[PolicySpec], list[GrantSpec]]:
    """The keys role's own narrow policies: what rotation and API-key sessions need, nothing more.

    - on a table with encrypted columns: read every row and rewrite only those
      columns (key rotation, backfill, decryption for a rollback);
    - on the API-key table: read only the row whose hash the session is
      presenting to authenticate_api_key;
    - on the membership and tenant tables: read only the rows of the tenant of
      the session's API key (api_key_member).
    """
    if not _has_kind(project, "keys"):
        return [], []
    key = project.role_of_kind("keys")
    role = project.role_name(key)
    policies: list[PolicySpec] = []
    grants: list[GrantSpec] = []
    encrypted = [c for c in (*decl.encrypted, *decl.decrypting) if table.has_column(c)]
    if encrypted:
        everyone = e.RoleMember(role)
        policies += [
            PolicySpec(name, f"{key}_select", "select", key, role, everyone, None),
            PolicySpec(name, f"{key}_update", "update", key, role, everyone, None),
        ]
        grants += [
            GrantSpec(name, "SELECT", key, role, tuple(dict.fromkeys((*table.primary_key, *encrypted)))),
            GrantSpec(name, "UPDATE", key, role, tuple(encrypted)),
        ]
    api = project.settings.api_keys
    if api is not None and api_keys_exist(project, schema):
        if name == api.table:
            presented = e.compare(e.Col(0, api.hash), "=", e.PresentedKeyHash())
            policies.append(PolicySpec(name, f"{key}_authenticate", "select", key, role, presented, None))
            columns = [api.key, api.tenant, api.hash, api.scopes] + ([api.expires] if api.expires else [])
            grants.append(GrantSpec(name, "SELECT", key, role, tuple(c for c in columns if table.has_column(c))))
        if name in api_key_parents(project, schema):
            # api_key_rows_<table>() reads the rows of the key's tenant through this policy.
            reach = _api_key_reach(project, schema, name)
            policies.append(PolicySpec(name, f"{key}_tenant", "select", key, role, reach, None))
            tenant = decl.tenant if isinstance(decl.tenant, str) else getattr(decl.tenant, "via", None)
            columns = tuple(dict.fromkeys(c for c in (*table.primary_key, tenant) if c and table.has_column(c)))
            grants.append(GrantSpec(name, "SELECT", key, role, columns))
        if name != api.table and tenancy is not None and name in (tenancy.membership_table, tenancy.tenants_table):
            column = tenancy.membership_tenant if name == tenancy.membership_table else tenancy.tenants_key
            user = tenancy.membership_user if name == tenancy.membership_table else tenancy.tenants_owner
            assert column is not None
            same_tenant = e.compare(e.Col(0, column), "=", e.ApiKeyTenant(None))
            policies.append(PolicySpec(name, f"{key}_members", "select", key, role, same_tenant, None))
            grants.append(GrantSpec(name, "SELECT", key, role, tuple(c for c in (column, user) if c)))
    return policies, _merged(grants)


def _api_key_reach(project: Project, schema: Schema, table: str) -> e.Pred:
    """The row's tenant is the API key's tenant (any scope), following via hops as the keys role."""
    keys = project.role_of_kind("keys")
    reach = Binder(project, schema, keys).tenant_path(
        table, 0, lambda tenant: e.compare(tenant, "=", e.ApiKeyTenant(None))
    )
    return e.settle(reach)


def _merged(grants: list[GrantSpec]) -> list[GrantSpec]:
    """One grant per privilege: the union of the columns each purpose needs."""
    merged: dict[str, GrantSpec] = {}
    for grant in grants:
        before = merged.get(grant.privilege)
        if before is None:
            merged[grant.privilege] = grant
        else:
            columns = tuple(dict.fromkeys((*(before.columns or ()), *(grant.columns or ()))))
            merged[grant.privilege] = GrantSpec(grant.table, grant.privilege, grant.role_key, grant.role, columns)
    return list(merged.values())


def _guard(project: Project, schema: Schema, table: str, guard: Guard) -> GuardSpec:
    roles = tuple(project.role_name(key) for key in guard.roles)
    require = bind(project, schema, guard.roles[0], guard.require, table, in_guard=True)
    require_new = e.TRUE
    if guard.require_new is not None:
        require_new = bind(project, schema, guard.roles[0], guard.require_new, table, in_guard=True)
    changed = tuple(c for c in guard.changed if schema.has_column(table, c))
    return GuardSpec(changed, require, require_new, guard.message, roles)


# The names the catalog prints (pg_get_function_result) for the spellings a project may use:
# a helper declared to return `varchar` is live as `character varying`, and would otherwise be
# replaced on every apply (never converging).
TYPE_NAMES = {
    "varchar": "character varying", "int": "integer", "int4": "integer", "int8": "bigint", "int2": "smallint",
}  # fmt: skip


def canonical_type(name: str) -> str:
    return TYPE_NAMES.get(name.strip().lower(), name)


__all__ = ["declare"]
