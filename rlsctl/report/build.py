"""Build the report: read every section from one connection and the policy files, then judge the
controls. Reading changes nothing (policy tests, when run, are rolled back: docs/testing.md).

What the connecting role may not read (pg_hba.conf, the key store, the audit log...) is recorded
as `Unreadable` and the section says so; the controls that needed it warn instead of passing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from typing import TypeVar

import psycopg
from psycopg import errors as pgerrors

from rlsctl.catalog import queries as catalog
from rlsctl.change.apply import live_schema
from rlsctl.change.record import state_digest
from rlsctl.declare.compile import declare
from rlsctl.declare.state import DeclaredState
from rlsctl.declare.validate import validate
from rlsctl.errors import RlsctlError
from rlsctl.lint.runner import LintResult
from rlsctl.policy.project import Project
from rlsctl.report import (
    access,
    controls,
    encryption,
    findings,
    monitoring,
    queries,
    retention_audit,
    rls,
    server,
    tests,
)
from rlsctl.report.model import (
    AccessSection,
    EncryptionSection,
    FindingsSection,
    Hold,
    IdentitySection,
    MonitoringSection,
    Operation,
    Report,
    RetentionAuditSection,
    RetentionRunRow,
    RlsSection,
    ServerSection,
    TestsSection,
    Unreadable,
    utc_text,
)

T = TypeVar("T")
DEFINER_RULES = ("SEC001", "SEC002", "SEC003")  # CIS 4.3: SECURITY DEFINER functions


@dataclass
class _Reader:
    """Reads one thing after another; what the role may not read becomes a note, not an error."""

    conn: psycopg.Connection
    notes: list[Unreadable] = field(default_factory=list)

    def attempt(self, section: str, what: str, read: Callable[[], T]) -> T | None:
        try:
            return read()
        except (RlsctlError, pgerrors.InsufficientPrivilege) as exc:
            lines = str(exc).strip().splitlines()
            self.notes.append(Unreadable(section, what, lines[0] if lines else type(exc).__name__))
            return None


def build(
    conn: psycopg.Connection,
    project: Project,
    where: str,
    tests_result: TestsSection | None = None,
    run_tests: bool = False,
    now: dt.datetime | None = None,
) -> Report:
    """The report of the database on `conn` against `project`. `tests_result`: a `rlsctl test --format
    json` document already read (--tests); `run_tests`: run the policy tests now (--run-tests)."""
    schema = live_schema(conn, project, None)
    validate(project, project.migrated_schema().union(schema))
    state = declare(project, schema)
    reader = _Reader(conn)
    if run_tests:
        tests_result = reader.attempt(
            "access", "policy tests (--run-tests)", lambda: tests.run_now(conn, project, where)
        )
    rls_section = _rls(reader, state)
    operations = _operations(reader, state)
    lint_result = reader.attempt("findings", "lint of the live catalog", lambda: findings.run_lint(conn, project))
    draft = Report(
        identity=_identity(conn, project, state, where, operations, now),
        controls=(),
        rls=rls_section,
        access=_access(reader, state, tests_result),
        encryption=_encryption(reader, project, state, where, operations),
        retention_audit=_retention_audit(reader, project, state, where, operations),
        findings=_findings(reader, project, where, lint_result),
        monitoring=_monitoring(reader, project, state),
        server=_server(reader, rls_section, lint_result),
    )
    draft = replace(draft, identity=_applied(draft.identity, draft.findings), unreadable=tuple(reader.notes))
    return replace(draft, controls=controls.evaluate(draft))


def _rls(reader: _Reader, state: DeclaredState) -> RlsSection:
    found = reader.attempt("rls", "tables and policies", lambda: rls.collect(reader.conn, state))
    return found or RlsSection(state.schema, (), tuple(state.pending))


def _access(reader: _Reader, state: DeclaredState, tests_result: TestsSection | None) -> AccessSection:
    found = reader.attempt("access", "roles and privileges", lambda: access.collect(reader.conn, state, tests_result))
    return found or AccessSection((), (), (), (), tests_result)


def _operations(reader: _Reader, state: DeclaredState) -> tuple[Operation, ...]:
    what = "rlsctl's operations in the audit log"
    return reader.attempt("retention-audit", what, lambda: retention_audit.operations(reader.conn, state)) or ()


def _monitoring(reader: _Reader, project: Project, state: DeclaredState) -> MonitoringSection:
    found = reader.attempt("monitoring", "statistics", lambda: monitoring.collect(reader.conn, project, state))
    return found or MonitoringSection((), (), ())


def _encryption(
    reader: _Reader, project: Project, state: DeclaredState, where: str, operations: tuple[Operation, ...]
) -> EncryptionSection:
    section = encryption.declared(reader.conn, state)
    if not section.declared:
        return section
    keyed = reader.attempt(
        "encryption",
        "data keys and their use (as the keys role)",
        lambda: encryption.with_keys(section, reader.conn, project, where),
    )
    return encryption.with_operations(keyed or section, operations)


def _retention_audit(
    reader: _Reader, project: Project, state: DeclaredState, where: str, operations: tuple[Operation, ...]
) -> RetentionAuditSection:
    conn, spec = reader.conn, state.audit
    rules = retention_audit.rules(state)
    holds: tuple[Hold, ...] = ()
    runs: tuple[RetentionRunRow, ...] = ()
    schedule = None
    if rules:
        what = "retention holds and runs"
        holds, runs = reader.attempt(
            "retention-audit", what, lambda: retention_audit.holds_and_runs(conn, project, where)
        ) or ((), ())
        what = "retention schedule (pg_cron)"
        schedule = reader.attempt("retention-audit", what, lambda: retention_audit.schedule(conn))
    chain = None
    if spec is not None and spec.log is not None and spec.chained:
        what = "audit chain (rlsctl audit verify)"
        chain = reader.attempt("retention-audit", what, lambda: retention_audit.chain(conn, project))
    return RetentionAuditSection(
        rules=rules,
        holds=holds,
        runs=runs,
        schedule=schedule,
        audit_declared=spec is not None,
        log=spec.log.table if spec is not None and spec.log is not None else None,
        triggers=retention_audit.triggers(conn, state) if spec is not None else (),
        chain=chain,
        operations=operations,
    )


def _findings(reader: _Reader, project: Project, where: str, lint_result: LintResult | None) -> FindingsSection:
    found, suppressed, unused = findings.lint_parts(lint_result) if lint_result is not None else ((), (), ())
    drift = reader.attempt("findings", "drift (rlsctl drift)", lambda: findings.drift(reader.conn, project, where))
    return FindingsSection(
        rules_run=len(lint_result.rules) if lint_result is not None else 0,
        findings=found,
        suppressed=suppressed,
        unused_suppressions=unused,
        drift=drift[0] if drift is not None else None,
        acknowledged=drift[1] if drift is not None else (),
    )


def _server(reader: _Reader, rls_section: RlsSection, lint_result: LintResult | None) -> ServerSection:
    conn = reader.conn
    shown, values, hidden = server.read_settings(conn)
    for name in sorted(hidden):
        reader.notes.append(Unreadable("server", f"setting {name}", "needs SUPERUSER or pg_read_all_settings"))
    hba = server.try_hba(conn)
    if hba is None:
        reader.notes.append(Unreadable("server", "pg_hba_file_rules", "permission denied (superusers only by default)"))
    privileged = server.privileged_roles(conn)
    extensions = frozenset(catalog.installed_extensions(conn))
    problems: tuple[str, ...] | None = tuple(
        f"{t.name}: RLS {'not forced' if t.rls_enabled else 'disabled'}"
        for t in rls_section.tables
        if t.declared and not (t.rls_enabled and t.rls_forced)
    )
    if any(note.section == "rls" for note in reader.notes):
        problems = None  # the tables were not read: CIS 4.5 is unknown, not passed
    definer = None
    if lint_result is not None:
        definer = tuple(f"{f.rule} {f.object}" for f in lint_result.findings if f.rule in DEFINER_RULES)
    inputs = server.Inputs(values, hidden, hba, privileged, extensions, server.public_create(conn), problems, definer)
    return ServerSection(
        settings=shown,
        checks=server.evaluate(inputs),
        not_covered=server.NOT_COVERED,
        privileged_roles=privileged,
        hba=hba,
        connection_ssl=server.connection_ssl(conn),
        extensions=tuple(sorted(extensions)),
    )


def _identity(
    conn: psycopg.Connection,
    project: Project,
    state: DeclaredState,
    where: str,
    operations: tuple[Operation, ...],
    now: dt.datetime | None,
) -> IdentitySection:
    row = queries.fetch(conn, "server_identity")[0]
    applied = next((op.state for op in operations if op.job == "apply" and op.action == "apply"), None)
    return IdentitySection(
        server_version=row["server_version"],
        database=row["database"],
        where=where,
        connected_as=row["connected_as"],
        rlsctl_version=rlsctl_version(),
        project=state.project_name,
        state_hash=state_digest(state, project.root / "templates"),
        applied_state_hash=applied,
        state_applied=None,
        generated_at=utc_text(now or dt.datetime.now(dt.UTC)),
    )


def _applied(identity: IdentitySection, found: FindingsSection) -> IdentitySection:
    """The database holds the declared state when drift found nothing (None: drift not read)."""
    return replace(identity, state_applied=None if found.drift is None else not found.drift)


def rlsctl_version() -> str:
    try:
        return version("rlsctl")
    except PackageNotFoundError:  # pragma: no cover - a checkout without install
        return "0"
