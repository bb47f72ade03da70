"""One test's transaction, and the principals a test impersonates inside it.

The transaction is always rolled back when the test ends, so tests never see each other's
writes. Each `as_...` block is a savepoint in which the connection becomes the principal the way
the application does (`set_config('role', ..., true)`, the identity setting, or an API key
through the helper schema's authenticate_api_key), rolled back when the block ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from rlsctl.errors import UsageError
from rlsctl.pg import statements
from rlsctl.policy.model import Tenancy
from rlsctl.testing import queries
from rlsctl.testing.actor import Actor
from rlsctl.testing.prepared import Prepared


class RlsctlTransaction:
    """What the `rlsctl_tx` fixture gives a test."""

    def __init__(self, prepared: Prepared) -> None:
        self._prepared = prepared
        self._loaded = False

    @property
    def connection(self) -> psycopg.Connection:
        """The test's connection, as the connecting role, inside the test's transaction."""
        return self._prepared.conn

    @property
    def schema(self) -> str:
        return self._prepared.project.schema_name

    def role(self, key: str) -> str:
        """The PostgreSQL role of a role key of the project (the session's role prefix included)."""
        if key not in self._prepared.project.roles:
            known = ", ".join(sorted(self._prepared.project.roles))
            raise UsageError(f"the project declares no role {key!r} (it has {known})")
        return self._prepared.project.role_name(key)

    def key(self, name: str) -> Any:
        """The primary key of the fixture row `name` (policies/fixtures.yaml)."""
        resolved = self._prepared.resolved
        if resolved is None or name not in resolved.keys:
            raise UsageError(f"no fixture row is called {name!r}")
        return resolved.keys[name]

    # -- data -------------------------------------------------------------------------------------

    def load_fixtures(self) -> None:
        """Insert the project's fixture rows (fixtures.rows) into this test's transaction, as the
        owner role, as `rlsctl test` does. Done once per test; the `rlsctl_tx` fixture calls it
        unless the ini option rlsctl_fixtures is false."""
        if self._loaded:
            return
        prepared = self._prepared
        if prepared.resolved is None:
            raise UsageError("the project declares no fixtures section: there are no fixture rows to load")
        with self.as_owner():
            for row in prepared.resolved.rows:
                sql = prepared.runner.insert_sql(prepared.schema.table(row.table), row.values)
                try:
                    prepared.conn.execute(sql.encode())
                except psycopg.Error as exc:
                    raise UsageError(f"fixture row {row.table}.{row.name} cannot be loaded: {_first(exc)}") from None
        self._loaded = True

    # -- principals -------------------------------------------------------------------------------

    @contextmanager
    def as_owner(self) -> Iterator[Actor]:
        """The owner role, with FORCE ROW LEVEL SECURITY lifted on the managed tables, to write a
        test's own rows. Unlike the other blocks, what it writes stays until the test ends; the
        previous role and FORCE come back when the block ends (all of it on an error)."""
        prepared = self._prepared
        owner = prepared.state.owner
        conn = prepared.conn
        # Written as the owner, never as the connecting role (often a superuser): code on the
        # tables (triggers) runs with the writer's rights, as `rlsctl test` loads its fixtures.
        with conn.transaction():
            previous = queries.run(conn, "role_setting")[0]["role"]
            statements.run(conn, "set_role", role=owner)
            prepared.force(False)
            yield Actor(prepared, f"the owner role {owner}", owner)
            prepared.force(True)
            statements.run(conn, "set_role", role=previous)

    @contextmanager
    def as_user(self, user_id: Any) -> Iterator[Actor]:
        """The application role with the identity setting holding `user_id` (or a fixture row's name)."""
        user = str(self._prepared.key(user_id))
        app = self._app()
        with self._impersonating(app, user):
            yield Actor(self._prepared, f"user {user!r} (role {app})", app)

    @contextmanager
    def as_team_role(self, team: Any, rank: str) -> Iterator[Actor]:
        """`as_user` for a user who holds exactly `rank` in the tenant `team` (a key or a fixture
        row's name) in this test's data: see `team_member`."""
        user = self.team_member(team, rank)
        tenants = self._tenancy().tenants.table
        app = self._app()
        with self._impersonating(app, user):
            principal = f"{rank} of {tenants} {str(self._prepared.key(team))!r} (user {user!r}, role {app})"
            yield Actor(self._prepared, principal, app)

    @contextmanager
    def as_api_key(self, raw_key: str) -> Iterator[Actor]:
        """The application role, authenticated with a raw API key through authenticate_api_key. A
        wrong or expired key is not an error: the session then has no identity, and the actor's
        `authenticated` is False."""
        prepared = self._prepared
        if prepared.state.api_keys is None:
            raise UsageError("the project declares no api_keys table that exists here: there is no key to present")
        app = self._app()
        sql = prepared.runner.sql("tester_api_key", helper_schema=prepared.state.helper_schema).encode()
        with self._impersonating(app, None) as conn:
            row = conn.execute(sql, {"raw_key": raw_key}).fetchone()
            authenticated = bool(row and row[0])
            shown = raw_key if len(raw_key) <= 16 else raw_key[:12] + "..."  # a real key stays out of logs
            note = "" if authenticated else ", not authenticated: wrong or expired key"
            yield Actor(prepared, f"API key {shown!r} (role {app}{note})", app, authenticated)

    @contextmanager
    def as_role(self, role_key: str, user_id: Any = None) -> Iterator[Actor]:
        """Another declared role (analyst, auditor, retention...), with an identity if given."""
        role = self.role(role_key)
        user = None if user_id is None else str(self._prepared.key(user_id))
        with self._impersonating(role, user):
            who = f"role {role_key} ({role})" if user is None else f"user {user!r} (role {role})"
            yield Actor(self._prepared, who, role)

    def team_member(self, team: Any, rank: str) -> str:
        """The user `as_team_role(team, rank)` acts as: of the users holding exactly `rank` in
        `team` (a membership row with that rank; for the top rank also the user the tenant row
        names as its owner, who outranks any membership row), the first by id. Picked from this
        test's data, rows the test wrote included; rlsctl never invents a member."""
        tenancy = self._tenancy()
        membership = tenancy.membership
        if membership is None or membership.rank is None:
            raise UsageError("the project's tenancy declares no membership rank: use as_user(user_id)")
        if rank not in tenancy.ranks:
            raise UsageError(f"rank {rank!r} is not one of the project's ranks {list(tenancy.ranks)}")
        sql = queries.render(
            "team_member", schema=self.schema, membership=membership.table, user=membership.user,
            tenant=membership.tenant, rank=membership.rank, tenants=tenancy.tenants.table,
            key=tenancy.tenants.key, owner=tenancy.tenants.owner,
        )  # fmt: skip
        tenant = str(self._prepared.key(team))
        with self._prepared.as_connecting_role() as conn:
            row = conn.execute(sql, {"tenant": tenant, "rank": rank, "top": rank == tenancy.ranks[-1]}).fetchone()
        if row is None:
            raise UsageError(
                f"nobody holds exactly {rank} in {tenancy.tenants.table} {tenant!r} in this test's data: "
                "add a member (as_owner(), or the project's fixtures) or use as_user(user_id)"
            )
        return str(row[0])

    # -- helpers ----------------------------------------------------------------------------------

    @contextmanager
    def _impersonating(self, role: str, user: str | None) -> Iterator[psycopg.Connection]:
        prepared = self._prepared
        prepared.check_role(role)
        conn = prepared.conn
        with conn.transaction(force_rollback=True):
            if user is None:
                statements.run(conn, "impersonate_role", role=role)
            else:
                setting = prepared.state.identity_setting
                statements.run(conn, "impersonate", role=role, setting=setting, user_id=user)
            yield conn

    def _app(self) -> str:
        return self._prepared.project.role_name(self._prepared.project.role_of_kind("app"))

    def _tenancy(self) -> Tenancy:
        tenancy = self._prepared.project.tenancy
        if tenancy is None:
            raise UsageError("the project declares no tenancy section: use as_user(user_id)")
        return tenancy


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
