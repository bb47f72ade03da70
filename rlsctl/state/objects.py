"""Managed objects: one frozen, comparable shape for the declared and the live side.

Each object has a `kind` (the template file that renders its operations) and
a stable `key`. `rlsctl.declare.objects` derives them from the declared state,
`rlsctl.catalog.inspect` reads them from the catalog; `rlsctl.change.diff`
compares the two. Fields marked `compare=False` carry what is needed to
render a statement but is not part of the object's identity (a policy's
source SQL, a function's argument names).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

from rlsctl.pg.sql import SqlText, catalog_expression, catalog_statement, literal

# Every function rlsctl owns runs with this setting (docs/threat-model.md, Guarantees: a fixed
# search_path, pg_temp last).
SEARCH_PATH = "search_path=pg_catalog, pg_temp"

# Tables rlsctl creates in the helper schema. The key store's (objects/key_table.sql.j2:
# the wrapped data keys, and the registry of columns ever encrypted) belong to the
# keys role, have RLS enabled (not forced: their owner reads them) and no policy,
# and nobody else holds any privilege on them: a grant made by mistake still shows
# nobody a row. applied_phase (bootstrap.sql.j2) keeps what migrate gives it: the
# owner role owns it, RLS off, no grants.
KEY_STORE_TABLE, KEY_REGISTRY_TABLE, KEY_REWRAP_TABLE = "encryption_key", "encrypted_column", "encryption_key_next"
# name -> what drift calls it, in the order they are created (the rewrap table refers to the store)
KEY_TABLES = {KEY_STORE_TABLE: "key store", KEY_REWRAP_TABLE: "key rewrap", KEY_REGISTRY_TABLE: "key registry"}
BOOKKEEPING_TABLE = "applied_phase"
# Retention's tables (objects/retention_table.sql.j2): the holds in force, every change of a hold,
# every run. Shaped like the key store's (owned by the definer role, RLS on, no policy, no grant:
# read and written only through its SECURITY DEFINER functions), created whenever a table declares
# `retention:` and never dropped (a hold's history is evidence).
RETENTION_HOLD_TABLE, RETENTION_HOLD_CHANGE_TABLE, RETENTION_RUN_TABLE = (
    "retention_hold", "retention_hold_change", "retention_run",
)  # fmt: skip
RETENTION_TABLES = {
    RETENTION_HOLD_TABLE: "retention holds",
    RETENTION_HOLD_CHANGE_TABLE: "retention hold changes",
    RETENTION_RUN_TABLE: "retention runs",
}
# The audit chain's tables (objects/audit_table.sql.j2, docs/audit.md), shaped like retention's
# (owned by the definer role, RLS on, no policy, no grant): the head of each lane, what retention
# trimmed off the old end of each lane, rows it removed ahead of an older row it kept. Created
# whenever the project declares a chain and never dropped: they anchor the chain.
# The order: every row sealed into one sequence after its commit, each link covering the one before.
AUDIT_LANE_TABLE, AUDIT_CHECKPOINT_TABLE, AUDIT_TRIMMED_TABLE = "audit_lane", "audit_checkpoint", "audit_trimmed"
AUDIT_ORDER_TABLE = "audit_order"
AUDIT_TABLES = {
    AUDIT_LANE_TABLE: "audit chain lanes",
    AUDIT_CHECKPOINT_TABLE: "audit chain checkpoints",
    AUDIT_TRIMMED_TABLE: "audit rows trimmed",
    AUDIT_ORDER_TABLE: "audit chain order",
}
# The API-key sessions of read-write transactions (objects/key_table.sql.j2), owned by the keys role
# like the key store: a record `DISCARD TEMP` cannot drop in the middle of a statement, as it drops
# the keys role's temporary session table (docs/identity.md, API-key sessions). Unlogged: a session
# does not outlive a crash.
API_KEY_SESSION_TABLE = "api_key_session"
API_KEY_TABLES = {API_KEY_SESSION_TABLE: "API-key sessions"}
# A sequence of the keys role (objects/key_table.sql.j2): authenticate_api_key sets it to the id of a
# read-write transaction that authenticates a key (setval), and the key-session helpers read the
# session's own last value (currval): another transaction's id proves no key was authenticated in
# this one, without reading the session table (docs/identity.md, API-key sessions). Nobody else
# holds any privilege on it.
API_KEY_MARKER = "api_key_xact"
API_KEY_SEQUENCES = {API_KEY_MARKER: "API-key transaction marker"}
# What drift calls each of rlsctl's own tables (and sequence) of the helper schema (KeyTable), in
# creation order.
OWN_TABLES = {**KEY_TABLES, **RETENTION_TABLES, **AUDIT_TABLES, **API_KEY_TABLES, **API_KEY_SEQUENCES}
# PostgreSQL's functions rlsctl may grant (pg_read_file to the keys role, which reads the key
# file in file mode through its membership in pg_read_server_files): their grants to
# managed roles are read and compared like those of rlsctl's own functions.
READ_SERVER_FILES = "pg_read_server_files"
BUILTIN_FUNCTIONS = ("pg_catalog.pg_read_file(text)",)
# Whose grants rlsctl reads and manages (the API-key marker is a sequence: only its grants, none).
HELPER_TABLES = (BOOKKEEPING_TABLE, *KEY_TABLES, *RETENTION_TABLES, *AUDIT_TABLES, *API_KEY_TABLES, *API_KEY_SEQUENCES)


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
        # member "": the login running apply, unknown when rendering offline (a non-superuser joins)
        member = self.member or "the login running apply (unless superuser)"
        return f"membership of {member} in {self.role}"


@dataclass(frozen=True)
class Schema(Obj):
    kind: ClassVar[str] = "schema"
    name: str
    owner: str
    # Previous owners apply takes the schema from (rlsctl's owner or definer role held the helper
    # schema before it moved to the keys role); any other owner is refused.
    adopt_from: tuple[str, ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        return f"schema {self.name}"


@dataclass(frozen=True)
class SchemaPrivilege(Obj):
    kind: ClassVar[str] = "schema_privilege"
    schema: str
    grantee: str
    privilege: str  # USAGE | CREATE
    repairable: bool = field(default=True, compare=False)  # the session may grant it (a schema of others')
    required: bool = field(default=False, compare=False)  # rlsctl's code fails without it (see FunctionGrant)

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
    # Changing another role's defaults needs membership in it (or superuser).
    repairable: bool = field(default=True, compare=False)

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
    """An extension, in the schema it is declared in (pgcrypto: the helper schema;
    moved elsewhere, rlsctl's encryption functions no longer find it)."""

    kind: ClassVar[str] = "extension"
    name: str
    schema: str = ""
    # Read from the live database: whether this session may move it, and who besides a DBA
    # may create objects in its schema (why it is moved: see catalog/sql/extension_sites.sql).
    movable: bool = field(default=True, compare=False)
    writers: tuple[str, ...] = field(default=(), compare=False)
    owner_is_session: bool = field(default=False, compare=False)

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
    # Never declared by rlsctl: LEAKPROOF lets the planner run a helper before the policies
    # filter the row, STRICT turns a NULL argument into NULL without running its checks.
    leakproof: bool = False
    strict: bool = False

    @property
    def key(self) -> str:
        return f"function {self.schema}.{self.name}({self.arg_types})"

    # Catalog text embedded as SQL, and why that is safe: the argument types
    # (oidvectortypes), the declaration (pg_get_function_identity_arguments) and
    # the result type (pg_get_function_result) are printed by the server with
    # every name through quote_identifier, and hold no literal and no default,
    # so they cannot close the parenthesis or the statement they stand in.
    # The body is dollar-quoted with a tag it does not contain (sql.dollar_quoted),
    # the settings go through sql.setting, policy expressions through
    # sql.catalog_expression and trigger definitions through sql.catalog_statement.
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
    repairable: bool = field(default=True, compare=False)  # the session may act as the function's owner
    # rlsctl's own code calls it as the grantee (pgcrypto for the keys role): without it apply
    # would install encryption that fails, so a grant the session cannot make refuses the apply.
    required: bool = field(default=False, compare=False)

    @property
    def key(self) -> str:
        return f"EXECUTE on {self.schema}.{self.name}({self.arg_types}) to {self.grantee}"

    @property
    def signature(self) -> SqlText:
        return SqlText(self.arg_types)  # server-printed type names (see Function.signature)


def _where(schema: str | None, table: str) -> str:
    """A table as keys name it: bare in the project schema, qualified in the helper schema."""
    return table if schema is None else f"{schema}.{table}"


@dataclass(frozen=True)
class TableSecurity(Obj):
    kind: ClassVar[str] = "table"
    table: str
    owner: str
    rls_enabled: bool
    rls_forced: bool
    schema: str | None = None  # None: the project schema; else rlsctl's own tables of the helper schema

    @property
    def key(self) -> str:
        return f"table {_where(self.schema, self.table)}"


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
    schema: str | None = None  # None: the project schema

    @property
    def key(self) -> str:
        return f"policy {_where(self.schema, self.table)}.{self.name}"

    @property
    def sql_command(self) -> str:
        return "ALL" if self.command == "all" else self.command.upper()

    @property
    def create_using(self) -> SqlText | None:
        return _expression(self.source_using, self.using)

    @property
    def create_check(self) -> SqlText | None:
        return _expression(self.source_check, self.check)


def _expression(source: str | None, stored: str | None) -> SqlText | None:
    """The SQL rlsctl rendered (built from quoted parts by the templates), else the
    stored form the catalog returned (pg_get_expr: checked to be one expression)."""
    if source is not None:
        return SqlText(source)
    return None if stored is None else catalog_expression(stored)


@dataclass(frozen=True)
class TableGrant(Obj):
    """A privilege on a table. Declared grants are the table owner's (the grantor apply
    itself uses); one by another grantor is a different object, never declared: it
    vanishes with that grantor's grant option (CASCADE), so it cannot stand in for ours."""

    kind: ClassVar[str] = "table_grant"
    table: str
    grantee: str
    privilege: str
    grantable: bool = False  # WITH GRANT OPTION: the grantee may pass the privilege on; never declared
    schema: str | None = None  # None: the project schema
    grantor: str | None = None  # None: the table owner
    repairable: bool = field(default=True, compare=False)  # the session may SET ROLE to the grantor
    sequence: bool = field(default=False, compare=False)  # a sequence's: GRANT ... ON SEQUENCE (USAGE)

    @property
    def key(self) -> str:
        return f"{self.privilege} on {_where(self.schema, self.table)} to {self.grantee}{_by(self.grantor)}"

    @property
    def chain(self) -> tuple[str | None, str, str]:
        """What a grant option's CASCADE follows: schema, table, privilege."""
        return (self.schema, self.table, self.privilege)


def _by(grantor: str | None) -> str:
    return "" if grantor is None else f" (granted by {grantor})"


@dataclass(frozen=True)
class ColumnGrant(Obj):
    kind: ClassVar[str] = "column_grant"
    table: str
    column: str
    grantee: str
    privilege: str
    grantable: bool = False
    schema: str | None = None
    grantor: str | None = None
    repairable: bool = field(default=True, compare=False)

    @property
    def key(self) -> str:
        where = _where(self.schema, self.table)
        return f"{self.privilege} ({self.column}) on {where} to {self.grantee}{_by(self.grantor)}"

    @property
    def sort_key(self) -> str:
        # Columns of one table, grantee, privilege and grantor side by side: they share a statement.
        parts = (_where(self.schema, self.table), self.grantee, self.privilege, self.grantor or "", self.column)
        return "\x00".join(parts)

    @property
    def group(self) -> tuple[str | None, str, str, str, str | None]:
        return (self.schema, self.table, self.grantee, self.privilege, self.grantor)

    @property
    def chain(self) -> tuple[str | None, str, str]:
        return (self.schema, self.table, self.privilege)


ENCRYPT_TRIGGER = "zz_rlsctl_encrypt"  # encrypts declared columns on write (docs/encryption.md)
GUARD_TRIGGER = "zz_rlsctl_guard"  # refuses the changes guards forbid (docs/policy-format.md)
# rlsctl's trigger names: a trigger so named on a managed table is rlsctl's, whatever it calls.
# The audit log's (docs/audit.md): a change copied into the log; the log's append-only guard
# (and its UTC stamp), the same against TRUNCATE, the hash chain.
AUDIT_TRIGGER = "zz_rlsctl_audit"
CHAIN_TRIGGER = "zz_rlsctl_chain"
AUDIT_TRIGGERS = (AUDIT_TRIGGER, "zz_rlsctl_append_only", "zz_rlsctl_no_truncate", CHAIN_TRIGGER)
TRIGGER_NAMES = (ENCRYPT_TRIGGER, GUARD_TRIGGER, *AUDIT_TRIGGERS)
# rlsctl's BEFORE row triggers that judge or rewrite the row: named zz_... to fire after the
# application's (BEFORE triggers fire in name order); drift names any trigger that still follows.
ROW_JUDGING_TRIGGERS = (ENCRYPT_TRIGGER, GUARD_TRIGGER, "zz_rlsctl_append_only", CHAIN_TRIGGER)


@dataclass(frozen=True)
class Trigger(Obj):
    """A trigger, with everything that decides when it fires and what it runs.

    rlsctl's are BEFORE, FOR EACH ROW, on every UPDATE (and INSERT), with no
    arguments and no WHEN but the encrypt trigger's "not the keys role": AFTER
    cannot change the row (encryption), WHEN (false) or UPDATE OF one column
    skip it, and each is a way around it that drift names.
    """

    kind: ClassVar[str] = "trigger"
    table: str
    name: str
    function_schema: str
    function_name: str
    events: str = "UPDATE"  # INSERT, DELETE, UPDATE, TRUNCATE joined by " OR ", in that order
    # pg_trigger.tgenabled: O fires (the declared state), D disabled, R only in replica
    # sessions (so not in the app's), A always.
    enabled: str = "O"
    timing: str = "BEFORE"  # BEFORE, AFTER or INSTEAD OF
    level: str = "ROW"  # ROW or STATEMENT
    columns: tuple[str, ...] = ()  # UPDATE OF these columns only
    when: str | None = None  # the WHEN condition, as the server prints it
    args: str = ""  # the arguments as the server stores them (tgargs, escaped)
    ours: bool = field(default=True, compare=False)  # calls a function of the helper schema
    # The role a declared trigger's WHEN exempts (the encrypt trigger's keys role); a live
    # trigger never claims one, so a WHEN exempting another role counts as a restriction.
    exempt_role: str | None = field(default=None, compare=False)
    definition: str = field(default="", compare=False)  # pg_get_triggerdef, for a live trigger

    @property
    def key(self) -> str:
        return f"trigger {self.table}.{self.name}"

    @property
    def fires(self) -> bool:
        """Whether it fires in the application's sessions (session_replication_role = origin)."""
        return self.enabled in ("O", "A") and self.when != "false"

    @property
    def event_list(self) -> tuple[str, ...]:
        return tuple(self.events.split(" OR ")) if self.events else ()

    @property
    def calls(self) -> tuple[str, str, str]:
        return (self.function_schema, self.function_name, self.args)

    @property
    def unrestricted(self) -> bool:
        """BEFORE, per row, on every row of its events, for every role but at most one it
        exempts (the encrypt trigger's keys role): the shape of rlsctl's own triggers."""
        shape = (self.timing, self.level, self.columns) == ("BEFORE", "ROW", ())
        exempting = self.exempt_role is not None and self.when == role_exemption(self.exempt_role)
        return shape and (self.when is None or exempting)

    @property
    def create_statement(self) -> SqlText | None:
        """The server's own CREATE TRIGGER for a live trigger (checked to be one such statement),
        so the reverse of a repair brings back exactly what was there."""
        return catalog_statement(self.definition, "CreateTrigStmt") if self.definition else None

    def fires_at_least_as_much_as(self, other: Trigger) -> bool:
        """Whether this trigger runs the same function wherever `other` would, or is rlsctl's
        unrestricted form where `other` is not (which then does less)."""
        if not other.fires:
            return True
        if not self.fires:
            return False
        if self.calls != other.calls:
            return self.ours and self.unrestricted and not other.ours
        if (self.timing, self.level) != (other.timing, other.level):
            return (self.timing, self.level) == ("BEFORE", "ROW")
        wider_columns = not self.columns or (bool(other.columns) and set(self.columns) >= set(other.columns))
        return (
            set(self.event_list) >= set(other.event_list)
            and (self.when is None or self.when == other.when or (self.unrestricted and not other.unrestricted))
            and wider_columns
        )


@dataclass(frozen=True)
class KeyTable(Obj):
    """One of rlsctl's own data tables in the helper schema (objects/key_table.sql.j2): the key
    store's, owned by the keys role (the wrapped data keys, the registry of columns ever
    encrypted), or retention's, owned by the definer role (holds, their changes, runs); and the
    keys role's API-key transaction marker, a sequence (API_KEY_SEQUENCES)."""

    kind: ClassVar[str] = "key_table"
    schema: str
    name: str  # one of OWN_TABLES
    # Compared through the table's own objects (helper_tables()): owner, RLS, policies, grants.
    owner: str = field(compare=False)

    @property
    def key(self) -> str:
        return f"{OWN_TABLES[self.name]} {self.schema}.{self.name}"

    @property
    def sort_key(self) -> str:
        return str(list(OWN_TABLES).index(self.name))  # the rewrap table refers to the store


@dataclass(frozen=True)
class ActiveKey(Obj):
    """An active data key exists (created in the server, wrapped by the key-encryption key)."""

    kind: ClassVar[str] = "active_key"
    schema: str
    crypto_schema: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        return "active data key"


@dataclass(frozen=True)
class EncryptedColumnRecord(Obj):
    """A row of the key store's registry: this column was encrypted (keys.retire_unused counts it)."""

    kind: ClassVar[str] = "encrypted_column"
    schema: str
    table: str
    column: str

    @property
    def key(self) -> str:
        return f"encrypted column {self.table}.{self.column} (recorded)"


@dataclass(frozen=True)
class UntrustedCode(Obj):
    """Code a keys-role session would run on a table it reads or rewrites, that rlsctl does not
    trust (catalog/sql/untrusted_code.sql): never declared, so always extra, and only a DBA can
    remove it; `rlsctl keys` refuses to run while it is there."""

    kind: ClassVar[str] = "untrusted_code"
    table: str
    what: str  # trigger, policy, index, check constraint, generated column, rule, column
    name: str
    detail: str = field(default="", compare=False)  # what it runs
    # False: reported for another reason its detail gives (a trigger firing after rlsctl's own)
    runs_in_keys_sessions: bool = field(default=True, compare=False)

    @property
    def key(self) -> str:
        return f"{self.what} {self.name} on {self.table}"


@dataclass(frozen=True)
class UndeclaredTable(Obj):
    """A relation of the project's schema that no policy file declares and that a managed role
    (or PUBLIC) can reach (catalog/sql/undeclared_tables.sql): never declared, so always extra.
    apply leaves it alone (it is not rlsctl's to drop, nor its grants to guess at); drift fails
    on it until a policy file declares it, its grants go, or the project acknowledges it."""

    kind: ClassVar[str] = "undeclared_table"
    name: str
    what: str = field(default="table", compare=False)  # table, view, materialized view, foreign table
    rls: bool = field(default=False, compare=False)
    reached_by: tuple[str, ...] = field(default=(), compare=False)  # "role: PRIVILEGE"
    parent_of: tuple[str, ...] = field(default=(), compare=False)  # declared tables that inherit from it

    @property
    def key(self) -> str:
        return f"undeclared {self.what} {self.name}"


Objects = dict[str, Obj]

# Default privileges rlsctl manages: what new tables, sequences, functions and
# schemas give away. (Types keep PostgreSQL's default USAGE for PUBLIC.)
MANAGED_DEFAULT_TYPES = ("r", "S", "f", "n")


def builtin_defaults(creators: tuple[str, ...]) -> Objects:
    """PostgreSQL's built-in default privileges of roles with no ALTER DEFAULT PRIVILEGES yet:
    the live side of a database rlsctl has never seen (functions are executable by PUBLIC)."""
    found = [DefaultPrivilege(creator, "f", None, "PUBLIC", "EXECUTE") for creator in creators]
    return {obj.key: obj for obj in found}


def grants_of_foreign_functions(
    declared: Objects, foreign: frozenset[str], foreign_schemas: frozenset[str] = frozenset()
) -> Objects:
    """Declared EXECUTE grants on functions (USAGE on schemas) whose owner the session cannot act
    as, marked so: a GRANT there would only warn "no privileges were granted" (left to a DBA)."""
    return {key: replace(obj, repairable=False) if _foreign(obj, foreign, foreign_schemas) else obj
            for key, obj in declared.items()}  # fmt: skip


def _foreign(obj: Obj, functions: frozenset[str], schemas: frozenset[str]) -> bool:
    if isinstance(obj, FunctionGrant):
        return f"{obj.schema}.{obj.name}({obj.arg_types})" in functions
    return isinstance(obj, SchemaPrivilege) and obj.schema in schemas


def present_only(declared: Objects, live: Objects) -> Objects:
    """Declared objects without the helper-schema tables that do not exist (yet)."""
    return {
        key: obj
        for key, obj in declared.items()
        if not (isinstance(obj, TableSecurity) and obj.schema is not None and key not in live)
    }




def role_exemption(role: str) -> SqlText:
    """The encrypt trigger's WHEN, as the server prints it back: the keys role writes ciphertext
    itself (rotation, backfill), so for its batches the trigger does not even call its function."""
    return SqlText("(CURRENT_USER <> " + literal(role) + "::name)")
