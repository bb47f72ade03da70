"""`pg_dump` backups taken by `rlsctl migrate --backup-dir` before each phase."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import psycopg
from psycopg import conninfo

from rlsctl.catalog import queries as catalog
from rlsctl.errors import UsageError
from rlsctl.pg.db import Target
from rlsctl.pg.pgbin import find


def check_can_dump(conn: psycopg.Connection, schema: str, where: str) -> None:
    """Refuse up front when pg_dump would fail or silently miss rows under RLS."""
    role = catalog.current_role(conn)
    if role.bypasses_rls:
        return
    protected = sorted(name for name, table in catalog.tables(conn, schema).items() if table.rls_enabled)
    if protected:
        raise UsageError(
            f"{where}: --backup-dir needs a superuser or BYPASSRLS role to dump tables under row-level "
            f"security ({', '.join(protected[:3])}{', ...' if len(protected) > 3 else ''}); "
            f"{role.name} is neither. Connect as such a role, or back up separately and drop --backup-dir"
        )


def dump(target: Target, conn: psycopg.Connection, directory: Path, phase: int | str) -> Path:
    """A custom-format dump of the whole database, named after the phase about to run (or what is
    about to happen: "rollback-to-2")."""
    directory.mkdir(parents=True, exist_ok=True)
    dbname = conn.info.dbname
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    before = f"phase-{phase}" if isinstance(phase, int) else phase
    path = directory / f"{dbname}-before-{before}-{stamp}.dump"
    params = conninfo.conninfo_to_dict(target.dsn) if target.dsn else {}
    env = dict(os.environ)
    password = params.pop("password", None)
    if password:
        # Never on the command line, where `ps` would show it.
        env["PGPASSWORD"] = str(password)
    # The connection the dump uses: what we are connected to, host/port/db included.
    params.setdefault("host", conn.info.host)
    params.setdefault("port", str(conn.info.port))
    params.setdefault("dbname", dbname)
    params.setdefault("user", conn.info.user)
    command = [
        str(find("pg_dump")),
        "--format=custom",
        f"--file={path}",
        f"--dbname={conninfo.make_conninfo(**params)}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["pg_dump failed"])[-1]
        raise UsageError(f"backup before {before} failed: {reason}; nothing was changed")
    return path
