"""The second example project, examples/orgs, on a real server: rlsctl is not PromptCraft-shaped.

examples/orgs differs from the bundled project on purpose: snake_case tables
with uuid keys, a uuid identity in `request.account_id`, a tenant table
without an owner column, lowercase levels of its own enum, a tenant two
foreign-key hops away (task -> project -> organisation), its own role prefix
and helper schema, two migration phases.

`expectation` below restates the example's rules (R1-R11 in
examples/orgs/policies/project.yaml) by hand, from the fixture rows only,
never from the policy files: the matrix driven by it checks the YAML against
the rules rather than against itself.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result

from rlsctl.cli.main import main
from rlsctl.policy.project import Project, load_project
from rlsctl.tester.run import Cell, CellContext, MatrixResult, run_matrix
from tests.conftest import ROOT, migrate_and_apply

if TYPE_CHECKING:
    from tests.conftest import TestDatabase

EXAMPLE = ROOT / "examples" / "orgs"
PHASE_0_TABLES = ("account", "org_membership", "organisation")
PHASE_1_TABLES = ("project", "task")
TABLES = PHASE_0_TABLES + PHASE_1_TABLES
LEVELS = ("viewer", "editor", "admin")

# The columns each fixture UPDATE case writes (examples/orgs/policies/fixtures.yaml,
# `updates`): a column privilege is needed even when the value does not change.
UPDATE_SETS = {
    "account": {"rename": {"display_name"}},
    "organisation": {"rename": {"name"}, "reslug": {"slug"}},
    "org_membership": {"make_admin": {"level"}, "make_viewer": {"level"}, "move_to_b": {"org_id"}},
    "project": {"rename": {"name"}, "archive": {"archived"}, "move_to_b": {"org_id"}},
    "task": {
        "finish": {"state"},
        "assign_a_viewer": {"assignee_id"},
        "assign_b_viewer": {"assignee_id"},
        "unassign": {"assignee_id"},
        "move_within_a": {"project_id"},
        "move_to_b": {"project_id"},
    },
}


def example(db: TestDatabase) -> Project:
    return load_project(EXAMPLE, role_prefix=db.prefix)


# -- the rules as an oracle --------------------------------------------------------------------------


class Orgs:
    """Who belongs where, read from the fixture rows."""

    def __init__(self, world: dict[str, list[dict[str, Any]]]) -> None:
        self.projects = {row["id"]: row for row in world.get("project", [])}
        self.levels = {(row["account_id"], row["org_id"]): row["level"] for row in world.get("org_membership", [])}

    def at_least(self, account: str | None, org: str | None, level: str) -> bool:
        held = self.levels.get((account, org))
        return held is not None and LEVELS.index(held) >= LEVELS.index(level)

    def member(self, account: str | None, org: str | None) -> bool:
        return self.at_least(account, org, "viewer")

    def editor(self, account: str | None, org: str | None) -> bool:
        return self.at_least(account, org, "editor")

    def admin(self, account: str | None, org: str | None) -> bool:
        return self.at_least(account, org, "admin")

    def orgs_of(self, account: str | None) -> set[str]:
        return {org for (who, org) in self.levels if who == account}

    def org_of_task(self, task: dict[str, Any]) -> str | None:
        """Two hops: the task's project, then that project's organisation."""
        project = self.projects.get(task["project_id"])
        return project["org_id"] if project else None


def _changed(old: dict[str, Any], new: dict[str, Any] | None) -> set[str]:
    return {column for column, value in (new or {}).items() if old.get(column) != value}


def _sets(c: CellContext) -> set[str]:
    return UPDATE_SETS[c.table][c.case.split(":", 1)[0]]


def app_allows(c: CellContext, o: Orgs, me: str | None) -> bool:
    if me is None:
        return False  # R1
    row, command = c.row, c.command
    changed = _changed(row, c.new) if command == "update" else set()
    if c.table == "account":
        if command == "select":  # R3: oneself and the people one works with
            return row["id"] == me or bool(o.orgs_of(me) & o.orgs_of(row["id"]))
        if command in ("insert", "update"):
            return row["id"] == me
        return False  # accounts are not deleted by the app
    if c.table == "organisation":
        org = row["id"]
        if command == "select":
            return o.member(me, org)
        if command == "update":  # R7: admins rename; the slug is never written by the app
            return o.admin(me, org) and _sets(c) <= {"name"}
        return False  # R7/R9: created by the provisioner, deleted by nobody in the app
    if c.table == "org_membership":
        org = row["org_id"]
        if command == "select":
            return o.member(me, org)
        if command == "insert":
            return o.admin(me, org)
        if command == "update":  # R6: only the level changes, by an admin, never one's own
            return o.admin(me, org) and _sets(c) <= {"level"} and not ("level" in changed and row["account_id"] == me)
        return o.admin(me, org) or row["account_id"] == me  # anybody may leave
    if c.table == "project":
        org = row["org_id"]
        if command == "select":
            return o.member(me, org)
        if command == "insert":
            return o.editor(me, org)
        if command == "update":  # R8: never to another organisation
            return o.editor(me, org) and "org_id" not in changed
        return o.admin(me, org)  # R4: only admins delete projects
    if c.table == "task":
        org = o.org_of_task(row)
        if command == "select":
            return o.member(me, org)
        if command == "insert":  # R4, R5
            assignee = row.get("assignee_id")
            return o.editor(me, org) and (assignee is None or o.member(assignee, org))
        if command == "update":
            if "project_id" in changed:  # R8: by an editor, to a project of the same organisation
                target = o.projects.get((c.new or {}).get("project_id"))
                if not (o.editor(me, org) and target is not None and target["org_id"] == org):
                    return False
            if not o.member(me, org):
                return False  # R2: invisible, even to a former member still named as assignee
            if not (o.editor(me, org) or row.get("assignee_id") == me):
                return False  # R4/R5: editors, or the assignee
            if "assignee_id" in changed and not o.editor(me, org):
                return False  # R5: only editors (re)assign
            assignee = (c.new or {}).get("assignee_id")
            return assignee is None or o.member(assignee, org)  # R5: to a member of the task's organisation
        return o.editor(me, org)
    raise AssertionError(f"no rule for table {c.table}")


def expectation(c: CellContext) -> bool:
    role = c.principal.role_key
    if role == "app":
        return app_allows(c, Orgs(c.world), c.principal.user_id)
    if role == "owner":  # R11
        return c.command == "select"
    if role == "reporting":  # R10
        return c.table == "project" and c.command == "select"
    if role == "provisioner":  # R9
        if c.command != "insert":
            return False
        return c.table == "organisation" or (c.table == "org_membership" and c.row.get("level") == "admin")
    raise AssertionError(f"no rule for role {role}")


# -- helpers ----------------------------------------------------------------------------------------------


def describe(cells: tuple[Cell, ...] | list[Cell]) -> str:
    return "\n".join(
        f"{c.table} {c.command} {c.case} as {c.principal}: expected "
        f"{'allowed' if c.expected else 'denied'} ({c.expected_detail}), database gave {c.actual.detail}"
        for c in cells
    )


def find(matrix: MatrixResult, table: str, command: str, case: str, principal: str) -> Cell:
    found = [c for c in matrix.cells if (c.table, c.command, c.case, c.principal) == (table, command, case, principal)]
    assert len(found) == 1, f"no single cell {table} {command} {case} as {principal}: {found}"
    return found[0]


def allowed(matrix: MatrixResult, table: str, command: str, case: str, principal: str) -> bool:
    return find(matrix, table, command, case, principal).actual.allowed


def security_state(db: TestDatabase) -> dict[str, tuple[bool, bool]]:
    """relrowsecurity and relforcerowsecurity of every table in public."""
    with db.connect() as conn:
        rows = conn.execute(
            """SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
               FROM pg_catalog.pg_class AS c
               JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind = 'r'"""
        ).fetchall()
    return {name: (enabled, forced) for name, enabled, forced in rows}


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# -- 1. the example's own expectations (examples/orgs/expectations) ----------------------------------


def test_example_matrix_meets_its_expectations(db):
    project = migrate_and_apply(db, project=example(db))
    with db.connect() as conn:
        matrix = run_matrix(conn, project, db.target.where)
    assert not matrix.failed, describe(matrix.failures) + str(matrix.violations) + str(matrix.case_failures)
    assert all(cell.judged for cell in matrix.cells) and not matrix.notices
    assert set(matrix.tables) == set(TABLES)
    seen = Counter((c.table, c.command) for c in matrix.cells)
    for table in TABLES:
        for command in ("select", "insert", "update", "delete"):
            assert seen[(table, command)] > 0, f"no cell for {table} {command}"
    # The same through the command line, with the project and prefix as options.
    result = cli("test", "--project", str(EXAMPLE), "--role-prefix", db.prefix, "--dsn", db.dsn, "--format", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert summary == {
        "cells": len(matrix.cells), "judged": len(matrix.cells), "mismatches": 0, "invariant_violations": 0,
        "failing_cases": 0,
    }  # fmt: skip


# -- 2. the hand-written oracle --------------------------------------------------------------------------


def test_example_matrix_matches_the_rules(db):
    project = migrate_and_apply(db, project=example(db))
    assert {key: project.fixtures.updates[key].keys() for key in UPDATE_SETS} == {
        key: cases.keys() for key, cases in UPDATE_SETS.items()
    }, "UPDATE_SETS is out of date with fixtures.yaml"
    with db.connect() as conn:
        matrix = run_matrix(conn, project, db.target.where, expect=expectation)
    assert not matrix.failures, describe(matrix.failures)

    principals = {c.principal for c in matrix.cells}
    assert {
        "a_admin", "a_editor", "a_viewer", "b_admin", "b_editor", "b_viewer", "consultant",
        "outsider", "newcomer", "no_identity", "empty_identity", "owner", "reporting", "provisioner",
    } <= principals  # fmt: skip
    for table in TABLES:  # every rule is tested from both sides
        cells = [c for c in matrix.cells if c.table == table]
        assert any(c.actual.allowed for c in cells), f"nobody may do anything on {table}?"
        assert any(not c.actual.allowed for c in cells), f"everybody may do everything on {table}?"

    # Cross-organisation isolation (R2): members of B never see or touch a row of A, and back.
    a_rows = {"org_a", "proj_a1", "proj_a2", "t_a1_viewer", "t_a1_open", "t_a1_former", "t_a2_editor"}
    a_rows |= {"m_a_admin", "m_a_editor", "m_a_viewer", "m_a_consultant"}
    leaks = [
        c for c in matrix.cells if c.principal.startswith("b_") and c.actual.allowed and c.case.split(":")[-1] in a_rows
    ]
    assert not leaks, describe(leaks)
    assert not allowed(matrix, "project", "select", "proj_b1", "a_admin")
    assert not allowed(matrix, "task", "select", "t_b1_viewer", "a_admin")
    assert not allowed(matrix, "project", "insert", "proj_new_b", "a_admin")

    # Sessions without identity see and change nothing (R1); an identity without
    # an account (the newcomer) may only create its own account.
    for cell in matrix.cells:
        if cell.principal in ("no_identity", "empty_identity", "newcomer") and cell.table != "account":
            assert not cell.actual.allowed, describe([cell])

    # A viewer reads but cannot write; an editor writes (R3, R4).
    assert allowed(matrix, "task", "select", "t_a1_open", "a_viewer")
    assert not allowed(matrix, "task", "insert", "task_a_open", "a_viewer")
    assert not allowed(matrix, "task", "update", "finish:t_a1_open", "a_viewer")
    assert not allowed(matrix, "task", "delete", "t_a1_open", "a_viewer")
    assert not allowed(matrix, "project", "insert", "proj_new_a", "a_viewer")
    assert allowed(matrix, "task", "insert", "task_a_open", "a_editor")
    assert allowed(matrix, "task", "update", "finish:t_a1_open", "a_editor")
    assert allowed(matrix, "task", "delete", "t_a1_open", "a_editor")
    assert allowed(matrix, "project", "insert", "proj_new_a", "a_editor")
    # ...but only admins delete projects and manage memberships (R4, R6).
    assert not allowed(matrix, "project", "delete", "proj_a1", "a_editor")
    assert allowed(matrix, "project", "delete", "proj_a1", "a_admin")
    assert not allowed(matrix, "org_membership", "insert", "add_outsider_a_viewer", "a_editor")
    assert allowed(matrix, "org_membership", "insert", "add_outsider_a_viewer", "a_admin")
    assert allowed(matrix, "org_membership", "update", "make_admin:m_a_viewer", "a_admin")
    assert not allowed(matrix, "org_membership", "update", "make_viewer:m_a_admin", "a_admin")  # own level
    assert allowed(matrix, "org_membership", "delete", "m_a_viewer", "a_viewer")  # leaving

    # The two-hop tenant path (task -> project -> organisation).
    assert allowed(matrix, "task", "select", "t_a2_editor", "a_viewer")
    assert allowed(matrix, "task", "select", "t_b1_consultant", "consultant")
    assert allowed(matrix, "task", "insert", "task_a_for_viewer", "a_editor")
    assert not allowed(matrix, "task", "insert", "task_a_for_outsider", "a_editor")
    assert not allowed(matrix, "task", "insert", "task_a_for_b_viewer", "a_editor")
    assert not allowed(matrix, "task", "insert", "task_b_open", "consultant")  # editor in A, viewer in B
    assert allowed(matrix, "task", "insert", "task_a_open", "consultant")

    # The assignee may update their own task, not reassign it (R5); a former member may not.
    assert allowed(matrix, "task", "update", "finish:t_a1_viewer", "a_viewer")
    assert not allowed(matrix, "task", "update", "unassign:t_a1_viewer", "a_viewer")
    assert allowed(matrix, "task", "update", "finish:t_b1_consultant", "consultant")
    assert not allowed(matrix, "task", "select", "t_a1_former", "outsider")
    assert not allowed(matrix, "task", "update", "finish:t_a1_former", "outsider")
    assert allowed(matrix, "task", "update", "assign_a_viewer:t_a1_open", "a_editor")
    assert not allowed(matrix, "task", "update", "assign_b_viewer:t_a1_open", "a_editor")

    # Moving a task to a project of the other organisation is denied, even for someone in both (R8);
    # an editor moves it within the organisation, the assignee (a viewer) may not.
    assert allowed(matrix, "task", "update", "move_within_a:t_a1_open", "a_editor")
    assert allowed(matrix, "task", "update", "move_within_a:t_a1_open", "ab_editor")
    assert not allowed(matrix, "task", "update", "move_within_a:t_a1_viewer", "a_viewer")
    assert not allowed(matrix, "task", "update", "move_within_a:t_a1_open", "b_editor")
    for principal in ("a_admin", "a_editor", "a_viewer", "consultant", "b_admin", "ab_editor"):
        for task in ("t_a1_viewer", "t_a1_open", "t_a2_editor"):
            assert not allowed(matrix, "task", "update", f"move_to_b:{task}", principal)
    assert not allowed(matrix, "project", "update", "move_to_b:proj_a1", "a_admin")

    # The extra roles (R9, R10, R11).
    assert allowed(matrix, "project", "select", "proj_a1", "reporting")
    assert allowed(matrix, "project", "select", "proj_b1", "reporting")
    assert not allowed(matrix, "task", "select", "t_a1_open", "reporting")
    assert allowed(matrix, "organisation", "insert", "org_new", "provisioner")
    assert allowed(matrix, "org_membership", "insert", "add_outsider_a_admin", "provisioner")
    assert not allowed(matrix, "org_membership", "insert", "add_outsider_a_viewer", "provisioner")
    assert not allowed(matrix, "organisation", "select", "org_a", "provisioner")
    assert allowed(matrix, "task", "select", "t_b1_viewer", "owner")
    assert not allowed(matrix, "task", "delete", "t_b1_viewer", "owner")


# -- 3. phase by phase -----------------------------------------------------------------------------------


def test_example_phase_by_phase(db):
    common = ("--project", str(EXAMPLE), "--role-prefix", db.prefix, "--dsn", db.dsn, "--format", "json")

    result = cli("migrate", "--to", "0", *common)
    assert result.exit_code == 0, result.output
    assert [r["phase"] for r in json.loads(result.stdout)["ran"]] == [0]
    result = cli("apply", *common)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted(report["managed_tables"]) == sorted(PHASE_0_TABLES)
    assert report["pending_tables"] == [{"table": "project", "phase": 1}, {"table": "task", "phase": 1}]
    state = security_state(db)
    assert set(state) == set(PHASE_0_TABLES)
    for table in PHASE_0_TABLES:
        assert state[table] == (True, True), f"{table}: RLS enabled/forced = {state[table]}"
    # The phase-0 matrix: fixtures of phase-1 tables are left out, the rules still hold.
    with db.connect() as conn:
        matrix = run_matrix(conn, example(db), db.target.where, expect=expectation)
    assert not matrix.failures, describe(matrix.failures)
    assert set(matrix.tables) == set(PHASE_0_TABLES)

    result = cli("migrate", *common)
    assert result.exit_code == 0, result.output
    assert [r["phase"] for r in json.loads(result.stdout)["ran"]] == [1]
    # Phase 1 exists but is not secured yet: apply brings it in.
    assert security_state(db)["task"] == (False, False)
    result = cli("apply", *common)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pending_tables"] == []
    assert all(flags == (True, True) for flags in security_state(db).values())

    # The down scripts: back to phase 0, re-secured, rules still hold.
    result = cli("rollback", "--to", "0", *common)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["reverted"], report["reapplied"]) == ([1], True)
    state = security_state(db)
    assert set(state) == set(PHASE_0_TABLES)
    assert all(flags == (True, True) for flags in state.values())
    with db.connect() as conn:
        matrix = run_matrix(conn, example(db), db.target.where, expect=expectation)
    assert not matrix.failures, describe(matrix.failures)


# -- 4. offline rendering -----------------------------------------------------------------------------


def test_example_render_is_deterministic():
    first = cli("render", "--project", str(EXAMPLE))
    second = cli("render", "--project", str(EXAMPLE))
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert first.stdout_bytes == second.stdout_bytes
    text = first.stdout
    assert "-- ===== phase 0 =====" in text and "-- ===== phase 1 =====" in text
    assert '"orgs_rls"."tenant_ids"' in text and '"orgs_app"' in text
    assert "request.account_id" in text and "RETURNS uuid[]" in text
    # Nothing of the bundled project leaks into another project's SQL.
    for word in ("promptcraft", "PromptCraft", '"Team', '"User"', "app.user_id", "teamId"):
        assert word not in text, word


@pytest.mark.parametrize("phase, tables", [(0, PHASE_0_TABLES), (1, TABLES)])
def test_example_render_one_phase(phase, tables):
    result = cli("render", "--project", str(EXAMPLE), "--phase", str(phase))
    assert result.exit_code == 0, result.output
    secured = set(re.findall(r'ALTER TABLE "public"\."([^"]+)" FORCE ROW LEVEL SECURITY', result.stdout))
    assert secured == set(tables)


def test_example_loads_with_its_own_settings():
    project = load_project(EXAMPLE)
    assert project.settings.name == "orgs"
    assert project.role_prefix == "orgs_"
    assert project.settings.identity.setting == "request.account_id"
    assert project.settings.identity.type == "uuid"
    assert project.tenancy is not None and project.tenancy.tenants.owner is None
    assert [phase.number for phase in project.phases] == [0, 1]
    assert all(step.down.is_file() for phase in project.phases for step in phase.steps)


def test_example_in_its_own_schema(db, tmp_path):
    """A project schema other than public: created for the owner, migrations land in it."""
    import shutil

    root = tmp_path / "orgs"
    shutil.copytree(ROOT / "examples" / "orgs", root)
    settings = root / "policies" / "project.yaml"
    settings.write_text(settings.read_text().replace("  schema: public\n", "  schema: orgs_data\n"))
    project = load_project(root, role_prefix=db.prefix)
    migrate_and_apply(db, project=project)
    with db.connect() as conn:
        owner = conn.execute(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'orgs_data'"
        ).fetchone()
        assert owner == (db.prefix + "owner",)
        tables = conn.execute(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'orgs_data' AND relkind = 'r' ORDER BY 1"
        ).fetchall()
        assert [t[0] for t in tables] == ["account", "org_membership", "organisation", "project", "task"]
        assert all(t[1] and t[2] for t in tables)
        result = run_matrix(conn, project, "own schema")
    assert not result.failures


@pytest.mark.parametrize(
    "command",
    [("keys", "status"), ("keys", "rotate"), ("keys", "forget", "task.title"), ("keys", "retire")],
)
def test_keys_commands_on_a_project_without_encryption_say_so(db, command):
    migrate_and_apply(db, project=example(db))
    result = cli(*command, "--project", str(EXAMPLE), "--role-prefix", db.prefix, "--dsn", db.dsn)
    assert result.exit_code == 2, result.output
    assert "internal error" not in result.output and "Traceback" not in result.output
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr
