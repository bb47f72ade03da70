"""Which objects of a database are rlsctl's: the part of the declared state the catalog reader needs.

The catalog side reads the live database into the shapes of
`rlsctl.state.objects`; to know which rows to read and which of them are
managed (reported and repaired) or unmanaged (reported, left alone), it
needs only this scope, never the declared policies themselves. The declared
state builds it (`DeclaredState.scope`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScopeRole:
    name: str
    # Owns objects or holds key material: any membership in it is managed (docs/diff.md).
    privileged: bool
    members: tuple[str, ...] = ()  # roles outside the project expected to be its members
    # The platform's role (role.external): its attributes and the memberships in it are not rlsctl's.
    external: bool = False


@dataclass(frozen=True)
class ManagedScope:
    schema: str  # the project schema, holding the managed tables
    helper_schema: str  # rlsctl's own schema: helpers, key store, bookkeeping
    roles: tuple[ScopeRole, ...]
    creators: tuple[str, ...]  # managed roles that create objects: their default privileges are managed
    tables: tuple[str, ...]  # the managed tables that exist
    extensions: tuple[str, ...]
    prune_unmanaged_grants: bool
    encrypted: bool  # the project encrypts columns: the key store is read
    # What a keys-role session reads or rewrites, and whose code it trusts there
    # (catalog/sql/untrusted_code.sql): the keys role, the tables it has privileges on,
    # the encrypted columns ("table.column"), the owners of rlsctl's helpers.
    keys_role: str | None = None
    keys_tables: tuple[str, ...] = ()  # rewritten by the keys role
    keys_read_tables: tuple[str, ...] = ()  # only read by it
    encrypted_columns: tuple[str, ...] = ()
    helper_owners: tuple[str, ...] = ()
    trusted_functions: tuple[str, ...] = ()  # rlsctl's policy helpers and trigger functions (by name)
    # Functions outside rlsctl's schema the keys role must be able to execute, "schema.name(args)"
    # (pgcrypto's, where the platform installed it), and the schemas it needs USAGE on for them.
    required_functions: tuple[str, ...] = ()
    required_schemas: tuple[str, ...] = ()
    # Every table a policy file declares, present or pending: any other relation of the schema
    # that a managed role can reach is reported as undeclared.
    declared_tables: tuple[str, ...] = ()
    owner_role: str = ""  # the role that owns the tables and runs the migrations
    sequences: tuple[str, ...] = ()  # of the project schema, drawn from by the managed tables' serial columns

    @property
    def managed_role_names(self) -> tuple[str, ...]:
        return tuple(role.name for role in self.roles)

    @property
    def created_role_names(self) -> tuple[str, ...]:
        """The roles rlsctl creates (all the declared ones but the platform's)."""
        return tuple(role.name for role in self.roles if not role.external)

    @property
    def external_role_names(self) -> tuple[str, ...]:
        return tuple(role.name for role in self.roles if role.external)
