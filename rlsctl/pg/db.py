"""Connecting to PostgreSQL: where the DSN comes from, and errors that name the host.

The DSN comes from `--dsn`, else `DATABASE_URL`, else the libpq environment
(PGHOST, PGDATABASE, ...). Error messages never repeat a password.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import conninfo

from rlsctl.errors import ConnectionFailed, UsageError
from rlsctl.pg import statements

MIN_SERVER_VERSION = 150000
APPLICATION_NAME = "rlsctl"


@dataclass(frozen=True)
class Target:
    """A resolved DSN plus a password-free description for messages."""

    dsn: str
    where: str  # e.g. "127.0.0.1:5432/test"


def resolve_dsn(option: str | None) -> Target:
    dsn = option if option is not None else os.environ.get("DATABASE_URL", "")
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"invalid DSN: {_first_line(exc)}") from None
    return Target(dsn, describe(params))


def describe(params: dict[str, object]) -> str:
    """host:port/dbname from DSN parameters, falling back to the libpq environment."""
    host = str(params.get("host") or os.environ.get("PGHOST") or "local socket")
    port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
    # libpq's defaults: the user is the operating-system user, the database is named after the user
    user = str(params.get("user") or os.environ.get("PGUSER") or getpass.getuser())
    dbname = str(params.get("dbname") or os.environ.get("PGDATABASE") or user)
    return f"{host}:{port}/{dbname}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def connect(target: Target, autocommit: bool = False) -> psycopg.Connection:
    try:
        conn = psycopg.connect(
            target.dsn,
            autocommit=autocommit,
            application_name=APPLICATION_NAME,
            connect_timeout=10,
        )
    except psycopg.OperationalError as exc:
        raise ConnectionFailed(f"cannot connect to {target.where}: {_reason(exc)}") from None
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"invalid DSN: {_first_line(exc)}") from None
    if conn.info.server_version < MIN_SERVER_VERSION:
        version = conn.info.server_version
        conn.close()
        raise UsageError(f"{target.where}: PostgreSQL {version // 10000} is not supported (15 or newer)")
    with conn.transaction():
        statements.run(conn, "session_settings")
    return conn


def _reason(exc: psycopg.OperationalError) -> str:
    # libpq's message may list several attempts; the last line is the cause.
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    reason = lines[-1] if lines else "connection failed"
    return reason.removeprefix("FATAL:  ").removeprefix("connection to server ")


@contextmanager
def session(target: Target, autocommit: bool = True) -> Iterator[psycopg.Connection]:
    conn = connect(target, autocommit=autocommit)
    try:
        yield conn
    finally:
        conn.close()


def current_identity(conn: psycopg.Connection) -> tuple[str, bool, bool]:
    """(current_user, is superuser, has BYPASSRLS) of the connection."""
    row = conn.execute(
        "SELECT rolname, rolsuper, rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user"
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]
