"""The CLI never surprises: no implicit example project, honest headers, errors at the right time.

Each test here failed before its fix (issue: "A CLI that never surprises").
"""

from __future__ import annotations

import getpass
import json
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rlsctl.cli.demo import _database
from rlsctl.cli.main import main
from rlsctl.pg import db
from rlsctl.policy.project import load_project
from tests.conftest import ROOT, SERVER, TestDatabase, migrate_and_apply


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """A working directory that is no rlsctl project, with no project named in the environment."""
    monkeypatch.delenv("RLSCTL_PROJECT", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def user_tables(database: TestDatabase) -> list[str]:
    with database.connect() as conn:
        rows = conn.execute("SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace").fetchall()
    return [row[0] for row in rows]


@pytest.mark.parametrize(
    "command",
    [("migrate",), ("apply",), ("apply", "--dry-run"), ("plan",), ("drift",), ("test",), ("keys", "status")],
)
def test_outside_a_project_every_project_command_exits_2_and_touches_nothing(elsewhere, db, command):
    result = run(*command, "--dsn", db.dsn, "--role-prefix", db.prefix)
    assert result.exit_code == 2, result.output
    assert "no rlsctl project here" in result.stderr and str(elsewhere) in result.stderr
    assert user_tables(db) == []  # PromptCraft's tables were not planted in someone's database


def test_outside_a_project_render_exits_2(elsewhere):
    result = run("render")
    assert result.exit_code == 2 and "no rlsctl project here" in result.stderr


def test_lint_of_a_live_database_outside_a_project_lints_it_alone(elsewhere, db):
    with db.connect() as conn:  # an unrelated database with one real problem
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        conn.execute("GRANT SELECT ON notes TO PUBLIC")
    result = run("lint", "--dsn", db.dsn, "--format", "json")
    report = json.loads(result.stdout)
    assert report["suppressed"] == []  # no suppressions of the bundled project's
    assert report["findings"], "the live database is still linted"
    assert all("notes" in finding["object"] for finding in report["findings"]), report["findings"]


def test_lint_with_nothing_to_lint_exits_2(elsewhere):
    result = run("lint")
    assert result.exit_code == 2 and "no rlsctl project here" in result.stderr


def test_a_named_project_is_used_from_anywhere(elsewhere):
    assert run("render", "--phase", "0", "--project", str(ROOT / "examples" / "orgs")).exit_code == 0


def test_demo_on_a_server_honours_the_role_prefix(server):
    project = load_project(ROOT)
    with _database(SERVER, project, lambda _: None, role_prefix="mine_") as (_, scoped, _where):
        assert scoped.role_name("app").startswith("mine_demo_"), scoped.role_name("app")


def test_the_header_without_a_dsn_names_the_database_libpq_connects_to(monkeypatch):
    for variable in ("DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE"):
        monkeypatch.delenv(variable, raising=False)
    user = getpass.getuser()
    assert db.resolve_dsn(None).where == f"local socket:5432/{user}"
    monkeypatch.setenv("PGUSER", "alice")
    assert db.resolve_dsn(None).where == "local socket:5432/alice"


def test_the_role_prefix_is_documented_as_used_as_written_with_its_variable():
    text = " ".join(run("apply", "--help").stdout.split())
    assert "'acme' makes acmeapp" in text and "RLSCTL_ROLE_PREFIX" in text


def test_an_identity_type_that_does_not_exist_fails_at_render(tmp_path):
    root = tmp_path / "orgs"
    shutil.copytree(ROOT / "examples" / "orgs", root)
    settings = root / "policies" / "project.yaml"
    settings.write_text(settings.read_text().replace("    type: uuid\n", "    type: uuidd\n"))
    result = run("render", "--project", str(root))
    assert result.exit_code == 2, result.output
    assert "project.yaml:" in result.stderr and "'uuidd'" in result.stderr


def test_rlsctl_test_shows_progress_on_a_terminal_and_nothing_in_a_pipe(db):
    """On a terminal a progress bar of probed cells (stderr); piped, the report alone."""
    import subprocess
    import sys

    example = ROOT / "examples" / "orgs"
    migrate_and_apply(db, project=load_project(example, role_prefix=db.prefix))
    rlsctl = Path(sys.executable).with_name("rlsctl")
    command = [str(rlsctl), "test", "--project", str(example), "--role-prefix", db.prefix, "--dsn", db.dsn]
    piped = subprocess.run(command, capture_output=True, text=True, check=False)
    assert piped.returncode == 0, piped.stdout + piped.stderr
    assert "probing cells" not in piped.stdout + piped.stderr
    quoted = " ".join(shlex.quote(part) for part in command)
    terminal = subprocess.run(["script", "-qec", quoted, "/dev/null"], capture_output=True, text=True, check=False)
    assert terminal.returncode == 0, terminal.stdout
    assert "probing cells" in terminal.stdout and "all cells as expected" in terminal.stdout


@pytest.mark.parametrize("kind", ["varchar(8)", "char", "name", "numeric(10,0)"])
def test_an_identity_type_that_truncates_is_refused(tmp_path, kind):
    """'u-victim-and-more'::varchar(8) is 'u-victim': a cast that truncates makes one identity another."""
    root = tmp_path / "orgs"
    shutil.copytree(ROOT / "examples" / "orgs", root)
    settings = root / "policies" / "project.yaml"
    settings.write_text(settings.read_text().replace("    type: uuid\n", f"    type: {kind}\n"))
    result = run("render", "--project", str(root))
    assert result.exit_code == 2, result.output
    assert "no length limits" in result.stderr


@pytest.mark.parametrize(
    "command, where",
    [(("lint",), "missing/out"), (("lint",), "a_file/out"), (("lint",), "/dev/full"),
     (("render",), "a_file/out"), (("render",), "/dev/full")],  # render -o is a directory: made if missing
)  # fmt: skip
def test_an_output_path_that_cannot_be_written_is_named_not_an_internal_error(tmp_path, command, where):
    (tmp_path / "a_file").write_text("")
    path = where if where.startswith("/") else str(tmp_path / where)
    result = CliRunner().invoke(main, [*command, "--project", str(ROOT), "-o", path])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: -o {path}: ") and "internal error" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
