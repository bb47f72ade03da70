"""Column encryption: the database encrypts on write, entitled roles decrypt, keys rotate online.

Real pgcrypto on the real server; the key-encryption key comes from the
PGOPTIONS that conftest sets for every connection (docs/encryption.md).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from rlsctl import keys as keying
from rlsctl.cli import main
from rlsctl.keys import Keys
from rlsctl.project import load_project
from tests.conftest import ROOT, TestDatabase, migrate_and_apply

CANARY = "canary-plaintext-7f3a"


def cli(database: TestDatabase, *args: str, root: Path = ROOT) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, [*args, "--dsn", database.dsn, "--project", str(root), "--role-prefix", database.prefix]
    )
    return result.exit_code, result.output


def seed(conn: psycopg.Connection) -> None:
    """A user, a team prompt, and rows for the encrypted tables, written as the superuser (trigger on)."""
    conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u1', 'u1@x', now()), ('u2', 'u2@x', now())""")
    conn.execute("""INSERT INTO "Team"(id, name, "ownerId", "updatedAt") VALUES ('t1', 'T1', 'u1', now())""")
    conn.execute("""INSERT INTO "Prompt"(id, title, content, "userId", "teamId", "updatedAt")
                    VALUES ('p1', 'title', 'content', 'u1', 't1', now())""")
    conn.execute("""INSERT INTO "PromptVersion"(id, "promptId", version, content, "createdBy")
                    VALUES ('v1', 'p1', 1, %s, 'u1')""", (CANARY + "-version",))  # fmt: skip


def as_app(conn: psycopg.Connection, database: TestDatabase, user: str) -> None:
    conn.execute(
        "SELECT set_config('role', %s, true), set_config('app.user_id', %s, true)", (database.role("app"), user)
    )


@pytest.fixture(scope="module")
def encrypted_db(make_module_db) -> TestDatabase:
    database = make_module_db()
    migrate_and_apply(database)
    with database.connect() as conn:
        seed(conn)
    return database


def test_the_app_writes_plaintext_and_the_database_stores_ciphertext(encrypted_db):
    with encrypted_db.connect(autocommit=False) as conn:
        as_app(conn, encrypted_db, "u1")
        conn.execute(
            """INSERT INTO "PerformanceMetrics"(id, "promptId", "responseTime", success, "errorMessage")
               VALUES ('pm1', 'p1', 10, false, %s)""",
            (CANARY,),
        )
        stored, decrypted = conn.execute(
            """SELECT "errorMessage", rlsctl.decrypt("errorMessage") FROM "PerformanceMetrics" WHERE id = 'pm1'"""
        ).fetchone()
        conn.rollback()
    assert stored.startswith("rlsctl1:k") and CANARY not in stored
    assert decrypted == CANARY


def test_a_jsonb_column_stays_valid_jsonb(encrypted_db):
    metadata = {"plan": "pro", "seats": 3}
    with encrypted_db.connect(autocommit=False) as conn:
        as_app(conn, encrypted_db, "u1")
        conn.execute(
            """INSERT INTO "UsageAnalytics"(id, "userId", feature, metadata) VALUES ('ua1', 'u1', 'search', %s)""",
            (json.dumps(metadata),),
        )
        kind, envelope, decrypted = conn.execute(
            """SELECT jsonb_typeof(metadata), metadata, rlsctl.decrypt(metadata) FROM "UsageAnalytics" WHERE id = 'ua1'"""
        ).fetchone()
        conn.rollback()
    assert kind == "object" and set(envelope) == {"rlsctl", "key", "data"}
    assert "pro" not in json.dumps(envelope)
    assert decrypted == metadata


@pytest.mark.parametrize("role", ["analyst", "auditor", "retention"])
def test_roles_not_declared_as_readers_cannot_decrypt(encrypted_db, role):
    with encrypted_db.connect(autocommit=False) as conn:
        conn.execute("SELECT set_config('role', %s, true)", (encrypted_db.role(role),))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT rlsctl.decrypt('rlsctl1:x:y'::text)")


@pytest.mark.parametrize(
    "function", ["data_key('x')", "master_key()", "active_key_id()", "encrypt_with('a', 'k', 'd')"]
)
def test_the_app_cannot_reach_key_material(encrypted_db, function):
    with encrypted_db.connect(autocommit=False) as conn:
        as_app(conn, encrypted_db, "u1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT rlsctl.{function}")
        conn.rollback()
        as_app(conn, encrypted_db, "u1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT id FROM rlsctl.encryption_key")


def test_the_app_cannot_plant_ciphertext(encrypted_db):
    """Whatever the app writes is encrypted, even text that looks like ciphertext under some key."""
    with encrypted_db.connect(autocommit=False) as conn:
        as_app(conn, encrypted_db, "u1")
        forged = "rlsctl1:kforged:AAAA"
        conn.execute(
            """INSERT INTO "PerformanceMetrics"(id, "promptId", "responseTime", success, "errorMessage")
               VALUES ('pm2', 'p1', 10, false, %s)""",
            (forged,),
        )
        stored, decrypted = conn.execute(
            """SELECT "errorMessage", rlsctl.decrypt("errorMessage") FROM "PerformanceMetrics" WHERE id = 'pm2'"""
        ).fetchone()
        conn.rollback()
    assert stored != forged and decrypted == forged


# -- backfill, rotation, decryption ---------------------------------------------------------------


def project_with(tmp_path: Path, edit: str, replacement: str, file: str = "prompts.yaml") -> Path:
    """A copy of the PromptCraft project with one line of a policy file changed."""
    root = tmp_path / "project"
    shutil.copytree(ROOT / "policies", root / "policies")
    shutil.copytree(ROOT / "migrations", root / "migrations")
    path = root / "policies" / file
    text = path.read_text()
    assert edit in text
    path.write_text(text.replace(edit, replacement))
    return root


OPT_IN = ("    # encrypted: [content]    # opt-in", "    encrypted: [content]    # opt-in")


@pytest.fixture
def version_db(db, tmp_path) -> tuple[TestDatabase, Path]:
    """PromptCraft with the opt-in: PromptVersion.content encrypted, existing rows still plaintext."""
    migrate_and_apply(db)
    with db.connect() as conn:
        seed(conn)
        conn.execute("SET session_replication_role = replica")  # rows from before the column was declared
        conn.execute(
            """INSERT INTO "PromptVersion"(id, "promptId", version, content, "createdBy")
               SELECT 'v' || g, 'p1', g, %s || g, 'u1' FROM generate_series(2, 400) AS g""",
            (CANARY + "-",),
        )
        conn.execute("RESET session_replication_role")
    root = project_with(tmp_path, *OPT_IN)
    migrate_and_apply(db, project=load_project(root, role_prefix=db.prefix))
    return db, root


def contents(database: TestDatabase) -> dict[str, tuple[str, str]]:
    with database.connect() as conn:
        rows = conn.execute("""SELECT id, content, rlsctl.decrypt(content) FROM "PromptVersion" ORDER BY id""")
        return {row[0]: (row[1], row[2]) for row in rows}


def test_backfill_encrypts_existing_plaintext_in_batches(version_db):
    database, root = version_db
    before = contents(database)
    assert sum(not stored.startswith("rlsctl1:") for stored, _ in before.values()) == 400
    code, out = cli(
        database, "keys", "encrypt", "PromptVersion.content", "--batch-size", "64", "--jobs", "1", root=root
    )
    assert code == 0, out
    assert "400 values rewritten in 7 batches" in out
    after = contents(database)
    assert all(stored.startswith("rlsctl1:") for stored, _ in after.values())
    assert {key: plain for key, (_, plain) in after.items()} == {key: plain for key, (_, plain) in before.items()}


def test_parallel_batches_cover_every_row_once(version_db):
    database, root = version_db
    before = contents(database)
    code, out = cli(database, "keys", "encrypt", "--jobs", "3", "--batch-size", "25", "--format", "json", root=root)
    assert code == 0, out
    report = json.loads(out[out.index("{") :])
    column = next(c for c in report["columns"] if c["column"] == "PromptVersion.content")
    assert column["rewritten"] == 400 and column["remaining"] == 0
    after = contents(database)
    assert all(stored.startswith("rlsctl1:") for stored, _ in after.values())
    assert {key: plain for key, (_, plain) in after.items()} == {key: plain for key, (_, plain) in before.items()}


def test_rotation_rewrites_rows_the_app_may_not_update_and_retires_the_old_key(version_db):
    database, root = version_db
    assert cli(database, "keys", "encrypt", root=root)[0] == 0
    before = contents(database)
    code, out = cli(database, "keys", "rotate", "--format", "json", root=root)
    assert code == 0, out
    report = json.loads(out[out.index("{") :])
    assert report["new_key"] and report["retired"] and report["new_key"] not in report["retired"]
    after = contents(database)
    assert all(after[key][0] != before[key][0] for key in before)  # new ciphertext everywhere
    assert all(after[key][1] == before[key][1] for key in before)  # the same plaintext
    assert all(f":{report['new_key']}:" in stored for stored, _ in after.values())
    with database.connect() as conn:
        retired = conn.execute("SELECT wrapped FROM rlsctl.encryption_key WHERE id = %s", (report["retired"][0],))
        assert retired.fetchone()[0] is None  # erased: a later backup cannot use it either
    # The app still may not update versions (immutable): rotation went through the keys role.
    with database.connect(autocommit=False) as conn:
        as_app(conn, database, "u1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("""UPDATE "PromptVersion" SET content = 'x' WHERE id = 'v2'""")


def test_an_interrupted_rotation_resumes_without_a_new_key(version_db):
    database, root = version_db
    project = load_project(root, role_prefix=database.prefix)

    class Stop(Exception):
        pass

    def stop_after_first_batch(label: str, rewritten: int, total: int) -> None:
        raise Stop

    assert cli(database, "keys", "encrypt", root=root)[0] == 0
    with database.connect() as conn:
        keys = Keys(conn, project, "test")
        with pytest.raises(Stop):
            keying.rotate(keys, stop_after_first_batch, batch_size=50)
        first = keys.active_key()
        column = keys.columns(("PromptVersion.content",))[0]
        assert 0 < keys.pending(column, "encrypt") < 401  # some done, some not
    code, out = cli(database, "keys", "rotate", "--format", "json", root=root)
    assert code == 0, out
    report = json.loads(out[out.index("{") :])
    assert report["new_key"] is None and report["active_key"] == first  # resumed, not restarted
    assert all(f":{first}:" in stored for stored, _ in contents(database).values())


def test_a_batch_that_does_not_decrypt_back_is_rolled_back(version_db):
    database, root = version_db
    with database.connect() as conn:
        # Sabotage pgcrypto itself: every new ciphertext would decrypt to something else.
        conn.execute("ALTER FUNCTION rlsctl.pgp_sym_encrypt(text, text, text) RENAME TO pgp_sym_encrypt_real")
        conn.execute(
            """CREATE FUNCTION rlsctl.pgp_sym_encrypt(data text, psw text, options text) RETURNS bytea
               LANGUAGE sql AS $$ SELECT rlsctl.pgp_sym_encrypt_real('tampered', psw, options) $$"""
        )
    before = contents(database)
    code, out = cli(database, "keys", "encrypt", "PromptVersion.content", root=root)
    assert code == 2 and "did not decrypt back" in out and "rolled back" in out
    assert contents(database) == before


def test_a_wrong_key_encryption_key_changes_nothing(version_db, monkeypatch):
    database, root = version_db
    with database.connect() as conn:
        keys_before = conn.execute("SELECT id, wrapped FROM rlsctl.encryption_key ORDER BY id").fetchall()
    monkeypatch.setenv("PGOPTIONS", "-c rlsctl.master_key=not-the-right-one")
    code, out = cli(database, "keys", "rotate", root=root)
    assert code == 2 and "does not unwrap the data keys" in out
    code, out = cli(database, "apply", root=root)
    assert code == 2 and "does not unwrap the data keys" in out and "nothing was changed" in out
    monkeypatch.setenv("PGOPTIONS", "")
    code, out = cli(database, "keys", "rotate", root=root)
    assert code == 2 and "rlsctl.master_key is not set" in out
    monkeypatch.undo()
    with database.connect() as conn:
        assert conn.execute("SELECT id, wrapped FROM rlsctl.encryption_key ORDER BY id").fetchall() == keys_before


def test_apply_refuses_without_a_key_encryption_key(db, monkeypatch):
    monkeypatch.setenv("PGOPTIONS", "")
    code, out = cli(db, "migrate")
    assert code == 0, out
    code, out = cli(db, "apply")
    assert code == 2 and "rlsctl.master_key is not set" in out and "nothing was changed" in out
    with db.connect() as conn:
        assert conn.execute("SELECT to_regclass('rlsctl.encryption_key')").fetchone()[0] is None


def test_decrypt_for_a_rollback(db, tmp_path):
    migrate_and_apply(db)
    metadata = {"plan": "team"}
    with db.connect() as conn:
        seed(conn)
        conn.execute(
            """INSERT INTO "UsageAnalytics"(id, "userId", feature, metadata) VALUES ('ua1', 'u1', 'search', %s)""",
            (json.dumps(metadata),),
        )
    root = project_with(tmp_path, "    encrypted: [metadata]", "    decrypting: [metadata]", "analytics.yaml")
    migrate_and_apply(db, project=load_project(root, role_prefix=db.prefix))
    code, out = cli(db, "keys", "decrypt", "UsageAnalytics.metadata", root=root)
    assert code == 0, out
    with db.connect() as conn:
        assert conn.execute("""SELECT metadata FROM "UsageAnalytics" WHERE id = 'ua1'""").fetchone()[0] == metadata
        # New writes stay plaintext: the column is no longer encrypted on write.
        conn.execute("""UPDATE "UsageAnalytics" SET metadata = '{"plan": "pro"}' WHERE id = 'ua1'""")
        assert conn.execute("""SELECT metadata FROM "UsageAnalytics" WHERE id = 'ua1'""").fetchone()[0] == {
            "plan": "pro"
        }


def test_status_names_keys_and_counts_but_never_key_bytes(version_db):
    database, root = version_db
    code, out = cli(database, "keys", "status", "--format", "json", root=root)
    assert code == 0, out
    report = json.loads(out)
    assert [key["active"] for key in report["keys"]] == [True]
    assert {"column": "PromptVersion.content", "key": None, "values": 400} in report["usage"]
    assert all(set(key) == {"id", "active", "retired", "created_at", "retired_at"} for key in report["keys"])
