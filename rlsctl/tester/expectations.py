"""Expectations: what the team means by its access rules, written apart from the policies.

`rlsctl test` used to compute each cell's expected outcome from the policy files
it tested, so it proved the database does what the files say, never that the
files say what the team means. Expectations live in their own files
(`expectations/*.yaml` beside `policies/`; a policy file never holds them), in
the domain's words, and are evaluated here, in Python, over the fixture rows:
never through the policies, their binding or their SQL.

    expectations:
      tables:
        document:
          user:                                  # the app role with a user identity
            select: {any: [{self: author_id}, {tenant_role: MEMBER}]}
            update: {old: {self: author_id}, unchanged: [author_id], new: {allows: select}}
          api_key:                               # the app role in an API-key session
            select: {api_key: "documents:read"}
          owner: {select: true}                  # any other role, by its key
      cases:
        - {name: B cannot read A's document, principal: b_member, table: document,
           command: select, row: doc_a, expect: denied}
      invariants:
        shared: {directory: every tenant reads the public directory}
        own_rows: {document: author_id}

Principal kinds: `user`, `api_key` and `anonymous` (no identity) for the role of
kind app, any other role by its key. Everything not listed is denied; a table
with no entry is not judged (and `rlsctl test` says so). Conditions are the
policy files' condition language (docs/policy-format.md) plus `{allows:
COMMAND}` (the row passes this table's expectation for COMMAND) and
`{older_than: {column: C, days: N}}`; an UPDATE takes `old`, `new`, `unchanged`
(columns that must not change), `same_tenant: true` (the row stays in its
tenant, wherever its `tenant:` mapping leads), `changes` ({COLUMN: condition on the old row}
that must hold when COLUMN changes) and `sets` (the only columns it may set).
The row's tenant comes from the project's `tenant:` mappings and `tenancy`
section: structure, not access rules.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlsctl.errors import PolicyFileError
from rlsctl.policy import conditions as c
from rlsctl.policy.model import TenantVia
from rlsctl.policy.project import Project
from rlsctl.policy.yamlfile import YamlDocument, load_yaml
from rlsctl.schema.tables import Schema

DIRECTORY = "expectations"
APP_KINDS = ("user", "api_key", "anonymous")
Row = dict[str, Any]


@dataclass(frozen=True)
class Allows(c.Cond):
    """The row passes this table's expectation for `command` (for the same principal)."""

    command: str


@dataclass(frozen=True)
class OlderThan(c.Cond):
    column: str
    days: int


@dataclass(frozen=True)
class UpdateExpectation:
    old: c.Cond = field(default_factory=lambda: c.Const(True))
    new: c.Cond = field(default_factory=lambda: c.Const(True))
    unchanged: tuple[str, ...] = ()
    changes: tuple[tuple[str, c.Cond], ...] = ()
    sets: tuple[str, ...] | None = None
    # The row's tenant (through its `tenant:` mapping) is the same after the update.
    same_tenant: bool = False


Rule = c.Cond | UpdateExpectation


@dataclass(frozen=True)
class Case:
    name: str
    principal: str
    table: str
    command: str
    row: str  # the cell's case: a fixture row, an insert candidate, or "<update case>:<row>"
    allowed: bool
    where: str  # file:line


@dataclass(frozen=True)
class Expectations:
    tables: dict[str, dict[str, dict[str, Rule]]]  # table -> principal kind -> command -> rule
    cases: tuple[Case, ...] = ()
    shared: dict[str, str] = field(default_factory=dict)  # table -> why every tenant reads it
    own_rows: dict[str, str] = field(default_factory=dict)  # table -> the column naming the row's user
    files: tuple[str, ...] = ()


# -- loading ----------------------------------------------------------------------------------


def _older_than(value: Any, path: tuple[str | int, ...]) -> c.Cond:
    if not isinstance(value, dict) or set(value) != {"column", "days"} or not isinstance(value["days"], int):
        raise c.ConditionSyntaxError(path, "older_than takes {column: COLUMN, days: N}")
    return OlderThan(value["column"], value["days"])


def _allows(value: Any, path: tuple[str | int, ...]) -> c.Cond:
    if value not in c.COMMANDS:
        raise c.ConditionSyntaxError(path, f"allows takes a command: {', '.join(c.COMMANDS)}")
    return Allows(value)


def _no_expired(value: Any, path: tuple[str | int, ...]) -> c.Cond:
    raise c.ConditionSyntaxError(
        path, "expected values say their window: write {older_than: {column: C, days: N}}, not expired"
    )


EXTRA = {"allows": _allows, "older_than": _older_than, "expired": _no_expired}


def load_expectations(project: Project, known: Schema) -> Expectations | None:
    """The project's expectations, checked against its tables, columns, principals and fixtures;
    None when it has none (no `expectations/` directory, or no file in it)."""
    directory = project.root / DIRECTORY
    files = sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml")) if directory.is_dir() else []
    if not files:
        return None
    tables: dict[str, dict[str, dict[str, Rule]]] = {}
    cases: list[Case] = []
    shared: dict[str, str] = {}
    own_rows: dict[str, str] = {}
    seen: dict[str, str] = {}
    for path in files:
        document = load_yaml(path, _shown(path))
        reader = _Reader(project, known, document)
        section = reader.section()
        for table, value in reader.mapping(section.get("tables", {}), ("tables",)).items():
            where = reader.where(("tables", table))
            if table in seen:
                raise reader.error(("tables", table), f"table {table!r} already has expectations in {seen[table]}")
            seen[table] = where
            tables[table] = reader.table(table, value)
        cases += reader.cases(section.get("cases", []))
        invariants = reader.mapping(section.get("invariants", {}), ("invariants",))
        shared |= reader.shared(invariants.get("shared", {}))
        own_rows |= reader.own_rows(invariants.get("own_rows", {}))
    return Expectations(tables, tuple(cases), shared, own_rows, tuple(str(p) for p in files))


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@dataclass
class _Reader:
    """Parses one expectations file strictly: every unknown name is an error at its line."""

    project: Project
    known: Schema
    document: YamlDocument

    def error(self, path: tuple[str | int, ...], message: str) -> PolicyFileError:
        return PolicyFileError(self.document.path, self.document.line_of(("expectations", *path)), message)

    def where(self, path: tuple[str | int, ...]) -> str:
        return f"{self.document.path}:{self.document.line_of(('expectations', *path))}"

    def section(self) -> dict[str, Any]:
        data = self.document.data
        if not isinstance(data, dict) or set(data) != {"expectations"}:
            raise PolicyFileError(self.document.path, 1, "an expectations file holds one section: expectations")
        section = data["expectations"] or {}
        if not isinstance(section, dict):
            raise self.error((), "expectations is a mapping of tables, cases and invariants")
        unknown = set(section) - {"tables", "cases", "invariants"}
        if unknown:
            raise self.error((sorted(unknown)[0],), f"unknown key {sorted(unknown)[0]!r} (tables, cases, invariants)")
        return section

    def mapping(self, value: Any, path: tuple[str | int, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(path, "expected a mapping")
        return value

    def table(self, table: str, value: Any) -> dict[str, dict[str, Rule]]:
        path: tuple[str | int, ...] = ("tables", table)
        if table not in self.project.tables:
            raise self.error(path, f"table {table!r} is not declared in the policy files")
        app = self.project.role_of_kind("app")
        kinds = (*APP_KINDS, *(key for key in sorted(self.project.roles) if key != app))
        found: dict[str, dict[str, Rule]] = {}
        for kind, commands in self.mapping(value, path).items():
            if kind not in kinds:
                raise self.error((*path, kind), f"unknown principal kind {kind!r} (kinds: {', '.join(kinds)})")
            rules: dict[str, Rule] = {}
            for command, raw in self.mapping(commands, (*path, kind)).items():
                if command not in c.COMMANDS:
                    raise self.error((*path, kind, command), f"unknown command {command!r}")
                rules[command] = self.rule(table, command, raw, (*path, kind, command))
            found[kind] = rules
        return found

    def rule(self, table: str, command: str, raw: Any, path: tuple[str | int, ...]) -> Rule:
        fields = {"old", "new", "unchanged", "changes", "sets", "same_tenant"}
        if command == "update" and isinstance(raw, dict) and set(raw) & fields:
            unknown = set(raw) - fields
            if unknown:
                raise self.error((*path, sorted(unknown)[0]), f"an update takes {', '.join(sorted(fields))}")
            same_tenant = raw.get("same_tenant", False)
            if not isinstance(same_tenant, bool) or (same_tenant and self.project.tables[table].tenant is None):
                raise self.error((*path, "same_tenant"), "same_tenant is true or false, on a table with a tenant")
            changes = tuple(
                (column, self.condition(table, cond, (*path, "changes", column)))
                for column, cond in self.mapping(raw.get("changes", {}), (*path, "changes")).items()
            )
            for column, _ in changes:
                self.column(table, column, (*path, "changes", column))
            unchanged = tuple(self.columns(table, raw.get("unchanged", []), (*path, "unchanged")))
            sets = tuple(self.columns(table, raw["sets"], (*path, "sets"))) if "sets" in raw else None
            return UpdateExpectation(
                old=self.condition(table, raw.get("old", True), (*path, "old")),
                new=self.condition(table, raw.get("new", True), (*path, "new")),
                unchanged=unchanged,
                changes=changes,
                sets=sets,
                same_tenant=same_tenant,
            )
        return self.condition(table, raw, path)

    def condition(self, table: str, raw: Any, path: tuple[str | int, ...]) -> c.Cond:
        try:
            cond = c.parse_condition(raw, extra=EXTRA)
        except c.ConditionSyntaxError as exc:
            raise self.error((*path, *exc.path), exc.message) from None
        self.check_condition(table, cond, path)
        return cond

    def check_condition(self, table: str, cond: c.Cond, path: tuple[str | int, ...]) -> None:
        for node in c.walk(cond):
            if isinstance(node, c.Same):
                raise self.error(path, "same belongs to guards; an expected update says same_tenant: true")
            for column in sorted(c.columns_of(node) if not isinstance(node, c.AnyOf | c.AllOf | c.Not) else ()):
                self.column(table, column, path)
            if isinstance(node, OlderThan):
                self.column(table, node.column, path)
            if isinstance(node, c.TenantRole | c.TenantMember) and self.project.tables[table].tenant is None:
                raise self.error(path, f"{table} has no tenant mapping (tenant: in the policy files)")
            if isinstance(node, c.TenantRole) and (
                self.project.tenancy is None or node.rank not in self.project.tenancy.ranks
            ):
                raise self.error(path, f"unknown tenant rank {node.rank!r}")
            if isinstance(node, c.Via):
                parent = node.table or self._parent(table, node.column)
                if parent not in self.project.tables:
                    raise self.error(path, f"via {node.column} leads to {parent!r}, which has no entry in tables")
            if isinstance(node, c.Exists):
                if node.table not in self.project.tables:
                    raise self.error(path, f"exists reads {node.table!r}, which has no entry in tables")
                for theirs, _ in node.match:
                    self.column(node.table, theirs, path)
                self.check_condition(node.table, node.where, path)

    def _parent(self, table: str, column: str) -> str:
        found = self.known.table(table).foreign_key_for(column) if self.known.has_table(table) else None
        return found.ref_table if found else "?"

    def column(self, table: str, column: str, path: tuple[str | int, ...]) -> None:
        if not self.known.has_column(table, column):
            raise self.error(path, f"unknown column {table}.{column}")

    def columns(self, table: str, value: Any, path: tuple[str | int, ...]) -> list[str]:
        if not isinstance(value, list):
            raise self.error(path, "expected a list of columns")
        for column in value:
            self.column(table, column, path)
        return list(value)

    def cases(self, value: Any) -> list[Case]:
        if not isinstance(value, list):
            raise self.error(("cases",), "cases is a list")
        fixtures = self.project.fixtures
        found: list[Case] = []
        for index, raw in enumerate(value):
            path: tuple[str | int, ...] = ("cases", index)
            fields = {"name", "principal", "table", "command", "row", "expect"}
            if not isinstance(raw, dict) or set(raw) != fields:
                raise self.error(path, f"a case has exactly {', '.join(sorted(fields))}")
            if fixtures is None or raw["principal"] not in fixtures.principals:
                raise self.error((*path, "principal"), f"unknown principal {raw['principal']!r} (fixtures.principals)")
            if raw["table"] not in self.project.tables:
                raise self.error((*path, "table"), f"table {raw['table']!r} is not declared in the policy files")
            if raw["command"] not in c.COMMANDS:
                raise self.error((*path, "command"), f"unknown command {raw['command']!r}")
            if raw["expect"] not in ("allowed", "denied"):
                raise self.error((*path, "expect"), "expect is allowed or denied")
            self._case_row(raw["table"], raw["command"], str(raw["row"]), (*path, "row"))
            found.append(
                Case(raw["name"], raw["principal"], raw["table"], raw["command"], str(raw["row"]),
                     raw["expect"] == "allowed", self.where(path))
            )  # fmt: skip
        return found

    def _case_row(self, table: str, command: str, row: str, path: tuple[str | int, ...]) -> None:
        fixtures = self.project.fixtures
        assert fixtures is not None
        rows = fixtures.rows.get(table, {})
        if command == "insert":
            if row not in fixtures.inserts.get(table, {}):
                raise self.error(path, f"no insert candidate {row!r} for {table} (fixtures.inserts)")
        elif command == "update":
            case, _, name = row.partition(":")
            if case not in fixtures.updates.get(table, {}) and case != "touch":
                raise self.error(path, f"no update case {case!r} for {table} (fixtures.updates)")
            if name not in rows:
                raise self.error(path, f"no fixture row {name!r} in {table}")
        elif row not in rows:
            raise self.error(path, f"no fixture row {row!r} in {table}")

    def shared(self, value: Any) -> dict[str, str]:
        for table, reason in self.mapping(value, ("invariants", "shared")).items():
            if table not in self.project.tables:
                raise self.error(("invariants", "shared", table), f"table {table!r} is not declared")
            if not isinstance(reason, str) or not reason.strip():
                raise self.error(("invariants", "shared", table), "say why every tenant may read it")
        return dict(value)

    def own_rows(self, value: Any) -> dict[str, str]:
        for table, column in self.mapping(value, ("invariants", "own_rows")).items():
            if table not in self.project.tables:
                raise self.error(("invariants", "own_rows", table), f"table {table!r} is not declared")
            self.column(table, column, ("invariants", "own_rows", table))
        return dict(value)


# -- judging ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Who:
    """A principal as expectations see it: its kind, its user, its API-key session."""

    kind: str | None  # None: the session cannot start (a key after a user: refused)
    user: Any = None
    key_tenant: Any = None
    key_scopes: tuple[str, ...] = ()


class Domain:
    """Tenants and memberships, read from the fixture rows themselves (every row: no RLS)."""

    def __init__(self, project: Project, schema: Schema, world: dict[str, list[Row]]) -> None:
        self.project = project
        self.schema = schema
        self.world = world
        self._tenants: dict[tuple[Any, str], set[Any]] = {}

    def parent(self, table: str, column: str, parent: str | None, key: str | None) -> tuple[str, str]:
        if parent is not None:
            return parent, key or "id"
        fk = self.schema.table(table).foreign_key_for(column)
        assert fk is not None, f"{table}.{column} has no foreign key"
        return fk.ref_table, fk.ref_columns[0]

    def find(self, table: str, key: str, value: Any) -> Row | None:
        if value is None:
            return None
        return next((row for row in self.world.get(table, []) if same(row.get(key), value)), None)

    def tenant_of(self, table: str, row: Row) -> Any:
        """The row's tenant, following the project's `tenant:` mapping (through parents for via)."""
        decl = self.project.tables.get(table)
        tenant = decl.tenant if decl else None
        if tenant is None:
            return None
        if isinstance(tenant, str):
            return row.get(tenant)
        assert isinstance(tenant, TenantVia)
        parent, key = self.parent(table, tenant.via, tenant.table, tenant.key)
        found = self.find(parent, key, row.get(tenant.via))
        return self.tenant_of(parent, found) if found is not None else None

    def has_tenant(self, table: str) -> bool:
        decl = self.project.tables.get(table)
        return decl is not None and decl.tenant is not None

    def tenants_of(self, user: Any, rank: str | None = None) -> set[Any]:
        """Tenants where `user` holds at least `rank` (any rank when None): a membership row, or
        the tenant's owner column (which counts as the highest rank)."""
        tenancy = self.project.tenancy
        if tenancy is None or user is None:
            return set()
        rank = rank or tenancy.ranks[0]
        cached = self._tenants.get((user, rank))
        if cached is not None:
            return cached
        wanted = tenancy.ranks[tenancy.ranks.index(rank) :] if rank in tenancy.ranks else ()
        found: set[Any] = set()
        membership = tenancy.membership
        if membership is not None:
            for row in self.world.get(membership.table, []):
                held = row.get(membership.rank) if membership.rank else tenancy.ranks[0]
                if same(row.get(membership.user), user) and held in wanted:
                    found.add(row.get(membership.tenant))
        if tenancy.tenants.owner is not None and wanted:
            for row in self.world.get(tenancy.tenants.table, []):
                if same(row.get(tenancy.tenants.owner), user):
                    found.add(row.get(tenancy.tenants.key))
        self._tenants[(user, rank)] = found
        return found

    def member(self, user: Any, tenant: Any) -> bool:
        return tenant is not None and any(same(tenant, held) for held in self.tenants_of(user))


class Judge:
    """Evaluates expectations over the fixture world (every row, no RLS: the domain's truth)."""

    def __init__(self, domain: Domain, expectations: Expectations) -> None:
        self.domain = domain
        self.expectations = expectations
        self.now = dt.datetime.now(dt.UTC).replace(tzinfo=None)

    def judges(self, table: str) -> bool:
        return table in self.expectations.tables

    def allowed(self, who: Who, table: str, command: str, row: Row, new: Row | None = None,
                set_columns: tuple[str, ...] = ()) -> bool:  # fmt: skip
        if who.kind is None:
            return False
        rule = self.expectations.tables.get(table, {}).get(who.kind, {}).get(command)
        if rule is None:
            return False  # everything not listed is denied
        if isinstance(rule, UpdateExpectation):
            return self._update(who, table, rule, row, new or row, set_columns)
        return self.holds(who, table, rule, row)

    def _update(self, who: Who, table: str, rule: UpdateExpectation, old: Row, new: Row, sets: tuple[str, ...]) -> bool:
        if rule.sets is not None and not set(sets) <= set(rule.sets):
            return False
        if any(differ(old.get(column), new.get(column)) for column in rule.unchanged):
            return False
        if rule.same_tenant and not same(self.domain.tenant_of(table, old), self.domain.tenant_of(table, new)):
            return False
        for column, cond in rule.changes:
            if differ(old.get(column), new.get(column)) and not self.holds(who, table, cond, old):
                return False
        return self.holds(who, table, rule.old, old) and self.holds(who, table, rule.new, new)

    def holds(self, who: Who, table: str, cond: c.Cond, row: Row) -> bool:
        domain = self.domain
        if isinstance(cond, c.Const):
            return cond.value
        if isinstance(cond, c.AnyOf):
            return any(self.holds(who, table, item, row) for item in cond.items)
        if isinstance(cond, c.AllOf):
            return all(self.holds(who, table, item, row) for item in cond.items)
        if isinstance(cond, c.Not):
            return not self.holds(who, table, cond.item, row)
        if isinstance(cond, c.SelfIs):
            return who.user is not None and same(row.get(cond.column), who.user)
        if isinstance(cond, c.IsNull):
            return row.get(cond.column) is None
        if isinstance(cond, c.Equals):
            return same(row.get(cond.column), cond.value)
        if isinstance(cond, c.InValues):
            return any(same(row.get(cond.column), value) for value in cond.values)
        if isinstance(cond, c.UserSession):
            return who.user is not None
        if isinstance(cond, c.TenantRole):
            tenant = domain.tenant_of(table, row)
            held = domain.tenants_of(who.user, cond.rank)
            return who.user is not None and any(same(tenant, t) for t in held)
        if isinstance(cond, c.TenantMember):
            return domain.member(row.get(cond.column), domain.tenant_of(table, row))
        if isinstance(cond, c.CoMember):
            other = row.get(cond.column)
            return who.user is not None and bool(domain.tenants_of(who.user) & domain.tenants_of(other))
        if isinstance(cond, c.ApiKeyScope):
            tenant = domain.tenant_of(table, row)
            return who.kind == "api_key" and cond.scope in who.key_scopes and same(tenant, who.key_tenant)
        if isinstance(cond, c.ApiKeyMember):
            return who.kind == "api_key" and domain.member(row.get(cond.column), who.key_tenant)
        if isinstance(cond, c.Via):
            parent, key = domain.parent(table, cond.column, cond.table, cond.key)
            found = domain.find(parent, key, row.get(cond.column))
            return found is not None and self.allowed(who, parent, cond.rule, found)
        if isinstance(cond, c.Exists):
            return any(
                all(same(other.get(theirs), row.get(ours)) for theirs, ours in cond.match)
                and self.holds(who, cond.table, cond.where, other)
                for other in domain.world.get(cond.table, [])
            )
        if isinstance(cond, Allows):
            return self.allowed(who, table, cond.command, row)
        if isinstance(cond, OlderThan):
            value = as_time(row.get(cond.column))
            return isinstance(value, dt.datetime) and value < self.now - dt.timedelta(days=cond.days)
        raise TypeError(f"expectations cannot evaluate {cond!r}")


def same(left: Any, right: Any) -> bool:
    if left is None or right is None:
        return False
    if isinstance(left, dt.datetime) or isinstance(right, dt.datetime):
        return as_time(left) == as_time(right)
    return left == right if type(left) is type(right) else str(left) == str(right)


def differ(left: Any, right: Any) -> bool:
    return not (same(left, right) or (left is None and right is None))


def as_time(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    return value
