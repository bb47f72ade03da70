"""Benchmark retention's batches against one big DELETE, in the same run on the same server.

    python benchmarks/retention_bench.py [--server DSN] [--rows 2000000] [--expired 1000000] [--rounds 3]

PromptCraft at phase 4 with N "PerformanceMetrics" rows (window: 90 days by
"createdAt"), the given number of them expired, in the order they were written
(the oldest first; --shuffled: in random order on disk, as a column updated in
place, such as "UsageAnalytics"."lastUsedAt", leaves them). Baseline: an identical copy of the table (same columns,
indexes and rows) emptied of its expired rows by a single statement,
`DELETE FROM copy WHERE "createdAt" < cutoff`. Then `rlsctl retention run` on the
real table: batches of their own transactions, each a call of the table's
batch function as the retention role (its policies checked on every row).
Each round puts the expired rows back into both tables first; the figures are
medians over the rounds, which alternate which of the two goes first.

During both, a writer inserts young rows into the table being cleaned, one per
transaction, and its insert latencies are reported: it must never wait behind
retention (no table lock, no shared row).

Targets (issue 16): the batches reach at least 0.7x of the baseline's
throughput; the time a batch holds its row locks is at most 200 ms at p95 and
under 1 s at worst.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["PGOPTIONS"] = f"{os.environ.get('PGOPTIONS', '')} -c rlsctl.master_key=bench-{secrets.token_hex(16)}"

from benchmarks.apply_bench import Server, migrated  # noqa: E402
from rlsctl.change import apply as applying  # noqa: E402
from rlsctl.policy.project import load_project  # noqa: E402
from rlsctl.retention import Retention, RetentionRun, run  # noqa: E402

CUTOFF = "(now() AT TIME ZONE 'UTC') - interval '90 days'"


def seed(conn: psycopg.Connection, rows: int, expired: int, shuffled: bool = False) -> None:
    conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u', 'u@x', now())""")
    conn.execute(
        """INSERT INTO "Prompt"(id, title, content, "userId", "updatedAt") VALUES ('p', 't', 'c', 'u', now())"""
    )
    conn.execute("SET session_replication_role = replica")  # no per-row triggers while seeding
    # Row g was written after row g - 1: the first `expired` ones a minute apart up to a minute
    # before the cutoff, the others a second apart from a day after it (young for the whole run).
    conn.execute(
        f"""INSERT INTO "PerformanceMetrics"(id, "promptId", "responseTime", success, "createdAt")
            SELECT pg_catalog.lpad(g::text, 9, '0'), 'p', g, true,
                   CASE WHEN g <= %(expired)s THEN {CUTOFF} - make_interval(mins => %(expired)s - g + 1)
                        ELSE {CUTOFF} + interval '1 day' + make_interval(secs => g - %(expired)s) END
            FROM pg_catalog.generate_series(1, %(rows)s) AS g
            ORDER BY CASE WHEN %(shuffled)s THEN pg_catalog.random() ELSE g END""",
        {"rows": rows, "expired": expired, "shuffled": shuffled},
    )
    conn.execute("RESET session_replication_role")
    conn.execute("""CREATE TABLE bench_baseline (LIKE "PerformanceMetrics" INCLUDING ALL)""")
    conn.execute("""INSERT INTO bench_baseline SELECT * FROM "PerformanceMetrics" """)
    conn.execute(f"""CREATE TABLE bench_expired AS SELECT * FROM "PerformanceMetrics" WHERE "createdAt" < {CUTOFF}""")
    settle(conn)


def restore(conn: psycopg.Connection) -> None:
    """The expired rows back in both tables, for another round."""
    conn.execute("SET session_replication_role = replica")
    conn.execute("""INSERT INTO "PerformanceMetrics" SELECT * FROM bench_expired""")
    conn.execute("INSERT INTO bench_baseline SELECT * FROM bench_expired")
    conn.execute("RESET session_replication_role")
    settle(conn)


def settle(conn: psycopg.Connection) -> None:
    conn.execute("""VACUUM ANALYZE "PerformanceMetrics" """)
    conn.execute("VACUUM ANALYZE bench_baseline")
    conn.execute("CHECKPOINT")


class Writer(threading.Thread):
    """Inserts young rows into `table`, one per transaction, until stopped; keeps each latency."""

    def __init__(self, dsn: str, table: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.table = dsn, table
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        statement = (
            f'INSERT INTO "{self.table}"(id, "promptId", "responseTime", success) '
            "VALUES ('w' || %s, 'p', 1, true)"
        )  # the table names are the benchmark's own two constants
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '5s'")
            while not self.stop.is_set():
                started = time.perf_counter()
                conn.execute(statement.encode(), (secrets.token_hex(8),))
                self.latencies.append(time.perf_counter() - started)
                time.sleep(0.002)


def latencies(writers: list[Writer]) -> str:
    ordered = sorted(latency for writer in writers for latency in writer.latencies) or [0.0]
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return (
        f"{len(ordered)} inserts, median {statistics.median(ordered) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, worst {ordered[-1] * 1000:.1f} ms"
    )


def with_writer(dsn: str, table: str, work: Callable[[], object]) -> tuple[float, object, Writer]:
    """Time `work` while a writer inserts young rows into `table`."""
    writer = Writer(dsn, table)
    writer.start()
    started = time.perf_counter()
    result = work()
    elapsed = time.perf_counter() - started
    writer.stop.set()
    writer.join()
    return elapsed, result, writer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--server", default=os.environ.get("RLSCTL_TEST_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--expired", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="each round restores the expired rows; medians")
    parser.add_argument(
        "--shuffled", action="store_true", help="rows in random physical order (the column's age uncorrelated)"
    )
    args = parser.parse_args()
    server = Server(args.server)
    try:
        project = load_project(ROOT, role_prefix=server.prefix())
        dsn = migrated(server, project)
        with psycopg.connect(dsn, autocommit=True) as conn:
            applying.apply(conn, project, "bench")
            print(f"seeding {args.rows:,} rows, {args.expired:,} of them expired ...", flush=True)
            seed(conn, args.rows, args.expired, args.shuffled)
            retention = Retention(conn, project, "bench")
            singles, batched, runs, writers = [], [], [], {"baseline": [], "retention": []}
            for number in range(args.rounds):
                if number:
                    restore(conn)

                def single() -> int:
                    return conn.execute(f'DELETE FROM bench_baseline WHERE "createdAt" < {CUTOFF}').rowcount

                def batches() -> RetentionRun:
                    return run(retention, ("PerformanceMetrics",))

                order = [("baseline", single), ("retention", batches)]
                for name, work in order if number % 2 == 0 else reversed(order):
                    elapsed, result, writer = with_writer(
                        dsn, "bench_baseline" if name == "baseline" else "PerformanceMetrics", work
                    )
                    writers[name].append(writer)
                    if name == "baseline":
                        assert result == args.expired, result
                        singles.append(elapsed)
                    else:
                        assert isinstance(result, RetentionRun) and result.removed == args.expired, result
                        batched.append(elapsed)
                        runs.append(result)
                left = conn.execute(
                    f'SELECT count(*) FROM "PerformanceMetrics" WHERE "createdAt" < {CUTOFF}'
                ).fetchone()
                assert left == (0,), left
                print(
                    f"round {number + 1}: single DELETE {singles[-1]:.2f} s, retention run {batched[-1]:.2f} s",
                    flush=True,
                )
        single_s, batched_s = statistics.median(singles), statistics.median(batched)
        seconds = [s for done in runs for s in done.batch_seconds]
        ordered = sorted(seconds)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000
        worst = ordered[-1] * 1000
        ratio = single_s / batched_s
        print(
            f"single DELETE (baseline):  {single_s:8.2f} s  {args.expired / single_s:10,.0f} rows/s  "
            f"(median of {args.rounds})"
        )
        print(f"  writer meanwhile: {latencies(writers['baseline'])}")
        print(
            f"rlsctl retention run:      {batched_s:8.2f} s  {args.expired / batched_s:10,.0f} rows/s  "
            f"(median of {args.rounds}; {len(runs[-1].tables[0].batch_seconds)} batches as the retention role)"
        )
        print(f"  writer meanwhile: {latencies(writers['retention'])}")
        verdict = "met" if ratio >= 0.7 else "MISSED"
        print(f"throughput ratio: {ratio:.2f}x of the baseline (target >= 0.70x): {verdict}")
        print(f"row locks per batch: p95 {p95:.0f} ms (target <= 200 ms): {'met' if p95 <= 200 else 'MISSED'}")
        print(f"row locks per batch: worst {worst:.0f} ms (target < 1000 ms): {'met' if worst < 1000 else 'MISSED'}")
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
