"""One project's encryption on one connection: the session every `rlsctl keys` command works in.

`Keys` knows the declared encrypted columns, renders the key statements
(templates/ops/keys_*.sql.j2), runs transactions as the keys role with bounded
lock waits, makes new data keys and holds the one-run-at-a-time lock. The
commands live beside it: `batches` (rotate, encrypt, decrypt), `registry`
(retire, forget), `api_keys` (create an API key).

No key material is ever sent: the data keys are made, wrapped and unwrapped
in the server; rlsctl sends key ids, never keys (docs/encryption.md).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg.rows import dict_row

from rlsctl.catalog import kek, queries
from rlsctl.catalog.inspect import untrusted_code_params
from rlsctl.change.apply import live_schema, require_master_key
from rlsctl.change.record import record_operation, state_digest
from rlsctl.declare.compile import declare
from rlsctl.declare.state import DeclaredState, EncryptedColumn, EncryptionSpec
from rlsctl.declare.validate import validate
from rlsctl.errors import UsageError
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
    kek_mode: str = ""  # where the key-encryption key lives
    kek_exposure: tuple[str, ...] = ()  # why logins that need not read it can (warnings)
    rewrapping: int = 0  # data keys wrapped under the next key-encryption key (keys rewrap under way)


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
        return [self.column(c) for c in chosen]

    def column(self, declared: EncryptedColumn) -> Column:
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
        self,
        lock_timeout: float,
        conn: psycopg.Connection | None = None,
        values_of: str | None = None,
        tables: tuple[str, ...] = (),
        writes: bool = False,
    ) -> Iterator[psycopg.Connection]:
        """One transaction as the keys role; key and lock errors become one clear message.

        `values_of`: the column a batch rewrites. The key-encryption key was checked before
        the run, so a decryption error there is a value's fault, and the message says so.

        `tables`: the project's tables the transaction reads (or, `writes`, rewrites). They are
        locked first, against DDL that would add code running in this session (a trigger, a
        policy, a rule, a constraint...), and checked for such code while the lock is held;
        any found refuses the transaction (`refuse_untrusted_code`)."""
        if self.state.keys is None:
            raise UsageError(f"{self.where}: the project declares no role of kind keys, so no keys command can run")
        conn = conn or self.conn
        try:
            with conn.transaction():
                statements.run(conn, "secure_path")
                if tables:
                    statements.run(conn, "lock_timeout", timeout=f"{int(lock_timeout * 1000)}ms")
                    conn.execute(self.sql("keys_lock_tables", tables=tables, writes=writes))
                    self.refuse_untrusted_code(tables, conn)
                statements.run(conn, "set_role", role=self.state.keys)
                statements.run(conn, "lock_timeout", timeout=f"{int(lock_timeout * 1000)}ms")
                statements.run(conn, "batch_planner")
                yield conn
        except pgerrors.InsufficientPrivilege as exc:
            raise UsageError(
                f"{self.where}: {first_line(exc)} (rlsctl keys runs as {self.state.keys}: "
                "connect as a superuser or a member of that role)"
            ) from None
        except (pgerrors.ExternalRoutineInvocationException, pgerrors.ExternalRoutineException) as exc:
            if values_of is not None:
                raise UsageError(
                    f"{self.where}: {values_of}: a value did not decrypt with the key it names ({first_line(exc)}): "
                    "corrupt, or not written by rlsctl; this batch was rolled back and nothing of it changed"
                ) from None
            source = (
                f"the key file {self.encryption.master_key_file}"
                if self.encryption.master_key_file is not None
                else self.encryption.master_key_setting
            )
            raise UsageError(
                f"{self.where}: the key-encryption key does not unwrap the data keys: "
                f"is {source} the one they were made with? ({first_line(exc)})"
            ) from None
        except pgerrors.InvalidParameterValue as exc:
            raise UsageError(f"{self.where}: {first_line(exc)}") from None

    def check_master_key(self) -> None:
        """The key-encryption key is set and unwraps every usable data key, and the tables the
        keys role works on run no code it does not trust; else nothing is done."""
        require_master_key(self.conn, self.encryption, self.where, as_role=self.state.keys)
        self.refuse_untrusted_code(self.encrypted_tables)
        with self.as_keys_role(10.0) as conn:
            conn.execute(self.sql("keys_verify"))

    @property
    def encrypted_tables(self) -> tuple[str, ...]:
        return tuple(sorted({column.table for column in self.encryption.columns}))

    def refuse_untrusted_code(self, tables: tuple[str, ...], conn: psycopg.Connection | None = None) -> None:
        """Refuse to work on tables that would run code rlsctl does not trust in this session.

        The tables' owner (the migrations' role) can always add a trigger, rule, policy, index
        expression or constraint that calls a function of its own; in a keys session that
        function would run with the key-encryption key set, and as the keys role if it is
        SECURITY INVOKER. So the run stops before anything of it happens (docs/encryption.md)."""
        params = untrusted_code_params(self.state.scope, tables)
        conn = conn or self.conn
        with conn.transaction():
            statements.run(conn, "secure_path")
            found = queries.fetch(conn, "untrusted_code", **params)
        if not found:
            return
        listed = "; ".join(f"{row['table_name']}: {row['what']} {row['name']} {row['detail']}" for row in found)
        raise UsageError(
            f"{self.where}: rlsctl keys will not run here, where the key-encryption key is a session setting: "
            f"{listed}. A DBA must remove it (rlsctl drift lists it); nothing was changed"
        )

    # -- status ---------------------------------------------------------------------------------

    def status(self) -> KeysStatus:
        columns = [*self.columns(), *self.columns(decrypting=True)]
        tables = tuple(sorted({column.table for column in columns}))
        with self.as_keys_role(10.0, tables=tables) as conn, conn.cursor(row_factory=dict_row) as cur:
            keys = cur.execute(self.sql("keys_list")).fetchall()
            usage = cur.execute(self.sql("keys_usage", columns=columns)).fetchall() if columns else []
        return KeysStatus(
            tuple(KeyInfo(k["id"], k["active"], k["retired"], k["created_at"], k["retired_at"]) for k in keys),
            tuple((f"{u['table_name']}.{u['column_name']}", u["key_id"], u["n"]) for u in usage),
            self.encryption.kek_mode,
            kek_exposure(self.conn, self.encryption),
            self.rewrapping(),
        )

    def rewrapping(self) -> int:
        """Data keys wrapped under the next key-encryption key: a `keys rewrap` not finished yet."""
        context = {"crypto_schema": self.encryption.crypto_schema, "unwrap": False}
        with self.as_keys_role(10.0) as conn, conn.cursor(row_factory=dict_row) as cur:
            state = cur.execute(self.sql("keys_rewrap_state", **context)).fetchone()
        return int(state["rewrapped"]) if state else 0

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
        if self.rewrapping():
            raise UsageError(
                f"{self.where}: a key-encryption key rotation is under way: finish it first "
                "(rlsctl keys rewrap --finish), then rotate the data keys; nothing was changed"
            )
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

    @contextmanager
    def exclusive(self, action: str = "run") -> Iterator[None]:
        """One `rlsctl keys` run per database at a time (a session lock, released on exit); a run
        that finished is recorded in the audit log as system:keys `action` (docs/audit.md)."""
        lock = {"lock_class": locks.CLASS, "lock_id": locks.KEYS_RUN}
        if not statements.run(self.conn, "keys_run_lock", **lock)[0]["locked"]:
            raise UsageError(f"{self.where}: another rlsctl keys run is working on this database; try again later")
        try:
            yield
            # With the state it ran under, as apply's record: the keys a run touched belong to it.
            details = {"run": action, "state": state_digest(self.state, self.templates)}
            record_operation(self.conn, self.state, "keys", action, details, self.templates)
        finally:
            statements.run(self.conn, "keys_run_unlock", **lock)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def kek_exposure(conn: psycopg.Connection, encryption: EncryptionSpec) -> tuple[str, ...]:
    """Why logins that do not need the key-encryption key can read it (rlsctl.catalog.kek). In file
    mode the setting should be gone, and the file outside the data directory."""
    with conn.transaction():
        statements.run(conn, "secure_path")
        found = kek.setting_exposure(conn, encryption.master_key_setting)
        if encryption.master_key_file is not None:
            found += kek.file_exposure(conn, encryption.master_key_file)
    return tuple(found)
