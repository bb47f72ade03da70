"""The declared state: what the database's security layer must be, as typed objects.

`declare(project, schema)` turns the policy model into roles, policies,
grants, guards and helper functions for exactly the tables and columns that
exist in `schema`. The templates render this state as SQL; `rlsctl test`
evaluates the same bound expressions to know what every principal may do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from rlsctl import expr as e
from rlsctl.bind import BindError, bind, tenancy_exists
from rlsctl.conditions import COMMANDS, Cond
from rlsctl.model import ColumnList, Guard, TableDecl, UpdateRule
from rlsctl.project import Project
from rlsctl.schema import Schema, Table
from rlsctl.sql import SqlText

PRIVILEGE = {"select": "SELECT", "insert": "INSERT", "update": "UPDATE", "delete": "DELETE"}


@dataclass(frozen=True)
class RoleSpec:
    key: str
    name: str
    kind: str
    description: str


@dataclass(frozen=True)
class PolicySpec:
    table: str
    name: str
    command: str  # select | insert | update | delete
    role_key: str
    role: str
    using: e.Pred | None
    check: e.Pred | None

    @property
    def sql_command(self) -> str:
        return PRIVILEGE[self.command]

    @property
    def helpers(self) -> set[str]:
        found: set[str] = set()
        for pred in (self.using, self.check):
            if pred is not None:
                found |= e.helpers_used(pred)
        return found

    @property
    def reads(self) -> set[str]:
        tables: set[str] = set()
        for pred in (self.using, self.check):
            if pred is not None:
                tables |= e.tables_read(pred)
        return tables


@dataclass(frozen=True)
class GrantSpec:
    table: str
    privilege: str  # SELECT | INSERT | UPDATE | DELETE
    role_key: str
    role: str
    columns: tuple[str, ...] | None  # None: the whole table


@dataclass(frozen=True)
class GuardSpec:
    changed: tuple[str, ...]
    require: e.Pred  # on the old row
    require_new: e.Pred  # on the new row (TRUE when not declared)
    message: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class TableSpec:
    name: str
    primary_key: tuple[str, ...]
    policies: tuple[PolicySpec, ...]
    grants: tuple[GrantSpec, ...]
    guards: tuple[GuardSpec, ...]

    @property
    def guard_function(self) -> str:
        return helper_name("guard_", self.name)

    def policies_for(self, role_key: str, command: str) -> tuple[PolicySpec, ...]:
        return tuple(p for p in self.policies if p.role_key == role_key and p.command == command)

    def grant_for(self, role_key: str, privilege: str) -> GrantSpec | None:
        for grant in self.grants:
            if grant.role_key == role_key and grant.privilege == privilege:
                return grant
        return None


@dataclass(frozen=True)
class TenancySpec:
    tenants_table: str
    tenants_key: str
    tenants_owner: str | None
    membership_table: str | None
    membership_tenant: str | None
    membership_user: str | None
    membership_rank: str | None
    ranks: tuple[str, ...]
    tenant_id_type: str


@dataclass(frozen=True)
class HelperFn:
    name: str
    args: str  # the argument types of the signature, e.g. "text"
    policy_helper: bool  # called from policies (EXECUTE for the roles) vs. a trigger function

    @property
    def signature_args(self) -> SqlText:
        return SqlText(self.args)


@dataclass(frozen=True)
class DeclaredState:
    project_name: str
    schema: str
    helper_schema: str
    identity_setting: str
    identity_expression: str | None
    identity_type: str
    extensions: tuple[str, ...]
    prune_unmanaged_grants: bool
    roles: tuple[RoleSpec, ...]
    owner: str
    app: str
    definer: str
    tables: tuple[TableSpec, ...]
    pending: tuple[str, ...]
    tenancy: TenancySpec | None

    @property
    def managed_role_names(self) -> tuple[str, ...]:
        return tuple(role.name for role in self.roles)

    def helper_callers(self, helper: str) -> tuple[str, ...]:
        """Roles whose policies (or guarded updates) call a policy helper: only they may execute it."""
        callers: set[str] = set()
        for table in self.tables:
            for policy in table.policies:
                if helper in policy.helpers:
                    callers.add(policy.role)
            for guard in table.guards:
                if helper in e.helpers_used(guard.require) | e.helpers_used(guard.require_new):
                    callers.update(guard.roles)
        return tuple(sorted(callers))

    @property
    def grantee_role_names(self) -> tuple[str, ...]:
        """Roles that may hold privileges on tables (all but the owner)."""
        return tuple(role.name for role in self.roles if role.name != self.owner)

    @property
    def helper_functions(self) -> tuple[HelperFn, ...]:
        """Functions rlsctl owns in the helper schema, policy helpers first."""
        helpers = [HelperFn("current_user_id", "", policy_helper=True)]
        if self.tenancy is not None:
            helpers.append(HelperFn("tenant_ids", "text", policy_helper=True))
        helpers.extend(HelperFn(table.guard_function, "", policy_helper=False) for table in self.tables if table.guards)
        return tuple(helpers)

    def table(self, name: str) -> TableSpec:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)


def helper_name(prefix: str, table: str) -> str:
    """A function name derived from a table name, kept within 63 bytes."""
    name = prefix + table
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha256(table.encode()).hexdigest()[:8]
    return (prefix + table)[: 63 - 9] + "_" + digest


def declare(project: Project, schema: Schema) -> DeclaredState:
    managed = [name for name in sorted(project.tables) if schema.has_table(name)]
    pending = tuple(name for name in sorted(project.tables) if not schema.has_table(name))
    tenancy = _tenancy(project, schema)
    tables = tuple(_table(project, schema, name, tenancy) for name in managed)
    roles = tuple(
        RoleSpec(key, project.role_name(key), decl.kind, decl.description)
        for key, decl in sorted(project.roles.items())
    )
    identity = project.settings.identity
    return DeclaredState(
        project_name=project.settings.name,
        schema=project.schema_name,
        helper_schema=project.helper_schema,
        identity_setting=identity.setting,
        identity_expression=identity.expression,
        identity_type=identity.type,
        extensions=project.settings.extensions,
        prune_unmanaged_grants=project.settings.prune_unmanaged_grants,
        roles=roles,
        owner=project.role_name(project.role_of_kind("owner")),
        app=project.role_name(project.role_of_kind("app")),
        definer=project.role_name(project.role_of_kind("definer")),
        tables=tables,
        pending=pending,
        tenancy=tenancy,
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
    if isinstance(rule, UpdateRule):
        using = _role_scoped(e.and_(bind(project, schema, role_key, rule.using, table), visible), role)
        check = bind(project, schema, role_key, rule.check, table) if rule.check is not None else None
        if check == e.TRUE:
            # A check that constrains nothing falls back to USING (the stricter choice).
            check = None
        if e.never_true(using) or (check is not None and e.never_true(check)):
            return None
        return PolicySpec(table, name, command, role_key, role, using, check)
    bound = _role_scoped(bind(project, schema, role_key, rule, table), role)
    if e.never_true(bound):
        return None
    if command == "insert":
        return PolicySpec(table, name, command, role_key, role, None, bound)
    if command == "delete":
        bound = e.and_(bound, visible)
        if e.never_true(bound):
            return None
    return PolicySpec(table, name, command, role_key, role, bound, None)


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
    """The helper owner reads only the session user's own tenancy rows (SPEC s6)."""
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
    """The retention role may see and delete expired rows, and nothing younger."""
    retention = decl.retention
    if retention is None or retention.legal_hold or not table.has_column(retention.column):
        return [], []
    if retention.role not in project.roles:
        raise BindError(f"table {name!r}: retention role {retention.role!r} is not declared in roles")
    role = project.role_name(retention.role)
    expired = e.compare(e.Col(0, retention.column), "<", e.Cutoff(retention.days))
    policies = [
        PolicySpec(name, f"{retention.role}_{command}", command, retention.role, role, expired, None)
        for command in ("select", "delete")
    ]
    readable = (*table.primary_key, retention.column)
    grants = [
        GrantSpec(name, "SELECT", retention.role, role, tuple(dict.fromkeys(readable))),
        GrantSpec(name, "DELETE", retention.role, role, None),
    ]
    return policies, grants


def _guard(project: Project, schema: Schema, table: str, guard: Guard) -> GuardSpec:
    roles = tuple(project.role_name(key) for key in guard.roles)
    require = bind(project, schema, guard.roles[0], guard.require, table)
    require_new = e.TRUE
    if guard.require_new is not None:
        require_new = bind(project, schema, guard.roles[0], guard.require_new, table)
    changed = tuple(c for c in guard.changed if schema.has_column(table, c))
    return GuardSpec(changed, require, require_new, guard.message, roles)


__all__ = ["COMMANDS", "DeclaredState", "GrantSpec", "PolicySpec", "TableSpec", "declare"]
