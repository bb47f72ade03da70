"""The declarative diff: every kind of tampering is detected, repaired, and the next plan is empty."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pglast
import pytest
from click.testing import CliRunner
from psycopg import sql

from rlsctl.catalog import queries as catalog
from rlsctl.change import apply as applying
from rlsctl.change.diff import NARROWS, NEUTRAL, WIDENS, reversed_operations
from rlsctl.change.drift import read_plan
from rlsctl.change.plan import render_operations
from rlsctl.cli.main import main
from rlsctl.migrate import run as migrating
from rlsctl.policy.project import load_project
from rlsctl.tester.run import run_matrix
from tests.conftest import ROOT, as_operator, migrate_and_apply, vacuum
from tests.helpers import security_snapshot


def cli(database, *args: str):
    return CliRunner().invoke(
        main, [*args, "--dsn", database.dsn, "--project", str(ROOT), "--role-prefix", database.prefix]
    )


# Roles and a trigger function outside the project, made once for the tampering tests
# (login roles carry the test's prefix, so cleanup drops them).
NOOP_TRIGGER_FUNCTION = (
    "CREATE FUNCTION public.noop_trigger() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$"
)
OUTSIDERS = "CREATE ROLE {mallory} LOGIN; CREATE ROLE {flyway} LOGIN; CREATE ROLE {backup}; " + NOOP_TRIGGER_FUNCTION


@pytest.fixture(scope="module")
def baseline(make_module_db):
    """A freshly migrated and applied database, its snapshot through rlsctl's catalog
    queries, and one through plain pg_catalog queries that share none of their code."""
    database = make_module_db()
    migrate_and_apply(database)
    tamper_with(database, OUTSIDERS)
    return database, security_snapshot(database), pg_catalog_snapshot(database)


ROLE_KEYS = (
    "app", "owner", "definer", "keys", "auditor", "analyst", "retention", "backup", "web", "mallory", "flyway",
)  # fmt: skip
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
        NARROWS,  # the repair takes the attacker's `true` away
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
        NARROWS,  # the repair takes the attacker's `true` away
    ),
    (
        # ALTER POLICY cannot remove a clause: the repair must recreate the policy.
        "policy check added",
        'ALTER POLICY app_update ON "User" WITH CHECK (true)',
        "policy User.app_update",
        "changed",
        NARROWS,  # the repair takes the attacker's `true` away
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
        'DROP TRIGGER zz_rlsctl_encrypt ON "UsageAnalytics"',
        "trigger UsageAnalytics.zz_rlsctl_encrypt",
        "missing",
        NARROWS,
    ),
    (
        "guard dropped",
        'DROP TRIGGER zz_rlsctl_guard ON "TeamMember"',
        "trigger TeamMember.zz_rlsctl_guard",
        "missing",
        NARROWS,
    ),
    (
        "guard disabled",
        'ALTER TABLE "TeamMember" DISABLE TRIGGER zz_rlsctl_guard',
        "trigger TeamMember.zz_rlsctl_guard",
        "changed",
        NARROWS,
    ),
    (
        "encrypt trigger disabled",
        'ALTER TABLE "UsageAnalytics" DISABLE TRIGGER zz_rlsctl_encrypt',
        "trigger UsageAnalytics.zz_rlsctl_encrypt",
        "changed",
        NARROWS,
    ),
    (
        "guard fires only for replicas",
        'ALTER TABLE "Prompt" ENABLE REPLICA TRIGGER zz_rlsctl_guard',
        "trigger Prompt.zz_rlsctl_guard",
        "changed",
        NARROWS,
    ),
    (
        "guard fires always",
        'ALTER TABLE "Team" ENABLE ALWAYS TRIGGER zz_rlsctl_guard',
        "trigger Team.zz_rlsctl_guard",
        "changed",
        NEUTRAL,
    ),
    (
        "encrypt trigger exempts the app",
        'CREATE OR REPLACE TRIGGER zz_rlsctl_encrypt BEFORE INSERT OR UPDATE ON "UsageAnalytics" '
        'FOR EACH ROW WHEN (CURRENT_USER <> {app_literal}) EXECUTE FUNCTION rlsctl."encrypt_UsageAnalytics"()',
        "trigger UsageAnalytics.zz_rlsctl_encrypt",
        "changed",
        NARROWS,
    ),
    (
        "encrypt trigger never fires",
        'CREATE OR REPLACE TRIGGER zz_rlsctl_encrypt BEFORE INSERT OR UPDATE ON "UsageAnalytics" '
        'FOR EACH ROW WHEN (false) EXECUTE FUNCTION rlsctl."encrypt_UsageAnalytics"()',
        "trigger UsageAnalytics.zz_rlsctl_encrypt",
        "changed",
        NARROWS,
    ),
    (
        "encrypt trigger after the write",
        'CREATE OR REPLACE TRIGGER zz_rlsctl_encrypt AFTER INSERT OR UPDATE ON "UsageAnalytics" '
        'FOR EACH ROW EXECUTE FUNCTION rlsctl."encrypt_UsageAnalytics"()',
        "trigger UsageAnalytics.zz_rlsctl_encrypt",
        "changed",
        NARROWS,
    ),
    (
        "guard on one column only",
        'CREATE OR REPLACE TRIGGER zz_rlsctl_guard BEFORE UPDATE OF "title" ON "Prompt" '
        'FOR EACH ROW EXECUTE FUNCTION rlsctl."guard_Prompt"()',
        "trigger Prompt.zz_rlsctl_guard",
        "changed",
        NARROWS,
    ),
    (
        "encrypt trigger calls another function",
        'CREATE OR REPLACE TRIGGER zz_rlsctl_encrypt BEFORE INSERT OR UPDATE ON "PerformanceMetrics" '
        "FOR EACH ROW EXECUTE FUNCTION public.noop_trigger()",
        "trigger PerformanceMetrics.zz_rlsctl_encrypt",
        "changed",
        NARROWS,
    ),
    (
        "guard once per statement",
        'CREATE OR REPLACE TRIGGER zz_rlsctl_guard BEFORE UPDATE ON "TeamMember" '
        'FOR EACH STATEMENT EXECUTE FUNCTION rlsctl."guard_TeamMember"()',
        "trigger TeamMember.zz_rlsctl_guard",
        "changed",
        NARROWS,
    ),
    # roles and memberships
    ("role can log in", "ALTER ROLE {app} LOGIN", "role {app}", "changed", NARROWS),
    ("role creates roles", "ALTER ROLE {app} CREATEROLE", "role {app}", "changed", NARROWS),
    ("role creates databases", "ALTER ROLE {analyst} CREATEDB", "role {analyst}", "changed", NARROWS),
    ("app may become owner", "GRANT {owner} TO {app}", "membership of {app} in {owner}", "extra", NARROWS),
    # an undeclared login in a role that owns objects or holds keys: SET ROLE, then anything
    ("outsider may become owner", "GRANT {owner} TO {mallory}", "membership of {mallory} in {owner}", "extra", NARROWS),
    ("outsider may become keys", "GRANT {keys} TO {mallory}", "membership of {mallory} in {keys}", "extra", NARROWS),
    (
        "outsider may become definer",
        "GRANT {definer} TO {mallory}",
        "membership of {mallory} in {definer}",
        "extra",
        NARROWS,
    ),
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
    (
        "migration tool opens new tables",
        "ALTER DEFAULT PRIVILEGES FOR ROLE {flyway} GRANT SELECT ON TABLES TO {app}",
        "default: SELECT on new tables of {flyway} to {app}",
        "extra",
        NARROWS,
    ),
    (
        "migration tool opens new tables in the schema",
        "ALTER DEFAULT PRIVILEGES FOR ROLE {flyway} IN SCHEMA public GRANT INSERT ON TABLES TO PUBLIC",
        "default: INSERT on new tables of {flyway} in schema public to PUBLIC",
        "extra",
        NARROWS,
    ),
    # grants count with their grantor: another grantor's vanish with its grant option
    (
        "declared grant only through another grantor",
        'GRANT SELECT ON "Prompt" TO {analyst} WITH GRANT OPTION; REVOKE SELECT ON "Prompt" FROM {app}; '
        'SET ROLE {analyst}; GRANT SELECT ON "Prompt" TO {app}; RESET ROLE',
        "SELECT on Prompt to {app}",
        "missing",
        WIDENS,
    ),
    (
        "declared grant also through another grantor",
        'GRANT UPDATE ("title") ON "Prompt" TO {auditor} WITH GRANT OPTION; '
        'SET ROLE {auditor}; GRANT UPDATE ("title") ON "Prompt" TO {app}; RESET ROLE',
        "UPDATE (title) on Prompt to {app} (granted by {auditor})",
        "extra",
        NARROWS,
    ),
    (
        "table grant beside declared column grants",
        'GRANT SELECT ON "ApiKey" TO {app}',
        "SELECT on ApiKey to {app}",
        "extra",
        NARROWS,
    ),
    # rlsctl's tables of the helper schema: only their owner reads them
    (
        "key store readable",
        "GRANT SELECT ON rlsctl.encryption_key TO {analyst}",
        "SELECT on rlsctl.encryption_key to {analyst}",
        "extra",
        NARROWS,
    ),
    (
        "key store column readable",
        "GRANT SELECT (wrapped) ON rlsctl.encryption_key TO PUBLIC",
        "SELECT (wrapped) on rlsctl.encryption_key to PUBLIC",
        "extra",
        NARROWS,
    ),
    (
        "key store policy",
        "CREATE POLICY sneaky ON rlsctl.encryption_key USING (true)",
        "policy rlsctl.encryption_key.sneaky",
        "extra",
        NARROWS,
    ),
    (
        "key store rls off",
        "ALTER TABLE rlsctl.encryption_key DISABLE ROW LEVEL SECURITY",
        "table rlsctl.encryption_key",
        "changed",
        NARROWS,
    ),
    (
        "key store forced",  # binds its owner: encryption and rotation would read no key
        "ALTER TABLE rlsctl.encryption_key FORCE ROW LEVEL SECURITY",
        "table rlsctl.encryption_key",
        "changed",
        WIDENS,
    ),
    (
        "key store given away",
        "ALTER TABLE rlsctl.encryption_key OWNER TO {analyst}",
        "table rlsctl.encryption_key",
        "changed",
        NEUTRAL,
    ),
    (
        "phase bookkeeping writable",
        "GRANT INSERT ON rlsctl.applied_phase TO {app}",
        "INSERT on rlsctl.applied_phase to {app}",
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
    ("extension moved", "ALTER EXTENSION pgcrypto SET SCHEMA public", "extension pgcrypto", "changed", NEUTRAL),
    # a body that holds rlsctl's dollar-quote tag: its reverse must not end the quote early
    (
        "helper body with the quote tag",
        "CREATE OR REPLACE FUNCTION rlsctl.current_user_id() RETURNS text LANGUAGE sql STABLE "
        "SET search_path = pg_catalog, pg_temp AS $q$ SELECT '$rlsctl$; DROP TABLE \"AuditLog\"; --' $q$",
        "function rlsctl.current_user_id()",
        "changed",
        WIDENS,
    ),
]


def tamper_with(database, statement: str) -> dict[str, str]:
    """Run tampering SQL as the superuser, role placeholders filled in; returns the role names."""
    names = {key: database.role(key) for key in ROLE_KEYS}
    with database.connect() as conn:
        placeholders = {k: sql.Identifier(v).as_string(conn) for k, v in names.items()}
        placeholders |= {f"{k}_literal": sql.Literal(v).as_string(conn) for k, v in names.items()}
        conn.execute(statement.replace('"{', "{").format(**placeholders))
    return names


def drift_items(database) -> dict[str, dict]:
    drift = cli(database, "drift", "--format", "json")
    assert drift.exit_code == 1, drift.output
    return {item["object"]: item for item in json.loads(drift.stdout)["drift"]}


def assert_converged(database) -> None:
    again = cli(database, "plan", "--format", "json")
    assert json.loads(again.stdout)["statements"] == []
    drift = cli(database, "drift")
    assert drift.exit_code == 0, drift.output


@pytest.mark.parametrize("name, tamper, obj, state, effect", TAMPERING, ids=[t[0] for t in TAMPERING])
def test_tampering_is_detected_repaired_and_converges(baseline, name, tamper, obj, state, effect):
    """Drift names it, apply repairs it, the next plan is empty; and the reverse of the
    repair, run as SQL, brings the tampered state back (Operation.reverse renders the inverse).
    The repair is checked twice: through rlsctl's catalog queries and through plain
    pg_catalog queries that share none of their blind spots."""
    database, expected, expected_in_pg_catalog = baseline
    vacuum(database)  # each case applies twice on the module's database
    names = tamper_with(database, tamper)
    tampered = security_snapshot(database)
    assert tampered != expected
    assert pg_catalog_snapshot(database) != expected_in_pg_catalog
    found = drift_items(database)
    item = found.get(obj.format(**names))
    assert item is not None, found
    assert (item["state"], item["effect"]) == (state, effect), found
    with database.connect() as conn:
        repair = read_plan(conn, database.project(), "x", None)
    applied = cli(database, "apply")
    assert applied.exit_code == 0, applied.stderr
    assert security_snapshot(database) == expected
    assert pg_catalog_snapshot(database) == expected_in_pg_catalog
    assert_converged(database)
    run_reversed(database, repair)
    assert security_snapshot(database) == tampered
    assert cli(database, "apply").exit_code == 0
    assert security_snapshot(database) == expected


# Plain pg_catalog queries, written here and sharing no code with rlsctl/catalog, so
# that a blind spot of rlsctl's own reads cannot hide a repair that did not happen.
PG_CATALOG_SNAPSHOT = {
    "relations": """
        SELECT n.nspname, c.relname, c.relkind::text, pg_get_userbyid(c.relowner),
               c.relrowsecurity, c.relforcerowsecurity
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('public', 'rlsctl') AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')""",
    "relacl": """
        SELECT n.nspname, c.relname, pg_get_userbyid(a.grantor), a.grantee::regrole::text,
               a.privilege_type, a.is_grantable
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
             aclexplode(COALESCE(c.relacl, acldefault('r', c.relowner))) a
        WHERE n.nspname IN ('public', 'rlsctl')""",
    "attacl": """
        SELECT n.nspname, c.relname, t.attname, pg_get_userbyid(a.grantor), a.grantee::regrole::text,
               a.privilege_type, a.is_grantable
        FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(t.attacl) a
        WHERE n.nspname IN ('public', 'rlsctl')""",
    "policies": """
        SELECT n.nspname, c.relname, p.polname, p.polcmd::text, p.polpermissive,
               ARRAY(SELECT r::regrole::text FROM unnest(p.polroles) r ORDER BY 1)::text,
               pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace""",
    "triggers": """
        SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled::text
        FROM pg_trigger t WHERE NOT t.tgisinternal""",
    "functions": """
        SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner), p.prosrc, p.proconfig::text,
               p.prosecdef, p.provolatile::text
        FROM pg_proc p WHERE p.pronamespace = 'rlsctl'::regnamespace""",
    "proacl": """
        SELECT p.oid::regprocedure::text, pg_get_userbyid(a.grantor), a.grantee::regrole::text,
               a.privilege_type, a.is_grantable
        FROM pg_proc p, aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) a
        WHERE p.pronamespace IN ('rlsctl'::regnamespace, 'public'::regnamespace)""",
    "memberships": """
        SELECT m.roleid::regrole::text, m.member::regrole::text, m.admin_option
        FROM pg_auth_members m
        WHERE starts_with(m.roleid::regrole::text, %(prefix)s) OR starts_with(m.member::regrole::text, %(prefix)s)""",
    "roles": """
        SELECT rolname, rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb
        FROM pg_roles WHERE starts_with(rolname, %(prefix)s)""",
    "default_acl": """
        SELECT pg_get_userbyid(d.defaclrole), d.defaclnamespace::regnamespace::text, d.defaclobjtype::text,
               a.grantee::regrole::text, a.privilege_type, a.is_grantable
        FROM pg_default_acl d, aclexplode(d.defaclacl) a""",
    "schemas": """
        SELECT n.nspname, pg_get_userbyid(n.nspowner), pg_get_userbyid(a.grantor), a.grantee::regrole::text,
               a.privilege_type, a.is_grantable
        FROM pg_namespace n, aclexplode(COALESCE(n.nspacl, acldefault('n', n.nspowner))) a
        WHERE n.nspname IN ('public', 'rlsctl')""",
    "extensions": "SELECT extname, extnamespace::regnamespace::text FROM pg_extension",
}


def pg_catalog_snapshot(database) -> dict[str, set]:
    """The security layer as pg_catalog has it, role prefix replaced by '<p>'. (Grantee 0
    prints as '-': PUBLIC. A NULL ACL is read as the default it stands for: revoking the
    last grant leaves the owner's privileges spelled out, which grant nothing new.)"""

    def norm(value):
        return value.replace(database.prefix, "<p>") if isinstance(value, str) else value

    with database.connect() as conn:
        conn.execute("SET search_path = pg_catalog, pg_temp")
        return {
            name: {tuple(map(norm, row)) for row in conn.execute(query, {"prefix": database.prefix})}
            for name, query in PG_CATALOG_SNAPSHOT.items()
        }


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
    # the application's own trigger on a managed table
    'CREATE TRIGGER set_updated_at BEFORE UPDATE ON "Prompt" FOR EACH ROW EXECUTE FUNCTION public.noop_trigger()',
]


def test_grants_to_undeclared_roles_are_unmanaged_unless_pruned(secured_db, tmp_path):
    tamper_with(secured_db, "CREATE ROLE {backup}; CREATE ROLE {web} LOGIN; " + NOOP_TRIGGER_FUNCTION)
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
        "trigger Prompt.set_updated_at",
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
    with secured_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'set_updated_at'").fetchone()[0] == 1

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


def test_trigger_and_truncate_are_revoked_from_any_role(secured_db):
    """Row-level security filters neither: an outside check's undeclared role attached a trigger that
    copied another tenant's orders, and TRUNCATE would empty every tenant; drift said nothing."""
    tamper_with(secured_db, "CREATE ROLE {backup}")
    names = tamper_with(secured_db, 'GRANT TRIGGER, TRUNCATE ON "Prompt" TO {backup}; GRANT TRUNCATE ON "Team" TO {app}')
    backup, app = names["backup"], names["app"]
    found = drift_items(secured_db)
    assert {f"TRIGGER on Prompt to {backup}", f"TRUNCATE on Prompt to {backup}", f"TRUNCATE on Team to {app}"} <= set(
        found
    ), found
    assert cli(secured_db, "apply").exit_code == 0
    assert cli(secured_db, "drift").exit_code == 0
    with secured_db.connect() as conn:
        held = conn.execute(
            """SELECT has_table_privilege(%s, 'public."Prompt"', 'TRIGGER'),
                      has_table_privilege(%s, 'public."Prompt"', 'TRUNCATE'),
                      has_table_privilege(%s, 'public."Team"', 'TRUNCATE')""",
            (backup, backup, app),
        ).fetchone()
    assert held == (False, False, False)


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
        assert f"schema rlsctl is owned by {names['app']}, not {names['keys']}; rlsctl will not adopt it" in (
            applied.stderr
        )
        assert security_snapshot(secured_db) == before
    finally:
        tamper_with(secured_db, "ALTER SCHEMA rlsctl OWNER TO {keys}")
    assert cli(secured_db, "apply").exit_code == 0  # USAGE merged into the owner's while app owned it
    assert_converged(secured_db)


def test_a_helper_schema_of_the_owner_role_moves_to_the_keys_role(secured_db):
    """The layout before the helper schema left the owner role (whose members are the migrations'
    logins): apply takes it back for the keys role, and the owner role keeps only USAGE."""
    tamper_with(secured_db, "ALTER SCHEMA rlsctl OWNER TO {owner}")
    assert drift_items(secured_db)["schema rlsctl"]["state"] == "changed"
    assert cli(secured_db, "apply").exit_code == 0
    assert_converged(secured_db)
    with secured_db.connect() as conn:
        owner = conn.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'rlsctl'").fetchone()[0]
        create = conn.execute("SELECT has_schema_privilege(%s, 'rlsctl', 'CREATE')", (secured_db.role("owner"),))
        assert owner == secured_db.role("keys") and create.fetchone()[0] is False


def test_a_helper_whose_result_type_changes_takes_its_policies_along(secured_db, tmp_path):
    """CREATE OR REPLACE cannot change a result type, and DROP FUNCTION refuses while policies
    call the function: apply drops those policies first and creates them again, in one transaction."""
    as_name = load_project(
        project_copy(tmp_path, "    type: text\n", "    type: varchar\n"), role_prefix=secured_db.prefix
    )
    as_text = secured_db.project()
    with secured_db.connect() as conn:
        for project, returns in ((as_name, "character varying"), (as_text, "text")):
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
        'REVOKE ALL ON "Prompt" FROM {app}; DROP TRIGGER zz_rlsctl_guard ON "Prompt"',
    )
    counts = row_counts(secured_db)
    assert cli(secured_db, "apply").exit_code == 0
    # Nothing goes; the audit log gains the one row that records this apply (docs/audit.md).
    counts["AuditLog"] += 1
    assert row_counts(secured_db) == counts
    with secured_db.connect() as conn:
        assert conn.execute('SELECT note FROM "Scratch"').fetchall() == [("kept",)]
        assert conn.execute('SELECT draft FROM "Prompt"').fetchall() == [("kept",)]
        assert conn.execute("SELECT count(*) FROM pg_policy WHERE polname = 'theirs'").fetchone()[0] == 1
        assert conn.execute(
            "SELECT has_table_privilege(%s, 'public.\"Scratch\"', 'SELECT')", (names["app"],)
        ).fetchone()[0]
    # Converged but for the undeclared table the app can read: apply leaves it, drift names it.
    assert json.loads(cli(secured_db, "plan", "--format", "json").stdout)["statements"] == []
    assert list(drift_items(secured_db)) == ["undeclared table Scratch"]


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


def test_members_of_privileged_roles_are_listed_or_revoked(secured_db, tmp_path):
    """A member may SET ROLE to the owner (and disable RLS) or to the keys role (and read the
    key store): in those roles only the members listed in `members:` are left alone. In the
    app role, members are how the application connects: unmanaged, or expected when listed."""
    names = tamper_with(
        secured_db,
        "CREATE ROLE {mallory} LOGIN; CREATE ROLE {flyway} LOGIN; CREATE ROLE {web} LOGIN; CREATE ROLE {backup}; "
        "GRANT {owner} TO {flyway}; GRANT {owner} TO {mallory}; GRANT {keys} TO {backup}; "
        "GRANT {app} TO {web}; GRANT {app} TO {flyway}",
    )
    mallory, flyway, web, backup = names["mallory"], names["flyway"], names["web"], names["backup"]
    owner, app, keys = names["owner"], names["app"], names["keys"]
    root = project_copy(tmp_path, "    kind: owner\n", f"    kind: owner\n    members: [{flyway}]\n")
    settings = root / "policies" / "project.yaml"
    settings.write_text(settings.read_text().replace("    kind: app\n", f"    kind: app\n    members: [{flyway}]\n"))
    project = load_project(root, role_prefix=secured_db.prefix)
    options = ["--dsn", secured_db.dsn, "--project", str(root), "--role-prefix", secured_db.prefix]
    drift = CliRunner().invoke(main, ["drift", "--format", "json", *options])
    assert drift.exit_code == 1, drift.output
    data = json.loads(drift.stdout)
    found = {item["object"]: (item["state"], item["effect"]) for item in data["drift"]}
    assert found == {
        f"membership of {mallory} in {owner}": ("extra", NARROWS),
        f"membership of {backup} in {keys}": ("extra", NARROWS),
    }
    assert [item["object"] for item in data["unmanaged"]] == [f"membership of {web} in {app}"]
    with secured_db.connect() as conn:
        applying.apply(conn, project, "x")
        assert read_plan(conn, project, "x", None).empty
    assert members(secured_db, owner) == {flyway}
    assert members(secured_db, keys) == set()
    assert members(secured_db, app) == {web, flyway}


def members(database, role: str) -> set[str]:
    with database.connect() as conn:
        rows = conn.execute(
            "SELECT member::regrole::text FROM pg_auth_members WHERE roleid = %s::regrole", (role,)
        ).fetchall()
    return {row[0].strip('"') for row in rows}


def test_a_grant_option_revoke_names_what_its_cascade_removes(baseline):
    """REVOKE GRANT OPTION ... CASCADE takes the grants the grantee made with it, even to
    roles the plan otherwise leaves alone: the plan names them with the statement."""
    database = baseline[0]
    names = tamper_with(
        database,
        'GRANT SELECT ON "Prompt" TO {auditor} WITH GRANT OPTION; SET ROLE {auditor}; '
        'GRANT SELECT ON "Prompt" TO {backup}; RESET ROLE',
    )
    taken = f"SELECT on Prompt to {names['backup']} (granted by {names['auditor']})"
    plan = json.loads(cli(database, "plan", "--format", "json").stdout)
    revoke = f'REVOKE SELECT ON TABLE "public"."Prompt" FROM "{names["auditor"]}" CASCADE'
    statements = {statement["sql"]: statement for statement in plan["statements"]}
    assert statements[revoke]["cascades"] == [taken]
    assert taken not in [item["object"] for item in plan["unmanaged"]]  # not "left alone"
    assert f"CASCADE also removes: {taken}" in cli(database, "plan").stdout
    assert cli(database, "apply").exit_code == 0
    with database.connect() as conn:
        assert not conn.execute(
            "SELECT has_table_privilege(%s, 'public.\"Prompt\"', 'SELECT')", (names["backup"],)
        ).fetchone()[0]
    assert_converged(database)


def test_a_body_holding_the_quote_tag_cannot_end_the_quote(baseline):
    """A helper body read from the catalog goes inside a dollar quote whose tag it does not
    contain: the plan and its reverse parse as the statements they name, nothing more."""
    database = baseline[0]
    tamper_with(
        database,
        "CREATE OR REPLACE FUNCTION rlsctl.current_user_id() RETURNS text LANGUAGE sql STABLE "
        "SET search_path = pg_catalog, pg_temp AS $q$ SELECT '$rlsctl$; DROP TABLE \"AuditLog\"; --' $q$",
    )
    with database.connect() as conn:
        repair = read_plan(conn, database.project(), "x", None)
    undo = render_operations(reversed_operations(list(repair.operations)), repair.state, ROOT / "templates")
    for statement in (*repair.statements, *undo):
        parsed = pglast.parse_sql(statement.sql)
        assert len(parsed) == 1, statement.sql
        assert type(parsed[0].stmt).__name__ != "DropStmt", statement.sql
    [create] = [s.sql for s in undo if type(pglast.parse_sql(s.sql)[0].stmt).__name__ == "CreateFunctionStmt"]
    assert "AS $rlsctl_1$ SELECT '$rlsctl$; DROP TABLE" in create
    run_reversed(database, repair)
    with database.connect() as conn:
        body = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'current_user_id'").fetchone()[0]
        assert body == " SELECT '$rlsctl$; DROP TABLE \"AuditLog\"; --' "
        assert conn.execute("SELECT to_regclass('public.\"AuditLog\"') IS NOT NULL").fetchone()[0]
    assert cli(database, "apply").exit_code == 0
    assert_converged(database)


def test_what_this_session_cannot_revoke_is_left_to_a_dba(make_db):
    """A non-superuser operator cannot change another role's default privileges nor revoke
    another grantor's grant without membership in that role: no statement that would fail,
    drift names it, apply reports it and succeeds; a superuser's apply then repairs it."""
    database = make_db()
    operating = as_operator(database)
    migrate_and_apply(operating)
    names = tamper_with(
        database,
        "CREATE ROLE {flyway} LOGIN; CREATE ROLE {backup}; "
        "ALTER DEFAULT PRIVILEGES FOR ROLE {flyway} GRANT SELECT ON TABLES TO {app}; "
        'GRANT SELECT ON "AuditLog" TO {backup} WITH GRANT OPTION; '
        'SET ROLE {backup}; GRANT SELECT ON "AuditLog" TO {analyst}; RESET ROLE',
    )
    default = f"default: SELECT on new tables of {names['flyway']} to {names['app']}"
    grant = f"SELECT on AuditLog to {names['analyst']} (granted by {names['backup']})"
    found = drift_items(operating)
    assert {key: (found[key]["state"], found[key]["action"]) for key in (default, grant)} == {
        default: ("extra", "needs_dba"),
        grant: ("extra", "needs_dba"),
    }
    # (pgcrypto, a trusted extension, installed by the operator: its functions belong to the
    # bootstrap superuser, so EXECUTE for PUBLIC on them is the operator's to report, not revoke.)
    assert {item["action"] for item in found.values()} == {"needs_dba"}, [
        (k, v["action"]) for k, v in found.items() if v["action"] != "needs_dba"
    ]
    assert f"needs membership in {names['flyway']}" in found[default]["detail"]
    plan = json.loads(cli(operating, "plan", "--format", "json").stdout)
    assert not [s for s in plan["statements"] if names["flyway"] in s["sql"] or names["backup"] in s["sql"]]
    applied = cli(operating, "apply")
    assert applied.exit_code == 0, applied.stderr
    assert f"not repaired: {default}" in applied.stdout and f"not repaired: {grant}" in applied.stdout
    assert set(drift_items(operating)) == set(found)  # still there: nothing pretended otherwise
    # A superuser may act as both. (It also revokes the operator's memberships in the owner,
    # definer and keys roles, unless listed in their `members:`: it is not this run's operator.)
    assert cli(database, "apply").exit_code == 0
    assert_converged(database)


def test_a_triggers_when_is_read_from_its_parse_tree(db):
    """WHEN is the text between the parentheses after WHEN, token by token: an argument or a
    string holding `) EXECUTE FUNCTION ` or a parenthesis cannot cut it short or stretch it."""
    tricky = "x) EXECUTE FUNCTION f('"
    with db.connect() as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, a text)")
        conn.execute("CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'")
        conn.execute(
            "CREATE TRIGGER with_when BEFORE UPDATE ON t FOR EACH ROW "
            f"WHEN ((old.a IS DISTINCT FROM new.a) AND new.a <> '{tricky.replace(chr(39), chr(39) * 2)}') "
            "EXECUTE FUNCTION trg(') EXECUTE FUNCTION x(', 'WHEN (true)')"
        )
        conn.execute("CREATE TRIGGER without_when BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION trg('WHEN (a)')")
        found = {t.name: t for t in catalog.triggers(conn, "public")}
    assert found["with_when"].when == (
        "((old.a IS DISTINCT FROM new.a) AND (new.a <> 'x) EXECUTE FUNCTION f('''::text))"
    )
    assert found["without_when"].when is None
    assert found["with_when"].args.startswith(") EXECUTE FUNCTION x(")


@pytest.mark.parametrize("attribute, column", [("LEAKPROOF", "proleakproof"), ("STRICT", "proisstrict")])
def test_a_helper_made_leakproof_or_strict_is_drift_and_apply_resets_it(secured_db, attribute, column):
    """An outside check: LEAKPROOF (the planner may run the helper before the policies filter a row)
    and STRICT set on a helper by hand were neither drift nor undone by apply."""
    tamper_with(secured_db, f"ALTER FUNCTION rlsctl.tenant_ids(text) {attribute}")
    assert "function rlsctl.tenant_ids(text)" in drift_items(secured_db)
    assert cli(secured_db, "apply").exit_code == 0
    assert cli(secured_db, "drift").exit_code == 0
    with secured_db.connect() as conn:
        flag = conn.execute(f"SELECT {column} FROM pg_proc WHERE oid = 'rlsctl.tenant_ids(text)'::regprocedure")
        assert flag.fetchone()[0] is False
