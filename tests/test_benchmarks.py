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


def table_rows(text: str, figures: int) -> dict[tuple[str, str, str], list[str]]:
    """(protocol, statement, principal) of each row of a table: the words before its `figures`
    figures, and the figures."""
    rows = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) > figures + 1 and all(word.replace(".", "", 1).isdigit() for word in words[-figures:]):
            named = " ".join(words[1:-figures])
            principal = next(p for p in (*USERS, "big API key") if named.endswith(p))
            rows[(words[0], named[: -len(principal)].strip(), principal)] = words[-figures:]
    return rows


def test_the_policy_cost_benchmark_runs_and_rls_returns_what_the_baseline_does():
    """At two scales (the issue: "run it at two scales and show how each ratio grows")."""
    command = [sys.executable, "benchmarks/policy_cost_bench.py", "--server", SERVER, "--scale", "0.01"]
    command += ["--scale", "0.02", "--runs", "2", "--warmup", "0"]  # 0: the rows are still compared (one run)
    found = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert found.returncode == 0, found.stdout[-2000:] + found.stderr[-2000:]
    assert found.stderr.count("benchmark database ") == 2, found.stderr  # a load of its own for each scale
    first, second, grown = re.split(r"^PromptCraft reads and writes|^How each ratio grows", found.stdout, flags=re.M)[
        1:
    ]
    assert first.startswith(", 20 teams of 10 + one of 10,") and second.startswith(", 40 teams of 10 + one of 20,")
    rows = table_rows(second, 4)  # RLS ms, base ms, ratio, ruled: the second scale's table
    reads = ("prompt page", "prompt + versions", "versions of 20", "audit page")
    expected = {(s, p) for s in reads for p in (*USERS, "big API key")}
    expected |= {(s, p) for s in ("member list", "my usage", "delete prompt", "add version") for p in USERS}
    expected |= {(s, p) for s in ("create prompt", "update prompt") for p in (*USERS, "big API key")}
    # An OWNER's or an ADMIN's; a key reads no members.
    expected |= {("add member", p) for p in USERS if not p.endswith("MEMBER")}
    # Each statement both ways a driver sends it: prepared once and executed again and again, and
    # planned at every execution.
    assert set(rows) == {(protocol, *row) for protocol in ("prepared", "one-shot") for row in expected}
    # The last table: each ratio at both scales, as each scale's table printed it, and its growth.
    earlier, growth = table_rows(first, 4), {}
    for line in grown.splitlines():
        if line.split()[-1:] and re.fullmatch(r"x\d+\.\d\d", line.split()[-1]):
            rows_of = table_rows(line.rsplit(" ", 1)[0], 2)
            growth |= {key: (*figures, line.split()[-1]) for key, figures in rows_of.items()}
    assert set(growth) == set(rows), set(rows) ^ set(growth)
    for key, (at_first, at_second, grew) in growth.items():
        assert (at_first, at_second) == (earlier[key][2], rows[key][2]), key
        assert abs(float(grew[1:]) - float(at_second) / float(at_first)) < 0.02, (key, grew)
    summary = re.findall(r"^  (prepared|one-shot): geometric mean \S+ -> \S+ \(ruled \S+ -> \S+\), worst", grown, re.M)
    assert summary == ["prepared", "one-shot"], grown[-600:]
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
