"""Managed objects: one frozen, comparable shape for the declared and the live side.

Each object has a `kind` (the template file that renders its operations) and
a stable `key`. `declared_objects` derives them from the declared state,
`rlsctl.inspect.live_objects` reads them from the catalog; `rlsctl.diff`
compares the two. Fields marked `compare=False` carry what is needed to
render a statement but is not part of the object's identity (a policy's
source SQL, a function's argument names).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from rlsctl.declare import DeclaredState, HelperFn, TableSpec
from rlsctl.sql import SqlText

SEARCH_PATH = "search_path=pg_catalog, pg_temp"


@dataclass(frozen=True)
class Obj:
    kind: ClassVar[str] = "object"

    @property
    def key(self) -> str:
        raise NotImplementedError

    @property
    def sort_key(self) -> str:
        """Where the object's operations go among those of the same step."""
        return self.key


@dataclass(frozen=True)
class Role(Obj):
    kind: ClassVar[str] = "role"
    name: str
    login: bool = False
    createrole: bool = False
    createdb: bool = False
    comment: str | None = None
    # Never declared: a managed role that has them is drift that apply refuses to repair.
    superuser: bool = False
    bypassrls: bool = False

    @property
    def key(self) -> str:
        return f"role {self.name}"

    @property
    def abilities(self) -> frozenset[str]:
        """The attributes rlsctl manages (all off for its group roles)."""
        held = (("LOGIN", self.login), ("CREATEROLE", self.createrole), ("CREATEDB", self.createdb))
        return frozenset(name for name, on in held if on)

    @property
    def bypass_attributes(self) -> tuple[str, ...]:
        """The attributes that make a role ignore RLS (and that rlsctl will not take away)."""
        return tuple(name for name, held in (("SUPERUSER", self.superuser), ("BYPASSRLS", self.bypassrls)) if held)


@dataclass(frozen=True)
class Membership(Obj):
    """`member` is a member of `role` (it may SET ROLE to it, and inherits its privileges)."""

    kind: ClassVar[str] = "membership"
    role: str
    member: str

    @property
    def key(self) -> str:
        return f"membership of {self.member} in {self.role}"


@dataclass(frozen=True)
class Schema(Obj):
    kind: ClassVar[str] = "schema"
    name: str
    owner: str

    @property
    def key(self) -> str:
        return f"schema {self.name}"


@dataclass(frozen=True)
class SchemaPrivilege(Obj):
    kind: ClassVar[str] = "schema_privilege"
    schema: str
    grantee: str
    privilege: str  # USAGE | CREATE

    @property
    def key(self) -> str:
        return f"{self.privilege} on schema {self.schema} to {self.grantee}"


# pg_default_acl's object types, as ALTER DEFAULT PRIVILEGES names them.
DEFAULT_OBJECT_TYPES = {"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES", "n": "SCHEMAS"}


@dataclass(frozen=True)
class DefaultPrivilege(Obj):
    """A privilege that objects `creator` creates later give `grantee` from the start.

    `schema` None: everywhere (the role's global default, which replaces
    PostgreSQL's built-in one: EXECUTE on functions for PUBLIC); a schema: added
    to the global default in that schema only.
    """

    kind: ClassVar[str] = "default_privilege"
    creator: str
    objtype: str  # a key of DEFAULT_OBJECT_TYPES
    schema: str | None
    grantee: str
    privilege: str

    @property
    def key(self) -> str:
        where = "" if self.schema is None else f" in schema {self.schema}"
        objects = DEFAULT_OBJECT_TYPES[self.objtype].lower()
        return f"default: {self.privilege} on new {objects} of {self.creator}{where} to {self.grantee}"

    @property
    def objects(self) -> str:
        """The object type as ALTER DEFAULT PRIVILEGES names it (TABLES, FUNCTIONS, ...)."""
        return DEFAULT_OBJECT_TYPES[self.objtype]


@dataclass(frozen=True)
class Extension(Obj):
    kind: ClassVar[str] = "extension"
    name: str
    schema: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        return f"extension {self.name}"


@dataclass(frozen=True)
class Function(Obj):
    kind: ClassVar[str] = "function"
    schema: str
    name: str
    arg_types: str  # as pg_catalog.oidvectortypes prints them, e.g. "text"
    returns: str  # as pg_catalog.pg_get_function_result prints it
    language: str
    volatility: str  # i, s or v
    security_definer: bool
    config: tuple[str, ...]
    body: str
    owner: str
    arg_decl: str = field(default="", compare=False)  # "min_rank text"
    comment: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        return f"function {self.schema}.{self.name}({self.arg_types})"

    @property
    def signature(self) -> SqlText:
        return SqlText(self.arg_types)

    @property
    def declaration(self) -> SqlText:
        return SqlText(self.arg_decl or self.arg_types)


@dataclass(frozen=True)
class FunctionGrant(Obj):
    kind: ClassVar[str] = "function_grant"
    schema: str
    name: str
    arg_types: str
    grantee: str

    @property
    def key(self) -> str:
        return f"EXECUTE on {self.schema}.{self.name}({self.arg_types}) to {self.grantee}"

    @property
    def signature(self) -> SqlText:
        return SqlText(self.arg_types)


@dataclass(frozen=True)
class TableSecurity(Obj):
    kind: ClassVar[str] = "table"
    table: str
    owner: str
    rls_enabled: bool
    rls_forced: bool

    @property
    def key(self) -> str:
        return f"table {self.table}"


@dataclass(frozen=True)
class Policy(Obj):
    kind: ClassVar[str] = "policy"
    table: str
    name: str
    command: str  # select | insert | update | delete | all
    permissive: bool
    roles: tuple[str, ...]
    using: str | None  # as the server stores it (pg_get_expr) once normalised
    check: str | None
    source_using: str | None = field(default=None, compare=False)  # the SQL rlsctl renders
    source_check: str | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return f"policy {self.table}.{self.name}"

    @property
    def sql_command(self) -> str:
        return "ALL" if self.command == "all" else self.command.upper()

    @property
    def create_using(self) -> SqlText | None:
        text = self.source_using if self.source_using is not None else self.using
        return None if text is None else SqlText(text)

    @property
    def create_check(self) -> SqlText | None:
        text = self.source_check if self.source_check is not None else self.check
        return None if text is None else SqlText(text)


@dataclass(frozen=True)
class TableGrant(Obj):
    kind: ClassVar[str] = "table_grant"
    table: str
    grantee: str
    privilege: str
    grantable: bool = False  # WITH GRANT OPTION: the grantee may pass the privilege on; never declared

    @property
    def key(self) -> str:
        return f"{self.privilege} on {self.table} to {self.grantee}"


@dataclass(frozen=True)
class ColumnGrant(Obj):
    kind: ClassVar[str] = "column_grant"
    table: str
    column: str
    grantee: str
    privilege: str
    grantable: bool = False

    @property
    def key(self) -> str:
        return f"{self.privilege} ({self.column}) on {self.table} to {self.grantee}"

    @property
    def sort_key(self) -> str:
        # Columns of one table, grantee and privilege side by side: they share a statement.
        return f"{self.table}\x00{self.grantee}\x00{self.privilege}\x00{self.column}"

    @property
    def group(self) -> tuple[str, str, str]:
        return (self.table, self.grantee, self.privilege)


ENCRYPT_TRIGGER = "rlsctl_encrypt"  # encrypts declared columns on write (docs/encryption.md)


@dataclass(frozen=True)
class Trigger(Obj):
    kind: ClassVar[str] = "trigger"
    table: str
    name: str
    function_schema: str
    function_name: str
    events: str = "UPDATE"  # UPDATE or INSERT OR UPDATE; always BEFORE, FOR EACH ROW
    # pg_trigger.tgenabled: O fires (the declared state), D disabled, R only in replica
    # sessions (so not in the app's), A always.
    enabled: str = "O"

    @property
    def key(self) -> str:
        return f"trigger {self.table}.{self.name}"

    @property
    def fires(self) -> bool:
        """Whether it fires in the application's sessions (session_replication_role = origin)."""
        return self.enabled in ("O", "A")


@dataclass(frozen=True)
class KeyStore(Obj):
    """The table of wrapped data keys, in the helper schema, owned by the keys role."""

    kind: ClassVar[str] = "key_store"
    schema: str
    owner: str

    @property
    def key(self) -> str:
        return f"key store {self.schema}.encryption_key"


@dataclass(frozen=True)
class ActiveKey(Obj):
    """An active data key exists (created in the server, wrapped by the key-encryption key)."""

    kind: ClassVar[str] = "active_key"
    schema: str
    crypto_schema: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        return "active data key"


Objects = dict[str, Obj]

# Default privileges rlsctl manages: what new tables, sequences, functions and
# schemas give away. (Types keep PostgreSQL's default USAGE for PUBLIC.)
MANAGED_DEFAULT_TYPES = ("r", "S", "f", "n")


def builtin_defaults(creators: tuple[str, ...]) -> Objects:
    """PostgreSQL's built-in default privileges of roles with no ALTER DEFAULT PRIVILEGES yet:
    the live side of a database rlsctl has never seen (functions are executable by PUBLIC)."""
    found = [DefaultPrivilege(creator, "f", None, "PUBLIC", "EXECUTE") for creator in creators]
    return {obj.key: obj for obj in found}


@dataclass(frozen=True)
class Bodies:
    """Function bodies and policy expressions rendered by the templates."""

    functions: dict[str, str]  # helper name -> body
    using: dict[tuple[str, str], str | None]  # (table, policy) -> USING source
    check: dict[tuple[str, str], str | None]


def declared_objects(state: DeclaredState, bodies: Bodies, operator: str | None) -> Objects:
    """Everything apply manages, as declared. `operator`: the non-superuser running rlsctl.

    Some kinds are declared by their absence: managed roles are members of no
    role (the operator's memberships in them are the only ones declared), and
    default privileges of the roles that create objects give nobody anything
    (SPEC s3). What the catalog has of those kinds is extra.
    """
    found: list[Obj] = []
    for role in state.roles:
        comment = f"rlsctl {state.project_name}: {role.description}"
        found.append(Role(role.name, comment=comment))
        if operator is not None:
            found.append(Membership(role.name, operator))
    found += _schemas(state)
    found += [Extension(name, state.helper_schema) for name in state.extensions]
    for helper in state.helper_functions:
        found.append(_function(state, helper, bodies.functions[f"{helper.name}({helper.args})"]))
        # The owner's own EXECUTE is declared too: a tampered ACL without it is repaired,
        # and a grant to the owner is never revoked.
        found += [
            FunctionGrant(state.helper_schema, helper.name, helper.args, role)
            for role in dict.fromkeys((helper.owner, *helper.executors))
        ]
    if state.encryption is not None and state.keys is not None:
        found += [
            KeyStore(state.helper_schema, state.keys),
            ActiveKey(state.helper_schema, state.encryption.crypto_schema),
        ]
    if state.keys is not None and state.encryption is not None:
        from rlsctl.functions import PGCRYPTO

        found += [FunctionGrant(state.encryption.crypto_schema, name, args, state.keys) for name, args in PGCRYPTO]
    for table in state.tables:
        found += _table_objects(state, table, bodies)
    return {obj.key: obj for obj in found}


def _schemas(state: DeclaredState) -> list[Obj]:
    found: list[Obj] = [Schema(state.helper_schema, state.owner)]
    if state.schema != "public":
        found.append(Schema(state.schema, state.owner))
    for name in state.grantee_role_names:
        found.append(SchemaPrivilege(state.helper_schema, name, "USAGE"))
        found.append(SchemaPrivilege(state.schema, name, "USAGE"))
    if state.schema == "public":
        found += [SchemaPrivilege("public", state.owner, "USAGE"), SchemaPrivilege("public", state.owner, "CREATE")]
    return found


def _function(state: DeclaredState, helper: HelperFn, body: str) -> Function:
    return Function(
        schema=state.helper_schema,
        name=helper.name,
        arg_types=helper.args,
        returns=helper.returns,
        language=helper.language,
        volatility=helper.volatility,
        security_definer=helper.security_definer,
        config=(SEARCH_PATH,),
        body=body,
        owner=helper.owner,
        arg_decl=helper.arg_decl,
    )


def _table_objects(state: DeclaredState, table: TableSpec, bodies: Bodies) -> list[Obj]:
    found: list[Obj] = [TableSecurity(table.name, state.owner, True, True)]
    for policy in table.policies:
        found.append(
            Policy(
                table=table.name,
                name=policy.name,
                command=policy.command,
                permissive=True,
                roles=(policy.role,),
                using=bodies.using[(table.name, policy.name)],
                check=bodies.check[(table.name, policy.name)],
                source_using=bodies.using[(table.name, policy.name)],
                source_check=bodies.check[(table.name, policy.name)],
            )
        )
    for grant in table.grants:
        if grant.columns is None:
            found.append(TableGrant(table.name, grant.role, grant.privilege))
        else:
            found += [ColumnGrant(table.name, column, grant.role, grant.privilege) for column in grant.columns]
    if table.guards:
        found.append(Trigger(table.name, "rlsctl_guard", state.helper_schema, table.guard_function))
    if state.encryption is not None and table.name in state.encryption.tables:
        from rlsctl.declare import helper_name

        function = helper_name("encrypt_", table.name)
        found.append(Trigger(table.name, ENCRYPT_TRIGGER, state.helper_schema, function, "INSERT OR UPDATE"))
    return found
