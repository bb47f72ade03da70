"""Operations offline: every kind renders, reverses into its inverse SQL, and is labelled by its effect."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rlsctl.change import diff as d
from rlsctl.change.diff import NARROWS, NEUTRAL, WIDENS, Irreversible, Operation
from rlsctl.declare.compile import declare
from rlsctl.policy.project import load_project
from rlsctl.state.objects import (
    SEARCH_PATH,
    ActiveKey,
    ColumnGrant,
    DefaultPrivilege,
    EncryptedColumnRecord,
    Extension,
    Function,
    FunctionGrant,
    KeyTable,
    Membership,
    Obj,
    Policy,
    Role,
    Schema,
    SchemaPrivilege,
    TableGrant,
    TableSecurity,
    Trigger,
    UndeclaredTable,
    UntrustedCode,
)
from tests.conftest import ROOT

TEMPLATES = ROOT / "templates"


@pytest.fixture(scope="module")
def state():
    project = load_project(ROOT)
    return declare(project, project.migrated_schema())


def sql_of(op: Operation, state) -> str:
    if op.kind == "column_grant":
        return d.render_group([op], state, TEMPLATES)
    return d.render(op, state, TEMPLATES)


def op(action: str, old: Obj | None, new: Obj | None) -> Operation:
    return Operation(action, old, new, d.effect_of(action, old, new))


ROLE = Role("r", comment="c")
FUNCTION = Function("rlsctl", "f", "text", "text", "sql", "s", True, (SEARCH_PATH,), "\nSELECT 'a'", "o", "x text")
POLICY = Policy("Prompt", "p", "select", True, ("app",), "true", None)
RESTRICTIVE = Policy("Prompt", "p", "select", False, ("app",), "false", None)
TABLE = TableSecurity("Prompt", "owner", True, True)
TRIGGER = Trigger("Team", "zz_rlsctl_guard", "rlsctl", "guard_Team")
GRANT = TableGrant("Prompt", "app", "SELECT")
COLUMN = ColumnGrant("Prompt", "title", "app", "UPDATE")
DEFAULT = DefaultPrivilege("owner", "r", "public", "app", "SELECT")
CREATE_ON_HELPERS = SchemaPrivilege("rlsctl", "definer", "CREATE")
KEY_TABLE = TableSecurity("encryption_key", "keys", True, False, "rlsctl")
BOOKKEEPING = TableSecurity("applied_phase", "owner", False, False, "rlsctl")
AFTER = 'CREATE TRIGGER zz_rlsctl_guard AFTER UPDATE ON public."Team" FOR EACH ROW EXECUTE FUNCTION rlsctl."guard_Team"()'

# (forward operation, in its SQL, in the SQL of its reverse)
CASES = [
    (op("create", None, ROLE), 'CREATE ROLE "r" NOLOGIN', 'DROP ROLE IF EXISTS "r"'),
    (
        op("alter", replace(ROLE, login=True, createdb=True), ROLE),
        'ALTER ROLE "r" NOLOGIN NOCREATEDB NOCREATEROLE',
        'ALTER ROLE "r" LOGIN CREATEDB NOCREATEROLE',
    ),
    (op("refuse", replace(ROLE, superuser=True), ROLE), "", ""),
    (op("grant", None, Membership("g", "m")), 'GRANT "g" TO "m"', 'REVOKE "g" FROM "m"'),
    (op("revoke", Membership("g", "m"), None), 'REVOKE "g" FROM "m"', 'GRANT "g" TO "m"'),
    (op("create", None, Schema("s", "owner")), 'CREATE SCHEMA "s" AUTHORIZATION "owner"', 'DROP SCHEMA "s"'),
    (op("refuse", Schema("s", "x"), Schema("s", "owner")), "", ""),
    (op("needs_dba", UntrustedCode("T", "trigger", "steal", "runs public.steal()"), None), "", ""),
    (op("needs_dba", UndeclaredTable("scratch", "table", False, ("app: SELECT",)), None), "", ""),
    # What only a DBA can do renders nothing: refused (apply stops) or left to the DBA script.
    (op("refuse", None, SchemaPrivilege("extensions", "keys", "USAGE", repairable=False, required=True)), "", ""),
    (op("needs_dba", SchemaPrivilege("extensions", "app", "CREATE", repairable=False), None), "", ""),
    (op("refuse", Extension("pgcrypto", "public", movable=False, writers=("app",)), Extension("pgcrypto", "rlsctl")),
     "", ""),
    (op("refuse", None, FunctionGrant("extensions", "digest", "text, text", "keys", repairable=False, required=True)),
     "", ""),
    (
        op("owner", Schema("s", "owner"), Schema("s", "keys", adopt_from=("owner",))),
        'ALTER SCHEMA "s" OWNER TO "keys"',
        'ALTER SCHEMA "s" OWNER TO "owner"',
    ),
    (
        op("revoke", SchemaPrivilege("rlsctl", "app", "CREATE"), None),
        'REVOKE CREATE ON SCHEMA "rlsctl" FROM "app"',
        'GRANT CREATE ON SCHEMA "rlsctl" TO "app"',
    ),
    (
        op("may_create", None, CREATE_ON_HELPERS),
        'GRANT CREATE ON SCHEMA "rlsctl" TO "definer"',
        'REVOKE CREATE ON SCHEMA "rlsctl" FROM "definer"',
    ),
    (
        op("revoke", DEFAULT, None),
        'ALTER DEFAULT PRIVILEGES FOR ROLE "owner" IN SCHEMA "public" REVOKE SELECT ON TABLES FROM "app"',
        'ALTER DEFAULT PRIVILEGES FOR ROLE "owner" IN SCHEMA "public" GRANT SELECT ON TABLES TO "app"',
    ),
    (
        op("revoke", DefaultPrivilege("owner", "f", None, "PUBLIC", "EXECUTE"), None),
        'ALTER DEFAULT PRIVILEGES FOR ROLE "owner" REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC',
        'ALTER DEFAULT PRIVILEGES FOR ROLE "owner" GRANT EXECUTE ON FUNCTIONS TO PUBLIC',
    ),
    (
        op("create", None, Extension("pgcrypto", "rlsctl")),
        'CREATE EXTENSION IF NOT EXISTS "pgcrypto"',
        'DROP EXTENSION IF EXISTS "pgcrypto"',
    ),
    (op("create", None, FUNCTION), 'FUNCTION "rlsctl"."f"(x text)', 'DROP FUNCTION IF EXISTS "rlsctl"."f"(text)'),
    (op("drop", FUNCTION, None), 'DROP FUNCTION IF EXISTS "rlsctl"."f"(text)', "SELECT 'a'"),
    (op("replace", replace(FUNCTION, body="\nSELECT 'b'"), FUNCTION), "SELECT 'a'", "SELECT 'b'"),
    (
        op("replace", replace(FUNCTION, config=()), FUNCTION),
        "SET search_path = pg_catalog, pg_temp",
        "STABLE SECURITY DEFINER PARALLEL SAFE\nAS",
    ),
    (op("owner", replace(FUNCTION, owner="x"), FUNCTION), 'OWNER TO "o"', 'OWNER TO "x"'),
    (op("recreate", replace(FUNCTION, returns="integer"), FUNCTION), "RETURNS text", "RETURNS integer"),
    (
        op("grant", None, FunctionGrant("rlsctl", "f", "text", "app")),
        'GRANT EXECUTE ON FUNCTION "rlsctl"."f"(text) TO "app"',
        'REVOKE EXECUTE ON FUNCTION "rlsctl"."f"(text) FROM "app"',
    ),
    (op("owner", replace(TABLE, owner="postgres"), TABLE), 'OWNER TO "owner"', 'OWNER TO "postgres"'),
    (op("enable", replace(TABLE, rls_enabled=False), TABLE), "ENABLE ROW LEVEL SECURITY", "DISABLE ROW LEVEL"),
    (op("enable", None, TABLE), "ENABLE ROW LEVEL SECURITY", "DISABLE ROW LEVEL SECURITY"),
    (op("force", replace(TABLE, rls_forced=False), TABLE), " FORCE ROW LEVEL SECURITY", "NO FORCE ROW LEVEL"),
    (op("force", None, TABLE), " FORCE ROW LEVEL SECURITY", "NO FORCE ROW LEVEL SECURITY"),
    (op("create", None, POLICY), 'CREATE POLICY "p" ON "public"."Prompt"', 'DROP POLICY "p"'),
    (op("drop", RESTRICTIVE, None), 'DROP POLICY "p"', "AS RESTRICTIVE FOR SELECT"),
    (op("alter", RESTRICTIVE, replace(RESTRICTIVE, using="true")), "USING (true)", "USING (false)"),
    (op("recreate", RESTRICTIVE, POLICY), "AS PERMISSIVE", "AS RESTRICTIVE"),
    (op("detach", POLICY, None), 'DROP POLICY "p"', 'CREATE POLICY "p"'),
    (op("grant", None, GRANT), 'GRANT SELECT ON TABLE "public"."Prompt" TO "app"', "REVOKE SELECT ON TABLE"),
    (
        op("revoke", replace(GRANT, grantable=True), None),
        'REVOKE SELECT ON TABLE "public"."Prompt" FROM "app" CASCADE',
        'TO "app" WITH GRANT OPTION',
    ),
    (
        op("revoke_grant_option", replace(GRANT, grantable=True), GRANT),
        'REVOKE GRANT OPTION FOR SELECT ON TABLE "public"."Prompt" FROM "app" CASCADE',
        'GRANT SELECT ON TABLE "public"."Prompt" TO "app" WITH GRANT OPTION',
    ),
    (op("grant", None, COLUMN), 'GRANT UPDATE ("title") ON TABLE', 'REVOKE UPDATE ("title") ON TABLE'),
    (
        op("revoke_grant_option", replace(COLUMN, grantable=True), COLUMN),
        'REVOKE GRANT OPTION FOR UPDATE ("title")',
        'GRANT UPDATE ("title") ON TABLE "public"."Prompt" TO "app" WITH GRANT OPTION',
    ),
    (op("create", None, TRIGGER), 'CREATE TRIGGER "zz_rlsctl_guard"', 'DROP TRIGGER "zz_rlsctl_guard"'),
    (op("enable", replace(TRIGGER, enabled="D"), TRIGGER), "ENABLE TRIGGER", "DISABLE TRIGGER"),
    (op("enable", replace(TRIGGER, enabled="R"), TRIGGER), " ENABLE TRIGGER", "ENABLE REPLICA TRIGGER"),
    (op("enable", replace(TRIGGER, enabled="A"), TRIGGER), " ENABLE TRIGGER", "ENABLE ALWAYS TRIGGER"),
    (op("recreate", replace(TRIGGER, events="INSERT OR UPDATE"), TRIGGER), "BEFORE UPDATE", "INSERT OR UPDATE"),
    (op("drop", replace(TRIGGER, enabled="D"), None), 'DROP TRIGGER "zz_rlsctl_guard"', "DISABLE TRIGGER"),
    (
        op("recreate", replace(TRIGGER, timing="AFTER", definition=AFTER), TRIGGER),
        'DROP TRIGGER "zz_rlsctl_guard" ON "public"."Team";\nCREATE TRIGGER "zz_rlsctl_guard" BEFORE UPDATE',
        "CREATE TRIGGER zz_rlsctl_guard AFTER UPDATE",
    ),
    (op("create", None, KeyTable("rlsctl", "encryption_key", "keys")), "CREATE TABLE", 'DROP TABLE "rlsctl"."encryption_key"'),
    (
        op("disable", replace(BOOKKEEPING, rls_enabled=True), BOOKKEEPING),
        'ALTER TABLE "rlsctl"."applied_phase" DISABLE ROW LEVEL SECURITY',
        'ALTER TABLE "rlsctl"."applied_phase" ENABLE ROW LEVEL SECURITY',
    ),
    (
        op("no_force", replace(KEY_TABLE, rls_forced=True), KEY_TABLE),
        'ALTER TABLE "rlsctl"."encryption_key" NO FORCE ROW LEVEL SECURITY',
        'ALTER TABLE "rlsctl"."encryption_key" FORCE ROW LEVEL SECURITY',
    ),
    (
        op("drop", replace(POLICY, schema="rlsctl", table="encryption_key"), None),
        'DROP POLICY "p" ON "rlsctl"."encryption_key"',
        'CREATE POLICY "p" ON "rlsctl"."encryption_key"',
    ),
    (
        op("revoke", replace(GRANT, schema="rlsctl", table="encryption_key"), None),
        'REVOKE SELECT ON TABLE "rlsctl"."encryption_key" FROM "app"',
        'GRANT SELECT ON TABLE "rlsctl"."encryption_key" TO "app"',
    ),
    (
        op("revoke", replace(GRANT, grantor="backup"), None),
        'SET LOCAL ROLE "backup";\nREVOKE SELECT ON TABLE "public"."Prompt" FROM "app";\nRESET ROLE;',
        'SET LOCAL ROLE "backup";\nGRANT SELECT ON TABLE "public"."Prompt" TO "app";\nRESET ROLE;',
    ),
    (
        op("revoke", replace(COLUMN, grantor="backup"), None),
        'SET LOCAL ROLE "backup";\nREVOKE UPDATE ("title") ON TABLE "public"."Prompt" FROM "app";',
        'SET LOCAL ROLE "backup";\nGRANT UPDATE ("title") ON TABLE "public"."Prompt" TO "app";',
    ),
    (op("needs_dba", replace(GRANT, grantor="backup", repairable=False), None), "", ""),
    (op("regrant", None, COLUMN), 'GRANT UPDATE ("title") ON TABLE "public"."Prompt" TO "app"', ""),
    (op("needs_dba", replace(COLUMN, grantor="backup", repairable=False), None), "", ""),
    (op("needs_dba", replace(DEFAULT, creator="flyway", repairable=False), None), "", ""),
    (op("needs_dba", FunctionGrant("rlsctl", "digest", "text, text", "PUBLIC", False), None), "", ""),
    (
        op("alter", Extension("pgcrypto", "public"), Extension("pgcrypto", "rlsctl")),
        'ALTER EXTENSION "pgcrypto" SET SCHEMA "rlsctl"',
        'ALTER EXTENSION "pgcrypto" SET SCHEMA "public"',
    ),
    (
        op("create", None, KeyTable("rlsctl", "encrypted_column", "keys")),
        'CREATE TABLE "rlsctl"."encrypted_column"',
        'DROP TABLE "rlsctl"."encrypted_column"',
    ),
    (
        op("create", None, EncryptedColumnRecord("rlsctl", "T", "c")),
        """INSERT INTO "rlsctl"."encrypted_column" (table_name, column_name)\nVALUES ('T', 'c')""",
        """DELETE FROM "rlsctl"."encrypted_column"\nWHERE table_name = 'T' AND column_name = 'c'""",
    ),
]


@pytest.mark.parametrize("forward, sql, undo", CASES, ids=[f"{c[0].kind} {c[0].action}" for c in CASES])
def test_reverse_renders_the_inverse(state, forward, sql, undo):
    back = forward.reverse()
    assert back.reverse() == forward or (forward.old is None and forward.kind == "table")
    assert (back.old, back.new or back.old) == (forward.new, forward.old or forward.new)
    assert sql in sql_of(forward, state)
    assert undo in sql_of(back, state)
    if not sql:  # a difference left to a DBA: nothing runs either way
        assert sql_of(forward, state) == sql_of(back, state) == ""


def test_every_step_of_the_order_is_reversible_and_tested():
    tested = {(case[0].kind, case[0].action) for case in CASES}
    tested |= {(case[0].kind, d.INVERSE[case[0].action]) for case in CASES}
    tested |= {(case[0].kind + "_by_other", "revoke") for case in CASES if getattr(case[0].obj, "grantor", None)}
    steps = {("schema_privilege" if kind == "helper_owner" else kind, action) for kind, action in d.ORDER}
    assert steps - {("active_key", "create")} <= tested
    assert all(d.INVERSE[d.INVERSE[action]] == action for action in d.INVERSE)


def test_what_cannot_be_undone_says_so():
    with pytest.raises(Irreversible, match="data may already be encrypted"):
        op("create", None, ActiveKey("rlsctl")).reverse()
    with pytest.raises(Irreversible, match="owner before rlsctl first secured it"):
        op("owner", None, TABLE).reverse()


@pytest.mark.parametrize(
    "forward, effect, reverse_effect",
    [
        (op("drop", POLICY, None), NARROWS, WIDENS),
        (op("drop", RESTRICTIVE, None), WIDENS, NARROWS),
        (op("alter", replace(POLICY, roles=("PUBLIC",)), POLICY), NARROWS, WIDENS),
        (op("alter", replace(POLICY, roles=("app", "b")), POLICY), NARROWS, WIDENS),
        (op("alter", replace(POLICY, using="false"), POLICY), WIDENS, NARROWS),  # from `false`, back to it
        (op("alter", replace(POLICY, using="a = 1 AND b = 2"), replace(POLICY, using="a = 1")), WIDENS, NARROWS),
        (op("alter", replace(POLICY, using="a = 1 OR b = 2"), replace(POLICY, using="a = 1")), NARROWS, WIDENS),
        (op("alter", replace(POLICY, using="a = 1"), replace(POLICY, using="b = 1")), WIDENS, WIDENS),  # unproved
        (op("recreate", RESTRICTIVE, replace(RESTRICTIVE, permissive=True)), WIDENS, NARROWS),
        (op("enable", replace(TRIGGER, enabled="D"), TRIGGER), NARROWS, WIDENS),
        (op("enable", replace(TRIGGER, enabled="A"), TRIGGER), NEUTRAL, NEUTRAL),
        # A trigger that fires in fewer cases, or does less, widens; the repair narrows.
        (op("recreate", replace(TRIGGER, events="INSERT OR UPDATE"), TRIGGER), WIDENS, NARROWS),
        (op("recreate", replace(TRIGGER, when="false"), TRIGGER), NARROWS, WIDENS),
        (op("recreate", replace(TRIGGER, timing="AFTER"), TRIGGER), NARROWS, WIDENS),
        (op("recreate", replace(TRIGGER, columns=("title",)), TRIGGER), NARROWS, WIDENS),
        (op("recreate", replace(TRIGGER, level="STATEMENT"), TRIGGER), NARROWS, WIDENS),
        (
            op("recreate", replace(TRIGGER, function_schema="public", function_name="noop", ours=False), TRIGGER),
            NARROWS,
            WIDENS,
        ),
        (op("recreate", replace(TRIGGER, args="x\\000"), TRIGGER), WIDENS, WIDENS),  # another call: unprovable
        (op("alter", replace(ROLE, createrole=True), ROLE), NARROWS, WIDENS),
        (op("alter", replace(ROLE, comment="x"), ROLE), NEUTRAL, NEUTRAL),
        (op("revoke", Membership("g", "m"), None), NARROWS, WIDENS),
        (op("revoke", DEFAULT, None), NARROWS, WIDENS),
        (op("revoke_grant_option", replace(GRANT, grantable=True), GRANT), NARROWS, WIDENS),
        (op("enable", replace(TABLE, rls_enabled=False), TABLE), NARROWS, WIDENS),
    ],
)
def test_effect_labels(forward, effect, reverse_effect):
    assert (forward.effect, forward.reverse().effect) == (effect, reverse_effect)


def test_a_clause_that_must_go_recreates_the_policy():
    """ALTER POLICY can set USING or WITH CHECK but never remove one."""
    declared = Policy("Team", "p", "all", True, ("app",), None, "x = 1")
    for live in (replace(declared, using="x = 2"), replace(declared, using=None, check=None)):
        changes = d.operations(d.differences({declared.key: declared}, {live.key: live}))
        expected = "recreate" if live.using is not None else "alter"
        assert [change.action for change in changes] == [expected]
    kept = replace(declared, using="x = 2", check=None)
    changes = d.operations(d.differences({kept.key: kept}, {declared.key: declared}))
    assert [change.action for change in changes] == ["recreate"]


def test_a_function_that_is_recreated_takes_its_policies_with_it():
    live_policy = replace(POLICY, using="rlsctl.f(x)")
    other = replace(POLICY, name="q", using="rlsctl.f(y)")
    declared = {FUNCTION.key: FUNCTION, POLICY.key: POLICY}
    live = {
        FUNCTION.key: replace(FUNCTION, returns="integer"),
        live_policy.key: live_policy,
        other.key: other,
    }
    dependents = {FUNCTION.key: (live_policy.key, other.key)}
    ops = d.operations(d.differences(declared, live), declared, live, dependents)
    steps = [(o.action, o.key) for o in d.ordered(ops, "rlsctl", ("o",))]
    assert steps.index(("detach", POLICY.key)) < steps.index(("recreate", FUNCTION.key))
    assert steps.index(("detach", other.key)) < steps.index(("recreate", FUNCTION.key))
    assert steps.index(("recreate", FUNCTION.key)) < steps.index(("create", POLICY.key))
    assert ("create", other.key) not in steps and ("drop", other.key) not in steps  # undeclared: gone for good
    assert ("alter", POLICY.key) not in steps
