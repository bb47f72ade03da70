"""The policy model: what the YAML files in `policies/` declare, typed and frozen.

Every section may live in any file of `policies/`; `rlsctl.policy.project` merges
them and refuses a section declared twice. See docs/policy-format.md for
the reference with examples.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from rlsctl.policy.conditions import COMMANDS, Cond, ConditionSyntaxError, parse_condition

SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_.]*$")
ROLE_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _condition(value: Any) -> Cond:
    if isinstance(value, Cond):
        return value
    try:
        return parse_condition(value)
    except ConditionSyntaxError as exc:
        # pydantic reports ValueError messages with the field's location; the
        # condition's own sub-path goes into the message.
        where = ".".join(str(part) for part in exc.path)
        raise ValueError(f"{exc.message}" + (f" (at {where})" if where else "")) from None


Condition = Annotated[Cond, BeforeValidator(_condition)]


# -- project settings -------------------------------------------------------


class Identity(Frozen):
    """How policies read the session's user (docs/identity.md)."""

    setting: str = "app.user_id"
    # SQL expression that yields the user id; default reads `setting`, and an
    # empty value counts as no identity (fail closed).
    expression: str | None = None
    type: str = "text"

    @field_validator("setting")
    @classmethod
    def _setting_name(cls, value: str) -> str:
        if not SETTING_NAME.match(value):
            raise ValueError("a custom setting name looks like prefix.name, e.g. app.user_id")
        return value


class Encryption(Frozen):
    """Column encryption (docs/encryption.md)."""

    # The server setting holding the key-encryption key: postgresql.conf,
    # ALTER SYSTEM, or libpq `options` per connection. rlsctl never sends it.
    master_key_setting: str = "rlsctl.master_key"
    # Or a file on the database server (an absolute path, outside the data directory) that
    # only the keys role reads, through pg_read_file: no login can read the key then, not
    # even the application's (docs/encryption.md, "Where the key-encryption key lives").
    master_key_file: str | None = None
    # Role keys allowed to call rlsctl.decrypt().
    readers: tuple[str, ...] = ("app",)

    @field_validator("master_key_setting")
    @classmethod
    def _setting_name(cls, value: str) -> str:
        if not SETTING_NAME.match(value):
            raise ValueError("a custom setting name looks like prefix.name, e.g. rlsctl.master_key")
        return value

    @field_validator("master_key_file")
    @classmethod
    def _file_path(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or "\x00" in value or "\n" in value):
            raise ValueError("master_key_file is an absolute path on the database server, e.g. /etc/rlsctl/kek")
        return value


class RetentionSettings(Frozen):
    """Project-wide retention settings (docs/retention.md)."""

    # The role key whose members may set and lift runtime holds, on every table declaring
    # `retention:` that names no hold_role of its own.
    hold_role: str | None = None


class ApiKeys(Frozen):
    """The table of API keys and what rlsctl.authenticate_api_key checks (docs/encryption.md, API keys)."""

    table: str
    key: str = "id"
    tenant: str
    hash: str  # lowercase hex SHA-256 of the raw key
    scopes: str
    expires: str | None = None
    name: str | None = None
    raw_prefix: str = "rk_"


class Acknowledgement(Frozen):
    """A difference only a DBA can remove, accepted for now: drift reports it without failing.

    `object` is the difference's key as drift prints it; `{KEY}` (a role key such as `{app}`)
    stands for that declared role's name (with its prefix), e.g.
    "EXECUTE on pg_catalog.pg_read_file(text) to {keys}"."""

    object: str = Field(min_length=1)
    reason: str = Field(min_length=10)


class AuditLogColumns(Frozen):
    """Which column of the audit log holds what (docs/audit.md). `tenant` and `metadata` may be absent."""

    id: str = "id"
    actor: str
    tenant: str | None = None
    action: str
    resource_type: str
    resource_id: str
    metadata: str | None = None
    created_at: str


class AuditChain(Frozen):
    """The hash chain's columns, added to the audit log by a migration of the project's
    (docs/audit.md, Tamper evidence). `lanes`: how many chains inserts may spread over, so
    that concurrent transactions do not queue behind each other's commit."""

    seq: str
    lane: str
    prev: str
    hash: str
    lanes: int = Field(16, ge=1, le=256)


class AuditSettings(Frozen):
    # The audit log table; default: the one table declared with `audit_log: true`.
    log: str | None = None
    columns: AuditLogColumns
    chain: AuditChain | None = None
    # Role keys that may read the chain's anchors (lanes, checkpoints) for `rlsctl audit
    # verify`; the owner role always may.
    readers: tuple[str, ...] = ()


AuditAction = Literal["insert", "update", "delete"]


class TableAudit(Frozen):
    """This table's changes are written to the audit log (docs/audit.md)."""

    # The allow-list: only these columns' values are copied into the log's metadata.
    # Never a secret, an encrypted column or an API key's hash (refused).
    columns: tuple[str, ...] = ()
    actions: tuple[AuditAction, ...] = ("insert", "update", "delete")
    key: str | None = None  # the resource id; default: the primary key
    tenant: str | None = None  # the team column; default: the table's `tenant:` column

    @field_validator("actions")
    @classmethod
    def _some_action(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("actions is a non-empty list of distinct actions: insert, update, delete")
        return value


Platform = Literal["none", "supabase"]


class LintSettings(Frozen):
    """What lint takes as the platform's design (docs/supabase.md#lint). Unset: the platform's defaults."""

    # Schemas whose functions belong to the platform (Supabase: auth, storage): not reported for
    # PUBLIC's EXECUTE or their search_path.
    trusted_schemas: tuple[str, ...] | None = None
    # Schemas the platform serves over its HTTP API (Supabase: public): a SECURITY DEFINER function
    # there that an anonymous role may execute is an error.
    exposed_schemas: tuple[str, ...] | None = None
    # Role keys of the platform's anonymous callers (Supabase: anon, when declared).
    anonymous_roles: tuple[str, ...] | None = None


# The lint defaults of each platform (`project.platform`); a setting given in `project.lint` wins.
PLATFORM_LINT: dict[str, LintSettings] = {
    "none": LintSettings(trusted_schemas=(), exposed_schemas=(), anonymous_roles=()),
    "supabase": LintSettings(
        trusted_schemas=("auth", "storage"), exposed_schemas=("public",), anonymous_roles=("anon",)
    ),
}


class ProjectSettings(Frozen):
    name: str
    # The host the project targets: `supabase` sets the lint defaults of docs/supabase.md.
    platform: Platform = "none"
    lint: LintSettings = LintSettings()
    schema_name: str = Field("public", alias="schema")
    helper_schema: str = "rlsctl"
    role_prefix: str = ""
    identity: Identity = Identity()
    extensions: tuple[str, ...] = ()
    description: str = ""
    # Grants on managed tables to roles the project does not declare (a backup
    # tool, monitoring, a migration tool) are reported and left alone, unless
    # this is on: then apply revokes them too.
    prune_unmanaged_grants: bool = False
    encryption: Encryption = Encryption()
    api_keys: ApiKeys | None = None
    # The audit log and how its columns are used (docs/audit.md); tables opt in with `audit:`.
    audit: AuditSettings | None = None
    # Differences that need a DBA (`rlsctl plan --dba-script`), accepted with a reason.
    acknowledged: tuple[Acknowledgement, ...] = ()
    retention: RetentionSettings = RetentionSettings()

    def lint_setting(self, name: Literal["trusted_schemas", "exposed_schemas", "anonymous_roles"]) -> tuple[str, ...]:
        """A `lint:` setting as given, else the platform's default."""
        value: tuple[str, ...] | None = getattr(self.lint, name)
        return value if value is not None else getattr(PLATFORM_LINT[self.platform], name) or ()


# -- roles --------------------------------------------------------------------

RoleKind = Literal["owner", "app", "definer", "keys", "other"]


class RoleDecl(Frozen):
    kind: RoleKind = "other"
    description: str = ""
    # Full role name; default is the project's role_prefix + the role's key.
    name: str | None = None
    # Roles outside the project expected to be members of this one (a migration
    # tool's login in the owner role), as literal role names. Any other member of
    # an owner, definer or keys role is drift that apply revokes (docs/diff.md).
    members: tuple[str, ...] = ()
    # Created and administered by the platform (Supabase's anon, authenticated, service_role):
    # apply never creates, alters or drops it, nor manages memberships in it; it only grants to it.
    external: bool = False

    @model_validator(mode="after")
    def _external_kind(self) -> RoleDecl:
        if self.external and self.kind in ("owner", "definer", "keys"):
            raise ValueError(f"a role of kind {self.kind} is rlsctl's own: it cannot be external")
        if self.external and self.members:
            raise ValueError("members: the platform manages the members of an external role")
        return self

    @field_validator("members")
    @classmethod
    def _member_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not name or "\x00" in name or len(name.encode()) > 63:
                raise ValueError(f"member {name!r}: a role name is 1 to 63 bytes, without NUL")
        if len(set(value)) != len(value):
            raise ValueError("members lists a role twice")
        return value


# -- tenancy -------------------------------------------------------------------


class TenantsDecl(Frozen):
    table: str
    key: str = "id"
    owner: str | None = None  # column whose user counts as the top rank


class MembershipDecl(Frozen):
    table: str
    tenant: str
    user: str
    rank: str | None = None  # column holding the member's rank


class Tenancy(Frozen):
    tenants: TenantsDecl
    membership: MembershipDecl | None = None
    ranks: tuple[str, ...] = ("MEMBER",)  # lowest first

    @field_validator("ranks")
    @classmethod
    def _ranks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("ranks is a non-empty list of distinct names, lowest first")
        return value

    @property
    def top_rank(self) -> str:
        return self.ranks[-1]

    @property
    def lowest_rank(self) -> str:
        return self.ranks[0]

    def ranks_at_least(self, rank: str) -> tuple[str, ...]:
        return self.ranks[self.ranks.index(rank) :]


# -- tables ----------------------------------------------------------------------


class UpdateRule(Frozen):
    using: Condition
    check: Condition | None = None


def _update_rule(value: Any) -> Any:
    if value is None or isinstance(value, UpdateRule):
        return value
    if isinstance(value, dict) and ("using" in value or "check" in value):
        return value
    return {"using": value}


class CommandRules(Frozen):
    select: Condition | None = None
    insert: Condition | None = None
    update: Annotated[UpdateRule | None, BeforeValidator(_update_rule)] = None
    delete: Condition | None = None

    def declared(self) -> tuple[str, ...]:
        return tuple(command for command in COMMANDS if getattr(self, command) is not None)


class ColumnList(Frozen):
    """Columns a privilege covers: a list, or every column except some."""

    only: tuple[str, ...] | None = None
    except_: tuple[str, ...] = Field((), alias="except")

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"only": value}
        return value

    def names(self) -> tuple[str, ...]:
        return (self.only or ()) + self.except_


class ColumnPrivileges(Frozen):
    select: ColumnList | None = None
    insert: ColumnList | None = None
    update: ColumnList | None = None


class Guard(Frozen):
    """A rule about changing a row that a policy cannot express (it needs OLD and NEW).

    When an UPDATE by one of `roles` changes any of `changed`, `require` must
    hold for the old row and `require_new` (if given) for the new row, else the
    statement fails with `message`. Without either, such a change is refused;
    with `require_new` alone, only the new row is judged.
    """

    changed: tuple[str, ...]
    require: Condition = Field(default_factory=lambda: parse_condition(False))
    require_new: Condition | None = None
    message: str
    roles: tuple[str, ...] = ("app",)

    @model_validator(mode="after")
    def _only_the_new_row(self) -> Guard:
        # `require` defaults to "never" so that a guard without conditions refuses the change;
        # a guard that gives only `require_new` asks nothing of the old row.
        if "require" not in self.model_fields_set and self.require_new is not None:
            object.__setattr__(self, "require", parse_condition(True))
        return self


class Retention(Frozen):
    """Rows older than `days` days by `column` (UTC) are deleted by `role` (docs/retention.md)."""

    column: str
    days: int = Field(gt=0)
    role: str = "retention"
    # Static hold: the retention role gets no policy on the table at all, so nothing is deleted.
    legal_hold: bool = False
    # The role key whose members may set and lift runtime holds (per table, or per tenant) through
    # rlsctl.retention_hold()/retention_release(); default `project.retention.hold_role`; neither:
    # only the static switch above.
    hold_role: str | None = None


class Suppression(Frozen):
    rule: str
    reason: str = Field(min_length=10)
    object: str | None = None


class TenantVia(Frozen):
    via: str
    table: str | None = None
    key: str | None = None


class TableDecl(Frozen):
    tenant: str | TenantVia | None = None
    policies: dict[str, CommandRules] = {}
    columns: dict[str, ColumnPrivileges] = {}
    guards: tuple[Guard, ...] = ()
    retention: Retention | None = None
    # Columns only some roles may read: column -> the role keys entitled to it
    # (the table owner always can). Lint reports any other reader.
    secrets: dict[str, tuple[str, ...]] = {}
    # Columns the database encrypts on write (pgcrypto); read with rlsctl.decrypt().
    encrypted: tuple[str, ...] = ()
    # Columns being taken out of encryption: no longer encrypted on write, while
    # `rlsctl keys decrypt` turns their ciphertext back into plaintext.
    decrypting: tuple[str, ...] = ()
    suppress: tuple[Suppression, ...] = ()
    description: str = ""
    # The table holds the audit history: a rollback never drops it before it is exported.
    audit_log: bool = False
    # Changes to this table are recorded in the project's audit log (docs/audit.md).
    audit: TableAudit | None = None
    # The SELECT policies show the planner the session's tenants, so that a statement's plan fits
    # the principal (docs/performance.md#plan-hints): one more membership lookup per statement.
    plan_with_tenants: bool = False


class EveryTable(Frozen):
    """Policies and suppressions that every managed table gets."""

    policies: dict[str, CommandRules] = {}
    suppress: tuple[Suppression, ...] = ()


# -- fixtures for `rlsctl test` -------------------------------------------------------


class Principal(Frozen):
    """Who a test session impersonates: a role, with or without a user identity or an API key."""

    user: str | None = None  # fixture row name of the user; "" means an empty identity
    id: str | None = None  # or a literal user id that no fixture row has (a newcomer)
    # or the identity setting's raw value, valid or not ("not-a-uuid"): a value that is not a
    # valid identity of the project's type must count as no identity (fail closed, no error)
    setting: str | None = None
    api_key: str | None = None  # or the raw API key the session authenticates with
    # With both user and api_key: which the session presents first (docs/identity.md: a
    # transaction acts for one principal, so key-then-user acts as the key alone and
    # user-then-key cannot authenticate).
    first: Literal["user", "api_key"] | None = None
    role: str = "app"
    description: str = ""

    @model_validator(mode="after")
    def _one_identity(self) -> Principal:
        given = [name for name in ("user", "id", "setting", "api_key") if getattr(self, name) is not None]
        if given == ["user", "api_key"]:
            if self.first is None:
                raise ValueError("a principal with both user and api_key says which comes first: first: user|api_key")
            return self
        if len(given) > 1:
            raise ValueError(
                "give one of user (a fixture row), id (a literal user id), setting (the raw setting value) "
                "or api_key (a raw key), or user and api_key with first:"
            )
        if self.first is not None:
            raise ValueError("first: is for a principal with both user and api_key")
        return self


Row = dict[str, Any]


class Fixtures(Frozen):
    principals: dict[str, Principal]
    rows: dict[str, dict[str, Row]]
    inserts: dict[str, dict[str, Row]] = {}
    updates: dict[str, dict[str, Row]] = {}


# -- representative queries for `rlsctl explain` -------------------------------------------

PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TenantPick = Literal["largest", "typical"]


class ExplainPrincipal(Frozen):
    """Who `rlsctl explain` runs a query as, picked from the data it finds (docs/policy-format.md#explain).

    A user holding exactly `rank` in a tenant, a literal `user_id`, an API-key session with the
    scopes `api_key` lists (its key is created inside the rolled-back transaction), or none of
    these: no identity. `tenant` picks the tenant (`largest`: the most members, `typical`: the
    median), `tenant_id` names one; it is the query's `:tenant_id`."""

    role: str = "app"
    rank: str | None = None
    user_id: str | None = None
    api_key: tuple[str, ...] | None = None
    tenant: TenantPick | None = None
    tenant_id: str | None = None
    description: str = ""

    @field_validator("user_id", "tenant_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        # YAML reads `user_id: 42` as a number; an id of an integer identity is written that way.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _one_identity(self) -> ExplainPrincipal:
        given = [name for name in ("rank", "user_id", "api_key") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError("give one of rank (a member of the tenant), user_id (a literal user) or api_key (scopes)")
        if self.tenant is not None and self.tenant_id is not None:
            raise ValueError("give tenant (largest or typical) or tenant_id, not both")
        if given and given[0] in ("rank", "api_key") and self.tenant is None and self.tenant_id is None:
            raise ValueError(f"{given[0]}: say in which tenant, with tenant: largest|typical or tenant_id:")
        return self


def _param_names(value: dict[str, str]) -> dict[str, str]:
    for name in value:
        if not PARAM_NAME.match(name):
            raise ValueError(f"parameter {name!r}: a name is letters, digits and _, not starting with a digit")
    return value


class ExplainQuery(Frozen):
    """One query the application sends (`sql`, run as each principal under RLS) and the same query
    with the filter the application would write without RLS (`baseline`, run by the connecting
    role, which must bypass RLS). `:name` is a parameter: built in, or one of `params`."""

    sql: str = Field(min_length=1)
    baseline: str = Field(min_length=1)
    as_: tuple[str, ...] | None = Field(None, alias="as")  # principal names; default: every principal
    params: dict[str, str] = {}  # name -> a query, run by the connecting role, whose first value it is
    description: str = ""

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, str]) -> dict[str, str]:
        return _param_names(value)


class Explain(Frozen):
    """The representative queries `rlsctl explain` plans as each principal (docs/policy-format.md#explain)."""

    principals: dict[str, ExplainPrincipal] = Field(min_length=1)
    params: dict[str, str] = {}  # shared by every query, computed per principal in this order
    queries: dict[str, ExplainQuery] = Field(min_length=1)

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, str]) -> dict[str, str]:
        return _param_names(value)


# -- one file ---------------------------------------------------------------------------


class PolicyFile(Frozen):
    """The sections one YAML file of `policies/` may hold."""

    project: ProjectSettings | None = None
    roles: dict[str, RoleDecl] | None = None
    tenancy: Tenancy | None = None
    every_table: EveryTable | None = None
    tables: dict[str, TableDecl] | None = None
    fixtures: Fixtures | None = None
    explain: Explain | None = None

    @field_validator("roles")
    @classmethod
    def _role_keys(cls, value: dict[str, RoleDecl] | None) -> dict[str, RoleDecl] | None:
        for key in value or {}:
            if not ROLE_KEY.match(key):
                raise ValueError(f"role key {key!r}: use lowercase letters, digits and _")
        return value
