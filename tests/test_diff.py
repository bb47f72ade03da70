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
from rlsctl.diff import NARROWS, NEUTRAL, WIDENS, Operation
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


ROLE_KEYS = ("app", "owner", "definer", "keys", "auditor", "analyst", "retention")
CURRENT_USER_ID_PLPGSQL = (
    "CREATE OR REPLACE FUNCTION rlsctl.current_user_id() RETURNS text LANGUAGE plpgsql STABLE "
    "SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN NULLIF(current_setting('app.user_id', true), ''); END $$"
)

# (name, tampering SQL with {app}/{owner}/... placeholders, the object drift must name, its state,
#  the effect of the statement that repairs it)
TAMPERING = [
    # tables
    ("rls disabled", 'ALTER TABLE "Prompt" DISABLE ROW LEVEL SECURITY', "table Prompt", "changed", NARROWS),
    ("rls unforced", 'ALTER TABLE "Team" NO FORCE ROW LEVEL SECURITY', "table Team", "changed", NARROWS),
    ("owner changed", 'ALTER TABLE "User" OWNER TO postgres', "table User", "changed", NEUTRAL),
    # policies
    ("policy dropped", 'DROP POLICY app_select ON "Prompt"', "policy Prompt.app_select", "missing", WIDENS),
    (
        "policy loosened",
        'ALTER POLICY app_select ON "AuditLog" USING (true)',
        "policy AuditLog.app_select",
        "changed",
        WIDENS,
    ),
    ("policy roles", 'ALTER POLICY app_delete ON "Prompt" TO PUBLIC', "policy Prompt.app_delete", "changed", NARROWS),
    (
        "policy added",
        'CREATE POLICY sneaky ON "User" FOR SELECT USING (true)',
        "policy User.sneaky",
        "extra",
        NARROWS,
    ),
    (
        "restrictive policy added",
        'CREATE POLICY sneaky ON "Prompt" AS RESTRICTIVE FOR SELECT USING (false)',
        "policy Prompt.sneaky",
        "extra",
        WIDENS,  # dropping a restrictive policy lets rows through again
    ),
    (
        "policy command changed",
        'DROP POLICY app_select ON "AuditLog"; CREATE POLICY app_select ON "AuditLog" FOR ALL TO {app} USING (true)',
        "policy AuditLog.app_select",
        "changed",
        WIDENS,
    ),
    (
        "policy made restrictive",
        'DROP POLICY app_delete ON "Prompt"; '
        'CREATE POLICY app_delete ON "Prompt" AS RESTRICTIVE FOR DELETE TO {app} USING (false)',
        "policy Prompt.app_delete",
        "changed",
        WIDENS,
    ),
    (
        "policy check changed",
        'ALTER POLICY app_insert ON "Prompt" WITH CHECK (true)',
        "policy Prompt.app_insert",
        "changed",
        WIDENS,
    ),
    (
        # ALTER POLICY cannot remove a clause: the repair must recreate the policy.
        "policy check added",
        'ALTER POLICY app_update ON "User" WITH CHECK (true)',
        "policy User.app_update",
        "changed",
        WIDENS,
    ),
    # table and column grants
    ("grant added", 'GRANT DELETE ON "AuditLog" TO {app}', "DELETE on AuditLog to {app}", "extra", NARROWS),
    ("grant to public", 'GRANT SELECT ON "Prompt" TO PUBLIC', "SELECT on Prompt to PUBLIC", "extra", NARROWS),
    ("grant revoked", 'REVOKE INSERT ON "Prompt" FROM {app}', "INSERT on Prompt to {app}", "missing", WIDENS),
    (
        "grant option",
        'GRANT SELECT ON "Prompt" TO {app} WITH GRANT OPTION',
        "SELECT on Prompt to {app}",
        "changed",
        NARROWS,
    ),
    (
        "grant option used",
        'GRANT SELECT ON "AuditLog" TO {auditor} WITH GRANT OPTION; SET ROLE {auditor}; '
        'GRANT SELECT ON "AuditLog" TO {analyst}; RESET ROLE',
        "SELECT on AuditLog to {auditor}",
        "changed",
        NARROWS,
    ),
    (
        "column grant added",
        'GRANT SELECT ("hashedKey") ON "ApiKey" TO {app}',
        "SELECT (hashedKey) on ApiKey to {app}",
        "extra",
        NARROWS,
    ),
    (
        "column grant to public",
        'GRANT SELECT ("title") ON "Prompt" TO PUBLIC',
        "SELECT (title) on Prompt to PUBLIC",
        "extra",
        NARROWS,
    ),
    (
        "column grant option",
        'GRANT UPDATE ("title") ON "Prompt" TO {app} WITH GRANT OPTION',
        "UPDATE (title) on Prompt to {app}",
        "changed",
        NARROWS,
    ),
    (
        "column grant revoked",
        'REVOKE UPDATE ("title") ON "Prompt" FROM {app}',
        "UPDATE (title) on Prompt to {app}",
        "missing",
        WIDENS,
    ),
    # helper functions
    (
        "helper body",
        "CREATE OR REPLACE FUNCTION rlsctl.current_user_id() RETURNS text LANGUAGE sql STABLE "
        "SET search_path = pg_catalog, pg_temp AS $$ SELECT 'u1' $$",
        "function rlsctl.current_user_id()",
        "changed",
        WIDENS,
    ),
    ("helper language", CURRENT_USER_ID_PLPGSQL, "function rlsctl.current_user_id()", "changed", WIDENS),
    (
        "helper invoker",
        "ALTER FUNCTION rlsctl.tenant_ids(text) SECURITY INVOKER",
        "function rlsctl.tenant_ids(text)",
        "changed",
        WIDENS,
    ),
    (
        "helper volatility",
        "ALTER FUNCTION rlsctl.tenant_ids(text) VOLATILE",
        "function rlsctl.tenant_ids(text)",
        "changed",
        WIDENS,
    ),
    (
        "helper owner",
        "ALTER FUNCTION rlsctl.tenant_ids(text) OWNER TO {owner}",
        "function rlsctl.tenant_ids(text)",
        "changed",
        NEUTRAL,
    ),
    (
        "helper search_path",
        "ALTER FUNCTION rlsctl.tenant_ids(text) RESET search_path",
        "function rlsctl.tenant_ids(text)",
        "changed",
        WIDENS,
    ),
    (
        "helper executable by public",
        "GRANT EXECUTE ON FUNCTION rlsctl.tenant_ids(text) TO PUBLIC",
        "EXECUTE on rlsctl.tenant_ids(text) to PUBLIC",
        "extra",
        NARROWS,
    ),
    (
        "helper execute revoked",
        "REVOKE EXECUTE ON FUNCTION rlsctl.tenant_ids(text) FROM {app}",
        "EXECUTE on rlsctl.tenant_ids(text) to {app}",
        "missing",
        WIDENS,
    ),
    (
        "owner loses execute",
        "REVOKE EXECUTE ON FUNCTION rlsctl.encrypt_with(text, text, text) FROM {keys}",
        "EXECUTE on rlsctl.encrypt_with(text, text, text) to {keys}",
        "missing",
        WIDENS,
    ),
    (
        "helper dropped",
        'DROP FUNCTION rlsctl."guard_Prompt"() CASCADE',
        "function rlsctl.guard_Prompt()",
        "missing",
        NEUTRAL,
    ),
    # triggers
    (
        "encrypt trigger dropped",
        'DROP TRIGGER rlsctl_encrypt ON "UsageAnalytics"',
        "trigger UsageAnalytics.rlsctl_encrypt",
        "missing",
        NARROWS,
    ),
    (
        "guard dropped",
        'DROP TRIGGER rlsctl_guard ON "TeamMember"',
        "trigger TeamMember.rlsctl_guard",
        "missing",
        NARROWS,
    ),
    (
        "guard disabled",
        'ALTER TABLE "TeamMember" DISABLE TRIGGER rlsctl_guard',
        "trigger TeamMember.rlsctl_guard",
        "changed",
        NARROWS,
    ),
    (
        "encrypt trigger disabled",
        'ALTER TABLE "UsageAnalytics" DISABLE TRIGGER rlsctl_encrypt',
        "trigger UsageAnalytics.rlsctl_encrypt",
        "changed",
        NARROWS,
    ),
    (
        "guard fires only for replicas",
        'ALTER TABLE "Prompt" ENABLE REPLICA TRIGGER rlsctl_guard',
        "trigger Prompt.rlsctl_guard",
        "changed",
        NARROWS,
    ),
    (
        "guard fires always",
        'ALTER TABLE "Team" ENABLE ALWAYS TRIGGER rlsctl_guard',
        "trigger Team.rlsctl_guard",
        "changed",
        NEUTRAL,
    ),
    # roles and memberships
    ("role can log in", "ALTER ROLE {app} LOGIN", "role {app}", "changed", NARROWS),
    ("role creates roles", "ALTER ROLE {app} CREATEROLE", "role {app}", "changed", NARROWS),
    ("role creates databases", "ALTER ROLE {analyst} CREATEDB", "role {analyst}", "changed", NARROWS),
    ("app may become owner", "GRANT {owner} TO {app}", "membership of {app} in {owner}", "extra", NARROWS),
    (
        "app writes all data",
        "GRANT pg_write_all_data TO {app}",
        "membership of {app} in pg_write_all_data",
        "extra",
        NARROWS,
    ),
    (
        "analyst reads all data",
        "GRANT pg_read_all_data TO {analyst}",
        "membership of {analyst} in pg_read_all_data",
        "extra",
        NARROWS,
    ),
    # default privileges
    (
        "default execute for public",
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} GRANT EXECUTE ON FUNCTIONS TO PUBLIC",
        "default: EXECUTE on new functions of {owner} to PUBLIC",
        "extra",
        NARROWS,
    ),
    (
        "default select for app",
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} GRANT SELECT ON TABLES TO {app}",
        "default: SELECT on new tables of {owner} to {app}",
        "extra",
        NARROWS,
    ),
    (
        "default in schema for public",
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT INSERT ON TABLES TO PUBLIC",
        "default: INSERT on new tables of {owner} in schema public to PUBLIC",
        "extra",
        NARROWS,
    ),
    (
        "default sequences for app",
        "ALTER DEFAULT PRIVILEGES FOR ROLE {definer} GRANT USAGE ON SEQUENCES TO {app}",
        "default: USAGE on new sequences of {definer} to {app}",
        "extra",
        NARROWS,
    ),
    (
        "default helper execute",
        "ALTER DEFAULT PRIVILEGES FOR ROLE {keys} IN SCHEMA rlsctl GRANT EXECUTE ON FUNCTIONS TO {analyst}",
        "default: EXECUTE on new functions of {keys} in schema rlsctl to {analyst}",
        "extra",
        NARROWS,
    ),
    # schemas and extensions
    (
        "create on helper schema",
        "GRANT CREATE ON SCHEMA rlsctl TO {app}",
        "CREATE on schema rlsctl to {app}",
        "extra",
        NARROWS,
    ),
    (
        "create on public",
        "GRANT CREATE ON SCHEMA public TO PUBLIC",
        "CREATE on schema public to PUBLIC",
        "extra",
        NARROWS,
    ),
    (
        "helper schema usage revoked",
        "REVOKE USAGE ON SCHEMA rlsctl FROM {app}",
        "USAGE on schema rlsctl to {app}",
        "missing",
        WIDENS,
    ),
    ("extension dropped", "DROP EXTENSION pgcrypto", "extension pgcrypto", "missing", NEUTRAL),
]


def tamper_with(database, statement: str) -> dict[str, str]:
    """Run tampering SQL as the superuser, role placeholders filled in; returns the role names."""
    names = {key: database.role(key) for key in ROLE_KEYS}
    with database.connect() as conn:
        conn.execute(
            statement.replace('"{', "{").format(**{k: sql.Identifier(v).as_string(conn) for k, v in names.items()})
        )
    return names


def drift_items(database) -> dict[str, dict]:
    drift = cli(database, "drift", "--format", "json")
    assert drift.exit_code == 1, drift.output
    return {item["object"]: item for item in json.loads(drift.stdout)["drift"]}


def assert_converged(database) -> None:
    again = cli(database, "plan", "--format", "json")
    assert json.loads(again.stdout)["statements"] == []
    assert cli(database, "drift").exit_code == 0


@pytest.mark.parametrize("name, tamper, obj, state, effect", TAMPERING, ids=[t[0] for t in TAMPERING])
def test_tampering_is_detected_repaired_and_converges(baseline, name, tamper, obj, state, effect):
    database, expected = baseline
    names = tamper_with(database, tamper)
    assert security_snapshot(database) != expected
    found = drift_items(database)
    item = found.get(obj.format(**names))
    assert item is not None, found
    assert (item["state"], item["effect"]) == (state, effect), found
    applied = cli(database, "apply")
    assert applied.exit_code == 0, applied.stderr
    assert security_snapshot(database) == expected
    assert_converged(database)


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
