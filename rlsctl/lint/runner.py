"""Run the rule catalogue over one or more models; apply selection, suppressions and a baseline."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from rlsctl.errors import UsageError
from rlsctl.lint.model import LintModel, Location
from rlsctl.lint.rule import LEVELS, Finding, Rule
from rlsctl.lint.rules import all_rules


@dataclass(frozen=True)
class Suppression:
    rule: str
    reason: str
    scope: str | None  # the qualified table the declaring entry belongs to (None: anywhere)
    object: str | None  # an object of that table ("app_select", "orders.app_select") or a full name
    where: str  # file:line of the declaration
    builtin: bool = False  # rlsctl's, for its own objects: never reported unused (a project may not have them)

    def matches(self, finding: Finding) -> bool:
        if finding.rule != self.rule:
            return False
        if self.scope is None:
            return self.object is None or finding.object == self.object
        if self.object is None:
            return finding.object == self.scope or finding.object.startswith(self.scope + ".")
        return finding.object in self.targets()

    def targets(self) -> set[str]:
        """The objects a suppression declared on a table names: the table itself or an object of it (a policy,
        trigger or column: `app_select`, `orders.app_select`), else the object exactly as lint reports it (a
        full name such as `rlsctl.encryption_key`, or a role). Never the same name on another table: a
        suppression on orders does not silence `app_select` on invoices."""
        scope, name = self.scope or "", self.object or ""
        table = scope.partition(".")[2]
        found = {name, f"{scope}.{name.removeprefix(table + '.')}"}
        if name in (table, scope):
            found.add(scope)
        return found


@dataclass(frozen=True)
class LintResult:
    findings: tuple[Finding, ...]  # what counts
    suppressed: tuple[tuple[Finding, Suppression], ...]
    baselined: tuple[Finding, ...]
    rules: tuple[type[Rule], ...]
    unused_suppressions: tuple[Suppression, ...] = ()
    notes: tuple[str, ...] = ()  # facts worth a line that are no finding (where the key-encryption key lives)
    root: str | None = None  # the project's directory: SARIF paths are relative to its repository (lint.report)

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
                if finding.location is None and model.locations:
                    finding = replace(finding, location=locate(finding.object, model.locations))
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
    # A suppression of a rule that did not run (--select, --ignore) is not unused: it was not asked.
    ran = {rule_class.id for rule_class in rules}
    used_at = {(s.rule, s.object, s.where) for s in used}
    unused_by_place = {
        (s.rule, s.object, s.where): s
        for s in suppressions
        if (s.rule, s.object, s.where) not in used_at and s.rule in ran and not s.builtin
    }
    unused = tuple(unused_by_place.values())
    return LintResult(tuple(active), tuple(suppressed), tuple(baselined), rules, unused)


def locate(obj: str, locations: Mapping[str, Location]) -> Location | None:
    """Where `obj` is declared, or the nearest object containing it: a policy, trigger or column falls back
    on its table (`schema.table.policy` -> `schema.table`), a table or function on its schema."""
    probe = obj
    while probe:
        if probe in locations:
            return locations[probe]
        probe = probe.partition("(")[0].rpartition(".")[0]  # `schema.f(a.b)` -> `schema`
    return None


def read_baseline(path: Path) -> set[str]:
    """The finding keys (rule:object) a baseline file records; a file of any other shape is a usage error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read baseline: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f"{path}:{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else str(path)
        raise UsageError(f"{where}: not a baseline file (JSON expected)") from None
    if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
        raise UsageError(f"{path}: not a baseline file (no findings list)")
    keys: set[str] = set()
    for number, item in enumerate(data["findings"], start=1):
        if not (isinstance(item, dict) and isinstance(item.get("rule"), str) and isinstance(item.get("object"), str)):
            raise UsageError(f'{path}: finding {number} of the baseline is not {{"rule": ..., "object": ...}}')
        keys.add(f"{item['rule']}:{item['object']}")
    return keys


def write_baseline(path: Path, result: LintResult) -> int:
    """Record the findings that count and those already baselined (a refresh keeps what still occurs, drops what
    is gone); suppressed findings stay in the policy files. Returns how many were written."""
    recorded = sorted({(f.rule, f.object) for f in (*result.findings, *result.baselined)})
    data = {"findings": [{"rule": rule, "object": obj} for rule, obj in recorded]}
    try:
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot write baseline: {exc.strerror}") from None
    return len(recorded)
