"""Benchmark live lint on a large catalog, against reading the same catalog rows in the same run.

    python benchmarks/lint_bench.py [--server DSN] [--tables N]

Builds a database with N tenant tables (default 1,000) and three policies
each (3,000 policies), then times: the catalog reads alone (seven set-based
queries), and the whole live lint (reads + every rule). The number of queries
must not depend on N. Target: a few seconds at 1,000 tables.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rlsctl.lint import live
from rlsctl.lint.runner import run

QUERIES = 0


class CountingCursor(psycopg.Cursor):
    def execute(self, *args, **kwargs):  # type: ignore[override]
        global QUERIES
        QUERIES += 1
        return super().execute(*args, **kwargs)


def build(dsn: str, tables: int, role: str) -> None:
    ddl = [f'CREATE ROLE "{role}"', "CREATE TABLE tenant (id int PRIMARY KEY)"]
    for n in range(tables):
        ddl += [
            f"CREATE TABLE t{n} (id int PRIMARY KEY, tenant_id int NOT NULL REFERENCES tenant(id), body text)",
            f"CREATE INDEX ON t{n} (tenant_id)",
            f"ALTER TABLE t{n} ENABLE ROW LEVEL SECURITY",
            f"ALTER TABLE t{n} FORCE ROW LEVEL SECURITY",
            f'GRANT SELECT, INSERT, UPDATE ON t{n} TO "{role}"',
        ]
        scope = "tenant_id = (SELECT NULLIF(pg_catalog.current_setting('app.tenant', true), '')::int)"
        for command in ("SELECT", "INSERT", "UPDATE"):
            clause = "WITH CHECK" if command == "INSERT" else "USING"
            ddl.append(f'CREATE POLICY p_{command.lower()} ON t{n} FOR {command} TO "{role}" {clause} ({scope})')
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute(";\n".join(ddl).encode())


def measure(dsn: str, rounds: int = 3) -> tuple[float, float, int, int]:
    global QUERIES
    reads, totals = [], []
    with psycopg.connect(dsn, autocommit=True, cursor_factory=CountingCursor) as conn:
        for _ in range(rounds):
            QUERIES = 0
            started = time.perf_counter()
            model = live.read_model(conn)
            reads.append(time.perf_counter() - started)
            queries = QUERIES
            started = time.perf_counter()
            result = run([model])
            totals.append(reads[-1] + time.perf_counter() - started)
    return statistics.median(reads), statistics.median(totals), queries, len(result.findings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--server", default=os.environ.get("RLSCTL_TEST_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--tables", type=int, default=1000)
    args = parser.parse_args()
    role = f"bench_{secrets.token_hex(3)}_app"
    created = []
    try:
        print("live lint (median of 3); baseline = the same catalog read alone")
        for tables in (10, args.tables):
            name = f"rlsctl_lintbench_{secrets.token_hex(4)}"
            with psycopg.connect(args.server, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            created.append(name)
            dsn = conninfo.make_conninfo(args.server, dbname=name)
            build(dsn, tables, f"{role}{tables}")
            read, total, queries, findings = measure(dsn)
            print(
                f"  {tables:5d} tables, {3 * tables:5d} policies: {queries} queries, "
                f"catalog read {read * 1000:7.1f} ms, whole lint {total * 1000:7.1f} ms "
                f"({total / read:4.1f}x the read), {findings} findings"
            )
    finally:
        with psycopg.connect(args.server, autocommit=True) as conn:
            for name in created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for (name,) in conn.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (role,)):
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
