"""Lint results as text (grouped by severity), JSON, or SARIF 2.1.0 for code-scanning UIs."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version

from rich.console import Console
from rich.markup import escape

from rlsctl.lint.rule import LEVELS, Finding
from rlsctl.lint.runner import LintResult

COLOURS = {"error": "bold red", "warning": "yellow", "info": "cyan"}
SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
Locations = dict[str, tuple[str, int | None]]  # object -> (file, line) where it is declared


def rlsctl_version() -> str:
    try:
        return version("rlsctl")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
        return "0"


def print_text(result: LintResult, console: Console, fail_on: str) -> None:
    for note in result.notes:
        console.print(f"[dim]{escape(note)}[/]")
    for level in reversed(LEVELS):
        chosen = [f for f in result.findings if f.level == level]
        if not chosen:
            continue
        console.print(f"[{COLOURS[level]}]{level.upper()}S ({len(chosen)})[/]")
        for finding in chosen:
            console.print(f"  [{COLOURS[level]}]{finding.rule}[/] {escape(finding.object)}: {escape(finding.message)}")
            console.print(f"      [dim]fix: {escape(finding.hint)}[/]")
    if result.suppressed:
        console.print(f"[dim]SUPPRESSED ({len(result.suppressed)}), with the reasons written in the policy files[/]")
        for finding, suppression in result.suppressed:
            console.print(
                f"  [dim]{finding.rule} {escape(finding.object)}: {escape(suppression.reason)} ({suppression.where})[/]"
            )
    if result.baselined:
        console.print(f"[dim]{len(result.baselined)} findings are in the baseline and do not count[/]")
    for suppression in result.unused_suppressions:
        console.print(f"[dim]unused suppression of {suppression.rule} at {suppression.where}[/]")
    failing = result.at_or_above(fail_on)
    total = len(result.findings)
    verdict = "[green]clean[/]" if not failing else f"[bold red]{len(failing)} at or above {fail_on}[/]"
    console.print(f"{total} findings ({len(result.rules)} rules run): {verdict}")


def _finding(finding: Finding) -> dict[str, str]:
    return {
        "rule": finding.rule,
        "level": finding.level,
        "object": finding.object,
        "message": finding.message,
        "hint": finding.hint,
    }


def to_json(result: LintResult) -> str:
    data = {
        "findings": [_finding(f) for f in result.findings],
        "suppressed": [{**_finding(f), "reason": s.reason, "suppressed_at": s.where} for f, s in result.suppressed],
        "baselined": [_finding(f) for f in result.baselined],
        "notes": list(result.notes),
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def to_sarif(result: LintResult, locations: Locations | None = None) -> str:
    locations = locations or {}
    rules = [
        {
            "id": rule.id,
            "name": rule.name,
            "shortDescription": {"text": rule.summary()},
            "fullDescription": {"text": rule.doc()},
            "help": {"text": rule.hint},
            "defaultConfiguration": {"level": SARIF_LEVEL[rule.level]},
        }
        for rule in result.rules
    ]
    index = {rule.id: number for number, rule in enumerate(result.rules)}
    results = [_sarif_result(f, index, locations) for f in result.findings]
    results += [
        {**_sarif_result(f, index, locations), "suppressions": [{"kind": "external", "justification": s.reason}]}
        for f, s in result.suppressed
    ]
    log = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "rlsctl",
                        "version": rlsctl_version(),
                        "informationUri": "https://example.invalid/rlsctl/docs/lint-rules.md",
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2, sort_keys=True) + "\n"


def _sarif_result(finding: Finding, index: dict[str, int], locations: Locations) -> dict[str, object]:
    location: dict[str, object] = {
        "logicalLocations": [{"fullyQualifiedName": finding.object, "kind": "object"}],
    }
    declared = _declared_at(finding.object, locations)
    if declared is not None:
        path, line = declared
        physical: dict[str, object] = {"artifactLocation": {"uri": path}}
        if line:
            physical["region"] = {"startLine": line}
        location["physicalLocation"] = physical
    return {
        "ruleId": finding.rule,
        "ruleIndex": index[finding.rule],
        "level": SARIF_LEVEL[finding.level],
        "message": {"text": f"{finding.message}. Fix: {finding.hint}"},
        "locations": [location],
    }


def _declared_at(obj: str, locations: Locations) -> tuple[str, int | None] | None:
    """The declaration of the object or of the nearest object containing it (a policy's table)."""
    probe = obj
    while probe:
        if probe in locations:
            return locations[probe]
        probe = probe.rpartition(".")[0]
    return None
