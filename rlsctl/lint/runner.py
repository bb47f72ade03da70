"""Run the rule catalogue over one or more models; apply selection, suppressions and a baseline."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rlsctl.errors import UsageError
from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import LEVELS, Finding, Rule
from rlsctl.lint.rules import all_rules


@dataclass(frozen=True)
class Suppression:
    rule: str
    reason: str
    scope: str | None  # the qualified table the declaring entry belongs to (None: anywhere)
    object: str | None  # an object inside that scope, e.g. "orders.app_select"
    where: str  # file:line of the declaration

    def matches(self, finding: Finding) -> bool:
        if finding.rule != self.rule:
            return False
        if self.object is not None:
            return finding.object == self.object or finding.object.endswith("." + self.object)
        if self.scope is None:
            return True
        return finding.object == self.scope or finding.object.startswith(self.scope + ".")


@dataclass(frozen=True)
class LintResult:
    findings: tuple[Finding, ...]  # what counts
    suppressed: tuple[tuple[Finding, Suppression], ...]
    baselined: tuple[Finding, ...]
    rules: tuple[type[Rule], ...]
    unused_suppressions: tuple[Suppression, ...] = ()

    def at_or_above(self, level: str) -> tuple[Finding, ...]:
        threshold = LEVELS.index(level)
        return tuple(f for f in self.findings if LEVELS.index(f.level) >= threshold)


def chosen_rules(select: Iterable[str] = (), ignore: Iterable[str] = ()) -> tuple[type[Rule], ...]:
    rules = all_rules()
    known = {rule.id for rule in rules}
    for rule_id in [*select, *ignore]:
        if rule_id not in known:
            raise UsageError(f"unknown lint rule {rule_id!r} (see docs/lint-rules.md)")
    selected = set(select)
    return tuple(r for r in rules if (not selected or r.id in selected) and r.id not in set(ignore))


def run(
    models: list[LintModel],
    *,
    select: Iterable[str] = (),
    ignore: Iterable[str] = (),
    suppressions: Iterable[Suppression] = (),
    baseline: set[str] | None = None,
) -> LintResult:
    rules = chosen_rules(select, ignore)
    raw: dict[str, Finding] = {}
    for model in models:
        for rule_class in rules:
            if model.source not in rule_class.sources:
                continue
            for finding in rule_class().check(model):
                raw.setdefault(finding.key, finding)  # the same finding from project and live counts once
    suppressions = tuple(suppressions)
    active: list[Finding] = []
    suppressed: list[tuple[Finding, Suppression]] = []
    baselined: list[Finding] = []
    used: set[Suppression] = set()
    for finding in sorted(raw.values(), key=lambda f: (-LEVELS.index(f.level), f.rule, f.object)):
        match = next((s for s in suppressions if s.matches(finding)), None)
        if match is not None:
            suppressed.append((finding, match))
            used.add(match)
        elif baseline is not None and finding.key in baseline:
            baselined.append(finding)
        else:
            active.append(finding)
    # A declaration copied to several tables (every_table) is unused only when no copy was used.
    used_at = {(s.rule, s.object, s.where) for s in used}
    unused_by_place = {
        (s.rule, s.object, s.where): s for s in suppressions if (s.rule, s.object, s.where) not in used_at
    }
    unused = tuple(unused_by_place.values())
    return LintResult(tuple(active), tuple(suppressed), tuple(baselined), rules, unused)


def read_baseline(path: Path) -> set[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read baseline: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: not a baseline file (JSON expected)") from None
    if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
        raise UsageError(f"{path}: not a baseline file (no findings list)")
    return {f"{item['rule']}:{item['object']}" for item in data["findings"]}


def write_baseline(path: Path, result: LintResult) -> None:
    data = {"findings": [{"rule": f.rule, "object": f.object} for f in result.findings]}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
