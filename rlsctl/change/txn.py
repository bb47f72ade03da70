"""The transaction every changing command runs in: bounded waits, one advisory lock.

`apply`, `migrate` and `rollback` each run inside `locked_transaction`: the
per-database advisory lock serialises them (two applies on one database never
interleave; applies on two databases of one cluster do not block each other),
`lock_timeout` bounds every wait, and any error rolls everything back.

While a lock request waits, every later request for the same table queues
behind it: an ALTER POLICY waiting for a long report's read stops all of the
table's traffic. So apply waits in short attempts (`LockRetry`): a lock that
is not granted within `--lock-timeout` rolls the whole transaction back, the
table's users go on, and apply tries again after a growing, jittered pause,
until `--lock-wait-total` is spent; then it exits 2 with nothing changed,
naming the sessions it waited for (docs/locking.md). A backend cannot be asked
whom it waits for once its wait is over, so after a first failed attempt a
second connection watches the later ones (`BlockerWatch`).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pgerrors

from rlsctl.errors import LockTimeout
from rlsctl.pg import locks, statements

T = TypeVar("T")
LOCK_CLASS = locks.CLASS
LOCK_ID = locks.APPLY
ATTEMPT_SECONDS = 0.2  # apply's --lock-timeout: the longest a table's traffic queues behind apply
TOTAL_SECONDS = 60.0  # apply's --lock-wait-total
FIRST_PAUSE = 0.1  # seconds between the first two attempts, doubling...
LAST_PAUSE = 2.0  # ...up to this: a lock freed by a finished report is found within about 2 s
MAX_NAMED = 3  # blocking sessions named in the message
WATCH_NAME = "rlsctl lock watch"  # application_name of the watching connection
POLL_SECONDS = 0.05  # several looks inside one 200 ms attempt
QUERY_CHARS = 100  # of a blocking session's query, in the message


class LockBusy(LockTimeout):
    """A lock request waited its whole lock_timeout; the transaction was rolled back."""


class AdvisoryLockBusy(LockBusy):
    """Another rlsctl run (apply, migrate or rollback) held the advisory lock."""


class TableLockBusy(LockBusy):
    """A statement's table lock was not granted (raised by `change.apply.execute_statements`)."""


# What ends an attempt as "busy": rlsctl's own, and the server's when a lock wait ended a
# statement outside `execute_statements` (the plan's reads) or chose apply as a deadlock's victim.
BUSY = (LockBusy, pgerrors.LockNotAvailable, pgerrors.DeadlockDetected)


@dataclass(frozen=True)
class LockWaits:
    """How apply waits for locks: each request at most `attempt` seconds, all attempts
    together about `total` (the last one may end up to one attempt later)."""

    attempt: float = ATTEMPT_SECONDS
    total: float = TOTAL_SECONDS


@contextmanager
def locked_transaction(
    conn: psycopg.Connection, lock_timeout: float, where: str, watch: BlockerWatch | None = None
) -> Iterator[None]:
    """One transaction under the advisory lock; every lock request waits at most `lock_timeout`.
    With `watch`, the watch follows this transaction's backend."""
    with conn.transaction():
        settings = statements.run(conn, "begin_settings", lock_timeout=f"{max(int(lock_timeout * 1000), 1)}ms")
        if watch is not None:
            watch.follow(settings[0]["pid"])
        try:
            try:
                statements.run(conn, "advisory_lock", lock_class=LOCK_CLASS, lock_id=LOCK_ID)
            except pgerrors.LockNotAvailable:
                raise AdvisoryLockBusy(
                    f"{where}: another rlsctl run (apply, migrate or rollback) held the lock for longer than "
                    f"--lock-timeout {lock_timeout:g}s; nothing was changed"
                ) from None
            yield
        finally:
            if watch is not None:
                watch.follow(None)


def lock_wait_message(exc: psycopg.Error, where: str, lock_timeout: float) -> str:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "lock not available"
    return f"{where}: {detail} (waited --lock-timeout {lock_timeout:g}s); nothing was changed"


class LockRetry:
    """Runs a transaction in short lock attempts until one gets every lock or `waits.total` is spent.

    Each attempt is the whole transaction (`transaction()`), planned afresh: a
    busy lock rolls it back and nothing stays queued. Giving up raises
    `LockTimeout` (exit 2) naming what the last attempts waited for.
    """

    def __init__(self, conn: psycopg.Connection, waits: LockWaits, where: str) -> None:
        self.conn = conn
        self.waits = waits
        self.where = where
        self.watch = BlockerWatch(conn)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with locked_transaction(self.conn, self.waits.attempt, self.where, self.watch):
            yield

    def run(self, attempt: Callable[[], T]) -> T:
        started = time.monotonic()
        try:
            for number in itertools.count(1):
                try:
                    return attempt()
                except BUSY as busy:
                    spent = time.monotonic() - started
                    if spent >= self.waits.total:
                        raise self._give_up(busy, number, spent) from None
                    self.watch.start()  # from now on, the attempts are watched
                    time.sleep(min(pause(number), max(self.waits.total - spent, 0.0)))
            raise AssertionError("unreachable")
        finally:
            self.watch.close()

    def _give_up(self, busy: Exception, attempts: int, spent: float) -> LockTimeout:
        if isinstance(busy, AdvisoryLockBusy):
            what = "another rlsctl run (apply, migrate or rollback) held rlsctl's lock"
        else:
            tables = {blocker.waiting_for for blocker in self.watch.blockers() if blocker.waiting_for}
            what = f"a lock on {', '.join(sorted(tables))} stayed busy" if tables else "a lock stayed busy"
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        return LockTimeout(
            f"{self.where}: {what} through {tries} in {spent:.1f}s (--lock-timeout "
            f"{self.waits.attempt:g}s each, --lock-wait-total {self.waits.total:g}s); nothing was changed; "
            f"{self._blocking()}"
        )

    def _blocking(self) -> str:
        blockers = self.watch.blockers()
        if not blockers:
            if self.watch.problem is not None:
                return f"the blocking sessions could not be looked up ({self.watch.problem})"
            if not self.watch.started:
                return "the blocking sessions were not looked up (only one attempt fitted in --lock-wait-total)"
            return "no blocking session was seen (each ended before it could be looked up)"
        now = time.monotonic()
        named = "; ".join(blocker.describe(now) for blocker in blockers[:MAX_NAMED])
        more = f"; and {len(blockers) - MAX_NAMED} more" if len(blockers) > MAX_NAMED else ""
        return f"blocked by {named}{more}"


def pause(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt`: doubling, capped, jittered.

    The jitter keeps two applies (or apply and a retrying application job)
    from colliding again at the same moment; at least half the step is kept
    so the table's users get a real gap between attempts."""
    step = min(LAST_PAUSE, FIRST_PAUSE * 2 ** min(attempt - 1, 16))
    return random.uniform(step / 2, step)


# -- whom a waiting lock request waits for -------------------------------------------------------


@dataclass(frozen=True)
class Blocker:
    """A session a lock request waited for, as pg_stat_activity showed it at `seen_at`."""

    pid: int
    xact_seconds: float | None  # how long its transaction had been open then (None: not in one)
    state: str | None  # None: another role's session, without pg_read_all_stats
    query: str
    waiting_for: str | None  # the table the request was for (None: an advisory lock)
    seen_at: float  # time.monotonic()

    @classmethod
    def from_row(cls, row: dict[str, Any], seen_at: float) -> Blocker:
        query = " ".join(str(row["query"] or "").split())  # one line, whatever the application sent
        if len(query) > QUERY_CHARS:
            query = query[: QUERY_CHARS - 3] + "..."
        return cls(row["pid"], row["xact_seconds"], row["state"], query, row["waiting_for"], seen_at)

    def describe(self, now: float) -> str:
        """`pid 123 (transaction open 4.2s, idle in transaction): SELECT ...`, ages as of `now`."""
        facts = []
        if self.xact_seconds is not None:
            facts.append(f"transaction open {self.xact_seconds + now - self.seen_at:.1f}s")
        facts.append(self.state or "state not visible")
        return f"pid {self.pid} ({', '.join(facts)}): {self.query or '?'}"


class BlockerWatch:
    """Whom a backend's lock requests wait for, asked from a second connection.

    A backend cannot ask about itself while it waits, and once its lock_timeout
    fires there is nothing left to ask: so, once started, a thread polls
    `blocking_sessions` for the followed backend and keeps the last sessions it
    saw. Started only after a lock attempt failed: an apply that gets its locks
    at once never opens the second connection.
    """

    def __init__(self, conn: psycopg.Connection) -> None:
        self._source = conn
        self._pid: int | None = None
        self._seen: tuple[Blocker, ...] = ()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.problem: str | None = None  # why nobody could be looked up

    @property
    def started(self) -> bool:
        return self._thread is not None or self.problem is not None

    def start(self) -> None:
        if self.started:
            return
        try:
            watcher = _second_connection(self._source)
        except psycopg.Error as exc:
            self.problem = _first_line(exc)
            return
        self._thread = threading.Thread(target=self._poll, args=(watcher,), name=WATCH_NAME, daemon=True)
        self._thread.start()

    def follow(self, pid: int | None) -> None:
        """Watch this backend (its transaction has begun), or nobody (it has ended)."""
        with self._guard:
            self._pid = pid

    def blockers(self) -> tuple[Blocker, ...]:
        with self._guard:
            return self._seen

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _poll(self, watcher: psycopg.Connection) -> None:
        with watcher:
            while not self._stop.wait(POLL_SECONDS):
                with self._guard:
                    pid = self._pid
                if pid is None:
                    continue
                try:
                    rows = statements.run(watcher, "blocking_sessions", pid=pid, query_chars=QUERY_CHARS * 2)
                except psycopg.Error as exc:
                    self.problem = _first_line(exc)
                    return
                if rows:  # between attempts nobody blocks: keep the last who did
                    seen = tuple(Blocker.from_row(row, time.monotonic()) for row in rows)
                    with self._guard:
                        self._seen = seen


def _second_connection(conn: psycopg.Connection) -> psycopg.Connection:
    """Another session to the same server and database, as the same login."""
    watcher = psycopg.connect(
        conn.info.dsn, password=conn.info.password or None, autocommit=True, application_name=WATCH_NAME,
        connect_timeout=5,
    )  # fmt: skip
    statements.run(watcher, "session_settings")
    return watcher


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
