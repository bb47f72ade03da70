"""Benchmark the audit log's hash chain: insert rate at 8 concurrent sessions, chained and not.

    python benchmarks/audit_chain_bench.py [--server DSN] [--sessions 8] [--seconds 3] [--rounds 6]

PromptCraft at its last phase, applied (docs/audit.md). Each session is a login in the
application's role with a user identity, inserting its own "AuditLog" rows one per
transaction (a commit each, as an audit write usually is), for a fixed time; the rate is
rows per second over all sessions. Measured in the same run on the same database:

- unchained: the chain trigger disabled (the append-only guard and its UTC stamp still run);
- chained: rlsctl's chain with the bundled project's 16 lanes, while a sealer puts the committed
  rows into the log's one order every half second (`rlsctl.audit_seal()`, docs/audit.md): its
  work competes with the inserts for the same cores, so the ratio includes it.

Each round runs unchained, chained, chained, unchained (so that a load that grows or fades
during the round weighs on both alike) and its ratio is chained over unchained; the report
gives the median rates and the median ratio of the rounds. Then, for comparison only, one
round with the chain forced into a single lane: one global order, where every transaction
waits for the previous one's commit.

Target (issue 16): the chained rate is at least 0.8x the unchained one. The chain is
verified at the end (rlsctl audit verify's walk), so the rate is that of a correct chain.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["PGOPTIONS"] = f"{os.environ.get('PGOPTIONS', '')} -c rlsctl.master_key=bench-{secrets.token_hex(16)}"

from benchmarks.apply_bench import Server, migrated  # noqa: E402
from rlsctl.audit import seal, verify  # noqa: E402
from rlsctl.change import apply as applying  # noqa: E402
from rlsctl.declare.audit import CHAIN_TRIGGER  # noqa: E402
from rlsctl.policy.project import Project, load_project  # noqa: E402

TARGET = 0.8
INSERT = """INSERT INTO "AuditLog"(id, "userId", "teamId", action, "resourceType", "resourceId", metadata)
            VALUES (%s, 'u1', 't1', 'prompt.update', 'Prompt', 'p1', '{"fields": ["title"]}')"""


def seed(dsn: str, app: str, sessions: int) -> list[str]:
    """Team t1 with user u1 in it, and one login per session in the application's role."""
    logins = [f"{app}_bench_{n}" for n in range(sessions)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u1', 'u1@x', now())""")
        conn.execute("""INSERT INTO "Team"(id, name, "ownerId", "updatedAt") VALUES ('t1', 'T', 'u1', now())""")
        conn.execute("""INSERT INTO "TeamMember"(id, "teamId", "userId", role) VALUES ('m1', 't1', 'u1', 'OWNER')""")
        for login in logins:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(login), sql.Identifier(app)))
    return logins


def rate(dsn: str, logins: list[str], seconds: float, label: str) -> float:
    """Rows per second over all sessions, each inserting one row per transaction."""
    counts = [0] * len(logins)
    start = threading.Barrier(len(logins) + 1)
    stop = threading.Event()

    def work(number: int) -> None:
        with psycopg.connect(dsn + f" user={logins[number]}", autocommit=True) as conn:
            conn.execute("SELECT set_config('app.user_id', 'u1', false)")
            conn.prepare_threshold = 0
            start.wait()
            while not stop.is_set():
                conn.execute(INSERT, (f"{label}-{number}-{counts[number]}",))
                counts[number] += 1

    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(logins))]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def chain_trigger(dsn: str, enabled: bool) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL('ALTER TABLE "AuditLog" {} TRIGGER {}').format(
                sql.SQL("ENABLE" if enabled else "DISABLE"), sql.Identifier(CHAIN_TRIGGER)
            )
        )


class Sealer(threading.Thread):
    """Seals the committed rows into the one order every `every` seconds until stopped."""

    def __init__(self, dsn: str, project: Project, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.dsn, self.project, self.every = dsn, project, every
        self.stop = threading.Event()
        self.rows = 0
        self.seconds = 0.0

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.wait(self.every):
                started = time.perf_counter()
                self.rows += seal(conn, self.project)
                self.seconds += time.perf_counter() - started


def one_lane_project(parent: Path, prefix: str) -> Project:
    root = parent / "one_lane"
    shutil.copytree(ROOT / "policies", root / "policies")
    shutil.copytree(ROOT / "migrations", root / "migrations")
    policy = root / "policies" / "project.yaml"
    policy.write_text(policy.read_text().replace("lanes: 16", "lanes: 1"))
    return load_project(root, role_prefix=prefix)


def apply(dsn: str, project: Project) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        applying.apply(conn, project, "bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--server", default=os.environ.get("RLSCTL_TEST_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    server = Server(args.server)
    try:
        prefix = server.prefix()
        project = load_project(ROOT, role_prefix=prefix)
        dsn = migrated(server, project)
        apply(dsn, project)
        logins = seed(dsn, project.role_name("app"), args.sessions)
        sealer = Sealer(dsn, project)
        sealer.start()
        rounds = [one_round(dsn, logins, args.seconds, f"r{number}") for number in range(args.rounds)]
        sealer.stop.set()
        sealer.join()
        with tempfile.TemporaryDirectory() as parent:
            apply(dsn, one_lane_project(Path(parent), prefix))
            single = rate(dsn, logins, args.seconds, "single")
            apply(dsn, project)
        ratio = report(rounds, single, args.sessions)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")  # the unchained rounds' rows go
            conn.execute("""DELETE FROM "AuditLog" WHERE "chainSeq" IS NULL""")
            conn.execute("RESET session_replication_role")
            seal(conn, project)
            verdict, _ = verify(conn, project)
        print(
            f"sealer meanwhile: {sealer.rows} rows into the one order in {sealer.seconds:.1f} s of sealing "
            f"({sealer.rows / max(sealer.seconds, 1e-9):,.0f} rows/s while sealing)"
        )
        print(
            f"chain verified: {verdict.rows} rows in {len(verdict.heads)} lanes, {verdict.sealed} in one order "
            f"(position {verdict.order.pos if verdict.order else 0}), ok={verdict.ok}"
        )
        if not verdict.ok or ratio < TARGET:
            sys.exit(1)
    finally:
        server.cleanup()


def one_round(dsn: str, logins: list[str], seconds: float, label: str) -> tuple[float, float]:
    """(unchained, chained) rates of one round, each the mean of two runs in ABBA order."""
    chain_trigger(dsn, enabled=False)
    first = rate(dsn, logins, seconds, f"{label}a")
    chain_trigger(dsn, enabled=True)
    chained = rate(dsn, logins, seconds, f"{label}b") + rate(dsn, logins, seconds, f"{label}c")
    chain_trigger(dsn, enabled=False)
    unchained = first + rate(dsn, logins, seconds, f"{label}d")
    chain_trigger(dsn, enabled=True)
    return unchained / 2, chained / 2


def report(rounds: list[tuple[float, float]], single: float, sessions: int) -> float:
    unchained = statistics.median(u for u, _ in rounds)
    chained = statistics.median(c for _, c in rounds)
    ratio = statistics.median(c / u for u, c in rounds)
    print(f"insert rate at {sessions} concurrent sessions, one row per transaction ({len(rounds)} rounds, medians):")
    print(f"  unchained  {unchained:10.0f} rows/s")
    print(f"  chained    {chained:10.0f} rows/s   (16 lanes)")
    print(f"  one lane   {single:10.0f} rows/s   (one round, for comparison: a single global order)")
    print("  per round: " + ", ".join(f"{c / u:.2f}" for u, c in rounds))
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(f"chained / unchained = {ratio:.2f} ({verdict} the {TARGET}x target)")
    return ratio


if __name__ == "__main__":
    main()
