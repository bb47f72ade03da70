"""What docs/identity.md tells applications about pooled connections and snapshots, shown on a real
server: a WITH HOLD cursor keeps one user's rows for the next client until the connection is reset,
and a member removed mid-transaction keeps its access only in REPEATABLE READ."""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import TestDatabase, migrate_and_apply


@pytest.fixture(scope="module")
def team_db(make_module_db) -> TestDatabase:
    database = make_module_db()
    migrate_and_apply(database)
    with database.connect() as conn:
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u_owner', 'o@x', now()), ('u_m', 'm@x', now())""")
        conn.execute("""INSERT INTO "Team"(id, name, "ownerId", "updatedAt") VALUES ('t', 'T', 'u_owner', now())""")
        conn.execute("""INSERT INTO "TeamMember"(id, "teamId", "userId", role) VALUES ('m', 't', 'u_m', 'MEMBER')""")
        conn.execute("""INSERT INTO "Prompt"(id, title, content, "userId", "teamId", "updatedAt")
                        VALUES ('p', 'title', 'team secret', 'u_owner', 't', now())""")
    return database


def as_user(conn: psycopg.Connection, database: TestDatabase, user: str | None) -> None:
    conn.execute("SELECT set_config('role', %s, true), set_config('app.user_id', %s, true)",
                 (database.role("app"), user or ""))  # fmt: skip


def test_a_with_hold_cursor_outlives_the_identity_until_discard_all(team_db):
    with team_db.connect(autocommit=False) as conn:
        as_user(conn, team_db, "u_owner")
        conn.execute('DECLARE held CURSOR WITH HOLD FOR SELECT content FROM "Prompt"')
        conn.commit()
        # The next client of this pooled connection, with no identity at all:
        as_user(conn, team_db, None)
        assert conn.execute('SELECT content FROM "Prompt"').fetchall() == []
        assert conn.execute("FETCH ALL FROM held").fetchall() == [("team secret",)]  # the leak
        conn.rollback()
    with team_db.connect(autocommit=True) as conn:
        as_user(conn, team_db, "u_owner")
        conn.execute('DECLARE held CURSOR WITH HOLD FOR SELECT content FROM "Prompt"')
        conn.execute("DISCARD ALL")  # the pool's reset query
        with pytest.raises(psycopg.errors.InvalidCursorName):
            conn.execute("FETCH ALL FROM held")


@pytest.mark.parametrize("isolation, still_reads", [("READ COMMITTED", False), ("REPEATABLE READ", True)])
def test_a_removed_member_keeps_access_only_within_a_repeatable_read_transaction(team_db, isolation, still_reads):
    with team_db.connect(autocommit=False) as member, team_db.connect() as admin:
        member.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
        as_user(member, team_db, "u_m")
        assert member.execute('SELECT id FROM "Prompt"').fetchall() == [("p",)]
        with admin.transaction():
            admin.execute("""DELETE FROM "TeamMember" WHERE id = 'm'""")
        try:
            assert (member.execute('SELECT id FROM "Prompt"').fetchall() == [("p",)]) is still_reads
            member.rollback()
            as_user(member, team_db, "u_m")
            assert member.execute('SELECT id FROM "Prompt"').fetchall() == []  # the next transaction
            member.rollback()
        finally:
            admin.execute("""INSERT INTO "TeamMember"(id, "teamId", "userId", role) VALUES ('m', 't', 'u_m', 'MEMBER')""")
