"""An API key's expiry holds whatever the session's TimeZone, for either kind of timestamp column.

rlsctl compared the expiry with `now() AT TIME ZONE 'UTC'`: right for a timestamp without time zone
(which holds UTC), wrong for a timestamptz column, which PostgreSQL then compared after converting
that UTC wall-clock time back in the session's TimeZone. The application's login may set it: with
`TimeZone = 'UTC-167'` a key that expired six days ago authenticated (an outside check), and keys
created with `--expires 2h` under PGTZ=Asia/Tokyo were already expired.
"""

from __future__ import annotations

import hashlib
import shutil

import pytest
from psycopg import sql

from rlsctl.policy.project import load_project
from tests.conftest import ROOT, migrate_and_apply

ZONES = ["UTC", "UTC-167", "UTC+167", "Asia/Tokyo", "America/Los_Angeles"]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module", params=["TIMESTAMP(3)", "TIMESTAMPTZ(3)"])
def keyed(request, make_module_db, tmp_path_factory):
    database = make_module_db()
    root = tmp_path_factory.mktemp("project")
    for part in ("policies", "migrations"):
        shutil.copytree(ROOT / part, root / part)
    migration = root / "migrations" / "4_enterprise_security" / "01_seed_plan.up.sql"
    text = migration.read_text()
    assert text.count('"expiresAt" TIMESTAMP(3),') == 1
    migration.write_text(text.replace('"expiresAt" TIMESTAMP(3),', f'"expiresAt" {request.param},'))
    project = migrate_and_apply(database, project=load_project(root, role_prefix=database.prefix))
    with database.connect() as conn:
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('ua', 'a@x', now())""")
        conn.execute("""INSERT INTO "Team"(id, name, "ownerId", "updatedAt") VALUES ('ta', 'A', 'ua', now())""")
        insert = sql.SQL(
            """INSERT INTO "ApiKey"(id, "teamId", name, "hashedKey", scopes, "expiresAt") VALUES
               ('old', 'ta', 'expired 6 days ago', %s, '{{prompts:read}}', {old}),
               ('new', 'ta', 'expires in an hour', %s, '{{prompts:read}}', {new})"""
        ).format(old=when(request.param, "- interval '6 days'"), new=when(request.param, "+ interval '1 hour'"))
        conn.execute(insert, (sha256("pc_old"), sha256("pc_new")))
    return database, project


def when(column_type: str, offset: str) -> sql.Composable:
    """now() + offset, stored as the column holds time: a timestamp column holds UTC."""
    now = "now()" if "TZ" in column_type else "(now() AT TIME ZONE 'UTC')"
    return sql.SQL(f"{now} {offset}")


@pytest.mark.parametrize("zone", ZONES)
def test_an_expired_key_stays_expired_and_a_live_one_live_in_any_time_zone(keyed, zone):
    database, _ = keyed
    with database.connect(autocommit=False) as conn:
        conn.execute("SELECT set_config('role', %s, true)", (database.role("app"),))
        conn.execute("SELECT set_config('TimeZone', %s, true)", (zone,))
        assert conn.execute("SELECT rlsctl.authenticate_api_key('pc_old')").fetchone()[0] is False
        conn.rollback()
        conn.execute("SELECT set_config('role', %s, true)", (database.role("app"),))
        conn.execute("SELECT set_config('TimeZone', %s, true)", (zone,))
        assert conn.execute("SELECT rlsctl.authenticate_api_key('pc_new')").fetchone()[0] is True
        conn.rollback()


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/Los_Angeles"])
def test_a_key_created_to_expire_in_two_hours_does_in_any_time_zone(keyed, zone):
    """create_api_key takes its expiry as UTC (the CLI sends `--expires 2h` so): stored as that instant."""
    database, _ = keyed
    with database.connect(autocommit=False) as conn:
        conn.execute("SELECT set_config('TimeZone', %s, true)", (zone,))
        conn.execute("SELECT set_config('role', %s, true)", (database.role("app"),))
        conn.execute("SELECT set_config('app.user_id', 'ua', true)")
        raw = conn.execute(
            "SELECT rlsctl.create_api_key('ta', 'two hours', '{prompts:read}', "
            "((now() AT TIME ZONE 'UTC') + interval '2 hours')::timestamp)"
        ).fetchone()[0]
        conn.execute("RESET ROLE")
        kind = conn.execute(
            """SELECT pg_typeof("expiresAt")::text FROM "ApiKey" WHERE "hashedKey" = %s""", (sha256(raw),)
        ).fetchone()[0]
        now = "now()" if kind == "timestamp with time zone" else "(now() AT TIME ZONE 'UTC')"
        hours = conn.execute(
            sql.SQL('SELECT extract(epoch FROM ("expiresAt" - {})) / 3600 FROM "ApiKey" WHERE "hashedKey" = %s').format(
                sql.SQL(now)
            ),
            (sha256(raw),),
        ).fetchone()[0]
        conn.rollback()
    assert 1.9 < float(hours) < 2.1, (zone, kind, hours)
