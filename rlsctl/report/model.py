"""The report as data: one frozen shape per section, every field JSON-ready (text, numbers, booleans,
tuples), so the JSON output is `dataclasses.asdict` of a `Report` and the Markdown and HTML are two
views of the same values.

Everything but `identity.generated_at` and the `monitoring` section is a function of the database's
state and the policy files: collectors sort what they read, so two reports of one state are equal.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = "rlsctl-report/1"
STATUSES = ("pass", "warn", "fail")  # a control's outcome, in order of severity
COMMANDS = ("select", "insert", "update", "delete")

# (anchor, title) of the nine sections, in the order every format prints them.
SECTIONS = (
    ("summary", "Summary"),
    ("rls", "Row-level security"),
    ("access", "Access"),
    ("encryption", "Encryption"),
    ("retention-audit", "Retention and audit"),
    ("findings", "Findings and drift"),
    ("monitoring", "Monitoring"),
    ("server", "Server settings"),
    ("identity", "Identity"),
)


@dataclass(frozen=True)
class Unreadable:
    """Something the connecting role could not read: the report says so instead of guessing."""

    section: str  # the anchor of the section it belongs to
    what: str
    reason: str


# -- 1. summary -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Control:
    id: str
    title: str
    status: str  # pass | warn | fail
    reason: str  # one line: why this status
    section: str  # where the evidence is (a section anchor)
    soc2: tuple[str, ...]
    iso27001: tuple[str, ...]


# -- 2. row-level security ----------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    name: str
    command: str
    permissive: bool
    roles: tuple[str, ...]
    using: str | None  # as the server stores it (pg_get_expr)
    check: str | None


@dataclass(frozen=True)
class RlsTable:
    name: str
    declared: bool  # the policy files declare it
    owner: str
    rls_enabled: bool
    rls_forced: bool
    policies: tuple[Policy, ...]


@dataclass(frozen=True)
class RlsSection:
    schema: str
    tables: tuple[RlsTable, ...]
    pending: tuple[str, ...]  # declared tables that no migration has created here yet


# -- 3. access ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoleInfo:
    """A role of the project, or a role that is a member of one (a login, usually)."""

    name: str
    kind: str  # the declared kind (owner, app, ...), or "member" for a role the project does not declare
    login: bool
    superuser: bool
    bypassrls: bool
    createrole: bool
    reaches: tuple[str, ...]  # the project's roles it is, or is a member of
    description: str


@dataclass(frozen=True)
class Membership:
    role: str
    member: str


@dataclass(frozen=True)
class Privilege:
    role: str
    table: str
    privilege: str
    columns: tuple[str, ...] | None  # None: the whole table
    via: str  # SUPERUSER, owner, granted, PUBLIC, member of <role>, ...


@dataclass(frozen=True)
class PublicPrivilege:
    kind: str  # table, view, sequence, column, function, schema
    object: str
    privilege: str


@dataclass(frozen=True)
class GridCell:
    command: str
    tried: int  # cases probed (0: no case of this command for this principal)
    allowed: int
    mismatches: int  # cases the database decided against the expectations
    unjudged: int  # cases no expectation covers


@dataclass(frozen=True)
class GridRow:
    principal: str
    cells: tuple[GridCell, ...]  # one per command, in COMMANDS order


@dataclass(frozen=True)
class Grid:
    table: str
    rows: tuple[GridRow, ...]


@dataclass(frozen=True)
class TestsSection:
    source: str  # "file <name>" or "run now"
    database: str  # where the tests ran
    cells: int
    judged: int
    mismatches: int
    invariant_violations: int
    failing_cases: int
    notices: tuple[str, ...]
    problems: tuple[str, ...]  # the first mismatches, violations and failing cases, in words
    grids: tuple[Grid, ...]

    @property
    def failed(self) -> bool:
        return bool(self.mismatches or self.invariant_violations or self.failing_cases)


@dataclass(frozen=True)
class AccessSection:
    roles: tuple[RoleInfo, ...]
    memberships: tuple[Membership, ...]
    privileges: tuple[Privilege, ...]
    public: tuple[PublicPrivilege, ...]  # what PUBLIC holds in the project's and the helper schema
    tests: TestsSection | None  # None: neither --tests nor --run-tests


# -- 4. encryption ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncryptedColumn:
    table: str
    column: str
    kind: str  # text or jsonb
    decrypting: bool


@dataclass(frozen=True)
class DataKey:
    id: str
    state: str  # active, usable, retired
    created_at: str
    retired_at: str | None


@dataclass(frozen=True)
class KeyUsage:
    column: str
    key: str | None  # None: plaintext
    values: int


@dataclass(frozen=True)
class EncryptionSection:
    declared: bool
    kek_mode: str  # where the key-encryption key lives (never its value)
    kek_exposure: tuple[str, ...]  # logins that need not read it but can, and why
    readers: tuple[str, ...]  # roles the policy files let decrypt
    decrypt_executors: tuple[str, ...]  # roles that may execute the helper schema's decrypt functions
    columns: tuple[EncryptedColumn, ...]
    keys: tuple[DataKey, ...]
    usage: tuple[KeyUsage, ...]
    rewrap_pending: int  # data keys also wrapped by the next key-encryption key
    last_rotation: str | None  # when the active data key was made
    last_rewrap: str | None  # the latest `keys rewrap` the audit log records


# -- 5. retention and audit ------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionRule:
    table: str
    column: str
    days: int
    role: str
    hold_role: str | None
    legal_hold: bool  # `legal_hold: true`: nothing is ever deleted


@dataclass(frozen=True)
class Hold:
    table: str
    tenant: str | None
    since: str
    by: str
    reason: str


@dataclass(frozen=True)
class RetentionRunRow:
    table: str
    at: str
    actor: str
    via: str | None
    removed: int
    seconds: float
    cutoff: str | None
    dry_run: bool
    kept: str | None


@dataclass(frozen=True)
class CronJob:
    name: str
    schedule: str
    active: bool


@dataclass(frozen=True)
class Schedule:
    state: str  # in words: pg_cron not loaded, jobs in database X, ...
    jobs: tuple[CronJob, ...]


@dataclass(frozen=True)
class AuditTrigger:
    table: str
    trigger: str
    purpose: str
    present: bool
    fires: bool


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    rows: int
    lanes: int
    trimmed: int
    head: str
    breaks: int
    first_break: str | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Operation:
    """The latest of one kind of rlsctl's own operations, as the audit log records it."""

    job: str
    action: str
    at: str
    state: str | None  # SHA-256 of the declared state it ran under


@dataclass(frozen=True)
class RetentionAuditSection:
    rules: tuple[RetentionRule, ...]
    holds: tuple[Hold, ...]
    runs: tuple[RetentionRunRow, ...]
    schedule: Schedule | None
    audit_declared: bool
    log: str | None
    triggers: tuple[AuditTrigger, ...]
    chain: ChainCheck | None
    operations: tuple[Operation, ...]


# -- 6. findings and drift ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LintFinding:
    rule: str
    level: str
    object: str
    message: str


@dataclass(frozen=True)
class SuppressedFinding:
    rule: str
    object: str
    reason: str
    where: str


@dataclass(frozen=True)
class DriftItem:
    object: str
    kind: str
    state: str  # missing, extra, changed
    detail: str


@dataclass(frozen=True)
class FindingsSection:
    rules_run: int
    findings: tuple[LintFinding, ...]
    suppressed: tuple[SuppressedFinding, ...]
    unused_suppressions: tuple[str, ...]
    drift: tuple[DriftItem, ...] | None  # None: not read
    acknowledged: tuple[str, ...]


# -- 7. monitoring (volatile) ------------------------------------------------------------------------


@dataclass(frozen=True)
class TableStat:
    table: str
    total_bytes: int
    table_bytes: int
    index_bytes: int
    live_rows: int
    dead_rows: int
    seq_scan: int
    idx_scan: int
    last_vacuum: str | None
    last_analyze: str | None


@dataclass(frozen=True)
class PolicyColumn:
    table: str
    column: str
    read_by: str  # what reads it: a policy condition, the tenant mapping, ...
    index: str | None  # an index leading with it
    scans: int | None  # that index's scans


@dataclass(frozen=True)
class ConnectionCount:
    role: str
    connections: int


@dataclass(frozen=True)
class MonitoringSection:
    tables: tuple[TableStat, ...]
    policy_columns: tuple[PolicyColumn, ...]
    connections: tuple[ConnectionCount, ...]
    volatile: bool = True  # changes with every query: left out when two reports are compared


# -- 8. server settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    name: str
    value: str | None  # None: not set here, or not readable (`readable`)
    readable: bool


@dataclass(frozen=True)
class ServerCheck:
    id: str  # the CIS PostgreSQL Benchmark id as pgdsat numbers it, or R.n for rlsctl's own
    title: str
    status: str  # pass, fail, review, unknown (not readable), n/a
    detail: str
    source: str  # CIS, pgdsat (its additions to CIS), rlsctl


@dataclass(frozen=True)
class NotCovered:
    ids: str
    title: str
    why: str


@dataclass(frozen=True)
class PrivilegedRole:
    name: str
    login: bool
    superuser: bool
    bypassrls: bool
    createrole: bool
    createdb: bool
    replication: bool
    bootstrap: bool


@dataclass(frozen=True)
class HbaRule:
    line: int
    type: str
    database: str
    user: str
    address: str | None
    method: str


@dataclass(frozen=True)
class ServerSection:
    settings: tuple[Setting, ...]
    checks: tuple[ServerCheck, ...]
    not_covered: tuple[NotCovered, ...]
    privileged_roles: tuple[PrivilegedRole, ...]
    hba: tuple[HbaRule, ...] | None  # None: not readable
    connection_ssl: bool | None
    extensions: tuple[str, ...]  # installed in this database


# -- 9. identity ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdentitySection:
    server_version: str
    database: str
    where: str  # host:port/database, never a password
    connected_as: str
    rlsctl_version: str
    project: str
    state_hash: str  # SHA-256 of the declared state for this schema (what `apply` records)
    applied_state_hash: str | None  # the state the latest `rlsctl apply` recorded in the audit log
    state_applied: bool | None  # no drift: the database holds the declared state (None: not read)
    generated_at: str  # the one field of a report that changes between two runs on one state


@dataclass(frozen=True)
class Report:
    identity: IdentitySection
    controls: tuple[Control, ...]
    rls: RlsSection
    access: AccessSection
    encryption: EncryptionSection
    retention_audit: RetentionAuditSection
    findings: FindingsSection
    monitoring: MonitoringSection
    server: ServerSection
    unreadable: tuple[Unreadable, ...] = ()
    format: str = field(default=FORMAT)

    @property
    def status(self) -> str:
        """The worst status of any control."""
        found = {control.status for control in self.controls}
        return next((status for status in reversed(STATUSES) if status in found), "pass")

    def control(self, control_id: str) -> Control:
        return next(control for control in self.controls if control.id == control_id)

    def unreadable_in(self, section: str) -> tuple[Unreadable, ...]:
        return tuple(note for note in self.unreadable if note.section == section)


def utc_text(value: dt.datetime) -> str:
    """A moment in UTC to the second ("2026-01-31T12:00:00Z"): the same instant prints the same
    whatever the session's TimeZone (a timestamp without zone is taken as UTC, as rlsctl writes them)."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def as_document(report: Report) -> dict[str, Any]:
    """The report as the JSON document report.schema.json describes."""
    document = asdict(report)
    document["status"] = report.status
    return document
