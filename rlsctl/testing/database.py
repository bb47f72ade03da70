"""The database a test suite runs against: a throw-away one that rlsctl creates, migrates, applies
and drops, or one you prepared (`--rlsctl-database`), which it only uses.

A throw-away database lives on the server beside others, and roles are cluster-wide: its roles
get a role prefix of their own (`rlsctl_pt_<random>_`), so parallel sessions (pytest-xdist
workers, two CI jobs on one server) never share or drop each other's roles, and the prefix's
roles are dropped with the database, as `rlsctl demo --dsn` does.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

import psycopg
from psycopg import conninfo

from rlsctl.change import apply as applying
from rlsctl.migrate import run as migrating
from rlsctl.pg import db, statements
from rlsctl.pg.templates import render_template
from rlsctl.policy.project import Project, load_project, resolve_project_dir
from rlsctl.testing import queries
from rlsctl.testing.prepared import Prepared
from rlsctl.testing.session import RlsctlTransaction


class RlsctlDatabase:
    """What the `rlsctl_db` fixture gives: a migrated and applied database, one connection to it
    (opened on first use), and a transaction per test."""

    def __init__(self, target: db.Target, project: Project) -> None:
        self.target = target
        self.project = project  # with the role prefix in force
        self._conn: psycopg.Connection | None = None

    @property
    def dsn(self) -> str:
        return self.target.dsn

    @property
    def where(self) -> str:
        return self.target.where

    def role(self, key: str) -> str:
        """The PostgreSQL role of a role key of the project, prefix included."""
        return self.project.role_name(key)

    def connection(self) -> psycopg.Connection:
        """The connection every test of this database uses (autocommit: each test opens and rolls
        back a transaction of its own)."""
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self.target, autocommit=True)
        return self._conn

    @cached_property
    def prepared(self) -> Prepared:
        return Prepared.read(self.connection(), self.project, self.where)

    def read(self) -> None:
        """Read the database now rather than on the first test's transaction: its schema, and that
        its tables belong to the project's owner role (with the role prefix in force)."""
        _ = self.prepared

    @contextmanager
    def transaction(self, load_fixtures: bool = True) -> Iterator[RlsctlTransaction]:
        """A transaction that is rolled back at the end, with the fixture rows loaded if asked."""
        prepared = self.prepared  # read outside the test's transaction, under the session's settings
        conn = prepared.conn
        with conn.transaction(force_rollback=True):
            queries.run(conn, "test_settings", schema=self.project.schema_name)
            tx = RlsctlTransaction(prepared)
            if load_fixtures and prepared.resolved is not None:
                tx.load_fixtures()
            yield tx

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def load(project_dir: str | None, role_prefix: str | None = None) -> Project:
    """The project in `project_dir` (else RLSCTL_PROJECT, else the working directory: never the bundled example)."""
    return load_project(resolve_project_dir(project_dir), role_prefix=role_prefix)


@contextmanager
def existing_database(dsn: str, project: Project) -> Iterator[RlsctlDatabase]:
    """A database someone else migrated and applied (with `project`'s role prefix): used, never
    changed beyond each test's rolled-back transaction, never dropped. It is read at once, so that
    one applied with another role prefix fails here, before any test (prepared.py, ownership.py)."""
    database = RlsctlDatabase(db.resolve_dsn(dsn), project)
    try:
        database.read()
        yield database
    finally:
        database.close()


@contextmanager
def temporary_database(project_dir: str | None, server_dsn: str | None) -> Iterator[RlsctlDatabase]:
    """A fresh database on the server (`server_dsn`, else DATABASE_URL, else the libpq environment),
    migrated and applied by rlsctl with a role prefix of its own; dropped with its roles afterwards."""
    suffix = secrets.token_hex(4)
    name = f"rlsctl_pytest_{suffix}"
    prefix = f"rlsctl_pt_{suffix}_"
    project = load(project_dir, role_prefix=prefix)
    server = db.resolve_dsn(server_dsn)
    target = db.Target(_database_dsn(server.dsn, name, project), f"{server.where} ({name})")
    # An unreachable server fails here, with nothing made; from the CREATE on, whatever fails
    # (a migration, a test, an interrupt), the database and its roles are dropped.
    with db.session(server) as admin:
        admin.execute(render_template("ops/create_database.sql.j2", name=name).encode())
    try:
        with db.session(target) as conn:
            migrating.migrate(conn, project, target)
            applying.apply(conn, project, target.where)
        database = RlsctlDatabase(target, project)
        try:
            yield database
        finally:
            database.close()
    finally:
        _drop(server, name, prefix)


def _drop(server: db.Target, name: str, prefix: str) -> None:
    with db.session(server) as admin:
        admin.execute(render_template("ops/drop_database.sql.j2", name=name).encode())
        for row in statements.run(admin, "roles_with_prefix", prefix=prefix):
            admin.execute(render_template("ops/drop_role.sql.j2", name=row["name"]).encode())


def _database_dsn(server_dsn: str, name: str, project: Project) -> str:
    """The throw-away database's DSN. It carries a random key-encryption key in its libpq options
    (docs/encryption.md: never in SQL), after any options already given, so that encrypted columns
    work in a database nobody will read again; a project that reads its key from a file on the
    server keeps that."""
    params = conninfo.conninfo_to_dict(server_dsn)
    options = str(params.get("options") or os.environ.get("PGOPTIONS") or "")
    encryption = project.settings.encryption
    if encryption.master_key_file is None:
        options = f"{options} -c {encryption.master_key_setting}={secrets.token_hex(32)}".strip()
    return conninfo.make_conninfo(server_dsn, dbname=name, options=options or None)
