"""The README's first command: `rlsctl demo`, from any directory, as root and as a normal user."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlsctl.catalog import queries as catalog
from rlsctl.pg import localpg
from tests.conftest import ROOT, SERVER, admin_connection

pytestmark = pytest.mark.slow


def run_demo(
    args: list[str], cwd: Path, user: str | None = None, tmpdir: Path | None = None
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "rlsctl.cli.main", "demo", *args]
    env = dict(os.environ)
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
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
            "rlsctl.cli.main",
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
    # Piped: one plain line per phase, no box for an 80-column pipe to break
    assert "phase 1 team_management: " in result.stdout and "┃" not in result.stdout and "│" not in result.stdout


@pytest.fixture
def private_tmpdir() -> Iterator[Path]:
    """A TMPDIR of the demo's own, so a cluster left by some other, killed run is not counted as ours.

    It sits directly in /tmp (short socket paths) and is world-traversable: the
    throw-away server runs as `postgres` when the tests run as root.
    """
    directory = Path(tempfile.mkdtemp(prefix="rlsctl-demo-test-", dir="/tmp"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        # If the demo under test failed to stop its server, stop it here so a
        # red test does not leak a running postmaster (SIGQUIT: immediate shutdown).
        for pid_file in directory.glob("rlsctl-pg-*/data/postmaster.pid"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGQUIT)
        shutil.rmtree(directory, ignore_errors=True)


def test_demo_on_a_throw_away_cluster_from_an_empty_directory(tmp_path, private_tmpdir):
    result = run_demo([], tmp_path, tmpdir=private_tmpdir)
    check_output(result)
    leftovers = list(private_tmpdir.glob("rlsctl-pg-*"))
    assert not leftovers, leftovers


def interruptible() -> None:
    """In the demo's process before it starts: Ctrl-C interrupts, as in a terminal. A test suite
    started as a background job (`pytest ... &` in a script) runs with SIGINT and SIGQUIT ignored,
    which children inherit, and Python keeps an ignored SIGINT ignored: the demo would rightly
    finish, as it does under `nohup`."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_state(pid: int) -> str:
    """The SigBlk, SigIgn and SigCgt masks of a running process (Linux), for a failure message."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        return f"unreadable ({exc})"
    return " ".join(line.replace("\t", " ") for line in status.splitlines() if line.startswith(("SigBlk", "SigIgn", "SigCgt")))


def stop_demo_midway(args: list[str], cwd: Path, tmpdir: Path, signum: int) -> str:
    """Start a demo, signal it once phase 1 is under way, wait for it to end; its progress."""
    command = [sys.executable, "-m", "rlsctl.cli.main", "demo", *args]
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=interruptible,
    ) as demo:
        assert demo.stderr is not None
        progress = []
        for line in demo.stderr:
            progress.append(line)
            if "phase 1" in line:  # the database is up and in use
                break
        signals = signal_state(demo.pid)
        demo.send_signal(signum)
        progress.extend(demo.stderr)
        demo.wait(timeout=60)
    text = "".join(progress)
    # What the process ignored, blocked and caught when signalled, should it ever not stop.
    assert demo.returncode != 0, f"{text}\nthe demo's signals when signalled: {signals}"
    assert "phase 4" not in text, "the signal came too late to test anything"
    # One line says what happened: no warning of a connection left open, no traceback.
    assert "Warning" not in text and "Traceback" not in text and "psycopg" not in text, text
    return text


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_demo_stopped_midway_stops_its_server_and_deletes_its_files(tmp_path, private_tmpdir, signum):
    """A killed demo must not leave a server running on files in /tmp (CI once tripped on one's files)."""
    progress = stop_demo_midway([], tmp_path, private_tmpdir, signum)
    assert "stopping the throw-away cluster" not in progress  # it was stopped, not finished
    assert not list(private_tmpdir.glob("rlsctl-pg-*")), progress
    servers = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(private_tmpdir) not in servers


def test_a_demo_stopped_midway_on_a_server_drops_its_database_and_roles(tmp_path, private_tmpdir):
    progress = stop_demo_midway(["--dsn", SERVER], tmp_path, private_tmpdir, signal.SIGTERM)
    found = re.search(r"creating temporary database (rlsctl_demo_\w+) on", progress)
    assert found, progress
    database = found.group(1)
    assert_demo_objects_gone(database, f"{database}_")


def assert_demo_objects_gone(database: str, prefix: str) -> None:
    with admin_connection() as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (database,)).fetchone()[0] == 0
        assert catalog.roles(conn, prefix) == []


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
    assert_demo_objects_gone(database, prefix)


def test_termination_unwinds_and_restores_the_previous_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped, localpg.termination_unwinds():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this at once
    assert stopped.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_second_signal_does_not_cut_the_cleanup_short():
    before = signal.getsignal(signal.SIGHUP)
    with localpg.termination_unwinds():
        with pytest.raises(SystemExit):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        # cleanup runs here: further signals are ignored until it is done
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGHUP) == before


def test_a_hangup_the_caller_ignores_stays_ignored():
    """`nohup rlsctl demo` must survive the hangup it was started to survive."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with localpg.termination_unwinds():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)  # would raise SystemExit if caught
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
