"""The declared principals, found in the data, and how a savepoint becomes one of them.

A principal is picked when explain runs, as the connecting role: the tenant with the most (or the
median number of) membership rows, a user holding exactly the declared rank there, the tenants
that user belongs to. Becoming it is what the application does per transaction
(docs/identity.md): `set_config('role', ...)` and the identity setting, or an API key presented
to the helper schema's authenticate_api_key. The key is created for the occasion by the
project's create_api_key inside the transaction, which is rolled back: nothing stays.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import psycopg

from rlsctl.errors import UsageError
from rlsctl.explain import queries
from rlsctl.explain.declarations import builtin_params, where
from rlsctl.pg import statements
from rlsctl.pg.templates import render_template
from rlsctl.policy.model import ExplainPrincipal
from rlsctl.policy.project import Project

KEY_NAME = "rlsctl explain"  # the name of the API keys explain creates (and rolls back)


@dataclass(frozen=True)
class Acting:
    """A declared principal as this database has it."""

    name: str
    role: str  # the PostgreSQL role it acts as
    user_id: Any = None  # in the identity's own type, as the data holds it
    tenant: Any = None
    members: int | None = None  # membership rows of its tenant
    rank: str | None = None
    api_scopes: tuple[str, ...] | None = None
    params: dict[str, Any] = field(default_factory=dict, compare=False)  # the built-in parameters
    anonymous: bool = False  # the app role without a user or a key: a session the policies give nothing

    def describe(self) -> str:
        """`user u0042, ADMIN in t7 (12 members), role promptcraft_app`."""
        if self.api_scopes is not None:
            who = f"API key ({', '.join(self.api_scopes) or 'no scope'})"
        elif self.user_id is not None:
            who = f"user {self.user_id}" + (f", {self.rank}" if self.rank else "")
            if self.params and not self.params.get("tenants"):
                who += ", of no tenant"  # a literal id the data does not know reads as a stranger
        else:
            who = "no identity"
        if self.tenant is not None:
            who += f" in {self.tenant}" + (f" ({self.members} members)" if self.members is not None else "")
        return f"{who}, role {self.role}"


def find(conn: psycopg.Connection, project: Project, name: str, declared: ExplainPrincipal) -> Acting:
    """The principal in this database; exit 2 naming its declaration when the data has none."""
    tenant, members = _tenant(conn, project, name, declared)
    user: Any = declared.user_id
    if declared.rank is not None:
        user = _member(conn, project, name, declared.rank, tenant)
    scopes = tuple(declared.api_key) if declared.api_key is not None else None
    anonymous = user is None and scopes is None and declared.role == project.role_of_kind("app")
    acting = Acting(name, project.role_name(declared.role), user, tenant, members, declared.rank, scopes,
                    anonymous=anonymous)  # fmt: skip
    return replace(acting, params=_builtins(conn, project, acting))


def become(conn: psycopg.Connection, project: Project, acting: Acting) -> None:
    """Act as the principal for the rest of the current (sub)transaction."""
    if acting.api_scopes is not None:
        raw_key = _create_key(conn, project, acting)
        statements.run(conn, "impersonate_role", role=acting.role)
        authenticate = render_template(
            "ops/tester_api_key.sql.j2", project.root / "templates", helper_schema=project.helper_schema
        )
        row = conn.execute(authenticate.encode(), {"raw_key": raw_key}).fetchone()
        if not (row and row[0]):
            raise UsageError(f"principal {acting.name}: the API key explain created did not authenticate")
    elif acting.user_id is not None:
        setting = project.settings.identity.setting
        statements.run(conn, "impersonate", role=acting.role, setting=setting, user_id=str(acting.user_id))
    else:
        statements.run(conn, "impersonate_role", role=acting.role)


def _create_key(conn: psycopg.Connection, project: Project, acting: Acting) -> str:
    """A key of the principal's tenant and scopes, created by the connecting role (which bypasses
    RLS) with the project's own create_api_key; the raw key only ever travels as a parameter."""
    create = render_template(
        "ops/keys_create_api_key.sql.j2", project.root / "templates", helper_schema=project.helper_schema
    )
    params = {"tenant": str(acting.tenant), "name": KEY_NAME, "scopes": list(acting.api_scopes or ()), "expires": None}
    row = conn.execute(create.encode(), params).fetchone()
    assert row is not None
    return str(row[0])


def _context(project: Project) -> dict[str, Any]:
    tenancy = project.tenancy
    assert tenancy is not None
    membership = tenancy.membership
    return {
        "schema": project.schema_name,
        "tenants": tenancy.tenants.table,
        "key": tenancy.tenants.key,
        "owner": tenancy.tenants.owner,
        "membership": membership.table if membership else None,
        "tenant": membership.tenant if membership else None,
        "user": membership.user if membership else None,
        "rank": membership.rank if membership else None,
    }


def _tenant(
    conn: psycopg.Connection, project: Project, name: str, declared: ExplainPrincipal
) -> tuple[Any, int | None]:
    if declared.tenant_id is not None:
        rows = queries.run_template(conn, "find_tenant", _context(project), tenant=declared.tenant_id)
        if not rows:
            tenants = project.tenancy.tenants.table if project.tenancy else "the tenants table"
            raise UsageError(
                f"{where(project, 'principals', name, 'tenant_id')}: principal {name!r}: tenant_id "
                f"{declared.tenant_id!r} is no row of {tenants} in this database"
            )
        return rows[0]["tenant"], rows[0]["members"]
    if declared.tenant is None:
        return None, None
    rows = queries.run_template(conn, "pick_tenant", {**_context(project), "largest": declared.tenant == "largest"})
    if not rows:
        raise UsageError(
            f"{where(project, 'principals', name, 'tenant')}: principal {name!r}: this database has no "
            "membership rows to pick a tenant from (explain needs representative data)"
        )
    return rows[0]["tenant"], rows[0]["members"]


def _member(conn: psycopg.Connection, project: Project, name: str, rank: str, tenant: Any) -> Any:
    tenancy = project.tenancy
    assert tenancy is not None
    top = rank == tenancy.top_rank
    rows = queries.run_template(conn, "member", _context(project), tenant=tenant, rank=rank, top=top)
    if not rows:
        raise UsageError(
            f"{where(project, 'principals', name, 'rank')}: principal {name!r}: nobody holds exactly {rank} in "
            f"{tenancy.tenants.table} {tenant} in this database"
        )
    return rows[0]["user_id"]


def _builtins(conn: psycopg.Connection, project: Project, acting: Acting) -> dict[str, Any]:
    """The built-in parameters: what an application without RLS knows of its user or key."""
    found: dict[str, Any] = dict.fromkeys(builtin_params(project))
    found.update(user_id=acting.user_id, tenant_id=acting.tenant, key_scopes=[])
    held = _held_ranks(conn, project, acting.user_id) if acting.user_id is not None else []
    found["tenants"] = _sorted({tenant for tenant, _ in held})
    tenancy = project.tenancy
    for rank in tenancy.ranks if tenancy is not None else ():
        if f"tenants_{rank}" in found:
            at_least = set(tenancy.ranks_at_least(rank))
            found[f"tenants_{rank}"] = _sorted({tenant for tenant, held_rank in held if held_rank in at_least})
    if acting.api_scopes is not None:
        found.update(key_tenant=acting.tenant, key_scopes=list(acting.api_scopes))
    return found


def _held_ranks(conn: psycopg.Connection, project: Project, user: Any) -> list[tuple[Any, str]]:
    """(tenant, rank) for every membership of the user and every tenant it owns (the top rank).
    A membership without a rank column holds the lowest rank."""
    tenancy = project.tenancy
    if tenancy is None or (tenancy.membership is None and tenancy.tenants.owner is None):
        return []
    rows = queries.run_template(conn, "user_tenants", _context(project), user=user, top=tenancy.top_rank)
    return [(row["tenant"], row["rank"] or tenancy.lowest_rank) for row in rows if row["tenant"] is not None]


def _sorted(values: set[Any]) -> list[Any]:
    return sorted(values, key=str)
