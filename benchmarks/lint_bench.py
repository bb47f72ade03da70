"""Benchmark live lint on a large, mixed catalog, against reading the same catalog in the same run.

    python benchmarks/lint_bench.py [--server DSN] [--tables N]

Builds a database with N tenant tables (default 1,000) and about three
policies each, not all alike: several roles (app, analyst, definer), tables
scoped directly, through an EXISTS on a membership table or through a
SECURITY DEFINER helper, overlapping permissive policies (RLS008), a few
tables whose policy reads itself through an invoker helper (RLS017), and
views with and without security_invoker (RLS021). Then times the catalog
reads alone (a fixed number of set-based queries), the whole live lint
(reads + every rule), and the whole CLI path, `rlsctl lint --dsn ...
--format json` run in-process (which lints the project offline as well).
The number of queries must not depend on N. Target: a few seconds at 1,000
tables. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
from click.testing import CliRunner
from psycopg import conninfo, sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rlsctl.cli.main import main as cli
from rlsctl.lint import live
from rlsctl.lint.runner import run

QUERIES = 0
TENANT = "(SELECT NULLIF(pg_catalog.current_setting('app.tenant', true), '')::int)"
USER = "(SELECT NULLIF(pg_catalog.current_setting('app.user', true), '')::int)"


class CountingCursor(psycopg.Cursor):
    def execute(self, *args, **kwargs):  # type: ignore[override]
        global QUERIES
        QUERIES += 1
        return super().execute(*args, **kwargs)


def shared(roles: dict[str, str]) -> list[str]:
    """Roles, the membership table with its own policies, and the helpers policies call."""
    app, analyst, definer = roles["app"], roles["analyst"], roles["definer"]
    return [
        *(f'CREATE ROLE "{role}"' for role in roles.values()),
        "CREATE TABLE tenant (id int PRIMARY KEY)",
        "CREATE TABLE membership (team_id int NOT NULL, user_id int NOT NULL, PRIMARY KEY (team_id, user_id))",
        "CREATE INDEX ON membership (user_id)",
        "ALTER TABLE membership ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE membership FORCE ROW LEVEL SECURITY",
        f'GRANT SELECT ON membership TO "{app}", "{definer}"',
        f'CREATE POLICY own_rows ON membership FOR SELECT TO "{app}", "{definer}" USING (user_id = {USER})',
        """CREATE FUNCTION my_teams() RETURNS int[] LANGUAGE sql STABLE SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
            AS $$ SELECT coalesce(array_agg(team_id), '{}') FROM public.membership
                  WHERE user_id = NULLIF(current_setting('app.user', true), '')::int $$""",
        f'ALTER FUNCTION my_teams() OWNER TO "{definer}"',
        "REVOKE EXECUTE ON FUNCTION my_teams() FROM PUBLIC",
        f'GRANT EXECUTE ON FUNCTION my_teams() TO "{app}", "{analyst}"',
    ]


def table(n: int, roles: dict[str, str]) -> list[str]:
    """One tenant table; every few tables a different shape of policy, view or overlap."""
    app, analyst = roles["app"], roles["analyst"]
    name = f"t{n}"
    ddl = [
        f"CREATE TABLE {name} (id int PRIMARY KEY, tenant_id int NOT NULL REFERENCES tenant(id), "
        "team_id int NOT NULL, body text)",
        f"CREATE INDEX ON {name} (tenant_id)",
        f"CREATE INDEX ON {name} (team_id)",
        f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY",
        f'GRANT SELECT, INSERT, UPDATE ON {name} TO "{app}"',
    ]
    scope = (
        "team_id = ANY ((SELECT my_teams())::int[])"  # through the definer helper
        if n % 3 == 1
        else f"EXISTS (SELECT 1 FROM membership AS m WHERE m.team_id = {name}.team_id AND m.user_id = {USER})"
        if n % 3 == 2
        else f"tenant_id = {TENANT}"
    )
    for command in ("SELECT", "INSERT", "UPDATE"):
        clause = "WITH CHECK" if command == "INSERT" else "USING"
        ddl.append(f'CREATE POLICY p_{command.lower()} ON {name} FOR {command} TO "{app}" {clause} ({scope})')
    if n % 10 == 0:  # a second permissive SELECT policy for the same role: RLS008
        ddl.append(f'CREATE POLICY p_shared ON {name} FOR SELECT TO "{app}", "{analyst}" USING (team_id = 0)')
        ddl.append(f'GRANT SELECT ON {name} TO "{analyst}"')
    if n % 20 == 0:  # a view that runs as the reader
        ddl.append(f"CREATE VIEW {name}_mine WITH (security_invoker = true) AS SELECT id, body FROM {name}")
        ddl.append(f'GRANT SELECT ON {name}_mine TO "{app}"')
    if n % 100 == 50:  # a view that runs as its owner: RLS021
        ddl.append(f"CREATE VIEW {name}_all AS SELECT id, tenant_id FROM {name}")
        ddl.append(f'GRANT SELECT ON {name}_all TO "{analyst}"')
    if n % 200 == 99:  # a table whose policy reads itself through an invoker helper: RLS017
        ddl += [
            f"""CREATE FUNCTION {name}_teams() RETURNS int[] LANGUAGE sql STABLE
                SET search_path = pg_catalog, pg_temp
                AS $$ SELECT coalesce(array_agg(team_id), '{{}}') FROM public.{name} $$""",
            f'CREATE POLICY p_loop ON {name} FOR SELECT TO "{analyst}" '
            f"USING (team_id = ANY ((SELECT {name}_teams())::int[]))",
            f'GRANT SELECT ON {name} TO "{analyst}"',
        ]
    return ddl


def build(dsn: str, tables: int, prefix: str) -> None:
    roles = {key: f"{prefix}{key}" for key in ("app", "analyst", "definer")}
    batches = [shared(roles)]
    for start in range(0, tables, 100):  # one transaction per 100 tables: the server's lock table is finite
        batches.append([statement for n in range(start, min(start + 100, tables)) for statement in table(n, roles)])
    with psycopg.connect(dsn, autocommit=True) as conn:
        for ddl in batches:
            with conn.transaction():
                conn.execute(";\n".join(ddl).encode())


def measure(dsn: str, rounds: int = 3) -> dict[str, object]:
    global QUERIES
    reads, totals, clis = [], [], []
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
    for _ in range(rounds):
        started = time.perf_counter()
        outcome = CliRunner().invoke(cli, ["lint", "--dsn", dsn, "--format", "json"])
        clis.append(time.perf_counter() - started)
        if outcome.exit_code not in (0, 1):
            raise SystemExit(f"rlsctl lint failed: {outcome.stderr or outcome.output}")
    return {
        "read": statistics.median(reads),
        "total": statistics.median(totals),
        "cli": statistics.median(clis),
        "queries": queries,
        "policies": len(model.policies),
        "findings": Counter(f.rule for f in result.findings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--server", default=os.environ.get("RLSCTL_TEST_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--tables", type=int, default=1000)
    args = parser.parse_args()
    prefix = f"bench_{secrets.token_hex(3)}_"
    created = []
    try:
        print("live lint (median of 3); baseline = the same catalog read alone; CLI = rlsctl lint --dsn, in-process")
        for tables in (10, args.tables):
            name = f"rlsctl_lintbench_{secrets.token_hex(4)}"
            with psycopg.connect(args.server, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            created.append(name)
            dsn = conninfo.make_conninfo(args.server, dbname=name)
            build(dsn, tables, f"{prefix}{tables}_")
            m = measure(dsn)
            read, total, cli_time = m["read"], m["total"], m["cli"]
            found = ", ".join(f"{rule} {count}" for rule, count in sorted(m["findings"].items())) or "none"
            print(
                f"  {tables:5d} tables, {m['policies']:5d} policies: {m['queries']} queries, "
                f"catalog read {read * 1000:7.1f} ms, whole lint {total * 1000:7.1f} ms "
                f"({total / read:4.1f}x the read), CLI {cli_time * 1000:7.1f} ms; findings: {found}"
            )
    finally:
        with psycopg.connect(args.server, autocommit=True) as conn:
            for name in created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for (name,) in conn.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (prefix,)):
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
