"""`rlsctl keys`: rotate data keys, backfill and decrypt columns, create API keys.

Every rewrite runs in batches (templates/ops/keys_batch.sql.j2): each batch is
its own transaction, run as the keys role (SET LOCAL ROLE), waiting at most
`lock_timeout` for its rows, and verified by decrypting before it commits. A
run can stop at any point and simply be started again: it picks up every value
not yet under the active key (or, decrypting, every ciphertext left).

Batch sizes adapt so that a batch holds its row locks about `target` seconds
(100 ms by default): the locks a batch takes are on its own rows only, never
on the table (the app keeps reading and writing them meanwhile).

No key material is ever sent: the data keys are made, wrapped and unwrapped
in the server; rlsctl sends key ids, never keys (docs/encryption.md).
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg.rows import dict_row

from rlsctl.change.apply import live_schema, require_master_key_setting
from rlsctl.declare.compile import declare
from rlsctl.declare.state import DeclaredState, EncryptedColumn
from rlsctl.declare.validate import validate
from rlsctl.errors import RetireBlocked, UsageError
from rlsctl.pg import locks, statements
from rlsctl.pg.templates import render_template
from rlsctl.policy.project import Project

# Called after each batch: (column label, values rewritten, values pending at the start).
Observer = Callable[[str, int, int], None]

MIN_BATCH, MAX_BATCH, FIRST_BATCH = 50, 50_000, 500
PASSES = 3  # rows another transaction held are skipped, and retried by a later pass
BUSY_RETRIES = 20  # consecutive batches refused by the key lock before a run gives up


@dataclass(frozen=True)
class Column:
    table: str
    column: str
    key: str
    key_type: str
    kind: str  # text or jsonb
    decrypting: bool

    @property
    def label(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass
class ColumnRun:
    column: str
    pending_before: int
    rewritten: int = 0
    batches: int = 0
    remaining: int = 0


@dataclass
class KeysRun:
    """What one `keys rotate|encrypt|decrypt` did."""

    action: str
    active_key: str | None
    new_key: str | None = None
    columns: list[ColumnRun] = field(default_factory=list)
    batch_seconds: list[float] = field(default_factory=list)  # how long each batch held its locks
    retired: tuple[str, ...] = ()
    resumed: bool = False  # rotate finished an interrupted rotation instead of making a new key
    retire_blocked: str | None = None  # why rotate kept the older keys (a forgotten encrypted column)

    @property
    def p95_batch_seconds(self) -> float:
        if not self.batch_seconds:
            return 0.0
        ordered = sorted(self.batch_seconds)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


@dataclass(frozen=True)
class KeyInfo:
    id: str
    active: bool
    retired: bool
    created_at: dt.datetime
    retired_at: dt.datetime | None


@dataclass(frozen=True)
class KeysStatus:
    keys: tuple[KeyInfo, ...]
    usage: tuple[tuple[str, str | None, int], ...]  # (table.column, key id or None for plaintext, values)


class Keys:
    """One project's encryption on one connection (autocommit: every batch commits on its own)."""

    def __init__(
        self,
        conn: psycopg.Connection,
        project: Project,
        where: str,
        connect: Callable[[], psycopg.Connection] | None = None,
        jobs: int = 1,
    ) -> None:
        self.conn = conn
        self.connect = connect  # opens another connection to the same database (parallel batches)
        self.jobs = jobs
        self.project = project
        self.where = where
        schema = live_schema(conn, project, None)
        validate(project, project.migrated_schema().union(schema))
        self.state: DeclaredState = declare(project, schema)
        self.schema = schema
        self.templates: Path = project.root / "templates"

    # -- the declared columns -------------------------------------------------------------

    @property
    def encryption(self) -> Any:
        if self.state.encryption is None or self.state.keys is None:
            raise UsageError(
                f"{self.where}: the project declares no encrypted column that exists here "
                "(tables: <T>: encrypted: [column], and a role of kind keys)"
            )
        return self.state.encryption

    def columns(self, selected: tuple[str, ...] = (), decrypting: bool = False) -> list[Column]:
        declared = [c for c in self.encryption.columns if c.decrypting == decrypting]
        by_label = {f"{c.table}.{c.column}": c for c in declared}
        for label in selected:
            if label not in by_label:
                kind = "decrypting" if decrypting else "encrypted"
                known = ", ".join(sorted(by_label)) or "none"
                raise UsageError(f"{label} is not declared {kind} in the policy files (declared {kind}: {known})")
        chosen = [by_label[label] for label in selected] if selected else declared
        return [self._column(c) for c in chosen]

    def every_column(self) -> list[Column]:
        """Every column that may hold ciphertext, declared encrypted or decrypting.

        The key store records every column ever encrypted. One that is no longer
        declared (dropped from `encrypted:` without the `decrypting:` step, or
        renamed by a migration) may still hold ciphertext that only rlsctl's keys
        open: then nothing may be retired, and this says which column and what to do.
        """
        declared = [*self.columns(), *self.columns(decrypting=True)]
        labels = {column.label for column in declared}
        for table, name in self.recorded():
            label = f"{table}.{name}"
            if label in labels:
                continue
            if self.schema.has_column(table, name):
                fix = "declare it `decrypting:`, run rlsctl apply and rlsctl keys decrypt, then retire"
            else:
                fix = (
                    f"if it was renamed, declare the new name encrypted (or decrypting) and apply, after moving "
                    f"its record with `rlsctl keys forget {label} --renamed-to {table}.NEW_NAME`; if its data "
                    f"is gone, `rlsctl keys forget {label}`"
                )
            raise RetireBlocked(
                f"{self.where}: {label} was encrypted (recorded in {self.state.helper_schema}.encrypted_column) "
                f"but is no longer declared, so its values may still need the older keys: {fix}; "
                "no key was retired"
            )
        return declared

    def forget_decrypted(self, columns: list[Column]) -> None:
        """Columns `keys decrypt` finished hold no ciphertext any more: their record goes, in one
        statement that checks it again (a value encrypted meanwhile keeps the record)."""
        if not columns or not self.recorded():
            return
        with self.as_keys_role(10.0) as conn:
            for column in columns:
                conn.execute(
                    self.sql("keys_forget_decrypted", table=column.table, column=column.column, kind=column.kind)
                )

    def forget_vanished(self, label: str) -> bool:
        """The record of a column that no longer exists (its data is gone with it). Refuses a column
        that exists: only `keys decrypt` may clear one of those, by proving it holds no ciphertext."""
        table, _, name = label.partition(".")
        if (table, name) not in self.recorded():
            raise UsageError(f"{self.where}: {label} is not recorded as encrypted: nothing to forget")
        if self.schema.has_column(table, name):
            raise UsageError(
                f"{self.where}: {label} still exists and may hold ciphertext: declare it `decrypting:`, run "
                "rlsctl apply and rlsctl keys decrypt (which forgets it once no value is encrypted)"
            )
        with self.as_keys_role(10.0) as conn:
            conn.execute(self.sql("keys_forget"), {"table": table, "column": name})
        return True

    def move_record(self, label: str, renamed_to: str) -> None:
        """A recorded column renamed outside rlsctl: its record follows it, so declaring the new
        name encrypted is not a first encryption (whose look-alike check would refuse the real
        ciphertext)."""
        table, _, name = label.partition(".")
        new_table, _, new_name = renamed_to.partition(".")
        if (table, name) not in self.recorded():
            raise UsageError(f"{self.where}: {label} is not recorded as encrypted: nothing to move")
        if self.schema.has_column(table, name):
            raise UsageError(f"{self.where}: {label} still exists: it was not renamed")
        if not self.schema.has_column(new_table, new_name):
            raise UsageError(f"{self.where}: {renamed_to} does not exist: name the column it was renamed to")
        with self.as_keys_role(10.0) as conn:
            moved = {"table": table, "column": name, "new_table": new_table, "new_column": new_name}
            conn.execute(self.sql("keys_move_record"), moved)

    def recorded(self) -> list[tuple[str, str]]:
        if not statements.run(self.conn, "key_registry_exists", schema=self.state.helper_schema)[0]["found"]:
            return []
        with self.as_keys_role(10.0) as conn:
            return [(row[0], row[1]) for row in conn.execute(self.sql("keys_recorded")).fetchall()]

    def _column(self, declared: EncryptedColumn) -> Column:
        table = self.schema.table(declared.table)
        if len(table.primary_key) != 1:
            raise UsageError(f"{declared.table}: rlsctl keys needs a one-column primary key to walk the rows")
        key = table.primary_key[0]
        return Column(declared.table, declared.column, key, table.column(key).type, declared.kind, declared.decrypting)

    # -- statements ---------------------------------------------------------------------------

    def sql(self, name: str, **context: Any) -> bytes:
        return render_template(
            f"ops/{name}.sql.j2",
            self.templates,
            schema=self.state.schema,
            helper_schema=self.state.helper_schema,
            **context,
        ).encode()

    @contextmanager
    def as_keys_role(
        self, lock_timeout: float, conn: psycopg.Connection | None = None, values_of: str | None = None
    ) -> Iterator[psycopg.Connection]:
        """One transaction as the keys role; key and lock errors become one clear message.

        `values_of`: the column a batch rewrites. The key-encryption key was checked before
        the run, so a decryption error there is a value's fault, and the message says so."""
        if self.state.keys is None:
            raise UsageError(f"{self.where}: the project declares no role of kind keys, so no keys command can run")
        conn = conn or self.conn
        try:
            with conn.transaction():
                statements.run(conn, "set_role", role=self.state.keys)
                statements.run(conn, "lock_timeout", timeout=f"{int(lock_timeout * 1000)}ms")
                statements.run(conn, "batch_planner")
                yield conn
        except pgerrors.InsufficientPrivilege as exc:
            raise UsageError(
                f"{self.where}: {_first(exc)} (rlsctl keys runs as {self.state.keys}: "
                "connect as a superuser or a member of that role)"
            ) from None
        except (pgerrors.ExternalRoutineInvocationException, pgerrors.ExternalRoutineException) as exc:
            if values_of is not None:
                raise UsageError(
                    f"{self.where}: {values_of}: a value did not decrypt with the key it names ({_first(exc)}): "
                    "corrupt, or not written by rlsctl; this batch was rolled back and nothing of it changed"
                ) from None
            raise UsageError(
                f"{self.where}: the key-encryption key does not unwrap the data keys: "
                f"is {self.encryption.master_key_setting} the one they were made with? ({_first(exc)})"
            ) from None
        except pgerrors.InvalidParameterValue as exc:
            raise UsageError(f"{self.where}: {_first(exc)}") from None

    def check_master_key(self) -> None:
        """The key-encryption key is set and unwraps every usable data key; else nothing is done."""
        require_master_key_setting(self.conn, self.encryption.master_key_setting, self.where)
        with self.as_keys_role(10.0) as conn:
            conn.execute(self.sql("keys_verify"))

    # -- status ---------------------------------------------------------------------------------

    def status(self) -> KeysStatus:
        columns = [*self.columns(), *self.columns(decrypting=True)]
        with self.as_keys_role(10.0) as conn, conn.cursor(row_factory=dict_row) as cur:
            keys = cur.execute(self.sql("keys_list")).fetchall()
            usage = cur.execute(self.sql("keys_usage", columns=columns)).fetchall() if columns else []
        return KeysStatus(
            tuple(KeyInfo(k["id"], k["active"], k["retired"], k["created_at"], k["retired_at"]) for k in keys),
            tuple((f"{u['table_name']}.{u['column_name']}", u["key_id"], u["n"]) for u in usage),
        )

    # -- rewriting ------------------------------------------------------------------------------

    def rewrite(
        self,
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
            done = ColumnRun(column.label, self.pending(column, mode))
            run.columns.append(done)
            walk = _Walk(self, column, mode, batch_size, target, lock_timeout, done, run, observer)
            for _ in range(PASSES):
                ranges = self.ranges(column) if self.jobs > 1 and self.connect is not None else [(None, None)]
                walk.all(ranges)
                done.remaining = self.pending(column, mode)
                if done.remaining == 0:
                    break

    def pending(self, column: Column, mode: str) -> int:
        with self.as_keys_role(10.0) as conn:
            sql = self.sql("keys_pending", table=column.table, column=column.column, kind=column.kind, mode=mode)
            return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]

    def ranges(self, column: Column) -> list[tuple[str | None, str | None]]:
        """`jobs` contiguous (after, until] ranges of the primary key, about equal in rows."""
        sql = self.sql("keys_bounds", table=column.table, key=column.key, parts=self.jobs)
        with self.as_keys_role(10.0) as conn:
            row = conn.execute(sql).fetchone()
        bounds: list[str] = list(dict.fromkeys(row[0] or [])) if row else []  # in key order already
        edges: list[str | None] = [None, *bounds, None]
        return list(itertools.pairwise(edges))

    def batch_sql(self, column: Column, mode: str) -> bytes:
        return self.sql(
            "keys_batch",
            table=column.table,
            column=column.column,
            key=column.key,
            key_type=column.key_type,
            kind=column.kind,
            crypto_schema=self.encryption.crypto_schema,
            mode=mode,
        )

    # -- key lifecycle ---------------------------------------------------------------------------

    def active_key(self) -> str | None:
        with self.as_keys_role(10.0) as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(self.sql("keys_list")).fetchall()
        return next((row["id"] for row in rows if row["active"]), None)

    def new_key(self, wait: float = 30.0, attempt: float = 1.0) -> str:
        """Make a new data key active (the old one stays usable until retired).

        The rotation takes the key lock exclusively (keys_new.sql.j2), so it
        waits for the transactions encrypting with the current key, and after
        it commits nothing can write with the old key any more. While it
        waits, new writers queue behind it (fair locking): so it waits at most
        `attempt` seconds at a time, steps back to let them through, and tries
        again until `wait` seconds have passed.
        """
        sql = render_template(
            "ops/keys_new.sql.j2",
            self.templates,
            schema=self.state.helper_schema,
            crypto_schema=self.encryption.crypto_schema,
            rotate=True,
        ).encode()
        deadline = time.monotonic() + wait
        while True:
            try:
                with self.as_keys_role(min(attempt, wait)) as conn:
                    conn.execute(sql)
                break
            except pgerrors.LockNotAvailable:
                if time.monotonic() + attempt > deadline:
                    raise UsageError(
                        f"{self.where}: transactions writing encrypted columns kept the active key busy for "
                        f"{wait:.0f} s; nothing was changed, run rotate again"
                    ) from None
                time.sleep(min(0.2, attempt))
        found = self.active_key()
        assert found is not None
        return found

    def retire_unused(self) -> tuple[str, ...]:
        """Erase the wrapped bytes of older keys no value uses.

        The candidates are the keys already inactive *before* the count starts.
        A key becomes inactive only when a rotation commits, and the rotation
        first waits for every transaction writing with it (the key lock,
        crypto.sql.j2); afterwards nothing writes with it (ciphertext written as
        a value is refused, REPEATABLE READ writers fail to serialize). So the
        count, which starts later, sees every value under a candidate, and a
        rotation that commits during the count cannot make its key a candidate
        by mistake. Every column that ever held ciphertext is counted, the
        declared ones and the ones recorded in the key store's registry.
        """
        columns = self.every_column()
        with self.as_keys_role(10.0) as conn, conn.cursor(row_factory=dict_row) as cur:
            candidates = [row["id"] for row in cur.execute(self.sql("keys_list")).fetchall()
                          if not row["active"] and not row["retired"]]  # fmt: skip
        if not candidates:
            return ()
        with self.as_keys_role(10.0) as conn, conn.cursor(row_factory=dict_row) as cur:
            usage = cur.execute(self.sql("keys_usage", columns=columns)).fetchall() if columns else []
            in_use = sorted({row["key_id"] for row in usage if row["key_id"] is not None})
            retired = cur.execute(self.sql("keys_retire"), {"candidates": candidates, "in_use": in_use}).fetchall()
        return tuple(row["id"] for row in retired)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """One `rlsctl keys` run per database at a time (a session lock, released on exit)."""
        lock = {"lock_class": locks.CLASS, "lock_id": locks.KEYS_RUN}
        if not statements.run(self.conn, "keys_run_lock", **lock)[0]["locked"]:
            raise UsageError(f"{self.where}: another rlsctl keys run is working on this database; try again later")
        try:
            yield
        finally:
            statements.run(self.conn, "keys_run_unlock", **lock)


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
        self.sql = self.keys.batch_sql(self.column, self.mode)

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
                with self.keys.as_keys_role(self.lock_timeout, conn, values_of=self.column.label) as tx:
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
                size = _next_size(size, elapsed, self.target)


class VerificationFailed(UsageError):
    """A batch's values did not decrypt back to their plaintext: the batch was rolled back."""


def _next_size(size: int, elapsed: float, target: float) -> int:
    """Aim the next batch at `target` seconds, changing by at most 2x at a time."""
    if elapsed <= 0:
        return min(MAX_BATCH, size * 2)
    wanted = size * target / elapsed
    return int(max(MIN_BATCH, min(MAX_BATCH, size * 2, max(size / 2, wanted))))


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# -- the commands -----------------------------------------------------------------------------------


def rotate(keys: Keys, observer: Observer | None = None, batch_size: int | None = None) -> KeysRun:
    """A new data key, every value re-encrypted under it, then the old keys retired.

    Resumable: when values are still under an older key (an interrupted
    rotation), the run finishes that rotation with the active key instead of
    making another, and says so. Plaintext waiting for a backfill does not
    count: it is encrypted along the way, under the new key.
    """
    keys.check_master_key()
    columns = keys.columns()
    with keys.exclusive():
        interrupted = any(keys.pending(column, "older") for column in columns)
        run = KeysRun("rotate", keys.active_key(), resumed=interrupted)
        if not interrupted:
            run.new_key = keys.new_key()
            run.active_key = run.new_key
        keys.rewrite(columns, "encrypt", run, observer, batch_size)
        if not any(column.remaining for column in run.columns):
            try:
                run.retired = keys.retire_unused()
            except RetireBlocked as exc:  # the rotation stands; the older keys stay, and the run says why
                run.retire_blocked = str(exc)
    return run


def encrypt(keys: Keys, selected: tuple[str, ...] = (), observer: Observer | None = None,
            batch_size: int | None = None) -> KeysRun:  # fmt: skip
    """Backfill: every value of the declared encrypted columns not under the active key gets encrypted."""
    keys.check_master_key()
    run = KeysRun("encrypt", keys.active_key())
    with keys.exclusive():
        keys.rewrite(keys.columns(selected), "encrypt", run, observer, batch_size)
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
    with keys.exclusive():
        keys.rewrite(columns, "decrypt", run, observer, batch_size)
        keys.forget_decrypted([c for c, done in zip(columns, run.columns, strict=True) if done.remaining == 0])
    return run


def retire(keys: Keys) -> KeysRun:
    keys.check_master_key()
    run = KeysRun("retire", keys.active_key())
    with keys.exclusive():
        run.retired = keys.retire_unused()
    return run


def forget(keys: Keys, label: str, renamed_to: str | None = None) -> None:
    """Drop the record of an encrypted column that no longer exists, or move it to the name
    the column was renamed to (docs/encryption.md)."""
    with keys.exclusive():
        if renamed_to is None:
            keys.forget_vanished(label)
        else:
            keys.move_record(label, renamed_to)


def create_api_key(
    conn: psycopg.Connection,
    project: Project,
    where: str,
    tenant: str,
    name: str,
    scopes: tuple[str, ...],
    expires: dt.datetime | None,
    as_user: str | None,
) -> str:
    """A new API key through rlsctl.create_api_key; the raw key is returned once and stored only hashed.

    With `as_user`, the key is created as the app role with that identity, so
    the policies decide (only an admin of the team may); without it, as the
    connecting role.
    """
    schema = live_schema(conn, project, None)
    state = declare(project, schema)
    if state.api_keys is None or state.keys is None:
        raise UsageError(f"{where}: the project declares no api_keys table that exists here")
    sql = render_template(
        "ops/keys_create_api_key.sql.j2",
        project.root / "templates",
        schema=state.schema,
        helper_schema=state.helper_schema,
    ).encode()
    try:
        with conn.transaction():
            if as_user is not None:
                statements.run(conn, "impersonate", role=state.app, setting=state.identity_setting, user_id=as_user)
            row = conn.execute(sql, {"tenant": tenant, "name": name, "scopes": list(scopes), "expires": expires})
            raw = row.fetchone()
    except psycopg.errors.InsufficientPrivilege as exc:
        raise UsageError(f"{where}: not allowed to create a key for {tenant}: {_first(exc)}") from None
    except (psycopg.errors.ForeignKeyViolation, psycopg.errors.InvalidTextRepresentation) as exc:
        raise UsageError(f"{where}: no such team {tenant!r}: {_first(exc)}") from None
    assert raw is not None
    return str(raw[0])
