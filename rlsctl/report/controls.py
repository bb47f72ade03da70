"""The controls of the summary: each a pass, warn or fail with a one-line reason, from the evidence
the sections hold, mapped to SOC 2 (2017 Trust Services Criteria) and ISO/IEC 27001:2022 Annex A.

A control the report could not evaluate (the connecting role could not read its evidence, or no
policy-test result was given) warns, and says why: never a pass it did not check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rlsctl.report.model import Control, Report, ServerCheck
from rlsctl.state.objects import AUDIT_TRIGGERS

AUDIT_TRIGGER = AUDIT_TRIGGERS[0]  # the trigger of each audited table

SHOWN = 5  # objects named in a reason before "and N more"


@dataclass(frozen=True)
class ControlSpec:
    id: str
    title: str
    section: str
    soc2: tuple[str, ...]
    iso27001: tuple[str, ...]
    evaluate: Callable[[Report], tuple[str, str]]


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _unread(report: Report, section: str, what: str) -> tuple[str, str] | None:
    notes = [note for note in report.unreadable_in(section) if what in note.what]
    if notes:
        return "warn", f"not evaluated: could not read {notes[0].what} ({notes[0].reason})"
    return None


def _declared_tables(report: Report) -> list[str]:
    return [table.name for table in report.rls.tables if table.declared]


def _no_tables(report: Report) -> tuple[str, str] | None:
    """RLS cannot pass on tables it did not see."""
    unread = _unread(report, "rls", "tables")
    if unread is not None:
        return unread
    if not _declared_tables(report):
        return "warn", "no declared table exists here yet (rlsctl migrate, then rlsctl apply)"
    return None


def rls_enabled(report: Report) -> tuple[str, str]:
    if (nothing := _no_tables(report)) is not None:
        return nothing
    missing = [t.name for t in report.rls.tables if t.declared and not t.rls_enabled]
    if missing:
        return "fail", f"RLS is disabled on {_names(missing)}: every row is visible to whoever holds a grant"
    return "pass", f"enabled on all {len(_declared_tables(report))} declared tables"


def rls_forced(report: Report) -> tuple[str, str]:
    if (nothing := _no_tables(report)) is not None:
        return nothing
    missing = [t.name for t in report.rls.tables if t.declared and not t.rls_forced]
    if missing:
        return "fail", f"RLS is not forced on {_names(missing)}: the table owner reads and writes past every policy"
    return "pass", f"forced on all {len(_declared_tables(report))} declared tables (binds the owner too)"


def no_bypass(report: Report) -> tuple[str, str]:
    if (unread := _unread(report, "access", "roles")) is not None:
        return unread
    bypassing = [
        f"{role.name} ({'SUPERUSER' if role.superuser else 'BYPASSRLS'})"
        for role in report.access.roles
        if role.superuser or role.bypassrls
    ]
    if bypassing:
        return "fail", f"{_names(bypassing)} bypass every policy (the project's roles and the roles in them)"
    return "pass", f"none of {len(report.access.roles)} roles (the project's and their members) bypasses RLS"


def public_nothing(report: Report) -> tuple[str, str]:
    if (unread := _unread(report, "access", "privileges")) is not None:
        return unread
    granted = [
        f"{p.privilege} on {p.kind} {p.object}"
        for p in report.access.public
        if not (p.kind == "schema" and p.privilege == "USAGE")
    ]
    if granted:
        return "fail", f"PUBLIC holds {_names(granted)}"
    return "pass", "PUBLIC holds nothing on the tables, sequences, functions; no CREATE on the schemas"


def no_drift(report: Report) -> tuple[str, str]:
    drift = report.findings.drift
    if drift is None:
        return _unread(report, "findings", "drift") or ("warn", "not evaluated: drift was not read")
    if drift:
        return "fail", f"{len(drift)} objects differ from the policy files: {_names([d.object for d in drift])}"
    return "pass", "policies, grants, roles, RLS flags, helpers and triggers match the policy files"


def tests_pass(report: Report) -> tuple[str, str]:
    tests = report.access.tests
    if tests is None:
        return _unread(report, "access", "policy tests") or (
            "warn",
            "not evaluated: give --tests FILE (from rlsctl test --format json) or --run-tests",
        )
    if tests.failed:
        return "fail", (
            f"{tests.mismatches} mismatching cells, {tests.invariant_violations} invariant violations, "
            f"{tests.failing_cases} failing cases ({tests.source})"
        )
    if not tests.cells:
        return "warn", f"no cell was tested ({tests.source})"
    return "pass", f"{tests.cells} cells as expected, {tests.judged} judged by the expectations ({tests.source})"


def encryption(report: Report) -> tuple[str, str]:
    section = report.encryption
    if not section.declared:
        return "pass", "no column is declared encrypted"
    unread = _unread(report, "encryption", "data keys")
    if unread is not None:
        return unread
    plaintext = [f"{u.column} ({u.values})" for u in section.usage if u.key is None and u.values]
    problems = []
    if not any(key.state == "active" for key in section.keys):
        problems.append("no active data key")
    if plaintext:
        problems.append(f"plaintext left in {_names(plaintext)} (rlsctl keys encrypt)")
    if section.kek_exposure:
        problems.append(f"the key-encryption key is readable: {section.kek_exposure[0]}")
    if problems:
        return "fail", "; ".join(problems)
    if section.rewrap_pending:
        return "warn", f"a key-encryption key rotation is under way ({section.rewrap_pending} data keys)"
    usable = sum(1 for key in section.keys if key.state != "retired")
    columns = f"{len(section.columns)} column{'' if len(section.columns) == 1 else 's'}"
    return "pass", f"{columns} encrypted under {usable} usable key{'' if usable == 1 else 's'}; no plaintext left"


def audit_triggers(report: Report) -> tuple[str, str]:
    section = report.retention_audit
    if not section.audit_declared:
        return "warn", "the project declares no audit log"
    if section.log is None:
        return "warn", "the audit log table does not exist here yet"
    broken = [f"{t.table}.{t.trigger}" + ("" if t.present else " missing") for t in section.triggers if not t.fires]
    if broken:
        return "fail", f"not firing: {_names(broken)}"
    audited = len({t.table for t in section.triggers if t.trigger == AUDIT_TRIGGER})
    return "pass", f"{audited} tables audited; the log is append-only and chained"


def audit_chain(report: Report) -> tuple[str, str]:
    section = report.retention_audit
    if not section.audit_declared:
        return "warn", "the project declares no audit log"
    chain = section.chain
    if chain is None:
        return _unread(report, "retention-audit", "audit chain") or ("warn", "not evaluated: the chain was not read")
    if not chain.ok:
        return "fail", f"chain BROKEN at {chain.first_break} ({chain.breaks} breaks)"
    return "pass", f"intact: {chain.rows} rows in {chain.lanes} lanes, head {chain.head[:16]}…"


def retention(report: Report) -> tuple[str, str]:
    section = report.retention_audit
    if not section.rules:
        return "pass", "no table declares retention"
    unread = _unread(report, "retention-audit", "retention")
    if unread is not None:
        return unread
    scheduled = section.schedule is not None and any(job.active for job in section.schedule.jobs)
    ran = [run for run in section.runs if not run.dry_run]  # latest first
    if not ran and not scheduled:
        return (
            "warn",
            f"{len(section.rules)} tables declare retention, but it never ran here and no pg_cron job runs it",
        )
    how = "scheduled with pg_cron" if scheduled else f"last run {ran[0].at}"
    return "pass", f"{len(section.rules)} tables with a retention window; {how}"


def lint_clean(report: Report) -> tuple[str, str]:
    section = report.findings
    unread = _unread(report, "findings", "lint")
    if unread is not None:
        return unread
    errors = [f"{f.rule} {f.object}" for f in section.findings if f.level == "error"]
    warnings = [f"{f.rule} {f.object}" for f in section.findings if f.level == "warning"]
    if errors:
        return "fail", f"{len(errors)} errors: {_names(errors)}"
    if warnings:
        return "warn", f"{len(warnings)} warnings: {_names(warnings)}"
    return "pass", f"no finding ({section.rules_run} rules); {len(section.suppressed)} suppressed with written reasons"


def _from_checks(*ids: str) -> Callable[[Report], tuple[str, str]]:
    """A server control: fails when one of its checks fails, warns when one could not be read."""

    def evaluate(report: Report) -> tuple[str, str]:
        checks = [check for check in report.server.checks if check.id in ids]
        failing = [check for check in checks if check.status == "fail"]
        if failing:
            return "fail", "; ".join(_check_line(check) for check in failing)
        unknown = [check for check in checks if check.status in ("unknown", "review")]
        if unknown:
            return "warn", "; ".join(_check_line(check) for check in unknown)
        return "pass", f"CIS {', '.join(ids)}: " + "; ".join(check.detail for check in checks if check.status == "pass")

    return evaluate


def _check_line(check: ServerCheck) -> str:
    return f"{check.id} {check.detail}"


CONTROLS = (
    ControlSpec(
        "RLS-1",
        "Row-level security is enabled on every declared table",
        "rls",
        ("CC6.1", "CC6.3"),
        ("5.15", "8.3"),
        rls_enabled,
    ),
    ControlSpec(
        "RLS-2",
        "Row-level security is forced on every declared table",
        "rls",
        ("CC6.1", "CC6.3"),
        ("5.15", "8.3"),
        rls_forced,
    ),
    ControlSpec(
        "RLS-3",
        "No role of the project, nor any role in one, bypasses row-level security",
        "access",
        ("CC6.1", "CC6.3"),
        ("5.15", "5.18", "8.3"),
        no_bypass,
    ),
    ControlSpec(
        "ACC-1",
        "PUBLIC holds no privilege on the schema's objects",
        "access",
        ("CC6.1", "CC6.3"),
        ("5.15", "8.3"),
        public_nothing,
    ),
    ControlSpec(
        "ACC-2",
        "Policies, grants and roles match the policy files (no drift)",
        "findings",
        ("CC6.3", "CC8.1"),
        ("5.18", "8.3"),
        no_drift,
    ),
    ControlSpec(
        "ACC-3",
        "Policy tests: every cell as the expectations say, no invariant broken",
        "access",
        ("CC6.1", "CC6.3", "CC8.1"),
        ("5.15", "8.3"),
        tests_pass,
    ),
    ControlSpec(
        "ENC-1",
        "Declared columns are encrypted and the key-encryption key is not exposed",
        "encryption",
        ("CC6.1", "CC6.7"),
        ("8.24",),
        encryption,
    ),
    ControlSpec(
        "AUD-1",
        "Audit triggers record every change; the log is append-only and chained",
        "retention-audit",
        ("CC7.2",),
        ("8.15",),
        audit_triggers,
    ),
    ControlSpec("AUD-2", "The audit log's hash chain verifies", "retention-audit", ("CC7.2",), ("8.15",), audit_chain),
    ControlSpec(
        "RET-1", "Rows past their retention window are deleted", "retention-audit", ("C1.2",), ("8.10",), retention
    ),
    ControlSpec(
        "LNT-1",
        "Lint finds no security problem (suppressions carry written reasons)",
        "findings",
        ("CC8.1",),
        ("8.3",),
        lint_clean,
    ),
    ControlSpec(
        "SRV-1",
        "Client authentication: no trust or password logins, SCRAM-SHA-256",
        "server",
        ("CC6.1", "CC6.6"),
        ("5.15",),
        _from_checks("5.1", "5.2", "5.9"),
    ),
    ControlSpec(
        "SRV-2",
        "Connections are encrypted in transit (TLS 1.2+)",
        "server",
        ("CC6.6", "CC6.7"),
        ("8.24",),
        _from_checks("6.8", "5.5"),
    ),
    ControlSpec(
        "SRV-3",
        "The server logs connections, statements and pgAudit, without bind parameters",
        "server",
        ("CC7.2",),
        ("8.15",),
        _from_checks("3.1.2", "3.1.3", "3.1.20", "3.1.21", "3.1.24", "3.1.25", "3.2", "R.1"),
    ),
    ControlSpec(
        "SRV-4",
        "Administrative attributes only where they belong",
        "server",
        ("CC6.1", "CC6.3"),
        ("5.18",),
        _from_checks("4.2"),
    ),
)


def evaluate(report: Report) -> tuple[Control, ...]:
    found = []
    for spec in CONTROLS:
        status, reason = spec.evaluate(report)
        found.append(Control(spec.id, spec.title, status, reason, spec.section, spec.soc2, spec.iso27001))
    return tuple(found)
