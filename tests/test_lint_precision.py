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

ROLE = re.compile(r"\b(?!pg_has_role\b)([a-z][a-z0-9_]*_role)\b")  # role names, not pg_has_role
IDENTITY = "(SELECT NULLIF(current_setting('app.tenant_id', true), '')::int)"
TABLE = """
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


def lint_sql(mode: str, sql: str, make_db) -> dict[str, list[Finding]]:
    """Findings by rule: of the SQL replayed offline, or executed on a fresh database and linted live."""
    if mode == "offline":
        model = sqlfiles.replay(LintModel(source="sql"), sql, "case.sql")
    else:
        database = make_db()
        with database.connect() as conn:
            conn.execute(prefixed(sql, database.prefix).encode())
            model = live.read_model(conn)
    found: dict[str, list[Finding]] = {}
    for finding in run([model]).findings:
        found.setdefault(finding.rule, []).append(finding)
    return found


def on(found: dict[str, list[Finding]], rule: str, obj: str) -> list[Finding]:
    return [f for f in found.get(rule, []) if f.object == obj]


def policy_rules(found: dict[str, list[Finding]], obj: str) -> set[str]:
    return {rule for rule, items in found.items() if any(f.object == obj for f in items)}


# -- 1. an OR branch that is always true opens the policy -----------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("branch", ["1 = 1", "true", "'a' = 'a'", "invoice.tenant_id = invoice.tenant_id"])
def test_a_tautological_or_branch_for_public_is_rls006(mode, branch, make_db):
    sql = TABLE + f"CREATE POLICY p ON invoice FOR SELECT USING (tenant_id = {IDENTITY} OR {branch});"
    found = lint_sql(mode, sql, make_db)
    (finding,) = on(found, "RLS006", "public.invoice.p")
    assert "of an OR makes its USING true for every row" in finding.message
    assert policy_rules(found, "public.invoice.p") == {"RLS006"}, found  # one cause, one rule


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("branch", ["true", "1 = 1", "2 > 1", "NOT false"])
def test_a_tautological_or_branch_for_a_named_role_is_rls007(mode, branch, make_db):
    sql = TABLE + f"CREATE POLICY p ON invoice FOR SELECT TO app_role USING (tenant_id = {IDENTITY} OR {branch});"
    found = lint_sql(mode, sql, make_db)
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
    found = lint_sql(mode, sql, make_db)
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
    found = lint_sql(mode, sql, make_db)
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
    found = lint_sql(mode, sql, make_db)
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
    found = lint_sql(mode, sql, make_db)
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
    found = lint_sql(mode, sql, make_db)
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


# -- 2. helpers: recursion and missing settings through function bodies -----------------------------------

MEMBERSHIP = """
CREATE ROLE app_role;
CREATE ROLE definer_role;
CREATE TABLE membership (team_id int NOT NULL, user_id int NOT NULL, PRIMARY KEY (team_id, user_id));
CREATE INDEX ON membership (user_id);
ALTER TABLE membership ENABLE ROW LEVEL SECURITY;
ALTER TABLE membership FORCE ROW LEVEL SECURITY;
GRANT SELECT ON membership TO app_role, definer_role;
INSERT INTO membership VALUES (1, 1), (1, 2), (2, 2);
"""
MY_TEAMS = """
CREATE FUNCTION my_teams() RETURNS int[] LANGUAGE {language} STABLE {security}
    SET search_path = pg_catalog, pg_temp
    AS $$ {body} $$;
REVOKE EXECUTE ON FUNCTION my_teams() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION my_teams() TO app_role;
"""
SQL_BODY = (
    "SELECT coalesce(array_agg(team_id), '{}') FROM public.membership "
    "WHERE user_id = NULLIF(current_setting('app.user_id', true), '')::int"
)
PLPGSQL_BODY = (
    "DECLARE found_teams int[]; BEGIN SELECT coalesce(array_agg(m.team_id), '{}') INTO found_teams "
    "FROM public.membership AS m WHERE m.user_id = NULLIF(current_setting('app.user_id', true), '')::int; "
    "RETURN found_teams; END"
)
TEAM_READ = (
    "CREATE POLICY team_read ON membership FOR SELECT TO {to} USING (team_id = ANY ((SELECT my_teams())::int[]));\n"
)
OWN_READ = (
    "CREATE POLICY own_read ON membership FOR SELECT TO definer_role "
    "USING (user_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int));\n"
)
RECURSIVE = {
    # SECURITY INVOKER: the helper reads membership as the caller, through the policy that calls it.
    "invoker-sql": MEMBERSHIP
    + MY_TEAMS.format(language="sql", security="", body=SQL_BODY)
    + TEAM_READ.format(to="app_role"),
    "invoker-plpgsql": MEMBERSHIP
    + MY_TEAMS.format(language="plpgsql", security="", body=PLPGSQL_BODY)
    + TEAM_READ.format(to="app_role"),
    # SECURITY DEFINER, but the policy that calls it applies to its owner too (PUBLIC): it recurses as the owner.
    "definer-under-its-own-policy": MEMBERSHIP
    + MY_TEAMS.format(language="sql", security="SECURITY DEFINER", body=SQL_BODY)
    + "ALTER FUNCTION my_teams() OWNER TO definer_role;\n"
    + TEAM_READ.format(to="PUBLIC"),
}
NOT_RECURSIVE = {
    # The owner reads membership through a policy of its own that calls nothing.
    "definer-with-own-policy": MEMBERSHIP
    + MY_TEAMS.format(language="sql", security="SECURITY DEFINER", body=SQL_BODY)
    + "ALTER FUNCTION my_teams() OWNER TO definer_role;\n"
    + OWN_READ
    + TEAM_READ.format(to="app_role"),
    # The owner owns the table and RLS is not forced: its reads are not subject to the policy.
    "definer-owning-the-table": MEMBERSHIP.replace("ALTER TABLE membership FORCE ROW LEVEL SECURITY;\n", "")
    + "ALTER TABLE membership OWNER TO definer_role;\n"
    + MY_TEAMS.format(language="sql", security="SECURITY DEFINER", body=SQL_BODY)
    + "ALTER FUNCTION my_teams() OWNER TO definer_role;\n"
    + TEAM_READ.format(to="app_role"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(RECURSIVE))
def test_recursion_through_a_helper_is_found(mode, case, make_db):
    found = lint_sql(mode, RECURSIVE[case], make_db)
    (finding,) = on(found, "RLS017", "public.membership.team_read")
    assert "my_teams()" in finding.message and "public.membership" in finding.message


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(NOT_RECURSIVE))
def test_a_definer_helper_reading_outside_the_policy_does_not_recurse(mode, case, make_db):
    found = lint_sql(mode, NOT_RECURSIVE[case], make_db)
    assert not found.get("RLS017"), found["RLS017"]


def _query_as_app(db, setup: str) -> int:
    """Run the case on the server and count membership rows as app_role with user 2 (raises what PostgreSQL
    raises)."""
    with db.connect() as conn:
        conn.execute(prefixed(setup, db.prefix).encode())
        with conn.transaction(force_rollback=True):
            conn.execute(prefixed("SET LOCAL ROLE app_role", db.prefix))
            conn.execute("SELECT set_config('app.user_id', '2', true)")
            return conn.execute("SELECT count(*) FROM membership").fetchone()[0]


@pytest.mark.parametrize("case", sorted(RECURSIVE))
def test_the_recursive_cases_really_fail_on_the_server(case, db):
    with pytest.raises(psycopg.Error, match=r"infinite recursion|stack depth limit exceeded"):
        _query_as_app(db, RECURSIVE[case])


@pytest.mark.parametrize("case", sorted(NOT_RECURSIVE))
def test_the_other_cases_really_work_on_the_server(case, db):
    assert _query_as_app(db, NOT_RECURSIVE[case]) == 3  # the rows of teams 1 and 2, user 2's teams


CURRENT_TENANT = """
CREATE ROLE app_role;
CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
CREATE INDEX ON invoice (tenant_id);
ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
GRANT SELECT ON invoice TO app_role;
CREATE FUNCTION current_tenant() RETURNS int LANGUAGE {language} STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$ {body} $$;
REVOKE EXECUTE ON FUNCTION current_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION current_tenant() TO app_role;
CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role USING (tenant_id = (SELECT current_tenant()));
"""
SETTING_BODIES = {
    "sql": ("sql", "SELECT NULLIF(current_setting('app.tenant_id'), '')::int"),
    "plpgsql": ("plpgsql", "BEGIN RETURN NULLIF(current_setting('app.tenant_id'), '')::int; END"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("language", sorted(SETTING_BODIES))
def test_current_setting_without_missing_ok_inside_a_helper(mode, language, make_db):
    kind, body = SETTING_BODIES[language]
    found = lint_sql(mode, CURRENT_TENANT.format(language=kind, body=body), make_db)
    (finding,) = on(found, "RLS016", "public.current_tenant()")
    assert "current_setting('app.tenant_id')" in finding.message and "public.invoice.tenant_read" in finding.message
    with_ok = body.replace("'app.tenant_id')", "'app.tenant_id', true)")
    found = lint_sql(mode, CURRENT_TENANT.format(language=kind, body=with_ok), make_db)
    assert not found.get("RLS016"), found


def test_built_in_settings_need_no_missing_ok(make_db):
    body = "SELECT CASE WHEN current_setting('transaction_read_only') = 'on' THEN NULL ELSE 1 END"
    found = lint_sql("offline", CURRENT_TENANT.format(language="sql", body=body), make_db)
    assert not found.get("RLS016"), found


def test_the_helper_really_raises_without_the_setting(db):
    kind, body = SETTING_BODIES["sql"]
    with db.connect() as conn:
        conn.execute(prefixed(CURRENT_TENANT.format(language=kind, body=body), db.prefix).encode())
        with conn.transaction(force_rollback=True):
            conn.execute(prefixed("SET LOCAL ROLE app_role", db.prefix))
            with pytest.raises(psycopg.errors.UndefinedObject, match="unrecognized configuration parameter"):
                conn.execute("SELECT count(*) FROM invoice")


# -- 8. renames in replayed SQL ------------------------------------------------------------------------

RENAMES = f"""
CREATE ROLE app_role;
CREATE TABLE a (id int PRIMARY KEY, tenant_id int NOT NULL);
ALTER TABLE a RENAME TO b;
GRANT SELECT ON b TO app_role;
CREATE TABLE note (id int PRIMARY KEY, tenant int NOT NULL);
CREATE INDEX ON note (tenant);
ALTER TABLE note ENABLE ROW LEVEL SECURITY;
ALTER TABLE note FORCE ROW LEVEL SECURITY;
CREATE POLICY p ON note FOR SELECT TO app_role USING (note.tenant = {IDENTITY});
CREATE POLICY open_read ON note FOR SELECT TO app_role USING (true);
ALTER TABLE note RENAME COLUMN tenant TO tenant_id;
ALTER TABLE note RENAME TO memo;
CREATE SCHEMA archive;
ALTER TABLE memo SET SCHEMA archive;
ALTER POLICY open_read ON archive.memo RENAME TO wide_read;
GRANT USAGE ON SCHEMA archive TO app_role;
GRANT SELECT ON archive.memo TO app_role;
"""


@pytest.mark.parametrize("mode", MODES)
def test_renamed_tables_columns_and_policies_are_reported_under_their_new_names(mode, make_db):
    found = lint_sql(mode, RENAMES, make_db)
    objects = {(rule, f.object) for rule, items in found.items() for f in items}
    assert ("RLS001", "public.b") in objects  # created as a, granted as b
    assert not {o for _, o in objects if o in ("public.a", "public.note", "public.memo") or ".note." in o}
    assert ("RLS007", "archive.memo.wide_read") in objects
    assert ("RLS008", "archive.memo") in objects  # both policies followed the table
    # The policy written before the column rename still scopes the row (by tenant_id now) and is indexed.
    assert not {rule for rule, o in objects if o == "archive.memo.p"}, found
    if mode == "offline":
        model = sqlfiles.replay(LintModel(source="sql"), RENAMES, "renames.sql")
        assert "public.b" in model.relations and "public.a" not in model.relations
        assert model.relations["archive.memo"].columns == ["id", "tenant_id"]
        assert {(g.qualified, g.grantee) for g in model.grants if g.kind == "table"} >= {("public.b", "app_role")}


# -- 10. the new rules stay quiet where nothing is wrong ------------------------------------------------


def test_sec017_trusts_roles_the_script_makes_owners_and_never_public(make_db):
    made_owner = """
CREATE ROLE helper_role;
CREATE SCHEMA app;
GRANT USAGE, CREATE ON SCHEMA app TO helper_role;
CREATE OR REPLACE FUNCTION app.tenant_ids() RETURNS int[] LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp AS $$ SELECT ARRAY[1] $$;
ALTER FUNCTION app.tenant_ids() OWNER TO helper_role;
REVOKE CREATE ON SCHEMA app FROM helper_role;
"""
    assert not lint_sql("offline", made_owner, make_db).get("SEC017")
    opened = made_owner.replace("TO helper_role;\nCREATE OR", "TO helper_role, PUBLIC;\nCREATE OR")
    (finding,) = lint_sql("offline", opened, make_db)["SEC017"]
    assert finding.object == "app.tenant_ids()" and "every role (PUBLIC)" in finding.message
    later = "CREATE ROLE dev_role;\nCREATE SCHEMA app;\nCREATE TABLE IF NOT EXISTS app.t (id int PRIMARY KEY);\n"
    later += "GRANT CREATE ON SCHEMA app TO dev_role;\n"  # granted after the statement: nothing to adopt then
    assert not lint_sql("offline", later, make_db).get("SEC017")


@pytest.mark.parametrize("mode", MODES)
def test_sec015_needs_row_level_security_somewhere(mode, make_db):
    function = (
        "CREATE FUNCTION is_large(v numeric) RETURNS boolean LANGUAGE sql IMMUTABLE LEAKPROOF "
        "SET search_path = pg_catalog, pg_temp AS $$ SELECT v > 1000 $$;\n"
    )
    assert not lint_sql(mode, function, make_db).get("SEC015")  # nothing is filtered: nothing can leak
    found = lint_sql(mode, function + TABLE, make_db)
    (finding,) = found["SEC015"]
    assert finding.object == "public.is_large(numeric)" and "nobody audited it" in finding.message


@pytest.mark.parametrize("mode", MODES)
def test_rls026_reads_constants_and_own_role_tests_but_not_real_conditions(mode, make_db):
    sql = TABLE + (
        f"CREATE POLICY p ON invoice FOR SELECT TO app_role USING (tenant_id = {IDENTITY});\n"
        "CREATE POLICY dead ON invoice FOR SELECT TO app_role USING (1 = 0);\n"
        "CREATE POLICY noop ON invoice AS RESTRICTIVE FOR SELECT TO app_role "
        "USING ((SELECT pg_has_role(CURRENT_USER, 'app_role', 'USAGE')));\n"
        "CREATE POLICY real ON invoice AS RESTRICTIVE FOR SELECT TO app_role USING (deleted_at IS NULL);\n"
    )
    found = lint_sql(mode, sql, make_db)
    assert {f.object.rpartition(".")[2] for f in found["RLS026"]} == {"dead", "noop"}


@pytest.mark.parametrize("mode", MODES)
def test_sec016_and_rls025_leave_owner_only_objects_alone(mode, make_db):
    sql = """
CREATE ROLE app_role;
CREATE TABLE invoice (id bigserial PRIMARY KEY, tenant_id int NOT NULL);
CREATE FOREIGN DATA WRAPPER archive_fdw;
CREATE SERVER archive FOREIGN DATA WRAPPER archive_fdw;
CREATE FOREIGN TABLE invoice_archive (id int, tenant_id int) SERVER archive;
GRANT SELECT ON SEQUENCE invoice_id_seq TO app_role;
"""
    found = lint_sql(mode, sql, make_db)
    # app_role reaches no table with RLS: the sequence is not a tenant's window on others; nobody may query
    # the foreign table.
    assert not found.get("SEC016") and not found.get("RLS025"), found


# -- a plan hint's switched-off branch is not "per row"; a look-alike that runs is ----------------------

HELPER = """
CREATE SCHEMA auth;
CREATE FUNCTION auth.tenant_id() RETURNS int LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::int $$;
GRANT USAGE ON SCHEMA auth TO app_role;
"""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("using", "flagged"),
    [
        # rlsctl's shape: the false term comes first, so AND stops before the call
        (f"((tenant_id = {IDENTITY} AND (SELECT 1) = 1) OR ((SELECT 1) <> 1 AND tenant_id = auth.tenant_id()))", False),
        # a subquery that may return no row is NULL, not false: NULL AND x still evaluates x
        ("NOT ((SELECT 1 WHERE false) <> 1 AND NOT (tenant_id = auth.tenant_id()))", True),
        ("(SELECT 1 LIMIT 0) <> 1 AND tenant_id = auth.tenant_id() OR owner_id = 1", True),
        ("NOT (SELECT true WHERE false) AND tenant_id = auth.tenant_id() OR owner_id = 1", True),
        # the false term after the call: the call runs first
        (f"tenant_id = {IDENTITY} OR (auth.tenant_id() = tenant_id AND (SELECT 1) <> 1)", True),
    ],
)
def test_rls009_sees_through_look_alikes_of_the_plan_hint(mode, using, flagged, make_db):
    sql = TABLE + HELPER + f"CREATE POLICY p ON invoice FOR SELECT TO app_role USING ({using});\n"
    found = lint_sql(mode, sql, make_db)
    assert bool(on(found, "RLS009", "public.invoice.p")) is flagged, found.get("RLS009")


# -- a table named like a statement keyword ------------------------------------------------------------


def _renamed(sql: str, name: str) -> str:
    return re.sub(r"\binvoice\b", name, sql)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["comment", "show", "describe", "insert", "refresh"])
def test_a_table_named_like_a_statement_keyword_is_linted_as_any_other(mode, name, make_db):
    """A policy expression that starts with such a name (`comment.owner_id = ...`, as pg_get_expr and
    pglast write it) was once parsed as a command: a scoped policy was reported as opening every row
    (RLS007) and its missing index went unreported (RLS010)."""
    condition = (
        "invoice.owner_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int) "
        f"OR invoice.tenant_id = {IDENTITY}"
    )
    sql = TABLE.replace("CREATE INDEX ON invoice (owner_id);\n", "") + (
        f"CREATE POLICY p ON invoice FOR SELECT TO app_role USING ({condition});"
    )
    found = lint_sql(mode, _renamed(sql, name), make_db)
    assert not on(found, "RLS007", f"public.{name}.p"), found
    (unindexed,) = on(found, "RLS010", f"public.{name}.p")
    assert "owner_id" in unindexed.message


RAW_SETTING = """
CREATE ROLE app_role;
CREATE TABLE note (id int PRIMARY KEY, org_id bigint NOT NULL, owner_name text NOT NULL);
CREATE INDEX ON note (org_id);
CREATE INDEX ON note (owner_name);
ALTER TABLE note ENABLE ROW LEVEL SECURITY;
ALTER TABLE note FORCE ROW LEVEL SECURITY;
GRANT SELECT ON note TO app_role;
INSERT INTO note VALUES (1, 1, ''), (2, 2, 'ann');
CREATE POLICY by_org ON note FOR SELECT TO app_role USING (org_id::text = (SELECT current_setting('app.org', true)));
CREATE POLICY by_name ON note FOR SELECT TO app_role USING (owner_name = (SELECT current_setting('app.name', true)));
"""


@pytest.mark.parametrize("mode", MODES)
def test_rls015_names_a_text_column_and_not_a_number_cast_to_text(mode, make_db):
    """A bigint cast to text never reads '': compared with a setting that reads '', it matches no row
    (an outside check found the rule saying it matched the rows whose org_id is '')."""
    found = lint_sql(mode, RAW_SETTING, make_db)
    assert [f.object for f in found.get("RLS015", [])] == ["public.note.by_name"], found.get("RLS015")
    assert "owner_name is ''" in found["RLS015"][0].message


COALESCED_SETTING = """
CREATE ROLE app_role;
CREATE TABLE note (id int PRIMARY KEY, owner_name text NOT NULL);
CREATE INDEX ON note (owner_name);
ALTER TABLE note ENABLE ROW LEVEL SECURITY;
ALTER TABLE note FORCE ROW LEVEL SECURITY;
GRANT SELECT ON note TO app_role;
INSERT INTO note VALUES (1, ''), (2, 'ann');
CREATE POLICY by_name ON note FOR SELECT TO app_role
    USING (owner_name = (SELECT coalesce(current_setting('app.name', true), '')));
"""


@pytest.mark.parametrize("mode", MODES)
def test_rls015_sees_a_setting_coalesced_to_empty(mode, make_db):
    """An outside check: `coalesce(current_setting(...), '')` compared with a text column was not
    reported, and a session that never set the setting read the rows whose column is ''."""
    found = lint_sql(mode, COALESCED_SETTING, make_db)
    assert [f.object for f in found.get("RLS015", [])] == ["public.note.by_name"], found.get("RLS015")


def test_a_setting_coalesced_to_empty_opens_the_empty_rows_without_any_set_local(db):
    """What the finding says, on the server: no SET LOCAL ever, and the row whose name is '' shows."""
    with db.connect() as conn:
        conn.execute(prefixed(COALESCED_SETTING, db.prefix).encode())
        with conn.transaction(force_rollback=True):
            conn.execute(prefixed("SET LOCAL ROLE app_role", db.prefix))
            assert conn.execute("SELECT id FROM note ORDER BY id").fetchall() == [(1,)]


def test_an_unset_setting_opens_the_text_column_s_empty_rows_only(db):
    with db.connect() as conn:
        conn.execute(prefixed(RAW_SETTING, db.prefix).encode())
        with conn.transaction(force_rollback=True):
            conn.execute(prefixed("SET LOCAL ROLE app_role", db.prefix))
            # Both settings read '' (as after an earlier SET LOCAL on a pooled connection).
            conn.execute("SELECT set_config('app.org', '', true), set_config('app.name', '', true)")
            assert conn.execute("SELECT id FROM note ORDER BY id").fetchall() == [(1,)]  # by_name's row only


GATE_AND_FLOOR = """
CREATE ROLE app_role;
CREATE TABLE item (id int PRIMARY KEY, tenant_id int NOT NULL);
CREATE INDEX ON item (tenant_id);
ALTER TABLE item ENABLE ROW LEVEL SECURITY;
ALTER TABLE item FORCE ROW LEVEL SECURITY;
GRANT SELECT ON item TO app_role;
CREATE POLICY gate ON item AS PERMISSIVE FOR SELECT TO app_role USING (true);
CREATE POLICY floor ON item AS RESTRICTIVE FOR {floor_command} TO PUBLIC
    USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant', true), '')::int));
"""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("floor_command, reported", [("ALL", False), ("SELECT", False), ("UPDATE", True)])
def test_rls007_a_permissive_gate_under_a_restrictive_tenant_floor_opens_nothing(mode, make_db, floor_command,
                                                                                  reported):  # fmt: skip
    """An outside check: `USING (true)` ANDed with a restrictive tenant floor for the same role and
    command reads one tenant's rows, yet RLS007 said it read every row. A floor on another command
    only leaves the gate open."""
    found = lint_sql(mode, GATE_AND_FLOOR.format(floor_command=floor_command), make_db)
    assert bool(on(found, "RLS007", "public.item.gate")) is reported, found.get("RLS007")


OWNER_READS_ALL = """
CREATE ROLE app_role;
CREATE ROLE owner_role;
CREATE TABLE orders (id int PRIMARY KEY, shop_id int NOT NULL, total int NOT NULL);
ALTER TABLE orders OWNER TO owner_role;
CREATE INDEX ON orders (shop_id);
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE orders FORCE ROW LEVEL SECURITY;
GRANT SELECT ON orders TO app_role;
CREATE POLICY app_select ON orders FOR SELECT TO app_role
    USING (shop_id = (SELECT NULLIF(current_setting('app.shop', true), '')::int));
CREATE POLICY owner_select ON orders FOR SELECT TO owner_role USING (true);
CREATE FUNCTION order_totals() RETURNS TABLE (shop_id int, total int) LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT o.shop_id, o.total FROM public.orders AS o $$;
ALTER FUNCTION order_totals() OWNER TO owner_role;
REVOKE EXECUTE ON FUNCTION order_totals() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION order_totals() TO app_role;
"""


@pytest.mark.parametrize("mode", MODES)
def test_sec019_a_definer_function_of_a_role_that_reads_every_row(mode, make_db):
    """Outside checks: a migration login's SECURITY DEFINER function gave the app every shop's orders
    through the owner role's `select: true` (the table forced, so no bypass), and drift, apply and lint
    said nothing."""
    found = lint_sql(mode, OWNER_READS_ALL, make_db)
    (finding,) = on(found, "SEC019", "public.order_totals()")
    assert "through policy owner_select" in finding.message


def test_sec019_the_function_really_reads_every_shop(db):
    with db.connect() as conn:
        conn.execute(prefixed(OWNER_READS_ALL, db.prefix).encode())
        conn.execute("INSERT INTO orders VALUES (1, 1, 10), (2, 2, 20)")
        with conn.transaction(force_rollback=True):
            conn.execute(prefixed("SET LOCAL ROLE app_role", db.prefix))
            conn.execute("SELECT set_config('app.shop', '1', true)")
            assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 1
            assert conn.execute("SELECT count(*) FROM order_totals()").fetchone()[0] == 2


PARTITIONED = """
CREATE ROLE app_role;
CREATE TABLE event (id int, tenant_id int NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);
CREATE INDEX ON event (tenant_id);
CREATE TABLE event_2026 PARTITION OF event FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
ALTER TABLE event ENABLE ROW LEVEL SECURITY;
ALTER TABLE event FORCE ROW LEVEL SECURITY;
ALTER TABLE event_2026 ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_2026 FORCE ROW LEVEL SECURITY;
CREATE POLICY by_tenant ON event FOR SELECT TO app_role
    USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant', true), '')::int));
CREATE POLICY by_tenant ON event_2026 FOR SELECT TO app_role
    USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant', true), '')::int));
GRANT SELECT ON event TO app_role;
"""


@pytest.mark.parametrize("mode", MODES)
def test_rls010_a_partition_has_its_parents_index(mode, make_db):
    """An outside check: offline, a partition's policy was said to filter on a column no index starts
    with, though the parent's index is built on every partition (live was right)."""
    found = lint_sql(mode, PARTITIONED, make_db)
    assert not [f for f in found.get("RLS010", []) if "event_2026" in f.object], found.get("RLS010")
