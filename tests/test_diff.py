"""The declarative diff: every kind of tampering is detected, repaired, and the next plan is empty."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from psycopg import sql

from rlsctl import apply as applying
from rlsctl import migrate as migrating
from rlsctl.cli import main
from rlsctl.diff import NARROWS, NEUTRAL, WIDENS, reversed_operations
from rlsctl.diffing import read_plan
from rlsctl.plan import render_operations
from rlsctl.project import load_project
from rlsctl.tester.run import run_matrix
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


ROLE_KEYS = ("app", "owner", "definer", "keys", "auditor", "analyst", "retention", "backup", "web")
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
    """Drift names it, apply repairs it, the next plan is empty; and the reverse of the
    repair, run as SQL, brings the tampered state back (Operation.reverse renders the inverse)."""
    database, expected = baseline
    names = tamper_with(database, tamper)
    tampered = security_snapshot(database)
    assert tampered != expected
    found = drift_items(database)
    item = found.get(obj.format(**names))
    assert item is not None, found
    assert (item["state"], item["effect"]) == (state, effect), found
    with database.connect() as conn:
        repair = read_plan(conn, database.project(), "x", None)
    applied = cli(database, "apply")
    assert applied.exit_code == 0, applied.stderr
    assert security_snapshot(database) == expected
    assert_converged(database)
    run_reversed(database, repair)
    assert security_snapshot(database) == tampered
    assert cli(database, "apply").exit_code == 0
    assert security_snapshot(database) == expected


def run_reversed(database, repair) -> None:
    undo = render_operations(reversed_operations(list(repair.operations)), repair.state, ROOT / "templates")
    with database.connect(autocommit=False) as conn, conn.transaction():
        conn.execute("SET LOCAL search_path = pg_catalog, pg_temp")
        for statement in undo:
            conn.execute(statement.sql.encode())


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


def project_copy(tmp_path, old: str = "", new: str = "") -> Path:
    """The PromptCraft project in tmp_path, with `old` replaced by `new` in project.yaml."""
    root = tmp_path / "project"
    shutil.copytree(ROOT / "policies", root / "policies")
    shutil.copytree(ROOT / "migrations", root / "migrations")
    settings = root / "policies" / "project.yaml"
    assert old in settings.read_text()
    settings.write_text(settings.read_text().replace(old, new))
    return root


UNMANAGED = [
    'GRANT SELECT ON "Prompt" TO {backup}',
    'GRANT SELECT ("title") ON "Prompt" TO {backup}',
    "GRANT USAGE ON SCHEMA rlsctl TO {backup}",
    "GRANT EXECUTE ON FUNCTION rlsctl.current_user_id() TO {backup}",  # SECURITY INVOKER
    "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} GRANT SELECT ON TABLES TO {backup}",
    "GRANT {app} TO {web}",  # the application's login role
]


def test_grants_to_undeclared_roles_are_unmanaged_unless_pruned(secured_db, tmp_path):
    tamper_with(secured_db, "CREATE ROLE {backup}; CREATE ROLE {web} LOGIN")
    names = tamper_with(
        secured_db, "; ".join([*UNMANAGED, "GRANT EXECUTE ON FUNCTION rlsctl.tenant_ids(text) TO {backup}"])
    )
    backup, web, app, owner = names["backup"], names["web"], names["app"], names["owner"]
    unmanaged = [
        f"SELECT on Prompt to {backup}",
        f"SELECT (title) on Prompt to {backup}",
        f"USAGE on schema rlsctl to {backup}",
        f"EXECUTE on rlsctl.current_user_id() to {backup}",
        f"default: SELECT on new tables of {owner} to {backup}",
        f"membership of {web} in {app}",
    ]
    # EXECUTE on a SECURITY DEFINER helper lends its owner's rights: revoked whoever holds it.
    found = drift_items(secured_db)
    assert list(found) == [f"EXECUTE on rlsctl.tenant_ids(text) to {backup}"]
    assert cli(secured_db, "apply").exit_code == 0
    drift = cli(secured_db, "drift")
    assert drift.exit_code == 0, drift.output
    for key in unmanaged:
        assert f"unmanaged: {key} (left alone)" in drift.stdout
    assert held(secured_db, backup, web) == {
        "table": True, "column": True, "schema": True, "invoker": True, "definer": False, "default": True,
        "member": True,
    }  # fmt: skip

    pruning = load_project(
        project_copy(
            tmp_path, "  extensions: [pgcrypto]\n", "  extensions: [pgcrypto]\n  prune_unmanaged_grants: true\n"
        ),
        role_prefix=secured_db.prefix,
    )
    with secured_db.connect() as conn:
        report = applying.apply(conn, pruning, "x")
    assert {s.object for s in report.plan.statements} >= set(unmanaged[:4]) | {unmanaged[4]}
    assert held(secured_db, backup, web) == {
        "table": False, "column": False, "schema": False, "invoker": False, "definer": False, "default": False,
        "member": True,  # memberships stay unmanaged: they are how the application connects
    }  # fmt: skip


def held(database, backup: str, web: str) -> dict[str, bool]:
    with database.connect() as conn:
        row = conn.execute(
            """SELECT has_table_privilege(%(b)s, 'public."Prompt"', 'SELECT'),
                      has_column_privilege(%(b)s, 'public."Prompt"', 'title', 'SELECT'),
                      has_schema_privilege(%(b)s, 'rlsctl', 'USAGE'),
                      has_function_privilege(%(b)s, 'rlsctl.current_user_id()', 'EXECUTE'),
                      has_function_privilege(%(b)s, 'rlsctl.tenant_ids(text)', 'EXECUTE'),
                      EXISTS (SELECT FROM pg_default_acl d, aclexplode(d.defaclacl) a
                              WHERE a.grantee = %(b)s::regrole),
                      pg_has_role(%(w)s, %(app)s, 'MEMBER')""",
            {"b": backup, "w": web, "app": database.role("app")},
        ).fetchone()
    return dict(zip(["table", "column", "schema", "invoker", "definer", "default", "member"], row, strict=True))


@pytest.mark.parametrize("attribute", ["SUPERUSER", "BYPASSRLS"])
def test_a_managed_role_that_bypasses_rls_is_drift_that_apply_refuses(secured_db, attribute):
    names = tamper_with(secured_db, f"ALTER ROLE {{auditor}} {attribute}")
    auditor = names["auditor"]
    try:
        item = drift_items(secured_db)[f"role {auditor}"]
        assert item["state"] == "changed" and attribute in item["detail"]
        drift = cli(secured_db, "drift")
        assert drift.exit_code == 1 and f"role {auditor}" in drift.stdout and attribute in drift.stdout
        before = security_snapshot(secured_db)
        applied = cli(secured_db, "apply")
        assert applied.exit_code == 2
        assert f"role {auditor} is {attribute}; rlsctl will not manage it" in applied.stderr
        assert security_snapshot(secured_db) == before
        assert "apply will refuse" in cli(secured_db, "plan").stdout
    finally:
        tamper_with(secured_db, f"ALTER ROLE {{auditor}} NO{attribute}")
    assert_converged(secured_db)


def test_a_helper_schema_given_away_is_drift_that_apply_refuses(secured_db):
    names = tamper_with(secured_db, "ALTER SCHEMA rlsctl OWNER TO {app}")
    try:
        assert drift_items(secured_db)["schema rlsctl"]["state"] == "changed"
        before = security_snapshot(secured_db)
        applied = cli(secured_db, "apply")
        assert applied.exit_code == 2
        assert f"schema rlsctl is owned by {names['app']}, not {names['owner']}; rlsctl will not adopt it" in (
            applied.stderr
        )
        assert security_snapshot(secured_db) == before
    finally:
        tamper_with(secured_db, "ALTER SCHEMA rlsctl OWNER TO {owner}")
    assert cli(secured_db, "apply").exit_code == 0  # USAGE merged into the owner's while app owned it
    assert_converged(secured_db)


def test_a_helper_whose_result_type_changes_takes_its_policies_along(secured_db, tmp_path):
    """CREATE OR REPLACE cannot change a result type, and DROP FUNCTION refuses while policies
    call the function: apply drops those policies first and creates them again, in one transaction."""
    as_name = load_project(
        project_copy(tmp_path, "    type: text\n", "    type: name\n"), role_prefix=secured_db.prefix
    )
    as_text = secured_db.project()
    with secured_db.connect() as conn:
        for project, returns in ((as_name, "name"), (as_text, "text")):
            report = applying.apply(conn, project, "x")
            actions = [(s.action, s.object) for s in report.plan.statements]
            recreate = actions.index(("recreate", "function rlsctl.current_user_id()"))
            assert actions.index(("detach", "policy Prompt.app_select")) < recreate
            assert actions.index(("create", "policy Prompt.app_select")) > recreate
            assert read_plan(conn, project, "x", None).empty
            assert catalog_returns(conn) == returns
    with secured_db.connect() as conn:
        assert not run_matrix(conn, as_text, "x").failures  # the policies are back and work


def catalog_returns(conn) -> str:
    return conn.execute("SELECT pg_get_function_result('rlsctl.current_user_id()'::regprocedure)").fetchone()[0]


def test_apply_never_drops_rows_undeclared_tables_or_columns(secured_db):
    names = tamper_with(
        secured_db,
        'CREATE TABLE "Scratch" (id text PRIMARY KEY, note text); '
        "INSERT INTO \"Scratch\" VALUES ('a', 'kept'); "
        'CREATE POLICY theirs ON "Scratch" USING (true); '
        'GRANT SELECT ON "Scratch" TO {app}; '
        'ALTER TABLE "Prompt" ADD COLUMN "draft" text; '
        "INSERT INTO \"User\" (id, email, \"updatedAt\") VALUES ('u1', 'u1@example.test', now()); "
        'INSERT INTO "Prompt" (id, "userId", title, content, "updatedAt", draft) '
        "VALUES ('p1', 'u1', 't', 'c', now(), 'kept'); "
        # work for apply: everything on the table with the new column
        'ALTER TABLE "Prompt" DISABLE ROW LEVEL SECURITY; DROP POLICY app_select ON "Prompt"; '
        'REVOKE ALL ON "Prompt" FROM {app}; DROP TRIGGER rlsctl_guard ON "Prompt"',
    )
    counts = row_counts(secured_db)
    assert cli(secured_db, "apply").exit_code == 0
    assert row_counts(secured_db) == counts
    with secured_db.connect() as conn:
        assert conn.execute('SELECT note FROM "Scratch"').fetchall() == [("kept",)]
        assert conn.execute('SELECT draft FROM "Prompt"').fetchall() == [("kept",)]
        assert conn.execute("SELECT count(*) FROM pg_policy WHERE polname = 'theirs'").fetchone()[0] == 1
        assert conn.execute(
            "SELECT has_table_privilege(%s, 'public.\"Scratch\"', 'SELECT')", (names["app"],)
        ).fetchone()[0]
    assert_converged(secured_db)


def row_counts(database) -> dict[str, int]:
    with database.connect() as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
            )
        ]
        return {
            t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0] for t in tables
        }


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
