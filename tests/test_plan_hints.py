"""Plan hints (docs/performance.md#plan-hints): AuditLog declares `plan_with_tenants`, so its
SELECT policy shows the planner the session's tenants while evaluating exactly what it did before.

On a skewed team (one team holds most audit rows) the team's audit page needs a plan that depends
on the reader's rank: an ADMIN should walk the team's (teamId, createdAt) index and stop after 50
rows, a MEMBER (who sees only their own rows) should start from the userId index. Without the hint
both got one plan, chosen for a guessed ten tenants. The hint's second branch calls the helpers
outside a subquery; these tests check that it changes plans, never rows, and never runs per row.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import migrate_and_apply

BIG, SMALL = "t_big", "t_small"
ADMIN, MEMBER, OTHER_ADMIN = "u_admin", "u_member", "u_other_admin"
AUDIT_KEY = "pc_hint_audit_key"
PAGE = """SELECT id FROM "AuditLog" WHERE "teamId" = %s ORDER BY "createdAt" DESC, id LIMIT 50"""


@pytest.fixture(scope="module")
def skewed(make_module_db):
    """One team of 200 members owns 40,000 audit rows; 200 small teams hold 100 each."""
    database = make_module_db()
    migrate_and_apply(database)
    with database.connect() as conn:
        conn.execute("SET session_replication_role = replica")  # bulk rows: no audit triggers
        conn.execute(
            """INSERT INTO "User"(id, email, "updatedAt")
               SELECT 'u' || i, 'u' || i || '@x', now() FROM generate_series(1, 400) AS i
               UNION ALL VALUES ('u_admin', 'admin@x', now()), ('u_member', 'member@x', now()),
                                ('u_other_admin', 'other@x', now())"""
        )
        conn.execute(
            """INSERT INTO "Team"(id, name, "ownerId", "updatedAt")
               SELECT 't' || i, 'team ' || i, 'u' || (200 + i), now() FROM generate_series(1, 200) AS i
               UNION ALL VALUES ('t_big', 'big', 'u1', now()), ('t_small', 'small', 'u_other_admin', now())"""
        )
        conn.execute(
            """INSERT INTO "TeamMember"(id, "teamId", "userId", role)
               SELECT id, team, member, rank::"TeamRole" FROM (
               SELECT 'mb' || i, 't_big', 'u' || i, 'MEMBER'::text FROM generate_series(2, 200) AS i
               UNION ALL VALUES ('m_admin', 't_big', 'u_admin', 'ADMIN'), ('m_member', 't_big', 'u_member', 'MEMBER'),
                                ('m_small', 't_small', 'u_member', 'MEMBER')) AS m(id, team, member, rank)"""
        )
        conn.execute(
            """INSERT INTO "AuditLog"(id, "userId", "teamId", action, "resourceType", "resourceId", "createdAt")
               SELECT 'a' || g,
                      CASE WHEN g % 400 = 0 THEN 'u_member' ELSE 'u' || (g % 200 + 1) END,
                      CASE WHEN g <= 40000 THEN 't_big' ELSE 't' || (g % 200 + 1) END,
                      'update', 'Prompt', 'p' || g, timestamp '2026-01-01' + g * interval '1 minute'
               FROM generate_series(1, 60000) AS g"""
        )
        conn.execute(
            """INSERT INTO "ApiKey"(id, "teamId", name, "hashedKey", scopes)
               VALUES ('k_audit', 't_big', 'audit', encode(sha256(convert_to(%s, 'UTF8')), 'hex'), '{audit:read}')""",
            (AUDIT_KEY,),
        )
        conn.execute("RESET session_replication_role")
        conn.execute('ANALYZE "AuditLog", "TeamMember", "Team", "ApiKey"')
    return database


def enter(conn: psycopg.Connection, database, user: str | None = None, key: str | None = None) -> None:
    conn.execute("SELECT set_config('role', %s, true)", (database.role("app"),))
    if user is not None:
        conn.execute("SELECT set_config('app.user_id', %s, true)", (user,))
    if key is not None:
        assert conn.execute("SELECT rlsctl.authenticate_api_key(%s)", (key,)).fetchone() == (True,)


def plan(database, query: str, params: tuple, **principal: str) -> str:
    with database.connect(autocommit=False) as conn:
        enter(conn, database, **principal)
        cursor = psycopg.ClientCursor(conn)
        cursor.execute("EXPLAIN (COSTS off) " + query, params)
        text = "\n".join(row[0] for row in cursor.fetchall())
        conn.rollback()
    return text


def rows(database, query: str, params: tuple = (), **principal: str) -> list[tuple]:
    with database.connect(autocommit=False) as conn:
        enter(conn, database, **principal)
        found = conn.execute(query, params).fetchall()
        conn.rollback()
    return found


def superuser_rows(database, query: str, params: tuple = ()) -> list[tuple]:
    with database.connect() as conn:
        return conn.execute(query, params).fetchall()


def test_the_big_teams_admin_walks_the_teams_index_and_stops(skewed):
    text = plan(skewed, PAGE, (BIG,), user=ADMIN)
    assert 'Index Scan Backward using "AuditLog_teamId_createdAt_idx"' in text, text
    assert "Bitmap" not in text, text


def test_an_audit_key_of_the_big_team_gets_the_admins_plan(skewed):
    text = plan(skewed, PAGE, (BIG,), key=AUDIT_KEY)
    assert 'Index Scan Backward using "AuditLog_teamId_createdAt_idx"' in text, text


def test_a_member_of_the_big_team_starts_from_their_own_rows(skewed):
    text = plan(skewed, PAGE, (BIG,), user=MEMBER)
    assert 'Bitmap Index Scan on "AuditLog_userId_idx"' in text, text
    assert "Index Scan Backward" not in text, text


def test_the_hint_changes_plans_never_rows(skewed):
    """What each principal reads equals the hand-written filter of the access matrix (own rows, the
    teams where it is ADMIN or OWNER, its key's team with audit:read): from the allowed side and the
    denied side (a member of the team, another team's admin, no identity)."""
    page = PAGE.replace("LIMIT 50", "")
    own_or_team = """SELECT id FROM "AuditLog" WHERE "teamId" = %s AND ("userId" = %s OR %s)
                     ORDER BY "createdAt" DESC, id"""
    assert rows(skewed, page, (BIG,), user=ADMIN) == superuser_rows(skewed, own_or_team, (BIG, ADMIN, True))
    assert len(rows(skewed, page, (BIG,), user=ADMIN)) == 40000
    member = rows(skewed, page, (BIG,), user=MEMBER)
    assert member == superuser_rows(skewed, own_or_team, (BIG, MEMBER, False))
    assert 0 < len(member) < 200  # their own rows only: not the team's
    assert rows(skewed, page, (BIG,), key=AUDIT_KEY) == superuser_rows(skewed, own_or_team, (BIG, "", True))
    assert rows(skewed, page, (BIG,), user=OTHER_ADMIN) == []  # an admin of another team
    assert rows(skewed, page, (BIG,)) == []  # no identity
    assert rows(skewed, page, (BIG,), user="") == []  # an empty one


def test_the_planned_branch_never_runs_per_row(skewed):
    """A statement reading all 60,000 audit rows (a sequential scan, the policy in its filter) calls
    the tenants helper a handful of times: when planning, as the InitPlans; not once per row."""
    with skewed.connect(autocommit=False) as conn:
        conn.execute("SET LOCAL track_functions = 'pl'")
        enter(conn, skewed, user=ADMIN)
        seen = conn.execute("""SELECT count(*) FROM "AuditLog" WHERE "resourceId" LIKE 'p%%'""").fetchone()[0]
        assert seen == 40000
        conn.execute("RESET role")
        calls = dict(
            conn.execute(
                """SELECT funcname, calls FROM pg_stat_xact_user_functions
                   WHERE schemaname = 'rlsctl'
                     AND funcname IN ('tenant_ids', 'tenant_ids_or_key', 'current_user_id', 'api_key_tenant')"""
            ).fetchall()
        )
        conn.rollback()
    # the policy's tenants and API-key tenant come from one helper (docs/performance.md)
    assert 1 <= calls["tenant_ids_or_key"] <= 4, calls
    assert calls.get("tenant_ids", 0) + calls.get("api_key_tenant", 0) <= 4, calls
    assert calls["current_user_id"] <= 20, calls  # each helper call asks it, and its own policies do
