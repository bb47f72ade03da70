"""Lint results as text (grouped by severity), JSON, or SARIF 2.1.0 for code-scanning UIs."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import quote

from rich.console import Console
from rich.markup import escape

from rlsctl.lint.model import Location
from rlsctl.lint.rule import LEVELS, Finding
from rlsctl.lint.runner import LintResult, Suppression

COLOURS = {"error": "bold red", "warning": "yellow", "info": "cyan"}
SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SRCROOT = "%SRCROOT%"  # the uriBaseId of every path: the repository holding the project (see source_root)
FINGERPRINT = "rlsctl/v1"  # the partialFingerprints key: Finding.fingerprint


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
        console.print(
            f"[dim]SUPPRESSED ({len(result.suppressed)}), with the reasons written in the policy files "
            "(or by rlsctl, for its own objects)[/]"
        )
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


def _finding(finding: Finding) -> dict[str, object]:
    data: dict[str, object] = {
        "rule": finding.rule,
        "level": finding.level,
        "object": finding.object,
        "message": finding.message,
        "hint": finding.hint,
    }
    if finding.indexes:  # RLS010's: what `--write-index-phase` would build, for CI that builds its own
        data["indexes"] = [{"schema": s, "table": t, "columns": list(c)} for s, t, c in finding.indexes]
    return data


def to_json(result: LintResult) -> str:
    data = {
        "findings": [_finding(f) for f in result.findings],
        "suppressed": [{**_finding(f), "reason": s.reason, "suppressed_at": s.where} for f, s in result.suppressed],
        "baselined": [_finding(f) for f in result.baselined],
        "notes": list(result.notes),
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def to_sarif(result: LintResult) -> str:
    """SARIF 2.1.0. Each result has the object's qualified name as its logical location and, when lint knows
    where the object is declared, its file (relative to the repository, `%SRCROOT%`), line and column as its
    physical location; and a fingerprint that does not depend on the line (`partialFingerprints`)."""
    root = source_root(result.root)
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
    results = [_sarif_result(f, index, root) for f in result.findings]
    results += [
        {**_sarif_result(f, index, root), "suppressions": [_sarif_suppression(s, root)]} for f, s in result.suppressed
    ]
    root_uri = root.as_uri()
    log = {
        "$schema": SARIF_SCHEMA,
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
                "originalUriBaseIds": {
                    SRCROOT: {
                        "uri": root_uri if root_uri.endswith("/") else root_uri + "/",
                        "description": {"text": "The repository (or directory) holding the linted project."},
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2, sort_keys=True) + "\n"


def source_root(project_root: str | None) -> Path:
    """The directory SARIF paths are relative to: the git repository holding the project (code scanning reads
    paths relative to the repository's root), else the project's directory; without a project, the same
    search from the working directory."""
    start = Path(project_root).resolve() if project_root else Path.cwd().resolve()
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return start


def _sarif_result(finding: Finding, index: dict[str, int], root: Path) -> dict[str, object]:
    location: dict[str, object] = {
        "logicalLocations": [{"fullyQualifiedName": finding.object, "kind": "object"}],
    }
    if finding.location is not None:
        location["physicalLocation"] = _physical(finding.location, root)
    return {
        "ruleId": finding.rule,
        "ruleIndex": index[finding.rule],
        "level": SARIF_LEVEL[finding.level],
        "message": {"text": f"{finding.message}. Fix: {finding.hint}"},
        "locations": [location],
        "partialFingerprints": {FINGERPRINT: finding.fingerprint},
    }


def _physical(location: Location, root: Path) -> dict[str, object]:
    path = Path(location.path)
    absolute = (path if path.is_absolute() else Path.cwd() / path).resolve()
    try:
        artifact = {"uri": quote(absolute.relative_to(root).as_posix()), "uriBaseId": SRCROOT}
    except ValueError:  # outside the repository: an absolute URI
        artifact = {"uri": absolute.as_uri()}
    physical: dict[str, object] = {"artifactLocation": artifact}
    if location.line:
        region: dict[str, int] = {"startLine": location.line}
        if location.column:
            region["startColumn"] = location.column
        physical["region"] = region
    return physical


def _sarif_suppression(suppression: Suppression, root: Path) -> dict[str, object]:
    """An accepted finding: the reason, and the policy-file line of the `suppress:` entry (`where`)."""
    found: dict[str, object] = {"kind": "external", "justification": suppression.reason}
    path, _, line = suppression.where.rpartition(":")
    if path and line.isdigit():
        found["location"] = {"physicalLocation": _physical(Location(path, int(line)), root)}
    return found
