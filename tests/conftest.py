"""Test fixtures: a real PostgreSQL, a fresh database per test, roles that never collide.

The server comes from RLSCTL_TEST_SERVER (default: the local server on
127.0.0.1:5432 as postgres). Every test database gets its own role prefix
(`t<run><n>_`), because roles are cluster-wide: parallel or repeated runs
never see each other's roles, and each test drops its roles when it ends.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql
from pytest_postgresql.janitor import DatabaseJanitor

from rlsctl.change import apply as applying
from rlsctl.migrate import run as migrating
from rlsctl.pg.db import Target
from rlsctl.policy.project import Project, load_project

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("RLSCTL_TEST_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
RUN_ID = secrets.token_hex(2)
# The key-encryption key of this run (docs/encryption.md): every connection the
# tests open, and every rlsctl or pg_dump they start, carries it in its libpq
# options, never in SQL text. Tests that search dumps and logs look for it.
TEST_MASTER_KEY = "kek-" + secrets.token_hex(24)
os.environ["PGOPTIONS"] = f"{os.environ.get('PGOPTIONS', '')} -c rlsctl.master_key={TEST_MASTER_KEY}".strip()
_numbers = itertools.count()


@dataclass
class TestDatabase:
    """One throw-away database and the role prefix that belongs to it."""

    __test__ = False  # not a test class, though its name starts with Test

    name: str
    dsn: str
    prefix: str

    @property
    def target(self) -> Target:
        return Target(self.dsn, f"test database {self.name}")

    def connect(self, autocommit: bool = True, **overrides: str) -> psycopg.Connection:
        params = conninfo.conninfo_to_dict(self.dsn)
        params.update(overrides)
        return psycopg.connect(conninfo.make_conninfo(**params), autocommit=autocommit)

    def project(self, root: Path = ROOT) -> Project:
        return load_project(root, role_prefix=self.prefix)

    def role(self, key: str) -> str:
        return self.prefix + key


def server_params() -> dict[str, str]:
    return {k: str(v) for k, v in conninfo.conninfo_to_dict(SERVER).items()}


def admin_connection() -> psycopg.Connection:
    return psycopg.connect(SERVER, autocommit=True)


def drop_roles(prefix: str) -> None:
    """Drop every role of a test prefix (their databases are gone by now)."""
    with admin_connection() as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) ORDER BY rolname", (prefix,)
            )
        ]
        for name in names:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def server() -> dict[str, str]:
    params = server_params()
    try:
        with admin_connection() as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:  # pragma: no cover - environment problem
        pytest.exit(f"no PostgreSQL at {SERVER}: {exc}", returncode=2)
    return params


class DatabaseFactory:
    """Creates fresh databases; `cleanup` drops them and their roles."""

    def __init__(self, server: dict[str, str]) -> None:
        self.server = server
        self.created: list[tuple[DatabaseJanitor, str]] = []

    def __call__(self, prefix: str | None = None) -> TestDatabase:
        number = next(_numbers)
        name = f"rlsctl_test_{RUN_ID}_{os.getpid()}_{number}"
        janitor = DatabaseJanitor(
            user=self.server.get("user", "postgres"),
            host=self.server.get("host", "127.0.0.1"),
            port=self.server.get("port", "5432"),
            dbname=name,
            password=self.server.get("password"),
        )
        janitor.init()
        role_prefix = prefix or f"t{RUN_ID}{os.getpid() % 10000}{number}_"
        self.created.append((janitor, role_prefix))
        return TestDatabase(name, conninfo.make_conninfo(SERVER, dbname=name), role_prefix)

    def cleanup(self) -> None:
        for janitor, _ in reversed(self.created):
            janitor.drop()
        for prefix in {prefix for _, prefix in self.created}:
            drop_roles(prefix)


@pytest.fixture
def make_db(server: dict[str, str]) -> Iterator[DatabaseFactory]:
    """Factory for fresh databases; each gets its own role prefix unless one is passed."""
    factory = DatabaseFactory(server)
    yield factory
    factory.cleanup()


@pytest.fixture(scope="module")
def make_module_db(server: dict[str, str]) -> Iterator[DatabaseFactory]:
    """The same, shared by the tests of one module (for expensive setups)."""
    factory = DatabaseFactory(server)
    yield factory
    factory.cleanup()


@pytest.fixture
def db(make_db) -> TestDatabase:
    return make_db()


def migrate_and_apply(database: TestDatabase, phase: int | None = None, project: Project | None = None) -> Project:
    """Run the project's migrations (up to `phase`) and apply its security layer."""
    project = project or database.project()
    with database.connect() as conn:
        migrating.migrate(conn, project, database.target, to=phase)
        applying.apply(conn, project, database.target.where)
    return project


def vacuum(database: TestDatabase) -> None:
    """For a module's database that is applied again and again (tampering cases, mutants): when
    autovacuum is off, as on the test machine's server, every apply leaves dead catalog rows that
    each later catalog read scans (tampering cases took 7 s each by the end of their module, 4 s
    vacuumed between them)."""
    with database.connect() as conn:
        conn.execute("VACUUM")


def as_operator(database: TestDatabase) -> TestDatabase:
    """The same database, reached as a non-superuser that owns it and has CREATEROLE
    (a managed service's admin: RDS, Cloud SQL, Supabase). Its name carries the prefix."""
    operator = database.role("operator")
    with database.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE NOSUPERUSER NOBYPASSRLS").format(sql.Identifier(operator))
        )
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(database.name), sql.Identifier(operator))
        )
    return TestDatabase(database.name, database.dsn + f" user={operator}", database.prefix)


@pytest.fixture
def secured_db(db: TestDatabase) -> TestDatabase:
    """A database at the last phase with the security layer applied."""
    migrate_and_apply(db)
    return db
