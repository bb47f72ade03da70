"""`rlsctl retention run`: delete the expired rows of each table in batches, and record the run.

Every batch is a call of the table's batch function (SECURITY DEFINER, owned
by the table's retention role, so that role's policies decide what may go)
in a transaction of its own, walked by rlsctl/pg/walker.py: about `target`
seconds of row locks per batch, rows others hold skipped, a batch refused for
a lock tried again smaller. A run fixes its cutoff once (the first batch's),
so it removes exactly the rows older than that instant and outside any hold.

The first batch chooses how the batches walk the table: along the retention
column's index (rows stored about in the order they were written), or by block
ranges (many expired rows scattered over the table, where the index walk would
read a random page per row); `walk` says which.

Rows another transaction held are skipped, and taken by a later pass; what
is still left after the passes is reported (`remaining`), never waited for.
A dry run counts what would go and deletes nothing. Each table's run is
recorded in the helper schema's retention_run, dry runs and held tables too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rlsctl.declare.state import RetentionTable
from rlsctl.pg.walker import Batch, walk
from rlsctl.retention.session import Retention

# Called after each batch: (table, rows the batch removed).
Observer = Callable[[str, int], None]

# The batch function's cursor when it walks block ranges (the first batch chooses the walk).
BLOCK_CURSOR = "blocks:"
PASSES = 3  # rows another transaction held are skipped, and retried by a later pass
# A batch deletes a range of the retention column's index with one statement, at well under a
# microsecond a row: the keys' largest batch (50,000) would hold its locks only ~30 ms.
LARGEST_BATCH = 400_000


@dataclass
class TableRun:
    """What one run did to one table."""

    table: str
    column: str
    days: int
    cutoff: str | None = None  # rows older than this (UTC, the column's type) were expired
    expired: int = 0  # expired rows outside any hold at the cutoff: removed + remaining (a dry run: what would go)
    removed: int = 0
    remaining: int = 0  # expired rows still there after the last pass (held by other transactions)
    batches: int = 0
    walk: str = "index"  # how the batches went: "index" (the column's index) or "blocks" (block ranges)
    seconds: float = 0.0
    held: str | None = None  # why rows stay: a hold, or legal_hold in the policy file
    skipped: str | None = None  # why the table was not walked at all
    batch_seconds: list[float] = field(default_factory=list)


@dataclass
class RetentionRun:
    """What one `rlsctl retention run` did, table by table."""

    dry_run: bool
    tables: list[TableRun] = field(default_factory=list)

    @property
    def removed(self) -> int:
        return sum(table.removed for table in self.tables)

    @property
    def batch_seconds(self) -> list[float]:
        return [seconds for table in self.tables for seconds in table.batch_seconds]

    @property
    def p95_batch_seconds(self) -> float:
        ordered = sorted(self.batch_seconds)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else 0.0


def run(
    retention: Retention,
    selected: tuple[str, ...] = (),
    dry_run: bool = False,
    observer: Observer | None = None,
    batch_size: int | None = None,
    lock_timeout: float = 2.0,
    target: float = 0.1,
) -> RetentionRun:
    """Delete (or, `dry_run`, count) the expired rows of the `selected` tables (default: all)."""
    done = RetentionRun(dry_run)
    for table in retention.tables(selected):
        started = time.monotonic()
        outcome = TableRun(table.table, table.column, table.days)
        done.tables.append(outcome)
        _table(retention, table, outcome, dry_run, observer, batch_size, lock_timeout, target)
        outcome.seconds = time.monotonic() - started
        _record(retention, outcome, dry_run)
    return done


def _table(
    retention: Retention,
    table: RetentionTable,
    outcome: TableRun,
    dry_run: bool,
    observer: Observer | None,
    batch_size: int | None,
    lock_timeout: float,
    target: float,
) -> None:
    if not table.primary_key:
        outcome.skipped = "no primary key: batches lock and delete rows by it"
        return
    wait = f"{int(lock_timeout * 1000)}ms"
    if dry_run:
        outcome.expired, outcome.cutoff, outcome.held = _count(retention, table, None, wait)
        return
    batches = _Batches(retention, table, outcome, wait, observer)
    busy = f"{retention.where}: {table.table}: a lock stayed busy"
    for _ in range(PASSES):
        batches.skipped = 0
        walked = walk(batches.step, None, batch_size, target, batches.progress, busy, LARGEST_BATCH)
        outcome.removed += walked.rows
        outcome.batches += walked.batches
        outcome.batch_seconds += walked.batch_seconds
        outcome.remaining = batches.skipped
        if outcome.remaining == 0 or walked.rows == 0:
            break
    outcome.expired = outcome.removed + outcome.remaining


@dataclass
class _Batches:
    """The batches of one table's run, for the walker: each a call of the batch function."""

    retention: Retention
    table: RetentionTable
    outcome: TableRun
    wait: str
    observer: Observer | None
    skipped: int = 0  # rows other transactions held, in the current pass

    def step(self, after: str | None, size: int) -> Batch:
        # The first batch fixes the run's cutoff (the window's, then); every later one gets it.
        row = _call(self.retention, self.table, self.outcome.cutoff, after, size, False, self.wait)
        self.outcome.cutoff, self.outcome.held = row[2], row[3]
        self.skipped += int(row[4])
        if row[1] is not None and row[1].startswith(BLOCK_CURSOR):
            self.outcome.walk = "blocks"
        return Batch(int(row[0]), row[1])

    def progress(self, batch: Batch) -> None:
        if self.observer is not None:
            self.observer(self.table.table, batch.rows)


def _count(retention: Retention, table: RetentionTable, cutoff: str | None, wait: str) -> tuple[int, str, str | None]:
    """(rows that would go, the cutoff, why rows stay)."""
    row = _call(retention, table, cutoff, None, 0, True, wait)
    return int(row[0]), row[2], row[3]


def _call(
    retention: Retention,
    table: RetentionTable,
    cutoff: str | None,
    after: str | None,
    size: int,
    dry_run: bool,
    wait: str,
) -> tuple[int, str | None, str, str | None, int]:
    """(removed or counted, last_seen, cutoff_used, held, skipped): the batch function's result."""
    params = {"cutoff": cutoff, "after": after, "size": size, "dry_run": dry_run, "lock_wait": wait}
    rows = retention.fetch("retention_batch", params, function=table.function)
    return rows[0]  # type: ignore[return-value]


def _record(retention: Retention, outcome: TableRun, dry_run: bool) -> None:
    params = {
        "table": outcome.table,
        "cutoff": outcome.cutoff,
        "removed": outcome.expired if dry_run else outcome.removed,
        "seconds": outcome.seconds,
        "dry_run": dry_run,
        "held": outcome.held or outcome.skipped,
    }
    retention.fetch("retention_record", params)
