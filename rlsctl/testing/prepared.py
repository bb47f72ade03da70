"""What every test on one database reuses: the live schema, the declared state, the fixture rows
resolved against that schema, and the statements rlsctl's tester renders (memoised per database,
so a suite renders each statement once, whatever the number of tests)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from rlsctl.catalog import queries as catalog
from rlsctl.declare.compile import declare
from rlsctl.declare.state import DeclaredState
from rlsctl.errors import UsageError
from rlsctl.pg import statements
from rlsctl.policy.project import Project
from rlsctl.schema.tables import Schema, Table
from rlsctl.tester.fixtures import Resolved, resolve
from rlsctl.tester.run import Runner, refuse_false_greens
from rlsctl.testing import ownership


@dataclass
class Prepared:
    conn: psycopg.Connection
    project: Project
    schema: Schema
    state: DeclaredState
    runner: Runner
    resolved: Resolved | None  # None: the project declares no fixtures
    where: str
    _checked_roles: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, conn: psycopg.Connection, project: Project, where: str) -> Prepared:
        # Read under the session's search_path (pg_catalog only), so that the types the catalog
        # names carry their schema and the rendered casts mean the same under a test's path.
        schema = catalog.read_schema(conn, project.schema_name)
        state = declare(project, schema)
        if not state.tables:
            raise UsageError(f"{where}: no declared table exists: run `rlsctl migrate` and `rlsctl apply` first")
        # Before any role is impersonated: roles of another prefix may be another deployment's.
        ownership.check(conn, project, state, where)
        resolved = resolve(project.fixtures, schema) if project.fixtures is not None else None
        return cls(conn, project, schema, state, Runner(conn, project, schema, state), resolved, where)

    @property
    def managed(self) -> list[str]:
        return [table.name for table in self.state.tables]

    def table(self, name: str) -> Table:
        found = self.schema.get(name)
        if found is None:
            raise UsageError(f"{self.where}: no table {name!r} in schema {self.project.schema_name!r}")
        return found

    def key(self, value: Any) -> Any:
        """A fixture row's name stands for its key; any other value is a key already."""
        if self.resolved is not None and isinstance(value, str) and value in self.resolved.keys:
            return self.resolved.keys[value]
        return value

    def values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Column values as fixtures.yaml writes them: "@name" is fixture row `name`'s key, "@@x" is "@x"."""
        return {column: self._value(value) for column, value in values.items()}

    def _value(self, value: Any) -> Any:
        if not isinstance(value, str) or not value.startswith("@"):
            return value
        if value.startswith("@@"):
            return value[1:]
        name = value[1:]
        if self.resolved is None or name not in self.resolved.keys:
            raise UsageError(f"{value}: no fixture row is called {name!r}")
        return self.resolved.keys[name]

    def check_role(self, role: str) -> None:
        """Refuse, once per role, to impersonate a role for which RLS proves nothing (a superuser,
        BYPASSRLS, the owner of a table whose RLS is not forced): every test would pass."""
        if role in self._checked_roles:
            return
        with self.as_connecting_role():
            refuse_false_greens(self.conn, self.project, self.state, [role])
        self._checked_roles.add(role)

    @contextmanager
    def as_connecting_role(self) -> Iterator[psycopg.Connection]:
        """A savepoint, always rolled back, in which statements run as the connecting role (whatever
        principal the test is impersonating): to check that a row exists at all, or to pick a user."""
        with self.conn.transaction(force_rollback=True):
            statements.run(self.conn, "set_role", role="none")  # 'none': the session's own role
            yield self.conn

    @contextmanager
    def as_owner_role(self) -> Iterator[psycopg.Connection]:
        """A savepoint, always rolled back, in which statements run as the owner role with FORCE ROW
        LEVEL SECURITY lifted on the managed tables, so that no policy hides a row from them."""
        with self.conn.transaction(force_rollback=True):
            statements.run(self.conn, "set_role", role=self.state.owner)
            self.force(False)
            yield self.conn

    def force(self, on: bool) -> None:
        """FORCE ROW LEVEL SECURITY on the managed tables, or lift it (as their owner, in a test's
        transaction: the ALTER TABLEs hold their locks until it ends)."""
        self.conn.execute(self.runner.sql("tester_force", tables=self.managed, force=on).encode())
