"""`rlsctl test --diff BASE`: only the cells a change of the policies changed, for a pull request."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from click.testing import CliRunner, Result

from rlsctl.cli.main import main
from rlsctl.policy.project import load_project
from tests.conftest import ROOT, migrate_and_apply

TEAM_DELETE = ("teams.yaml", "        delete: {tenant_role: OWNER}\n", "        delete: {tenant_role: MEMBER}\n")


def project_at(root: Path, edit: tuple[str, str, str] | None = None) -> Path:
    for part in ("policies", "migrations", "expectations"):
        shutil.copytree(ROOT / part, root / part)
    if edit is not None:
        file, old, new = edit
        path = root / "policies" / file
        assert path.read_text().count(old) == 1
        path.write_text(path.read_text().replace(old, new))
    return root


def diff(database, head: Path, base: str, *extra: str) -> Result:
    arguments = ["test", "--project", str(head), "--role-prefix", database.prefix, "--dsn", database.dsn]
    return CliRunner().invoke(main, [*arguments, "--diff", base, *extra], catch_exceptions=False)


def policies_of(database) -> list[tuple[str, ...]]:
    with database.connect() as conn:
        return conn.execute("SELECT tablename, policyname, cmd, qual FROM pg_policies ORDER BY 1, 2").fetchall()


def test_a_widening_pull_request_lists_exactly_the_widened_cells(db, tmp_path):
    head = project_at(tmp_path / "head", TEAM_DELETE)
    base = project_at(tmp_path / "base")
    # The database has BASE applied (as on main): both sides are evaluated from their files.
    migrate_and_apply(db, project=load_project(base, role_prefix=db.prefix))
    before = policies_of(db)
    result = diff(db, head, str(base), "--format", "json")
    assert result.exit_code == 1, result.output  # HEAD itself fails its expectations
    report = json.loads(result.stdout)
    assert report["narrowed"] == 0 and report["widened"] == len(report["changes"]) > 0
    assert {(c["table"], c["command"], c["effect"]) for c in report["changes"]} == {("Team", "delete", "widened")}
    # A MEMBER or ADMIN of the team, never an OWNER (who could before) nor an outsider.
    assert {c["principal"] for c in report["changes"]} == {"a_admin", "a_member", "ab_admin", "b_admin", "b_member"}
    assert report["compared"] > 7000
    assert policies_of(db) == before  # BASE was applied inside a rolled-back transaction
    markdown = diff(db, head, str(base)).stdout
    assert markdown.startswith("### rlsctl access diff:")
    assert "| **widened** | Team | delete | team\\_a | a\\_member | 0 rows | 1 row |" in markdown


def test_a_narrowing_change_against_a_git_ref(db, tmp_path):
    repo = tmp_path / "repo"
    project = project_at(repo / "app", TEAM_DELETE)  # the project need not be the repository's root
    git = ["git", "-C", str(repo), "-c", "user.email=ci@example.test", "-c", "user.name=ci"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "members may delete teams"], check=True)
    path = project / "policies" / "teams.yaml"
    path.write_text(path.read_text().replace(TEAM_DELETE[2], TEAM_DELETE[1]))  # the pull request fixes it
    migrate_and_apply(db, project=load_project(project, role_prefix=db.prefix))
    result = diff(db, project, "HEAD", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["widened"] == 0 and report["narrowed"] > 0
    assert all(c["before"] == "1 row" and c["after"] == "0 rows" for c in report["changes"])
    unknown = diff(db, project, "no-such-ref")
    assert unknown.exit_code == 2 and "no-such-ref" in unknown.output


def test_no_change_prints_an_empty_diff(db, tmp_path):
    head = project_at(tmp_path / "head")
    migrate_and_apply(db, project=load_project(head, role_prefix=db.prefix))
    result = diff(db, head, str(project_at(tmp_path / "base")))
    assert result.exit_code == 0, result.output
    assert "0 of " in result.stdout and "| effect |" not in result.stdout
