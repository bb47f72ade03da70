"""Every lint rule's own examples, on a real database and offline.

The `Bad:` example of each rule's docstring must produce that rule's finding,
the `Good:` example must not, both when the SQL runs on a server and the
catalog is linted live and, for rules that read SQL, when the same SQL is
linted as a file. Role names ending in `_role` get the test's prefix.
"""

from __future__ import annotations

import re

import pytest

from rlsctl.lint import live, sqlfiles
from rlsctl.lint.model import LintModel
from rlsctl.lint.rules import all_rules
from rlsctl.lint.runner import run

RULES = all_rules()
ROLE = re.compile(r"\b([a-z][a-z0-9_]*_role)\b")


def prefixed(sql: str, prefix: str) -> str:
    return ROLE.sub(lambda m: prefix + m.group(1), sql)


def ids(rule, label):
    return f"{rule.id}-{label.lower()}"


LIVE = [(rule, label) for rule in RULES for label in ("Bad", "Good") if "live" in rule.sources]
OFFLINE = [(rule, label) for rule in RULES for label in ("Bad", "Good") if "sql" in rule.sources]


@pytest.mark.parametrize("rule, label", LIVE, ids=[ids(r, lbl) for r, lbl in LIVE])
def test_rule_example_live(make_db, rule, label):
    database = make_db()
    with database.connect() as conn:
        conn.execute(prefixed(rule.example(label), database.prefix).encode())
        model = live.read_model(conn)
    found = [f for f in run([model], select=[rule.id]).findings]
    if label == "Bad":
        assert found, f"{rule.id}: the bad example produced no finding"
    else:
        assert not found, f"{rule.id}: the good example produced {found}"


@pytest.mark.parametrize("rule, label", OFFLINE, ids=[ids(r, lbl) for r, lbl in OFFLINE])
def test_rule_example_offline(rule, label):
    model = sqlfiles.replay(LintModel(source="sql"), rule.example(label), f"{rule.id} example")
    found = [f for f in run([model], select=[rule.id]).findings]
    if label == "Bad":
        assert found, f"{rule.id}: the bad example produced no finding offline"
    else:
        assert not found, f"{rule.id}: the good example produced {found} offline"


def test_every_rule_is_documented():
    assert len(RULES) >= 38
    for rule in RULES:
        assert rule.sources, rule.id
        assert re.fullmatch(r"(RLS|SEC)\d{3}", rule.id), rule.id
        assert rule.level in ("info", "warning", "error")
        assert rule.summary() and rule.hint
        assert rule.example("Bad") and rule.example("Good")


def test_rule_reference_is_current():
    from rlsctl.lint.docs import reference
    from tests.conftest import ROOT

    assert (ROOT / "docs" / "lint-rules.md").read_text() == reference(), (
        "run: python -m rlsctl.lint.docs > docs/lint-rules.md"
    )
