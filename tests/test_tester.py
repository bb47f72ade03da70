"""rlsctl test itself: it fails when a policy is wrong, refuses false greens, and reports in three formats."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

import pytest
from click.testing import CliRunner
from psycopg import conninfo, sql

from rlsctl.cli.main import main
from rlsctl.errors import UsageError
from rlsctl.tester.run import run_matrix
from tests import spec_matrix
from tests.conftest import ROOT


def cli_test(database, *extra: str):
    return CliRunner().invoke(
        main, ["test", "--dsn", database.dsn, "--project", str(ROOT), "--role-prefix", database.prefix, *extra]
    )


def test_a_loosened_policy_makes_the_test_fail(secured_db):
    with secured_db.connect() as conn:
        conn.execute(sql.SQL('ALTER POLICY app_select ON "Prompt" USING (true)'))
    result = cli_test(secured_db)
    assert result.exit_code == 1
    assert "MISMATCH Prompt SELECT p_b_member_shared as a_member: expected denied" in result.stdout


def test_a_dropped_policy_makes_the_test_fail(secured_db):
    with secured_db.connect() as conn:
        conn.execute('DROP POLICY app_insert ON "TeamMember"')
    result = cli_test(secured_db, "--format", "json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    bad = [c for c in data["cells"] if not c["ok"]]
    assert bad and all(c["table"] == "TeamMember" and c["command"] == "insert" for c in bad)
    assert any(c["principal"] == "a_admin" and c["expected"] == "allowed" for c in bad)


def test_cells_refused_by_a_privilege_error_are_called_out_not_taken_for_a_policy(secured_db):
    # What an undeclared tenancy table gives: the helpers cannot read the membership rows.
    with secured_db.connect() as conn:
        definer = sql.Identifier(secured_db.role("definer"))
        conn.execute(sql.SQL('REVOKE ALL ON "TeamMember" FROM {}').format(definer))
    result = cli_test(secured_db, "--table", "Prompt")
    assert "cells were refused by an error, not by a policy: permission denied for table TeamMember" in (
        result.stdout.replace("\n", " ")
    ), result.stdout


def test_a_dropped_guard_makes_the_test_fail(secured_db):
    with secured_db.connect() as conn:
        conn.execute('DROP TRIGGER zz_rlsctl_guard ON "TeamMember"')
    result = cli_test(secured_db)
    assert result.exit_code == 1
    # Without the guard an OWNER could demote itself: the cell for that case catches it.
    assert "MISMATCH TeamMember UPDATE make_member:m_a_coowner as a_coowner" in result.stdout


def test_denied_updates_are_judged_by_rows_affected(secured_db):
    """Without an UPDATE policy, RLS makes every UPDATE succeed with 0 rows and no error:
    a tester that judged by errors alone would call those cells allowed."""
    with secured_db.connect() as conn:
        conn.execute('DROP POLICY app_update ON "Prompt"')
        result = run_matrix(conn, secured_db.project(), "x", expect=spec_matrix.expectation)
    silent = [c for c in result.failures if c.table == "Prompt" and c.command == "update"]
    assert silent and all(c.expected and c.actual.detail == "0 rows" for c in silent)
    assert any(c.case.startswith("edit:") and c.principal == "a_member" for c in silent)


@pytest.mark.parametrize("attribute", ["BYPASSRLS", "SUPERUSER"])
def test_refuses_roles_that_bypass_rls(secured_db, attribute):
    app = secured_db.role("app")
    with secured_db.connect() as conn:
        conn.execute(sql.SQL("ALTER ROLE {} " + attribute).format(sql.Identifier(app)))
    try:
        result = cli_test(secured_db)
        assert result.exit_code == 2
        assert f"refusing to test as {app} (fixture principals a_" in result.stderr  # names who acts as it
        assert f"): it is {attribute}" in result.stderr
    finally:
        with secured_db.connect() as conn:
            conn.execute(sql.SQL("ALTER ROLE {} NO" + attribute).format(sql.Identifier(app)))


def test_refuses_a_role_the_login_cannot_become(secured_db):
    """A login that is no member of a principal's role gets "permission denied to set role" for
    every statement as it: denials no policy made, which must not pass for a green run."""
    login, auditor = secured_db.role("tester_login"), secured_db.role("auditor")
    with secured_db.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
        roles = [row[0] for row in conn.execute(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) AND rolname NOT IN (%s, %s)",
            (secured_db.prefix, login, auditor),
        )]  # fmt: skip
        for role in roles:
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(login)))
    try:
        as_login = conninfo.make_conninfo(secured_db.dsn, user=login)
        result = CliRunner().invoke(
            main, ["test", "--dsn", as_login, "--project", str(ROOT), "--role-prefix", secured_db.prefix]
        )
        assert result.exit_code == 2, result.output
        assert f"refusing to test as {auditor} (fixture principal" in result.stderr
        assert "cannot SET ROLE to it" in result.stderr and f"GRANT {auditor} TO {login}" in result.stderr
    finally:
        with secured_db.connect() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(login)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))


def test_refuses_when_the_app_role_owns_a_table(secured_db):
    with secured_db.connect() as conn:
        conn.execute(sql.SQL('ALTER TABLE "Prompt" OWNER TO {}').format(sql.Identifier(secured_db.role("app"))))
    result = cli_test(secured_db)
    assert result.exit_code == 2 and "owns Prompt" in result.stderr


def test_refuses_when_the_app_role_inherits_the_owner_role(secured_db):
    """Owning a table through a membership is owning it: the app could SET ROLE and lift FORCE."""
    with secured_db.connect() as conn:
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(secured_db.role("owner")), sql.Identifier(secured_db.role("app"))
            )
        )
    result = cli_test(secured_db)
    assert result.exit_code == 2 and "owns" in result.stderr and secured_db.role("app") in result.stderr


def test_refuses_an_owner_whose_table_is_not_forced(secured_db):
    with secured_db.connect() as conn:
        conn.execute('ALTER TABLE "Team" NO FORCE ROW LEVEL SECURITY')
    result = cli_test(secured_db)
    assert result.exit_code == 2 and "owns Team, whose RLS is not forced" in result.stderr


def test_refuses_before_apply(db):
    from tests.conftest import migrating

    with db.connect() as conn:
        migrating.migrate(conn, db.project(), db.target, to=0)
        with pytest.raises(UsageError, match=r"does not exist: run `rlsctl apply` first|refusing"):
            run_matrix(conn, db.project(), "x")


def test_json_and_junit_reports(secured_db, tmp_path):
    result = cli_test(secured_db, "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["summary"]["mismatches"] == 0 and data["summary"]["cells"] == len(data["cells"]) > 1000
    out = tmp_path / "matrix.xml"
    result = cli_test(secured_db, "--format", "junit", "-o", str(out))
    assert result.exit_code == 0
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites" and root.get("failures") == "0"
    assert {suite.get("name") for suite in root} >= {"Prompt", "AuditLog", "TeamMember"}


def test_the_test_transaction_leaves_no_trace(secured_db):
    with secured_db.connect() as conn:
        run_matrix(conn, secured_db.project(), "x")
        counts = conn.execute('SELECT (SELECT count(*) FROM "User"), (SELECT count(*) FROM "Prompt")').fetchone()
        assert counts == (0, 0)
        assert conn.execute("SELECT current_user").fetchone()[0] == "postgres"
