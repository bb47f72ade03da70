"""Creating API keys: the raw key is returned once and stored only hashed."""

from __future__ import annotations

import datetime as dt

import psycopg

from rlsctl.change.apply import live_schema
from rlsctl.declare.compile import declare
from rlsctl.errors import UsageError
from rlsctl.keys.session import first_line
from rlsctl.pg import statements
from rlsctl.pg.templates import render_template
from rlsctl.policy.project import Project


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
    schema = live_schema(conn, project, None)
    state = declare(project, schema)
    if state.api_keys is None or state.keys is None:
        raise UsageError(f"{where}: the project declares no api_keys table that exists here")
    sql = render_template(
        "ops/keys_create_api_key.sql.j2",
        project.root / "templates",
        schema=state.schema,
        helper_schema=state.helper_schema,
    ).encode()
    as_user = as_user if as_user is not None else _tenant_owner(conn, project, where, tenant)
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


def _tenant_owner(conn: psycopg.Connection, project: Project, where: str, tenant: str) -> str:
    tenancy = project.tenancy
    owner = tenancy.tenants.owner if tenancy is not None else None
    if tenancy is None or owner is None:
        raise UsageError(f"{where}: give --as USER, an admin of {tenant!r}: the key is created as that user")
    sql = render_template(
        "ops/tenant_owner.sql.j2", project.root / "templates", schema=project.schema_name,
        table=tenancy.tenants.table, key=tenancy.tenants.key, owner=owner,
    )  # fmt: skip
    row = conn.execute(sql.encode(), {"tenant": tenant}).fetchone()
    if row is None or row[0] is None:
        raise UsageError(f"{where}: no such team {tenant!r} (or it names no owner: give --as USER)")
    return str(row[0])
