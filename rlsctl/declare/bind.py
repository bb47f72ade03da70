"""Bind a policy-file condition to a table, a role and the schema that exists.

Binding resolves what the surface syntax leaves implicit: which column holds
a row's tenant (directly, or through a chain of foreign keys), which parent
table a `via` reaches, what a retention window cuts off. A column or table
that does not exist (yet) binds as NULL and folds away, so a policy
rendered at an early phase says nothing about columns a later phase adds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rlsctl.declare import expr as e
from rlsctl.declare.state import helper_name
from rlsctl.errors import UsageError
from rlsctl.policy import conditions as c
from rlsctl.policy.columns import policy_conditions
from rlsctl.policy.model import TableDecl, TenantVia
from rlsctl.policy.project import Project
from rlsctl.schema.tables import Column, Schema, Table, with_time_zone


def column_of(table: Table | None, name: str) -> Column | None:
    return table.column(name) if table is not None and table.has_column(name) else None


def retention_cutoff(table: Table | None, column: str, days: int) -> e.Cutoff:
    """Where a retention window ends, in the terms of its age column (a timestamptz: expr.Cutoff)."""
    found = column_of(table, column)
    return e.Cutoff(days, found is not None and with_time_zone(found.type))


class BindError(UsageError):
    """A condition refers to something the project does not declare."""


@dataclass
class Binder:
    """Binds the conditions of one policy expression (aliases are numbered per expression)."""

    project: Project
    schema: Schema
    role: str
    next_alias: int = 1
    # A guard's conditions may compare its old and new row (`same`); a policy's may not.
    in_guard: bool = False
    _stack: list[tuple[str, str]] = field(default_factory=list)

    # -- entry points -----------------------------------------------------------

    def bind(self, cond: c.Cond, table: str, alias: int = 0) -> e.Pred:
        method: Callable[[c.Cond, str, int], e.Pred] = getattr(self, "_bind_" + type(cond).__name__)
        return method(cond, table, alias)

    # -- helpers ----------------------------------------------------------------

    def _alias(self) -> int:
        alias = self.next_alias
        self.next_alias += 1
        return alias

    def col(self, table: str, alias: int, name: str) -> e.Operand:
        if self.schema.has_column(table, name):
            return e.Col(alias, name)
        return e.Value(None)

    def decl(self, table: str) -> TableDecl:
        try:
            return self.project.tables[table]
        except KeyError:
            raise BindError(f"table {table!r} is referenced by a policy but not declared in tables") from None

    def tenant_ids(self, rank: str) -> e.TenantIds | None:
        if not tenancy_exists(self.project, self.schema):
            return None
        return e.TenantIds(rank)

    def parent_of(self, table: str, column: str, parent: str | None, key: str | None) -> tuple[str, str]:
        """The table and key a foreign-key column points at (declared, else from the schema)."""
        if parent is not None:
            return parent, key or "id"
        found = self.schema.get(table)
        fk = found.foreign_key_for(column) if found else None
        if fk is None:
            full = self.project.migrated_schema().get(table)
            fk = full.foreign_key_for(column) if full else None
        if fk is None:
            raise BindError(f"{table}.{column} has no foreign key to follow: name the parent with table and key")
        return fk.ref_table, fk.ref_columns[0]

    def tenant_path(self, table: str, alias: int, build: Callable[[e.Operand], e.Pred]) -> e.Pred:
        """`build` applied to the row's tenant id, following `tenant: {via: ...}` hops."""
        tenant = self.decl(table).tenant
        if tenant is None:
            raise BindError(f"table {table!r} has no tenant mapping, so tenant conditions cannot apply")
        if isinstance(tenant, str):
            return build(self.col(table, alias, tenant))
        return self._hop(table, alias, tenant, build)

    def _hop(self, table: str, alias: int, tenant: TenantVia, build: Callable[[e.Operand], e.Pred]) -> e.Pred:
        parent, key = self.parent_of(table, tenant.via, tenant.table, tenant.key)
        if not self.schema.has_table(parent):
            return e.FALSE
        inner = self._alias()
        link = e.compare(e.Col(inner, key), "=", self.col(table, alias, tenant.via))
        return e.exists(parent, inner, e.and_(link, self.tenant_path(parent, inner, build)))

    # -- one method per condition kind --------------------------------------------

    def _bind_Const(self, cond: c.Const, table: str, alias: int) -> e.Pred:
        return e.TRUE if cond.value else e.FALSE

    def _bind_SelfIs(self, cond: c.SelfIs, table: str, alias: int) -> e.Pred:
        found = column_of(self.schema.get(table), cond.column)
        how = e.identity_comparison(found.type, self.project.settings.identity.type) if found else ""
        return e.compare(self.col(table, alias, cond.column), "=", e.Identity(as_text=how == "text"))

    def _bind_IsNull(self, cond: c.IsNull, table: str, alias: int) -> e.Pred:
        return e.is_null(self.col(table, alias, cond.column))

    def _bind_Equals(self, cond: c.Equals, table: str, alias: int) -> e.Pred:
        return e.compare(self.col(table, alias, cond.column), "=", e.Value(cond.value))

    def _bind_InValues(self, cond: c.InValues, table: str, alias: int) -> e.Pred:
        values = tuple(e.Value(v) for v in cond.values)
        return e.in_list(self.col(table, alias, cond.column), values)

    def _bind_TenantRole(self, cond: c.TenantRole, table: str, alias: int) -> e.Pred:
        tenants = self.tenant_ids(cond.rank)
        return self.tenant_path(table, alias, lambda tenant: e.in_tenants(tenant, tenants))

    def _bind_TenantMember(self, cond: c.TenantMember, table: str, alias: int) -> e.Pred:
        user = self.col(table, alias, cond.column)
        if not tenancy_exists(self.project, self.schema):
            return e.FALSE
        return self.tenant_path(table, alias, lambda tenant: self._member_of(tenant, user))

    def _member_of(self, tenant: e.Operand, user: e.Operand) -> e.Pred:
        """The user is a member of the tenant: a membership row, or the tenant's owner column."""
        tenancy = self.project.tenancy
        assert tenancy is not None
        branches: list[e.Pred] = []
        if tenancy.membership is not None:
            m = self._alias()
            membership = tenancy.membership
            branches.append(
                e.exists(
                    membership.table,
                    m,
                    e.and_(
                        e.compare(e.Col(m, membership.tenant), "=", tenant),
                        e.compare(e.Col(m, membership.user), "=", user),
                    ),
                )
            )
        if tenancy.tenants.owner is not None:
            t = self._alias()
            branches.append(
                e.exists(
                    tenancy.tenants.table,
                    t,
                    e.and_(
                        e.compare(e.Col(t, tenancy.tenants.key), "=", tenant),
                        e.compare(e.Col(t, tenancy.tenants.owner), "=", user),
                    ),
                )
            )
        return e.or_(*branches)

    def _bind_CoMember(self, cond: c.CoMember, table: str, alias: int) -> e.Pred:
        tenancy = self.project.tenancy
        if tenancy is None:
            raise BindError("co_member needs the tenancy section")
        tenants = self.tenant_ids(tenancy.lowest_rank)
        if tenants is None:
            return e.NULL
        user = self.col(table, alias, cond.column)
        branches: list[e.Pred] = []
        if tenancy.membership is not None:
            m = self._alias()
            membership = tenancy.membership
            branches.append(
                e.exists(
                    membership.table,
                    m,
                    e.and_(
                        e.compare(e.Col(m, membership.user), "=", user),
                        e.in_tenants(e.Col(m, membership.tenant), tenants),
                    ),
                )
            )
        if tenancy.tenants.owner is not None:
            t = self._alias()
            branches.append(
                e.exists(
                    tenancy.tenants.table,
                    t,
                    e.and_(
                        e.compare(e.Col(t, tenancy.tenants.owner), "=", user),
                        e.in_tenants(e.Col(t, tenancy.tenants.key), tenants),
                    ),
                )
            )
        return e.or_(*branches)

    def _bind_Via(self, cond: c.Via, table: str, alias: int) -> e.Pred:
        parent, key = self.parent_of(table, cond.column, cond.table, cond.key)
        if not self.schema.has_table(parent):
            return e.FALSE
        inner = self._alias()
        link = e.compare(e.Col(inner, key), "=", self.col(table, alias, cond.column))
        # The subquery reads the parent as the same role, so the parent's own
        # SELECT policies already decide visibility; other rules are added.
        rule = e.TRUE if cond.rule == "select" else self._parent_rule(parent, cond.rule, inner)
        return e.exists(parent, inner, e.and_(link, rule))

    def _parent_rule(self, parent: str, command: str, alias: int) -> e.Pred:
        marker = (parent, command)
        if marker in self._stack:
            raise BindError(f"via rules loop back to {parent}.{command}")
        rules = self.decl(parent).policies.get(self.role)
        rule = getattr(rules, command) if rules else None
        if rule is None:
            return e.FALSE
        condition = rule.using if command == "update" else rule
        self._stack.append(marker)
        try:
            return self.bind(condition, parent, alias)
        finally:
            self._stack.pop()

    def _bind_Exists(self, cond: c.Exists, table: str, alias: int) -> e.Pred:
        if not self.schema.has_table(cond.table):
            return e.FALSE
        inner = self._alias()
        links = [
            e.compare(self.col(cond.table, inner, theirs), "=", self.col(table, alias, ours))
            for theirs, ours in cond.match
        ]
        return e.exists(cond.table, inner, e.and_(*links, self.bind(cond.where, cond.table, inner)))

    def _bind_Expired(self, cond: c.Expired, table: str, alias: int) -> e.Pred:
        retention = self.decl(table).retention
        if retention is None:
            raise BindError(f"table {table!r} uses expired but declares no retention")
        cutoff = retention_cutoff(self.schema.get(table), retention.column, retention.days)
        return e.compare(self.col(table, alias, retention.column), "<", cutoff)

    def _bind_ApiKeyScope(self, cond: c.ApiKeyScope, table: str, alias: int) -> e.Pred:
        if not api_keys_exist(self.project, self.schema):
            return e.NULL
        tenant = self.decl(table).tenant
        if isinstance(tenant, TenantVia):
            # Through a definer helper, not a subquery: the parent's RLS would ask for another scope.
            parent, key = self.parent_of(table, tenant.via, tenant.table, tenant.key)
            if not self.schema.has_table(parent):
                return e.FALSE
            if list(self.schema.table(parent).primary_key) != [key]:
                raise BindError(
                    f"api_key on {table!r}: {table}.{tenant.via} must reference the primary key of {parent!r}"
                )
            key_type = self.schema.table(parent).column(key).type
            rows = e.InApiKeyRows(
                self.col(table, alias, tenant.via), parent, api_key_rows_function(parent), key_type, cond.scope
            )
            return rows
        key_tenant = e.ApiKeyTenant(cond.scope)
        return self.tenant_path(table, alias, lambda tenant: e.compare(tenant, "=", key_tenant))

    def _bind_ApiKeyMember(self, cond: c.ApiKeyMember, table: str, alias: int) -> e.Pred:
        if not api_keys_exist(self.project, self.schema) or not tenancy_exists(self.project, self.schema):
            return e.NULL
        user = self.col(table, alias, cond.column)
        return e.NULL if e.is_null_operand(user) else e.InApiKeyMembers(user)

    def _bind_UserSession(self, cond: c.UserSession, table: str, alias: int) -> e.Pred:
        return e.not_(e.IsNull(e.Identity()))

    def _bind_Same(self, cond: c.Same, table: str, alias: int) -> e.Pred:
        if not self.in_guard or alias != 0:
            raise BindError(f"same on {table!r} compares a guard's old and new row: only in a guard's require")
        return self._reach(
            table,
            e.OLD_ROW,
            cond.old,
            lambda old: self._reach(table, e.NEW_ROW, cond.new, lambda new: e.compare(old, "=", new)),
        )

    def _reach(self, table: str, alias: int, steps: tuple[str, ...], build: Callable[[e.Operand], e.Pred]) -> e.Pred:
        """`build` applied to the value `steps` reach from the row: each step but the last follows
        a foreign key through a subquery (so the role's RLS decides what it sees)."""
        if len(steps) == 1:
            return build(self.col(table, alias, steps[0]))
        parent, key = self.parent_of(table, steps[0], None, None)
        if not self.schema.has_table(parent):
            return e.FALSE
        inner = self._alias()
        link = e.compare(e.Col(inner, key), "=", self.col(table, alias, steps[0]))
        return e.exists(parent, inner, e.and_(link, self._reach(parent, inner, steps[1:], build)))

    def _bind_AnyOf(self, cond: c.AnyOf, table: str, alias: int) -> e.Pred:
        return e.or_(*(self.bind(item, table, alias) for item in cond.items))

    def _bind_AllOf(self, cond: c.AllOf, table: str, alias: int) -> e.Pred:
        return e.and_(*(self.bind(item, table, alias) for item in cond.items))

    def _bind_Not(self, cond: c.Not, table: str, alias: int) -> e.Pred:
        return e.not_(self.bind(cond.item, table, alias))


def tenancy_exists(project: Project, schema: Schema) -> bool:
    """The tenant and membership tables (and their columns) exist in `schema`."""
    tenancy = project.tenancy
    if tenancy is None:
        return False
    tenants = tenancy.tenants
    needed = [(tenants.table, tenants.key)]
    if tenants.owner:
        needed.append((tenants.table, tenants.owner))
    if tenancy.membership is not None:
        membership = tenancy.membership
        needed += [(membership.table, membership.tenant), (membership.table, membership.user)]
        if membership.rank:
            needed.append((membership.table, membership.rank))
    return all(schema.has_column(table, column) for table, column in needed)


def api_key_parents(project: Project, schema: Schema) -> tuple[str, ...]:
    """Tables whose rows api_key conditions reach through `tenant: {via: ...}` (each hop of the chain)."""
    if not api_keys_exist(project, schema):
        return ()
    binder = Binder(project, schema, "")
    found: set[str] = set()
    for name, decl in project.tables.items():
        if not any(isinstance(node, c.ApiKeyScope) for cond in policy_conditions(decl) for node in c.walk(cond)):
            continue
        current = name
        while schema.has_table(current) and isinstance(project.tables[current].tenant, TenantVia):
            via = project.tables[current].tenant
            assert isinstance(via, TenantVia)
            current, _ = binder.parent_of(current, via.via, via.table, via.key)
            if current in found or current not in project.tables:
                break
            found.add(current)
    return tuple(sorted(table for table in found if schema.has_table(table)))


def api_key_rows_function(table: str) -> str:
    """The helper returning the keys of `table`'s rows in the API key's tenant."""
    return helper_name("api_key_rows_", table)


def api_keys_exist(project: Project, schema: Schema) -> bool:
    """The API-key table and its columns exist in `schema`."""
    keys = project.settings.api_keys
    if keys is None:
        return False
    columns = [keys.key, keys.tenant, keys.hash, keys.scopes] + ([keys.expires] if keys.expires else [])
    return all(schema.has_column(keys.table, column) for column in columns)


def bind(project: Project, schema: Schema, role: str, cond: c.Cond, table: str, in_guard: bool = False) -> e.Pred:
    """Bind one condition of `table`'s policies (or guards) for `role`, NULL constants settled."""
    return e.settle(Binder(project, schema, role, in_guard=in_guard).bind(cond, table))
