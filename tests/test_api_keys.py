"""API keys (docs/identity.md, API-key sessions): sessions only authenticate_api_key can open, per-scope access, raw keys shown once.

The access matrix (test_access_matrix.py) checks every table for seven key
principals; these tests try to break the session itself.
"""

from __future__ import annotations

import hashlib

import psycopg
import pytest
from click.testing import CliRunner

from rlsctl.cli.main import main
from tests.conftest import ROOT, migrate_and_apply

RAW_A = "pc_test_key_of_team_a"
RAW_B = "pc_test_key_of_team_b"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def keyed_db(make_module_db):
    database = make_module_db()
    migrate_and_apply(database)
    with database.connect() as conn:
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt")
                        VALUES ('ua', 'a@x', now()), ('ub', 'b@x', now()), ('um', 'm@x', now())""")
        conn.execute("""INSERT INTO "Team"(id, name, "ownerId", "updatedAt")
                        VALUES ('ta', 'A', 'ua', now()), ('tb', 'B', 'ub', now())""")
        conn.execute("""INSERT INTO "TeamMember"(id, "teamId", "userId", role) VALUES ('m1', 'ta', 'um', 'MEMBER')""")
        conn.execute("""INSERT INTO "Prompt"(id, title, content, "userId", "teamId", "updatedAt")
                        VALUES ('pa', 'A', 'in A', 'ua', 'ta', now()), ('pb', 'B', 'in B', 'ub', 'tb', now())""")
        conn.execute(
            """INSERT INTO "ApiKey"(id, "teamId", name, "hashedKey", scopes, "expiresAt") VALUES
               ('ka', 'ta', 'a', %s, '{prompts:read}', NULL),
               ('kb', 'tb', 'b', %s, '{prompts:read}', NULL),
               ('kx', 'ta', 'expired', %s, '{prompts:read}', now() - interval '1 minute')""",
            (sha256(RAW_A), sha256(RAW_B), sha256("pc_test_expired")),
        )
    return database


def app_session(conn: psycopg.Connection, database, user: str | None = None) -> None:
    conn.execute("SELECT set_config('role', %s, true)", (database.role("app"),))
    if user is not None:
        conn.execute("SELECT set_config('app.user_id', %s, true)", (user,))


def prompts(conn: psycopg.Connection) -> list[str]:
    return [row[0] for row in conn.execute('SELECT id FROM "Prompt" ORDER BY id')]


def test_a_valid_key_opens_its_teams_rows_for_this_transaction_only(keyed_db):
    with keyed_db.connect(autocommit=False) as conn:
        app_session(conn, keyed_db)
        assert prompts(conn) == []
        assert conn.execute("SELECT rlsctl.authenticate_api_key(%s)", (RAW_A,)).fetchone()[0] is True
        assert prompts(conn) == ["pa"]
        conn.commit()
        app_session(conn, keyed_db)
        assert prompts(conn) == []  # the next transaction starts without a key
        assert conn.execute("SELECT rlsctl.authenticate_api_key(%s)", (RAW_B,)).fetchone()[0] is True
        assert prompts(conn) == ["pb"]  # a second key replaces the first


@pytest.mark.parametrize("raw", ["pc_test_expired", "pc_test_unknown", "", RAW_A.upper(), sha256(RAW_A)])
def test_wrong_and_expired_keys_open_nothing(keyed_db, raw):
    with keyed_db.connect(autocommit=False) as conn:
        app_session(conn, keyed_db)
        assert conn.execute("SELECT rlsctl.authenticate_api_key(%s)", (raw,)).fetchone()[0] is False
        assert prompts(conn) == []


def test_set_config_cannot_forge_a_session(keyed_db):
    with keyed_db.connect(autocommit=False) as conn:
        app_session(conn, keyed_db)
        for setting in ("rlsctl.presented_key_hash", "rlsctl.api_key", "rlsctl.tenant", "rlsctl.scopes"):
            conn.execute("SELECT set_config(%s, %s, true)", (setting, sha256(RAW_A)))
        conn.execute("SELECT set_config('rlsctl.tenant', 'ta', true)")
        assert prompts(conn) == []
        assert conn.execute("SELECT rlsctl.api_key_tenant(NULL)").fetchone()[0] is None


def test_a_look_alike_session_table_is_refused(keyed_db):
    """The app creates its own pg_temp.rlsctl_api_key_session first and fills it: nothing opens."""
    with keyed_db.connect(autocommit=False) as conn:
        app_session(conn, keyed_db)
        conn.execute(
            """CREATE TEMP TABLE rlsctl_api_key_session (xid bigint, key_id text, tenant text, scopes text[])"""
        )
        conn.execute("INSERT INTO pg_temp.rlsctl_api_key_session VALUES (txid_current(), 'ka', 'ta', '{prompts:read}')")
        assert conn.execute("SELECT rlsctl.api_key_tenant(NULL)").fetchone()[0] is None
        assert prompts(conn) == []
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not created by rlsctl"):
            conn.execute("SELECT rlsctl.authenticate_api_key(%s)", (RAW_A,))


def test_a_look_alike_session_table_is_passed_over_in_a_read_only_transaction(keyed_db):
    """A read-only transaction's key session lives in the temporary table only, so there the helpers
    check whose table it is: the app's own look-alike, made in an earlier transaction and filled in
    a read-only one with a row naming it, opens nothing (no key, no team's rows)."""
    with keyed_db.connect(autocommit=False) as conn:
        app_session(conn, keyed_db)
        conn.execute(
            """CREATE TEMP TABLE rlsctl_api_key_session (xid bigint, key_id text, tenant text, scopes text[])"""
        )
        conn.commit()
        conn.execute("SET TRANSACTION READ ONLY")
        app_session(conn, keyed_db)
        conn.execute("INSERT INTO pg_temp.rlsctl_api_key_session VALUES (txid_current(), 'ka', 'ta', '{prompts:read}')")
        assert conn.execute("SELECT current_setting('transaction_read_only')").fetchone()[0] == "on"
        assert conn.execute("SELECT rlsctl.api_key_tenant(NULL)").fetchone()[0] is None
        assert conn.execute("SELECT rlsctl.api_key_tenant('prompts:read')").fetchone()[0] is None
        assert prompts(conn) == []


def test_the_app_cannot_write_the_real_session_table(keyed_db):
    with keyed_db.connect(autocommit=False) as conn:
        app_session(conn, keyed_db)
        assert conn.execute("SELECT rlsctl.authenticate_api_key(%s)", (RAW_A,)).fetchone()[0] is True
        for statement in (
            "UPDATE pg_temp.rlsctl_api_key_session SET tenant = 'tb'",
            "INSERT INTO pg_temp.rlsctl_api_key_session VALUES (txid_current(), 'kb', 'tb', '{prompts:read}')",
            "DELETE FROM pg_temp.rlsctl_api_key_session",
            "DROP TABLE pg_temp.rlsctl_api_key_session",
        ):
            conn.execute("SAVEPOINT s")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.execute("ROLLBACK TO SAVEPOINT s")
        assert prompts(conn) == ["pa"]


def test_the_app_cannot_read_or_write_the_sessions_of_read_write_transactions(keyed_db):
    """rlsctl.api_key_session, the keys role's record that DISCARD TEMP cannot drop: the app role
    (with a key session of its own, with a user, or with no identity) neither reads it nor plants,
    changes or removes a row in it."""
    statements = (
        "SELECT * FROM rlsctl.api_key_session",
        "INSERT INTO rlsctl.api_key_session VALUES (txid_current(), pg_backend_pid(), 'kb', 'tb', '{prompts:read}')",
        "UPDATE rlsctl.api_key_session SET tenant = 'tb'",
        "DELETE FROM rlsctl.api_key_session",
        "TRUNCATE rlsctl.api_key_session",
        "DROP TABLE rlsctl.api_key_session",
    )
    for principal in ("key", "user", "nobody"):
        with keyed_db.connect(autocommit=False) as conn:
            app_session(conn, keyed_db, "ua" if principal == "user" else None)
            if principal == "key":
                assert conn.execute("SELECT rlsctl.authenticate_api_key(%s)", (RAW_A,)).fetchone()[0] is True
            for statement in statements:
                conn.execute("SAVEPOINT s")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
                conn.execute("ROLLBACK TO SAVEPOINT s")
            assert prompts(conn) == (["pa"] if principal in ("key", "user") else [])


def test_the_app_never_reads_key_hashes(keyed_db):
    with keyed_db.connect(autocommit=False) as conn:
        app_session(conn, keyed_db, "ua")  # OWNER of team A: may manage its keys
        assert [row[0] for row in conn.execute('SELECT id FROM "ApiKey" ORDER BY id')] == ["ka", "kx"]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute('SELECT "hashedKey" FROM "ApiKey"')


def test_the_hash_is_checked_by_indexed_equality(keyed_db):
    with keyed_db.connect() as conn:
        indexed = conn.execute(
            """SELECT count(*) FROM pg_index AS i JOIN pg_attribute AS a
                 ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
               WHERE i.indrelid = '"ApiKey"'::regclass AND a.attname = 'hashedKey' AND i.indisunique
                 AND i.indnatts = 1"""
        ).fetchone()[0]
        body = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'authenticate_api_key'").fetchone()[0]
    assert indexed == 1
    assert '."hashedKey" = presented' in body


def cli(database, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, [*args, "--dsn", database.dsn, "--project", str(ROOT), "--role-prefix", database.prefix]
    )
    return result.exit_code, result.output


def test_create_api_key_returns_the_raw_key_once_and_stores_only_its_hash(keyed_db):
    code, out = cli(keyed_db, "keys", "create-api-key", "--team", "ta", "--scope", "prompts:read", "--as", "ua",
                    "--expires", "30d")  # fmt: skip
    assert code == 0, out
    raw = out.strip().splitlines()[-1]
    assert raw.startswith("pc_") and len(raw) >= 40
    with keyed_db.connect() as conn:
        rows = conn.execute(
            """SELECT "hashedKey", row_to_json(k)::text FROM "ApiKey" AS k WHERE "hashedKey" = %s""", (sha256(raw),)
        ).fetchall()
        assert len(rows) == 1 and raw not in rows[0][1]
    with keyed_db.connect(autocommit=False) as conn:
        app_session(conn, keyed_db)
        assert conn.execute("SELECT rlsctl.authenticate_api_key(%s)", (raw,)).fetchone()[0] is True
        assert prompts(conn) == ["pa"]


def test_only_an_admin_of_the_team_creates_keys(keyed_db):
    code, out = cli(keyed_db, "keys", "create-api-key", "--team", "ta", "--scope", "prompts:read", "--as", "um")
    assert code == 2 and "not allowed" in out
    code, out = cli(keyed_db, "keys", "create-api-key", "--team", "tb", "--scope", "prompts:read", "--as", "ua")
    assert code == 2 and "not allowed" in out


def test_create_api_key_from_sql_as_the_app(keyed_db):
    """For ORMs whose INSERT returns every column (Prisma): the function returns the raw key instead."""
    with keyed_db.connect(autocommit=False) as conn:
        app_session(conn, keyed_db, "ua")
        raw = conn.execute("SELECT rlsctl.create_api_key('ta', 'ci', ARRAY['prompts:read'])").fetchone()[0]
        conn.commit()
        app_session(conn, keyed_db)
        assert conn.execute("SELECT rlsctl.authenticate_api_key(%s)", (raw,)).fetchone()[0] is True


def test_an_ambiguous_hash_opens_nothing(keyed_db):
    """Two rows with one hash (possible only without phase 4 step 3's unique index): refuse, never pick one."""
    with keyed_db.connect() as conn:
        conn.execute('DROP INDEX "ApiKey_hashedKey_key"')
        conn.execute(
            """INSERT INTO "ApiKey"(id, "teamId", name, "hashedKey", scopes)
               VALUES ('d1', 'ta', 'd', %s, '{prompts:read}'), ('d2', 'tb', 'd', %s, '{prompts:read}')""",
            (sha256("pc_test_duplicate"), sha256("pc_test_duplicate")),
        )
    try:
        with keyed_db.connect(autocommit=False) as conn:
            app_session(conn, keyed_db)
            assert conn.execute("SELECT rlsctl.authenticate_api_key('pc_test_duplicate')").fetchone()[0] is False
            assert prompts(conn) == []
    finally:
        with keyed_db.connect() as conn:
            conn.execute("""DELETE FROM "ApiKey" WHERE id IN ('d1', 'd2')""")
            conn.execute('CREATE UNIQUE INDEX "ApiKey_hashedKey_key" ON "ApiKey"("hashedKey")')


def test_an_admin_cannot_plant_another_teams_hash(keyed_db):
    """Knowing team B's hash, an admin of team A cannot add a second row with it (unique index)."""
    with keyed_db.connect() as conn:
        hash_b = conn.execute("""SELECT "hashedKey" FROM "ApiKey" WHERE "teamId" = 'tb' LIMIT 1""").fetchone()[0]
    with keyed_db.connect(autocommit=False) as conn:
        app_session(conn, keyed_db, "ua")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                """INSERT INTO "ApiKey"(id, "teamId", name, "hashedKey", scopes) VALUES ('dup', 'ta', 'd', %s, '{}')""",
                (hash_b,),
            )


def test_the_app_cannot_change_a_keys_hash(keyed_db):
    with keyed_db.connect(autocommit=False) as conn:
        app_session(conn, keyed_db, "ua")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("""UPDATE "ApiKey" SET "hashedKey" = %s WHERE id = 'ka'""", (sha256("chosen"),))
