"""apply on a busy table: short lock attempts, retried, never a long stall (docs/locking.md).

While ALTER POLICY waits for its ACCESS EXCLUSIVE lock, every later query on
the table queues behind it: one slow report then stops all of the table's
traffic for as long as apply waits. Here 8 readers query "Prompt" in short
transactions and record their longest query, while a long reader holds
ACCESS SHARE on it. apply runs as its own process, as it would in a deploy
(in the test's process its planning would hold the readers' GIL, and show up
as their latency).

The bound on the readers' stall is a measured one, on purpose: it is the
point of the change. It is generous (ten times the 0.2 s attempt), for a
loaded 2-core machine; the contrast test shows what one long wait does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from rlsctl.change.txn import LAST_PAUSE, pause
from tests.conftest import ROOT, TestDatabase, migrate_and_apply
from tests.helpers import security_snapshot

READERS = 8
ATTEMPT = "0.2"  # apply's --lock-timeout in these tests (its default)
STALL_BOUND = 2.0  # seconds: ten attempts' worth
HOLD_AFTER_QUEUED = 2.0  # the long read goes on this long after apply (or ALTER POLICY) first queued
SLOW_REPORT = 'SELECT count(*) AS slow_report FROM public."Prompt"'
QUEUED_EXCLUSIVE = """
    SELECT count(*) FROM pg_locks
    WHERE relation = 'public."Prompt"'::regclass AND mode = 'AccessExclusiveLock' AND NOT granted
"""


@pytest.fixture(scope="module")
def busy_db(make_module_db) -> TestDatabase:
    database = make_module_db()
    migrate_and_apply(database)
    return database


class Readers:
    """Short transactions reading "Prompt" in a loop, each on its own connection; `worst` is
    the longest single query any of them saw."""

    def __init__(self, database: TestDatabase, count: int = READERS) -> None:
        self.database = database
        self.worst = 0.0
        self.queries = 0
        self._stop = threading.Event()
        self._guard = threading.Lock()
        self._ready = threading.Barrier(count + 1)
        self._threads = [threading.Thread(target=self._read, daemon=True) for _ in range(count)]

    def __enter__(self) -> Readers:
        for thread in self._threads:
            thread.start()
        self._ready.wait(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        deadline = time.monotonic() + 30
        for thread in self._threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0.1))

    def _read(self) -> None:
        with self.database.connect() as conn:
            self._ready.wait(timeout=30)
            while not self._stop.is_set():
                started = time.monotonic()
                with conn.transaction():
                    conn.execute('SELECT id FROM public."Prompt" LIMIT 1').fetchall()
                took = time.monotonic() - started
                with self._guard:
                    self.worst = max(self.worst, took)
                    self.queries += 1
                time.sleep(0.02)


@contextmanager
def long_read(database: TestDatabase) -> Iterator[psycopg.Connection]:
    """A report holding ACCESS SHARE on "Prompt" until it commits (or the block ends)."""
    with database.connect(autocommit=False) as conn:
        conn.execute(SLOW_REPORT).fetchall()
        yield conn
        conn.rollback()


def wait_until_exclusive_queued(
    database: TestDatabase, process: subprocess.Popen[str] | None = None, timeout: float = 60.0
) -> None:
    """Until someone's ACCESS EXCLUSIVE request on "Prompt" waits (apply's first attempt)."""
    deadline = time.monotonic() + timeout
    with database.connect() as conn:
        while conn.execute(QUEUED_EXCLUSIVE).fetchone()[0] == 0:
            assert process is None or process.poll() is None, process.communicate()  # apply ended early
            assert time.monotonic() < deadline, "nobody queued for ACCESS EXCLUSIVE on Prompt"
            time.sleep(0.02)


def edited_project(tmp_path: Path, role: str) -> Path:
    """A copy of the bundled project whose Prompt delete policy lets `role` (not ADMIN) delete."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "policies", project / "policies")
    shutil.copytree(ROOT / "migrations", project / "migrations")
    path = project / "policies" / "prompts.yaml"
    text = path.read_text()
    start = text.index("        delete:\n")  # Prompt's, the first table of the file
    at = text.index("tenant_role: ADMIN", start)
    path.write_text(text[:at] + f"tenant_role: {role}" + text[at + len("tenant_role: ADMIN") :])
    return project


def apply_process(database: TestDatabase, project: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rlsctl.cli.main", "apply", "--dsn", database.dsn, "--project", str(project),
         "--role-prefix", database.prefix, "--lock-timeout", ATTEMPT, *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def prompt_delete_policy(database: TestDatabase) -> str:
    with database.connect() as conn:
        row = conn.execute(
            "SELECT qual FROM pg_policies WHERE tablename = 'Prompt' AND cmd = 'DELETE'"
        ).fetchone()
    assert row is not None
    return row[0]


def test_apply_on_a_busy_table_waits_in_short_attempts(busy_db, tmp_path):
    """The long read outlasts several attempts; apply commits after it ends, and no reader
    waited more than a fraction of what the long read lasted."""
    project = edited_project(tmp_path, "OWNER")
    assert "OWNER" not in prompt_delete_policy(busy_db)
    with Readers(busy_db) as readers:
        with long_read(busy_db):
            apply = apply_process(busy_db, project, "--lock-wait-total", "60")
            wait_until_exclusive_queued(busy_db, apply)
            time.sleep(HOLD_AFTER_QUEUED)
            assert apply.poll() is None, apply.communicate()  # still trying while the report runs
        _, err = apply.communicate(timeout=60)
    assert apply.returncode == 0, err
    assert "OWNER" in prompt_delete_policy(busy_db)
    assert readers.queries > READERS * 10  # the readers kept going while apply retried
    assert readers.worst < STALL_BOUND, f"a reader waited {readers.worst:.2f}s behind apply"


def test_apply_gives_up_naming_the_blocking_session(busy_db, tmp_path):
    """The long read outlasts --lock-wait-total: exit 2, nothing changed, the report named."""
    project = edited_project(tmp_path, "MEMBER")
    before = security_snapshot(busy_db)
    with Readers(busy_db) as readers, long_read(busy_db) as report:
        apply = apply_process(busy_db, project, "--lock-wait-total", "1.5")
        _, err = apply.communicate(timeout=60)
        pid = report.info.backend_pid
    assert apply.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert 'a lock on public."Prompt" stayed busy' in err and "nothing was changed" in err
    assert "--lock-timeout 0.2s each, --lock-wait-total 1.5s" in err
    assert f"blocked by pid {pid} (transaction open " in err
    assert "idle in transaction): SELECT count(*) AS slow_report FROM public." in err
    assert security_snapshot(busy_db) == before
    assert readers.worst < STALL_BOUND, f"a reader waited {readers.worst:.2f}s behind apply"


def test_one_long_lock_wait_stalls_every_reader(busy_db):
    """The problem, for contrast: an ALTER POLICY allowed to wait (as apply's single 10 s wait
    did) stops every reader until the long read ends."""
    with busy_db.connect() as conn:
        name = conn.execute("SELECT policyname FROM pg_policies WHERE tablename = 'Prompt' LIMIT 1").fetchone()[0]
    alter = busy_db.connect(autocommit=False)
    try:
        with Readers(busy_db) as readers:
            with long_read(busy_db):
                alter.execute("SET LOCAL lock_timeout = '30s'")
                waiting = threading.Thread(
                    target=alter.execute, args=(f'ALTER POLICY "{name}" ON public."Prompt" TO PUBLIC',), daemon=True
                )
                waiting.start()
                wait_until_exclusive_queued(busy_db)
                time.sleep(HOLD_AFTER_QUEUED)
            waiting.join(timeout=30)  # the long read ended: the ALTER got its lock...
            alter.rollback()  # ...and gives it back, changing nothing
    finally:
        alter.close()
    assert readers.worst > HOLD_AFTER_QUEUED * 0.75, f"the longest reader wait was {readers.worst:.2f}s"


def test_pauses_grow_to_a_cap_with_jitter():
    steps = [pause(number) for number in range(1, 40)]
    assert 0.05 <= steps[0] <= 0.1
    assert all(LAST_PAUSE / 2 <= step <= LAST_PAUSE for step in steps[10:])
    assert len({round(step, 6) for step in steps[10:]}) > 1  # jittered, not in step
