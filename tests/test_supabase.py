"""Supabase as a target: examples/supabase on a stand-in of the platform, and the lint's platform settings.

The stand-in (examples/supabase/platform/stand_in.sql) is what Supabase sets up
before the first migration: the API roles anon, authenticated and service_role
(BYPASSRLS) and the authenticator login, the auth schema (auth.users,
auth.uid()), a storage schema and pgcrypto in `extensions`, owned by a
platform admin. Roles are cluster-wide, so every test gets the platform's
roles under its own prefix (`t..._anon`): the SQL and the example's
`name:` entries are rewritten with it, nothing else.

The example runs the way docs/supabase.md tells: apply (rlsctl's roles), the
DBA's grants on auth, migrate, apply; then a second apply changes nothing,
drift is clean, lint passes, and `rlsctl test` judges every cell as the
expectations say.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from psycopg import sql

from rlsctl.cli.main import main
from rlsctl.errors import PolicyFileError
from rlsctl.lint import live, sqlfiles
from rlsctl.lint.model import LintModel
from rlsctl.lint.project import platform_design
from rlsctl.lint.rule import Finding
from rlsctl.lint.runner import run
from rlsctl.policy.project import load_project
from tests.conftest import ROOT, TestDatabase

EXAMPLE = ROOT / "examples" / "supabase"
PLATFORM_ROLES = ("supabase_admin", "anon", "authenticated", "service_role", "authenticator")
_PLATFORM_ROLE = re.compile(r"\b(" + "|".join(PLATFORM_ROLES) + r")\b")
_ROLE_NAME = re.compile(r"(?m)^(\s+name: )(anon|authenticated|service_role)$")


# -- the stand-in platform and the example under the test's prefix ---------------------------------------


def platform_sql(prefix: str, path: Path = EXAMPLE / "platform" / "stand_in.sql") -> str:
    return _PLATFORM_ROLE.sub(lambda m: prefix + m.group(1), path.read_text())


def stand_in(database: TestDatabase, users: bool = True) -> None:
    """The platform's setup, as a superuser, before rlsctl runs; the example's users signed up."""
    with database.connect() as conn:
        conn.execute(platform_sql(database.prefix).encode())
        if users:
            conn.execute((EXAMPLE / "platform" / "test_users.sql").read_text().encode())


def example_copy(database: TestDatabase, root: Path) -> Path:
    """examples/supabase with the platform's role names under the test's prefix."""
    project = root / "supabase"
    shutil.copytree(EXAMPLE, project)
    settings = project / "policies" / "project.yaml"
    text, count = _ROLE_NAME.subn(lambda m: m.group(1) + database.prefix + m.group(2), settings.read_text())
    assert count == 3, "the example names anon, authenticated and service_role"
    settings.write_text(text)
    return project


def dba_grants(database: TestDatabase) -> None:
    """What the platform's admin grants rlsctl's roles (docs/supabase.md): the owner's foreign keys
    reference auth.users, and auth.uid() runs in the definer's helpers too."""
    owner, definer = sql.Identifier(database.role("owner")), sql.Identifier(database.role("definer"))
    with database.connect() as conn:
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA auth TO {}, {}").format(owner, definer))
        conn.execute(sql.SQL("GRANT REFERENCES ON auth.users TO {}").format(owner))


def cli(database: TestDatabase, project: Path, *args: str) -> Result:
    arguments = [*args, "--dsn", database.dsn, "--project", str(project), "--role-prefix", database.prefix]
    return CliRunner().invoke(main, arguments)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


class Deployed:
    def __init__(self, database: TestDatabase, project: Path) -> None:
        self.database = database
        self.project = project

    def cli(self, *args: str) -> Result:
        return cli(self.database, self.project, *args)


@pytest.fixture(scope="module")
def deployed(make_module_db, tmp_path_factory) -> Deployed:
    """The example deployed as docs/supabase.md says, once for the module's tests (which change nothing
    they do not restore)."""
    database = make_module_db()
    stand_in(database)
    project = example_copy(database, tmp_path_factory.mktemp("supabase"))
    first = json.loads(ok(cli(database, project, "apply", "--format", "json")).stdout)
    assert first["managed_tables"] == [] and len(first["pending_tables"]) == 4  # rlsctl's roles, no table yet
    dba_grants(database)
    ok(cli(database, project, "migrate"))
    ok(cli(database, project, "apply"))
    return Deployed(database, project)


# -- the example, end to end ---------------------------------------------------------------------------------


def test_the_example_converges(deployed):
    again = json.loads(ok(deployed.cli("apply", "--format", "json")).stdout)
    assert again["changed"] is False and again["statements"] == 0 and again["needs_dba"] == []
    assert sorted(again["managed_tables"]) == ["document", "profile", "team", "team_member"]
    drift = ok(deployed.cli("drift"))
    assert "no drift" in drift.output
    # The platform's default privileges (for what its own login creates) are left alone, not drift.
    assert "unmanaged: default:" in drift.output and deployed.database.role("anon") in drift.output


def test_the_example_passes_rlsctl_test(deployed):
    result = ok(deployed.cli("test", "--format", "json"))
    summary = json.loads(result.stdout)["summary"]
    assert summary["mismatches"] == 0 and summary["invariant_violations"] == 0 and summary["failing_cases"] == 0
    assert summary["cells"] == summary["judged"] > 500
    assert "all cells as expected" in ok(deployed.cli("test")).output


def test_the_example_lints_clean(deployed):
    result = deployed.cli("lint", "--live", "--format", "json")
    assert result.exit_code == 0, result.output
    findings = json.loads(result.stdout)["findings"]
    assert not [f for f in findings if f["level"] == "error"], findings
    # auth.uid() runs in every policy, through the identity helper: the platform's, not reported.
    assert not [f for f in findings if f["object"].startswith(("auth.", "storage."))], findings
    # The REFERENCES the owner holds on auth.users (RLS disabled) reads no row: not RLS001.
    assert not [f for f in findings if f["rule"] == "RLS001"], findings
    bypass = [f for f in findings if f["rule"] == "SEC013"]
    assert [f["object"] for f in bypass] == [deployed.database.role("authenticator")]
    assert "service key" in bypass[0]["message"] and "scope each query to the tenant" in bypass[0]["message"]


def test_the_platform_roles_are_granted_to_never_managed(deployed):
    database = deployed.database
    with database.connect() as conn:
        roles = {
            name: (bypassrls, login, comment)
            for name, bypassrls, login, comment in conn.execute(
                "SELECT rolname, rolbypassrls, rolcanlogin, pg_catalog.shobj_description(oid, 'pg_authid') "
                "FROM pg_catalog.pg_roles WHERE rolname = ANY (%s)",
                ([database.role(name) for name in ("anon", "authenticated", "service_role")],),
            ).fetchall()
        }
        members = conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_auth_members WHERE member = %s::regrole",
            (database.role("authenticator"),),
        ).fetchone()
        grants = conn.execute(
            "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
            "WHERE table_schema = 'public' AND table_name = 'document' AND grantee = ANY (%s) ORDER BY 1, 2",
            ([database.role("anon"), database.role("service_role")],),
        ).fetchall()
    # Neither altered nor commented: service_role keeps its BYPASSRLS, apply did not refuse it.
    assert roles[database.role("service_role")] == (True, False, None)
    assert roles[database.role("anon")] == (False, False, None)
    assert members == (3,)  # the authenticator still switches into all three
    assert grants == [(database.role("anon"), "SELECT")]  # anon reads published documents; service_role nothing
    # A grant to a platform role beyond what the policies need is drift, and apply revokes it.
    with database.connect() as conn:
        conn.execute(sql.SQL("GRANT DELETE ON public.document TO {}").format(sql.Identifier(database.role("anon"))))
    drift = deployed.cli("drift")
    assert drift.exit_code == 1 and f"DELETE on document to {database.role('anon')}" in drift.output, drift.output
    ok(deployed.cli("apply"))
    assert "no drift" in ok(deployed.cli("drift")).output


def test_rlsctl_test_refuses_service_role_as_a_tenant_principal(deployed, tmp_path):
    project = tmp_path / "supabase"
    shutil.copytree(deployed.project, project)
    fixtures = project / "policies" / "fixtures.yaml"
    text = fixtures.read_text().replace(
        "    owner:   {role: owner}\n", "    owner:   {role: owner}\n    server:  {role: service_role}\n"
    )
    fixtures.write_text(text)
    result = cli(deployed.database, project, "test")
    assert result.exit_code == 2, result.output
    message = result.stderr
    assert f"refusing to test as {deployed.database.role('service_role')} (fixture principal server)" in message
    assert "BYPASSRLS" in message and "service key" in message and "never a tenant principal" in message


def test_the_example_renders_offline_without_creating_platform_roles():
    result = CliRunner().invoke(main, ["render", "--project", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert 'CREATE ROLE "teamdocs_owner"' in text and 'CREATE ROLE "teamdocs_definer"' in text
    for name in ("anon", "authenticated", "service_role"):
        assert f'CREATE ROLE "{name}"' not in text and f'COMMENT ON ROLE "{name}"' not in text
    assert 'TO "authenticated"' in text and 'TO "anon"' in text
    assert "auth.uid()" in text


# -- the project settings ------------------------------------------------------------------------------------------


def test_the_example_loads_with_its_platform_settings():
    project = load_project(EXAMPLE)
    assert project.settings.platform == "supabase"
    assert project.settings.lint_setting("trusted_schemas") == ("auth", "storage")
    assert project.settings.lint_setting("exposed_schemas") == ("public",)
    assert project.anonymous_role_names == ("anon",)
    assert {key for key, role in project.roles.items() if role.external} == {"anon", "app", "service_role"}
    assert project.role_name("app") == "authenticated"


@pytest.mark.parametrize(
    "before, after, message",
    [
        ("  owner:\n    kind: owner\n", "  owner:\n    kind: owner\n    external: true\n", "kind owner is rlsctl's own"),
        ("  platform: supabase ", "  lint: {anonymous_roles: [visitor]}\n  platform: supabase ",
         "anonymous_roles: 'visitor' is not a declared role key"),
    ],
    ids=["external-owner", "unknown-anonymous-role"],
)  # fmt: skip
def test_platform_settings_are_checked(tmp_path, before, after, message):
    project = tmp_path / "supabase"
    shutil.copytree(EXAMPLE, project)
    settings = project / "policies" / "project.yaml"
    assert before in settings.read_text()
    settings.write_text(settings.read_text().replace(before, after, 1))
    with pytest.raises(PolicyFileError, match=message):
        load_project(project)


# -- the lint's platform settings, both sides, on a real server ---------------------------------------------------


def supabase_model(database: TestDatabase, project: Path | None = None) -> LintModel:
    """The live model, with a project's platform settings (none: a project that says nothing of its platform)."""
    with database.connect() as conn:
        model = live.read_model(conn)
    if project is not None:
        platform_design(model, load_project(project, database.prefix))
    return model


def found(model: LintModel, *rules: str) -> dict[tuple[str, str], Finding]:
    return {(f.rule, f.object): f for f in run([model], select=rules).findings}


@pytest.fixture
def platform_db(db) -> TestDatabase:
    stand_in(db, users=False)
    return db


@pytest.fixture
def settings(platform_db, tmp_path) -> Path:
    """The example's project: `platform: supabase`, with the test's role names."""
    return example_copy(platform_db, tmp_path)


def test_platform_functions_are_trusted(platform_db, settings):
    """auth.uid() in a policy (PUBLIC may execute it, no search_path), a storage SECURITY DEFINER function:
    reported without the platform settings, quiet with them."""
    anon = sql.Identifier(platform_db.role("authenticated"))
    with platform_db.connect() as conn:
        conn.execute("CREATE TABLE public.note (id int PRIMARY KEY, owner uuid NOT NULL)")
        conn.execute("CREATE INDEX ON public.note (owner)")
        conn.execute("ALTER TABLE public.note ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY")
        conn.execute(sql.SQL("CREATE POLICY mine ON public.note TO {} USING (owner = (SELECT auth.uid()))").format(anon))
        conn.execute("CREATE FUNCTION storage.can_insert(bucket text) RETURNS boolean LANGUAGE sql SECURITY DEFINER "
                     "AS $$ SELECT true $$")  # fmt: skip
    rules = ("SEC001", "SEC003", "SEC005", "SEC011")
    bare = found(supabase_model(platform_db), *rules)
    assert {("SEC005", "auth.uid()"), ("SEC011", "auth.uid()")} <= set(bare)
    assert {("SEC001", "storage.can_insert(text)"), ("SEC003", "storage.can_insert(text)")} <= set(bare)
    trusted = found(supabase_model(platform_db, settings), *rules)
    assert not [key for key in trusted if key[1].startswith(("auth.", "storage."))], trusted


DEFINERS = {
    "qualified": "SELECT count(*)::integer FROM public.team WHERE name = team_name",
    "table": "SELECT count(*)::integer FROM team WHERE name = team_name",
    "type": "SELECT count(*)::integer FROM public.team WHERE id = team_name::uuid",
}


@pytest.mark.parametrize("source", ["live", "sql"])
def test_an_empty_search_path_is_safe_only_when_every_name_is_qualified(platform_db, settings, source):
    setup = "CREATE TABLE public.team (id uuid PRIMARY KEY, name text NOT NULL);\nCREATE SCHEMA private;\n"
    for name, body in DEFINERS.items():
        setup += (
            f"CREATE FUNCTION private.{name}(team_name text) RETURNS integer LANGUAGE sql STABLE SECURITY DEFINER "
            f"SET search_path = '' AS $$ {body} $$;\n"
            f"REVOKE EXECUTE ON FUNCTION private.{name}(text) FROM PUBLIC;\n"
        )
    setup += (
        "CREATE FUNCTION private.dynamic(team_name text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER "
        "SET search_path = '' AS $$ BEGIN EXECUTE pg_catalog.format('SELECT %L', team_name); END $$;\n"
    )
    if source == "live":
        with platform_db.connect() as conn:
            conn.execute("SET check_function_bodies = off")  # the unqualified body would not resolve
            conn.execute(setup.encode())
        model = supabase_model(platform_db, settings)
    else:
        model = sqlfiles.replay(LintModel(source="sql"), setup, "definers.sql")
    findings = found(model, "SEC002")
    assert ("SEC002", "private.qualified(text)") not in findings
    table = findings[("SEC002", "private.table(text)")].message
    assert "with search_path ''" in table and "names table team without a schema" in table
    assert "names type uuid without a schema" in findings[("SEC002", "private.type(text)")].message
    assert "dynamic SQL" in findings[("SEC002", "private.dynamic(text)")].message


def test_an_unqualified_type_really_runs_the_callers_code(platform_db):
    """Why SEC002 names types too: with search_path '', a temporary domain named uuid is the one a cast uses,
    and its CHECK runs with the definer's privileges."""
    victim, attacker = platform_db.role("victim"), platform_db.role("attacker")
    with platform_db.connect() as conn:
        for role in (victim, attacker):
            conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(
            sql.Identifier(platform_db.name), sql.Identifier(attacker)))  # fmt: skip
        conn.execute("CREATE FUNCTION public.cast_it(x text) RETURNS text LANGUAGE sql SECURITY DEFINER "
                     "SET search_path = '' AS $$ SELECT (x::uuid)::text $$")  # fmt: skip
        conn.execute(sql.SQL("ALTER FUNCTION public.cast_it(text) OWNER TO {}").format(sql.Identifier(victim)))
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(attacker)))
        conn.execute("CREATE FUNCTION pg_temp.who(t text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
                     "PERFORM pg_catalog.set_config('test.ran_as', current_user, false); RETURN true; END $$")  # fmt: skip
        conn.execute("CREATE DOMAIN pg_temp.uuid AS text CHECK (pg_temp.who(VALUE))")
        assert conn.execute("SELECT public.cast_it('not a uuid')").fetchone() == ("not a uuid",)
        assert conn.execute("SELECT current_setting('test.ran_as')").fetchone() == (victim,)


def test_a_definer_in_an_exposed_schema_that_anon_may_run_is_an_error(platform_db, settings):
    anon, authenticated = (sql.Identifier(platform_db.role(name)) for name in ("anon", "authenticated"))
    with platform_db.connect() as conn:
        for schema, name in (("public", "open"), ("public", "granted"), ("public", "closed"), ("private", "open")):
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("CREATE FUNCTION {}() RETURNS integer LANGUAGE sql STABLE SECURITY DEFINER "
                                 "SET search_path = '' AS $$ SELECT 1 $$").format(sql.Identifier(schema, name)))
        # The platform's default privileges gave anon EXECUTE on them too (what postgres creates in public).
        conn.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION public.granted(), public.closed() FROM PUBLIC, {}").format(anon))
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION public.granted() TO {}").format(anon))
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION public.closed() TO {}").format(authenticated))
    findings = found(supabase_model(platform_db, settings), "SEC003")
    for name in ("public.open()", "public.granted()"):
        finding = findings[("SEC003", name)]
        assert finding.level == "error" and platform_db.role("anon") in finding.message, finding
        assert "anon key" in finding.message and "FROM PUBLIC, anon" in finding.hint
    assert ("SEC003", "public.closed()") not in findings
    assert findings[("SEC003", "private.open()")].level == "warning"  # PUBLIC, in a schema the API does not serve
    bare = found(supabase_model(platform_db), "SEC003")
    assert bare[("SEC003", "public.open()")].level == "warning"


def test_a_policy_for_service_role_says_what_bypassing_means(platform_db, settings):
    service = sql.Identifier(platform_db.role("service_role"))
    with platform_db.connect() as conn:
        conn.execute("CREATE TABLE public.note (id int PRIMARY KEY)")
        conn.execute("ALTER TABLE public.note ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY")
        conn.execute(sql.SQL("CREATE POLICY server ON public.note TO {} USING (true)").format(service))
        conn.execute(sql.SQL("GRANT SELECT ON public.note TO {}").format(service))
    findings = found(supabase_model(platform_db, settings), "RLS023", "SEC013")
    assert "service key" in findings[("RLS023", "public.note.server")].message
    reach = findings[("SEC013", platform_db.role("authenticator"))].message
    assert "public.note" in reach and "must scope each query to the tenant itself" in reach


@pytest.mark.parametrize("privilege, reported", [("REFERENCES", False), ("SELECT", True)])
def test_references_alone_is_no_access_without_rls(platform_db, privilege, reported):
    with platform_db.connect() as conn:
        conn.execute(sql.SQL("GRANT {} ON auth.users TO {}").format(
            sql.SQL(privilege), sql.Identifier(platform_db.role("authenticated"))))  # fmt: skip
    findings = found(supabase_model(platform_db), "RLS001")
    assert (("RLS001", "auth.users") in findings) is reported
