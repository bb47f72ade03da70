"""API keys: creating (the raw key is returned once and stored only hashed), listing, revoking.

Every statement runs as a role whose policies decide what it may do: the app role with a user
identity (`as_user`: an admin of the key's team passes the key table's policies, anyone else sees
and changes nothing), or, to list every team's keys, the owner role (the role migrations run
as). Never as the connecting login, which is often a superuser that RLS does not stop and
whose rights the table's triggers would run with.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row

from rlsctl.change.apply import live_schema
from rlsctl.declare.compile import declare
from rlsctl.declare.state import ApiKeySpec, DeclaredState
from rlsctl.errors import UsageError
from rlsctl.keys.session import first_line
from rlsctl.pg import statements
from rlsctl.pg.templates import render_template
from rlsctl.policy import conditions as c
from rlsctl.policy.columns import policy_conditions
from rlsctl.policy.project import Project
from rlsctl.schema.tables import Table

# Columns a key table may have beyond what project.api_keys names: shown when present.
CREATED_COLUMNS = ("createdAt", "created_at", "created")
LAST_USED_COLUMNS = ("lastUsedAt", "last_used_at", "lastUsed", "last_used")


@dataclass(frozen=True)
class ApiKeyInfo:
    """What `list-api-keys` shows of a key: never its hash, never the raw key."""

    id: str
    team: str
    name: str | None
    scopes: tuple[str, ...]
    created: dt.datetime | None
    expires: dt.datetime | None
    last_used: dt.datetime | None


def create_api_key(
    conn: psycopg.Connection,
    project: Project,
    where: str,
    tenant: str,
    name: str,
    scopes: tuple[str, ...],
    expires: dt.datetime | None,
    as_user: str | None,
) -> str:
    """A new API key through rlsctl.create_api_key; the raw key is returned once and stored only hashed.

    The key is created as the app role with a user identity, so the policies decide (only an
    admin of the team may): `as_user`, else the tenant's owner (the tenancy section's owner
    column). Never as the connecting role: the statement writes a table the owner role owns,
    whose triggers would run with the connecting role's rights (often a superuser's).
    """
    check_scopes(project, scopes)
    state, _, _ = _api_key_state(conn, project, where)
    sql = render_template(
        "ops/keys_create_api_key.sql.j2",
        project.root / "templates",
        schema=state.schema,
        helper_schema=state.helper_schema,
    ).encode()
    as_user = as_user if as_user is not None else _tenant_owner(conn, project, state, where, tenant)
    try:
        with conn.transaction():
            statements.run(conn, "impersonate", role=state.app, setting=state.identity_setting, user_id=as_user)
            row = conn.execute(sql, {"tenant": tenant, "name": name, "scopes": list(scopes), "expires": expires})
            raw = row.fetchone()
    except psycopg.errors.InsufficientPrivilege as exc:
        raise UsageError(f"{where}: not allowed to create a key for {tenant}: {first_line(exc)}") from None
    except (psycopg.errors.ForeignKeyViolation, psycopg.errors.InvalidTextRepresentation) as exc:
        raise UsageError(f"{where}: no such team {tenant!r}: {first_line(exc)}") from None
    assert raw is not None
    return str(raw[0])


def _tenant_owner(conn: psycopg.Connection, project: Project, state: DeclaredState, where: str, tenant: str) -> str:
    """The user named in the tenant's owner column, read as the owner role (never as the
    connecting login, which RLS often does not stop), in a transaction of its own."""
    tenancy = project.tenancy
    owner = tenancy.tenants.owner if tenancy is not None else None
    if tenancy is None or owner is None:
        raise UsageError(f"{where}: give --as USER, an admin of {tenant!r}: rlsctl acts as that user")
    sql = render_template(
        "ops/tenant_owner.sql.j2", project.root / "templates", schema=project.schema_name,
        table=tenancy.tenants.table, key=tenancy.tenants.key, owner=owner,
    )  # fmt: skip
    with _acting(conn, state, None, where, f"look up the owner of {tenant!r}"):
        row = conn.execute(sql.encode(), {"tenant": tenant}).fetchone()
    if row is None or row[0] is None:
        raise UsageError(f"{where}: no such team {tenant!r} (or it names no owner: give --as USER)")
    return str(row[0])


# -- scopes ------------------------------------------------------------------------------------


def declared_scopes(project: Project) -> tuple[str, ...]:
    """The scopes the policy files' `api_key:` conditions ask for (policies and guards, inside
    any/all/not/exists): no other scope opens anything. project.api_keys lists no scopes of its
    own, so these are the project's scopes."""
    found: set[str] = set()
    for decl in project.tables.values():
        conds = policy_conditions(decl)
        for guard in decl.guards:
            conds += [guard.require] + ([guard.require_new] if guard.require_new is not None else [])
        for cond in conds:
            found |= _scopes_in(cond)
    return tuple(sorted(found))


def _scopes_in(cond: c.Cond) -> set[str]:
    found: set[str] = set()
    for node in c.walk(cond):
        if isinstance(node, c.ApiKeyScope):
            found.add(node.scope)
        elif isinstance(node, c.Exists):  # walk() stops at exists: its condition is another table's
            found |= _scopes_in(node.where)
    return found


def check_scopes(project: Project, scopes: tuple[str, ...]) -> None:
    """Refuse a scope no policy asks for: a typo would make a key that silently opens nothing."""
    known = declared_scopes(project)
    for scope in scopes:
        if scope not in known:
            listed = ", ".join(known) if known else "none: no policy has an api_key condition"
            raise UsageError(
                f"--scope {scope!r} is not a scope of this project "
                f"(the scopes its policies' api_key conditions ask for: {listed})"
            )


# -- listing and revoking ---------------------------------------------------------------------


def list_api_keys(
    conn: psycopg.Connection, project: Project, where: str, tenant: str | None, as_user: str | None
) -> list[ApiKeyInfo]:
    """The keys `as_user` may see (the app role's policies decide: an admin sees their teams'
    keys), or, without `as_user`, those the owner role's policies show (every team's, when the
    project gives the owner `select: true`, as PromptCraft does); `tenant`: one team's only."""
    state, spec, table = _api_key_state(conn, project, where)
    if as_user is None:
        _owner_reads_keys(project, state, spec, where)
    with _acting(conn, state, as_user, where, f"list the API keys{'' if tenant is None else ' of ' + tenant}"):
        return _read(conn, project, state, spec, table, tenant=tenant, key_id=None)


def revoke_api_key(
    conn: psycopg.Connection, project: Project, where: str, key_id: str, as_user: str | None
) -> ApiKeyInfo:
    """Delete key `key_id` as the app role with identity `as_user` (default: the owner of the
    key's team, found as the owner role): the DELETE policy decides. The revoked key; a key the
    policies hide from `as_user`, or that does not exist, is refused and nothing changes."""
    state, spec, table = _api_key_state(conn, project, where)
    if as_user is None:
        _owner_reads_keys(project, state, spec, where)
        with _acting(conn, state, None, where, f"look up API key {key_id}"):
            found = _read(conn, project, state, spec, table, tenant=None, key_id=key_id)
        if not found:
            raise UsageError(f"{where}: no API key {key_id!r}; nothing was revoked")
        as_user = _tenant_owner(conn, project, state, where, found[0].team)
    sql = _sql(project, state, "keys_revoke_api_key", spec)
    with _acting(conn, state, as_user, where, f"revoke API key {key_id}"), conn.cursor(row_factory=dict_row) as cur:
        gone = cur.execute(sql, {"id": key_id}).fetchone()
        if gone is None:
            raise UsageError(
                f"{where}: {as_user!r} may not revoke API key {key_id!r} (no such key, or not an admin of "
                f"its team: the {spec.table} policies hide it from them); nothing was revoked"
            )
        return ApiKeyInfo(gone["id"], gone["team"], gone["name"], (), None, None, None)


def _api_key_state(conn: psycopg.Connection, project: Project, where: str) -> tuple[DeclaredState, ApiKeySpec, Table]:
    schema = live_schema(conn, project, None)
    state = declare(project, schema)
    if state.api_keys is None or state.keys is None:
        raise UsageError(f"{where}: the project declares no api_keys table that exists here")
    return state, state.api_keys, schema.table(state.api_keys.table)


def _owner_reads_keys(project: Project, state: DeclaredState, spec: ApiKeySpec, where: str) -> None:
    """Without a user identity the owner role reads the keys: only if a policy lets it, else the
    listing would be empty for a reason nobody sees."""
    owner_key = project.role_of_kind("owner")
    table = next((t for t in state.tables if t.name == spec.table), None)
    if table is None or not table.policies_for(owner_key, "select"):
        raise UsageError(
            f"{where}: no policy lets the owner role ({state.owner}) read {spec.table}: "
            "give --as USER, an admin of the team, to act as the app role with that identity"
        )


@contextmanager
def _acting(
    conn: psycopg.Connection, state: DeclaredState, as_user: str | None, where: str, what: str
) -> Iterator[None]:
    """One transaction as the app role with identity `as_user`, or as the owner role without one."""
    try:
        with conn.transaction():
            statements.run(conn, "secure_path")
            if as_user is None:
                statements.run(conn, "set_role", role=state.owner)
            else:
                statements.run(conn, "impersonate", role=state.app, setting=state.identity_setting, user_id=as_user)
            yield
    except psycopg.errors.InsufficientPrivilege as exc:
        who = state.owner if as_user is None else f"{as_user} (as {state.app})"
        raise UsageError(f"{where}: {who} may not {what}: {first_line(exc)}") from None
    except psycopg.errors.InvalidTextRepresentation as exc:
        raise UsageError(f"{where}: cannot {what}: {first_line(exc)}") from None


def _read(
    conn: psycopg.Connection,
    project: Project,
    state: DeclaredState,
    spec: ApiKeySpec,
    table: Table,
    tenant: str | None,
    key_id: str | None,
) -> list[ApiKeyInfo]:
    sql = _sql(
        project, state, "keys_list_api_keys", spec,
        created=_first_column(table, CREATED_COLUMNS), last_used=_first_column(table, LAST_USED_COLUMNS),
    )  # fmt: skip
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, {"tenant": tenant, "id": key_id}).fetchall()
    return [
        ApiKeyInfo(r["id"], r["team"], r["name"], tuple(r["scopes"] or ()), r["created"], r["expires"], r["last_used"])
        for r in rows
    ]


def _first_column(table: Table, names: tuple[str, ...]) -> str | None:
    return next((name for name in names if table.has_column(name)), None)


def _sql(project: Project, state: DeclaredState, template: str, spec: ApiKeySpec, **context: object) -> bytes:
    return render_template(
        f"ops/{template}.sql.j2",
        project.root / "templates",
        schema=state.schema,
        table=spec.table,
        key=spec.key,
        key_type=spec.key_type,
        tenant=spec.tenant,
        tenant_type=spec.tenant_type,
        name=spec.name,
        scopes=spec.scopes,
        expires=spec.expires,
        **context,
    ).encode()
