"""The declared state: what the database's security layer must be, as typed, frozen objects.

`rlsctl.declare.compile.declare` builds it from the policy model for the
tables and columns that exist; the templates render it as SQL and `rlsctl
test` evaluates the same bound expressions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from rlsctl.declare import expr as e
from rlsctl.declare.audit_spec import AuditSpec
from rlsctl.pg.sql import SqlText, ident
from rlsctl.schema.tables import Schema, with_time_zone
from rlsctl.state.scope import ManagedScope, ScopeRole

PRIVILEGE = {"select": "SELECT", "insert": "INSERT", "update": "UPDATE", "delete": "DELETE"}


@dataclass(frozen=True)
class RoleSpec:
    key: str
    name: str
    kind: str
    description: str
    members: tuple[str, ...] = ()  # roles outside the project expected to be its members
    external: bool = False  # the platform's role: granted to, never created, altered or dropped

    @property
    def privileged(self) -> bool:
        """Owns objects or holds key material: a member may SET ROLE to it and then
        disable RLS, replace helpers or read the key store."""
        return self.kind in PRIVILEGED_KINDS


PRIVILEGED_KINDS = ("owner", "definer", "keys")


@dataclass(frozen=True)
class PolicySpec:
    table: str
    name: str
    command: str  # select | insert | update | delete
    role_key: str
    role: str
    using: e.Pred | None
    check: e.Pred | None
    # Render a user's tenants and an API key's tenant compared with one column as one helper call
    # (expr.merge_principal_arms): set where the project has both, with one tenant id type.
    merge_principals: bool = False

    @property
    def sql_command(self) -> str:
        return PRIVILEGE[self.command]

    @property
    def sql_using(self) -> e.Pred | None:
        """USING as the templates print it (the access-matrix evaluator reads `using`)."""
        return self._for_sql(self.using)

    @property
    def sql_check(self) -> e.Pred | None:
        return self._for_sql(self.check)

    def _for_sql(self, pred: e.Pred | None) -> e.Pred | None:
        if pred is None or not self.merge_principals:
            return pred
        return e.merge_principal_arms(pred)

    @property
    def helpers(self) -> set[str]:
        """The helpers the policy's SQL calls (who may execute them follows from it)."""
        found: set[str] = set()
        for pred in (self.sql_using, self.sql_check):
            if pred is not None:
                found |= e.helpers_used(pred)
        return found

    @property
    def reads_session(self) -> bool:
        """Whether the condition depends on who the session acts for (user, tenants, API key)."""
        return bool(self.helpers - {"presented_key_hash"})

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
    plan_with_tenants: bool = False  # SELECT policies rendered with plan hints (templates/expr.sql.j2)
    # The sequences of its schema its columns' defaults draw from (serial columns): their grants
    # are managed like the table's; USAGE for whoever inserts (GrantSpec.table names the sequence).
    sequences: tuple[str, ...] = ()
    sequence_grants: tuple[GrantSpec, ...] = ()

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
    """A function rlsctl owns in the helper schema (see rlsctl/declare/functions.py for the catalogue)."""

    name: str
    args: str  # the argument types of the signature, e.g. "text"
    policy_helper: bool  # called from policies (EXECUTE for the roles whose policies call it)
    arg_decl: str = ""  # the declaration, with argument names
    returns: str = ""
    language: str = "sql"
    volatility: str = "s"
    security_definer: bool = False
    owner: str = ""
    executors: tuple[str, ...] = ()  # roles granted EXECUTE (policy helpers: computed from the policies)
    body: str = ""  # the macro of `template` that writes its body
    table: str | None = None  # for per-table functions (guards, encryption triggers, retention)
    template: str = "objects/bodies.sql.j2"  # the macro library holding `body`

    @property
    def signature_args(self) -> SqlText:
        return SqlText(self.args)


@dataclass(frozen=True)
class EncryptedColumn:
    table: str
    column: str
    kind: str  # text or jsonb: the ciphertext format
    decrypting: bool = False  # being taken out of encryption


@dataclass(frozen=True)
class EncryptionSpec:
    master_key_setting: str
    readers: tuple[str, ...]  # roles that may call decrypt()
    writers: tuple[str, ...]  # roles that insert or update encrypted columns (they call encrypt() via the trigger)
    columns: tuple[EncryptedColumn, ...]
    crypto_schema: str  # where pgcrypto lives
    master_key_file: str | None = None  # the KEK is read from this file by the keys role (else the setting)

    @property
    def new_master_key_setting(self) -> str:
        """Where `rlsctl keys rewrap` finds the next key-encryption key (PGOPTIONS of its session)."""
        return self.master_key_setting + "_new"

    @property
    def kek_mode(self) -> str:
        """Where the key-encryption key lives, in words."""
        if self.master_key_file is not None:
            return f"file {self.master_key_file} (read by the keys role only)"
        return f"setting {self.master_key_setting}"

    def encrypting(self, table: str) -> tuple[EncryptedColumn, ...]:
        return tuple(c for c in self.columns if c.table == table and not c.decrypting)

    def decrypting(self, table: str) -> tuple[EncryptedColumn, ...]:
        return tuple(c for c in self.columns if c.table == table and c.decrypting)

    @property
    def tables(self) -> tuple[str, ...]:
        """Tables with a trigger: encrypting columns are encrypted on write, and neither kind
        accepts a value shaped like ciphertext (docs/encryption.md)."""
        return tuple(sorted({c.table for c in self.columns}))

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted({c.kind for c in self.columns}))


@dataclass(frozen=True)
class RetentionTable:
    """A table with `retention:` that exists, and what its batch function needs (docs/retention.md)."""

    table: str
    column: str  # the row's age: rows older than `days` days by it (UTC) are expired
    column_type: str
    days: int
    role_key: str
    role: str  # deletes expired rows (its policies let it delete nothing younger)
    hold_role: str | None  # may set and lift runtime holds on this table
    static_hold: bool  # `legal_hold: true` in the policy file: no retention policy at all
    primary_key: tuple[str, ...]  # batches lock their rows, then delete them by it
    tenant: str | None  # the row's own tenant column: tenant holds keep that tenant's rows
    tenant_via: bool = False  # the tenant is reached through another table: a tenant hold holds all
    tenant_type: str = "text"  # the tenant column's type: holds are compared as that type

    @property
    def function(self) -> str:
        return helper_name("retention_", self.table)

    @property
    def with_zone(self) -> bool:
        """Its age column is a timestamptz: windows are counted from now() itself (see expr.Cutoff)."""
        return with_time_zone(self.column_type)


@dataclass(frozen=True)
class RetentionSpec:
    """Retention in the helper schema: the hold register, its change log and the run log (owned by
    `owner`), the per-table batch functions (owned by each table's retention role)."""

    tables: tuple[RetentionTable, ...]  # those that exist
    owner: str
    lock_id: int  # advisory lock: batches take it shared, a hold change exclusively
    # The retention roles of every table declaring retention, whether it exists yet or not: they
    # own batch functions (now or after a later phase), so their default privileges are managed
    # from the start and a rollback leaves what a fresh apply would.
    creators: tuple[str, ...] = ()

    @property
    def deleters(self) -> tuple[str, ...]:
        return tuple(sorted({t.role for t in self.tables if not t.static_hold}))

    @property
    def hold_roles(self) -> tuple[str, ...]:
        return tuple(sorted({t.hold_role for t in self.tables if t.hold_role is not None}))

    def table(self, name: str) -> RetentionTable:
        for table in self.tables:
            if table.table == name:
                return table
        raise KeyError(name)


@dataclass(frozen=True)
class ApiKeyParent:
    """A table api_key conditions reach through `tenant: {via: ...}`, and the helper returning its rows' keys."""

    table: str
    key: str
    key_type: str
    function: str
    reach: e.Pred  # the row's tenant is the API key's: checked in the helper, not only by the keys role's RLS


@dataclass(frozen=True)
class ApiKeySpec:
    table: str
    key: str
    tenant: str
    hash: str
    scopes: str
    expires: str | None
    name: str | None
    raw_prefix: str
    tenant_type: str
    key_type: str
    # The expiry column is a timestamptz: compared with now() itself. A timestamp without time zone
    # holds UTC (docs/encryption.md) and is compared with now() AT TIME ZONE 'UTC'; comparing a
    # timestamptz with that would convert it back in the session's TimeZone, which the app may set.
    expires_with_zone: bool = False


# pgcrypto functions the keys role calls: it must be able to execute them, wherever the
# platform installed pgcrypto (who else may is not rlsctl's business: they are not secrets).
PGCRYPTO = (
    ("gen_random_bytes", "integer"),
    ("pgp_sym_encrypt", "text, text, text"),
    ("pgp_sym_decrypt", "bytea, text"),
    ("pgp_sym_encrypt_bytea", "bytea, text, text"),
    ("pgp_sym_decrypt_bytea", "bytea, text"),
)


def extension_schema(sites: Schema, name: str, helper_schema: str) -> str:
    """The schema rlsctl calls an extension in (see DeclaredState.extension_schemas)."""
    site = sites.extension(name)
    return site.schema if site is not None and site.safe else helper_schema


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
    # Columns the policy files name on tables that exist, but which do not exist yet
    # (a later phase adds them): rules about them fold to "no" until then.
    pending_columns: tuple[tuple[str, str], ...] = ()
    keys: str | None = None  # the keys role: encryption, key rotation, API-key sessions
    # Where each extension is used: where the platform installed it, when only a DBA can create
    # objects in that schema; else the helper schema (created, or moved, there).
    extension_schemas: tuple[tuple[str, str], ...] = ()
    api_key_parents: tuple[ApiKeyParent, ...] = ()
    encryption: EncryptionSpec | None = None
    api_keys: ApiKeySpec | None = None
    retention: RetentionSpec | None = None  # any table declares `retention:` (existing or not)
    audit: AuditSpec | None = None  # the project declares `audit:` (docs/audit.md)
    # Functions rlsctl owns in the helper schema (rlsctl.declare.functions.catalogue):
    # computed once by `declare`, from the policies that call them.
    helper_functions: tuple[HelperFn, ...] = ()

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

    def api_key_scopes(self, helper: str) -> tuple[str, ...]:
        """The scopes the policies ask an API-key helper for: `api_key_rows_<table>` serves the
        scopes of the conditions that call it, `api_key_member` those that rules calling it
        also require. Any other scope gets nothing from it (a key reads nothing outside its scopes)."""
        found: set[str] = set()
        for table in self.tables:
            for policy in table.policies:
                for pred in (policy.using, policy.check):
                    if pred is None:
                        continue
                    if helper == "api_key_member":
                        found = found.union(*e.member_scopes(pred))
                    else:
                        calls = [n for n in e.walk(pred) if isinstance(n, e.InApiKeyRows) and n.function == helper]
                        found |= {call.scope for call in calls}
        return tuple(sorted(found))

    @property
    def grantee_role_names(self) -> tuple[str, ...]:
        """Roles that may hold privileges on tables (all but the owner)."""
        return tuple(role.name for role in self.roles if role.name != self.owner)

    @property
    def helper_owner(self) -> str:
        """Who owns the helper schema: the keys role (which owns the key store too), else the
        definer. Never the owner role: the migrations' login is a member of that one, and a
        schema's owner may drop and replace anything in it, including what runs as the keys or
        the definer role (docs/threat-model.md)."""
        return self.keys or self.definer

    @property
    def function_owners(self) -> tuple[str, ...]:
        return tuple(sorted({fn.owner for fn in self.helper_functions}))

    @property
    def creators(self) -> tuple[str, ...]:
        """Managed roles that own (and so create) objects: their default privileges are managed."""
        retention = self.retention.creators if self.retention is not None else ()
        return tuple(
            sorted({self.owner, self.definer, *self.function_owners, *([self.keys] if self.keys else []), *retention})
        )

    def schema_of_extension(self, name: str) -> str:
        return dict(self.extension_schemas).get(name, self.helper_schema)

    @property
    def scope(self) -> ManagedScope:
        """What the catalog reader needs to know of this state: which objects are rlsctl's."""
        return ManagedScope(
            schema=self.schema,
            helper_schema=self.helper_schema,
            roles=tuple(ScopeRole(role.name, role.privileged, role.members, role.external) for role in self.roles),
            creators=self.creators,
            tables=tuple(table.name for table in self.tables),
            sequences=tuple(sorted({sequence for table in self.tables for sequence in table.sequences})),
            extensions=self.extensions,
            prune_unmanaged_grants=self.prune_unmanaged_grants,
            encrypted=self.encryption is not None,
            keys_role=self.keys,
            keys_tables=self.keys_tables,
            keys_read_tables=self.keys_read_tables,
            encrypted_columns=self.encrypted_column_labels,
            helper_owners=self.function_owners,
            trusted_functions=tuple(
                sorted({fn.name for fn in self.helper_functions if fn.policy_helper or fn.returns == "trigger"})
            ),
            required_functions=self._required_functions,
            required_schemas=self._required_schemas,
            declared_tables=(*(table.name for table in self.tables), *self.pending),
            owner_role=self.owner,
        )

    @property
    def _required_functions(self) -> tuple[str, ...]:
        if self.keys is None or self.encryption is None:
            return ()
        schema = self.encryption.crypto_schema
        return tuple(f"{ident(schema)}.{name}({args})" for name, args in PGCRYPTO)

    @property
    def _required_schemas(self) -> tuple[str, ...]:
        if self.keys is None or self.encryption is None or self.encryption.crypto_schema == self.helper_schema:
            return ()
        return (self.encryption.crypto_schema,)

    @property
    def encrypted_column_labels(self) -> tuple[str, ...]:
        """"table.column" of every column declared encrypted or decrypting that exists."""
        columns = self.encryption.columns if self.encryption is not None else ()
        return tuple(f"{column.table}.{column.column}" for column in columns)

    @property
    def keys_tables(self) -> tuple[str, ...]:
        """Tables the keys role rewrites (UPDATE: key rotation, backfill, decryption): every
        trigger, constraint and index expression on them runs in keys-role sessions."""
        return self._keys_tables("UPDATE")

    @property
    def keys_read_tables(self) -> tuple[str, ...]:
        """Tables the keys role only reads (API-key sessions, key usage): their policies run."""
        rewritten = set(self.keys_tables)
        return tuple(name for name in self._keys_tables("SELECT") if name not in rewritten)

    def _keys_tables(self, privilege: str) -> tuple[str, ...]:
        if self.keys is None:
            return ()
        return tuple(
            table.name
            for table in self.tables
            if any(g.role == self.keys and g.privilege == privilege for g in table.grants)
        )

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
