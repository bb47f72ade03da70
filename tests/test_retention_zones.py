"""A retention window on a timestamptz column is counted from the current instant, whatever the
session's TimeZone. rlsctl compared the column with `now() AT TIME ZONE 'UTC'` minus the window,
which for a timestamptz column PostgreSQL converts back in the session's TimeZone: a session at
`UTC-167` moved every window by a week (the same fault an outside check found in API-key expiry).
"""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner
from psycopg import sql

from rlsctl.cli.main import main
from rlsctl.policy.project import load_project
from tests.conftest import ROOT, migrate_and_apply

ZONES = ["UTC", "UTC-167", "UTC+167"]


@pytest.fixture
def zoned(make_db, tmp_path):
    database = make_db()
    root = tmp_path / "project"
    for part in ("policies", "migrations"):
        shutil.copytree(ROOT / part, root / part)
    migration = root / "migrations" / "3_analytics" / "01_seed_plan.up.sql"
    text = migration.read_text()
    old = '"createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,\n    CONSTRAINT "PerformanceMetrics_pkey"'
    assert text.count(old) == 1
    migration.write_text(text.replace(old, old.replace("TIMESTAMP(3)", "TIMESTAMPTZ(3)")))
    project = migrate_and_apply(database, project=load_project(root, role_prefix=database.prefix))
    with database.connect() as conn:
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('ua', 'a@x', now())""")
        conn.execute("""INSERT INTO "Prompt"(id, title, content, "userId", "updatedAt") VALUES ('p', 't', 'c', 'ua', now())""")
        conn.execute(
            """INSERT INTO "PerformanceMetrics"(id, "promptId", "responseTime", success, "createdAt") VALUES
               ('days85', 'p', 1, true, now() - interval '85 days'),
               ('days95', 'p', 1, true, now() - interval '95 days')"""
        )
    return database, root, project


@pytest.mark.parametrize("zone", ZONES)
def test_the_retention_role_sees_as_expired_only_what_is_past_the_window(zoned, zone):
    database, _, project = zoned
    with database.connect(autocommit=False) as conn:
        conn.execute("SELECT set_config('TimeZone', %s, true)", (zone,))
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(project.role_name("retention"))))
        assert [row[0] for row in conn.execute('SELECT id FROM "PerformanceMetrics" ORDER BY id')] == ["days95"]
        conn.rollback()


@pytest.mark.parametrize("zone", ["UTC-167", "UTC+167"])
def test_a_retention_run_in_any_time_zone_removes_only_the_rows_past_the_window(zoned, zone, monkeypatch):
    database, root, _ = zoned
    monkeypatch.setenv("PGTZ", zone)
    arguments = ["retention", "run", "--table", "PerformanceMetrics", "--project", str(root)]
    result = CliRunner().invoke(main, [*arguments, "--dsn", database.dsn, "--role-prefix", database.prefix])
    assert result.exit_code == 0, result.output
    with database.connect() as conn:
        assert [row[0] for row in conn.execute('SELECT id FROM "PerformanceMetrics"')] == ["days85"]
