"""The owner role (the one migrations run as, so a CI credential) and its members cannot make
their code run as the keys or the definer role, nor take the key-encryption key.

- The helper schema and the key store belong to the keys role, of which no login is a member:
  a member of the owner role cannot drop, replace, re-own or shadow anything there.
- The owner role owns the application tables and can always add code to them (triggers,
  rules, policies, index expressions, constraints, generated columns). That cannot be
  prevented, so it is caught: `rlsctl keys` refuses, naming it, before the code could run in
  its session (where the key-encryption key is a session setting), and checks again before
  each batch; drift reports it.

Each attack plants a function of the owner's that copies the key-encryption key, and the
current role, into a table the owner owns: the table must stay empty.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pgerrors
from psycopg import sql

from rlsctl import keys as keying
from rlsctl.errors import UsageError
from rlsctl.policy.project import load_project
from tests.conftest import ROOT, TestDatabase, migrate_and_apply
from tests.test_encryption import cli, seed


@pytest.fixture
def attacked(db: TestDatabase) -> TestDatabase:
    """Applied PromptCraft with encrypted values, a migration login that is a member of the owner
    role, and the owner's loot table and key-stealing function (SECURITY DEFINER, as the owner)."""
    migrate_and_apply(db)
    with db.connect() as conn:
        seed(conn)
        conn.execute("""INSERT INTO "PerformanceMetrics"(id, "promptId", "responseTime", success, "errorMessage")
                        VALUES ('pm1', 'p1', 1, false, 'boom: a secret error')""")  # encrypted by the trigger
        migrator, owner = db.role("migrator"), db.role("owner")
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(migrator), sql.Identifier(owner)))
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        conn.execute("CREATE TABLE public.loot (kek text, by_role text)")
        conn.execute(
            """CREATE FUNCTION public.steal() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
               BEGIN
                   INSERT INTO public.loot VALUES (current_setting('rlsctl.master_key', true), current_user);
                   RETURN true;
               END $$"""
        )
        conn.execute(
            """CREATE FUNCTION public.steal_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN PERFORM public.steal(); RETURN NEW; END $$"""
        )
        conn.execute(
            """CREATE FUNCTION public.steal_immutable() RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
               BEGIN RETURN public.steal(); END $$"""
        )  # a lie PostgreSQL takes on trust: index expressions and generated columns need it
        conn.execute("GRANT INSERT ON public.loot TO PUBLIC")
        conn.execute("GRANT EXECUTE ON FUNCTION public.steal() TO PUBLIC")
        conn.execute("RESET ROLE")
    return db


def as_migrator(database: TestDatabase) -> psycopg.Connection:
    return psycopg.connect(database.dsn + f" user={database.role('migrator')}", autocommit=True)


def loot(database: TestDatabase) -> list[tuple]:
    with database.connect() as conn:
        return conn.execute("SELECT * FROM public.loot").fetchall()


def helper_functions(database: TestDatabase) -> list[tuple[str, str]]:
    """(signature, owner) of every function of the helper schema owned by the keys or definer role."""
    with database.connect() as conn:
        return conn.execute(
            """SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner) FROM pg_proc p
               WHERE p.pronamespace = 'rlsctl'::regnamespace AND pg_get_userbyid(p.proowner) = ANY (%s)""",
            ([database.role("keys"), database.role("definer")],),
        ).fetchall()


def test_no_function_running_as_keys_or_definer_can_be_dropped_or_replaced(attacked):
    functions = helper_functions(attacked)
    assert len(functions) >= 12, functions  # master_key, data_key, decrypt, tenant_ids, ...
    with as_migrator(attacked) as conn:
        for signature, _ in functions:
            for attack in (
                f"DROP FUNCTION {signature}",
                f"ALTER FUNCTION {signature} OWNER TO {attacked.role('owner')}",
                f"ALTER FUNCTION {signature} SET search_path = public",
            ):
                with pytest.raises(pgerrors.InsufficientPrivilege):
                    conn.execute(attack)
        with pytest.raises(pgerrors.InsufficientPrivilege):
            conn.execute("CREATE OR REPLACE FUNCTION rlsctl.master_key() RETURNS text LANGUAGE sql AS 'SELECT 1::text'")
    assert helper_functions(attacked) == functions


@pytest.mark.parametrize(
    "attack",
    [
        "CREATE FUNCTION rlsctl.planted() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE TABLE rlsctl.planted (id int)",
        "CREATE VIEW rlsctl.planted AS SELECT 1",
        "DROP TABLE rlsctl.encryption_key",
        "DELETE FROM rlsctl.encryption_key",
        "ALTER TABLE rlsctl.encryption_key ADD COLUMN planted text",
        "ALTER SCHEMA rlsctl RENAME TO planted",
        "ALTER SCHEMA rlsctl OWNER TO {owner}",
        "CREATE OPERATOR rlsctl.=== (LEFTARG = text, RIGHTARG = text, FUNCTION = texteq)",
    ],
)
def test_the_helper_schema_and_the_key_store_are_out_of_the_owners_reach(attacked, attack):
    with as_migrator(attacked) as conn:
        for role in (None, attacked.role("owner")):  # the login itself, then SET ROLE to the owner
            if role is not None:
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            with pytest.raises((pgerrors.InsufficientPrivilege, pgerrors.UndefinedTable)):
                conn.execute(attack.format(owner=attacked.role("owner")))
        conn.execute("GRANT CREATE ON SCHEMA rlsctl TO PUBLIC")  # only warns: "no privileges were granted"
        assert not conn.execute("SELECT has_schema_privilege('rlsctl', 'CREATE')").fetchone()[0]


def test_the_owner_role_cannot_shadow_helpers_through_its_own_schema(attacked):
    """Helpers qualify every name and search only pg_catalog and pg_temp: functions and operators
    the owner creates in public (which it may) are never what they call."""
    with as_migrator(attacked) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(attacked.role("owner"))))
        conn.execute(
            "CREATE FUNCTION public.pgp_sym_decrypt_bytea(bytea, text) RETURNS bytea LANGUAGE sql "
            "AS 'SELECT public.steal(); SELECT NULL::bytea'"
        )
        conn.execute("CREATE FUNCTION public.current_setting(text, boolean) RETURNS text LANGUAGE sql "
                     "AS 'SELECT public.steal(); SELECT NULL::text'")  # fmt: skip
    with attacked.connect() as conn:
        stored = conn.execute("""SELECT "errorMessage" FROM "PerformanceMetrics" WHERE id = 'pm1'""").fetchone()[0]
    assert stored.startswith("rlsctl1:")
    with attacked.connect(autocommit=False) as conn:
        conn.execute("SELECT set_config('role', %s, true), set_config('app.user_id', 'u1', true)",
                     (attacked.role("app"),))  # fmt: skip
        conn.execute("SELECT set_config('search_path', 'public, pg_catalog', true)")
        assert conn.execute("SELECT rlsctl.decrypt(%s::text)", (stored,)).fetchone()[0] == "boom: a secret error"
    assert loot(attacked) == []


# -- code the owner adds to a table rlsctl keys rewrites ----------------------------------------

PLANTS = {
    "trigger": (
        "CREATE TRIGGER audit_x BEFORE UPDATE ON \"PerformanceMetrics\" FOR EACH ROW "
        "EXECUTE FUNCTION public.steal_trigger()",
        "trigger audit_x",
    ),
    "statement trigger": (
        "CREATE TRIGGER audit_s AFTER UPDATE ON \"PerformanceMetrics\" FOR EACH STATEMENT "
        "EXECUTE FUNCTION public.steal_trigger()",
        "trigger audit_s",
    ),
    "rule": (
        "CREATE RULE audit_r AS ON UPDATE TO \"PerformanceMetrics\" DO ALSO SELECT public.steal()",
        "rule audit_r",
    ),
    "policy": (
        "CREATE POLICY audit_p ON \"PerformanceMetrics\" AS RESTRICTIVE USING (public.steal())",
        "policy audit_p",
    ),
    "index": (
        "CREATE INDEX audit_i ON \"PerformanceMetrics\" (id) WHERE public.steal_immutable()",
        "index audit_i",
    ),
    "check constraint": (
        "ALTER TABLE \"PerformanceMetrics\" ADD CONSTRAINT audit_c CHECK (public.steal()) NOT VALID",
        "check constraint audit_c",
    ),
    "generated column": (
        "ALTER TABLE \"PerformanceMetrics\" ADD COLUMN audit_g boolean GENERATED ALWAYS AS (public.steal_immutable()) STORED",
        "generated column audit_g",
    ),
    # PostgreSQL's own functions that run SQL given as text, or read the key's setting
    "query_to_xml": (
        "ALTER TABLE \"PerformanceMetrics\" ADD CONSTRAINT audit_q "
        "CHECK (pg_catalog.query_to_xml('select public.steal()', true, true, '') IS NOT NULL) NOT VALID",
        "check constraint audit_q runs pg_catalog.query_to_xml",
    ),
    "current_setting": (
        "ALTER TABLE \"PerformanceMetrics\" ADD CONSTRAINT audit_s "
        "CHECK (pg_catalog.length(pg_catalog.current_setting('rlsctl.master_key', true)) > 0) NOT VALID",
        "check constraint audit_s runs pg_catalog.current_setting",
    ),
    # rlsctl's own key functions belong to the keys role but must not run in others' code
    "master_key": (
        "ALTER TABLE \"PerformanceMetrics\" ADD CONSTRAINT audit_m CHECK (rlsctl.master_key() IS NOT NULL) NOT VALID",
        "check constraint audit_m runs rlsctl.master_key",
    ),
    # a domain reached through a composite type
    "composite": (
        "CREATE DOMAIN public.d_steal AS text CHECK (public.steal()); "
        "CREATE TYPE public.comp AS (v public.d_steal); "
        "ALTER TABLE \"PerformanceMetrics\" ADD CONSTRAINT audit_t "
        "CHECK (('(x)'::public.comp) IS NOT NULL) NOT VALID",
        "check constraint audit_t uses type public.comp",
    ),
    # a policy for a role the keys role is a member of
    "member policy": (
        "CREATE POLICY audit_k ON \"PerformanceMetrics\" AS RESTRICTIVE TO {keys_parent} USING (public.steal())",
        "policy audit_k",
    ),
    # an inheritance child: UPDATE without ONLY would run its triggers
    "child": (
        "CREATE TABLE public.pm_child () INHERITS (\"PerformanceMetrics\")",
        "inheritance child pm_child",
    ),
}


def plant(database: TestDatabase, statement: str) -> None:
    if "{keys_parent}" in statement:
        # A role the keys role is a member of (file mode makes it one of pg_read_server_files).
        parent = database.role("keys_parent")
        with database.connect() as conn:
            conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(parent)))
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(parent), sql.Identifier(database.role("keys"))))
        statement = statement.replace("{keys_parent}", sql.Identifier(parent).as_string(None))
    with as_migrator(database) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(database.role("owner"))))
        conn.execute(statement)
    with database.connect() as conn:
        conn.execute("TRUNCATE public.loot")  # planting itself may have run it (a generated column)


@pytest.mark.parametrize("kind", sorted(PLANTS))
def test_rlsctl_keys_refuses_a_table_with_the_owners_code_and_drift_reports_it(attacked, kind):
    statement, named = PLANTS[kind]
    plant(attacked, statement)
    for command in (["keys", "rotate"], ["keys", "encrypt"], ["keys", "status"]):
        code, output = cli(attacked, *command)
        assert code == 2, output
        assert f"PerformanceMetrics: {named}" in output.replace("\n", " "), output
    assert loot(attacked) == []
    code, output = cli(attacked, "drift")
    what, _, rest = named.partition(" ")
    name = rest.split(" ")[0] if what != "check" else rest.split(" ")[1]
    assert code == 1 and "on PerformanceMetrics" in output and name in output, output


def test_a_trigger_planted_during_a_run_stops_the_next_batch(attacked):
    """The check is repeated inside every batch, after the batch has locked its table."""
    project = load_project(ROOT, role_prefix=attacked.prefix)
    with attacked.connect() as conn:
        conn.execute("""INSERT INTO "PerformanceMetrics"(id, "promptId", "responseTime", success, "errorMessage")
                        SELECT 'bulk' || g, 'p1', 1, false, 'plain ' || g FROM generate_series(1, 300) g""")
        conn.execute("SET session_replication_role = replica")  # leave them plaintext: work for a backfill
        conn.execute("""UPDATE "PerformanceMetrics" SET "errorMessage" = 'plain ' || id WHERE id LIKE 'bulk%'""")
    planted = []

    def plant_after_first_batch(column: str, rows: int, pending: int) -> None:
        if not planted:
            plant(attacked, PLANTS["trigger"][0])
            planted.append(column)

    with attacked.connect(autocommit=True) as conn:
        keys = keying.Keys(conn, project, "test")
        with pytest.raises(UsageError, match=r"trigger audit_x runs public\.steal"):
            keying.encrypt(keys, ("PerformanceMetrics.errorMessage",), plant_after_first_batch, batch_size=50)
    assert planted and loot(attacked) == []


def test_the_owners_harmless_code_and_others_tables_do_not_stop_rlsctl_keys(attacked):
    """The allowed side: PostgreSQL's own functions in a constraint, and a trigger on a table the
    keys role never rewrites, leave the run alone."""
    plant(attacked, "ALTER TABLE \"PerformanceMetrics\" ADD CONSTRAINT positive CHECK (\"responseTime\" >= 0)")
    plant(attacked, "CREATE TRIGGER audit_t BEFORE UPDATE ON \"Team\" FOR EACH ROW EXECUTE FUNCTION public.steal_trigger()")
    code, output = cli(attacked, "keys", "rotate")
    assert code == 0, output
    assert loot(attacked) == []


def test_rlsctls_own_statements_never_take_an_operator_from_the_owners_schema(attacked):
    """rlsctl's sessions resolve names in pg_catalog only: an exact-match operator the owner role
    plants in public (text || name, oid = integer...) never runs in rlsctl's statements, which
    often run as a superuser (CVE-2018-1058)."""
    with as_migrator(attacked) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(attacked.role("owner"))))
        conn.execute(
            """CREATE FUNCTION public.trap_cat(a text, b name) RETURNS text LANGUAGE plpgsql AS $$
               BEGIN PERFORM public.steal(); RETURN a OPERATOR(pg_catalog.||) b::text; END $$"""
        )
        conn.execute("CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = name, FUNCTION = public.trap_cat)")
        conn.execute(
            """CREATE FUNCTION public.trap_eq(a oid, b integer) RETURNS boolean LANGUAGE plpgsql AS $$
               BEGIN PERFORM public.steal(); RETURN a OPERATOR(pg_catalog.=) b::oid; END $$"""
        )
        conn.execute("CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = integer, FUNCTION = public.trap_eq)")
    for command in (["keys", "status"], ["keys", "rotate"], ["drift"], ["lint", "--live"], ["plan"], ["test"]):
        code, output = cli(attacked, *command)
        assert code in (0, 1), (command, output)
    assert loot(attacked) == []


def test_rlsctl_never_writes_the_owners_tables_as_the_connecting_role(attacked):
    """Code the owner role puts on its own tables runs as whoever writes them: rlsctl writes them
    as the owner role or the application (with an identity), never as its own login."""
    plant(attacked, "CREATE TRIGGER audit_w BEFORE INSERT OR UPDATE OR DELETE ON \"ApiKey\" FOR EACH ROW "
                    "EXECUTE FUNCTION public.steal_trigger()")  # fmt: skip
    plant(attacked, "CREATE TRIGGER audit_u BEFORE INSERT OR UPDATE OR DELETE ON \"User\" FOR EACH ROW "
                    "EXECUTE FUNCTION public.steal_trigger()")  # fmt: skip
    assert cli(attacked, "keys", "create-api-key", "--team", "t1", "--scope", "prompts:read")[0] == 0
    assert cli(attacked, "test")[0] in (0, 1)
    with attacked.connect() as conn:
        roles = {row[0] for row in conn.execute("SELECT by_role FROM public.loot")}
        supers = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles WHERE rolsuper")}
    assert not roles & supers, roles
