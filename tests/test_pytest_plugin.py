"""rlsctl's pytest plugin (rlsctl/testing, docs/pytest-plugin.md).

The worked example (examples/pytest/test_promptcraft_access.py) runs as a user would run it, in a
pytest of its own: it passes on a throw-away database the plugin makes, and fails, naming the
principal, the table, the command and the policies, on a database where one policy was widened.
The tests after those use the plugin's own fixtures on this suite's `secured_db`. Loading the
plugin, which pytest does in every session wherever rlsctl is installed, imports nothing heavy.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from psycopg import sql

from rlsctl.errors import UsageError
from rlsctl.policy.project import load_project
from rlsctl.testing import Delete, Insert, Select, Update
from rlsctl.testing.database import RlsctlDatabase, existing_database
from rlsctl.testing.session import RlsctlTransaction
from tests.conftest import ROOT, SERVER, TestDatabase

pytest_plugins = ["pytester"]

EXAMPLE = ROOT / "examples" / "pytest" / "test_promptcraft_access.py"
# What the database code needs and a session that merely loads the plugin must not import.
HEAVY = {"psycopg", "psycopg_binary", "jinja2", "pglast", "rich", "pydantic", "sqlglot", "yaml"}
INNER_TIMEOUT = 120  # seconds: an inner run takes about two


def run_example(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The example suite in a pytest process of its own, configured as a user's project would be."""
    pytester.makeini(f"[pytest]\nrlsctl_project = {ROOT}\n")
    pytester.path.joinpath(EXAMPLE.name).write_text(EXAMPLE.read_text())
    # Options as one word each (--x=value): pytest looks for its rootdir among the bare words of the
    # command line before the plugin's options are known, and would take a value for a path.
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=INNER_TIMEOUT)


def widen_prompt_select(database: TestDatabase) -> None:
    """What a careless hand on the database might do: every prompt readable by the application."""
    with database.connect() as conn:
        conn.execute(
            sql.SQL('CREATE POLICY widened_prompt_select ON "Prompt" FOR SELECT TO {} USING (true)').format(
                sql.Identifier(database.role("app"))
            )
        )


def test_the_example_suite_passes_on_a_database_the_plugin_makes(pytester: pytest.Pytester):
    result = run_example(pytester, f"--rlsctl-dsn={SERVER}")
    assert result.ret == 0, result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 10 and "failed" not in outcomes and "errors" not in outcomes, outcomes


def test_the_example_suite_fails_on_a_widened_policy_and_names_it(pytester: pytest.Pytester, secured_db):
    widen_prompt_select(secured_db)
    result = run_example(pytester, f"--rlsctl-database={secured_db.dsn}", f"--rlsctl-role-prefix={secured_db.prefix}")
    output = result.stdout.str()
    assert result.ret == 1, output
    result.stdout.fnmatch_lines(["*FAILED*test_a_member_of_team_b_cannot_read_team_a_prompts*"])
    app = secured_db.role("app")
    failure = _failure_block(output, "test_a_member_of_team_b_cannot_read_team_a_prompts")
    # The principal, the command, the table and what went wrong, on one line...
    assert (
        f"MEMBER of Team 'rlsctl-test-team_b' (user 'rlsctl-test-u_b_member', role {app}): "
        "SELECT on \"Prompt\": row 'rlsctl-test-p_a_member_shared' is visible"
    ) in failure, failure
    # ...and every policy that applied to the app role for SELECT, the widened one with its expression.
    assert f'policies on "Prompt" for role {app} and SELECT' in failure, failure
    assert f"widened_prompt_select (PERMISSIVE SELECT TO {app}) USING (true)" in failure, failure
    assert f"app_select (PERMISSIVE SELECT TO {app}) USING (" in failure, failure
    # The tests the widening does not touch still pass: a denial that does not depend on it holds.
    assert result.parseoutcomes().get("passed", 0) >= 5, output


def _failure_block(output: str, test: str) -> str:
    """The text pytest prints for one failed test (from its ____ header to the next)."""
    match = re.search(rf"_{{3,}} {test} _{{3,}}\n(.*?)(?=\n_{{3,}} |\n=+ )", output, re.S)
    assert match is not None, output
    return match.group(1)


def test_a_session_that_does_not_use_the_plugin_loads_none_of_its_database_code(pytester: pytest.Pytester):
    pytester.makepyfile(
        test_plain="""
        import sys

        def test_plain():
            assert "rlsctl.testing.plugin" in sys.modules  # installed, hence loaded...
            loaded = sorted(m for m in sys.modules if m.startswith("rlsctl.") and m not in
                            ("rlsctl.errors", "rlsctl.testing", "rlsctl.testing.ops", "rlsctl.testing.plugin"))
            assert loaded == []  # ...and nothing of the library behind it
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=INNER_TIMEOUT)
    assert result.ret == 0, result.stdout.str()


def test_importing_the_plugin_imports_no_heavy_dependency():
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import rlsctl.testing.plugin"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert {"rlsctl", "pytest"} <= imported  # the probe sees the plugin's imports
    assert imported & HEAVY == set()


def test_the_plugin_is_installed_and_its_fixtures_and_options_are_prefixed(pytester: pytest.Pytester):
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider", timeout=INNER_TIMEOUT)
    output = result.stdout.str()
    section = re.search(r"-+ fixtures defined from rlsctl\.testing\.plugin -+\n(.*?)(?=\n-+ |\n=+ |\Z)", output, re.S)
    assert section is not None, output
    names = set(re.findall(r"^(\w+)", section.group(1), re.M))
    assert names == {"rlsctl_db", "rlsctl_tx"}, names
    help_text = pytester.runpytest_subprocess("--help").stdout.str()
    options = set(re.findall(r"--rlsctl-[\w-]+", help_text))
    assert options == {"--rlsctl-project", "--rlsctl-dsn", "--rlsctl-database", "--rlsctl-role-prefix"}
    # --rlsctl-project's default never falls back to the example bundled with rlsctl.
    assert "if it has policies/; no project is an error" in " ".join(help_text.split())


def create_roles_of_another_deployment(database: TestDatabase, prefix: str) -> None:
    """An owner and an application role under `prefix`, owning nothing in `database`: what a shared
    server holds when another deployment was applied with that prefix."""
    with database.connect() as conn:
        for key in ("owner", "app"):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(prefix + key)))


def test_a_prepared_database_applied_with_another_prefix_fails_before_any_role_is_used(
    pytester: pytest.Pytester, secured_db
):
    other = f"{secured_db.prefix}other_"  # starts with the test's prefix: its roles are dropped with it
    create_roles_of_another_deployment(secured_db, other)
    result = run_example(pytester, f"--rlsctl-database={secured_db.dsn}", f"--rlsctl-role-prefix={other}")
    output = result.stdout.str()
    assert result.ret == 1, output
    # rlsctl_db fails, before any test's transaction (hence before any role is switched into)...
    assert "rlsctl_tx:" not in output and "passed" not in result.parseoutcomes(), output
    message = next((line for line in output.splitlines() if line.startswith("rlsctl_db: ")), None)
    assert message is not None, output
    # ...with one message: the prefix in use, what it expected, what it found, and the fix.
    assert f"role prefix '{other}' (the one given)" in message, message
    assert f"expected the owner role {other}owner to own the project's tables" in message, message
    assert f'"ApiKey", "AuditLog", "PerformanceMetrics" and 7 more are owned by {secured_db.role("owner")}' in message
    assert message.endswith(f"--rlsctl-role-prefix={secured_db.prefix} (ini rlsctl_role_prefix)"), message
    assert "InsufficientPrivilege" not in output and "must be owner" not in output, output


def test_without_a_role_prefix_the_projects_own_is_checked_and_the_right_one_named(secured_db):
    # The project's own prefix (promptcraft_): its roles may exist on this server, for another database.
    with pytest.raises(UsageError) as caught, existing_database(secured_db.dsn, load_project(ROOT)):
        pass
    message = str(caught.value)
    assert "role prefix 'promptcraft_' (the project's role_prefix: no --rlsctl-role-prefix was given)" in message
    assert f"owned by {secured_db.role('owner')}" in message, message
    assert f"--rlsctl-role-prefix={secured_db.prefix} " in message, message


def test_a_prepared_database_without_its_application_role_is_refused(secured_db):
    app = secured_db.role("app")
    with secured_db.connect() as conn:  # the new name keeps the prefix: dropped with the test's roles
        conn.execute(sql.SQL("ALTER ROLE {} RENAME TO {}").format(sql.Identifier(app), sql.Identifier(app + "_gone")))
    expected = f"the application role {app} to exist, but {app} does not exist"
    with pytest.raises(UsageError, match=expected), existing_database(secured_db.dsn, secured_db.project()):
        pass


def test_the_docs_show_the_example_as_it_is():
    assert f"```python\n{EXAMPLE.read_text()}```\n" in (ROOT / "docs" / "pytest-plugin.md").read_text()


# -- rlsctl's own tests, written with the plugin ------------------------------------------------------


@pytest.fixture
def rlsctl_db(secured_db) -> Iterator[RlsctlDatabase]:
    """The plugin's fixtures on this suite's own database (a user's conftest may do the same)."""
    with existing_database(secured_db.dsn, secured_db.project()) as database:
        yield database


def test_an_admin_removes_a_member_but_not_an_owner(rlsctl_tx: RlsctlTransaction):
    with rlsctl_tx.as_team_role("team_a", "ADMIN") as admin:
        assert admin.principal.startswith("ADMIN of Team 'rlsctl-test-team_a' (user 'rlsctl-test-u_a_admin'")
        admin.assert_denied(Delete("TeamMember", "m_a_owner"))
        admin.assert_rows_affected(Delete("TeamMember", "m_a_member"), 1)
        admin.assert_rows_affected(Select("TeamMember", "m_a_member"), 0)  # gone, for everyone
    # The block's savepoint is gone: the membership is back for the next principal.
    with rlsctl_tx.as_user("u_a_member") as member:
        member.assert_visible("TeamMember", "m_a_member")
        member.assert_denied(Update("TeamMember", "m_a_member", {"role": "ADMIN"}))


def test_a_denial_of_a_row_that_does_not_exist_fails(rlsctl_tx: RlsctlTransaction):
    with rlsctl_tx.as_team_role("team_a", "ADMIN") as admin:
        with pytest.raises(AssertionError, match="row 'no-such-row' does not exist at all"):
            admin.assert_denied(Delete("TeamMember", "no-such-row"))
        with pytest.raises(AssertionError, match="does not exist at all, so hiding it proves nothing"):
            admin.assert_not_visible("Prompt", "no-such-row")


def test_an_error_is_not_a_denial(rlsctl_tx: RlsctlTransaction):
    with rlsctl_tx.as_user("u_a_member") as member:
        with pytest.raises(
            AssertionError, match='got an error: 42703 column "nosuch" of relation "Prompt" does not exist'
        ):
            member.assert_denied('UPDATE "Prompt" SET nosuch = 1')
        member.assert_rows_affected('SELECT FROM "Prompt" WHERE "userId" = %s', 2, [rlsctl_tx.key("u_a_member")])


def test_a_widened_policy_is_named_in_the_failure(rlsctl_tx: RlsctlTransaction, secured_db):
    # Created in the test's transaction, as the connecting role: rolled back with the test.
    rlsctl_tx.connection.execute(
        sql.SQL('CREATE POLICY widened ON "Prompt" FOR SELECT TO {} USING (true)').format(
            sql.Identifier(secured_db.role("app"))
        )
    )
    with rlsctl_tx.as_api_key("pc_test_b_all") as key, pytest.raises(AssertionError) as caught:
        key.assert_not_visible("Prompt", "p_a_member_shared")
    message = str(caught.value)
    assert message.startswith(
        f"API key 'pc_test_b_all' (role {secured_db.role('app')}): SELECT on \"Prompt\": "
        "row 'rlsctl-test-p_a_member_shared' is visible"
    ), message
    assert f"widened (PERMISSIVE SELECT TO {secured_db.role('app')}) USING (true)" in message


def test_a_misspelt_column_names_the_table_and_the_columns_it_has(rlsctl_tx: RlsctlTransaction):
    with rlsctl_tx.as_user("u_a_admin") as admin:
        with pytest.raises(ValueError) as caught:
            admin.assert_denied(Update("TeamMember", "m_a_admin", {"rolee": "OWNER"}))
        message = str(caught.value)
        assert message.startswith("Update on \"TeamMember\": no column 'rolee' (did you mean 'role'?); its columns are")
        assert '"id"' in message and '"role"' in message and '"teamId"' in message, message
        with pytest.raises(ValueError, match="Insert on \"Prompt\": no column 'titel' \\(did you mean 'title'"):
            admin.assert_rows_affected(Insert("Prompt", {"userId": "@u_a_admin", "titel": "x"}), 1)
        with pytest.raises(ValueError, match="where= on \"Prompt\": no column 'teamid'"):
            admin.assert_visible("Prompt", where={"teamid": "@team_a"})
        with pytest.raises(ValueError, match="no column to set"):
            admin.execute(Update("TeamMember", "m_a_admin"))


def test_a_denial_of_sql_that_matches_no_row_at_all_fails(rlsctl_tx: RlsctlTransaction):
    app = rlsctl_tx.role("app")
    shared = rlsctl_tx.key("p_a_member_shared")  # team A's: hidden from team B's member
    with rlsctl_tx.as_user("u_b_member") as outsider:
        # Denied for real: the row exists, and RLS hides it from this principal.
        outsider.assert_denied('UPDATE "Prompt" SET title = %s WHERE id = %s', ["x", shared])
        outsider.assert_denied('DELETE FROM "Prompt" WHERE id = %s', [shared])
        outsider.assert_denied('SELECT FROM "Prompt" WHERE id = %s', [shared])
        # A typo in the id: 0 rows too, but for everyone, so nothing was denied.
        for statement, params in [
            ('UPDATE "Prompt" SET title = %s WHERE id = %s', ["x", shared + "-typo"]),
            ("DELETE FROM \"Prompt\" WHERE id = 'no-such-prompt'", None),
            ("SELECT title FROM \"Prompt\" WHERE id = 'no-such-prompt'", None),
        ]:
            with pytest.raises(AssertionError) as caught:
                outsider.assert_denied(statement, params)
            first = str(caught.value).splitlines()[0]
            assert first.endswith(
                f"it touches no row even as the owner role {rlsctl_tx.role('owner')} with RLS lifted, so a denial "
                "proves nothing: check its WHERE clause and parameters (a key with a typo?)"
            ), first
        # Where the owner cannot run the statement (a helper function only the application calls),
        # the check cannot decide, and the denial stands.
        outsider.assert_denied('DELETE FROM "Prompt" WHERE id = %s AND "userId" <> rlsctl.current_user_id()', [shared])
        # The check's savepoint is gone: the principal is back, RLS forced again, the row still hidden.
        state = rlsctl_tx.connection.execute(
            "SELECT current_user, relforcerowsecurity FROM pg_catalog.pg_class WHERE oid = '\"Prompt\"'::regclass"
        ).fetchone()
        assert state == (app, True)
        outsider.assert_not_visible("Prompt", shared)
