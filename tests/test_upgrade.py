"""Upgrading rlsctl itself (docs/upgrading.md): this version's `apply` over a database that the
previous release applied converges: it exits 0, `drift` then finds nothing, and a second `apply`
changes nothing.

The previous release is the newest tag `v*` reachable from HEAD that is not HEAD itself; while
there is none, it is PREVIOUS_RELEASE. The repository has no release tags: `version = "0.1.0"`
was set in pyproject.toml by the first commit, 7f0afc3 ("Foundation core"), and has not changed
since, so that commit is 0.1.0 (CHANGELOG.md says the same). Tag the next release and this test
follows the tag.

The previous release runs from its own source tree (`git archive` of that commit into a
temporary directory, nothing else checked out), with `python -c` and PYTHONPATH pointing at the
tree, on the dependencies installed here: its pyproject.toml's requirements are checked against
them first (0.1.0 needs a subset of this version's, with the same bounds). No network. Without
the commit (a shallow clone, a source archive) the tests are skipped and say why; `.ci/run`
works on a full clone.

Three paths:
- the previous release's own project files, upgraded: the result equals a fresh install of
  this version with the same files;
- the previous release's project, then this version's bundled project (the files moved on with
  the release): `rlsctl test` passes on the upgraded database;
- going back: the previous release's `apply` over the upgraded database, after the one DBA step
  docs/upgrading.md names.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from psycopg import sql

from rlsctl.cli.main import main
from tests.conftest import ROOT, TestDatabase
from tests.helpers import security_snapshot

# 0.1.0: the commit that set the version in pyproject.toml (see the docstring).
PREVIOUS_RELEASE = "7f0afc36d59b42c6b1cf5d4565d1d0f62a996e95"

# Runs the previous release's console script (its pyproject.toml names it) from its own tree.
RUNNER = (
    "import importlib, os, sys\n"
    "tree = os.environ['RLSCTL_PREVIOUS_TREE']\n"
    "import rlsctl\n"
    "found = [os.path.dirname(p) for p in rlsctl.__path__]\n"
    "assert found == [tree], f'rlsctl imported from {found}, not from {tree}'\n"
    "module, _, attr = sys.argv[1].partition(':')\n"
    "sys.argv = ['rlsctl', *sys.argv[2:]]\n"
    "getattr(importlib.import_module(module), attr)()\n"
)


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)


def previous_release_commit() -> str:
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the previous release comes from the repository's history")
    top = git("rev-parse", "--show-toplevel")
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT.resolve():
        pytest.skip(f"{ROOT} is not a git checkout (a source archive?): no previous release to upgrade from")
    head = git("rev-parse", "HEAD^{commit}").stdout.strip()
    for tag in git("tag", "--list", "v[0-9]*", "--merged", "HEAD", "--sort=-v:refname").stdout.split():
        commit = git("rev-parse", f"{tag}^{{commit}}").stdout.strip()
        if commit and commit != head:
            return commit
    if git("cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}").returncode != 0:
        shallow = git("rev-parse", "--is-shallow-repository").stdout.strip()
        pytest.skip(
            f"the previous release {PREVIOUS_RELEASE[:7]} is not in this clone (shallow: {shallow}); "
            "`git fetch --unshallow` brings it"
        )
    return PREVIOUS_RELEASE


def unmet_requirements(pyproject: dict) -> list[str]:
    """The previous release's dependencies that the installed packages do not satisfy."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - pytest itself depends on packaging
        return []
    unmet = []
    for line in pyproject["project"].get("dependencies", []):
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            unmet.append(f"{line} (not installed)")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(f"{line} (installed: {installed})")
    return unmet


def target(database: TestDatabase, project: Path) -> list[str]:
    return ["--dsn", database.dsn, "--project", str(project), "--role-prefix", database.prefix]


class PreviousRelease:
    """The previous release's source tree, and its command line."""

    def __init__(self, commit: str, workdir: Path) -> None:
        self.commit = commit
        self.tree = workdir / "previous"
        self.tree.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit], capture_output=True, check=True
        )
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(self.tree, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        self.pyproject = tomllib.loads((self.tree / "pyproject.toml").read_text())
        self.script = self.pyproject["project"]["scripts"]["rlsctl"]
        # 0.1.0's rlsctl/ had no __init__.py: an implicit namespace package, which any regular
        # `rlsctl` package later on sys.path (this checkout, through the editable install) would
        # shadow. An empty __init__.py makes the old tree win on PYTHONPATH and changes nothing else.
        init = self.tree / "rlsctl" / "__init__.py"
        if not init.exists():
            init.write_text("")
        self.workdir = workdir

    def project(self) -> Path:
        """The release's PromptCraft project files, without its templates/ (a project's templates/
        would override this version's templates: docs/policy-format.md)."""
        project = self.workdir / "previous-project"
        if not project.exists():
            project.mkdir()
            for name in ("policies", "migrations", "expectations"):
                if (self.tree / name).is_dir():
                    shutil.copytree(self.tree / name, project / name)
        return project

    def run(self, database: TestDatabase, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.tree), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "RLSCTL_PREVIOUS_TREE": str(self.tree),
        }
        for name in ("RLSCTL_PROJECT", "RLSCTL_ROLE_PREFIX", "DATABASE_URL"):
            env.pop(name, None)
        return subprocess.run(
            [sys.executable, "-c", RUNNER, self.script, *args, *target(database, project)],
            cwd=self.workdir,  # nothing importable here: '' on sys.path finds no rlsctl
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def secure(self, database: TestDatabase, project: Path) -> None:
        """The previous release's `migrate`, then its `apply`."""
        for command in ("migrate", "apply"):
            done = self.run(database, project, command)
            assert done.returncode == 0, f"previous release's {command}: {done.stdout}{done.stderr}"


@pytest.fixture(scope="module")
def previous(tmp_path_factory) -> PreviousRelease:
    release = PreviousRelease(previous_release_commit(), tmp_path_factory.mktemp("upgrade"))
    unmet = unmet_requirements(release.pyproject)
    if unmet:
        pytest.skip(f"the previous release {release.commit[:7]} needs what is not installed here: {', '.join(unmet)}")
    return release


def current(database: TestDatabase, project: Path, *args: str) -> Result:
    """This version's command line, in-process."""
    return CliRunner().invoke(main, [*args, *target(database, project)])


def assert_converges(database: TestDatabase, project: Path) -> None:
    """apply exits 0, drift then finds nothing, a second apply changes nothing."""
    applied = current(database, project, "apply")
    assert applied.exit_code == 0, applied.output
    drift = current(database, project, "drift")
    assert drift.exit_code == 0 and "no drift" in drift.output, drift.output
    again = current(database, project, "apply")
    assert again.exit_code == 0 and "no changes" in again.output, again.output


def test_this_version_converges_over_the_previous_release_with_the_same_project(previous, make_db):
    """Upgrading rlsctl, keeping the policy files: the upgraded database is what a fresh install
    of this version makes of the same files, and its migration records are read as they are."""
    project = previous.project()
    upgraded = make_db()
    previous.secure(upgraded, project)
    assert_converges(upgraded, project)
    migrated = current(upgraded, project, "migrate")
    assert migrated.exit_code == 0 and "nothing to migrate" in migrated.output, migrated.output

    fresh = make_db()
    for command in ("migrate", "apply"):
        done = current(fresh, project, command)
        assert done.exit_code == 0, done.output
    assert security_snapshot(upgraded) == security_snapshot(fresh)


def test_this_version_and_its_bundled_project_converge_over_the_previous_release(previous, make_db):
    """The project files moved on with the release (new roles, encrypted columns, API keys):
    apply adopts the previous release's helper schema and converges, and the access matrix holds.

    Known failure, reported by the XFAIL at the end once everything else has passed: an apply
    that creates a role which owns objects (here the keys role, new since 0.1.0) leaves that
    role's built-in default privilege (EXECUTE for PUBLIC on the functions it creates later) for
    the next apply to revoke, so the first drift is not clean (docs/upgrading.md)."""
    database = make_db()
    previous.secure(database, previous.project())
    applied = current(database, ROOT, "apply")
    assert applied.exit_code == 0, applied.output
    drift = current(database, ROOT, "drift")
    # One apply converges, the roles it creates included (their built-in default privileges).
    assert drift.exit_code == 0 and "no drift" in drift.output, drift.output
    assert_converges(database, ROOT)
    tested = current(database, ROOT, "test")
    assert tested.exit_code == 0, tested.output[-3000:]


def test_going_back_to_the_previous_release(previous, make_db):
    """docs/upgrading.md, "Going back": the previous release's apply over the upgraded database.
    Where it refuses what this version left (0.1.0: the helper schema, which this version gives
    to another role than the owner), it changes nothing; after the DBA step the docs name it
    applies, and upgrading once more converges."""
    project = previous.project()
    database = make_db()
    previous.secure(database, project)
    assert_converges(database, project)
    before = security_snapshot(database)
    back = previous.run(database, project, "apply")
    if back.returncode != 0:
        assert "schema rlsctl" in back.stderr, back.stdout + back.stderr
        assert security_snapshot(database) == before
        with database.connect() as conn:
            conn.execute(sql.SQL("ALTER SCHEMA rlsctl OWNER TO {}").format(sql.Identifier(database.role("owner"))))
        back = previous.run(database, project, "apply")
    assert back.returncode == 0, back.stdout + back.stderr
    assert_converges(database, project)
