"""The README's first command: `rlsctl demo`, from any directory, as root and as a normal user."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from rlsctl import catalog
from tests.conftest import ROOT, SERVER, admin_connection

pytestmark = pytest.mark.slow


def run_demo(args: list[str], cwd: Path, user: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "rlsctl.cli", "demo", *args]
    env = dict(os.environ)
    if user is not None:
        # A normal user cannot read root's Python installation: run the system
        # interpreter of the same version on this environment's packages.
        python = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}", path="/usr/bin")
        if python is None:
            pytest.skip("no system Python of this version to run as a normal user")
        site = sysconfig.get_paths()["purelib"]
        command = [
            "runuser",
            "-u",
            user,
            "--",
            "env",
            f"PYTHONPATH={ROOT}:{site}",
            "HOME=/tmp",
            python,
            "-m",
            "rlsctl.cli",
            "demo",
            *args,
        ]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def check_output(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every access-matrix cell matched its expectation in every phase" in result.stdout
    for phase in ("0 current_schema", "1 team_management", "2 version_control", "3 analytics", "4 enterprise_security"):
        assert phase in result.stdout
    assert "phase 4 (enterprise_security): test" in result.stderr  # visible progress


def test_demo_on_a_throw_away_cluster_from_an_empty_directory(tmp_path):
    result = run_demo([], tmp_path)
    check_output(result)
    leftovers = [p for p in Path("/tmp").glob("rlsctl-pg-*")]
    assert not leftovers, leftovers


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_demo_as_a_normal_user(tmp_path):
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    tmp_path.chmod(0o777)
    for parent in tmp_path.parents:
        if parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o005)
    result = run_demo([], tmp_path, user="nobody")
    check_output(result)


def test_demo_on_an_existing_server_cleans_up(tmp_path):
    """Only the demo's own database and roles are checked: parallel runs on the same server make theirs."""
    result = run_demo(["--dsn", SERVER], tmp_path)
    check_output(result)
    found = re.search(r"dropping temporary database (rlsctl_demo_\w+) and roles (rlsctl_demo_\w+)\*", result.stderr)
    assert found, result.stderr
    database, prefix = found.groups()
    with admin_connection() as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (database,)).fetchone()[0] == 0
        assert catalog.roles(conn, prefix) == []
