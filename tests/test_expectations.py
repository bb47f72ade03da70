"""`rlsctl test` judges the database by expectations written apart from the policies.

Each test edits a copy of a shipped project the way a user could by mistake (one
line of a policy file, a fixture typo), applies it to a real database and runs
`rlsctl test` with the project's own expectations and invariants: no oracle from
rlsctl's test suite is involved, so these are the failures a user would see.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rlsctl.cli.main import main
from rlsctl.policy.project import load_project
from rlsctl.tester.invariants import ISOLATION, MONOTONE
from rlsctl.tester.run import run_matrix
from tests.conftest import ROOT, migrate_and_apply

EXAMPLE = ROOT / "examples" / "orgs"
# examples/orgs: the app's `task` select becomes `true` (every organisation reads every task).
TASK_FOR_EVERYONE = (
    "        select: {tenant_role: viewer}\n        insert: &editor_with_member_assignee",
    "        select: true\n        insert: &editor_with_member_assignee",
)


def copy_of(source: Path, tmp_path: Path, file: str = "", old: str = "", new: str = "") -> Path:
    root = tmp_path / "project"
    for part in ("policies", "migrations", "expectations"):
        if (source / part).is_dir():
            shutil.copytree(source / part, root / part)
    if file:
        path = root / "policies" / file
        text = path.read_text()
        assert text.count(old) == 1, f"the edit no longer matches {file}"
        path.write_text(text.replace(old, new))
    return root


def rlsctl_test(database, root: Path, *extra: str) -> Result:
    arguments = ["test", "--project", str(root), "--role-prefix", database.prefix, "--dsn", database.dsn]
    return CliRunner().invoke(main, [*arguments, *extra], catch_exceptions=False)


def applied(database, root: Path):
    project = load_project(root, role_prefix=database.prefix)
    return migrate_and_apply(database, project=project)


# -- the one-line edits, each caught by the shipped expectations ---------------------------


def test_every_organisation_reading_every_task_fails_the_example(db, tmp_path):
    root = copy_of(EXAMPLE, tmp_path, "work.yaml", *TASK_FOR_EVERYONE)
    applied(db, root)
    result = rlsctl_test(db, root, "--format", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    wrong = [c for c in report["cells"] if not c["ok"]]
    assert wrong and {c["table"] for c in wrong} == {"task"} and {c["command"] for c in wrong} == {"select"}
    # The cells name the policy that let the row through.
    assert all(c["decided_by"] for c in wrong), wrong[:3]
    assert report["summary"]["invariant_violations"] > 0  # and tenant isolation says so independently


def test_a_guard_that_forgets_the_organisation_fails_the_example(db, tmp_path):
    """R8 without `same`: an editor of both organisations carries a task across, and the
    expectations (same_tenant) say that cell is wrong; nothing else is."""
    root = copy_of(EXAMPLE, tmp_path, "work.yaml", "            - same: project_id.org_id\n", "")
    applied(db, root)
    result = rlsctl_test(db, root, "--format", "json")
    assert result.exit_code == 1, result.output
    wrong = [c for c in json.loads(result.stdout)["cells"] if not c["ok"]]
    assert wrong and {(c["table"], c["command"]) for c in wrong} == {("task", "update")}, wrong[:3]
    assert {c["principal"] for c in wrong} == {"ab_editor"}, wrong[:3]


PROMPTCRAFT_EDITS = {
    "any MEMBER may delete the team": (
        "teams.yaml", "        delete: {tenant_role: OWNER}\n", "        delete: {tenant_role: MEMBER}\n",
        ("Team", "delete"),
    ),
    "prompt versions are readable across teams": (
        "prompts.yaml",
        "        select: {via: promptId}\n        insert:\n          all:\n            - via: {column: promptId, rule: update}",
        "        select: true\n        insert:\n          all:\n            - via: {column: promptId, rule: update}",
        ("PromptVersion", "select"),
    ),
    "the own-role guard is loosened": (
        "teams.yaml",
        "      - changed: [role]\n        require: {not: {self: userId}}\n",
        "      - changed: [role]\n        require: true\n",
        ("TeamMember", "update"),
    ),
}


@pytest.mark.parametrize("name", list(PROMPTCRAFT_EDITS))
def test_a_widened_promptcraft_policy_fails_rlsctl_test(make_db, tmp_path, name):
    file, old, new, (table, command) = PROMPTCRAFT_EDITS[name]
    database = make_db()
    root = copy_of(ROOT, tmp_path, file, old, new)
    project = applied(database, root)
    with database.connect() as conn:
        result = run_matrix(conn, project, "edited")
    assert result.failed
    assert (table, command) in {(c.table, c.command) for c in result.failures}, result.failures[:5]
    assert all(c.expected is False for c in result.failures if (c.table, c.command) == (table, command))


# -- strict fixtures --------------------------------------------------------------------------------


def test_a_fixture_column_typo_is_an_error_naming_file_and_line(db, tmp_path):
    root = copy_of(EXAMPLE, tmp_path)
    fixtures = root / "policies" / "fixtures.yaml"
    text = fixtures.read_text()
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "m_a_viewer:" in t)
    fixtures.write_text(text.replace('m_a_viewer:     {org_id: "@org_a"', 'm_a_viewer:     {org_idd: "@org_a"'))
    applied(db, copy_of(EXAMPLE, tmp_path / "clean"))
    result = rlsctl_test(db, root)
    assert result.exit_code == 2, result.output
    assert f"fixtures.yaml:{line}" in result.output and "org_idd" in result.output


@pytest.mark.parametrize(
    "old, new, says",
    [
        ("    a_viewer:   {user: acc_a_viewer}", "    a_viewer:   {user: acc_a_viewr}", "acc_a_viewr"),
        ("      m_b_admin:", '      m_b_typo: {org_id: "@org_z", account_id: "@acc_b_admin", level: admin}\n      m_b_admin:',
         "@org_z"),
    ],
    ids=["unknown user row", "unknown reference"],
)
def test_unknown_names_in_fixtures_are_errors(db, tmp_path, old, new, says):
    root = copy_of(EXAMPLE, tmp_path)
    fixtures = root / "policies" / "fixtures.yaml"
    text = fixtures.read_text()
    assert text.count(old) == 1
    fixtures.write_text(text.replace(old, new))
    applied(db, copy_of(EXAMPLE, tmp_path / "clean"))
    result = rlsctl_test(db, root)
    assert result.exit_code == 2, result.output
    assert "fixtures.yaml:" in result.output and says in result.output


# -- the invariants alone ----------------------------------------------------------------------------


def test_without_expectations_the_invariants_still_catch_a_cross_tenant_read(db, tmp_path):
    root = copy_of(EXAMPLE, tmp_path, "work.yaml", *TASK_FOR_EVERYONE)
    shutil.rmtree(root / "expectations")
    applied(db, root)
    result = rlsctl_test(db, root)
    assert result.exit_code == 1, result.output
    assert "NO EXPECTATIONS" in result.output
    assert ISOLATION in result.output and "task" in result.output


def test_without_expectations_a_right_project_passes_with_a_loud_notice(db, tmp_path):
    root = copy_of(EXAMPLE, tmp_path)
    shutil.rmtree(root / "expectations")
    applied(db, root)
    result = rlsctl_test(db, root)
    assert result.exit_code == 0, result.output
    assert "NO EXPECTATIONS" in result.output


def test_a_higher_rank_that_loses_a_right_breaks_monotonicity(secured_db):
    """A restrictive policy hiding the team's shared prompts from ADMINs: raising a MEMBER to
    ADMIN takes a right away, which the invariant reports even where no expectation looks."""
    app = secured_db.role("app")
    with secured_db.connect() as conn:
        conn.execute(
            f'CREATE POLICY odd ON "Prompt" AS RESTRICTIVE FOR SELECT TO "{app}" '
            """USING ("teamId" IS NULL OR NOT ("teamId" = ANY (rlsctl.tenant_ids('ADMIN'))))"""
        )
        result = run_matrix(conn, secured_db.project(), "odd")
    lost = [v for v in result.violations if v.invariant == MONOTONE]
    assert ("Prompt", "select", "a_member") in {(v.table, v.command, v.principal) for v in lost}, lost[:5]
    assert any("MEMBER -> ADMIN" in v.detail for v in lost)


# -- coverage ---------------------------------------------------------------------------------------


def test_coverage_names_a_branch_no_fixture_exercises(db, tmp_path):
    """A branch no row can satisfy (org_id is NOT NULL) is listed as uncovered, in text and JSON."""
    root = copy_of(EXAMPLE, tmp_path)
    path = root / "policies" / "work.yaml"
    text = path.read_text()
    old = "        select: {tenant_role: viewer}\n        insert: {tenant_role: editor}"
    assert text.count(old) == 1
    path.write_text(text.replace(old, "        select: {any: [{tenant_role: viewer}, {is_null: org_id}]}\n"
                                      "        insert: {tenant_role: editor}"))  # fmt: skip
    applied(db, root)
    result = rlsctl_test(db, root, "--format", "json")
    assert result.exit_code == 0, result.output
    covered = json.loads(result.stdout)["coverage"]
    assert covered["policies"]["uncovered"] == []
    uncovered = covered["branches"]["uncovered"]
    # The select policy, and the update and delete policies, which include the SELECT rule.
    assert ("project.app_select", "using", 1) in {(b["policy"], b["part"], b["index"]) for b in uncovered}
    assert {b["policy"] for b in uncovered} <= {"project.app_select", "project.app_update", "project.app_delete"}
    assert all("IS NULL" in b["branch"] for b in uncovered)
    shown = rlsctl_test(db, root)
    assert "UNCOVERED branch 1 of project.app_select" in shown.output


def test_a_policy_added_by_hand_is_named_in_the_wrong_cells(secured_db):
    app = secured_db.role("app")
    with secured_db.connect() as conn:
        conn.execute(f'CREATE POLICY widened ON "Prompt" FOR SELECT TO "{app}" USING (true)')
        result = run_matrix(conn, secured_db.project(), "widened")
    wrong = [c for c in result.failures if c.table == "Prompt" and c.command == "select"]
    assert wrong and all(c.decided_by == ("widened (not in the policy files)",) for c in wrong)
