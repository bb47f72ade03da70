"""Lint names the real cause, once: OR branches, fail-open fallbacks, open write checks, helper functions.

Each case runs offline (the SQL replayed) and live (the SQL executed on a real
server and its catalog linted): both must give the same findings. Where a
finding claims a behaviour (every row visible, recursion), a test shows it on
the server too.
"""

from __future__ import annotations

import re

import psycopg
import pytest

from rlsctl.lint import live, sqlfiles
from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding
from rlsctl.lint.runner import run

ROLE = re.compile(r"\b([a-z][a-z0-9_]*_role)\b")
IDENTITY = "(SELECT NULLIF(current_setting('app.tenant_id', true), '')::int)"
TABLE = f"""
CREATE ROLE app_role;
CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int, owner_id int, deleted_at date);
CREATE INDEX ON invoice (tenant_id);
CREATE INDEX ON invoice (owner_id);
CREATE INDEX ON invoice (deleted_at);
ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE ON invoice TO app_role;
INSERT INTO invoice VALUES (1, 1, 1, NULL), (2, 2, 2, NULL);
"""
MODES = ["offline", "live"]


def prefixed(sql: str, prefix: str) -> str:
    return ROLE.sub(lambda m: prefix + m.group(1), sql)


def lint_sql(mode: str, sql: str, make_db) -> tuple[dict[str, list[Finding]], str]:
    """Findings by rule, and the role prefix used (live roles carry the test database's prefix)."""
    if mode == "offline":
        model = sqlfiles.replay(LintModel(source="sql"), sql, "case.sql")
        prefix = ""
    else:
        database = make_db()
        prefix = database.prefix
        with database.connect() as conn:
            conn.execute(prefixed(sql, prefix).encode())
            model = live.read_model(conn)
    found: dict[str, list[Finding]] = {}
    for finding in run([model]).findings:
        found.setdefault(finding.rule, []).append(finding)
    return found, prefix


def on(found: dict[str, list[Finding]], rule: str, obj: str) -> list[Finding]:
    return [f for f in found.get(rule, []) if f.object == obj]


def policy_rules(found: dict[str, list[Finding]], obj: str) -> set[str]:
    return {rule for rule, items in found.items() if any(f.object == obj for f in items)}


# -- 1. an OR branch that is always true opens the policy -----------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("branch", ["1 = 1", "true", "'a' = 'a'", "invoice.tenant_id = invoice.tenant_id"])
def test_a_tautological_or_branch_for_public_is_rls006(mode, branch, make_db):
    sql = TABLE + f"CREATE POLICY p ON invoice FOR SELECT USING (tenant_id = {IDENTITY} OR {branch});"
    found, _ = lint_sql(mode, sql, make_db)
    (finding,) = on(found, "RLS006", "public.invoice.p")
    assert "of an OR makes its USING true for every row" in finding.message
    assert policy_rules(found, "public.invoice.p") == {"RLS006"}, found  # one cause, one rule


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("branch", ["true", "1 = 1", "2 > 1", "NOT false"])
def test_a_tautological_or_branch_for_a_named_role_is_rls007(mode, branch, make_db):
    sql = TABLE + f"CREATE POLICY p ON invoice FOR SELECT TO app_role USING (tenant_id = {IDENTITY} OR {branch});"
    found, _ = lint_sql(mode, sql, make_db)
    (finding,) = on(found, "RLS007", "public.invoice.p")
    assert "of an OR in its USING makes the policy true for every row" in finding.message
    assert policy_rules(found, "public.invoice.p") == {"RLS007"}, found


def test_the_tautological_branch_really_opens_every_row(db):
    with db.connect() as conn:
        conn.execute(prefixed(TABLE, db.prefix).encode())
        conn.execute(
            prefixed(
                f"CREATE POLICY p ON invoice FOR SELECT TO app_role USING (tenant_id = {IDENTITY} OR 1 = 1)", db.prefix
            )
        )
        with conn.transaction(force_rollback=True):
            conn.execute(prefixed("SET LOCAL ROLE app_role", db.prefix))
            conn.execute("SELECT set_config('app.tenant_id', '1', true)")
            assert conn.execute("SELECT count(*) FROM invoice").fetchone()[0] == 2  # tenant 2's row too


@pytest.mark.parametrize("mode", MODES)
def test_an_unscoped_or_branch_is_named(mode, make_db):
    sql = TABLE + (
        f"CREATE POLICY p ON invoice FOR SELECT TO app_role USING (tenant_id = {IDENTITY} "
        "OR (SELECT current_setting('app.support', true)) = 'on');"
        f"CREATE POLICY q ON invoice FOR UPDATE TO app_role USING (tenant_id = {IDENTITY} OR deleted_at IS NULL);"
    )
    found, _ = lint_sql(mode, sql, make_db)
    (p,) = on(found, "RLS007", "public.invoice.p")
    assert "current_setting('app.support', TRUE)" in p.message and "reads no column" in p.message
    (q,) = on(found, "RLS007", "public.invoice.q")
    assert "deleted_at IS NULL" in q.message and "compares the row only with constants" in q.message


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "condition",
    [
        f"tenant_id = {IDENTITY} OR owner_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int)",
        f"tenant_id = {IDENTITY} OR tenant_id IS NULL",  # shared rows of no tenant, not every tenant's
        f"1 = 2 OR tenant_id = {IDENTITY}",
        f"(tenant_id = {IDENTITY} OR 1 = 1) AND owner_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int)",
    ],
)
def test_scoped_branches_are_clean(mode, condition, make_db):
    sql = TABLE + f"CREATE POLICY p ON invoice FOR SELECT TO app_role USING ({condition});"
    found, _ = lint_sql(mode, sql, make_db)
    assert not policy_rules(found, "public.invoice.p") & {"RLS006", "RLS007", "RLS012", "RLS014"}, found


# -- 3. the real cause: fail-open fallbacks and open write checks ------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "condition",
    [
        f"tenant_id = COALESCE({IDENTITY}, tenant_id)",
        f"COALESCE(tenant_id = {IDENTITY}, true)",
    ],
)
def test_a_coalesce_fallback_fails_open_under_rls014_only(mode, condition, make_db):
    sql = TABLE + f"CREATE POLICY p ON invoice FOR SELECT TO app_role USING ({condition});"
    found, _ = lint_sql(mode, sql, make_db)
    (finding,) = on(found, "RLS014", "public.invoice.p")
    assert "when the identity is missing" in finding.message
    assert policy_rules(found, "public.invoice.p") == {"RLS014"}, found
    assert on(found, "RLS014", "public.invoice.p")[0].level == "error"


def test_the_coalesce_fallback_really_shows_every_row_without_identity(db):
    with db.connect() as conn:
        conn.execute(prefixed(TABLE, db.prefix).encode())
        conn.execute(
            prefixed(
                f"CREATE POLICY p ON invoice FOR SELECT TO app_role USING (tenant_id = COALESCE({IDENTITY}, tenant_id))",
                db.prefix,
            )
        )
        with conn.transaction(force_rollback=True):
            conn.execute(prefixed("SET LOCAL ROLE app_role", db.prefix))
            assert conn.execute("SELECT count(*) FROM invoice").fetchone()[0] == 2


@pytest.mark.parametrize("mode", MODES)
def test_a_write_check_that_scopes_nothing_is_rls012(mode, make_db):
    sql = TABLE + (
        "CREATE POLICY ins ON invoice FOR INSERT TO app_role WITH CHECK (tenant_id IS NOT NULL);"
        f"CREATE POLICY upd ON invoice FOR UPDATE TO app_role USING (tenant_id = {IDENTITY}) "
        "WITH CHECK (tenant_id IS NOT NULL);"
        f"CREATE POLICY ins_or ON invoice FOR INSERT TO app_role WITH CHECK (tenant_id = {IDENTITY} OR 1 = 1);"
    )
    found, _ = lint_sql(mode, sql, make_db)
    for name in ("ins", "upd", "ins_or"):
        obj = f"public.invoice.{name}"
        (finding,) = on(found, "RLS012", obj)
        assert finding.level == "error" and "tenant" in finding.message
        assert policy_rules(found, obj) == {"RLS012"}, (name, found)


def test_the_open_check_really_writes_into_another_tenant(db):
    with db.connect() as conn:
        conn.execute(prefixed(TABLE, db.prefix).encode())
        conn.execute(
            prefixed(
                "CREATE POLICY ins ON invoice FOR INSERT TO app_role WITH CHECK (tenant_id IS NOT NULL)", db.prefix
            )
        )
        with conn.transaction(force_rollback=True):
            conn.execute(prefixed("SET LOCAL ROLE app_role", db.prefix))
            conn.execute("SELECT set_config('app.tenant_id', '1', true)")
            conn.execute("INSERT INTO invoice (id, tenant_id) VALUES (3, 2)")  # tenant 1 writes into tenant 2


@pytest.mark.parametrize("mode", MODES)
def test_a_check_scoping_another_column_is_rls013_not_rls012(mode, make_db):
    sql = TABLE + (
        f"CREATE POLICY upd ON invoice FOR UPDATE TO app_role USING (tenant_id = {IDENTITY}) "
        "WITH CHECK (owner_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int));"
    )
    found, _ = lint_sql(mode, sql, make_db)
    assert policy_rules(found, "public.invoice.upd") == {"RLS013"}, found


def test_denied_without_the_tautology(db):
    """The control for the tests above: the same table, scoped, shows one tenant's row."""
    with db.connect() as conn:
        conn.execute(prefixed(TABLE, db.prefix).encode())
        conn.execute(
            prefixed(f"CREATE POLICY p ON invoice FOR SELECT TO app_role USING (tenant_id = {IDENTITY})", db.prefix)
        )
        with conn.transaction(force_rollback=True):
            conn.execute(prefixed("SET LOCAL ROLE app_role", db.prefix))
            conn.execute("SELECT set_config('app.tenant_id', '1', true)")
            assert conn.execute("SELECT count(*) FROM invoice").fetchone()[0] == 1
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("INSERT INTO invoice (id, tenant_id) VALUES (3, 2)")
