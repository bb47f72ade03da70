"""Generate docs/lint-rules.md from the rules' docstrings: `python -m rlsctl.lint.docs > docs/lint-rules.md`.

A test regenerates it and compares, so the reference never falls behind the rules.
"""

from __future__ import annotations

import inspect

from rlsctl.lint.rules import all_rules

HEADER = """# Lint rules

Generated from the rules' docstrings by `python -m rlsctl.lint.docs > docs/lint-rules.md`;
a test checks it is current, and runs every rule's bad and good example on a
real database and offline. How to run lint, suppress a finding or adopt a
baseline: [lint.md](lint.md).

| rule | level | name | checks |
|---|---|---|---|
"""


def reference() -> str:
    rules = all_rules()
    parts = [HEADER]
    for rule in rules:
        where = "live only" if rule.sources == ("live",) else "SQL only" if "live" not in rule.sources else ""
        summary = rule.summary() + (f" ({where})" if where else "")
        parts.append(f"| [{rule.id}](#{rule.id.lower()}) | {rule.level} | `{rule.name}` | {summary} |\n")
    for rule in rules:
        doc = inspect.cleandoc(rule.doc())
        summary, _, rest = doc.partition("\n")
        why = rest.split("\nBad:")[0].strip()
        parts.append(f"\n## {rule.id}\n\n**{rule.name}**, {rule.level}. {summary}\n\n{why}\n\n")
        parts.append(f"Bad:\n\n```sql\n{rule.example('Bad')}```\n\nGood:\n\n```sql\n{rule.example('Good')}```\n\n")
        parts.append(f"Fix: {rule.hint}.\n")
    return "".join(parts)


if __name__ == "__main__":
    print(reference(), end="")
