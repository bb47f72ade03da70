"""Guards that compare the old and the new row through relations (`same: PATH`).

The orgs example's rule R8: an editor may move a task to another project of the
same organisation, never to a project of another one, even when they edit in
both. A policy sees one row at a time, so only a guard can say it. Tested here
from the denied side on a real PostgreSQL, and for the errors a policy author
meets when the condition is misused.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from rlsctl.cli.main import main
from rlsctl.policy import conditions as c
from rlsctl.policy.project import load_project
from tests.conftest import ROOT, TestDatabase, migrate_and_apply

EXAMPLE = ROOT / "examples" / "orgs"
MOVE_MESSAGE = "a task moves only to a project of the same organisation, by an editor"

# Two organisations; `both` edits in each, `a_editor` only in A, `a_viewer` is A's assignee.
WORLD = """
INSERT INTO account (id, email) VALUES
    ('00000000-0000-4000-8000-0000000000b0', 'both@x'),
    ('00000000-0000-4000-8000-0000000000a1', 'a.editor@x'),
    ('00000000-0000-4000-8000-0000000000a2', 'a.viewer@x');
INSERT INTO organisation (id, name, slug) VALUES
    ('00000000-0000-4000-8000-00000000000a', 'A', 'a'),
    ('00000000-0000-4000-8000-00000000000b', 'B', 'b');
INSERT INTO org_membership (org_id, account_id, level) VALUES
    ('00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-0000000000b0', 'editor'),
    ('00000000-0000-4000-8000-00000000000b', '00000000-0000-4000-8000-0000000000b0', 'editor'),
    ('00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-0000000000a1', 'editor'),
    ('00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-0000000000a2', 'viewer');
INSERT INTO project (id, org_id, name) VALUES
    ('00000000-0000-4000-8000-0000000001a1', '00000000-0000-4000-8000-00000000000a', 'A1'),
    ('00000000-0000-4000-8000-0000000001a2', '00000000-0000-4000-8000-00000000000a', 'A2'),
    ('00000000-0000-4000-8000-0000000001b1', '00000000-0000-4000-8000-00000000000b', 'B1');
INSERT INTO task (id, project_id, assignee_id, title) VALUES
    ('00000000-0000-4000-8000-000000000071', '00000000-0000-4000-8000-0000000001a1', NULL, 'open'),
    ('00000000-0000-4000-8000-000000000072', '00000000-0000-4000-8000-0000000001a1',
     '00000000-0000-4000-8000-0000000000a2', 'the viewer''s');
"""
ACCOUNTS = {
    "both": "00000000-0000-4000-8000-0000000000b0",
    "a_editor": "00000000-0000-4000-8000-0000000000a1",
    "a_viewer": "00000000-0000-4000-8000-0000000000a2",
}
PROJECTS = {
    "a2": "00000000-0000-4000-8000-0000000001a2",
    "b1": "00000000-0000-4000-8000-0000000001b1",
}
OPEN_TASK = "00000000-0000-4000-8000-000000000071"
VIEWERS_TASK = "00000000-0000-4000-8000-000000000072"


@pytest.fixture(scope="module")
def orgs_db(make_module_db) -> TestDatabase:
    database = make_module_db()
    migrate_and_apply(database, project=load_project(EXAMPLE, role_prefix=database.prefix))
    with database.connect() as conn:
        conn.execute(WORLD)
    return database


def move(database: TestDatabase, account: str | None, project: str, task: str = OPEN_TASK) -> str:
    """UPDATE the task's project as the app role for `account`, rolled back: 'moved' or the error."""
    with database.connect(autocommit=False) as conn:
        try:
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(database.role("app"))))
            if account is not None:
                conn.execute("SELECT set_config('request.account_id', %s, true)", (ACCOUNTS[account],))
            cursor = conn.execute(
                "UPDATE task SET project_id = %s WHERE id = %s RETURNING id", (PROJECTS[project], task)
            )
            return "moved" if cursor.fetchone() else "0 rows"
        except psycopg.errors.InsufficientPrivilege as exc:
            return exc.diag.message_primary or "refused"
        finally:
            conn.rollback()


def test_an_editor_moves_a_task_within_its_organisation(orgs_db):
    assert move(orgs_db, "a_editor", "a2") == "moved"
    assert move(orgs_db, "both", "a2") == "moved"


@pytest.mark.parametrize(
    ("who", "why"),
    [
        ("both", "editor in both organisations: the new project is visible and editable, still refused"),
        ("a_editor", "the other organisation's project is invisible to them"),
    ],
)
def test_no_task_crosses_to_another_organisation(orgs_db, who, why):
    assert move(orgs_db, who, "b1") == MOVE_MESSAGE, why


def test_the_assignee_does_not_move_their_task(orgs_db):
    """A viewer may update the task assigned to them (R5), not move it, even within the organisation."""
    assert move(orgs_db, "a_viewer", "a2", VIEWERS_TASK) == MOVE_MESSAGE


def test_no_identity_moves_nothing(orgs_db):
    assert move(orgs_db, None, "a2") == "0 rows"


def test_the_guard_is_in_the_database_not_only_in_the_evaluator(orgs_db):
    """Disable the guard trigger and the cross-organisation move goes through: the refusal above is
    the guard's, not the update policy's (which admits an editor of the new organisation)."""
    with orgs_db.connect(autocommit=False) as conn:
        conn.execute("ALTER TABLE task DISABLE TRIGGER USER")
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(orgs_db.role("app"))))
        conn.execute("SELECT set_config('request.account_id', %s, true)", (ACCOUNTS["both"],))
        cursor = conn.execute("UPDATE task SET project_id = %s WHERE id = %s RETURNING id", (PROJECTS["b1"], OPEN_TASK))
        assert cursor.fetchone() is not None
        conn.rollback()


def test_the_two_spellings_of_same():
    assert c.parse_condition({"same": "project_id.org_id"}) == c.Same(("project_id", "org_id"), ("project_id", "org_id"))
    assert c.parse_condition({"same": {"old": "project_id.org_id", "new": "owner_id"}}) == c.Same(
        ("project_id", "org_id"), ("owner_id",)
    )
    for bad in ({"same": ""}, {"same": "a..b"}, {"same": {"old": "a"}}, {"same": 3}):
        with pytest.raises(c.ConditionSyntaxError):
            c.parse_condition(bad)


def copy_example(tmp_path: Path) -> Path:
    root = tmp_path / "orgs"
    shutil.copytree(EXAMPLE, root)
    return root


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        # in a policy: a policy sees one row
        (
            "        select: {tenant_role: viewer}\n        insert: &editor",
            "        select: {all: [{tenant_role: viewer}, {same: project_id}]}\n        insert: &editor",
            "same compares the old and the new row",
        ),
        # a path through a column that has no foreign key
        ("            - same: project_id.org_id", "            - same: title.org_id", "task.title has no foreign key"),
        # a path ending on a column the related table does not have
        ("            - same: project_id.org_id", "            - same: project_id.team_id", "project.team_id"),
        # negated: an unseen project would make `not same` pass
        ("            - same: project_id.org_id", "            - not: {same: project_id.org_id}", "cannot be negated"),
    ],
)
def test_misused_same_is_one_clear_error(tmp_path, old, new, says):
    root = copy_example(tmp_path)
    work = root / "policies" / "work.yaml"
    text = work.read_text()
    assert old in text
    work.write_text(text.replace(old, new, 1))
    result = CliRunner().invoke(main, ["render", "--project", str(root)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "work.yaml:" in lines[0] and says in lines[0], result.stderr


def test_a_setting_principal_in_another_spelling_is_the_same_user(db, tmp_path):
    """'C4908D2E-...' is the uuid 'c4908d2e-...' to the server; the tester's evaluator must agree
    (it used to keep the raw text and count the admin's own rows as leaks)."""
    import uuid

    from rlsctl.tester.fixtures import NAMESPACE
    from rlsctl.tester.run import run_matrix

    root = copy_example(tmp_path)
    admin = str(uuid.uuid5(NAMESPACE, "account/acc_a_admin")).upper()
    fixtures = root / "policies" / "fixtures.yaml"
    text = fixtures.read_text()
    shouting = "    shouting_admin: {setting: '{" + admin + "}'}\n"  # braces and capitals: still the uuid
    fixtures.write_text(text.replace("    owner:       {role: owner}\n", shouting + "    owner:       {role: owner}\n"))
    project = load_project(root, role_prefix=db.prefix)
    migrate_and_apply(db, project=project)
    with db.connect() as conn:
        result = run_matrix(conn, project, "spelling")
    assert not result.failures, result.failures[:3]
    cells = [cell for cell in result.cells if cell.principal == "shouting_admin"]
    assert any(cell.actual.allowed for cell in cells)  # the admin's rights, not no identity


def test_a_trigger_that_rewrites_the_row_cannot_slip_past_the_guard(orgs_db):
    """BEFORE triggers fire in name order. Found by a review: a "helpful" trigger that sets
    project_id from a parent task, sorting after a guard named rlsctl_guard, carried a task across
    organisations after the guard said yes. rlsctl's triggers are named zz_rlsctl_... and come
    after the application's: the guard judges the row as the trigger left it."""
    with orgs_db.connect() as conn:
        conn.execute(
            "CREATE FUNCTION public.to_b1() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"NEW.project_id := '{PROJECTS['b1']}'; RETURN NEW; END $$; "
            "CREATE TRIGGER task_parent_project BEFORE UPDATE ON task FOR EACH ROW EXECUTE FUNCTION public.to_b1()"
        )
    try:
        assert move(orgs_db, "both", "a2") == MOVE_MESSAGE  # asked for A2, the trigger made it B1
    finally:
        with orgs_db.connect() as conn:
            conn.execute("DROP TRIGGER task_parent_project ON task; DROP FUNCTION public.to_b1()")


def test_a_trigger_that_still_fires_after_the_guard_is_drift(db, tmp_path):
    root = copy_example(tmp_path)
    migrate_and_apply(db, project=load_project(root, role_prefix=db.prefix))
    with db.connect() as conn:
        conn.execute(
            "CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$; "
            "CREATE TRIGGER zzz_late BEFORE UPDATE ON task FOR EACH ROW EXECUTE FUNCTION public.touch(); "
            "CREATE TRIGGER set_updated_at BEFORE UPDATE ON task FOR EACH ROW EXECUTE FUNCTION public.touch()"
        )
    result = CliRunner().invoke(
        main, ["drift", "--format", "json", "--project", str(root), "--dsn", db.dsn, "--role-prefix", db.prefix]
    )
    assert result.exit_code == 1, result.output
    import json

    items = {item["object"]: item["detail"] for item in json.loads(result.stdout)["drift"]}
    assert list(items) == ["trigger zzz_late on task"], items  # set_updated_at fires before the guard
    assert "fires after zz_rlsctl_guard" in items["trigger zzz_late on task"]
