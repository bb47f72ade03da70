"""Which policies, and which OR branches of each, decided at least one cell of `rlsctl test`.

A policy is covered when some cell the database allowed passed through it: the policy
of the principal's role for the cell's command held for the row (USING on the old row,
the check on the new one). A branch is one alternative of the policy's `any:` (an OR
at the top of the rule, or inside the AND that rlsctl builds around it): covered when,
on such a cell, the policy held *and* that alternative held. An uncovered policy or
branch is one the fixtures never exercise: a mistake there would pass `rlsctl test`.

The policies are evaluated in Python over the fixture rows (rlsctl/tester/evaluate.py),
only to attribute cells the database itself allowed; nothing here judges a cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlsctl.declare import expr as e
from rlsctl.declare.state import DeclaredState, PolicySpec
from rlsctl.pg.sql import ident
from rlsctl.pg.templates import call_macro
from rlsctl.tester.evaluate import EvalError, Evaluator, Principal

Row = dict[str, Any]


@dataclass(frozen=True)
class Branch:
    policy: str  # "Table.policy_name"
    part: str  # using | check
    index: int
    text: str  # the alternative, briefly


@dataclass
class Coverage:
    policies: dict[str, bool] = field(default_factory=dict)  # "Table.policy" -> covered
    branches: dict[Branch, bool] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)  # roles no principal acts as

    @property
    def uncovered_policies(self) -> list[str]:
        return sorted(name for name, covered in self.policies.items() if not covered)

    @property
    def uncovered_branches(self) -> list[Branch]:
        return sorted((b for b, covered in self.branches.items() if not covered),
                      key=lambda b: (b.policy, b.part, b.index))  # fmt: skip

    def summary(self) -> str:
        covered = sum(self.policies.values())
        branches = sum(self.branches.values())
        skipped = f" (not counted: the policies of {', '.join(sorted(self.skipped))}, whom no principal acts as)"
        return (f"coverage: {covered} of {len(self.policies)} policies and {branches} of {len(self.branches)} "
                f"OR branches decided at least one allowed cell{skipped if self.skipped else ''}")  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return {
            "policies": {"covered": sum(self.policies.values()), "total": len(self.policies),
                         "uncovered": self.uncovered_policies, "roles_not_counted": sorted(self.skipped)},
            "branches": {"covered": sum(self.branches.values()), "total": len(self.branches),
                         "uncovered": [{"policy": b.policy, "part": b.part, "index": b.index, "branch": b.text}
                                       for b in self.uncovered_branches]},
        }  # fmt: skip


def alternatives(pred: e.Pred | None) -> tuple[e.Pred, ...]:
    """The OR branches of a policy's condition: its own `any`, or, inside the AND rlsctl builds
    around a rule (the rule first, then the role's SELECT rule for an UPDATE or DELETE), the first
    `any`. A condition without any has one branch."""
    if pred is None:
        return ()
    if isinstance(pred, e.Or):
        return pred.items
    if isinstance(pred, e.And):
        ors = [item for item in pred.items if isinstance(item, e.Or)]
        if ors:
            return ors[0].items
    return (pred,)


@dataclass(frozen=True)
class Allowed:
    """A cell the database allowed, as coverage needs it."""

    table: str
    command: str
    principal: Principal
    old: Row  # the row read, updated or deleted; the new row of an insert
    new: Row | None  # an update's new row


def coverage(
    state: DeclaredState, world: dict[str, list[Row]], allowed: list[Allowed], roles: set[str],
    templates: Path | None = None,
) -> Coverage:
    """Coverage of the policies of `roles` (the role keys some principal acts as: the policies of
    the others, such as the definer's, run only inside rlsctl's helper functions)."""
    found = Coverage()
    for table in state.tables:
        for policy in table.policies:
            if policy.role_key not in roles:
                found.skipped.add(policy.role_key)
                continue
            label = f"{table.name}.{policy.name}"
            found.policies[label] = False
            for part, pred in (("using", policy.using), ("check", policy.check)):
                for index, branch in enumerate(alternatives(pred)):
                    text = _brief(state, table.name, branch, templates)
                    found.branches[Branch(label, part, index, text)] = False
    briefs = {(b.policy, b.part, b.index): b for b in found.branches}
    evaluators: dict[str, Evaluator] = {}
    for cell in allowed:
        evaluator = evaluators.setdefault(cell.principal.name, Evaluator(state, world, cell.principal))
        for policy in evaluator.policies(cell.table, cell.command):
            _attribute(found, briefs, evaluator, policy, cell)
    return found


def _attribute(
    found: Coverage, briefs: dict[tuple[str, str, int], Branch], evaluator: Evaluator, policy: PolicySpec,
    cell: Allowed,
) -> None:  # fmt: skip
    label = f"{cell.table}.{policy.name}"
    checks: list[tuple[str, e.Pred | None, Row]] = []
    if cell.command == "insert":
        checks.append(("check" if policy.check is not None else "using", policy.check or policy.using, cell.old))
    else:
        checks.append(("using", policy.using, cell.old))
        if cell.command == "update" and policy.check is not None and cell.new is not None:
            checks.append(("check", policy.check, cell.new))
    for part, pred, row in checks:
        if pred is None or not _holds(evaluator, pred, row):
            continue
        found.policies[label] = True
        for index, branch in enumerate(alternatives(pred)):
            key = briefs[(label, part, index)]
            if not found.branches[key] and _holds(evaluator, branch, row):
                found.branches[key] = True


def _holds(evaluator: Evaluator, pred: e.Pred, row: Row) -> bool:
    try:
        return evaluator.truth(pred, {0: row}) is True
    except EvalError:
        return False


def _brief(state: DeclaredState, table: str, pred: e.Pred, templates: Path | None) -> str:
    """The branch as the SQL of the policy shows it (templates/expr.sql.j2), on one line."""
    text = " ".join(call_macro("expr.sql.j2", "pred", templates, pred, state, {0: ident(table)}).split())
    return text if len(text) <= 160 else text[:157] + "..."
