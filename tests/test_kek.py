"""The key-encryption key's lifecycle: `rlsctl keys rewrap` rotates it, and file mode keeps it
out of every login's reach.

- rewrap: with the current key as usual and the next one in this session's
  `rlsctl.master_key_new`, every data key is wrapped under both; sessions holding either
  key decrypt until `--finish`, after which the old key unwraps nothing. Values are not
  rewritten; API keys keep working.
- file mode: the key lives in a file on the server, read only by the keys role (through
  pg_read_file); no login, the application's included, can SHOW or read it.
- `rlsctl keys status` says which mode is in use and warns when every login can read the key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pgerrors

from tests.conftest import TEST_MASTER_KEY, TestDatabase, migrate_and_apply
from tests.test_encryption import cli, project_with, seed

NEW_KEY = "kek-next-" + secrets.token_hex(24)
SECRET = "boom: the error text nobody else may read"
RAW_API_KEY = "pc_kek_test_key"


def options(key: str, new: str | None = None) -> str:
    found = f"-c rlsctl.master_key={key}"
    return found + (f" -c rlsctl.master_key_new={new}" if new else "")


@pytest.fixture
def live_db(db: TestDatabase) -> TestDatabase:
    """Applied PromptCraft with encrypted values and a live API key."""
    migrate_and_apply(db)
    with db.connect() as conn:
        seed(conn)
        conn.execute("""INSERT INTO "PerformanceMetrics"(id, "promptId", "responseTime", success, "errorMessage")
                        VALUES ('pm1', 'p1', 1, false, %s)""", (SECRET,))  # fmt: skip
        conn.execute(
            """INSERT INTO "ApiKey"(id, "teamId", name, "hashedKey", scopes)
               VALUES ('k1', 't1', 'read', %s, '{prompts:read, analytics:read}')""",
            (hashlib.sha256(RAW_API_KEY.encode()).hexdigest(),),
        )
    return db


def read_secret(database: TestDatabase, key: str | None) -> str:
    """The metric's error message as the app decrypts it, in a session holding `key` (or none)."""
    extra = {"options": options(key)} if key else {"options": ""}
    with database.connect(autocommit=False, **extra) as conn:
        conn.execute("SELECT set_config('role', %s, true), set_config('app.user_id', 'u1', true)",
                     (database.role("app"),))  # fmt: skip
        return conn.execute("""SELECT rlsctl.decrypt("errorMessage") FROM "PerformanceMetrics" WHERE id = 'pm1'""").fetchone()[0]


def api_key_reads(database: TestDatabase, key: str) -> list[str]:
    with database.connect(autocommit=False, options=options(key)) as conn:
        conn.execute("SELECT set_config('role', %s, true)", (database.role("app"),))
        assert conn.execute("SELECT rlsctl.authenticate_api_key(%s)", (RAW_API_KEY,)).fetchone()[0] is True
        return [row[0] for row in conn.execute('SELECT id FROM "Prompt"')]


def run(database: TestDatabase, monkeypatch: pytest.MonkeyPatch, pgoptions: str, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("PGOPTIONS", pgoptions)
    try:
        return cli(database, *args)
    finally:
        monkeypatch.setenv("PGOPTIONS", options(TEST_MASTER_KEY))


def stored(database: TestDatabase) -> str:
    with database.connect() as conn:
        return conn.execute("""SELECT "errorMessage" FROM "PerformanceMetrics" WHERE id = 'pm1'""").fetchone()[0]


def test_rewrap_then_finish_rotates_the_key_encryption_key(live_db, monkeypatch):
    ciphertext = stored(live_db)
    code, output = run(live_db, monkeypatch, options(TEST_MASTER_KEY, NEW_KEY), "keys", "rewrap")
    assert code == 0, output
    assert "verified: PerformanceMetrics.errorMessage: 1 values" in output
    # Meanwhile a backend with either key decrypts, and nothing was rewritten.
    assert read_secret(live_db, TEST_MASTER_KEY) == SECRET
    assert read_secret(live_db, NEW_KEY) == SECRET
    assert stored(live_db) == ciphertext
    code, output = run(live_db, monkeypatch, options(TEST_MASTER_KEY), "keys", "rotate")
    assert code == 2 and "rewrap --finish" in output, output
    code, output = run(live_db, monkeypatch, options(TEST_MASTER_KEY), "keys", "status", "--format", "json")
    assert json.loads(output)["key_encryption_key"]["rewrap_pending_keys"] == 1
    # --finish needs the new key in the session: with the old one it changes nothing.
    code, output = run(live_db, monkeypatch, options(TEST_MASTER_KEY), "keys", "rewrap", "--finish")
    assert code == 2 and "not the next one yet" in output, output
    assert read_secret(live_db, TEST_MASTER_KEY) == SECRET
    code, output = run(live_db, monkeypatch, options(NEW_KEY), "keys", "rewrap", "--finish")
    assert code == 0, output
    assert read_secret(live_db, NEW_KEY) == SECRET
    with pytest.raises(pgerrors.ExternalRoutineInvocationException):
        read_secret(live_db, TEST_MASTER_KEY)  # the old key unwraps nothing any more
    assert stored(live_db) == ciphertext
    assert api_key_reads(live_db, NEW_KEY) == ["p1"]
    # Everything works under the new key: a rotation of the data keys, then new writes.
    assert run(live_db, monkeypatch, options(NEW_KEY), "keys", "rotate")[0] == 0
    assert read_secret(live_db, NEW_KEY) == SECRET


@pytest.mark.parametrize(
    "new, message",
    [
        (None, "is not set for this session"),
        ("short", "shorter than 32 characters"),
        ("current", "is the current key-encryption key"),
    ],
    ids=["missing", "weak", "unchanged"],
)
def test_rewrap_refuses_a_missing_weak_or_unchanged_next_key(live_db, monkeypatch, new, message):
    new = TEST_MASTER_KEY if new == "current" else new
    code, output = run(live_db, monkeypatch, options(TEST_MASTER_KEY, new), "keys", "rewrap")
    assert code == 2 and message in output, output
    code, output = run(live_db, monkeypatch, options(TEST_MASTER_KEY), "keys", "status", "--format", "json")
    assert json.loads(output)["key_encryption_key"]["rewrap_pending_keys"] == 0


def test_finish_without_a_rewrap_changes_nothing(live_db, monkeypatch):
    code, output = run(live_db, monkeypatch, options(TEST_MASTER_KEY), "keys", "rewrap", "--finish")
    assert code == 2 and "no key-encryption key rotation is under way" in output
    assert read_secret(live_db, TEST_MASTER_KEY) == SECRET


def test_status_warns_when_every_login_can_read_the_key(live_db, monkeypatch):
    code, output = run(live_db, monkeypatch, options(TEST_MASTER_KEY), "keys", "status")
    assert code == 0 and "key-encryption key: setting rlsctl.master_key" in output and "warning" not in output
    with live_db.connect() as conn:
        conn.execute(f"ALTER DATABASE {live_db.name} SET rlsctl.master_key = '{TEST_MASTER_KEY}'")
    code, output = run(live_db, monkeypatch, options(TEST_MASTER_KEY), "keys", "status")
    assert code == 0, output
    assert f"rlsctl.master_key is in ALTER DATABASE {live_db.name} SET: every login reads it" in output


# -- file mode ------------------------------------------------------------------------------------


@pytest.fixture
def key_file(db: TestDatabase):
    """A key file the server writes (so its own OS user owns it), outside its data directory."""
    path = f"/tmp/rlsctl-kek-{secrets.token_hex(6)}"
    write_key_file(db, path, "kek-file-" + secrets.token_hex(24))
    yield path
    with contextlib.suppress(OSError):
        os.remove(path)


def write_key_file(database: TestDatabase, path: str, key: str) -> None:
    with database.connect() as conn:
        conn.execute(psycopg.sql.SQL("COPY (SELECT {}) TO {}").format(psycopg.sql.Literal(key), psycopg.sql.Literal(path)))


@pytest.fixture
def file_project(tmp_path: Path, key_file: str) -> Path:
    return project_with(
        tmp_path,
        "    master_key_setting: rlsctl.master_key",
        f"    master_key_setting: rlsctl.master_key\n    master_key_file: {key_file}",
        "project.yaml",
    )


def secured_in_file_mode(db: TestDatabase, file_project: Path) -> None:
    """The project migrated and applied with its key in a file, and one encrypted secret written."""
    migrate_and_apply(db, project=db.project(file_project))
    with db.connect(options="") as conn:
        seed(conn)
        conn.execute("""INSERT INTO "PerformanceMetrics"(id, "promptId", "responseTime", success, "errorMessage")
                        VALUES ('pm1', 'p1', 1, false, %s)""", (SECRET,))  # fmt: skip


def test_file_mode_keeps_the_key_out_of_every_logins_reach(db, monkeypatch, key_file, file_project):
    monkeypatch.setenv("PGOPTIONS", "")  # no session has the key as a setting
    secured_in_file_mode(db, file_project)
    assert stored(db).startswith("rlsctl1:")
    assert read_secret(db, None) == SECRET  # the app decrypts without ever holding the key
    with db.connect(autocommit=False, options="") as conn:
        conn.execute("SELECT set_config('role', %s, true), set_config('app.user_id', 'u1', true)", (db.role("app"),))
        assert conn.execute("SELECT current_setting('rlsctl.master_key', true)").fetchone()[0] in (None, "")
        for attack in (f"SELECT pg_read_file('{key_file}')", "SELECT rlsctl.master_key()"):
            with pytest.raises(pgerrors.InsufficientPrivilege), conn.transaction():
                conn.execute(attack)
    code, output = cli(db, "keys", "status", root=file_project)
    assert code == 0 and f"key-encryption key: file {key_file}" in output and "warning" not in output, output
    assert cli(db, "drift", root=file_project)[0] == 0


def test_file_mode_rewrap_follows_a_replaced_key_file(db, monkeypatch, key_file, file_project):
    monkeypatch.setenv("PGOPTIONS", "")
    secured_in_file_mode(db, file_project)
    monkeypatch.setenv("PGOPTIONS", f"-c rlsctl.master_key_new={NEW_KEY}")
    code, output = cli(db, "keys", "rewrap", root=file_project)
    assert code == 0, output
    monkeypatch.setenv("PGOPTIONS", "")
    write_key_file(db, key_file, NEW_KEY)  # every backend reads the file: the switch is at once
    assert read_secret(db, None) == SECRET
    code, output = cli(db, "keys", "rewrap", "--finish", root=file_project)
    assert code == 0, output
    assert read_secret(db, None) == SECRET


def test_file_mode_a_wrong_key_names_the_key_file(db, monkeypatch, key_file, file_project):
    """An outside check: a wrong key in the file was refused (exit 2, nothing changed) with a message
    naming rlsctl.master_key, a setting file mode does not use."""
    monkeypatch.setenv("PGOPTIONS", "")
    secured_in_file_mode(db, file_project)
    write_key_file(db, key_file, "kek-file-" + secrets.token_hex(24))  # another key in the same file
    code, output = cli(db, "keys", "rotate", root=file_project)
    assert code == 2, output
    assert f"is the key file {key_file} the one they were made with?" in output and "rlsctl.master_key" not in output


def test_the_live_lint_names_the_mode_and_warns_when_every_login_can_read_the_key(live_db):
    code, output = cli(live_db, "lint", "--live", "--fail-on", "warning")
    assert code == 0 and "key-encryption key: setting rlsctl.master_key" in output, output
    with live_db.connect() as conn:
        conn.execute(f"ALTER DATABASE {live_db.name} SET rlsctl.master_key = '{TEST_MASTER_KEY}'")
    code, output = cli(live_db, "lint", "--live", "--fail-on", "warning")
    assert code == 1 and "SEC018" in output and "every login reads it in pg_db_role_setting" in output, output
