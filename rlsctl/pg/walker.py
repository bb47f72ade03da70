"""Walking a table in batches, each its own short transaction, sized to hold its locks briefly.

Shared by the features that rewrite or delete many rows while the application
keeps working: `rlsctl keys` (rotate, encrypt, decrypt) and `rlsctl retention`.
A batch is one call of `step(cursor, size)`: it does its rows in one
transaction and says how many, and where the next batch starts (`None`: the
walk is over). Rows other transactions hold are skipped by the batches
themselves (SKIP LOCKED); what the walker handles is a batch refused for a
lock (lock_timeout, a deadlock): it backs off, halves the size and tries again.

Batch sizes adapt so that a batch takes about `target` seconds (its row
locks are held that long), changing by at most 2x from one batch to the next.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from psycopg import errors as pgerrors

from rlsctl.errors import UsageError

MIN_BATCH, MAX_BATCH, FIRST_BATCH = 50, 50_000, 500
BUSY_RETRIES = 20  # consecutive batches refused for a lock before a walk gives up
BUSY = (pgerrors.LockNotAvailable, pgerrors.DeadlockDetected)


@dataclass(frozen=True)
class Batch:
    """What one batch did: rows done, and where the next one starts (None: nothing left)."""

    rows: int
    cursor: str | None


@dataclass
class Walk:
    """What a walk did, batch by batch."""

    rows: int = 0
    batches: int = 0
    batch_seconds: list[float] = field(default_factory=list)  # how long each batch held its locks


def next_size(size: int, elapsed: float, target: float, largest: int = MAX_BATCH) -> int:
    """Aim the next batch at `target` seconds, changing by at most 2x at a time."""
    if elapsed <= 0:
        return min(largest, size * 2)
    wanted = size * target / elapsed
    return int(max(MIN_BATCH, min(largest, size * 2, max(size / 2, wanted))))


def walk(
    step: Callable[[str | None, int], Batch],
    cursor: str | None = None,
    batch_size: int | None = None,
    target: float = 0.1,
    on_batch: Callable[[Batch], None] | None = None,
    busy_message: str = "a lock stayed busy",
    largest: int = MAX_BATCH,
) -> Walk:
    """Call `step` from `cursor` until it says nothing is left. `batch_size`: a fixed size
    (else adaptive, starting at FIRST_BATCH, at most `largest`). A batch refused for a lock
    changed nothing: it is tried again, smaller, after a pause; BUSY_RETRIES refusals in a
    row end the walk with `busy_message`."""
    done = Walk()
    size = batch_size or FIRST_BATCH
    busy = 0
    while True:
        started = time.monotonic()
        try:
            batch = step(cursor, size)
        except BUSY:
            busy += 1
            if busy > BUSY_RETRIES:
                raise UsageError(f"{busy_message} ({BUSY_RETRIES} tries); nothing of the last batch changed") from None
            size = max(MIN_BATCH, size // 2)
            time.sleep(0.05 * busy)
            continue
        busy = 0
        elapsed = time.monotonic() - started
        if batch.rows or batch.cursor is not None:
            done.rows += batch.rows
            done.batches += 1
            done.batch_seconds.append(elapsed)
            if on_batch is not None:
                on_batch(batch)
        if batch.cursor is None:
            return done
        cursor = batch.cursor
        if batch_size is None:
            size = next_size(size, elapsed, target, largest)
