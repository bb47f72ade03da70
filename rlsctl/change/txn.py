"""The transaction every changing command runs in: bounded waits, one advisory lock.

`apply`, `migrate` and `rollback` each run inside `locked_transaction`: the
per-database advisory lock serialises them (two applies on one database never
interleave; applies on two databases of one cluster do not block each other),
`lock_timeout` bounds every wait, and any error rolls everything back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pgerrors

from rlsctl.errors import LockTimeout
from rlsctl.pg import locks, statements

LOCK_CLASS = locks.CLASS
LOCK_ID = locks.APPLY


@contextmanager
def locked_transaction(conn: psycopg.Connection, lock_timeout: float, where: str) -> Iterator[None]:
    with conn.transaction():
        statements.run(conn, "begin_settings", lock_timeout=f"{max(int(lock_timeout * 1000), 1)}ms")
        try:
            statements.run(conn, "advisory_lock", lock_class=LOCK_CLASS, lock_id=LOCK_ID)
        except pgerrors.LockNotAvailable:
            raise LockTimeout(
                f"{where}: another rlsctl run (apply, migrate or rollback) held the lock for longer than "
                f"--lock-timeout {lock_timeout:g}s; nothing was changed"
            ) from None
        yield


def lock_wait_message(exc: pgerrors.LockNotAvailable, where: str, lock_timeout: float) -> str:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "lock not available"
    return f"{where}: {detail} (waited --lock-timeout {lock_timeout:g}s); nothing was changed"
