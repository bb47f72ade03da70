"""A write check's lookup skipped where the check already proves its answer (docs/policy-format.md,
design rules): `all: [tenant_role: MEMBER, tenant_member: userId]` renders the member test as
`"userId" = (SELECT current_user_id()) OR EXISTS (membership) OR EXISTS (owner)`, since a user who
holds a rank in the row's tenant belongs to it.

These tests run PromptCraft's update of a prompt on a real server: the lookups never run when a user
writes their own prompt, still run (and still refuse) when the author is someone else, and the
shortcut opens nothing: not another team, not an author outside the team, not a session without a
user.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.conftest import migrate_and_apply

UPDATE = """UPDATE "Prompt" SET title = 'Renamed', "teamId" = %s WHERE id = %s"""


@pytest.fixture(scope="module")
def teams(make_module_db):
    """t1: u_a and u_b (MEMBERs), u_adm (ADMIN), owned by u_own (no membership row);
    t2: u_c (MEMBER), u_adm (ADMIN). Prompts: p_a by u_a, p_b by u_b, p_own by u_own, all in t1."""
    database = make_module_db()
    migrate_and_apply(database)
    with database.connect() as conn:
        conn.execute("SET session_replication_role = replica")  # fixture rows: no audit triggers
        conn.execute(
            """INSERT INTO "User"(id, email, "updatedAt") VALUES ('u_a', 'a@x', now()), ('u_b', 'b@x', now()),
                   ('u_c', 'c@x', now()), ('u_adm', 'adm@x', now()), ('u_own', 'own@x', now())"""
        )
        conn.execute(
            """INSERT INTO "Team"(id, name, "ownerId", "updatedAt")
               VALUES ('t1', 'one', 'u_own', now()), ('t2', 'two', 'u_c', now())"""
        )
        conn.execute(
            """INSERT INTO "TeamMember"(id, "teamId", "userId", role) VALUES
                   ('m1', 't1', 'u_a', 'MEMBER'), ('m2', 't1', 'u_b', 'MEMBER'), ('m3', 't1', 'u_adm', 'ADMIN'),
                   ('m4', 't2', 'u_c', 'MEMBER'), ('m5', 't2', 'u_adm', 'ADMIN')"""
        )
        conn.execute(
            """INSERT INTO "Prompt"(id, "userId", title, content, "updatedAt", "teamId") VALUES
                   ('p_a', 'u_a', 'a', 'text', now(), 't1'), ('p_b', 'u_b', 'b', 'text', now(), 't1'),
                   ('p_own', 'u_own', 'own', 'text', now(), 't1')"""
        )
        conn.execute("RESET session_replication_role")
    return database


def as_user(conn: psycopg.Connection, database, user: str | None) -> None:
    conn.execute("SELECT set_config('role', %s, true)", (database.role("app"),))
    if user is not None:
        conn.execute("SELECT set_config('app.user_id', %s, true)", (user,))


def update(database, user: str | None, prompt: str, team: str) -> int | str:
    """The row count of the update as `user`, or the server's error (rolled back either way)."""
    with database.connect(autocommit=False) as conn:
        as_user(conn, database, user)
        try:
            return conn.execute(UPDATE, (team, prompt)).rowcount
        except psycopg.errors.InsufficientPrivilege as error:
            return str(error)
        finally:
            conn.rollback()


def lookups(database, user: str, prompt: str, team: str) -> dict[str, int]:
    """How often each subquery of the update's plan that reads the membership tables ran."""
    with database.connect(autocommit=False) as conn:
        as_user(conn, database, user)
        cursor = psycopg.ClientCursor(conn)
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + UPDATE, (team, prompt))
        [[plan]] = cursor.fetchall()
        conn.rollback()
    found: dict[str, int] = {}
    for node in _nodes(plan[0]["Plan"]):
        name = node.get("Subplan Name", "")
        if name.startswith("SubPlan"):
            tables = {n.get("Relation Name") for n in _nodes(node)} & {"TeamMember", "Team"}
            for table in tables:
                found[table] = found.get(table, 0) + int(node.get("Actual Loops", 0))
    return found


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node] + [found for child in node.get("Plans", ()) for found in _nodes(child)]


def test_a_user_updating_their_own_prompt_runs_no_membership_lookup(teams):
    assert update(teams, "u_a", "p_a", "t1") == 1
    ran = lookups(teams, "u_a", "p_a", "t1")
    assert set(ran) == {"TeamMember", "Team"}, ran  # the subqueries are in the plan...
    assert ran == {"TeamMember": 0, "Team": 0}  # ...and never run


def test_the_owner_without_a_membership_row_updates_their_own_prompt_without_a_lookup(teams):
    assert update(teams, "u_own", "p_own", "t1") == 1
    assert lookups(teams, "u_own", "p_own", "t1") == {"TeamMember": 0, "Team": 0}


def test_an_admin_updating_a_teammates_prompt_still_asks_the_membership(teams):
    assert update(teams, "u_adm", "p_b", "t1") == 1
    assert lookups(teams, "u_adm", "p_b", "t1")["TeamMember"] == 1


def test_the_shortcut_opens_no_team_the_user_is_not_in(teams):
    """u_a is the author, but not a member of t2: the tenant_role beside the shortcut refuses."""
    assert "row-level security" in str(update(teams, "u_a", "p_a", "t2"))


def test_the_shortcut_opens_no_team_the_author_is_not_in(teams):
    """u_adm administers both teams; p_b's author is in t1 only: moving it to t2 is refused."""
    assert "row-level security" in str(update(teams, "u_adm", "p_b", "t2"))


def test_a_session_without_a_user_updates_nothing(teams):
    assert update(teams, None, "p_a", "t1") == 0  # the using hides the row: no identity, no match
