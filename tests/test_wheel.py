"""The built wheel carries the templates and the PromptCraft project: `rlsctl demo` works from anywhere."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    (found,) = out.glob("rlsctl-*.whl")
    return found


def test_wheel_contains_templates_and_the_bundled_project(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "rlsctl/_bundled/templates/objects/policy.sql.j2" in names
    assert "rlsctl/_bundled/templates/ops/tester_insert.sql.j2" in names
    assert "rlsctl/_bundled/project/policies/fixtures.yaml" in names
    assert "rlsctl/_bundled/project/migrations/1_team_management/01_seed_plan.up.sql" in names
    assert "rlsctl/catalog/sql/policies.sql" in names and "rlsctl/pg/statements/impersonate.sql" in names
    # The licence the metadata declares travels with the wheel (.dist-info/licenses/LICENSE).
    assert any(n.endswith("/LICENSE") and ".dist-info/" in n for n in names), sorted(names)[-8:]


def test_installed_wheel_runs_the_demo_from_an_empty_directory(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)], capture_output=True, text=True, check=False
    )
    assert install.returncode == 0, install.stderr[-2000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "from rlsctl.resources import bundled_project_dir, templates_dir;"
            "print(bundled_project_dir()); print(templates_dir())",
        ],
        cwd=empty,
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(str(venv) in line for line in where.stdout.split()), where.stdout
    demo = subprocess.run(
        [str(venv / "bin" / "rlsctl"), "demo"], cwd=empty, capture_output=True, text=True, timeout=600, check=False
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "every access-matrix cell matched its expectation in every phase" in demo.stdout
