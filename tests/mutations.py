"""One-edit mutants of a project's policy files, for the mutation check (tests/test_mutations.py).

Each mutant changes one thing in one policy file, the way a hurried edit would:

- a rank one step down (`tenant_role: ADMIN` -> MEMBER) or up;
- an API-key scope swapped for another;
- a branch of `any` dropped (narrower), a condition of `all` dropped (wider);
- a `not` removed;
- a whole rule made `true` (anyone) or `false` (nobody);
- a guard dropped, its `require` made `true`, a column of its `changed` list dropped.

The YAML is rewritten from its parsed form (comments go; aliases become copies, so a
mutant changes one use of an anchor only).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rlsctl.declare import expr as e
from rlsctl.declare.state import DeclaredState

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Mutant:
    file: str  # policies/<file>
    table: str
    what: str  # "Prompt app update.check: any[1] dropped"
    path: Path_  # where in the parsed file
    replacement: Any  # the new value at `path`, or DROP to remove it from its list

    def apply_to(self, document: dict[str, Any]) -> dict[str, Any]:
        changed = json.loads(json.dumps(document))  # no shared aliases
        parent = changed
        for key in self.path[:-1]:
            parent = parent[key]
        last = self.path[-1]
        if self.replacement is DROP:
            del parent[last]
        else:
            parent[last] = self.replacement
        return changed


DROP = object()


def mutants(policies: Path, ranks: tuple[str, ...], scopes: tuple[str, ...]) -> Iterator[Mutant]:
    for path in sorted(policies.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        for table, declaration in ((document or {}).get("tables") or {}).items():
            base: Path_ = ("tables", table)
            for role, commands in (declaration.get("policies") or {}).items():
                for command, rule in (commands or {}).items():
                    where: Path_ = (*base, "policies", role, command)
                    label = f"{table} {role} {command}"
                    if isinstance(rule, dict) and ("using" in rule or "check" in rule):
                        for part in ("using", "check"):
                            if part in rule:
                                yield from _condition(path.name, table, f"{label}.{part}", (*where, part), rule[part],
                                                      ranks, scopes, root=True)  # fmt: skip
                    else:
                        yield from _condition(path.name, table, label, where, rule, ranks, scopes, root=True)
            for number, guard in enumerate(declaration.get("guards") or ()):
                yield from _guard(path.name, table, (*base, "guards", number), number, guard, ranks, scopes)


def _condition(file: str, table: str, label: str, where: Path_, node: Any, ranks: tuple[str, ...],
               scopes: tuple[str, ...], root: bool = False) -> Iterator[Mutant]:  # fmt: skip
    if root:
        if node is not True:
            yield Mutant(file, table, f"{label}: rule -> true", where, True)
        if node is not False:
            yield Mutant(file, table, f"{label}: rule -> false", where, False)
    if not isinstance(node, dict) or len(node) != 1:
        return
    (kind, value), = node.items()
    if kind == "tenant_role" and value in ranks:
        index = ranks.index(value)
        if index > 0:
            yield Mutant(file, table, f"{label}: tenant_role {value} -> {ranks[index - 1]}", (*where, kind),
                         ranks[index - 1])  # fmt: skip
        if index < len(ranks) - 1:
            yield Mutant(file, table, f"{label}: tenant_role {value} -> {ranks[index + 1]}", (*where, kind),
                         ranks[index + 1])  # fmt: skip
    elif kind == "api_key" and value in scopes and len(scopes) > 1:
        other = scopes[(scopes.index(value) + 1) % len(scopes)]
        yield Mutant(file, table, f"{label}: api_key {value} -> {other}", (*where, kind), other)
    elif kind in ("any", "all") and isinstance(value, list):
        effect = "branch" if kind == "any" else "condition"
        for number, item in enumerate(value):
            if len(value) > 1:
                yield Mutant(file, table, f"{label}: {kind}[{number}] {effect} dropped ({_short(item)})",
                             (*where, kind, number), DROP)  # fmt: skip
            yield from _condition(file, table, f"{label} {kind}[{number}]", (*where, kind, number), item, ranks,
                                  scopes)  # fmt: skip
    elif kind == "not":
        yield Mutant(file, table, f"{label}: not removed ({_short(value)})", where, value)
        yield from _condition(file, table, f"{label} not", (*where, kind), value, ranks, scopes)


def _guard(file: str, table: str, where: Path_, number: int, guard: dict[str, Any], ranks: tuple[str, ...],
           scopes: tuple[str, ...]) -> Iterator[Mutant]:  # fmt: skip
    label = f"{table} guard[{number}] ({', '.join(guard.get('changed') or ())})"
    yield Mutant(file, table, f"{label}: dropped", where, DROP)
    if "require" in guard and guard["require"] is not True:
        yield Mutant(file, table, f"{label}: require -> true", (*where, "require"), True)
        yield from _condition(file, table, f"{label} require", (*where, "require"), guard["require"], ranks, scopes)
    changed = guard.get("changed") or []
    if len(changed) > 1:
        for index, column in enumerate(changed):
            yield Mutant(file, table, f"{label}: changed {column} dropped", (*where, "changed", index), DROP)


def _short(node: Any) -> str:
    text = json.dumps(node, separators=(",", ":"))
    return text if len(text) <= 60 else text[:57] + "..."


def write_mutant(root: Path, mutant: Mutant, originals: dict[str, str]) -> None:
    """Rewrite the mutant's file under `root` (a copy of the project); `originals` restores it."""
    path = root / "policies" / mutant.file
    document = yaml.safe_load(originals[mutant.file])
    path.write_text(yaml.safe_dump(mutant.apply_to(document), sort_keys=False))


def readers(state: DeclaredState) -> dict[str, set[str]]:
    """Table -> the tables whose policies read it (through subqueries or API-key row helpers)."""
    found: dict[str, set[str]] = {}
    for table in state.tables:
        for policy in table.policies:
            for pred in (policy.using, policy.check):
                if pred is None:
                    continue
                read = e.tables_read(pred) | {n.table for n in e.walk(pred) if isinstance(n, e.InApiKeyRows)}
                for name in read:
                    found.setdefault(name, set()).add(table.name)
    return found


def affected(table: str, state: DeclaredState) -> set[str]:
    """The tables whose cells an edit of `table`'s policies can change: it, and its readers, recursively."""
    by_reader = readers(state)
    found = {table}
    pending = [table]
    while pending:
        for reader in by_reader.get(pending.pop(), set()) - found:
            found.add(reader)
            pending.append(reader)
    return found
