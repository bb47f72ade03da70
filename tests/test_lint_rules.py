"""Every lint rule's own examples, on a real database and offline.

The `Bad:` example of each rule's docstring must produce that rule's finding,
the `Good:` example must not, both when the SQL runs on a server and the
catalog is linted live and, for rules that read SQL, when the same SQL is
linted as a file. A `Good:` example is good under every rule: no rule finds
anything at warning level or above in it. Rules that only read SQL files
run their examples on a server too, and a catalog query shows the bad one
leaves what the rule reports. Role names ending in `_role` get the test's
prefix.
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


GOOD_LIVE = [rule for rule in RULES if "live" in rule.sources]
GOOD_OFFLINE = [rule for rule in RULES if "sql" in rule.sources]
SQL_ONLY = [rule for rule in RULES if "live" not in rule.sources]
# For the rules that read SQL only: what the bad example leaves in the catalog, as a count that is 0 for the good one.
CATALOG_PROBES = {
    "RLS002": """SELECT count(*) FROM pg_catalog.pg_class AS c
                 WHERE c.relkind IN ('r', 'p') AND c.relnamespace = 'public'::regnamespace AND NOT c.relrowsecurity""",
    "SEC017": """SELECT count(*) FROM pg_catalog.pg_namespace AS n
                 CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) AS a
                 WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
                   AND a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner""",
}
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
    assert len(RULES) >= 44
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


def warnings_and_errors(model: LintModel) -> list:
    return [f for f in run([model]).findings if f.level != "info"]


@pytest.mark.parametrize("rule", GOOD_LIVE, ids=[r.id for r in GOOD_LIVE])
def test_good_examples_are_clean_under_every_rule_live(make_db, rule):
    database = make_db()
    with database.connect() as conn:
        conn.execute(prefixed(rule.example("Good"), database.prefix).encode())
        model = live.read_model(conn)
    found = warnings_and_errors(model)
    assert not found, f"{rule.id}'s good example: {[(f.rule, f.object, f.message) for f in found]}"


@pytest.mark.parametrize("rule", GOOD_OFFLINE, ids=[r.id for r in GOOD_OFFLINE])
def test_good_examples_are_clean_under_every_rule_offline(rule):
    model = sqlfiles.replay(LintModel(source="sql"), rule.example("Good"), f"{rule.id} example")
    found = warnings_and_errors(model)
    assert not found, f"{rule.id}'s good example: {[(f.rule, f.object, f.message) for f in found]}"


@pytest.mark.parametrize("rule", SQL_ONLY, ids=[r.id for r in SQL_ONLY])
@pytest.mark.parametrize("label", ["Bad", "Good"])
def test_sql_only_examples_are_real_on_a_server(make_db, rule, label):
    """The SQL runs on PostgreSQL, and the catalog shows what the rule reports in the bad case only."""
    database = make_db()
    with database.connect() as conn:
        conn.execute(prefixed(rule.example(label), database.prefix).encode())
        count = conn.execute(CATALOG_PROBES[rule.id]).fetchone()[0]
    assert (count > 0) == (label == "Bad"), f"{rule.id} {label}: the catalog probe counted {count}"


def test_every_sql_only_rule_has_a_catalog_probe():
    assert {rule.id for rule in SQL_ONLY} == set(CATALOG_PROBES)


def test_the_readme_states_the_rule_count():
    from tests.conftest import ROOT

    assert f"| {len(RULES)} rules for RLS and Postgres security" in (ROOT / "README.md").read_text()
