"""Retention (docs/retention.md): expired rows go, in batches, as the retention role; nothing
younger and nothing on hold ever does; only the hold role changes holds, and every change and
every run is recorded; pg_cron runs the same batches inside the database."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import errors as pgerrors
from psycopg import sql

from rlsctl.change import apply as applying
from rlsctl.change.drift import read_plan
from rlsctl.cli.main import main
from rlsctl.migrate import run as migrating
from rlsctl.pg.db import Target
from rlsctl.pg.localpg import temporary_cluster
from rlsctl.policy.project import load_project
from rlsctl.retention import Retention, run, schedule
from rlsctl.retention.schedule import TRIM_JOB, wanted_jobs
from tests.conftest import ROOT, TestDatabase, migrate_and_apply

TABLES = ("AuditLog", "PerformanceMetrics", "UsageAnalytics")
WINDOW = {
    "UsageAnalytics": ("lastUsedAt", 400),
    "PerformanceMetrics": ("createdAt", 90),
    "AuditLog": ("createdAt", 365),
}
# Ages around each window: just inside it (kept), just past it (expired), long past it.
AGES = {"young": "-1 hour", "expired": "+1 hour", "old": "+300 days"}


@pytest.fixture(scope="module")
def retention_db(make_module_db) -> TestDatabase:
    database = make_module_db()
    migrate_and_apply(database)
    with database.connect() as conn:
        for login, roles in (("alice", ("legal",)), ("mallory", ("app", "retention", "analyst"))):
            name = database.role(login)
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
            for role in roles:
                conn.execute(
                    sql.SQL("GRANT {} TO {}").format(sql.Identifier(database.role(role)), sql.Identifier(name))
                )
    return database


def seed(conn: psycopg.Connection, copies: int = 1) -> None:
    """Fresh rows: for each retention table, every age of AGES in team ta, team tb and no team.
    Written with the triggers off: the audit log's guard refuses TRUNCATE (docs/audit.md)."""
    conn.execute("SET session_replication_role = replica")
    conn.execute('TRUNCATE "UsageAnalytics", "PerformanceMetrics", "AuditLog", "Prompt", "Team", "User" CASCADE')
    conn.execute("DELETE FROM rlsctl.retention_hold")
    conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u', 'u@x', now())""")
    conn.execute(
        """INSERT INTO "Team"(id, name, "ownerId", "updatedAt") VALUES ('ta', 'A', 'u', now()), ('tb', 'B', 'u', now())"""
    )
    conn.execute(
        """INSERT INTO "Prompt"(id, title, content, "userId", "updatedAt", "teamId")
           VALUES ('pa', 't', 'c', 'u', now(), 'ta'), ('pb', 't', 'c', 'u', now(), 'tb')"""
    )
    # Every row a second older than the one before: no two rows share an age, so a batch of one
    # row is one row (a batch takes every row of the age it ends at).
    seconds = iter(range(10_000))
    for age, offset in AGES.items():
        for team in ("ta", "tb", None):
            for n in range(copies):
                key = f"{age}-{team or 'none'}-{n}"
                offset_s = f"{offset} {next(seconds)} seconds"
                conn.execute(
                    """INSERT INTO "UsageAnalytics"(id, "userId", "teamId", feature, "lastUsedAt")
                       VALUES (%s, 'u', %s, 'f', (now() AT TIME ZONE 'UTC') - interval '400 days' - %s::interval)""",
                    (key, team, offset_s),
                )
                conn.execute(
                    """INSERT INTO "AuditLog"(id, "userId", "teamId", action, "resourceType", "resourceId", "createdAt")
                       VALUES (%s, 'u', %s, 'a', 'r', 'x', (now() AT TIME ZONE 'UTC') - interval '365 days' - %s::interval)""",
                    (key, team, offset_s),
                )
                if team is not None:
                    conn.execute(
                        """INSERT INTO "PerformanceMetrics"(id, "promptId", "responseTime", success, "createdAt")
                           VALUES (%s, %s, 1, true, (now() AT TIME ZONE 'UTC') - interval '90 days' - %s::interval)""",
                        (key, "pa" if team == "ta" else "pb", offset_s),
                    )
    conn.execute("RESET session_replication_role")


def remaining(conn: psycopg.Connection, table: str) -> set[str]:
    """The seeded rows left (the audit log also records the runs and holds themselves: not counted)."""
    query = sql.SQL("SELECT id FROM {}").format(sql.Identifier(table))
    if table == "AuditLog":
        query = sql.SQL("{} WHERE \"userId\" IS DISTINCT FROM 'system:retention'").format(query)
    return {row[0] for row in conn.execute(query)}


def seeded(table: str, ages: tuple[str, ...], teams: tuple[str | None, ...] = ("ta", "tb", None)) -> set[str]:
    if table == "PerformanceMetrics":
        teams = tuple(team for team in teams if team is not None)
    return {f"{age}-{team or 'none'}-0" for age in ages for team in teams}


def cli(database: TestDatabase, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main, [*args, "--dsn", database.dsn, "--project", str(ROOT), "--role-prefix", database.prefix]
    )
    return result.exit_code, result.stdout, result.stderr


def as_login(database: TestDatabase, login: str) -> psycopg.Connection:
    return database.connect(user=database.role(login))


# -- apply ---------------------------------------------------------------------------------------


def test_apply_creates_retention_closed_to_everyone_but_its_functions(retention_db):
    with retention_db.connect() as conn:
        tables = conn.execute(
            """SELECT c.relname, pg_get_userbyid(c.relowner), c.relrowsecurity, c.relforcerowsecurity,
                      (SELECT count(*) FROM aclexplode(c.relacl) AS a WHERE a.grantee <> c.relowner)
               FROM pg_class AS c WHERE c.relnamespace = 'rlsctl'::regnamespace AND c.relname LIKE 'retention%%'
                 AND c.relkind = 'r' ORDER BY 1"""
        ).fetchall()
        functions = dict(
            conn.execute(
                """SELECT p.proname, pg_get_userbyid(p.proowner) || CASE WHEN p.prosecdef THEN ' definer' ELSE '' END
                   FROM pg_proc AS p WHERE p.pronamespace = 'rlsctl'::regnamespace AND p.proname LIKE 'retention%%'"""
            ).fetchall()
        )
        plan = read_plan(conn, retention_db.project(), "test", None)
    definer = retention_db.role("definer")
    assert tables == [
        (name, definer, True, False, 0) for name in ("retention_hold", "retention_hold_change", "retention_run")
    ]
    retention = retention_db.role("retention") + " definer"
    assert functions == {
        **{f"retention_{table}": retention for table in TABLES},
        **{
            name: definer + " definer"
            for name in ("retention_hold", "retention_release", "retention_holds", "retention_record")
        },
    }
    assert not plan.drift, [op.obj.key for op in plan.drift]


# -- the denied side -----------------------------------------------------------------------------


def test_only_the_hold_role_changes_holds_and_nobody_touches_the_records(retention_db):
    with retention_db.connect() as conn:
        seed(conn)
    with as_login(retention_db, "mallory") as conn:  # a member of app, retention and analyst
        for call in ("SELECT rlsctl.retention_hold('UsageAnalytics', NULL, 'no')",
                     "SELECT rlsctl.retention_release('UsageAnalytics', NULL, 'no')"):  # fmt: skip
            with pytest.raises(pgerrors.InsufficientPrivilege):
                conn.execute(call)
        for role in ("app", "retention", "analyst"):
            conn.execute("SELECT set_config('role', %s, false)", (retention_db.role(role),))
            with pytest.raises(pgerrors.InsufficientPrivilege):
                conn.execute("SELECT rlsctl.retention_hold('UsageAnalytics', NULL, 'no')")
    with as_login(retention_db, "alice") as conn:
        with pytest.raises(pgerrors.InvalidParameterValue, match="needs a reason"):
            conn.execute("SELECT rlsctl.retention_hold('UsageAnalytics', NULL, '  ')")
        with pytest.raises(pgerrors.InvalidParameterValue, match="declares no retention"):
            conn.execute("SELECT rlsctl.retention_hold('Prompt', NULL, 'not a retention table')")
        assert conn.execute("SELECT rlsctl.retention_hold('UsageAnalytics', 'ta', 'case 42')").fetchone()[0]
        assert not conn.execute("SELECT rlsctl.retention_hold('UsageAnalytics', 'ta', 'again')").fetchone()[0]
        assert conn.execute("SELECT rlsctl.retention_release('UsageAnalytics', 'ta', 'case closed')").fetchone()[0]
        # The hold role reaches the records only through the functions: no reading, no rewriting history.
        for statement in ("SELECT * FROM rlsctl.retention_hold_change", "DELETE FROM rlsctl.retention_hold_change",
                          "INSERT INTO rlsctl.retention_hold (table_name, held_by, reason) VALUES ('AuditLog', 'x', 'y')",
                          "SELECT * FROM rlsctl.retention_run"):  # fmt: skip
            with pytest.raises(pgerrors.InsufficientPrivilege):
                conn.execute(statement)
    with as_login(retention_db, "mallory") as conn:
        conn.execute("SELECT set_config('role', %s, false)", (retention_db.role("retention"),))
        for statement in ("SELECT * FROM rlsctl.retention_hold", "DELETE FROM rlsctl.retention_hold",
                          "DELETE FROM rlsctl.retention_run"):  # fmt: skip
            with pytest.raises(pgerrors.InsufficientPrivilege):
                conn.execute(statement)
    with retention_db.connect() as conn:
        log = conn.execute(
            "SELECT actor, action, table_name, tenant, reason FROM rlsctl.retention_hold_change ORDER BY changed_at"
        ).fetchall()
    alice = retention_db.role("alice")
    assert log[-2:] == [
        (alice, "hold", "UsageAnalytics", "ta", "case 42"),
        (alice, "release", "UsageAnalytics", "ta", "case closed"),
    ]
    # Every change of a hold is in the audit log too, as one of rlsctl's own operations.
    with retention_db.connect() as conn:
        audited = conn.execute(
            """SELECT "userId", action, "resourceType", "resourceId", "teamId", metadata->>'reason',
                      metadata->>'held_by' FROM "AuditLog" WHERE "resourceType" = 'retention_hold'
               ORDER BY "chainSeq" """
        ).fetchall()
    assert audited == [
        ("system:retention", "hold", "retention_hold", "UsageAnalytics", "ta", "case 42", alice),
        ("system:retention", "release", "retention_hold", "UsageAnalytics", "ta", "case closed", alice),
    ]


def test_the_retention_role_locks_expired_rows_but_changes_none_and_deletes_nothing_younger(retention_db):
    with retention_db.connect() as conn:
        seed(conn)
    with as_login(retention_db, "mallory") as conn:
        conn.execute("SELECT set_config('role', %s, false)", (retention_db.role("retention"),))
        locked = conn.execute('SELECT id FROM "UsageAnalytics" FOR UPDATE SKIP LOCKED').fetchall()
        assert {row[0] for row in locked} == seeded("UsageAnalytics", ("expired", "old"))
        with pytest.raises(pgerrors.InsufficientPrivilege, match="row-level security"):
            conn.execute("""UPDATE "UsageAnalytics" SET "lastUsedAt" = now() WHERE id = 'old-ta-0'""")
        assert conn.execute("""DELETE FROM "UsageAnalytics" WHERE id LIKE 'young%%'""").rowcount == 0
        with pytest.raises(pgerrors.InsufficientPrivilege):  # not even an old row's other columns
            conn.execute("""UPDATE "UsageAnalytics" SET feature = 'x' WHERE id = 'old-ta-0'""")


# -- runs ----------------------------------------------------------------------------------------


def test_run_removes_exactly_the_expired_rows_outside_any_hold_and_records_it(retention_db):
    with retention_db.connect() as conn:
        seed(conn, copies=1)
    with as_login(retention_db, "alice") as conn:
        conn.execute("SELECT rlsctl.retention_hold('AuditLog', NULL, 'litigation: the whole log')")
        conn.execute("SELECT rlsctl.retention_hold('UsageAnalytics', 'ta', 'litigation: team A')")
        conn.execute("SELECT rlsctl.retention_hold('PerformanceMetrics', 'tb', 'team B: metrics reach it via Prompt')")
    code, out, err = cli(retention_db, "retention", "run", "--dry-run")
    assert code == 0, err
    assert "UsageAnalytics (lastUsedAt older than 400 days, before " in out and "4 rows would go" in out, out
    assert "kept: the table is on hold" in out and "kept: 1 tenant(s) on hold" in out and "through another table" in out

    code, out, err = cli(retention_db, "retention", "run", "--batch-size", "1", "--format", "json")
    assert code == 0, err
    report = {table["table"]: table for table in json.loads(out)["tables"]}
    # A batch of one covers one expired row of the index: six, of which team A's two stay.
    assert report["UsageAnalytics"]["removed"] == 4 and report["UsageAnalytics"]["batches"] == 6
    assert report["AuditLog"]["removed"] == report["PerformanceMetrics"]["removed"] == 0
    with retention_db.connect() as conn:
        assert remaining(conn, "UsageAnalytics") == seeded("UsageAnalytics", ("young",)) | seeded(
            "UsageAnalytics", ("expired", "old"), ("ta",)
        )
        assert remaining(conn, "AuditLog") == seeded("AuditLog", tuple(AGES))
        assert remaining(conn, "PerformanceMetrics") == seeded("PerformanceMetrics", tuple(AGES))
        runs = conn.execute(
            """SELECT table_name, removed, dry_run, held IS NOT NULL, actor, via, cutoff
               FROM rlsctl.retention_run ORDER BY finished_at DESC LIMIT 3"""
        ).fetchall()
    assert {run[:6] for run in runs} == {
        ("UsageAnalytics", 4, False, True, "postgres", "rlsctl"),
        ("AuditLog", 0, False, True, "postgres", "rlsctl"),
        ("PerformanceMetrics", 0, False, True, "postgres", "rlsctl"),
    }
    assert report["UsageAnalytics"]["cutoff"] == next(run[6] for run in runs if run[0] == "UsageAnalytics")
    with retention_db.connect() as conn:  # each run is one of rlsctl's own operations in the audit log
        audited = conn.execute(
            """SELECT action, (metadata->>'removed')::int FROM "AuditLog"
               WHERE "resourceType" = 'retention' AND "resourceId" = 'UsageAnalytics' ORDER BY "chainSeq" """
        ).fetchall()
    assert audited == [("dry-run", 4), ("run", 4)]

    # Lifted: the next run takes what the holds kept, and still nothing young.
    with as_login(retention_db, "alice") as conn:
        for table, tenant in (("AuditLog", None), ("UsageAnalytics", "ta"), ("PerformanceMetrics", "tb")):
            conn.execute("SELECT rlsctl.retention_release(%s, %s, 'case closed')", (table, tenant))
    code, out, err = cli(retention_db, "retention", "run")
    assert code == 0, err
    with retention_db.connect() as conn:
        for table in TABLES:
            assert remaining(conn, table) == seeded(table, ("young",)), table


def test_the_cutoff_is_utc_whatever_the_sessions_time_zone(retention_db):
    project = retention_db.project()
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):  # UTC+14, UTC-11
        with retention_db.connect() as conn:
            seed(conn)
            conn.execute("SELECT set_config('TimeZone', %s, false)", (zone,))
            assert run(Retention(conn, project, "test"), ("UsageAnalytics",)).tables[0].removed == 6
            assert remaining(conn, "UsageAnalytics") == seeded("UsageAnalytics", ("young",))


def test_rows_another_transaction_holds_are_skipped_not_waited_for(retention_db):
    with retention_db.connect() as conn:
        seed(conn)
    project = retention_db.project()
    with retention_db.connect(autocommit=False) as holder:
        holder.execute("""SELECT 1 FROM "UsageAnalytics" WHERE id = 'old-tb-0' FOR UPDATE""")
        with retention_db.connect() as conn:
            started = time.monotonic()
            done = run(Retention(conn, project, "test"), ("UsageAnalytics",), lock_timeout=5.0).tables[0]
            assert time.monotonic() - started < 4.0  # no batch waited for the held row
        assert (done.expired, done.removed, done.remaining) == (6, 5, 1)
        holder.rollback()
    with retention_db.connect() as conn:
        assert run(Retention(conn, project, "test"), ("UsageAnalytics",)).tables[0].removed == 1
        assert remaining(conn, "UsageAnalytics") == seeded("UsageAnalytics", ("young",))


def seed_scattered(conn: psycopg.Connection, rows: int, expired_every: int) -> dict[str, set[str]]:
    """`rows` UsageAnalytics rows in random order on disk, every `expired_every`-th one expired,
    in teams ta, tb and none; ANALYZEd. Returns the ids by (expired|young)-(team)."""
    seed(conn)
    conn.execute("SET session_replication_role = replica")
    conn.execute('TRUNCATE "UsageAnalytics"')
    conn.execute(
        """INSERT INTO "UsageAnalytics"(id, "userId", "teamId", feature, "lastUsedAt")
           SELECT 's' || g, 'u', (ARRAY['ta', 'tb', NULL])[g %% 3 + 1], 'f',
                  (now() AT TIME ZONE 'UTC') - interval '400 days'
                  + CASE WHEN g %% %(every)s = 0 THEN -interval '1 day' - make_interval(secs => g)
                         ELSE interval '1 day' + make_interval(secs => g) END
           FROM generate_series(1, %(rows)s) AS g ORDER BY random()""",
        {"rows": rows, "every": expired_every},
    )
    conn.execute("RESET session_replication_role")
    conn.execute('ANALYZE "UsageAnalytics"')
    groups: dict[str, set[str]] = {}
    for g in range(1, rows + 1):
        team = ("ta", "tb", "none")[g % 3]
        groups.setdefault(f"{'expired' if g % expired_every == 0 else 'young'}-{team}", set()).add(f"s{g}")
    return groups


def test_scattered_expired_rows_are_walked_by_block_ranges_with_holds_and_locks_kept(retention_db):
    project = retention_db.project()
    with retention_db.connect() as conn:
        groups = seed_scattered(conn, rows=6000, expired_every=2)
    with as_login(retention_db, "alice") as conn:
        conn.execute("SELECT rlsctl.retention_hold('UsageAnalytics', 'ta', 'litigation: team A')")
    with retention_db.connect(autocommit=False) as holder:
        holder.execute("""SELECT 1 FROM "UsageAnalytics" WHERE id = 's2' FOR UPDATE""")  # expired, no team
        with retention_db.connect() as conn:
            done = run(Retention(conn, project, "test"), ("UsageAnalytics",), lock_timeout=5.0).tables[0]
        holder.rollback()
    assert done.walk == "blocks"
    expired_free = groups["expired-tb"] | groups["expired-none"]
    assert (done.expired, done.removed, done.remaining) == (len(expired_free), len(expired_free) - 1, 1)
    with retention_db.connect() as conn:
        kept = groups["young-ta"] | groups["young-tb"] | groups["young-none"] | groups["expired-ta"] | {"s2"}
        assert {row[0] for row in conn.execute('SELECT id FROM "UsageAnalytics"')} == kept
    with as_login(retention_db, "alice") as conn:
        conn.execute("SELECT rlsctl.retention_release('UsageAnalytics', 'ta', 'case closed')")


def test_the_retention_roles_ctid_grant_shows_where_expired_rows_sit_and_nothing_else(retention_db):
    """The block walk's column grant: the position of an expired row, never its content, never a
    young row."""
    with retention_db.connect() as conn:
        seed(conn)
    with as_login(retention_db, "mallory") as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(retention_db.role("retention"))))
        visible = {row[0] for row in conn.execute('SELECT id FROM "UsageAnalytics" WHERE ctid IS NOT NULL')}
        assert visible == seeded("UsageAnalytics", ("expired", "old"))
        for column in ("feature", "metadata", "userId", "usageCount"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(f'SELECT "{column}" FROM "UsageAnalytics"')


@pytest.mark.parametrize("cursor", ["blocks:-1", "blocks:", "blocks:1; DELETE", "blocks:99999999999"])
def test_a_block_cursor_that_is_not_one_is_refused(retention_db, cursor):
    with retention_db.connect() as conn, pytest.raises(psycopg.errors.InvalidParameterValue, match="block cursor"):
        conn.execute("""SELECT * FROM rlsctl."retention_UsageAnalytics"(NULL, %s, 10, false, '1s')""", (cursor,))


def test_rows_stored_in_time_order_or_few_expired_are_walked_by_the_index(retention_db):
    project = retention_db.project()
    with retention_db.connect() as conn:
        groups = seed_scattered(conn, rows=6000, expired_every=20)  # scattered, but a twentieth expired
        done = run(Retention(conn, project, "test"), ("UsageAnalytics",)).tables[0]
        assert (done.walk, done.removed) == ("index", 300)
        conn.execute("SET session_replication_role = replica")
        conn.execute('TRUNCATE "UsageAnalytics"')  # half expired, in the order they were written
        conn.execute(
            """INSERT INTO "UsageAnalytics"(id, "userId", "teamId", feature, "lastUsedAt")
               SELECT 'o' || g, 'u', NULL, 'f', (now() AT TIME ZONE 'UTC') - interval '400 days'
                      + make_interval(mins => g - 3000)
               FROM generate_series(1, 6000) AS g ORDER BY g"""
        )
        conn.execute("RESET session_replication_role")
        conn.execute('ANALYZE "UsageAnalytics"')
        done = run(Retention(conn, project, "test"), ("UsageAnalytics",)).tables[0]
        assert (done.walk, done.removed) == ("index", 3000)
        assert len(groups["young-ta"]) == 1900  # the seeding itself: 6000 rows, 19 of 20 young, a third each team


def test_a_hold_waits_for_the_batch_in_flight_and_stops_every_later_one(retention_db):
    with retention_db.connect() as conn:
        seed(conn)
    call = """SELECT removed, held FROM rlsctl."retention_UsageAnalytics"(batch_size => 1)"""
    with retention_db.connect(autocommit=False) as batch:
        assert batch.execute(call).fetchone() == (1, None)  # its transaction is still open
        held = threading.Event()

        def hold() -> None:
            with as_login(retention_db, "alice") as conn:
                conn.execute("SELECT rlsctl.retention_hold('UsageAnalytics', NULL, 'stop')")
            held.set()

        worker = threading.Thread(target=hold)
        worker.start()
        assert not held.wait(0.5)  # the hold waits for the batch
        batch.commit()
        worker.join(10)
        assert held.is_set()
        assert batch.execute(call).fetchone() == (0, "the table is on hold")
        batch.commit()
    with retention_db.connect() as conn:
        assert len(remaining(conn, "UsageAnalytics")) == 9 - 1


def test_cli_errors_are_one_line(retention_db):
    code, _, err = cli(retention_db, "retention", "run", "--table", "Prompt")
    assert code == 2 and "Prompt declares no retention here" in err, err
    code, _, err = cli(retention_db, "retention", "hold", "--reason", "x")
    assert code == 2 and "--all" in err, err
    code, _, err = cli(retention_db, "retention", "schedule")
    assert code == 2 and "pg_cron is not loaded" in err, err
    assert cli(retention_db, "retention", "run", "--dry-run")[0] == 0
    code, out, err = cli(retention_db, "retention", "status", "--format", "json")
    assert code == 0 and "run" in {row["kind"] for row in json.loads(out)}, err


def test_a_static_legal_hold_keeps_every_row_and_says_so(make_db, tmp_path: Path):
    root = tmp_path / "project"
    for part in ("policies", "migrations"):
        shutil.copytree(ROOT / part, root / part)
    security = root / "policies" / "security.yaml"
    text = security.read_text()
    assert "retention: {column: createdAt, days: 365}" in text
    security.write_text(
        text.replace(
            "retention: {column: createdAt, days: 365}", "retention: {column: createdAt, days: 365, legal_hold: true}"
        )
    )
    database = make_db()
    project = load_project(root, role_prefix=database.prefix)
    migrate_and_apply(database, project=project)
    with database.connect() as conn:
        seed(conn)
        done = run(Retention(conn, project, "test"), ("AuditLog",)).tables[0]
        assert done.held == "legal_hold: true in the policy file" and done.removed == 0
        assert remaining(conn, "AuditLog") == seeded("AuditLog", tuple(AGES))


# -- pg_cron ---------------------------------------------------------------------------------------


def spare_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_pg_cron_runs_retention_in_the_database_and_trims_its_own_log():
    """A throw-away cluster with pg_cron preloaded: the jobs, scheduled twice (the second time
    changes nothing), really run within about a minute, remove exactly what a run by hand would,
    record it as pg_cron's, and leave held rows; the trim job's command empties old history."""
    project = load_project(ROOT, role_prefix="cronret_")
    with temporary_cluster(port=spare_port(), cron_database="postgres") as cluster:
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            admin.execute("CREATE EXTENSION pg_cron")
            admin.execute("CREATE DATABASE app")
        target = Target(cluster.dsn("app"), "app")
        with psycopg.connect(cluster.dsn("app"), autocommit=True) as conn:
            migrating.migrate(conn, project, target)
            applying.apply(conn, project, "app")
            seed(conn)
            conn.execute("SELECT rlsctl.retention_hold('UsageAnalytics', 'tb', 'litigation: team B')")
            retention = Retention(conn, project, "app")
            first = schedule(retention, target, every="* * * * *")
            again = schedule(retention, target, every="* * * * *")
            assert len(first.created) == 4 and not first.updated and sorted(again.unchanged) == sorted(first.created)
            deadline = time.monotonic() + 75
            while time.monotonic() < deadline:
                runs = conn.execute(
                    """SELECT DISTINCT ON (table_name) table_name, removed, actor, via
                       FROM rlsctl.retention_run ORDER BY table_name, finished_at"""
                ).fetchall()
                if len(runs) == 3:
                    break
                time.sleep(1)
            assert runs == [
                ("AuditLog", 6, "postgres", "pg_cron"),
                ("PerformanceMetrics", 4, "postgres", "pg_cron"),
                ("UsageAnalytics", 4, "postgres", "pg_cron"),
            ], runs
            assert remaining(conn, "UsageAnalytics") == seeded("UsageAnalytics", ("young",)) | seeded(
                "UsageAnalytics", ("expired", "old"), ("tb",)
            )
            for table in ("AuditLog", "PerformanceMetrics"):
                assert remaining(conn, table) == seeded(table, ("young",))
            removed = schedule(retention, target, remove=True)
        assert sorted(removed.removed) == sorted(first.created)
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            assert admin.execute("SELECT count(*) FROM cron.job").fetchone()[0] == 0
            failed = admin.execute("SELECT count(*) FROM cron.job_run_details WHERE status <> 'succeeded'").fetchone()
            assert failed[0] == 0
            admin.execute("UPDATE cron.job_run_details SET end_time = now() - interval '31 days'")
            trim = next(job.command for job in wanted_jobs(retention, "app", "postgres") if job.name == TRIM_JOB)
            admin.execute(trim)
            assert admin.execute("SELECT count(*) FROM cron.job_run_details").fetchone()[0] == 0
