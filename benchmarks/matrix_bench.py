"""Benchmark `rlsctl test` on the bundled PromptCraft matrix: batched probes vs one round trip per cell.

    python benchmarks/matrix_bench.py [--server DSN] [--rounds N]

Both ways run in the same process on the same freshly applied database, the
rounds interleaved so a busy moment of the machine hits both alike:

- **per cell** (the runner before issue 12): every cell's statement in its own
  savepoint, sent on its own round trips (become the principal, run, roll back),
  and every cell sent, even a write of a row its principal cannot read;
- **batched** (today): `rlsctl.tester.run.run_matrix` as `rlsctl test` calls it,
  probes sent a few hundred per round trip to a function that runs each in its
  own subtransaction, reads first and unseen writes answered from them.

Prints the median wall time of each, cells per second and the ratio. Target:
at least 5,000 cells a second batched; exits 1 when missed. PromptCraft
encrypts columns: without rlsctl.master_key in PGOPTIONS a random key-encryption
key is set for this run.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rlsctl.change import apply as applying  # noqa: E402
from rlsctl.migrate import run as migrating  # noqa: E402
from rlsctl.pg import statements  # noqa: E402
from rlsctl.pg.db import Target  # noqa: E402
from rlsctl.pg.templates import render_template  # noqa: E402
from rlsctl.policy.project import Project, load_project  # noqa: E402
from rlsctl.tester import probes as probing  # noqa: E402
from rlsctl.tester import run as running  # noqa: E402
from rlsctl.tester.probes import Probe, Result  # noqa: E402

TARGET_CELLS_PER_SECOND = 5000


def per_cell(project: Project) -> object:
    """`probes.run` as the runner did it before batching: a savepoint and round trips per cell."""

    def run(conn: psycopg.Connection, probes: list[Probe]) -> Iterator[tuple[Probe, Result]]:
        for probe in probes:
            yield probe, _one(conn, project, probe)

    return run


def _one(conn: psycopg.Connection, project: Project, probe: Probe) -> Result:
    principal = probe.principal
    try:
        with conn.transaction(force_rollback=True):
            if probe.command != "stored":
                _become(conn, project, probing.principal_json(principal))
            cursor = conn.execute(probe.sql.encode())
            if probe.command == "select":
                return Result(visible=frozenset(str(row[0]) for row in cursor.fetchall()))
            if probe.command == "stored":
                return Result(row=cursor.fetchone()[0])  # type: ignore[index]
            return Result(rows=cursor.rowcount)
    except psycopg.Error as exc:
        state = exc.sqlstate or "XX000"
        return Result(error=state, message=str(exc).splitlines()[0] if str(exc) else state)


def _become(conn: psycopg.Connection, project: Project, who: dict[str, str]) -> None:
    """The principal, in its order (as templates/ops/tester_batch.sql.j2 does it)."""
    setting = project.settings.identity.setting
    if who.get("first") == "user":
        conn.execute("SELECT pg_catalog.set_config(%s, %s, true)", (setting, who["user"]))
    if "role" in who:
        statements.run(conn, "set_role", role=who["role"])
    if "api_key" in who:
        key_sql = render_template(
            "ops/tester_api_key.sql.j2", project.root / "templates", helper_schema=project.settings.helper_schema
        )
        conn.execute(key_sql.encode(), {"raw_key": who["api_key"]})
    if who.get("first") != "user" and "user" in who:
        conn.execute("SELECT pg_catalog.set_config(%s, %s, true)", (setting, who["user"]))


@contextmanager
def replaced(module: object, name: str, value: object) -> Iterator[None]:
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


def timed_matrix(conn: psycopg.Connection, project: Project, where: str) -> tuple[float, int]:
    started = time.perf_counter()
    result = running.run_matrix(conn, project, where)
    elapsed = time.perf_counter() - started
    assert not result.failed, result.failures[:3] or result.violations[:3]
    return elapsed, len(result.cells)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("RLSCTL_BENCH_DSN", "host=127.0.0.1 user=postgres"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if "rlsctl.master_key" not in os.environ.get("PGOPTIONS", ""):
        os.environ["PGOPTIONS"] = f"{os.environ.get('PGOPTIONS', '')} -c rlsctl.master_key={secrets.token_hex(24)}"
    name, prefix = f"rlsctl_bench_{secrets.token_hex(4)}", f"bench{secrets.token_hex(3)}_"
    admin = conninfo.make_conninfo(args.server, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = conninfo.make_conninfo(args.server, dbname=name)
    try:
        project = load_project(ROOT, role_prefix=prefix)
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrating.migrate(conn, project, Target(dsn, name))
            applying.apply(conn, project, name)
            timed_matrix(conn, project, name)  # warm the catalog caches and the plans
            times: dict[str, list[float]] = {"per cell": [], "batched": []}
            cells = 0
            for _ in range(args.rounds):
                with replaced(probing, "run", per_cell(project)), replaced(running, "_unseen", lambda *_: False):
                    elapsed, cells = timed_matrix(conn, project, name)
                times["per cell"].append(elapsed)
                elapsed, cells = timed_matrix(conn, project, name)
                times["batched"].append(elapsed)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (prefix,)):
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    medians = {way: statistics.median(values) for way, values in times.items()}
    print(f"PromptCraft matrix, {cells} cells, median of {args.rounds} rounds")
    for way, seconds in medians.items():
        print(f"  {way:<9} {seconds:7.2f} s  {cells / seconds:8.0f} cells/s")
    rate = cells / medians["batched"]
    verdict = "met" if rate >= TARGET_CELLS_PER_SECOND else "MISSED"
    ratio = medians["per cell"] / medians["batched"]
    print(f"  batched is {ratio:.1f}x the per-cell way; target {TARGET_CELLS_PER_SECOND} cells/s: {verdict}")
    return 0 if rate >= TARGET_CELLS_PER_SECOND else 1


if __name__ == "__main__":
    sys.exit(main())
