"""Keys and plaintext never leave the server through rlsctl: not in the statements it sends, not in a dump.

A throw-away cluster logs every statement (log_statement = 'all') and holds
its key-encryption key in postgresql.conf, as production would. rlsctl's own
commands run against it; then the server log and a pg_dump are searched for
the key-encryption key, every data key, a canary plaintext and a raw API key.
"""

from __future__ import annotations

import json
import secrets
import subprocess

import psycopg
import pytest
from click.testing import CliRunner

from rlsctl.cli.main import main
from rlsctl.pg import localpg
from rlsctl.pg.pgbin import bin_dir
from tests.conftest import ROOT

CANARY = "canary-" + secrets.token_hex(8)
MASTER_KEY = "kek-" + secrets.token_hex(24)


@pytest.fixture(scope="module")
def logged_cluster():
    settings = {"log_statement": "all", "log_min_error_statement": "error"}
    with localpg.temporary_cluster(settings, port=54331, secret_settings={"rlsctl.master_key": MASTER_KEY}) as cluster:
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE secrecy")
        yield cluster


def quiet(cluster) -> psycopg.Connection:
    """A superuser session the server does not log: the test's own writes and reads stay out of the log."""
    conn = psycopg.connect(cluster.dsn("secrecy"), autocommit=True)
    conn.execute("SET log_statement = 'none'")
    return conn


def rlsctl(cluster, *args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--dsn", cluster.dsn("secrecy"), "--project", str(ROOT)])
    assert result.exit_code == 0, result.output
    return result.output


def test_no_key_and_no_plaintext_in_the_log_or_the_dump(logged_cluster, monkeypatch, tmp_path):
    monkeypatch.setenv("PGOPTIONS", "")  # the key comes from postgresql.conf only, as in production
    rlsctl(logged_cluster, "migrate")
    rlsctl(logged_cluster, "apply")
    with quiet(logged_cluster) as conn:
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('ua', 'a@x', now())""")
        conn.execute("""INSERT INTO "Team"(id, name, "ownerId", "updatedAt") VALUES ('ta', 'A', 'ua', now())""")
        conn.execute("""INSERT INTO "Prompt"(id, title, content, "userId", "teamId", "updatedAt")
                        VALUES ('pa', 'A', 'x', 'ua', 'ta', now())""")
        conn.execute(
            """INSERT INTO "PerformanceMetrics"(id, "promptId", "responseTime", success, "errorMessage")
               VALUES ('pm1', 'pa', 1, false, %s)""",
            (CANARY + "-written",),
        )
        conn.execute("SET session_replication_role = replica")  # plaintext from before encryption
        conn.execute(
            """INSERT INTO "UsageAnalytics"(id, "userId", feature, metadata) VALUES ('u1', 'ua', 'f', %s)""",
            (json.dumps({"secret": CANARY + "-backfilled"}),),
        )
    rlsctl(logged_cluster, "keys", "encrypt")
    rlsctl(logged_cluster, "keys", "rotate")
    rlsctl(logged_cluster, "keys", "retire")
    rlsctl(logged_cluster, "keys", "status")
    raw_key = rlsctl(logged_cluster, "keys", "create-api-key", "--team", "ta", "--scope", "prompts:read").split()[-1]
    rlsctl(logged_cluster, "test")
    with quiet(logged_cluster) as conn:
        data_keys = [
            row[0]
            for row in conn.execute("SELECT rlsctl.data_key(id) FROM rlsctl.encryption_key WHERE wrapped IS NOT NULL")
        ]
        stored = conn.execute("""SELECT metadata::text FROM "UsageAnalytics" WHERE id = 'u1'""").fetchone()[0]
    assert data_keys and len(data_keys[0]) == 64
    assert CANARY not in stored  # the backfill happened: the search below would find nothing for a reason

    log = (logged_cluster.root / "server.log").read_text(errors="replace")
    assert "rlsctl.authenticate_api_key" in log or "create_api_key" in log  # the log really has rlsctl's statements
    secrets_ = {"key-encryption key": MASTER_KEY, "raw API key": raw_key, "canary": CANARY}
    secrets_.update({f"data key {n}": key for n, key in enumerate(data_keys)})
    for name, value in secrets_.items():
        assert value not in log, f"the server log holds the {name}"

    dump = tmp_path / "secrecy.sql"
    binaries = bin_dir()
    assert binaries is not None
    subprocess.run(
        [str(binaries / "pg_dump"), "--dbname", logged_cluster.dsn("secrecy"), "--file", str(dump)],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "PGOPTIONS": ""},
    )
    text = dump.read_text(errors="replace")
    assert "rlsctl1:" in text and "encryption_key" in text  # ciphertext and wrapped keys are in it
    for name, value in secrets_.items():
        assert value not in text, f"the dump holds the {name}"
    assert all(bytes.fromhex(key) not in dump.read_bytes() for key in data_keys)
