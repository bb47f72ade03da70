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

    @property
    def managed_role_names(self) -> tuple[str, ...]:
        return tuple(role.name for role in self.roles)
