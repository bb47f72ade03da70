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

    With `as_user`, the key is created as the app role with that identity, so
    the policies decide (only an admin of the team may); without it, as the
    connecting role.
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
    try:
        with conn.transaction():
            if as_user is not None:
                statements.run(conn, "impersonate", role=state.app, setting=state.identity_setting, user_id=as_user)
            row = conn.execute(sql, {"tenant": tenant, "name": name, "scopes": list(scopes), "expires": expires})
            raw = row.fetchone()
    except psycopg.errors.InsufficientPrivilege as exc:
        raise UsageError(f"{where}: not allowed to create a key for {tenant}: {first_line(exc)}") from None
    except (psycopg.errors.ForeignKeyViolation, psycopg.errors.InvalidTextRepresentation) as exc:
        raise UsageError(f"{where}: no such team {tenant!r}: {first_line(exc)}") from None
    assert raw is not None
    return str(raw[0])
