"""Column encryption: the database encrypts on write, entitled roles decrypt, keys rotate online.

Real pgcrypto on the real server; the key-encryption key comes from the
PGOPTIONS that conftest sets for every connection (docs/encryption.md).
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import shutil
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from rlsctl import keys as keying
from rlsctl.cli.main import main
from rlsctl.errors import UsageError
from rlsctl.keys import Keys
from rlsctl.keys.batches import pending
from rlsctl.keys.registry import retire_unused
from rlsctl.pg import locks
from rlsctl.policy.project import load_project
from tests.conftest import ROOT, TestDatabase, migrate_and_apply
from tests.test_errors import fingerprint

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


def _first_packet(message: bytes) -> tuple[int, bytes]:
    """Tag and body of the first OpenPGP packet (RFC 4880 s4.2, both header formats)."""
    header = message[0]
    assert header & 0x80, "not an OpenPGP packet"
    if header & 0x40:  # new format
        tag, first = header & 0x3F, message[1]
        if first < 192:
            return tag, message[2 : 2 + first]
        if first < 224:
            length = ((first - 192) << 8) + message[2] + 192
            return tag, message[3 : 3 + length]
        return tag, message[2:]  # partial or 5-byte lengths: the first bytes are all we read
    tag, length_type = (header >> 2) & 0x0F, header & 0x03
    size = {0: 1, 1: 2, 2: 4}.get(length_type, 0)
    return tag, message[1 + size :]


def test_values_are_openpgp_aes256_with_a_salted_s2k(encrypted_db):
    """issue 6: pgp_sym_encrypt with cipher-algo=aes256 and s2k-mode=1, read from the stored message itself."""
    with encrypted_db.connect(autocommit=False) as conn:
        as_app(conn, encrypted_db, "u1")
        conn.execute(
            """INSERT INTO "PerformanceMetrics"(id, "promptId", "responseTime", success, "errorMessage")
               VALUES ('pm8', 'p1', 10, false, %s)""",
            (CANARY,),
        )
        stored = conn.execute("""SELECT "errorMessage" FROM "PerformanceMetrics" WHERE id = 'pm8'""").fetchone()[0]
        conn.rollback()
    tag, body = _first_packet(base64.b64decode(stored.split(":", 2)[2]))
    assert tag == 3  # a symmetric-key encrypted session key packet: a passphrase (our data key), not a public key
    version, cipher, s2k_type = body[0], body[1], body[2]
    assert (version, cipher, s2k_type) == (4, 9, 1)  # v4; 9 = AES-256; 1 = salted S2K (no iteration: the key is random)


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


# Every project role that is not the one named, and a login outside the project
# (it has only what PUBLIC has): the denied side of each key-material test.
OUTSIDER = "outsider"


def become(conn: psycopg.Connection, database: TestDatabase, role: str) -> None:
    """SET LOCAL ROLE for the rest of the transaction; the outsider is created in it (and rolled back)."""
    if role == OUTSIDER:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(database.role(OUTSIDER))))
    conn.execute("SELECT set_config('role', %s, true)", (database.role(role),))


@pytest.mark.parametrize("role", ["analyst", "auditor", "retention", "owner", "definer", OUTSIDER])
@pytest.mark.parametrize("value", ["'rlsctl1:x:y'::text", """'{"rlsctl": 1}'::jsonb"""])
def test_roles_not_declared_as_readers_cannot_decrypt(encrypted_db, role, value):
    with encrypted_db.connect(autocommit=False) as conn:
        become(conn, encrypted_db, role)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT rlsctl.decrypt({value})")


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


@pytest.mark.parametrize("role", ["app", "analyst", "auditor", "retention", "owner", "definer", OUTSIDER])
@pytest.mark.parametrize("statement", [
    "SELECT id FROM rlsctl.encryption_key",
    "INSERT INTO rlsctl.encryption_key (id) VALUES ('x')",
    "UPDATE rlsctl.encryption_key SET id = id",
    "DELETE FROM rlsctl.encryption_key",
    "SELECT table_name FROM rlsctl.encrypted_column",
    "INSERT INTO rlsctl.encrypted_column (table_name, column_name) VALUES ('x', 'y')",
    "UPDATE rlsctl.encrypted_column SET column_name = 'x'",
    "DELETE FROM rlsctl.encrypted_column",
])  # fmt: skip
def test_only_the_keys_role_reaches_the_key_store(encrypted_db, role, statement):
    """The key store and its registry: every other role is refused outright."""
    with encrypted_db.connect(autocommit=False) as conn:
        become(conn, encrypted_db, role)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_the_keys_role_reads_its_registry(encrypted_db):
    """The allowed side of the test above: rlsctl keys reads the registry as the keys role."""
    with encrypted_db.connect(autocommit=False) as conn:
        conn.execute("SELECT set_config('role', %s, true)", (encrypted_db.role("keys"),))
        rows = conn.execute("SELECT table_name, column_name FROM rlsctl.encrypted_column").fetchall()
    assert set(rows) == {("PerformanceMetrics", "errorMessage"), ("UsageAnalytics", "metadata")}


def test_a_session_with_a_short_key_encryption_key_cannot_encrypt(encrypted_db):
    """The SQL side refuses a guessable KEK too, not only rlsctl's own commands."""
    with encrypted_db.connect(autocommit=False) as conn:
        as_app(conn, encrypted_db, "u1")
        conn.execute("SET LOCAL rlsctl.master_key = 'password123'")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="shorter than 32 characters"):
            conn.execute(
                """INSERT INTO "PerformanceMetrics"(id, "promptId", "responseTime", success, "errorMessage")
                   VALUES ('pm9', 'p1', 10, false, 'x')"""
            )


REFUSED = "refusing to store rlsctl ciphertext"


@pytest.mark.parametrize("forged", ["rlsctl1:kforged:AAAA", "rlsctl1:"])
def test_the_app_cannot_plant_ciphertext(encrypted_db, forged):
    """A value shaped like ciphertext is refused, whatever its key (nothing is decrypted to decide)."""
    with encrypted_db.connect(autocommit=False) as conn:
        as_app(conn, encrypted_db, "u1")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=REFUSED):
            conn.execute(
                """INSERT INTO "PerformanceMetrics"(id, "promptId", "responseTime", success, "errorMessage")
                   VALUES ('pm2', 'p1', 10, false, %s)""",
                (forged,),
            )


def test_ciphertext_copied_into_another_row_is_refused_not_decryptable_there(encrypted_db):
    """Ciphertext is not bound to its row: accepting a copy would let whoever supplies it
    (an analyst who reads every team's ciphertext, a dump) have it decrypted through the app."""
    with encrypted_db.connect(autocommit=False) as conn:
        as_app(conn, encrypted_db, "u1")
        conn.execute(
            """INSERT INTO "PerformanceMetrics"(id, "promptId", "responseTime", success, "errorMessage")
               VALUES ('pm3', 'p1', 10, false, %s)""",
            (CANARY,),
        )
        conn.execute(
            """INSERT INTO "UsageAnalytics"(id, "userId", feature, metadata)
               VALUES ('ua3', 'u1', 'f', %s), ('ua4', 'u1', 'f', '{"mine": 1}')""",
            (json.dumps({"secret": CANARY}),),
        )
        text_copy = conn.execute("""SELECT "errorMessage" FROM "PerformanceMetrics" WHERE id = 'pm3'""").fetchone()[0]
        json_copy = conn.execute("""SELECT metadata FROM "UsageAnalytics" WHERE id = 'ua3'""").fetchone()[0]
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=REFUSED), conn.transaction():
            conn.execute(
                """INSERT INTO "PerformanceMetrics"(id, "promptId", "responseTime", success, "errorMessage")
                   VALUES ('pm4', 'p1', 10, false, %s)""",
                (text_copy,),
            )
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=REFUSED), conn.transaction():
            conn.execute("""UPDATE "UsageAnalytics" SET metadata = %s WHERE id = 'ua4'""", (json.dumps(json_copy),))
        conn.rollback()


def test_an_unchanged_ciphertext_saved_back_is_left_alone(encrypted_db):
    """An ORM that saves the whole row sends back the ciphertext it read: an unchanged column is untouched."""
    with encrypted_db.connect(autocommit=False) as conn:
        as_app(conn, encrypted_db, "u1")
        conn.execute(
            """INSERT INTO "UsageAnalytics"(id, "userId", feature, metadata) VALUES ('ua5', 'u1', 'f', %s)""",
            (json.dumps({"secret": CANARY}),),
        )
        read = conn.execute("""SELECT metadata FROM "UsageAnalytics" WHERE id = 'ua5'""").fetchone()[0]
        updated = conn.execute(
            """UPDATE "UsageAnalytics" SET metadata = %s, "usageCount" = 2 WHERE id = 'ua5'""", (json.dumps(read),)
        ).rowcount
        stored, plain = conn.execute(
            """SELECT metadata, rlsctl.decrypt(metadata) FROM "UsageAnalytics" WHERE id = 'ua5'"""
        ).fetchone()
        conn.rollback()
    assert updated == 1 and stored == read and plain == {"secret": CANARY}


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
        assert 0 < pending(keys, column, "encrypt") < 401  # some done, some not
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
    monkeypatch.setenv("PGOPTIONS", "-c rlsctl.master_key=not-the-right-one-but-long-enough-0123456789")
    code, out = cli(database, "keys", "rotate", root=root)
    assert code == 2 and "does not unwrap the data keys" in out
    code, out = cli(database, "apply", root=root)
    assert code == 2 and "does not unwrap the data keys" in out and "nothing was changed" in out
    monkeypatch.setenv("PGOPTIONS", "")
    code, out = cli(database, "keys", "rotate", root=root)
    assert code == 2 and "rlsctl.master_key is not set" in out
    monkeypatch.setenv("PGOPTIONS", "-c rlsctl.master_key=password123")
    for command in (("keys", "rotate"), ("apply",)):
        code, out = cli(database, *command, root=root)
        assert code == 2 and "shorter than 32 characters" in out
    monkeypatch.undo()
    with database.connect() as conn:
        assert conn.execute("SELECT id, wrapped FROM rlsctl.encryption_key ORDER BY id").fetchall() == keys_before


def test_apply_refuses_without_a_key_encryption_key(db, monkeypatch):
    monkeypatch.setenv("PGOPTIONS", "")
    code, out = cli(db, "migrate")
    assert code == 0, out
    before = fingerprint(db)
    code, out = cli(db, "apply")
    assert code == 2 and "rlsctl.master_key is not set" in out and "nothing was changed" in out
    assert fingerprint(db) == before  # roles, policies, helpers, RLS flags, grants: untouched
    with db.connect() as conn:
        assert conn.execute("SELECT to_regclass('rlsctl.encryption_key')").fetchone()[0] is None
        assert conn.execute("SELECT to_regclass('rlsctl.encrypted_column')").fetchone()[0] is None


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
        # A fully decrypted column leaves the registry of encrypted columns, and apply does not put it back.
        assert ("UsageAnalytics", "metadata") not in recorded_columns(db)
        migrate_and_apply(db, project=load_project(root, role_prefix=db.prefix))
        assert ("UsageAnalytics", "metadata") not in recorded_columns(db)
        # ...but never ciphertext: `keys decrypt` would open a value copied from another row.
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"UsageAnalytics\.metadata"):
            conn.execute(
                """UPDATE "UsageAnalytics" SET metadata = '{"rlsctl": 1, "key": "k1", "data": "x"}' WHERE id = 'ua1'"""
            )


def test_status_names_keys_and_counts_but_never_key_bytes(version_db):
    database, root = version_db
    code, out = cli(database, "keys", "status", "--format", "json", root=root)
    assert code == 0, out
    report = json.loads(out)
    assert [key["active"] for key in report["keys"]] == [True]
    assert {"column": "PromptVersion.content", "key": None, "values": 400} in report["usage"]
    assert all(set(key) == {"id", "active", "retired", "created_at", "retired_at"} for key in report["keys"])


def test_old_ciphertext_saved_back_after_a_rotation_is_refused_and_the_row_keeps_its_value(version_db):
    database, root = version_db
    assert cli(database, "keys", "encrypt", root=root)[0] == 0
    with database.connect() as conn:
        stale = conn.execute("""SELECT content FROM "PromptVersion" WHERE id = 'v8'""").fetchone()[0]
    assert cli(database, "keys", "rotate", root=root)[0] == 0  # v8 is now under the new key
    with database.connect() as conn, pytest.raises(psycopg.errors.InvalidParameterValue, match=REFUSED):
        conn.execute("""UPDATE "PromptVersion" SET content = %s WHERE id = 'v8'""", (stale,))
    assert contents(database)["v8"][1] == CANARY + "-8"


def test_a_transaction_that_began_before_a_rotation_cannot_write_with_the_old_key(version_db):
    """REPEATABLE READ still sees the old key: its write fails to serialize instead of losing data."""
    database, root = version_db
    assert cli(database, "keys", "encrypt", root=root)[0] == 0
    with database.connect(autocommit=False) as early:
        early.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        early.execute('SELECT count(*) FROM "PromptVersion"')  # its snapshot is taken
        code, out = cli(database, "keys", "rotate", "--format", "json", root=root)
        assert code == 0, out
        assert json.loads(out[out.index("{") :])["retired"]
        with pytest.raises(psycopg.errors.SerializationFailure):
            early.execute(
                """INSERT INTO "PromptVersion"(id, "promptId", version, content, "createdBy")
                   VALUES ('late', 'p1', 999, 'late', 'u1')"""
            )
    assert all(plain is not None for _, plain in contents(database).values())


def test_rotation_waits_for_a_transaction_that_is_encrypting(version_db):
    database, root = version_db
    assert cli(database, "keys", "encrypt", root=root)[0] == 0
    with database.connect(autocommit=False) as writer:
        writer.execute(
            """INSERT INTO "PromptVersion"(id, "promptId", version, content, "createdBy")
               VALUES ('busy', 'p1', 998, 'busy', 'u1')"""
        )  # holds the key lock (shared) until it ends
        project = load_project(root, role_prefix=database.prefix)
        with database.connect() as conn:
            keys = Keys(conn, project, "test")
            with pytest.raises(UsageError, match="kept the active key busy"):
                keys.new_key(wait=0.5)
        writer.commit()
    assert cli(database, "keys", "rotate", root=root)[0] == 0
    assert contents(database)["busy"][1] == "busy"


def test_a_waiting_rotation_holds_back_new_writers_then_they_use_the_new_key(version_db):
    """No starvation: writers that arrive while a rotation waits queue behind it."""
    database, root = version_db
    assert cli(database, "keys", "encrypt", root=root)[0] == 0
    project = load_project(root, role_prefix=database.prefix)
    with database.connect() as conn:
        old = Keys(conn, project, "test").active_key()
    with database.connect(autocommit=False) as first, database.connect(autocommit=False) as second:
        first.execute(
            """INSERT INTO "PromptVersion"(id, "promptId", version, content, "createdBy")
               VALUES ('w1', 'p1', 990, 'w1', 'u1')"""
        )
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            rotation = pool.submit(_new_key_in_own_connection, database, project)
            _wait_for_lock_waiters(database, 1)
            second.execute("SET lock_timeout = '300ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):  # queued behind the rotation
                second.execute(
                    """INSERT INTO "PromptVersion"(id, "promptId", version, content, "createdBy")
                       VALUES ('w2', 'p1', 991, 'w2', 'u1')"""
                )
            second.rollback()
            first.commit()  # the rotation proceeds
            new = rotation.result(timeout=30)
        second.execute(
            """INSERT INTO "PromptVersion"(id, "promptId", version, content, "createdBy")
               VALUES ('w2', 'p1', 991, 'w2', 'u1')"""
        )
        second.commit()
    assert new != old
    with database.connect() as conn:
        stored = dict(conn.execute("""SELECT id, content FROM "PromptVersion" WHERE id IN ('w1', 'w2')""").fetchall())
    assert f":{old}:" in stored["w1"] and f":{new}:" in stored["w2"]


def _new_key_in_own_connection(database: TestDatabase, project) -> str:
    with database.connect() as conn:
        return Keys(conn, project, "test").new_key(wait=30, attempt=30)  # one long wait: stays queued


def _wait_for_lock_waiters(database: TestDatabase, count: int) -> None:
    with database.connect() as conn:
        for _ in range(200):
            waiting = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()[0]
            if waiting >= count:
                return
            time.sleep(0.05)
    raise AssertionError("the rotation never queued for the key lock")


def test_a_rotation_between_the_count_and_the_retirement_cannot_erase_a_key_in_use(version_db, monkeypatch):
    """The race a retirement must survive: a key active when the count ran gets values and is
    replaced before the UPDATE that retires keys. Only keys inactive before the count are candidates."""
    database, root = version_db
    assert cli(database, "keys", "encrypt", root=root)[0] == 0
    project = load_project(root, role_prefix=database.prefix)
    with database.connect() as conn:
        keys = Keys(conn, project, "test")
        oldest = keys.active_key()
        first = keys.new_key()  # the oldest key becomes a candidate for retirement
        conn.execute('DELETE FROM "PromptVersion"')  # nothing under any key any more
        real_sql = Keys.sql

        def interleaved(self, name, **context):
            if name == "keys_retire":  # after the count: a write under the active key, then a rotation
                with database.connect() as other:
                    other.execute(
                        """INSERT INTO "PromptVersion"(id, "promptId", version, content, "createdBy")
                           VALUES ('late', 'p1', 1, 'written under the first key', 'u1')"""
                    )
                    Keys(other, project, "other").new_key()
            return real_sql(self, name, **context)

        monkeypatch.setattr(Keys, "sql", interleaved)
        assert retire_unused(keys) == (oldest,)
        monkeypatch.undo()
        assert conn.execute("SELECT wrapped IS NOT NULL FROM rlsctl.encryption_key WHERE id = %s", (first,)).fetchone()[
            0
        ]
        assert conn.execute("""SELECT rlsctl.decrypt(content) FROM "PromptVersion" WHERE id = 'late'""").fetchone() == (
            "written under the first key",
        )


def test_rotate_makes_a_new_key_even_while_plaintext_waits_for_a_backfill(version_db):
    """Only values under an older key mean an interrupted rotation; plaintext is encrypted on the way."""
    database, root = version_db  # 400 plaintext values, never backfilled
    with database.connect() as conn:
        before = Keys(conn, load_project(root, role_prefix=database.prefix), "test").active_key()
    code, out = cli(database, "keys", "rotate", "--format", "json", root=root)
    assert code == 0, out
    report = json.loads(out[out.index("{") :])
    assert report["new_key"] not in (None, before) and report["resumed"] is False
    assert all(plain is not None for _, plain in contents(database).values())


def test_a_row_held_by_another_transaction_is_skipped_and_reported_not_waited_for(version_db):
    database, root = version_db
    with database.connect(autocommit=False) as holder, concurrent.futures.ThreadPoolExecutor(1) as pool:
        holder.execute("""SELECT 1 FROM "PromptVersion" WHERE id = 'v5' FOR UPDATE""")
        running = pool.submit(cli, database, "keys", "encrypt", "--format", "json", root=root)
        try:
            code, out = running.result(timeout=60)  # never spins on the held row
        finally:
            holder.rollback()  # lets a run that would spin finish, so a regression fails instead of hanging
    assert code == 1, out
    report = json.loads(out[out.index("{") :])
    remaining = {column["column"]: column["remaining"] for column in report["columns"]}
    assert remaining["PromptVersion.content"] == 1 and sum(remaining.values()) == 1
    assert cli(database, "keys", "encrypt", root=root)[0] == 0  # once released, a second run finishes it


def test_plaintext_shaped_like_ciphertext_from_before_encryption_is_encrypted_as_plaintext(version_db, tmp_path):
    """Text written before the column was encrypted may start with rlsctl1: by chance (or malice);
    it must neither block key management nor be taken for ciphertext."""
    database, root = version_db
    odd = "rlsctl1:knotakey:not-base64"
    with database.connect() as conn:
        conn.execute("SET session_replication_role = replica")  # as before encryption: no trigger
        conn.execute("""UPDATE "PromptVersion" SET content = %s WHERE id = 'v3'""", (odd,))
        assert conn.execute("SELECT rlsctl.decrypt(%s::text)", (odd,)).fetchone()[0] == odd  # not a key here
    assert cli(database, "keys", "encrypt", root=root)[0] == 0
    assert cli(database, "keys", "rotate", root=root)[0] == 0
    stored, plain = contents(database)["v3"]
    assert plain == odd and stored != odd
    # ...and a rollback decrypts it back to itself (the check compares values, not shapes)
    rolled = project_with(
        tmp_path / "rollback", "    # encrypted: [content]    # opt-in", "    decrypting: [content]    # opt-in"
    )
    code, out = cli(database, "apply", root=rolled)
    assert code == 0, out
    code, out = cli(database, "keys", "decrypt", "PromptVersion.content", root=rolled)
    assert code == 0, out
    assert contents(database)["v3"] == (odd, odd)


def test_a_value_that_does_not_decrypt_is_named_as_the_values_fault_not_the_keys(version_db):
    database, root = version_db
    assert cli(database, "keys", "encrypt", root=root)[0] == 0
    with database.connect() as conn:
        kid = conn.execute("SELECT id FROM rlsctl.encryption_key WHERE active").fetchone()[0]
        conn.execute("SET session_replication_role = replica")  # a superuser bypassing the trigger
        conn.execute("""UPDATE "PromptVersion" SET content = %s WHERE id = 'v4'""", (f"rlsctl1:{kid}:AAAA",))
    code, out = cli(database, "keys", "rotate", root=root)
    assert code == 2 and "PromptVersion.content: a value did not decrypt with the key it names" in out
    assert "key-encryption key" not in out


def test_one_keys_run_at_a_time(version_db):
    database, root = version_db
    with database.connect() as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", (locks.CLASS, locks.KEYS_RUN))  # another rlsctl keys run
        code, out = cli(database, "keys", "rotate", root=root)
        assert code == 2 and "another rlsctl keys run" in out
    assert cli(database, "keys", "rotate", root=root)[0] == 0


def recorded_columns(database: TestDatabase) -> set[tuple[str, str]]:
    with database.connect() as conn:
        return set(conn.execute("SELECT table_name, column_name FROM rlsctl.encrypted_column").fetchall())


def test_apply_records_every_encrypted_column(encrypted_db):
    assert recorded_columns(encrypted_db) == {("PerformanceMetrics", "errorMessage"), ("UsageAnalytics", "metadata")}


def test_a_column_dropped_from_encrypted_without_decrypting_keeps_its_keys(version_db):
    """The policy files forget PromptVersion.content while it holds ciphertext: no key it needs is retired."""
    database, root = version_db
    assert cli(database, "keys", "encrypt", root=root)[0] == 0
    assert ("PromptVersion", "content") in recorded_columns(database)
    assert cli(database, "apply")[0] == 0  # the shipped project: the opt-in is commented out again
    code, out = cli(database, "keys", "rotate", "--format", "json")
    assert code == 0, out
    report = json.loads(out[out.index("{") :])
    assert report["retired"] == [] and "PromptVersion.content was encrypted" in report["retire_blocked"]
    code, out = cli(database, "keys", "retire")
    assert code == 2 and "declare it `decrypting:`" in out and "no key was retired" in out
    assert all(plain.startswith(CANARY) for _, plain in contents(database).values())


def test_a_key_store_from_before_the_registry_gets_it_on_the_next_apply(db):
    migrate_and_apply(db)
    with db.connect() as conn:
        conn.execute("DROP TABLE rlsctl.encrypted_column")  # as a key store made before the registry existed
    migrate_and_apply(db)
    assert recorded_columns(db) == {("PerformanceMetrics", "errorMessage"), ("UsageAnalytics", "metadata")}


def test_a_forgery_planted_while_a_column_was_plaintext_stops_its_first_encryption(version_db):
    """The app reads the id of a live key from a column it may read raw, and plants a value in the
    shape of ciphertext under that key into a column not encrypted yet: encrypting that column
    must stop, or every reader of the row (and every later rotation) would fail on it."""
    database, root = version_db  # the opt-in is declared in `root`; the shipped project does not encrypt content
    assert cli(database, "apply")[0] == 0  # back to the shipped project: PromptVersion.content is plaintext again
    with database.connect() as conn:
        conn.execute("""DELETE FROM rlsctl.encrypted_column WHERE table_name = 'PromptVersion'""")
        kid = conn.execute("SELECT id FROM rlsctl.encryption_key WHERE active").fetchone()[0]
        conn.execute("""UPDATE "PromptVersion" SET content = %s WHERE id = 'v7'""", (f"rlsctl1:{kid}:AAAA",))
    code, out = cli(database, "apply", root=root)
    assert code == 2 and "PromptVersion.content is being encrypted for the first time" in out and "v7" in out
    with database.connect() as conn:  # nothing was changed: still plaintext, not recorded
        assert not conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'zz_rlsctl_encrypt' AND tgrelid = "
                                """'"PromptVersion"'::regclass""").fetchone()[0]  # fmt: skip
    assert ("PromptVersion", "content") not in recorded_columns(database)
    with database.connect() as conn:
        conn.execute("""UPDATE "PromptVersion" SET content = 'fixed' WHERE id = 'v7'""")
    assert cli(database, "apply", root=root)[0] == 0


def test_a_renamed_encrypted_column_keeps_its_keys_and_a_dropped_one_can_be_forgotten(version_db):
    """A migration outside rlsctl renames the column: its ciphertext still needs the keys."""
    database, root = version_db
    assert cli(database, "keys", "encrypt", root=root)[0] == 0
    with database.connect() as conn:
        conn.execute('ALTER TABLE "PromptVersion" RENAME COLUMN content TO body')
    code, out = cli(database, "keys", "rotate", "--format", "json", root=root)
    assert code == 0, out
    report = json.loads(out[out.index("{") :])
    assert report["retired"] == [] and "if it was renamed, declare the new name" in report["retire_blocked"]
    code, out = cli(database, "keys", "forget", "UsageAnalytics.metadata", root=root)
    assert code == 2 and "still exists and may hold ciphertext" in out
    with database.connect() as conn:
        assert conn.execute("""SELECT count(rlsctl.decrypt(body)) FROM "PromptVersion" """).fetchone()[0] == 400
        conn.execute('ALTER TABLE "PromptVersion" DROP COLUMN body')  # now the data is really gone
    code, out = cli(database, "keys", "forget", "PromptVersion.content", root=root)
    assert code == 0, out
    assert ("PromptVersion", "content") not in recorded_columns(database)
    code, out = cli(database, "keys", "retire", "--format", "json", root=root)
    assert code == 0 and json.loads(out[out.index("{") :])["retired"], out


def test_a_renamed_encrypted_column_moves_its_record_and_stays_encrypted_under_its_new_name(version_db, tmp_path):
    """Following the advice for a rename: move the record, declare the new name, apply, rotate."""
    database, root = version_db
    assert cli(database, "keys", "encrypt", root=root)[0] == 0
    before = contents(database)
    with database.connect() as conn:
        conn.execute('ALTER TABLE "PromptVersion" RENAME COLUMN content TO body')
    renamed = project_with(tmp_path / "renamed", OPT_IN[0], "    encrypted: [body]    # opt-in")
    prompts = renamed / "policies" / "prompts.yaml"
    text = prompts.read_text()
    version_secrets = "      content: [app]\n    encrypted: [body]"
    assert version_secrets in text
    prompts.write_text(text.replace(version_secrets, "      body: [app]\n    encrypted: [body]"))
    # Declared under its new name before the record moves: a first encryption, refused.
    code, out = cli(database, "apply", root=renamed)
    assert code == 2 and "PromptVersion.body is being encrypted for the first time" in out
    code, out = cli(
        database, "keys", "forget", "PromptVersion.content", "--renamed-to", "PromptVersion.nope", root=root
    )
    assert code == 2 and "PromptVersion.nope does not exist" in out
    code, out = cli(
        database, "keys", "forget", "PromptVersion.content", "--renamed-to", "PromptVersion.body", root=root
    )
    assert code == 0, out
    assert ("PromptVersion", "body") in recorded_columns(database)
    assert ("PromptVersion", "content") not in recorded_columns(database)
    code, out = cli(database, "apply", root=renamed)
    assert code == 0, out
    code, out = cli(database, "keys", "rotate", "--format", "json", root=renamed)
    assert code == 0, out
    report = json.loads(out[out.index("{") :])
    assert report["retired"] and not report["retire_blocked"], report
    with database.connect() as conn:
        after = dict(conn.execute("""SELECT id, rlsctl.decrypt(body) FROM "PromptVersion" """).fetchall())
    assert after == {key: plaintext for key, (_, plaintext) in before.items()}
