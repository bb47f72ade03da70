"""What lint rules look at: one model, filled from a live catalog or from SQL files.

`rlsctl.lint.live` reads it from any database (set-based queries, a fixed
number however many tables); `rlsctl.lint.sqlfiles` builds it by replaying
SQL statements (migrations, rendered SQL, a file given on the command line)
with the real PostgreSQL parser. Rules never know which one they got; a rule
that needs facts only a live server has (who can log in) checks `live`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

PUBLIC = "PUBLIC"
SECRET_MARK = "rlsctl:secret"
_SECRET = re.compile(r"rlsctl:secret\b(?:\s+readers=(?P<readers>\S*))?")


@dataclass
class Relation:
    schema: str
    name: str
    kind: str  # r table, p partitioned table, v view, m materialized view, f foreign table, S sequence
    owner: str
    rls: bool = False
    forced: bool = False
    parent: str | None = None  # qualified name of the partitioned parent, for a partition
    columns: list[str] = field(default_factory=list)
    security_invoker: bool = False
    sources: set[str] = field(default_factory=set)  # relations a view or materialized view reads
    primary_key: tuple[str, ...] = ()
    types: dict[str, str] = field(default_factory=dict)  # column -> its type, as canonical_type() names it

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def is_table(self) -> bool:
        return self.kind in ("r", "p")


@dataclass
class Policy:
    schema: str
    table: str
    name: str
    command: str  # select insert update delete all
    permissive: bool
    roles: tuple[str, ...]  # PUBLIC for none named
    using: str | None
    check: str | None

    @property
    def table_qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}.{self.name}"

    @property
    def writes(self) -> bool:
        return self.command in ("insert", "update", "all")


@dataclass(frozen=True)
class Grant:
    kind: str  # table (any relation), column, function, schema
    schema: str
    object: str  # relation, function signature, or schema name
    grantee: str
    privilege: str
    column: str | None = None

    @property
    def qualified(self) -> str:
        return self.object if self.kind == "schema" else f"{self.schema}.{self.object}"


@dataclass
class Function:
    schema: str
    name: str
    args: str  # identity argument types
    security_definer: bool = False
    volatility: str = "v"
    search_path: str | None = None  # the proconfig value, None when not fixed
    language: str = "sql"
    body: str = ""
    owner: str = ""
    from_extension: bool = False
    returns: str = ""
    executors: set[str] = field(default_factory=lambda: {PUBLIC})
    leakproof: bool = False

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}({self.args})"

    @property
    def search_path_entries(self) -> list[str] | None:
        """The fixed search_path as a list of schema names (quotes removed), None when not fixed."""
        return None if self.search_path is None else parse_search_path(self.search_path)

    @property
    def is_trigger(self) -> bool:
        """Trigger functions cannot be called directly, whoever may EXECUTE them."""
        return self.returns in ("trigger", "event_trigger")


@dataclass
class Role:
    name: str
    login: bool = False
    superuser: bool = False
    bypassrls: bool = False
    member_of: set[str] = field(default_factory=set)
    bootstrap: bool = False  # the cluster's initial superuser (oid 10)


@dataclass
class Index:
    schema: str
    table: str
    name: str
    columns: tuple[str, ...]  # the key columns before the first expression key: (a) of (a, lower(b), c)
    expression: str | None = None  # the leading key, when it is an expression (lower(email)): its SQL
    method: str = "btree"
    predicate: str | None = None  # a partial index's WHERE: it serves only filters that imply it
    valid: bool = True  # a failed CREATE INDEX CONCURRENTLY leaves an invalid one, which no plan uses

    @property
    def partial(self) -> bool:
        return self.predicate is not None

    @property
    def usable_btree(self) -> bool:
        """A valid b-tree led by a column: the planner can use it for an equality or a range on that
        column (a hash serves no range, a BRIN no lookup, a failed concurrent build nothing). Whether a
        partial one serves a filter depends on its predicate (exprs.index_leads)."""
        return self.method == "btree" and self.valid and bool(self.columns)


# Type names as PostgreSQL's catalog (format_type), the SQL of a migration and sqlglot write them.
_TYPE_ALIASES = {
    "int": "integer", "int4": "integer", "int8": "bigint", "int2": "smallint", "bool": "boolean",
    "character varying": "varchar", "character": "bpchar", "char": "bpchar",
    "timestamp without time zone": "timestamp", "timestamp with time zone": "timestamptz",
    "time without time zone": "time", "time with time zone": "timetz",
    "float8": "double precision", "double": "double precision", "float4": "real", "decimal": "numeric",
}  # fmt: skip


def canonical_type(text: str) -> str:
    """One name per type: `pg_catalog.int4`, `integer` and `INT` are all `integer`; a type modifier
    (`varchar(20)`, `timestamp(3)`) is dropped, an array keeps its `[]`."""
    name = text.strip().lower().replace('"', "")
    array = name.endswith("[]")
    name = re.sub(r"\([^)]*\)", "", name.removesuffix("[]")).strip().removeprefix("pg_catalog.")
    name = " ".join(name.split())
    return _TYPE_ALIASES.get(name, name) + ("[]" if array else "")


@dataclass
class ForeignKey:
    schema: str
    table: str
    name: str
    columns: tuple[str, ...]
    ref_table: str


@dataclass
class Schema:
    name: str
    owner: str
    creators: set[str] = field(default_factory=set)  # roles (or PUBLIC) with CREATE, besides the owner


@dataclass
class DefaultAcl:
    creator: str
    objtype: str  # r S f T n
    schema: str | None
    grantees: set[str]


@dataclass
class Trigger:
    schema: str
    table: str
    name: str
    function: str  # schema.name


@dataclass(frozen=True)
class Location:
    """Where an object is declared: a file (absolute, or relative to the working directory) and, when known,
    the 1-based line and column (in characters) of the statement or policy-file key that declares it."""

    path: str
    line: int | None = None
    column: int | None = None


@dataclass(frozen=True)
class OpenCreate:
    """A statement in SQL files that adopts an object if it already exists (CREATE OR REPLACE, IF NOT EXISTS),
    run while roles other than the schema's owner and the running user could create in its schema."""

    statement: str  # e.g. "CREATE OR REPLACE FUNCTION"
    object: str  # qualified name
    schema: str
    creators: frozenset[str]  # who else could create in the schema at that moment


@dataclass
class LintModel:
    source: str  # "live", "sql" or "project"
    relations: dict[str, Relation] = field(default_factory=dict)
    policies: list[Policy] = field(default_factory=list)
    grants: set[Grant] = field(default_factory=set)
    functions: dict[str, Function] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)
    indexes: list[Index] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    extensions: dict[str, str] = field(default_factory=dict)  # name -> schema
    schemas: dict[str, Schema] = field(default_factory=dict)
    default_acls: list[DefaultAcl] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)
    open_creates: list[OpenCreate] = field(default_factory=list)  # SQL files only
    # From the project: columns declared secret, and the roles entitled to read them. Also read from
    # column comments containing `rlsctl:secret readers=role_a,role_b` (live and SQL files).
    secrets: dict[str, set[str]] = field(default_factory=dict)  # "schema.table.column" -> readers
    database_owner: str | None = None  # the owner of the linted database (live only)
    # Key-encryption key settings (the project's, and any *.master_key) -> every place from which
    # logins that do not need it can read it (live only, rlsctl.catalog.kek).
    key_exposure: dict[str, list[str]] = field(default_factory=dict)
    # The setting the policies read the session's user from -> where the server gives it a value every
    # session (of a database or role) starts with (live only, with a project): a default identity.
    identity_defaults: dict[str, list[str]] = field(default_factory=dict)
    # (group, member) memberships rlsctl grants on purpose (live, with a project): a managed
    # host's migration login is made a member of the roles it creates (docs/managed-postgres.md).
    intended_memberships: set[tuple[str, str]] = field(default_factory=set)
    # The platform's design, from the project (`project.platform`, `project.lint`; docs/supabase.md):
    # schemas whose functions are the platform's, schemas it serves over its API, its anonymous roles.
    trusted_schemas: set[str] = field(default_factory=set)
    exposed_schemas: set[str] = field(default_factory=set)
    anonymous_roles: set[str] = field(default_factory=set)
    # rlsctl's helper schema, when lint knows the project: its SECURITY DEFINER helpers read past the
    # callers' policies by design, each with its own narrow policies (docs/threat-model.md).
    own_schemas: set[str] = field(default_factory=set)
    # Where each object was declared (SQL files, the project's migrations and policy files; never live):
    # the qualified name lint reports -> its statement or policy-file line. The runner gives each finding
    # the location of its object or of the nearest object containing it (a policy's table).
    locations: dict[str, Location] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.source == "live"

    def trusted(self, function: Function) -> bool:
        """A function of the platform's (in a trusted schema): its grants and search_path are the platform's design."""
        return function.schema in self.trusted_schemas

    def anonymous_executors(self, function: Function) -> list[str]:
        """The anonymous roles that may execute `function` (directly, as PUBLIC or through a membership)."""
        return sorted(role for role in self.anonymous_roles if self.holders(role) & function.executors)

    # -- lookups the rules share --------------------------------------------------

    def tables(self) -> list[Relation]:
        return [r for r in self.relations.values() if r.is_table]

    def policies_on(self, qualified: str) -> list[Policy]:
        # Rules run after the model is complete: index the policies once (by identity of the list).
        key = (id(self.policies), len(self.policies))
        if getattr(self, "_policy_key", None) != key:
            index: dict[str, list[Policy]] = {}
            for policy in self.policies:
                index.setdefault(policy.table_qualified, []).append(policy)
            self._policy_index, self._policy_key = index, key
        return list(self._policy_index.get(qualified, ()))

    def grantees_of(self, qualified: str) -> set[str]:
        """Who holds any privilege on a relation (table- or column-level), owner excluded."""
        return {g.grantee for g in self.grants if g.kind in ("table", "column") and g.qualified == qualified}

    def can_read_column(self, table: str, column: str) -> set[str]:
        found: set[str] = set()
        for grant in self.grants:
            if grant.qualified != table or grant.privilege != "SELECT":
                continue
            if grant.kind == "table" or (grant.kind == "column" and grant.column == column):
                found.add(grant.grantee)
        return found

    def indexed(self, qualified: str, column: str) -> bool:
        schema, _, table = qualified.partition(".")
        relation = self.relations.get(qualified)
        if relation is not None and relation.primary_key[:1] == (column,):
            return True
        if any(i.schema == schema and i.table == table and i.columns[:1] == (column,) for i in self.indexes):
            return True
        # A partitioned parent's index is built on every partition, those attached later too (a SQL
        # file shows it on the parent only; the live catalog lists each partition's copy).
        return relation is not None and relation.parent is not None and self.indexed(relation.parent, column)

    def members_of(self, role: str, intended: bool = True) -> set[str]:
        """Roles that are (transitively) members of `role`; `intended=False`: not through the
        memberships rlsctl grants on purpose (`intended_memberships`)."""
        found: set[str] = set()
        frontier = {role}
        while frontier:
            current = frontier.pop()
            for candidate in self.roles.values():
                if not intended and (current, candidate.name) in self.intended_memberships:
                    continue
                if current in candidate.member_of and candidate.name not in found:
                    found.add(candidate.name)
                    frontier.add(candidate.name)
        return found

    def reachable_roles(self, role: str) -> set[str]:
        """Roles whose privileges `role` has or can SET ROLE to (membership, transitively)."""
        found: set[str] = set()
        frontier = {role}
        while frontier:
            current = frontier.pop()
            for parent in self.roles.get(current, Role(current)).member_of:
                if parent not in found:
                    found.add(parent)
                    frontier.add(parent)
        return found

    def rls_sources(self, relation: Relation, through: tuple[str, ...] = ("v",)) -> set[str]:
        """RLS-enabled tables a view or materialized view reads, directly or through relations of kinds `through`."""
        found: set[str] = set()
        seen = {relation.qualified}
        frontier = set(relation.sources)
        while frontier:
            name = frontier.pop()
            if name in seen or name not in self.relations:
                continue
            seen.add(name)
            source = self.relations[name]
            if source.is_table and source.rls:
                found.add(name)
            elif source.kind in through:
                frontier |= source.sources
        return found

    # -- who reaches what ------------------------------------------------------------

    def holders(self, role: str) -> set[str]:
        """`role`, the roles whose privileges it has (membership), and PUBLIC."""
        return {role, PUBLIC} | self.reachable_roles(role)

    def rls_tables_within_reach(self, role: str) -> set[str]:
        """RLS-enabled tables `role` can access: it, a role it belongs to or PUBLIC owns them or holds a privilege."""
        names = self.holders(role)
        found = {g.qualified for g in self.grants if g.kind in ("table", "column") and g.grantee in names} | {
            r.qualified for r in self.relations.values() if r.owner in names
        }
        return {q for q in found if q in self.relations and self.relations[q].rls and self.relations[q].is_table}

    def tied_to_database(self, role: str) -> bool:
        """Whether `role` (or a role it belongs to) owns this database or anything in it, holds a privilege
        in it, is named in a policy, or sets default privileges here. A role that does none of these
        (a cluster administrator's account) has no part in this database's security layer."""
        names = {role} | self.reachable_roles(role)
        owners = (
            {self.database_owner}
            | {r.owner for r in self.relations.values()}
            | {f.owner for f in self.functions.values() if not f.from_extension}
            | {s.owner for s in self.schemas.values()}
        )
        if names & owners:
            return True
        if any(g.grantee in names for g in self.grants):
            return True
        if any(names & set(p.roles) for p in self.policies):
            return True
        return any(a.creator in names or names & a.grantees for a in self.default_acls)

    # -- functions the security layer runs -------------------------------------------------

    def function_calls(self, text: str, *, unqualified: bool = True, search_path: list[str] | None = None) -> set[str]:
        """Functions of the model (qualified) that `text` calls. Qualified calls always count; unqualified ones
        count when `unqualified` is set, for functions in a schema of `search_path` (any schema when None)."""
        found: set[str] = set()
        lowered = text.lower()
        for function in self.functions.values():
            if function.name.lower() not in lowered:
                continue
            qualified, bare = _call_patterns(function.schema, function.name)
            resolvable = unqualified and (search_path is None or function.schema in search_path)
            if qualified.search(text) or (resolvable and bare.search(text)):
                found.add(function.qualified)
        return found

    def security_functions(self) -> dict[str, str]:
        """Functions the RLS layer runs, with why: called by a policy on an RLS-enabled table, the function of
        a trigger on one, or called (transitively) by such a function. Live policy expressions are deparsed
        with search_path pg_catalog, so an unqualified call there is a pg_catalog function."""
        found: dict[str, str] = {}
        rls_tables = {q for q, r in self.relations.items() if r.rls}
        for policy in self.policies:
            if policy.table_qualified not in rls_tables:
                continue
            for text in (policy.using, policy.check):
                for called in sorted(self.function_calls(text or "", unqualified=not self.live)):
                    found.setdefault(called, f"policy {policy.name} on {policy.table_qualified}")
        for trigger in self.triggers:
            table = f"{trigger.schema}.{trigger.table}"
            if table in rls_tables and f"{trigger.function}()" in self.functions:
                found.setdefault(f"{trigger.function}()", f"trigger {trigger.name} on {table}")
        frontier = sorted(found)
        while frontier:
            caller = self.functions[frontier.pop()]
            if caller.language in ("c", "internal"):
                continue
            for called in sorted(self.function_calls(caller.body, search_path=caller.search_path_entries)):
                if called not in found:
                    found[called] = f"{found[caller.qualified]}, through {caller.qualified}"
                    frontier.append(called)
        return found


def bypass_meaning(role: str) -> str:
    """What a BYPASSRLS role means for the server-side code that runs as it (Supabase's service_role)."""
    return (
        f"every query run as {role} ignores every policy, so server-side code that uses it (on Supabase: whatever "
        "holds the service key) reads and writes every tenant's rows and must scope each query to the tenant itself"
    )


def shown_search_path(text: str) -> str:
    """A fixed search_path as messages print it: the empty one (`SET search_path = ''`) as ''."""
    return "''" if not parse_search_path(text) else repr(text)


def parse_search_path(text: str) -> list[str]:
    """`"$user", public, pg_temp` -> ["$user", "public", "pg_temp"] (commas inside quotes kept)."""
    entries: list[str] = []
    for match in re.finditer(r'\s*("(?:[^"]|"")*"|[^,]*)\s*(?:,|$)', text):
        item = match.group(1).strip()
        if item.startswith('"') and item.endswith('"') and len(item) >= 2:
            item = item[1:-1].replace('""', '"')
        if item:
            entries.append(item)
        if match.end() >= len(text):
            break
    return entries


def parse_secret_comment(comment: str | None) -> set[str] | None:
    """Readers declared by a column comment `rlsctl:secret readers=a_role,b_role` (empty: owner only), or None."""
    match = _SECRET.search(comment or "")
    if match is None:
        return None
    return {r for r in (match.group("readers") or "").split(",") if r}


def _identifier(name: str) -> str:
    quoted = '"' + re.escape(name.replace('"', '""')) + '"'
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return f"(?:{quoted}|(?i:{re.escape(name)}))"
    return quoted


@lru_cache(maxsize=4096)
def _call_patterns(schema: str, name: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    start = r'(?<![\w$."])'
    call = _identifier(name) + r"\s*\("
    return re.compile(start + _identifier(schema) + r"\s*\.\s*" + call), re.compile(start + call)
