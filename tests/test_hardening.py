"""Findings of the security review, each pinned by a test that fails without its fix."""

from __future__ import annotations

import psycopg
import pytest

from rlsctl.catalog import queries as catalog


def seed(conn) -> None:
    conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u1','1@x',now()), ('u2','2@x',now())""")
    conn.execute("""INSERT INTO "Team"(id, name, "updatedAt", "ownerId") VALUES ('t1','T1',now(),'u1')""")
    conn.execute("""INSERT INTO "TeamMember"(id, "teamId", "userId", role) VALUES ('m2','t1','u2','ADMIN')""")
    conn.execute("""INSERT INTO "Prompt"(id, "userId", "teamId", title, content, "updatedAt")
                    VALUES ('p1','u1','t1','t','c',now())""")
    conn.execute(
        """INSERT INTO "PromptVersion"(id, "promptId", content, version, "createdBy") VALUES ('v1','p1','c',1,'u1')"""
    )
    conn.execute("""INSERT INTO "PromptApproval"(id, "promptId", "versionId", "approverId", status, "updatedAt")
                    VALUES ('a1','p1','v1','u2','pending',now())""")


def as_app(conn, database, user: str) -> None:
    conn.execute(
        "SELECT set_config('role', %s, true), set_config('app.user_id', %s, true)", (database.role("app"), user)
    )


def test_update_and_delete_without_where_reach_only_visible_rows(secured_db):
    """PostgreSQL skips SELECT policies for an UPDATE without WHERE: the UPDATE policy must include them."""
    with secured_db.connect() as conn:
        seed(conn)
        conn.execute("""DELETE FROM "TeamMember" WHERE id = 'm2'""")  # u2 left team t1
    with secured_db.connect(autocommit=False) as conn:
        as_app(conn, secured_db, "u2")
        assert conn.execute('SELECT count(*) FROM "PromptApproval"').fetchone()[0] == 0
        assert conn.execute("""UPDATE "PromptApproval" SET status = 'approved'""").rowcount == 0
        assert conn.execute("""UPDATE "User" SET name = 'x'""").rowcount == 1  # only its own row
        assert conn.execute("""DELETE FROM "Prompt" """).rowcount == 0
        conn.rollback()


def test_helpers_are_executable_only_by_the_roles_that_call_them(secured_db):
    with secured_db.connect() as conn:
        functions = {f.name: f for f in catalog.functions(conn, "rlsctl") if not f.from_extension}
    assert functions["tenant_ids"].executors == (secured_db.role("app"),)
    assert set(functions["current_user_id"].executors) == {secured_db.role("app")}
    with secured_db.connect(autocommit=False) as conn:
        conn.execute("SELECT set_config('role', %s, true)", (secured_db.role("analyst"),))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT rlsctl.tenant_ids('MEMBER')")
        conn.rollback()


def test_the_key_functions_are_closed_though_pgcrypto_is_not(secured_db):
    """pgcrypto's functions keep PostgreSQL's EXECUTE for PUBLIC (on a managed host they belong to
    the platform): they compute, they hold nothing. rlsctl's own key functions stay closed."""
    with secured_db.connect() as conn:
        pgcrypto = [f for f in catalog.functions(conn, "rlsctl") if f.from_extension]
        assert pgcrypto
        ours = {f.name: f for f in catalog.functions(conn, "rlsctl") if not f.from_extension}
        assert all("PUBLIC" not in f.executors for f in ours.values())
    with secured_db.connect(autocommit=False) as conn:
        as_app(conn, secured_db, "u1")
        assert len(conn.execute("SELECT rlsctl.gen_random_bytes(16)").fetchone()[0]) == 16
        for call in ("rlsctl.master_key()", "rlsctl.active_key_id()"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(f"SELECT {call}")
        conn.rollback()


def test_the_helper_owner_cannot_create_in_the_helper_schema(secured_db):
    with secured_db.connect() as conn:
        can = conn.execute("SELECT has_schema_privilege(%s, 'rlsctl', 'CREATE')", (secured_db.role("definer"),))
        assert can.fetchone()[0] is False


def test_the_app_cannot_backdate_audit_rows(secured_db):
    with secured_db.connect() as conn:
        seed(conn)
    with secured_db.connect(autocommit=False) as conn:
        as_app(conn, secured_db, "u1")
        conn.execute("""INSERT INTO "AuditLog"(id, "userId", action, "resourceType", "resourceId")
                        VALUES ('l1', 'u1', 'x', 'User', 'u1')""")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("""INSERT INTO "AuditLog"(id, "userId", action, "resourceType", "resourceId", "createdAt")
                            VALUES ('l2', 'u1', 'x', 'User', 'u1', '2000-01-01')""")
        conn.rollback()
