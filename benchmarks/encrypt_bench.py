"""Benchmark the batched backfill against one big UPDATE, in the same run on the same server.

    python benchmarks/encrypt_bench.py [--server DSN] [--rows 1000000] [--bytes 200]

PromptCraft at phase 4 with N plaintext "PerformanceMetrics"."errorMessage"
values of the given size (written before the column was encrypted). Baseline:
an identical copy of the table (same columns, indexes and rows) encrypted by
a single statement, `UPDATE ... SET col = encode(pgp_sym_encrypt(col, key,
'cipher-algo=aes256, s2k-mode=1'), 'base64')`, the cipher settings rlsctl
uses. Then `rlsctl keys encrypt` on the real table: batches of their own
transactions, run as the keys role, each verified by decrypting.

Targets (issue 6): the backfill reaches at least 0.8x of the baseline's
throughput, and the p95 time a batch holds its row locks is at most 200 ms.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["PGOPTIONS"] = f"{os.environ.get('PGOPTIONS', '')} -c rlsctl.master_key=bench-{secrets.token_hex(16)}"

from benchmarks.apply_bench import Server, migrated  # noqa: E402
from rlsctl import keys as keying  # noqa: E402
from rlsctl.change import apply as applying  # noqa: E402
from rlsctl.keys import Keys  # noqa: E402
from rlsctl.policy.project import load_project  # noqa: E402

CIPHER = "cipher-algo=aes256, s2k-mode=1"


def seed(conn: psycopg.Connection, rows: int, size: int) -> None:
    conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u', 'u@x', now())""")
    conn.execute(
        """INSERT INTO "Prompt"(id, title, content, "userId", "updatedAt") VALUES ('p', 't', 'c', 'u', now())"""
    )
    conn.execute("SET session_replication_role = replica")  # plaintext from before the column was encrypted
    conn.execute(
        """INSERT INTO "PerformanceMetrics"(id, "promptId", "responseTime", success, "errorMessage")
           SELECT pg_catalog.lpad(g::text, 8, '0'), 'p', g, false,
                  pg_catalog.left(pg_catalog.repeat(pg_catalog.md5(g::text), %(repeat)s), %(size)s)
           FROM pg_catalog.generate_series(1, %(rows)s) AS g""",
        {"rows": rows, "size": size, "repeat": size // 32 + 1},
    )
    conn.execute("RESET session_replication_role")
    conn.execute("""CREATE TABLE bench_baseline (LIKE "PerformanceMetrics" INCLUDING ALL)""")
    conn.execute("""INSERT INTO bench_baseline SELECT * FROM "PerformanceMetrics" """)
    conn.execute("""VACUUM ANALYZE "PerformanceMetrics" """)
    conn.execute("VACUUM ANALYZE bench_baseline")


def baseline(conn: psycopg.Connection) -> float:
    data_key = secrets.token_hex(32)
    started = time.perf_counter()
    conn.execute(
        """UPDATE bench_baseline
           SET "errorMessage" = pg_catalog.encode(rlsctl.pgp_sym_encrypt("errorMessage", %s, %s), 'base64')""",
        (data_key, CIPHER),
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--server", default=os.environ.get("RLSCTL_TEST_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--bytes", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2, help="parallel batch workers (rlsctl keys --jobs)")
    args = parser.parse_args()
    server = Server(args.server)
    try:
        project = load_project(ROOT, role_prefix=server.prefix())
        dsn = migrated(server, project)
        with psycopg.connect(dsn, autocommit=True) as conn:
            applying.apply(conn, project, "bench")
            print(f"seeding {args.rows:,} rows of {args.bytes} bytes ...", flush=True)
            seed(conn, args.rows, args.bytes)
            single = baseline(conn)
            keys = Keys(conn, project, "bench", lambda: psycopg.connect(dsn, autocommit=True), jobs=args.jobs)
            started = time.perf_counter()
            run = keying.encrypt(keys, ("PerformanceMetrics.errorMessage",))
            batched = time.perf_counter() - started
        column = run.columns[0]
        assert column.rewritten == args.rows and column.remaining == 0, column
        ratio = single / batched
        p95 = run.p95_batch_seconds * 1000
        print(f"time inside batches: {sum(run.batch_seconds):.2f} s")
        print(f"single UPDATE (baseline): {single:8.2f} s  {args.rows / single:10,.0f} rows/s")
        print(
            f"rlsctl keys encrypt:      {batched:8.2f} s  {args.rows / batched:10,.0f} rows/s  "
            f"({column.batches} batches on {args.jobs} connections, each verified by decrypting)"
        )
        verdict = "met" if ratio >= 0.8 else "MISSED"
        print(f"throughput ratio: {ratio:.2f}x of the baseline (target >= 0.80x): {verdict}")
        print(f"row locks per batch: p95 {p95:.0f} ms (target <= 200 ms): {'met' if p95 <= 200 else 'MISSED'}")
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
