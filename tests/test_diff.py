"""The declarative diff: every kind of tampering is detected, repaired, and the next plan is empty."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner
from psycopg import sql

from rlsctl import apply as applying
from rlsctl import migrate as migrating
from rlsctl.cli import main
from rlsctl.diff import NARROWS, WIDENS, Operation
from rlsctl.diffing import read_plan
from rlsctl.objects import TableGrant
from tests.conftest import ROOT, migrate_and_apply
from tests.helpers import security_snapshot


def cli(database, *args: str):
    return CliRunner().invoke(
        main, [*args, "--dsn", database.dsn, "--project", str(ROOT), "--role-prefix", database.prefix]
    )


@pytest.fixture(scope="module")
def baseline(make_module_db):
    database = make_module_db()
    migrate_and_apply(database)
    return database, security_snapshot(database)


# (name, tampering SQL with {app}/{owner}/{definer} placeholders, the object drift must name, its state)
TAMPERING = [
    ("rls disabled", 'ALTER TABLE "Prompt" DISABLE ROW LEVEL SECURITY', "table Prompt", "changed"),
    ("rls unforced", 'ALTER TABLE "Team" NO FORCE ROW LEVEL SECURITY', "table Team", "changed"),
    ("owner changed", 'ALTER TABLE "User" OWNER TO postgres', "table User", "changed"),
    ("policy dropped", 'DROP POLICY app_select ON "Prompt"', "policy Prompt.app_select", "missing"),
    ("policy loosened", 'ALTER POLICY app_select ON "AuditLog" USING (true)', "policy AuditLog.app_select", "changed"),
    ("policy roles", 'ALTER POLICY app_delete ON "Prompt" TO PUBLIC', "policy Prompt.app_delete", "changed"),
    ("policy added", 'CREATE POLICY sneaky ON "User" FOR SELECT USING (true)', "policy User.sneaky", "extra"),
    ("grant added", 'GRANT DELETE ON "AuditLog" TO {app}', "DELETE on AuditLog to {app}", "extra"),
    ("grant to public", 'GRANT SELECT ON "Prompt" TO PUBLIC', "SELECT on Prompt to PUBLIC", "extra"),
    ("grant revoked", 'REVOKE INSERT ON "Prompt" FROM {app}', "INSERT on Prompt to {app}", "missing"),
    (
        "column grant added",
        'GRANT SELECT ("hashedKey") ON "ApiKey" TO {app}',
        "SELECT (hashedKey) on ApiKey to {app}",
        "extra",
    ),
    (
        "column grant revoked",
        'REVOKE UPDATE ("title") ON "Prompt" FROM {app}',
        "UPDATE (title) on Prompt to {app}",
        "missing",
    ),
    (
        "helper body",
        "CREATE OR REPLACE FUNCTION rlsctl.current_user_id() RETURNS text LANGUAGE sql STABLE "
        "SET search_path = pg_catalog, pg_temp AS $$ SELECT 'u1' $$",
        "function rlsctl.current_user_id()",
        "changed",
    ),
    (
        "helper invoker",
        "ALTER FUNCTION rlsctl.tenant_ids(text) SECURITY INVOKER",
        "function rlsctl.tenant_ids(text)",
        "changed",
    ),
    (
        "helper search_path",
        "ALTER FUNCTION rlsctl.tenant_ids(text) RESET search_path",
        "function rlsctl.tenant_ids(text)",
        "changed",
    ),
    (
        "helper executable by public",
        "GRANT EXECUTE ON FUNCTION rlsctl.tenant_ids(text) TO PUBLIC",
        "EXECUTE on rlsctl.tenant_ids(text) to PUBLIC",
        "extra",
    ),
    (
        "owner loses execute",
        "REVOKE EXECUTE ON FUNCTION rlsctl.encrypt_with(text, text, text) FROM {keys}",
        "EXECUTE on rlsctl.encrypt_with(text, text, text) to {keys}",
        "missing",
    ),
    (
        "encrypt trigger dropped",
        'DROP TRIGGER rlsctl_encrypt ON "UsageAnalytics"',
        "trigger UsageAnalytics.rlsctl_encrypt",
        "missing",
    ),
    ("helper dropped", 'DROP FUNCTION rlsctl."guard_Prompt"() CASCADE', "function rlsctl.guard_Prompt()", "missing"),
    ("guard dropped", 'DROP TRIGGER rlsctl_guard ON "TeamMember"', "trigger TeamMember.rlsctl_guard", "missing"),
    ("role can log in", "ALTER ROLE {app} LOGIN", "role {app}", "changed"),
    (
        "default privilege",
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} GRANT EXECUTE ON FUNCTIONS TO PUBLIC",
        "default: no EXECUTE for PUBLIC on functions of {owner}",
        "missing",
    ),
    ("create on helper schema", "GRANT CREATE ON SCHEMA rlsctl TO {app}", "CREATE on schema rlsctl to {app}", "extra"),
    ("create on public", "GRANT CREATE ON SCHEMA public TO PUBLIC", "CREATE on schema public to PUBLIC", "extra"),
]


@pytest.mark.parametrize("name, tamper, obj, state", TAMPERING, ids=[t[0] for t in TAMPERING])
def test_tampering_is_detected_repaired_and_converges(baseline, name, tamper, obj, state):
    database, expected = baseline
    names = {key: database.role(key) for key in ("app", "owner", "definer", "keys")}
    with database.connect() as conn:
        conn.execute(
            tamper.replace('"{', "{").format(**{k: sql.Identifier(v).as_string(conn) for k, v in names.items()})
        )
    assert security_snapshot(database) != expected
    drift = cli(database, "drift", "--format", "json")
    assert drift.exit_code == 1, drift.output
    found = {item["object"]: item["state"] for item in json.loads(drift.stdout)["drift"]}
    assert found.get(obj.format(**names)) == state, found
    applied = cli(database, "apply")
    assert applied.exit_code == 0, applied.stderr
    assert security_snapshot(database) == expected
    again = cli(database, "plan", "--format", "json")
    assert json.loads(again.stdout)["statements"] == []
    assert cli(database, "drift").exit_code == 0


def test_second_apply_runs_nothing_and_says_so(secured_db):
    result = cli(secured_db, "apply")
    assert result.exit_code == 0 and "no changes" in result.stdout
    assert "no changes" in cli(secured_db, "plan").stdout


def test_plan_labels_effects_and_shows_widening_first(secured_db):
    with secured_db.connect() as conn:
        conn.execute('ALTER TABLE "Prompt" NO FORCE ROW LEVEL SECURITY')  # repairing narrows
        conn.execute(
            sql.SQL('REVOKE SELECT ON "Prompt" FROM {}').format(sql.Identifier(secured_db.role("app")))
        )  # widens
    result = cli(secured_db, "plan")
    text = result.stdout
    assert text.index("Widens access") < text.index("Narrows access")
    data = json.loads(cli(secured_db, "plan", "--format", "json").stdout)
    effects = {s["sql"]: s["effect"] for s in data["statements"]}
    assert effects['ALTER TABLE "public"."Prompt" FORCE ROW LEVEL SECURITY'] == NARROWS
    grant = f'GRANT SELECT ON TABLE "public"."Prompt" TO "{secured_db.role("app")}"'
    assert effects[grant] == WIDENS


def test_operations_reverse():
    grant = TableGrant("Prompt", "app", "SELECT")
    op = Operation("grant", None, grant, WIDENS)
    back = op.reverse()
    assert (back.action, back.old, back.new, back.effect) == ("revoke", grant, None, NARROWS)
    assert back.reverse() == op


def test_unmanaged_grants_are_reported_and_left_alone_unless_pruned(secured_db, tmp_path):
    backup = secured_db.prefix + "backup"
    with secured_db.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(backup)))
        conn.execute(sql.SQL('GRANT SELECT ON "Prompt" TO {}').format(sql.Identifier(backup)))
    drift = cli(secured_db, "drift")
    assert drift.exit_code == 0 and f"unmanaged: SELECT on Prompt to {backup} (left alone)" in drift.stdout
    assert cli(secured_db, "apply").exit_code == 0
    with secured_db.connect() as conn:
        assert conn.execute("SELECT has_table_privilege(%s, 'public.\"Prompt\"', 'SELECT')", (backup,)).fetchone()[0]
    import shutil

    from rlsctl.project import load_project

    root = tmp_path / "project"
    shutil.copytree(ROOT / "policies", root / "policies")
    shutil.copytree(ROOT / "migrations", root / "migrations")
    settings = root / "policies" / "project.yaml"
    settings.write_text(
        settings.read_text().replace(
            "  extensions: [pgcrypto]\n", "  extensions: [pgcrypto]\n  prune_unmanaged_grants: true\n"
        )
    )
    with secured_db.connect() as conn:
        report = applying.apply(conn, load_project(root, role_prefix=secured_db.prefix), "x")
        assert any(s.object == f"SELECT on Prompt to {backup}" for s in report.plan.statements)
        assert not conn.execute("SELECT has_table_privilege(%s, 'public.\"Prompt\"', 'SELECT')", (backup,)).fetchone()[
            0
        ]


def _run_in_threads(*jobs):
    errors: list[BaseException] = []
    results: list[object] = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def runner(index, job):
        try:
            barrier.wait()
            results[index] = job()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return results


def test_two_concurrent_applies_one_waits_both_succeed(db):
    project = db.project()
    with db.connect() as conn:
        migrating.migrate(conn, project, db.target)

    def one_apply():
        with db.connect() as conn:
            return len(applying.apply(conn, project, "x", lock_timeout=60).plan.statements)

    counts = _run_in_threads(one_apply, one_apply)
    assert sorted(counts)[0] == 0 and sorted(counts)[1] > 100  # the second planned afresh after the first
    with db.connect() as conn:
        assert read_plan(conn, project, "x", None).empty


def test_applies_on_two_databases_sharing_the_role_prefix(make_db):
    first = make_db()
    second = make_db(prefix=first.prefix)

    def migrate_and_apply_one(database):
        def job():
            project = database.project()
            with database.connect() as conn:
                migrating.migrate(conn, project, database.target)
                applying.apply(conn, project, database.target.where)
            return True

        return job

    for _ in range(3):  # several rounds: the races are timing-dependent
        assert _run_in_threads(migrate_and_apply_one(first), migrate_and_apply_one(second)) == [True, True]
    for database in (first, second):
        with database.connect() as conn:
            assert read_plan(conn, database.project(), "x", None).empty
