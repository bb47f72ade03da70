"""A transaction acts for one principal, and a key reads nothing outside its scopes
(docs/threat-model.md, Guarantees).

Attacks from the application's login on a database secured by `migrate && apply`:
an outsider who sets up a team of their own, then mixes their user identity
with a team A API key in one transaction; and key sessions calling the API-key
helpers directly with scopes the key was not given for. The fixture matrix
(test_access_matrix.py) checks every table and command for mixed sessions in
both orders; these tests follow the attacks end to end.
"""

from __future__ import annotations

import hashlib

import psycopg
import pytest
from psycopg import errors as pgerrors
from psycopg import sql

from tests.conftest import migrate_and_apply

WRITE_A, READ_A, AUDIT_A = "pc_attack_write_a", "pc_attack_read_a", "pc_attack_audit_a"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def attacked(make_module_db):
    """Team A (owner u_a, author u_author) with prompt pa1 and pa2; an outsider u_out who creates
    team C as the app and adds pa1's author to it, as any user may."""
    database = make_module_db()
    migrate_and_apply(database)
    with database.connect() as conn:
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES
                        ('u_a', 'a@x', now()), ('u_author', 'author@x', now()), ('u_out', 'out@x', now())""")
        conn.execute("""INSERT INTO "Team"(id, name, "ownerId", "updatedAt") VALUES ('team_a', 'A', 'u_a', now())""")
        conn.execute("""INSERT INTO "TeamMember"(id, "teamId", "userId", role) VALUES
                        ('m_author', 'team_a', 'u_author', 'MEMBER')""")
        conn.execute("""INSERT INTO "Prompt"(id, title, content, "userId", "teamId", "updatedAt") VALUES
                        ('pa1', 'one', 'secret one', 'u_author', 'team_a', now()),
                        ('pa2', 'two', 'secret two', 'u_a', 'team_a', now())""")
        conn.execute("""INSERT INTO "PromptVersion"(id, "promptId", version, content, "createdBy") VALUES
                        ('va1', 'pa1', 1, 'v1', 'u_author')""")
        conn.execute(
            """INSERT INTO "ApiKey"(id, "teamId", name, "hashedKey", scopes) VALUES
               ('kw', 'team_a', 'write', %s, '{prompts:write}'),
               ('kr', 'team_a', 'read', %s, '{prompts:read}'),
               ('ka', 'team_a', 'audit', %s, '{audit:read}')""",
            (sha256(WRITE_A), sha256(READ_A), sha256(AUDIT_A)),
        )
    with database.connect(autocommit=False) as conn:
        as_user(conn, database, "u_out")
        conn.execute("""INSERT INTO "Team"(id, name, "ownerId", "updatedAt") VALUES ('team_c', 'C', 'u_out', now())""")
        conn.execute("""INSERT INTO "TeamMember"(id, "teamId", "userId", role) VALUES
                        ('m_c_author', 'team_c', 'u_author', 'MEMBER')""")
        conn.commit()
    return database


def as_app(conn: psycopg.Connection, database) -> None:
    conn.execute("SELECT set_config('role', %s, true)", (database.role("app"),))


def as_user(conn: psycopg.Connection, database, user: str) -> None:
    as_app(conn, database)
    conn.execute("SELECT set_config('app.user_id', %s, true)", (user,))


def authenticate(conn: psycopg.Connection, raw: str) -> bool:
    return conn.execute("SELECT rlsctl.authenticate_api_key(%s)", (raw,)).fetchone()[0]


def key_then_user(conn: psycopg.Connection, database, raw: str, user: str) -> None:
    as_app(conn, database)
    assert authenticate(conn, raw) is True
    conn.execute("SELECT set_config('app.user_id', %s, true)", (user,))


def prompt_teams(database) -> dict[str, str | None]:
    with database.connect() as conn:
        return dict(conn.execute('SELECT id, "teamId" FROM "Prompt" ORDER BY id').fetchall())


def test_a_user_session_cannot_also_authenticate_a_key(attacked):
    with attacked.connect(autocommit=False) as conn:
        as_user(conn, attacked, "u_out")
        with pytest.raises(pgerrors.InsufficientPrivilege, match="already acts for a user"):
            authenticate(conn, WRITE_A)


def test_clearing_the_key_sessions_hint_does_not_bring_the_user_back(attacked):
    """authenticate_api_key leaves a transaction-local hint (rlsctl.api_key_xid) that spares
    current_user_id the keys role's function; the app can clear it, before a statement or in the
    middle of one, and the session table still says "key session": no user, no union."""
    with attacked.connect(autocommit=False) as conn:
        key_then_user(conn, attacked, WRITE_A, "u_out")
        conn.execute("SELECT set_config('rlsctl.api_key_xid', '', true)")
        assert conn.execute("SELECT rlsctl.current_user_id()").fetchone()[0] is None
        assert conn.execute("SELECT rlsctl.tenant_ids('MEMBER')").fetchone()[0] == []
        assert [r[0] for r in conn.execute('SELECT id FROM "Team" ORDER BY id')] == []
        mid_statement = conn.execute(
            """SELECT set_config('rlsctl.api_key_xid', '', true), set_config('app.user_id', 'u_out', true),
                      (SELECT count(*) FROM "Team")"""
        ).fetchone()
        assert mid_statement[2] == 0
        with pytest.raises(pgerrors.InsufficientPrivilege):
            conn.execute("""UPDATE "Prompt" SET "teamId" = 'team_c' WHERE id = 'pa1'""")
    assert prompt_teams(attacked) == {"pa1": "team_a", "pa2": "team_a"}


def test_a_forged_key_hint_only_takes_the_user_away(attacked):
    """The hint is trusted towards no identity only: set by the app in a user's transaction, the
    user reads nothing, and no key's rows open."""
    with attacked.connect(autocommit=False) as conn:
        as_user(conn, attacked, "u_a")
        assert [r[0] for r in conn.execute('SELECT id FROM "Prompt" ORDER BY id')] == ["pa1", "pa2"]
        conn.execute("SELECT set_config('rlsctl.api_key_xid', txid_current()::text, true)")
        assert conn.execute("SELECT rlsctl.current_user_id()").fetchone()[0] is None
        assert conn.execute("SELECT rlsctl.api_key_tenant(NULL)").fetchone()[0] is None
        assert [r[0] for r in conn.execute('SELECT id FROM "Prompt" ORDER BY id')] == []
        assert [r[0] for r in conn.execute('SELECT id FROM "Team" ORDER BY id')] == []


def test_a_key_session_ignores_a_user_identity_set_afterwards(attacked):
    with attacked.connect(autocommit=False) as conn:
        key_then_user(conn, attacked, WRITE_A, "u_out")
        assert conn.execute("SELECT rlsctl.current_user_id()").fetchone()[0] is None
        assert conn.execute("SELECT rlsctl.tenant_ids('MEMBER')").fetchone()[0] == []
        # The outsider's own team is invisible: the session is team A's key, nothing else.
        assert [r[0] for r in conn.execute('SELECT id FROM "Team" ORDER BY id')] == []
        assert [r[0] for r in conn.execute('SELECT id FROM "Prompt" ORDER BY id')] == ["pa1", "pa2"]


def test_the_mixed_session_cannot_move_a_prompt_to_the_attackers_team(attacked):
    with attacked.connect(autocommit=False) as conn:
        key_then_user(conn, attacked, WRITE_A, "u_out")
        with pytest.raises(pgerrors.InsufficientPrivilege):
            conn.execute("""UPDATE "Prompt" SET "teamId" = 'team_c' WHERE id = 'pa1'""")
    assert prompt_teams(attacked) == {"pa1": "team_a", "pa2": "team_a"}


def test_the_mixed_session_cannot_make_the_teams_prompts_private(attacked):
    with attacked.connect(autocommit=False) as conn:
        key_then_user(conn, attacked, WRITE_A, "u_out")
        with pytest.raises(pgerrors.InsufficientPrivilege):
            conn.execute("""UPDATE "Prompt" SET "teamId" = NULL""")
    assert prompt_teams(attacked) == {"pa1": "team_a", "pa2": "team_a"}


def test_a_read_key_and_a_user_cannot_insert_metrics(attacked):
    with attacked.connect(autocommit=False) as conn:
        key_then_user(conn, attacked, READ_A, "u_out")
        with pytest.raises(pgerrors.InsufficientPrivilege):
            conn.execute("""INSERT INTO "PerformanceMetrics"(id, "promptId", "responseTime", success)
                            VALUES ('pm_forged', 'pa1', 1, true)""")


def test_the_mixed_session_cannot_add_a_version_authored_by_the_outsider(attacked):
    with attacked.connect(autocommit=False) as conn:
        key_then_user(conn, attacked, WRITE_A, "u_out")
        with pytest.raises(pgerrors.InsufficientPrivilege):
            conn.execute("""INSERT INTO "PromptVersion"(id, "promptId", version, content, "createdBy")
                            VALUES ('v_forged', 'pa1', 2, 'forged', 'u_out')""")


def test_an_admin_cannot_unshare_the_teams_prompts_without_a_where_clause(attacked):
    """PostgreSQL applies SELECT policies to an UPDATE's new row only when the statement reads
    the table; the UPDATE check itself keeps the row visible to its writer, WHERE or not."""
    with attacked.connect(autocommit=False) as conn:
        as_user(conn, attacked, "u_a")  # OWNER of team A, author of pa2 only
        with pytest.raises(pgerrors.InsufficientPrivilege):
            conn.execute("""UPDATE "Prompt" SET "teamId" = NULL""")
    assert prompt_teams(attacked) == {"pa1": "team_a", "pa2": "team_a"}
    with attacked.connect(autocommit=False) as conn:
        as_user(conn, attacked, "u_author")  # the author may unshare their own prompt
        assert conn.execute("""UPDATE "Prompt" SET "teamId" = NULL WHERE id = 'pa1'""").rowcount == 1
        conn.rollback()


# -- a key reads nothing outside its scopes, helpers included (issue: helpers that ignore the scope)


def test_an_audit_key_gets_no_members_and_no_prompt_ids_from_the_helpers(attacked):
    with attacked.connect(autocommit=False) as conn:
        as_app(conn, attacked)
        assert authenticate(conn, AUDIT_A) is True
        # a member of the key's team, its owner: not members for this key (no scope a member rule needs)
        assert conn.execute("SELECT rlsctl.api_key_member('u_author'), rlsctl.api_key_member('u_a')").fetchone() == (
            False,
            False,
        )
        for scope in ("audit:read", "prompts:read", "analytics:read", None):
            rows = conn.execute('SELECT rlsctl."api_key_rows_Prompt"(%s)', (scope,)).fetchone()[0]
            assert rows == [], scope


def test_a_read_key_gets_no_members(attacked):
    with attacked.connect(autocommit=False) as conn:
        as_app(conn, attacked)
        assert authenticate(conn, READ_A) is True
        assert conn.execute("SELECT rlsctl.api_key_member('u_author'), rlsctl.api_key_member('u_a')").fetchone() == (
            False,
            False,
        )


def test_the_write_key_still_gets_the_members_its_rules_need(attacked):
    """The allowed side: prompts:write checks that a prompt's author is a member of its team."""
    with attacked.connect(autocommit=False) as conn:
        as_app(conn, attacked)
        assert authenticate(conn, WRITE_A) is True
        found = conn.execute(
            """SELECT rlsctl.api_key_member('u_author'), rlsctl.api_key_member('u_a'),
                      rlsctl.api_key_member('u_out'), rlsctl.api_key_member(NULL)"""
        ).fetchone()
        # the team's member and its owner; not the outsider (a member of team C only); NULL for no
        # user, as `NULL = ANY (members)` is
        assert found == (True, True, False, None)
        conn.execute("""INSERT INTO "Prompt"(id, title, content, "userId", "teamId", "updatedAt")
                        VALUES ('p_by_key', 't', 'c', 'u_author', 'team_a', now())""")
        conn.rollback()


def test_settings_changed_inside_a_statement_cannot_mix_the_principals(attacked):
    """The key session is a row of the keys role's temp table, not a setting: switching the user
    identity in the middle of a statement (between the USING and the CHECK of the policies) gives
    the key's session no user, in either order."""
    with attacked.connect(autocommit=False) as conn:
        key_then_user(conn, attacked, WRITE_A, "u_out")
        with pytest.raises(pgerrors.InsufficientPrivilege):
            conn.execute(
                """UPDATE "Prompt" SET "teamId" = CASE
                       WHEN set_config('app.user_id', 'u_out', true) IS NULL THEN NULL ELSE 'team_c' END
                   WHERE id = 'pa1' RETURNING id"""
            )
    assert prompt_teams(attacked) == {"pa1": "team_a", "pa2": "team_a"}


def test_the_merged_tenant_helper_answers_each_principal_only_its_own(attacked):
    """rlsctl.tenant_ids_or_key(rank, scopes), which policies call for `tenant_role` and `api_key` branches of
    one column, called directly: a key gets its team only for a scope it holds, a user only its own teams,
    no identity nothing; a key session gets no user's teams even with a user set afterwards."""

    def ask(conn, rank, scopes):
        return conn.execute("SELECT rlsctl.tenant_ids_or_key(%s, %s::text[])", (rank, scopes)).fetchone()[0]

    with attacked.connect(autocommit=False) as conn:
        as_app(conn, attacked)
        assert authenticate(conn, AUDIT_A) is True
        assert ask(conn, None, ["prompts:write", "prompts:read"]) == []  # scopes the key does not hold
        assert ask(conn, None, ["audit:read"]) == ["team_a"]
        conn.execute("SELECT set_config('app.user_id', 'u_out', true)")  # one principal: still the key's
        assert ask(conn, "MEMBER", []) == []
        conn.rollback()
        as_user(conn, attacked, "u_out")
        assert ask(conn, "MEMBER", ["audit:read"]) == ["team_c"]  # its own team, not team A
        assert ask(conn, "ADMIN", []) == ["team_c"]  # the owner of team C
        assert ask(conn, None, ["audit:read"]) == []  # a user has no key
        conn.rollback()
        as_user(conn, attacked, "u_author")
        assert ask(conn, "ADMIN", []) == []  # a MEMBER of A and C, ADMIN of neither
        assert sorted(ask(conn, "MEMBER", [])) == ["team_a", "team_c"]
        conn.rollback()
        as_app(conn, attacked)  # no identity
        assert ask(conn, "MEMBER", ["audit:read"]) == []
        conn.rollback()


DISCARDS = ("DISCARD TEMP", "DISCARD SEQUENCES")  # what the app can clear of a key session's proofs


def assert_still_the_key_after(conn: psycopg.Connection, discard: str) -> None:
    """Team A's write key authenticated, then `discard`, the hint cleared and a user named: the
    transaction is still the key's, and has no user."""
    assert discard in DISCARDS
    assert authenticate(conn, WRITE_A) is True
    conn.execute(discard)
    conn.execute("SELECT set_config('rlsctl.api_key_xid', '', true), set_config('app.user_id', 'u_out', true)")
    assert conn.execute("SELECT rlsctl.current_user_id()").fetchone()[0] is None
    assert conn.execute("SELECT rlsctl.api_key_tenant(NULL)").fetchone()[0] == "team_a"


def create_switch(conn: psycopg.Connection, discard: str) -> None:
    """pg_temp.switch(): in the middle of a statement, `discard` (what the app can clear of a key
    session), the hint cleared and a user named; it returns the outsider's team."""
    assert discard in DISCARDS  # the one statement pasted into the function's body
    conn.execute(
        f"""CREATE FUNCTION pg_temp.switch() RETURNS text LANGUAGE plpgsql AS $$
            BEGIN
                {discard};
                PERFORM set_config('rlsctl.api_key_xid', '', true);
                PERFORM set_config('app.user_id', 'u_out', true);
                RETURN 'team_c';
            END $$"""
    )


def test_dropping_the_temp_tables_inside_a_statement_cannot_mix_a_key_and_a_user(attacked):
    """An adversarial review's attack: a function of the app's own in pg_temp runs DISCARD TEMP (which
    drops the keys role's temporary session table, ownership aside), clears the hint and names a
    user, in the middle of an UPDATE, after the policies' USING ran as the key. A read-write
    transaction's key session is also a row of the keys role's api_key_session, out of DISCARD's
    reach: the CHECK still sees the key, and no user."""
    with attacked.connect(autocommit=False) as conn:
        as_app(conn, attacked)
        create_switch(conn, "DISCARD TEMP")
        assert authenticate(conn, WRITE_A) is True
        with pytest.raises(pgerrors.InsufficientPrivilege):
            conn.execute("""UPDATE "Prompt" SET "teamId" = pg_temp.switch() WHERE id = 'pa1'""")
    assert prompt_teams(attacked) == {"pa1": "team_a", "pa2": "team_a"}
    with attacked.connect(autocommit=False) as conn:  # after it, the transaction still has no user
        as_app(conn, attacked)
        assert_still_the_key_after(conn, "DISCARD TEMP")


def test_a_read_only_transaction_still_authenticates_a_key(attacked):
    """Its session stays in the keys role's temp table (a read-only transaction writes no table, and
    creates none: the session's first key is authenticated in a read-write one)."""
    with attacked.connect(autocommit=False) as conn:
        as_app(conn, attacked)
        assert authenticate(conn, READ_A) is True
        conn.commit()
        conn.execute("SET TRANSACTION READ ONLY")
        as_app(conn, attacked)
        assert authenticate(conn, READ_A) is True
        assert [r[0] for r in conn.execute('SELECT id FROM "Prompt" ORDER BY id')] == ["pa1", "pa2"]
        conn.execute("SELECT set_config('app.user_id', 'u_out', true)")
        assert conn.execute("SELECT rlsctl.current_user_id()").fetchone()[0] is None


def test_a_session_that_never_held_a_key_asks_nothing_of_the_keys_role(attacked):
    """The hint is never set in such a session (NULL: a setting once set stays defined, even after
    RESET ALL), so current_user_id() answers from app.user_id alone."""
    with attacked.connect(autocommit=False) as conn:
        as_user(conn, attacked, "u_a")
        assert conn.execute("SELECT current_setting('rlsctl.api_key_xid', true)").fetchone()[0] is None
        assert conn.execute("SELECT rlsctl.current_user_id()").fetchone()[0] == "u_a"


def test_without_temporary_objects_the_app_cannot_drop_a_key_session_inside_a_statement(make_db):
    """The hardening docs/identity.md offers besides: with TEMPORARY taken from PUBLIC and given to
    the keys role alone, the app cannot create a function in pg_temp at all (the one that would run
    DISCARD TEMP inside a statement), and key sessions still work."""
    database = make_db()
    migrate_and_apply(database)
    with database.connect() as conn:
        conn.execute(
            """INSERT INTO "User"(id, email, "updatedAt") VALUES ('u_a', 'a@x', now()), ('u_out', 'o@x', now())"""
        )
        conn.execute("""INSERT INTO "Team"(id, name, "ownerId", "updatedAt")
                        VALUES ('team_a', 'A', 'u_a', now()), ('team_c', 'C', 'u_out', now())""")
        conn.execute("""INSERT INTO "Prompt"(id, title, content, "userId", "teamId", "updatedAt")
                        VALUES ('pa1', 'one', 'x', 'u_a', 'team_a', now())""")
        conn.execute(
            """INSERT INTO "ApiKey"(id, "teamId", name, "hashedKey", scopes)
                        VALUES ('kw', 'team_a', 'write', %s, '{prompts:write}')""",
            (sha256(WRITE_A),),
        )
        conn.execute(f'REVOKE TEMPORARY ON DATABASE "{database.name}" FROM PUBLIC')
        conn.execute(f'GRANT TEMPORARY ON DATABASE "{database.name}" TO "{database.role("keys")}"')
    with database.connect(autocommit=False) as conn:
        as_app(conn, database)
        assert authenticate(conn, WRITE_A) is True  # the keys role still makes its session table
        assert [r[0] for r in conn.execute('SELECT id FROM "Prompt"')] == ["pa1"]
        with pytest.raises(pgerrors.InsufficientPrivilege):
            conn.execute("""CREATE FUNCTION pg_temp.switch() RETURNS text LANGUAGE plpgsql AS $$
                            BEGIN DISCARD TEMP; RETURN 'team_c'; END $$""")
    assert prompt_teams(database) == {"pa1": "team_a"}


# -- the keys role's transaction marker (rlsctl.api_key_xact) ----------------------------------------------


def session_table_reads(conn: psycopg.Connection) -> int:
    """How often this transaction read the keys role's session table (its statistics, as superuser)."""
    row = conn.execute(
        """SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_xact_all_tables
           WHERE schemaname = 'rlsctl' AND relname = 'api_key_session'"""
    ).fetchone()
    return int(row[0])


def test_a_pooled_session_that_once_held_a_key_reads_no_session_table_in_a_users_writes(attacked):
    """A session that authenticated a key in an earlier transaction (a pooled connection): in a user's
    read-write transaction, the key-session helpers read the keys role's marker instead of its
    session table at every current_user_id(); the user is still the user, and a key in this
    transaction is still a key."""
    with attacked.connect(autocommit=False) as conn:
        as_app(conn, attacked)
        assert authenticate(conn, WRITE_A) is True
        conn.commit()
        as_user(conn, attacked, "u_a")
        conn.execute("""UPDATE "Prompt" SET title = title WHERE id = 'pa2'""")  # the transaction has an id
        before = session_table_reads(conn)
        assert conn.execute("SELECT rlsctl.current_user_id()").fetchone()[0] == "u_a"
        assert conn.execute("""UPDATE "Prompt" SET title = 'renamed' WHERE id = 'pa2'""").rowcount == 1
        assert session_table_reads(conn) == before  # the marker answered
        conn.rollback()
        as_app(conn, attacked)
        assert authenticate(conn, WRITE_A) is True
        conn.execute("SELECT set_config('rlsctl.api_key_xid', '', true), set_config('app.user_id', 'u_out', true)")
        before = session_table_reads(conn)
        assert conn.execute("SELECT rlsctl.current_user_id()").fetchone()[0] is None  # the marker names it
        assert session_table_reads(conn) > before  # and the table said "key session"
        assert [r[0] for r in conn.execute('SELECT id FROM "Team" ORDER BY id')] == []
        conn.rollback()


def test_the_application_can_neither_set_nor_clear_the_marker_to_mix_a_key_and_a_user(attacked):
    """The marker proves "no key" only when it names another transaction: the app may not set it
    (no privilege), and clearing its value (DISCARD SEQUENCES), before a statement or inside one, sends
    current_user_id() back to the session table: no user in a key's transaction."""
    with attacked.connect(autocommit=False) as conn:
        as_app(conn, attacked)
        assert authenticate(conn, WRITE_A) is True
        with pytest.raises(pgerrors.InsufficientPrivilege):
            conn.execute("SELECT setval('rlsctl.api_key_xact', 1)")
        conn.rollback()
        as_app(conn, attacked)  # nor read it: nobody but the keys role holds a privilege on it
        for reading in ("SELECT currval('rlsctl.api_key_xact')", "SELECT last_value FROM rlsctl.api_key_xact"):
            with pytest.raises(pgerrors.InsufficientPrivilege):
                conn.execute(reading)
            conn.rollback()
            as_app(conn, attacked)
        conn.rollback()
        as_app(conn, attacked)
        assert_still_the_key_after(conn, "DISCARD SEQUENCES")
        conn.rollback()
        # A read-only transaction's key session, which sets no marker (a read-only transaction cannot):
        # the marker proves nothing there, and the session table answers.
        as_app(conn, attacked)
        assert authenticate(conn, READ_A) is True  # the session's temporary table, made read-write
        conn.commit()
        conn.execute("SET TRANSACTION READ ONLY")
        as_app(conn, attacked)
        assert authenticate(conn, READ_A) is True
        conn.execute("SELECT set_config('rlsctl.api_key_xid', '', true), set_config('app.user_id', 'u_out', true)")
        assert conn.execute("SELECT rlsctl.current_user_id()").fetchone()[0] is None
        conn.rollback()
        as_app(conn, attacked)
        create_switch(conn, "DISCARD SEQUENCES")
        assert authenticate(conn, WRITE_A) is True
        with pytest.raises(pgerrors.InsufficientPrivilege):
            conn.execute("""UPDATE "Prompt" SET "teamId" = pg_temp.switch() WHERE id = 'pa1'""")
    assert prompt_teams(attacked) == {"pa1": "team_a", "pa2": "team_a"}


def test_a_key_cannot_be_authenticated_in_a_read_only_moment_a_function_will_end(attacked):
    """An adversarial review's attack: a function whose SET clause makes the transaction read-only
    for its own call authenticates a key, recorded only in the temporary table (a read-only moment
    writes no other); back in read-write, the same transaction acted as the user, and as the key
    whenever it set read-only again, even within one UPDATE (the key's USING, then DISCARD TEMP and
    the user's CHECK). A read-only authentication must be the application's own statement, whose
    read-only lasts to the transaction's end."""
    with attacked.connect(autocommit=False) as conn:
        as_app(conn, attacked)
        assert authenticate(conn, READ_A) is True  # the session's temporary table
        conn.commit()
        as_app(conn, attacked)
        conn.execute("""CREATE FUNCTION pg_temp.auth_ro(k text) RETURNS boolean LANGUAGE sql
                        SET transaction_read_only = on AS 'SELECT rlsctl.authenticate_api_key(k)'""")
        with pytest.raises(pgerrors.InsufficientPrivilege, match="not from a function"):
            conn.execute("SELECT pg_temp.auth_ro(%s)", (WRITE_A,))
        conn.rollback()
        conn.execute("SET TRANSACTION READ ONLY")  # a DO block is a function too
        as_app(conn, attacked)
        with pytest.raises(pgerrors.InsufficientPrivilege, match="not from a function"):
            conn.execute(
                sql.SQL("DO $$ BEGIN PERFORM rlsctl.authenticate_api_key({}); END $$").format(sql.Literal(READ_A))
            )
        conn.rollback()
        # Read-write, a function may authenticate: the session is the keys role's table row.
        as_app(conn, attacked)
        conn.execute("""CREATE FUNCTION pg_temp.auth(k text) RETURNS boolean LANGUAGE sql
                        AS 'SELECT rlsctl.authenticate_api_key(k)'""")
        assert conn.execute("SELECT pg_temp.auth(%s)", (WRITE_A,)).fetchone()[0] is True
        conn.rollback()


def test_a_sessions_first_key_in_a_read_only_transaction_is_refused_with_what_to_do(attacked):
    with attacked.connect(autocommit=False) as conn:
        conn.execute("DISCARD TEMP")  # a fresh session: no temporary table yet
        conn.commit()
        conn.execute("SET TRANSACTION READ ONLY")
        as_app(conn, attacked)
        with pytest.raises(
            pgerrors.ReadOnlySqlTransaction, match="first API key must be authenticated in a read-write"
        ):
            authenticate(conn, READ_A)
        conn.rollback()
        as_app(conn, attacked)
        assert authenticate(conn, READ_A) is True  # read-write: the table is made, and read-only works after
        conn.commit()
        conn.execute("SET TRANSACTION READ ONLY")
        as_app(conn, attacked)
        assert authenticate(conn, READ_A) is True


@pytest.mark.xfail(
    strict=True,
    reason="residual risk (docs/threat-model.md, two users in one statement): each InitPlan reads app.user_id "
    "when it is first needed, so a statement that changes the setting between rows can combine two users' "
    "rights in one row",
)
def test_two_user_identities_inside_one_statement_are_not_combined_in_one_row(attacked):
    """u_out, no member of team_a, writes a private prompt in the first row, which fixes the insert
    check's `userId = current_user_id()` to u_out; the second row switches the identity to u_a, whose
    teams the check then looks up for the first time: a prompt by u_out in team_a, which neither user
    could write alone. Strict: when the gap is closed this test passes, and the marker must go."""
    with attacked.connect(autocommit=False) as conn:
        as_user(conn, attacked, "u_a")
        try:
            conn.execute(
                """INSERT INTO "Prompt"(id, "userId", title, content, "updatedAt", "teamId")
                   SELECT 'mix' || n, 'u_out',
                          'x' || left(set_config('app.user_id', CASE n WHEN 1 THEN 'u_out' ELSE 'u_a' END, true), 0),
                          'text', now(), team
                   FROM (VALUES (1, NULL::text), (2, 'team_a')) AS v(n, team)"""
            )
            conn.execute("RESET ROLE")
            mixed = conn.execute("""SELECT count(*) FROM "Prompt" WHERE id = 'mix2'""").fetchone()[0]
        except pgerrors.InsufficientPrivilege:
            mixed = 0
        finally:
            conn.rollback()
    assert mixed == 0
