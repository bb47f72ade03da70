"""Generated worlds for `rlsctl verify`: fixture data built from the schema and `tenancy` alone.

A world is described abstractly (`WorldSpec`: how many tenants and users, who
holds which rank where, which rows of which tables exist in which tenant and
by whom, which API keys) and turned into the same fixture shape a project's
`fixtures:` section has (`fixtures_of`), so `rlsctl test`'s runner loads it,
impersonates every principal and judges every cell by the expectations and the
invariants. Small indexes make good shrinking: hypothesis (rlsctl/tester/verify.py)
shrinks a failing world towards fewer tenants, users and rows.

Rows are filled from the schema: the table's tenant column names the row's
tenant; a foreign key to the users table names the row's author; one to
another table picks a row of that table in the same tenant; the membership
rank and the tenant's owner column come from the spec; NOT NULL columns
without a default get a value unique to the row. A row that cannot exist (a
NOT NULL reference with nothing to point at) is left out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from rlsctl.declare import expr as e
from rlsctl.declare.state import DeclaredState
from rlsctl.policy.model import Fixtures, Principal, TableDecl, TenantVia
from rlsctl.policy.project import Project
from rlsctl.schema.tables import Column, Schema, Table
from rlsctl.tester.fixtures import SELF, filled

NAMESPACE = uuid.UUID("1b0b7a4e-3c55-4f57-9a3d-6f0e7c2d9b11")
RowSpec = tuple[str, int | None, int | None, int]  # table, tenant (None: none), author (None: none), variant


@dataclass(frozen=True)
class WorldSpec:
    """A world in indexes: tenant i is `t{i}`, user i is `u{i}`."""

    tenants: int
    users: int
    owners: tuple[int | None, ...] = ()  # per tenant: the user in its owner column
    members: tuple[tuple[int, int, str], ...] = ()  # (user, tenant, rank)
    rows: tuple[RowSpec, ...] = ()
    keys: tuple[tuple[int, tuple[str, ...]], ...] = ()  # API keys: (tenant, scopes)
    label: str = field(default="", compare=False)


@dataclass(frozen=True)
class Shape:
    """What of the project a world is built from: the tables by their part in the tenancy."""

    project: Project
    state: DeclaredState
    schema: Schema
    tenants: str | None
    membership: str | None
    users: str | None  # the table user ids point at (None: ids from outside the database)
    keys: str | None
    data: tuple[str, ...]  # every other managed table, parents first
    scopes: tuple[str, ...]
    ranks: tuple[str, ...]

    def nullable(self, table: str, column: str) -> bool:
        return not self.schema.table(table).column(column).not_null


def shape_of(project: Project, state: DeclaredState, schema: Schema) -> Shape:
    tenancy = project.tenancy
    managed = [t.name for t in state.tables if schema.has_table(t.name)]
    tenants = tenancy.tenants.table if tenancy and schema.has_table(tenancy.tenants.table) else None
    membership = tenancy.membership.table if tenancy and tenancy.membership else None
    membership = membership if membership and schema.has_table(membership) else None
    users = _users_table(project, schema)
    api = project.settings.api_keys
    keys = api.table if api is not None and state.api_keys is not None and schema.has_table(api.table) else None
    special = {tenants, membership, users, keys}
    data = _parents_first([name for name in managed if name not in special], schema)
    scopes = sorted({scope for t in state.tables for p in t.policies for pred in (p.using, p.check)
                     if pred is not None for scope in e.api_key_scopes(pred) if scope})  # fmt: skip
    return Shape(
        project, state, schema, tenants, membership, users, keys, tuple(data), tuple(scopes),
        tenancy.ranks if tenancy else (),
    )  # fmt: skip


def _users_table(project: Project, schema: Schema) -> str | None:
    """The table user ids reference: through the membership's user column or the owner column."""
    tenancy = project.tenancy
    if tenancy is None:
        return None
    links = []
    if tenancy.membership is not None and schema.has_table(tenancy.membership.table):
        links.append((tenancy.membership.table, tenancy.membership.user))
    if tenancy.tenants.owner is not None and schema.has_table(tenancy.tenants.table):
        links.append((tenancy.tenants.table, tenancy.tenants.owner))
    for table, column in links:
        fk = schema.table(table).foreign_key_for(column)
        if fk is not None:
            return fk.ref_table
    return None


def _parents_first(names: list[str], schema: Schema) -> list[str]:
    ordered: list[str] = []
    pending = list(names)
    while pending:
        ready = [n for n in pending if not any(
            fk.ref_table in pending and fk.ref_table != n for fk in schema.table(n).foreign_keys)]  # fmt: skip
        ready = ready or pending[:1]  # a cycle: its first table goes first, its reference may be NULL
        for name in ready:
            ordered.append(name)
            pending.remove(name)
    return ordered


# -- the complete small world ------------------------------------------------------------------------


def complete_world(shape: Shape) -> WorldSpec:
    """Two tenants; in each a member of every rank and an owner (in t0 the top-ranked member,
    in t1 a user with no membership row); a user in both at different ranks, and one at the top
    rank in both; an outsider; for every table a row
    per tenant (and one with none where the tenant may be NULL) by each of the tenant's members,
    its owner, the user in both and the outsider (a row by the user in both is what a rule that
    follows its author into their other tenant gets wrong); an API key per tenant and scope, and
    one with every scope."""
    ranks = shape.ranks or ("MEMBER",)
    members: list[tuple[int, int, str]] = []
    users = 0
    by_tenant: dict[int, list[int]] = {0: [], 1: []}
    for tenant in (0, 1):
        for rank in ranks:
            members.append((users, tenant, rank))
            by_tenant[tenant].append(users)
            users += 1
    t1_owner, both, outsider, both_top = users, users + 1, users + 2, users + 3
    users += 4
    # `both` holds different ranks in the two tenants; `both_top` the top rank in each, who may
    # write in both and so is the one who could carry a row from one tenant to the other.
    members += [(both, 0, ranks[0]), (both, 1, ranks[-1]), (both_top, 0, ranks[-1]), (both_top, 1, ranks[-1])]
    owners = (by_tenant[0][-1], t1_owner)
    rows: list[RowSpec] = []
    for table in shape.data:
        tenants: list[int | None] = [0, 1]
        if _tenant_column_nullable(shape, table):
            tenants.append(None)
        for tenant in tenants:
            owner = [t1_owner] if tenant == 1 else []  # t0's owner is its top-ranked member
            authors = [*by_tenant.get(tenant if tenant is not None else 0, []), *owner, both, outsider]
            if not has_author(shape, table):
                authors = authors[:1]
            rows += [(table, tenant, author, variant) for variant, author in enumerate(authors)]
    keys = [(tenant, (scope,)) for tenant in (0, 1) for scope in shape.scopes]
    if shape.scopes:
        keys.append((0, tuple(shape.scopes)))
    return WorldSpec(2, users, owners, tuple(members), tuple(rows), tuple(keys), "complete world")


def _tenant_column_nullable(shape: Shape, table: str) -> bool:
    decl = shape.project.tables.get(table)
    tenant = decl.tenant if decl else None
    if isinstance(tenant, str):
        return shape.nullable(table, tenant)
    if isinstance(tenant, TenantVia):
        return shape.nullable(table, tenant.via)
    return False


def has_author(shape: Shape, table: str) -> bool:
    return shape.users is not None and any(
        fk.ref_table == shape.users for fk in shape.schema.table(table).foreign_keys
    )


# -- fixtures ----------------------------------------------------------------------------------------


@dataclass
class _Builder:
    shape: Shape
    spec: WorldSpec
    rows: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    placed: dict[tuple[str, int | None], list[str]] = field(default_factory=dict)  # (table, tenant) -> names
    counter: int = 0

    # names and ids

    def tenant_ref(self, tenant: int | None) -> Any:
        return None if tenant is None else f"@t{tenant}"

    def user_ref(self, user: int | None) -> Any:
        if user is None:
            return None
        return f"@u{user}" if self.shape.users is not None else self.user_id(user)

    def user_id(self, user: int) -> str:
        """A user id for identities with no users table (ids from outside the database)."""
        if self.shape.project.settings.identity.type == "uuid":
            return str(uuid.uuid5(NAMESPACE, f"u{user}"))
        return f"rlsctl-verify-u{user}"

    def add(self, table: str, name: str, tenant: int | None, values: dict[str, Any] | None) -> None:
        if values is None:
            return
        self.rows.setdefault(table, {})[name] = values
        self.placed.setdefault((table, tenant), []).append(name)

    # rows

    def fill(self, table: Table, name: str, values: dict[str, Any]) -> dict[str, Any]:
        """NOT NULL columns without a default: a value unique to the row (unique columns hold)."""
        for column in table.columns:
            if column.name in values or not column.not_null or column.has_default:
                continue
            if column.name in table.primary_key and _derivable(column):
                continue
            values[column.name] = self.placeholder(column, name)
        return values

    def placeholder(self, column: Column, name: str) -> Any:
        self.counter += 1
        if column.type in ("text", "character varying") or column.type.startswith(("character varying", "varchar")):
            return f"{name}.{column.name}@verify.test"  # unique, and passes a plain e-mail check
        if column.type in ("integer", "bigint", "smallint", "numeric"):
            return self.counter
        return filled(Table(name, (column,)), {}, self.shape.schema).get(column.name)

    def reference(self, table: Table, column: str, tenant: int | None, author: int | None, variant: int) -> Any:
        """The value of a foreign-key column, or the marker IMPOSSIBLE."""
        fk = table.foreign_key_for(column)
        assert fk is not None
        nullable = self.shape.nullable(table.name, column)
        if fk.ref_table == self.shape.users:
            if author is None:
                return None if nullable else self.user_ref(0) if self.spec.users else IMPOSSIBLE
            return self.user_ref(author)
        if fk.ref_table == self.shape.tenants:
            if tenant is None:
                return None if nullable else IMPOSSIBLE
            return self.tenant_ref(tenant)
        candidates = self.placed.get((fk.ref_table, tenant)) or []
        if not candidates and not _tenant_scoped(self.shape, fk.ref_table):
            candidates = [n for (t, _), names in self.placed.items() if t == fk.ref_table for n in names]
        if not candidates:
            return None if nullable else IMPOSSIBLE
        return f"@{candidates[variant % len(candidates)]}"

    def data_row(self, table_name: str, tenant: int | None, author: int | None, variant: int,
                 name: str) -> dict[str, Any] | None:  # fmt: skip
        shape = self.shape
        table = shape.schema.table(table_name)
        decl = shape.project.tables.get(table_name)
        direct = decl.tenant if decl is not None and isinstance(decl.tenant, str) else None
        retention = decl.retention.column if decl is not None and decl.retention is not None else None
        values: dict[str, Any] = {}
        for column in table.columns:
            if column.name == direct:
                if tenant is None and not shape.nullable(table_name, column.name):
                    return None
                values[column.name] = self.tenant_ref(tenant)
            elif column.name == retention and decl is not None and decl.retention is not None:
                # Half the rows are past the retention window, half inside it.
                days = decl.retention.days + 1 if variant % 2 else max(decl.retention.days - 1, 0)
                values[column.name] = {"ago": f"{days} days"}
            elif table.foreign_key_for(column.name) is not None and column.name not in table.primary_key:
                value = self.reference(table, column.name, tenant, author, variant)
                if value is IMPOSSIBLE:
                    return None
                if value is not None:
                    values[column.name] = value
        return self.fill(table, name, values)


class _Impossible:
    pass


IMPOSSIBLE: Any = _Impossible()


def _derivable(column: Column) -> bool:
    """fixtures.primary_key_value derives uuid and text keys from the row's name."""
    return column.type in ("uuid", "text", "character varying") or column.type.startswith("character varying")


def _tenant_scoped(shape: Shape, table: str) -> bool:
    decl = shape.project.tables.get(table)
    return decl is not None and decl.tenant is not None


def _row_tenant(shape: Shape, table: str, tenant: int | None) -> int | None:
    return tenant if _tenant_scoped(shape, table) else None


def fixtures_of(shape: Shape, spec: WorldSpec) -> Fixtures:
    """The world as a project's fixtures section: rows, principals, insert and update cases."""
    builder = _Builder(shape, spec)
    _users(builder)
    _tenants(builder)
    _members(builder)
    _keys(builder)
    for number, (table, tenant, author, variant) in enumerate(spec.rows):
        if table not in shape.data:
            continue
        author = author if author is None or author < spec.users else None
        tenant = tenant if tenant is None or tenant < spec.tenants else None
        name = f"r{number}_{_slug(table)}"
        builder.add(table, name, _row_tenant(shape, table, tenant),
                    builder.data_row(table, tenant, author, variant, name))  # fmt: skip
    return Fixtures(
        principals=_principals(builder), rows=builder.rows, inserts=_inserts(builder), updates=_updates(builder)
    )


def _slug(table: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in table.lower())


def _users(builder: _Builder) -> None:
    shape = builder.shape
    if shape.users is None:
        return
    table = shape.schema.table(shape.users)
    for user in range(builder.spec.users):
        builder.add(shape.users, f"u{user}", None, builder.fill(table, f"u{user}", {}))


def _tenants(builder: _Builder) -> None:
    shape, spec = builder.shape, builder.spec
    tenancy = shape.project.tenancy
    if shape.tenants is None or tenancy is None:
        return
    table = shape.schema.table(shape.tenants)
    owner_column = tenancy.tenants.owner
    for tenant in range(spec.tenants):
        values: dict[str, Any] = {}
        owner = spec.owners[tenant] if tenant < len(spec.owners) else None
        owner = owner if owner is not None and owner < spec.users else None
        if owner_column is not None and table.has_column(owner_column):
            if owner is None and not shape.nullable(shape.tenants, owner_column):
                owner = 0 if spec.users else None
            if owner is not None:
                values[owner_column] = builder.user_ref(owner)
        builder.add(shape.tenants, f"t{tenant}", tenant, builder.fill(table, f"t{tenant}", values))


def _members(builder: _Builder) -> None:
    shape, spec = builder.shape, builder.spec
    tenancy = shape.project.tenancy
    if shape.membership is None or tenancy is None or tenancy.membership is None:
        return
    membership = tenancy.membership
    table = shape.schema.table(shape.membership)
    seen: set[tuple[int, int]] = set()
    for user, tenant, rank in spec.members:
        if user >= spec.users or tenant >= spec.tenants or (user, tenant) in seen:
            continue
        seen.add((user, tenant))
        name = f"m{user}_t{tenant}"
        values: dict[str, Any] = {
            membership.tenant: builder.tenant_ref(tenant),
            membership.user: builder.user_ref(user),
        }
        if membership.rank:
            values[membership.rank] = rank
        builder.add(shape.membership, name, tenant, builder.fill(table, name, values))


def _keys(builder: _Builder) -> None:
    shape, spec = builder.shape, builder.spec
    api = shape.project.settings.api_keys
    if shape.keys is None or api is None:
        return
    table = shape.schema.table(shape.keys)
    for number, (tenant, scopes) in enumerate(spec.keys):
        if tenant >= spec.tenants:
            continue
        name = f"k{number}"
        values = {api.tenant: builder.tenant_ref(tenant), api.hash: {"sha256": raw_key(shape, number)},
                  api.scopes: list(scopes)}  # fmt: skip
        builder.add(shape.keys, name, tenant, builder.fill(table, name, values))


def raw_key(shape: Shape, number: int) -> str:
    api = shape.project.settings.api_keys
    prefix = api.raw_prefix if api is not None else ""
    return f"{prefix}verify_key_{number}"


def _principals(builder: _Builder) -> dict[str, Principal]:
    shape, spec = builder.shape, builder.spec
    found: dict[str, Principal] = {}
    for user in range(spec.users):
        if shape.users is not None:
            found[f"u{user}"] = Principal(user=f"u{user}")
        else:
            found[f"u{user}"] = Principal(id=builder.user_id(user))
    newcomer = builder.user_id(spec.users + 1000)
    found["newcomer"] = Principal(id=newcomer, description="a user id no row has")
    found["no_identity"] = Principal(user=None)
    found["empty_identity"] = Principal(user="")
    if shape.keys is not None:
        for number in range(len(spec.keys)):
            if f"k{number}" in builder.rows.get(shape.keys, {}):
                found[f"key{number}"] = Principal(api_key=raw_key(shape, number))
    app = shape.project.role_of_kind("app")
    for role in shape.project.roles:
        if role != app:
            found[f"role_{role}"] = Principal(role=role)
    return found


def _inserts(builder: _Builder) -> dict[str, dict[str, dict[str, Any]]]:
    """Per table and tenant, a row by the acting user ("@self"): joining a tenant at the top
    rank, founding a tenant, writing a row into each tenant."""
    shape, spec = builder.shape, builder.spec
    tenancy = shape.project.tenancy
    found: dict[str, dict[str, dict[str, Any]]] = {}
    self_ref = SELF
    for tenant in range(spec.tenants):
        if shape.membership is not None and tenancy is not None and tenancy.membership is not None:
            membership = tenancy.membership
            values: dict[str, Any] = {membership.tenant: builder.tenant_ref(tenant), membership.user: self_ref}
            if membership.rank:
                values[membership.rank] = tenancy.ranks[-1]
            name = f"join_t{tenant}"
            found.setdefault(shape.membership, {})[name] = builder.fill(
                shape.schema.table(shape.membership), name, values
            )
        for table in shape.data:
            name = f"new_{_slug(table)}_t{tenant}"
            values_or_none = builder.data_row(table, tenant, None, 0, name)
            if values_or_none is None:
                continue
            schema_table = shape.schema.table(table)
            for fk in schema_table.foreign_keys:
                if fk.ref_table == shape.users and len(fk.columns) == 1:
                    values_or_none[fk.columns[0]] = self_ref
            found.setdefault(table, {})[name] = values_or_none
    if shape.tenants is not None and tenancy is not None:
        values = {tenancy.tenants.owner: self_ref} if tenancy.tenants.owner else {}
        found.setdefault(shape.tenants, {})["found_tenant"] = builder.fill(
            shape.schema.table(shape.tenants), "found_tenant", values
        )
    return found


def _touch(shape: Shape, table: Table) -> dict[str, Any]:
    """Set one plain column the app may update to a new, valid value (a no-op would fire no
    guard; NULL would only meet a NOT NULL constraint)."""
    spec = shape.state.table(table.name)
    grant = spec.grant_for(shape.project.role_of_kind("app"), "UPDATE")
    enums = dict(shape.schema.enums)
    for column in table.columns:
        if column.name in spec.primary_key or table.foreign_key_for(column.name) is not None:
            continue
        if grant is not None and grant.columns is not None and column.name not in grant.columns:
            continue
        enum = enums.get(column.type.strip('"').rsplit(".", 1)[-1].strip('"'))
        if column.type == "text":
            return {column.name: "rlsctl verify touch"}
        if enum:
            return {column.name: enum[-1]}
        if column.type == "boolean":
            return {column.name: True}
        if column.type in ("integer", "bigint", "smallint", "numeric"):
            return {column.name: 7}
    return {}


def _updates(builder: _Builder) -> dict[str, dict[str, dict[str, Any]]]:
    """Every table: the default touch; a tenant-scoped one also moves to another tenant (through
    its parent where its tenant is its parent's: the reference set to a row of the last tenant);
    a membership is raised to the top rank."""
    shape, spec = builder.shape, builder.spec
    tenancy = shape.project.tenancy
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for name in (*shape.data, shape.membership, shape.tenants, shape.users, shape.keys):
        if name is None or name not in builder.rows:
            continue
        table = shape.schema.table(name)
        touch = _touch(shape, table)
        cases = {"touch": touch} if touch else {}
        decl = shape.project.tables.get(name)
        direct = decl.tenant if decl is not None and isinstance(decl.tenant, str) else None
        if direct is not None and name != shape.tenants and spec.tenants > 1:
            cases["move"] = {direct: builder.tenant_ref(spec.tenants - 1)}
        parent = _parent_row(builder, table, decl, spec.tenants - 1) if spec.tenants > 1 else None
        if parent is not None:
            cases["move"] = parent
        if name == shape.membership and tenancy is not None and tenancy.membership and tenancy.membership.rank:
            cases["top"] = {tenancy.membership.rank: tenancy.ranks[-1]}
        found[name] = cases
    return found


def _parent_row(builder: _Builder, table: Table, decl: TableDecl | None, tenant: int) -> dict[str, Any] | None:
    """For a table whose tenant is its parent's (`tenant: {via: c}`): `c` set to a row of the
    parent in `tenant`, or None when that tenant has no such row."""
    if decl is None or not isinstance(decl.tenant, TenantVia):
        return None
    fk = table.foreign_key_for(decl.tenant.via)
    names = builder.placed.get((fk.ref_table, tenant)) if fk is not None else None
    return {decl.tenant.via: f"@{names[0]}"} if names else None
