"""rlsctl's pytest plugin (docs/pytest-plugin.md), registered by the `pytest11` entry point.

pytest loads this module into every session wherever rlsctl is installed, whether a suite uses it
or not. So it imports only the standard library, pytest and rlsctl.errors (standard library only);
the database code (psycopg, jinja2, pglast, the whole of rlsctl) is imported inside the `rlsctl_db`
fixture, the first time a test asks for it. tests/test_pytest_plugin.py holds it to that.

Fixtures (all named rlsctl_*, so that they never shadow a suite's own):

- `rlsctl_db`: a migrated and applied database (session-scoped unless ini rlsctl_scope says
  package or module): a throw-away one, or the one given with --rlsctl-database;
- `rlsctl_tx`: one test's transaction on it, rolled back at the end, with the project's fixture
  rows loaded (ini rlsctl_fixtures = false to start empty).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

from rlsctl.errors import RlsctlError

if TYPE_CHECKING:  # names for the annotations only: importing them would load psycopg
    from rlsctl.testing.database import RlsctlDatabase
    from rlsctl.testing.session import RlsctlTransaction

SCOPES = ("session", "package", "module")
T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    project_dir: str | None  # None: RLSCTL_PROJECT, else the working directory (it must have policies/)
    server_dsn: str | None  # None: DATABASE_URL, else the libpq environment
    database_dsn: str | None  # a prepared database to use instead of a throw-away one
    role_prefix: str | None  # the prepared database's role prefix (None: the project's)
    load_fixtures: bool


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rlsctl", "rlsctl: test row-level security policies (docs/pytest-plugin.md)")
    group.addoption(
        "--rlsctl-project", metavar="DIR",
        help="rlsctl project (policies/, migrations/) that rlsctl_db migrates and applies "
        "(ini rlsctl_project; default: RLSCTL_PROJECT, else the rootdir or working directory if it has "
        "policies/; no project is an error)",
    )  # fmt: skip
    group.addoption(
        "--rlsctl-dsn", metavar="DSN",
        help="server on which rlsctl_db creates its throw-away database "
        "(default: RLSCTL_TEST_DSN, ini rlsctl_dsn, DATABASE_URL, the libpq environment)",
    )  # fmt: skip
    group.addoption(
        "--rlsctl-database", metavar="DSN",
        help="use this database, already migrated and applied, instead of a throw-away one (ini rlsctl_database); "
        "nothing in it changes beyond each test's rolled-back transaction",
    )  # fmt: skip
    group.addoption(
        "--rlsctl-role-prefix", metavar="PREFIX",
        help="with --rlsctl-database: the role prefix it was applied with "
        "(ini rlsctl_role_prefix; default: the project's), checked: its owner role must own the tables",
    )  # fmt: skip
    parser.addini("rlsctl_project", "rlsctl project directory, relative to the ini file", default="")
    parser.addini("rlsctl_dsn", "server for rlsctl_db's throw-away database", default="")
    parser.addini("rlsctl_database", "an already migrated and applied database to use instead", default="")
    parser.addini("rlsctl_role_prefix", "role prefix of rlsctl_database", default="")
    parser.addini("rlsctl_scope", f"scope of rlsctl_db: {', '.join(SCOPES)} (default session)", default="session")
    parser.addini("rlsctl_fixtures", "load the project's fixture rows into each test", type="bool", default=True)


def settings(config: pytest.Config) -> Settings:
    """Command line first, then the environment (RLSCTL_TEST_DSN), then the ini file."""
    return Settings(
        project_dir=_project_dir(config),
        server_dsn=config.getoption("rlsctl_dsn") or os.environ.get("RLSCTL_TEST_DSN") or _ini(config, "rlsctl_dsn"),
        database_dsn=config.getoption("rlsctl_database") or _ini(config, "rlsctl_database"),
        role_prefix=config.getoption("rlsctl_role_prefix") or _ini(config, "rlsctl_role_prefix"),
        load_fixtures=bool(config.getini("rlsctl_fixtures")),
    )


def _ini(config: pytest.Config, name: str) -> str | None:
    return str(config.getini(name) or "") or None


def _project_dir(config: pytest.Config) -> str | None:
    chosen = config.getoption("rlsctl_project")
    if chosen:
        return str(chosen)
    from_ini = _ini(config, "rlsctl_project")
    if from_ini:
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        return str(base / Path(from_ini).expanduser())
    if os.environ.get("RLSCTL_PROJECT"):
        return None  # rlsctl's own lookup reads it
    if (config.rootpath / "policies").is_dir():
        return str(config.rootpath)
    return None


def _scope(fixture_name: str, config: pytest.Config) -> str:
    scope = str(config.getini("rlsctl_scope") or "session")
    if scope not in SCOPES:
        raise pytest.UsageError(f"ini rlsctl_scope = {scope!r}: use one of {', '.join(SCOPES)}")
    return scope


def _opened(options: Settings) -> AbstractContextManager[RlsctlDatabase]:
    # Here, not at the top: importing the database code loads psycopg, jinja2 and the rest of rlsctl,
    # which a session that never asks for rlsctl_db must not pay for.
    from rlsctl.testing import database

    if options.database_dsn is not None:
        project = database.load(options.project_dir, options.role_prefix)
        return database.existing_database(options.database_dsn, project)
    return database.temporary_database(options.project_dir, options.server_dsn)


def _entered(stack: contextlib.ExitStack, manager: Callable[[], AbstractContextManager[T]], fixture: str) -> T:
    """Enter a context manager; an rlsctl error (no server, a broken project) fails the fixture with
    its one-line message rather than a traceback through the plugin."""
    try:
        return stack.enter_context(manager())
    except RlsctlError as exc:
        message = f"{fixture}: {exc}"
    pytest.fail(message, pytrace=False)  # outside the except: no "during handling" chain


@pytest.fixture(scope=_scope)
def rlsctl_db(pytestconfig: pytest.Config) -> Iterator[RlsctlDatabase]:
    """A migrated and applied database for the project (see the module docstring)."""
    with contextlib.ExitStack() as stack:
        found = _entered(stack, lambda: _opened(settings(pytestconfig)), "rlsctl_db")
        yield found


@pytest.fixture
def rlsctl_tx(rlsctl_db: RlsctlDatabase, pytestconfig: pytest.Config) -> Iterator[RlsctlTransaction]:
    """This test's transaction on rlsctl_db, rolled back when the test ends."""
    load_fixtures = settings(pytestconfig).load_fixtures
    with contextlib.ExitStack() as stack:
        tx = _entered(stack, lambda: rlsctl_db.transaction(load_fixtures=load_fixtures), "rlsctl_tx")
        yield tx
