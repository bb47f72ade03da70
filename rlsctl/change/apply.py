"""`rlsctl apply`: bring the security layer of a live database to the declared state.

Everything happens in one transaction under the advisory lock: read the
catalog (after the lock, so a waiting apply plans afresh), compare it with
the declared state, run exactly the statements of the difference, commit.
A second apply finds nothing to do and runs nothing. Any error rolls back
and names the statement; the database is left as it was.

Roles are cluster-wide, and the advisory lock is per database: an apply on
another database of the cluster may create or change the same roles at the
same moment. PostgreSQL then fails one of the two transactions ("tuple
concurrently updated", or a duplicate in pg_authid / pg_auth_members); that
apply starts over and plans afresh, up to a few times.

Locks are taken in short attempts (`txn.LockRetry`): a lock not granted within
`lock_timeout` rolls the whole transaction back and apply tries again later,
so the table's other users never queue behind apply for longer than that.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import psycopg
from psycopg import errors as pgerrors

from rlsctl.catalog import queries as catalog
from rlsctl.change.plan import Plan, plan_for_database
from rlsctl.change.record import record_operation, state_digest
from rlsctl.change.txn import (
    ATTEMPT_SECONDS,
    TOTAL_SECONDS,
    LockRetry,
    LockWaits,
    TableLockBusy,
    lock_wait_message,
)
from rlsctl.declare.compile import declare
from rlsctl.declare.state import DeclaredState, EncryptionSpec
from rlsctl.declare.validate import validate
from rlsctl.errors import MissingExtension, UsageError
from rlsctl.pg import statements
from rlsctl.pg.sql import ident
from rlsctl.pg.templates import render_template
from rlsctl.policy.project import Project
from rlsctl.schema.phases import phase_adding_column, phase_creating
from rlsctl.schema.tables import Schema
from rlsctl.state.objects import KEY_REGISTRY_TABLE, EncryptedColumnRecord, KeyTable

T = TypeVar("T")
ATTEMPTS = 5
SHARED_CATALOGS = ("pg_authid", "pg_auth_members", "pg_shdescription")
# A statement that waited its lock_timeout, or that a deadlock with the application ended.
LOCK_ERRORS = (pgerrors.LockNotAvailable, pgerrors.DeadlockDetected)


class ConcurrentCatalogChange(UsageError):
    """Another transaction changed the same shared catalog row (a role) at the same time."""


@dataclass(frozen=True)
class ApplyReport:
    where: str
    plan: Plan
    dry_run: bool

    @property
    def managed(self) -> tuple[str, ...]:
        return tuple(table.name for table in self.plan.state.tables)

    @property
    def changed(self) -> bool:
        return not self.plan.empty


def live_schema(conn: psycopg.Connection, project: Project, phase: int | None) -> Schema:
    """The live tables; with `phase`, only what the migrations up to that phase create."""
    if phase is not None:
        project.require_phase(phase)  # before the catalog: --phase 99 would otherwise be "no changes"
    live = catalog.read_schema(conn, project.schema_name)
    if phase is None:
        return live
    upto = project.migrated_schema(phase)
    tables = []
    for table in live.tables:
        if not upto.has_table(table.name):
            continue
        wanted = upto.table(table.name)
        columns = tuple(column for column in table.columns if wanted.has_column(column.name))
        tables.append(replace(table, columns=columns))
    return replace(live, tables=tuple(tables))


def make_plan(conn: psycopg.Connection, project: Project, where: str, phase: int | None = None) -> Plan:
    schema = live_schema(conn, project, phase)
    validate(project, project.migrated_schema().union(schema))
    _refuse_bypassing_app(conn, project, where)
    found = _check_extensions(conn, project, where)
    state = declare(project, schema)
    # Installed where rlsctl's functions call them (the helper schema, or the platform's safe one):
    # one elsewhere comes back with this plan, and the next apply checks the key.
    installed = all(found.get(name) == state.schema_of_extension(name) for name in state.extensions)
    _check_master_key(conn, state, where, project.root / "templates", installed)
    plan = plan_for_database(conn, state, project.root / "templates")
    pending = tuple((name, phase_creating(project.phases, name, project.schema_name)) for name in state.pending)
    pending_columns = tuple(
        (table, column, phase_adding_column(project.phases, table, column, project.schema_name))
        for table, column in state.pending_columns
    )
    acknowledged = tuple(
        (_role_names(project, item.object), item.reason) for item in project.settings.acknowledged
    )
    return replace(plan, pending=pending, pending_columns=pending_columns, acknowledged=acknowledged)


def _refuse_bypassing_app(conn: psycopg.Connection, project: Project, where: str) -> None:
    """The app role's policies are the product: a platform's (external) app role that is
    SUPERUSER or BYPASSRLS skips every one of them. rlsctl does not manage an external role's
    attributes, so it cannot repair this, and will not pretend the database is secured."""
    for key, decl in sorted(project.roles.items()):
        if decl.kind != "app" or not decl.external:
            continue
        name = project.role_name(key)
        rows = statements.run(conn, "role_attributes", name=name)
        flags = [flag for flag in ("superuser", "bypassrls") if rows and rows[0][flag]]
        if flags:
            raise UsageError(
                f"{where}: role {name} (role {key!r}, kind app, external) is {' and '.join(f.upper() for f in flags)}: "
                "every policy is skipped for it; a DBA must take that away (ALTER ROLE ... NOBYPASSRLS) "
                "before rlsctl can secure anything; nothing was changed"
            )


def _role_names(project: Project, text: str) -> str:
    """`{key}` -> the declared role's name, with its prefix (acknowledgements name roles by key)."""
    for key in project.roles:
        text = text.replace("{" + key + "}", project.role_name(key))
    return text


def _check_extensions(conn: psycopg.Connection, project: Project, where: str) -> dict[str, str | None]:
    """Every extension the project needs is available on the server (else exit 2); returns
    the schema each is installed in here (None: available, not installed)."""
    wanted = list(project.settings.extensions)
    if not wanted:
        return {}
    found = catalog.extensions(conn, wanted)
    missing = [name for name in wanted if name not in found]
    if missing:
        raise MissingExtension(
            f"{where}: extension {missing[0]!r} is not installed on the server "
            f"(the project needs it: install its package, e.g. postgresql-15-{missing[0]} or postgresql-contrib)"
        )
    return found


WEAK_MASTER_KEY = (
    "the key-encryption key {setting} is shorter than 32 characters: use a random secret "
    "such as the output of `openssl rand -hex 32` (a dump plus a guessable key decrypts everything)"
)


def require_master_key(
    conn: psycopg.Connection, encryption: EncryptionSpec, where: str, suffix: str = "", as_role: str | None = None
) -> None:
    """The key-encryption key is there for this session (or, in file mode, `as_role` can read
    the key file) and long enough to be a random secret; its value never leaves the server.
    Shared by apply and rlsctl keys."""
    if encryption.master_key_file is None:
        require_master_key_setting(conn, encryption.master_key_setting, where, suffix)
        return
    path = encryption.master_key_file
    try:
        with conn.transaction():  # a savepoint: a refusal must not end the caller's transaction
            if as_role is not None:
                statements.run(conn, "set_role", role=as_role)
            strong = statements.run(conn, "master_key_file_strong", path=path)[0]["strong"]
            if as_role is not None:
                statements.run(conn, "reset_role")
    except pgerrors.InsufficientPrivilege:
        reader = as_role or "this session"
        grantee = ident(as_role) if as_role else "<keys role>"  # quoted as the templates would
        raise UsageError(
            f"{where}: {reader} cannot read the key file {path}: a superuser runs `GRANT pg_read_server_files "
            f"TO {grantee}` and `GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_file(text) TO "
            f"{grantee}` (rlsctl apply does so as a superuser); see docs/encryption.md{suffix}"
        ) from None
    except psycopg.Error as exc:
        detail = _message(exc)
        raise UsageError(f"{where}: the key file {path} cannot be read on the server: {detail}{suffix}") from None
    if not strong:
        raise UsageError(f"{where}: {WEAK_MASTER_KEY.format(setting='in ' + path)}{suffix}")


def require_master_key_setting(conn: psycopg.Connection, setting: str, where: str, suffix: str = "") -> None:
    """The key-encryption key setting is set for this session and long enough to be a random secret."""
    found = statements.run(conn, "master_key_present", setting=setting)[0]
    if not found["present"]:
        raise UsageError(
            f"{where}: the key-encryption key {setting} is not set for this session: add {setting} to "
            f"postgresql.conf and reload (or PGOPTIONS='-c {setting}=...' for a throw-away setup); "
            f"see docs/encryption.md{suffix}"
        )
    if not found["strong"]:
        raise UsageError(f"{where}: {WEAK_MASTER_KEY.format(setting=setting)}{suffix}")


def _check_master_key(
    conn: psycopg.Connection, state: DeclaredState, where: str, templates: Path, extensions_installed: bool
) -> None:
    """Encryption needs the key-encryption key in every session that writes encrypted columns,
    and it must be the one the data keys were wrapped with (else every write would fail).
    Unwrapping needs pgcrypto: a database that lost it gets it back from this plan, and the
    next apply checks the key."""
    if state.encryption is None:
        return
    setting = state.encryption.master_key_setting
    if state.encryption.master_key_file is not None:
        setting = f"the key file {state.encryption.master_key_file}"
    require_master_key(conn, state.encryption, where, " (nothing was changed)")
    if not extensions_installed or not statements.run(conn, "key_store_exists", schema=state.helper_schema)[0]["found"]:
        return
    sql = render_template("ops/keys_verify.sql.j2", templates, helper_schema=state.helper_schema)
    try:
        with conn.transaction():  # a savepoint: the failure must not end apply's transaction
            conn.execute(sql.encode())
    except (pgerrors.ExternalRoutineInvocationException, pgerrors.ExternalRoutineException):
        raise UsageError(
            f"{where}: {setting} does not unwrap the data keys in {state.helper_schema}.encryption_key: "
            "is it the key they were made with? (nothing was changed)"
        ) from None


def retrying(attempt: Callable[[], T]) -> T:
    """Run a transaction again when a concurrent change to a shared catalog (a role) failed it."""
    for number in range(1, ATTEMPTS + 1):
        try:
            return attempt()
        except ConcurrentCatalogChange:
            if number == ATTEMPTS:
                raise
            time.sleep(0.05 * number)
    raise AssertionError("unreachable")


def apply(
    conn: psycopg.Connection,
    project: Project,
    where: str,
    *,
    phase: int | None = None,
    dry_run: bool = False,
    lock_timeout: float = ATTEMPT_SECONDS,
    lock_wait_total: float = TOTAL_SECONDS,
) -> ApplyReport:
    """`lock_timeout`: the longest one lock request queues (the table's users queue behind it);
    `lock_wait_total`: how long to keep trying before giving up (exit 2, nothing changed)."""
    locking = LockRetry(conn, LockWaits(lock_timeout, lock_wait_total), where)

    def attempt() -> ApplyReport:
        try:
            with locking.transaction():
                plan = make_plan(conn, project, where, phase)
                refuse_if_needed(plan)
                execute_statements(conn, plan.sql, where, lock_timeout)
                _refuse_lookalikes(conn, plan, where, project.root / "templates")
                if not dry_run and plan.sql:
                    _record(conn, plan, project.root / "templates")
                if dry_run:
                    raise _DryRunDone(plan)
            return ApplyReport(where, plan, dry_run=False)
        except _DryRunDone as done:
            return ApplyReport(where, done.plan, dry_run=True)

    return locking.run(lambda: retrying(attempt))


def _record(conn: psycopg.Connection, plan: Plan, templates: Path) -> None:
    """In the audit log, in apply's transaction: system:apply, and the state it applied (docs/audit.md)."""
    details = {"state": state_digest(plan.state, templates), "statements": len(plan.sql)}
    record_operation(conn, plan.state, "apply", "apply", details, templates)


def _refuse_lookalikes(conn: psycopg.Connection, plan: Plan, where: str, templates: Path) -> None:
    """A column encrypted for the first time must not already hold values shaped like ciphertext
    under this database's keys: nothing of rlsctl wrote them (a forgery planted while the column
    was plaintext), and keys commands would take them for ciphertext. Checked inside apply's
    transaction, after the encrypt trigger exists (nothing can plant one any more), as the keys
    role, which sees every row of the column; a refusal rolls everything back.

    Not when the registry itself is created by this plan: then either the key store is new too
    (its only key was made in this transaction, with an id nobody could plant), or it predates the
    registry and its columns hold real ciphertext (docs/encryption.md)."""
    registry_created = any(
        op.action == "create" and isinstance(op.new, KeyTable) and op.new.name == KEY_REGISTRY_TABLE
        for op in plan.operations
    )
    first = [op.new for op in plan.operations if op.action == "create" and isinstance(op.new, EncryptedColumnRecord)]
    state = plan.state
    if not first or registry_created or state.encryption is None or state.keys is None:
        return
    kinds = {(c.table, c.column): c.kind for c in state.encryption.columns}
    statements.run(conn, "set_role", role=state.keys)  # local: a refusal rolls it back with the rest
    for record in first:
        table = state.table(record.table)
        sql = render_template(
            "ops/keys_lookalikes.sql.j2", templates, schema=state.schema, helper_schema=state.helper_schema,
            table=record.table, column=record.column, kind=kinds[(record.table, record.column)],
            key=table.primary_key[0] if len(table.primary_key) == 1 else None,
        )  # fmt: skip
        found = conn.execute(sql.encode()).fetchone()
        if found is not None and found[0]:
            raise UsageError(
                f"{where}: {record.table}.{record.column} is being encrypted for the first time but already "
                f"holds {found[0]} values shaped like ciphertext of this database's keys (rows "
                f"{', '.join(found[1])}): rlsctl did not write them, and keys commands would take them for "
                "ciphertext; if the column was renamed from one rlsctl encrypted, move its record first "
                f"(`rlsctl keys forget TABLE.OLD_NAME --renamed-to {record.table}.{record.column}`), otherwise "
                "change or remove those values; then apply again (nothing was changed)"
            )
    statements.run(conn, "reset_role")


def refuse_if_needed(plan: Plan) -> None:
    """Stop before running anything when the plan holds something rlsctl will not repair."""
    if plan.refusals:
        raise UsageError(f"{plan.refusals[0]} (nothing was changed)")


class _DryRunDone(Exception):
    """Leaves the transaction by rolling it back after a successful dry run."""

    def __init__(self, plan: Plan) -> None:
        super().__init__("dry run")
        self.plan = plan


def execute_statements(
    conn: psycopg.Connection, sql_statements: tuple[str, ...], where: str, lock_timeout: float
) -> None:
    """Run statements in one round trip; if that fails, one by one, so the error names the statement.

    Not when a lock was busy (or a role changed under us): rolling back to the
    savepoint released the locks the batch had, so running the statements
    again would queue for them a second time. The caller's transaction ends
    instead (`TableLockBusy`), and apply retries all of it after a pause."""
    if not sql_statements:
        return
    try:
        with conn.transaction():
            conn.execute(";\n".join(sql_statements).encode())
        return
    except LOCK_ERRORS as exc:
        raise TableLockBusy(lock_wait_message(exc, where, lock_timeout)) from None
    except psycopg.Error as exc:
        if _concurrent_catalog_change(exc):
            raise ConcurrentCatalogChange(f"{where}: a concurrent change to the same role; retrying") from None
        # rolled back to the savepoint: find and report the statement that fails
    _execute_one_by_one(conn, sql_statements, where, lock_timeout)


def _execute_one_by_one(
    conn: psycopg.Connection, sql_statements: tuple[str, ...], where: str, lock_timeout: float
) -> None:
    for number, statement in enumerate(sql_statements, start=1):
        try:
            conn.execute(statement.encode())
        except LOCK_ERRORS as exc:
            raise TableLockBusy(lock_wait_message(exc, where, lock_timeout)) from None
        except psycopg.Error as exc:
            if _concurrent_catalog_change(exc):
                raise ConcurrentCatalogChange(f"{where}: a concurrent change to the same role; retrying") from None
            raise UsageError(
                f"{where}: statement {number} failed ({_head(statement)}): {_message(exc)}; nothing was changed"
            ) from None


def _concurrent_catalog_change(exc: psycopg.Error) -> bool:
    message = exc.diag.message_primary or ""
    if "tuple concurrently updated" in message or "tuple concurrently deleted" in message:
        return True
    return isinstance(exc, pgerrors.UniqueViolation) and (exc.diag.table_name or "") in SHARED_CATALOGS


def _head(statement: str) -> str:
    for line in statement.splitlines():
        line = line.strip()
        if line and not line.startswith("--"):
            return line[:80]
    return "?"


def _message(exc: psycopg.Error) -> str:
    return exc.diag.message_primary or str(exc).strip().splitlines()[0]
