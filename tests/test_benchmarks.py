"""The benchmarks still run, at a tiny scale: no timing is asserted (benchmarks print ratios; a
test cannot judge speed on a shared machine), but the policy benchmark compares every result set
under RLS with its hand-written baseline and stops when they differ, so it is a check of the
policies' meaning as well."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from tests.conftest import ROOT, SERVER

# A user of each rank in a small team and in the big team (the issue: "users at each rank").
USERS = tuple(f"{size} {rank}" for size in ("small", "big") for rank in ("OWNER", "ADMIN", "MEMBER"))


def test_the_policy_cost_benchmark_runs_and_rls_returns_what_the_baseline_does():
    command = [sys.executable, "benchmarks/policy_cost_bench.py", "--server", SERVER, "--scale", "0.02"]
    command += ["--runs", "2", "--warmup", "0"]  # 0: the rows are still compared (one run)
    found = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert found.returncode == 0, found.stdout[-2000:] + found.stderr[-2000:]
    rows = {}  # (protocol, statement, principal) of each row of the table: the words before its four figures
    for line in found.stdout.splitlines():
        words = line.split()
        if len(words) > 5 and all(word.replace(".", "", 1).isdigit() for word in words[-4:]):
            text = " ".join(words[1:-4])
            principal = next(p for p in (*USERS, "big API key") if text.endswith(p))
            rows[(words[0], text[: -len(principal)].strip(), principal)] = words[-4:]
    reads = ("prompt page", "prompt + versions", "versions of 20", "audit page")
    expected = {(s, p) for s in reads for p in (*USERS, "big API key")}
    expected |= {(s, p) for s in ("member list", "my usage", "delete prompt", "add version") for p in USERS}
    expected |= {(s, p) for s in ("create prompt", "update prompt") for p in (*USERS, "big API key")}
    # An OWNER's or an ADMIN's; a key reads no members.
    expected |= {("add member", p) for p in USERS if not p.endswith("MEMBER")}
    # Each statement both ways a driver sends it: prepared once and executed again and again, and
    # planned at every execution.
    assert set(rows) == {(protocol, *row) for protocol in ("prepared", "one-shot") for row in expected}
    assert "authenticating an API key" in found.stdout
    assert "RLS and baseline equal" in found.stdout
    # `rlsctl keys encrypt` ran on the load: "my usage" decrypts every row it reads, both ways.
    sealed = next(line for line in found.stdout.splitlines() if line.startswith("keys encrypt:")).split()
    assert sealed[2] == sealed[4] and int(sealed[2]) > 0, sealed
    # The floor: one lookup of the user's teams, as the superuser's own query and as rlsctl's helper,
    # each against the round trip of the same run.
    floor = found.stdout.split("one lookup of the user's teams in a statement", 1)[1].split("\n\n", 1)[0]
    extras = re.findall(r": (\d+\.\d+) ms \(([+-]\d+\.\d+) ms over the round trip\)", floor)
    assert len(extras) == 2 and "tenant_ids('MEMBER') as the app" in floor, floor
    # Where the time goes: rlsctl's functions counted by PostgreSQL for each statement under RLS.
    section = found.stdout.split("rlsctl functions per statement under RLS", 1)[1].split("\n\n", 1)[0]
    breakdown = {line[2:20].strip(): line for line in section.splitlines()[1:]}
    assert set(breakdown) == {statement for statement, _ in expected}, section
    assert "tenant_ids x" in breakdown["update prompt"] and "current_user_id x" in breakdown["update prompt"]
    assert "decrypt x" in breakdown["my usage"], breakdown["my usage"]  # the decryption is counted
    assert "audit_Prompt x1.00" in breakdown["delete prompt"], breakdown["delete prompt"]  # a trigger's too


def test_the_policy_cost_benchmark_refuses_bad_numbers_before_creating_anything():
    """A scale, run count or warm-up that cannot make a benchmark exits 2 naming the option; it is
    refused before the throw-away database exists (none is left behind)."""
    for option, value in (("--scale", "0"), ("--scale", "-1"), ("--scale", "nan"), ("--runs", "0"), ("--warmup", "-1")):
        command = [sys.executable, "benchmarks/policy_cost_bench.py", "--server", SERVER, option, value]
        found = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert found.returncode == 2, (option, value, found.stdout, found.stderr)
        assert f"argument {option}:" in found.stderr and "CREATE DATABASE" not in found.stderr
        assert found.stdout == ""


@pytest.mark.parametrize("later", [0.0, 0.5, 1.0, 1.5, 2.0])
def test_a_killed_benchmark_drops_its_database_and_roles(later: float):
    """SIGTERM (a CI timeout, `timeout`) drops what the benchmark made and exits 143: killed once its
    roles exist or up to two seconds after (in the middle of applying, generating or timing, often
    while the server runs one of its statements: once, killed there, it exited 1 with "another
    command is already in progress"), it leaves neither its database nor a role behind, and no
    traceback."""
    command = [sys.executable, "benchmarks/policy_cost_bench.py", "--server", SERVER, "--scale", "0.02"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as bench:
        assert bench.stderr is not None
        first = bench.stderr.readline()  # "benchmark database NAME, roles PREFIX* (dropped at the end)"
        name, prefix = first.split()[2].rstrip(","), first.split()[4].rstrip("*")
        with psycopg.connect(SERVER, autocommit=True) as conn:
            deadline = time.monotonic() + 120
            while not roles(conn, prefix) and bench.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert roles(conn, prefix), "the benchmark never created its roles"
            time.sleep(later)
            assert bench.poll() is None, "the benchmark ended before it was killed"
            bench.send_signal(signal.SIGTERM)
            _, err = bench.communicate(timeout=120)
            assert bench.returncode == 128 + signal.SIGTERM, err
            assert "Traceback" not in err, err
            assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone() == (0,)
            assert roles(conn, prefix) == []


def roles(conn: psycopg.Connection, prefix: str) -> list[str]:
    return [row[0] for row in conn.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (prefix,))]
