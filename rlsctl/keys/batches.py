"""Rewriting encrypted columns in batches: backfill, key rotation, decryption for a rollback.

Every rewrite runs in batches (templates/ops/keys_batch.sql.j2): each batch is
its own transaction, run as the keys role (SET LOCAL ROLE), waiting at most
`lock_timeout` for its rows, and verified by decrypting before it commits. A
run can stop at any point and simply be started again: it picks up every value
not yet under the active key (or, decrypting, every ciphertext left).

Batch sizes adapt so that a batch holds its row locks about `target` seconds
(100 ms by default; rlsctl/pg/walker.py, shared with retention): the locks a
batch takes are on its own rows only, never on the table (the app keeps
reading and writing them meanwhile).
"""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg
from psycopg import errors as pgerrors

from rlsctl.errors import RetireBlocked, UsageError
from rlsctl.keys.registry import forget_decrypted, retire_unused
from rlsctl.keys.session import Column, ColumnRun, Keys, KeysRun, Observer
from rlsctl.pg.walker import BUSY_RETRIES, FIRST_BATCH, MIN_BATCH, next_size

PASSES = 3  # rows another transaction held are skipped, and retried by a later pass


def rewrite(
    keys: Keys,
    columns: list[Column],
    mode: str,
    run: KeysRun,
    observer: Observer | None = None,
    batch_size: int | None = None,
    target: float = 0.1,
    lock_timeout: float = 2.0,
) -> None:
    """Rewrite every value of `columns` not yet in the wanted form, batch by batch, then recount.

    With `jobs` > 1 (and a way to open connections), the column's key range
    is split in that many contiguous parts, each walked by its own
    connection: batches stay as short, the run takes less wall time.
    """
    for column in columns:
        done = ColumnRun(column.label, pending(keys, column, mode))
        run.columns.append(done)
        walk = _Walk(keys, column, mode, batch_size, target, lock_timeout, done, run, observer)
        for _ in range(PASSES):
            parts = ranges(keys, column) if keys.jobs > 1 and keys.connect is not None else [(None, None)]
            walk.all(parts)
            done.remaining = pending(keys, column, mode)
            if done.remaining == 0:
                break


def pending(keys: Keys, column: Column, mode: str) -> int:
    with keys.as_keys_role(10.0, tables=(column.table,)) as conn:
        sql = keys.sql("keys_pending", table=column.table, column=column.column, kind=column.kind, mode=mode)
        return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]


def ranges(keys: Keys, column: Column) -> list[tuple[str | None, str | None]]:
    """`jobs` contiguous (after, until] ranges of the primary key, about equal in rows."""
    sql = keys.sql("keys_bounds", table=column.table, key=column.key, parts=keys.jobs)
    with keys.as_keys_role(10.0, tables=(column.table,)) as conn:
        row = conn.execute(sql).fetchone()
    bounds: list[str] = list(dict.fromkeys(row[0] or [])) if row else []  # in key order already
    edges: list[str | None] = [None, *bounds, None]
    return list(itertools.pairwise(edges))


def batch_sql(keys: Keys, column: Column, mode: str) -> bytes:
    return keys.sql(
        "keys_batch",
        table=column.table,
        column=column.column,
        key=column.key,
        key_type=column.key_type,
        kind=column.kind,
        crypto_schema=keys.encryption.crypto_schema,
        mode=mode,
    )


@dataclass
class _Walk:
    """Batches over key ranges of one column, one connection per range, adapting the batch size."""

    keys: Keys
    column: Column
    mode: str
    batch_size: int | None
    target: float
    lock_timeout: float
    done: ColumnRun
    run: KeysRun
    observer: Observer | None
    size: int = FIRST_BATCH
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.size = self.batch_size or FIRST_BATCH
        self.sql = batch_sql(self.keys, self.column, self.mode)

    def all(self, ranges: list[tuple[str | None, str | None]]) -> None:
        if len(ranges) == 1:
            self.range(self.keys.conn, *ranges[0])
            return
        assert self.keys.connect is not None
        with ThreadPoolExecutor(max_workers=len(ranges)) as pool:
            futures = [pool.submit(self._own_connection, after, until) for after, until in ranges]
            for future in futures:
                future.result()  # the first failure (e.g. a verification) is raised here

    def _own_connection(self, after: str | None, until: str | None) -> None:
        assert self.keys.connect is not None
        with self.keys.connect() as conn:
            self.range(conn, after, until)

    def range(self, conn: psycopg.Connection, after: str | None, until: str | None) -> None:
        size = self.size
        busy = 0
        while True:
            started = time.monotonic()
            try:
                # The table is locked against DDL and checked again for untrusted code before
                # every batch: what was clean when the run started may not be any more.
                with self.keys.as_keys_role(
                    self.lock_timeout, conn, values_of=self.column.label, tables=(self.column.table,), writes=True
                ) as tx:
                    row = tx.execute(self.sql, {"after": after, "until": until, "limit": size}).fetchone()
                    assert row is not None
                    rows, last, mismatched = int(row[0]), row[1], int(row[2])
                    if mismatched:
                        # Raising inside the transaction rolls the whole batch back.
                        raise VerificationFailed(
                            f"{self.keys.where}: {self.column.label}: {mismatched} of {rows} values did not decrypt "
                            "back to their plaintext; this batch was rolled back and nothing of it changed"
                        )
            except (pgerrors.LockNotAvailable, pgerrors.DeadlockDetected):
                # Rows others hold are skipped (SKIP LOCKED); this is the key lock
                # behind a rotation, or a deadlock with another run: back off, retry.
                busy += 1
                if busy > BUSY_RETRIES:
                    raise UsageError(
                        f"{self.keys.where}: {self.column.label}: the key lock stayed busy "
                        f"({BUSY_RETRIES} tries); nothing of the last batch changed, run the command again"
                    ) from None
                size = max(MIN_BATCH, size // 2)
                time.sleep(0.05 * busy)
                continue
            busy = 0
            elapsed = time.monotonic() - started
            if last is None:
                return
            with self.lock:
                self.run.batch_seconds.append(elapsed)
                self.done.batches += 1
                self.done.rewritten += rows
            after = last
            if self.observer is not None:
                self.observer(self.column.label, rows, self.done.pending_before)
            if self.batch_size is None:
                size = next_size(size, elapsed, self.target)


class VerificationFailed(UsageError):
    """A batch's values did not decrypt back to their plaintext: the batch was rolled back."""


# -- the commands --------------------------------------------------------------------------------


def rotate(keys: Keys, observer: Observer | None = None, batch_size: int | None = None) -> KeysRun:
    """A new data key, every value re-encrypted under it, then the old keys retired.

    Resumable: when values are still under an older key (an interrupted
    rotation), the run finishes that rotation with the active key instead of
    making another, and says so. Plaintext waiting for a backfill does not
    count: it is encrypted along the way, under the new key.
    """
    keys.check_master_key()
    columns = keys.columns()
    with keys.exclusive("rotate"):
        interrupted = any(pending(keys, column, "older") for column in columns)
        run = KeysRun("rotate", keys.active_key(), resumed=interrupted)
        if not interrupted:
            run.new_key = keys.new_key()
            run.active_key = run.new_key
        rewrite(keys, columns, "encrypt", run, observer, batch_size)
        if not any(column.remaining for column in run.columns):
            try:
                run.retired = retire_unused(keys)
            except RetireBlocked as exc:  # the rotation stands; the older keys stay, and the run says why
                run.retire_blocked = str(exc)
    return run


def encrypt(keys: Keys, selected: tuple[str, ...] = (), observer: Observer | None = None,
            batch_size: int | None = None) -> KeysRun:  # fmt: skip
    """Backfill: every value of the declared encrypted columns not under the active key gets encrypted."""
    keys.check_master_key()
    run = KeysRun("encrypt", keys.active_key())
    with keys.exclusive("encrypt"):
        rewrite(keys, keys.columns(selected), "encrypt", run, observer, batch_size)
    return run


def decrypt(keys: Keys, selected: tuple[str, ...] = (), observer: Observer | None = None,
            batch_size: int | None = None) -> KeysRun:  # fmt: skip
    """For a rollback: the columns declared `decrypting` get their plaintext back."""
    keys.check_master_key()
    columns = keys.columns(selected, decrypting=True)
    if not columns:
        raise UsageError(
            f"{keys.where}: no column is declared decrypting: move it from encrypted to decrypting "
            "in the policy files and run rlsctl apply first (so new writes stay plaintext)"
        )
    run = KeysRun("decrypt", keys.active_key())
    with keys.exclusive("decrypt"):
        rewrite(keys, columns, "decrypt", run, observer, batch_size)
        forget_decrypted(keys, [c for c, done in zip(columns, run.columns, strict=True) if done.remaining == 0])
    return run
