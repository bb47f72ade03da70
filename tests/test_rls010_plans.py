"""RLS010 (and RLS029, which reports the wrapped columns RLS010 leaves to it) measured against
PostgreSQL's own plans: for each policy on a 50,000-row table, lint reports it exactly when
PostgreSQL reads the table whole for a query that does not filter it itself, and every index
RLS010 proposes, once created, makes PostgreSQL read the table through an index.

The expected values come from the planner, not from the rule: a case fails when the two disagree.
The cases are those an outside check found the rule wrong on, and the shapes around them. Out of
the rule's stated scope, and so not here: an EXISTS alone (read through the query's own filter on
the column it correlates on) and a composite index led by another column (PostgreSQL may scan the
whole index, which is neither a table scan nor the index the rule asks for)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from rlsctl.lint import LintInputs, lint
from tests.conftest import TestDatabase

TENANT = "(SELECT current_setting('app.tenant_id')::int)"
OWNER = "(SELECT current_setting('app.owner_id')::int)"
USER = "current_setting('app.user_id')::int"
MINE = f"SELECT m.tenant_id FROM member m WHERE m.user_id = {USER}"
CORRELATED = f"EXISTS (SELECT 1 FROM member m WHERE m.tenant_id = doc.tenant_id AND m.user_id = {USER})"

# (name, indexes, policies as (name, PERMISSIVE|RESTRICTIVE, USING))
CASES = [
    ("equality, indexed", ["(tenant_id)"], [("p", "PERMISSIVE", f"tenant_id = {TENANT}")]),
    ("equality, unindexed", [], [("p", "PERMISSIVE", f"tenant_id = {TENANT}")]),
    ("= ANY of an array subquery", [], [("p", "PERMISSIVE", f"tenant_id = ANY (ARRAY({MINE}))")]),
    ("IN a list", [], [("p", "PERMISSIVE", "tenant_id IN (1, 2, 3)")]),
    ("IN a subquery, indexed", ["(tenant_id)"], [("p", "PERMISSIVE", f"tenant_id IN ({MINE})")]),
    ("IN a subquery", [], [("p", "PERMISSIVE", f"tenant_id IN ({MINE})")]),
    ("range", [], [("p", "PERMISSIVE", "created_at > (SELECT current_setting('app.since')::timestamptz)")]),
    ("IS NULL", [], [("p", "PERMISSIVE", "archived_at IS NULL")]),
    ("<>, indexed", ["(status)"], [("p", "PERMISSIVE", "status <> 'active'")]),
    ("IS NOT DISTINCT FROM, indexed", ["(tenant_id)"], [("p", "PERMISSIVE", f"tenant_id IS NOT DISTINCT FROM {TENANT}")]),
    ("an indexed expression", ["(lower(email))"], [("p", "PERMISSIVE", "lower(email) = lower(current_setting('app.email'))")]),
    ("a cast to text, indexed", ["(tenant_id)"], [("p", "PERMISSIVE", "tenant_id::text = current_setting('app.tenant_id')")]),
    ("a cast to text", [], [("p", "PERMISSIVE", "tenant_id::text = current_setting('app.tenant_id')")]),
    ("arithmetic, indexed", ["(tenant_id)"], [("p", "PERMISSIVE", f"tenant_id + 0 = {TENANT}")]),
    ("arithmetic, an indexed expression", ["((tenant_id + 0))"], [("p", "PERMISSIVE", f"tenant_id + 0 = {TENANT}")]),
    ("a negated column, indexed", ["(tenant_id)"], [("p", "PERMISSIVE", f"-tenant_id = -{TENANT}")]),
    ("a concatenation, indexed", ["(email)"], [("p", "PERMISSIVE", "email || '' = current_setting('app.email')")]),
    ("a constant's column first", [], [("p", "PERMISSIVE", f"status = 'active' AND tenant_id = {TENANT}")]),
    ("OR, both indexed", ["(tenant_id)", "(owner_id)"], [("p", "PERMISSIVE", f"tenant_id = {TENANT} OR owner_id = {OWNER}")]),
    ("OR, one indexed", ["(tenant_id)"], [("p", "PERMISSIVE", f"tenant_id = {TENANT} OR owner_id = {OWNER}")]),
    ("an OR under an AND", ["(tenant_id)"], [("p", "PERMISSIVE", f"status = 'active' AND (tenant_id = {TENANT} OR owner_id = {OWNER})")]),
    ("OR with an EXISTS", ["(tenant_id)", "(owner_id)"], [("p", "PERMISSIVE", f"owner_id = {OWNER} OR {CORRELATED}")]),
    ("OR with IN a subquery", ["(tenant_id)", "(owner_id)"], [("p", "PERMISSIVE", f"owner_id = {OWNER} OR tenant_id IN ({MINE})")]),
    ("OR with an array subquery", ["(tenant_id)", "(owner_id)"], [("p", "PERMISSIVE", f"owner_id = {OWNER} OR tenant_id = ANY (ARRAY({MINE}))")]),
    ("a restrictive EXISTS", ["(tenant_id)"], [("r", "RESTRICTIVE", CORRELATED), ("p", "PERMISSIVE", f"owner_id = {OWNER}")]),
    ("a restrictive equality", ["(tenant_id)"], [("r", "RESTRICTIVE", f"tenant_id = {TENANT}"), ("p", "PERMISSIVE", f"owner_id = {OWNER}")]),
    ("two permissive, one an EXISTS", ["(tenant_id)", "(owner_id)"], [("a", "PERMISSIVE", f"owner_id = {OWNER}"), ("b", "PERMISSIVE", CORRELATED)]),
    ("two permissive, both indexed", ["(tenant_id)", "(owner_id)"], [("a", "PERMISSIVE", f"owner_id = {OWNER}"), ("b", "PERMISSIVE", f"tenant_id = {TENANT}")]),
    ("a partial index on another column's test", ["(tenant_id) WHERE archived_at IS NULL"], [("p", "PERMISSIVE", f"tenant_id = {TENANT}")]),
    ("an expression leading the index", ["(lower(email), tenant_id)"], [("p", "PERMISSIVE", f"tenant_id = {TENANT}")]),
    ("a hash index for a range", ["USING hash (created_at)"], [("p", "PERMISSIVE", "created_at > (SELECT current_setting('app.since')::timestamptz)")]),
    ("a BRIN index", ["USING brin (tenant_id)"], [("p", "PERMISSIVE", f"tenant_id = {TENANT}")]),
    ("a boolean flag, indexed", ["(tenant_id)", "(is_public)"], [("p", "PERMISSIVE", f"is_public OR tenant_id = {TENANT}")]),
    ("a boolean flag", ["(tenant_id)"], [("p", "PERMISSIVE", f"is_public OR tenant_id = {TENANT}")]),
]  # fmt: skip

TABLE = """CREATE TABLE doc (id int PRIMARY KEY, tenant_id int NOT NULL, owner_id int NOT NULL, email text NOT NULL,
    status text NOT NULL, created_at timestamptz NOT NULL, archived_at timestamptz, is_public boolean NOT NULL)"""
MEMBER = "CREATE TABLE member (user_id int NOT NULL, tenant_id int NOT NULL)"


def ddl(indexes: list[str], policies: list[tuple[str, str, str]], app: str) -> list[str]:
    statements = [f"CREATE INDEX ON doc {index}" for index in indexes]
    statements.append("ALTER TABLE doc ENABLE ROW LEVEL SECURITY")
    statements += [f"CREATE POLICY {name} ON doc AS {kind} FOR SELECT TO {app} USING ({using})"
                   for name, kind, using in policies]  # fmt: skip
    return statements


@pytest.fixture(scope="module")
def loaded(make_module_db) -> TestDatabase:
    """Selective predicates: a tenant holds 0.1% of the rows, an owner 0.02%, 0.5% are archived,
    0.2% public, 1% not 'active', 3% from the last day."""
    database = make_module_db()
    with database.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(database.role("app"))))
        conn.execute(MEMBER)
        conn.execute("CREATE INDEX ON member (user_id, tenant_id)")
        conn.execute("INSERT INTO member SELECT g % 5000, g % 1000 FROM generate_series(1, 20000) g")
        conn.execute(TABLE.replace("CREATE TABLE doc", "CREATE TABLE base"))
        conn.execute(
            """INSERT INTO base SELECT g, g % 1000, g % 5000, 'user' || g || '@example.com',
                      CASE WHEN g % 100 = 0 THEN 'deleted' ELSE 'active' END,
                      now() - (g % 100) * interval '1 day' - interval '1 hour',
                      CASE WHEN g % 200 = 0 THEN NULL ELSE now() END, g % 500 = 0
               FROM generate_series(1, 50000) g"""
        )
        conn.execute("ANALYZE member")
        conn.execute("ANALYZE base")
    return database


def reads(conn: psycopg.Connection, app: str) -> set[str]:
    """How PostgreSQL reads doc for a query of its own with no filter, as the policies' role."""
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(app)))
        for name, value in (("tenant_id", "42"), ("owner_id", "123"), ("user_id", "7"),
                            ("email", "user4242@example.com"), ("since", "2000-01-01")):  # fmt: skip
            conn.execute("SELECT set_config(%s, %s, true)", (f"app.{name}", value))
        conn.execute("SELECT set_config('app.since', (now() - interval '1 day')::text, true)")
        [[plan]] = conn.execute("EXPLAIN (FORMAT JSON) SELECT * FROM doc").fetchall()
    return set(_scans(plan[0]["Plan"]))


def _scans(node: dict) -> list[str]:
    found = [node["Node Type"]] if node.get("Relation Name") == "doc" else []
    return found + [kind for child in node.get("Plans", ()) for kind in _scans(child)]


@pytest.mark.parametrize("name, indexes, policies", CASES, ids=[case[0] for case in CASES])
def test_rls010_reports_what_postgresql_reads_whole(loaded, tmp_path: Path, name, indexes, policies):
    app = loaded.role("app")
    statements = ddl(indexes, policies, app)
    script = tmp_path / "case.sql"
    member_index = "CREATE INDEX ON member (user_id, tenant_id)"
    script.write_text(";\n".join([f"CREATE ROLE {app}", MEMBER, member_index, TABLE, *statements]) + ";\n")
    findings = lint(LintInputs(files=[script]), select=("RLS010", "RLS029")).findings
    with loaded.connect() as conn, conn.transaction(force_rollback=True):
        conn.execute(TABLE)
        conn.execute("INSERT INTO doc SELECT * FROM base")
        conn.execute("ANALYZE doc")
        conn.execute("GRANT SELECT ON doc, member TO " + sql.Identifier(app).as_string(conn))
        for statement in statements:
            conn.execute(statement)
        live = [f for f in lint(LintInputs(conn=conn), select=("RLS010", "RLS029")).findings if ".doc." in f.object]
        scans = reads(conn, app)
        assert bool(findings) == ("Seq Scan" in scans), (scans, [f.message for f in findings])
        # The live catalog says what the files say (its expressions are printed differently).
        assert [(f.rule, f.object, f.indexes) for f in live] == [(f.rule, f.object, f.indexes) for f in findings]
        proposed = [columns for finding in findings for _, table, columns in finding.indexes if table == "doc"]
        for columns in proposed:
            conn.execute(sql.SQL("CREATE INDEX ON doc ({})").format(sql.SQL(", ").join(map(sql.Identifier, columns))))
        if proposed:
            conn.execute("ANALYZE doc")
            after = reads(conn, app)
            assert "Seq Scan" not in after, (proposed, after)


def test_an_invalid_index_serves_no_policy(loaded):
    """A CREATE INDEX CONCURRENTLY that failed leaves an invalid index behind (indisvalid false, what
    `--write-index-phase`'s builds can leave): the planner never uses it, and RLS010 on the live
    catalog reports the policy it would have served."""
    app = loaded.role("app")
    with loaded.connect() as conn, conn.transaction(force_rollback=True):
        conn.execute(TABLE)
        conn.execute("INSERT INTO doc SELECT * FROM base")
        conn.execute("ANALYZE doc")
        conn.execute("GRANT SELECT ON doc TO " + sql.Identifier(app).as_string(conn))
        for statement in ddl(["(tenant_id)"], [("p", "PERMISSIVE", f"tenant_id = {TENANT}")], app):
            conn.execute(statement)
        assert "Seq Scan" not in reads(conn, app)
        assert not [f for f in lint(LintInputs(conn=conn), select=("RLS010",)).findings if ".doc." in f.object]
        # The catalog state a failed concurrent build leaves (rolled back with the transaction).
        conn.execute(
            "UPDATE pg_catalog.pg_index SET indisvalid = false WHERE indrelid = 'doc'::regclass AND NOT indisprimary"
        )
        assert "Seq Scan" in reads(conn, app)
        [finding] = [f for f in lint(LintInputs(conn=conn), select=("RLS010",)).findings if ".doc." in f.object]
        assert [columns for _, _, columns in finding.indexes] == [("tenant_id",)]
