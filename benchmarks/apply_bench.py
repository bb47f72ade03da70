"""Benchmark apply, in-process (interpreter start excluded), against a baseline from the same run.

    python benchmarks/apply_bench.py [--server DSN] [--rounds N]

1. PromptCraft at phase 4: a full apply on a freshly migrated database vs
   executing the same statements through one psycopg connection (target:
   within 1.5x), and a no-op apply (target: under 0.3 s).
2. Scale: a generated project with 10 and with 1,000 tenant tables (3,000
   policies): the queries and round trips of a full apply and of a no-op plan
   must not grow with the number of tables (asserted), and their times are
   printed beside them.

PromptCraft encrypts columns: without rlsctl.master_key in PGOPTIONS, a random
key-encryption key is set for this run (as the tests do).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rlsctl.change import apply as applying  # noqa: E402
from rlsctl.change.drift import read_plan  # noqa: E402
from rlsctl.migrate import run as migrating  # noqa: E402
from rlsctl.pg.db import Target  # noqa: E402
from rlsctl.policy.project import Project, load_project  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from scale import CountingConnection, counting_connection, scale_project  # noqa: E402


class Server:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.created: list[str] = []
        self.prefixes: list[str] = []

    def database(self) -> tuple[str, str]:
        name = f"rlsctl_bench_{secrets.token_hex(4)}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return name, conninfo.make_conninfo(self.dsn, dbname=name)

    def prefix(self) -> str:
        prefix = f"bench{secrets.token_hex(3)}_"
        self.prefixes.append(prefix)
        return prefix

    def cleanup(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for name in self.created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for prefix in self.prefixes:
                for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (prefix,)):
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def connect(dsn: str) -> CountingConnection:
    return counting_connection(dsn)


def migrated(server: Server, project: Project) -> str:
    _, dsn = server.database()
    with connect(dsn) as conn:
        migrating.migrate(conn, project, Target(dsn, "bench"))
    return dsn


def promptcraft(server: Server, rounds: int) -> None:
    full, raw, noop = [], [], []
    for _ in range(rounds):
        project = load_project(ROOT, role_prefix=server.prefix())
        applied_dsn = migrated(server, project)
        with connect(applied_dsn) as conn:
            started = time.perf_counter()
            report = applying.apply(conn, project, "bench")
            full.append(time.perf_counter() - started)
            for _ in range(5):
                started = time.perf_counter()
                again = applying.apply(conn, project, "bench")
                noop.append(time.perf_counter() - started)
                assert again.plan.empty, "a second apply must run nothing"
        # Baseline: the very same statements, executed raw on an identically migrated database.
        raw_project = load_project(ROOT, role_prefix=server.prefix())
        raw_dsn = migrated(server, raw_project)
        statements = [s.sql.replace(project.role_prefix, raw_project.role_prefix) for s in report.plan.statements]
        with connect(raw_dsn) as conn:
            started = time.perf_counter()
            with conn.transaction():
                for statement in statements:
                    conn.execute(statement.encode())
            raw.append(time.perf_counter() - started)
    cold = full[0]  # the first apply of the process also compiles the templates
    full_s, raw_s, noop_s = statistics.median(full[1:] or full), statistics.median(raw), statistics.median(noop)
    print(f"PromptCraft, phase 4 ({rounds} rounds; warm = median after the first)")
    print(f"  full apply, cold    {cold * 1000:8.1f} ms  ({len(report.plan.statements)} statements)")
    print(f"  full apply, warm    {full_s * 1000:8.1f} ms")
    print(f"  raw execution       {raw_s * 1000:8.1f} ms  (same statements, one at a time, one psycopg connection)")
    print(f"  ratio warm / raw    {full_s / raw_s:8.2f} x  (target <= 1.5)")
    print(f"  ratio cold / raw    {cold / raw_s:8.2f} x")
    print(f"  no-op apply         {noop_s * 1000:8.1f} ms  (target < 300 ms)")


def scale(server: Server) -> None:
    print("Catalog reads as tables grow (queries / round trips; a pipeline is one round trip)")
    counts: dict[int, tuple[tuple[int, int], tuple[int, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="rlsctl-apply-bench-") as projects:
        for tables in (10, 1000):
            counts[tables] = _scale_round(server, tables, Path(projects))
    fixed = counts[10] == counts[1000]
    print(f"  fixed number of queries and round trips from 10 to 1,000 tables: {'yes' if fixed else 'NO'}")
    assert fixed, f"catalog reads grew with the number of tables: {counts}"


def _scale_round(server: Server, tables: int, parent: Path) -> tuple[tuple[int, int], tuple[int, int]]:
    """One synthetic project of `tables` tables (its files in `parent`): the catalog reads of a
    full apply and of a no-op plan."""
    project = load_project(scale_project(tables, parent), role_prefix=server.prefix())
    dsn = migrated(server, project)
    with connect(dsn) as conn:
        conn.reset_counts()
        started = time.perf_counter()
        applying.apply(conn, project, "bench", lock_timeout=60)
        full = time.perf_counter() - started, conn.counts
        conn.reset_counts()
        started = time.perf_counter()
        plan = read_plan(conn, project, "bench", None)
        noop = time.perf_counter() - started, conn.counts
        assert plan.empty
    policies = sum(len(t.policies) for t in plan.state.tables)
    print(
        f"  {tables:5d} tables, {policies:5d} policies: full apply {full[1][0]:3d} / {full[1][1]:3d} "
        f"in {full[0] * 1000:8.1f} ms; no-op plan {noop[1][0]:3d} / {noop[1][1]:3d} in {noop[0] * 1000:8.1f} ms"
    )
    return full[1], noop[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--server", default=os.environ.get("RLSCTL_TEST_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if "rlsctl.master_key" not in os.environ.get("PGOPTIONS", ""):
        key = "bench-" + secrets.token_hex(24)
        os.environ["PGOPTIONS"] = f"{os.environ.get('PGOPTIONS', '')} -c rlsctl.master_key={key}".strip()
    server = Server(args.server)
    try:
        promptcraft(server, args.rounds)
        scale(server)
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
