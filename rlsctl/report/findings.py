"""Section 6, findings and drift: `rlsctl lint` on the project and the live catalog (with the
suppressions and their written reasons) and `rlsctl drift` (the catalog against the policy files)."""

from __future__ import annotations

import psycopg

from rlsctl.change.drift import drift_state, read_plan
from rlsctl.lint import LintInputs, lint
from rlsctl.lint.runner import LintResult
from rlsctl.policy.project import Project
from rlsctl.report.model import DriftItem, LintFinding, SuppressedFinding


def run_lint(conn: psycopg.Connection, project: Project) -> LintResult:
    return lint(LintInputs(project=project, conn=conn))


def lint_parts(result: LintResult) -> tuple[tuple[LintFinding, ...], tuple[SuppressedFinding, ...], tuple[str, ...]]:
    """The findings that count, the suppressed ones with their reasons, and unused suppressions."""
    findings = tuple(LintFinding(f.rule, f.level, f.object, f.message) for f in result.findings)
    suppressed = tuple(
        sorted(
            (SuppressedFinding(f.rule, f.object, " ".join(s.reason.split()), s.where) for f, s in result.suppressed),
            key=lambda s: (s.rule, s.object),
        )
    )
    unused = tuple(sorted(f"{s.rule} at {s.where}" for s in result.unused_suppressions))
    return findings, suppressed, unused


def drift(conn: psycopg.Connection, project: Project, where: str) -> tuple[tuple[DriftItem, ...], tuple[str, ...]]:
    """What differs from the declared state (what `rlsctl drift` fails on), and the differences the
    policy files acknowledge as left to a DBA, with their reasons."""
    plan = read_plan(conn, project, where, None)
    items = tuple(
        sorted(
            (DriftItem(op.key, op.kind, drift_state(op.action), op.detail) for op in plan.drift),
            key=lambda item: item.object,
        )
    )
    acknowledged = tuple(
        sorted(f"{op.key}: {plan.acknowledgement(op)}" for op in plan.operations if plan.acknowledgement(op))
    )
    return items, acknowledged
