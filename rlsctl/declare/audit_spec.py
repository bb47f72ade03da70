"""The audit log in the declared state: which tables are audited, what is copied, how rows are chained.

Built by `rlsctl.declare.audit.audit_spec` from the policy files (docs/audit.md);
the templates of `templates/objects/audit_bodies.sql.j2` render its functions and
`rlsctl audit verify` reads the chain with the same content expression.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlsctl.state.objects import AUDIT_TABLES

AUDIT_SEQUENCE = "audit_seq"  # orders the chain; created with the lanes' table
# The `prev` of the first row of a lane: 32 zero bytes.
GENESIS = bytes(32)


@dataclass(frozen=True)
class AuditLogSpec:
    """The audit log table and which column holds what."""

    table: str
    id: str
    id_type: str
    actor: str
    action: str
    resource_type: str
    resource_id: str
    created_at: str
    created_type: str
    tenant: str | None = None
    tenant_type: str | None = None
    metadata: str | None = None

    @property
    def content(self) -> tuple[str, ...]:
        """The columns each row's hash covers, in a fixed order (never the chain's own)."""
        named = (self.id, self.actor, self.tenant, self.action, self.resource_type, self.resource_id,
                 self.metadata, self.created_at)  # fmt: skip
        return tuple(column for column in named if column is not None)

    @property
    def utc_stamped(self) -> bool:
        """A timestamp without time zone: the session's TimeZone would decide what `now()` writes."""
        return "without time zone" in self.created_type


@dataclass(frozen=True)
class ChainSpec:
    seq: str
    lane: str
    prev: str
    hash: str
    lanes: int


@dataclass(frozen=True)
class AuditedTable:
    """A table whose changes are written to the log by its trigger (objects/audit_bodies.sql.j2)."""

    table: str
    function: str
    key: tuple[str, ...]  # the resource id (one column: as text; more: a JSON array)
    tenant: str | None
    columns: tuple[str, ...]  # the allow-list: copied into metadata
    others: tuple[str, ...]  # every other column: an update names them, never their values
    actions: tuple[str, ...]  # insert, update, delete

    @property
    def events(self) -> str:
        """The trigger's events as the catalog prints them (INSERT, DELETE, UPDATE order)."""
        order = ("insert", "delete", "update")
        return " OR ".join(action.upper() for action in order if action in self.actions)


@dataclass(frozen=True)
class AuditSpec:
    """Auditing, when the project declares `audit:`. `log` is None until a migration creates the
    log table: the chain's tables exist from the first apply on and are never dropped, so a
    rollback leaves what a fresh apply would."""

    writer: str  # the definer role: owns the functions and the chain's tables, inserts the rows
    recorders: tuple[str, ...]  # may call audit_record(): rlsctl's own operations (the owner role)
    readers: tuple[str, ...]  # may call audit_anchors(): rlsctl audit verify (the owner role, `readers:`)
    sealer: str  # the owner role: may run audit_seal()
    log: AuditLogSpec | None
    chain: ChainSpec | None  # declared (its tables exist whenever it is)
    chained: bool = False  # the log exists with the chain's columns: rows are chained
    tables: tuple[AuditedTable, ...] = ()
    deleter: str | None = None  # the log's retention role: the only one that deletes, and only expired rows
    retention_column: str | None = None
    retention_days: int | None = None
    retention_with_zone: bool = False  # the retention column is a timestamptz (see expr.Cutoff)
    guard_function: str = ""
    chain_function: str = ""
    # The advisory lock (class rlsctl.pg.locks.CLASS) that lets one trim of the log's chain run at a time.
    trim_lock: int = 17
    # The advisory lock that lets one seal of the log's order run at a time (audit_seal()).
    seal_lock: int = 18
    # Lane n of the chain is the advisory lock (rlsctl.pg.locks.CLASS, lane_lock_base + n), held by the
    # transaction chaining rows in it until it ends (4096..4351: clear of rlsctl's other lock ids).
    lane_lock_base: int = 4096

    def table(self, name: str) -> AuditedTable:
        for table in self.tables:
            if table.table == name:
                return table
        raise KeyError(name)

    @property
    def helper_tables(self) -> tuple[str, ...]:
        return () if self.chain is None else tuple(AUDIT_TABLES)
