"""RLS028: a write policy that lets a role point a foreign key at a row it cannot read.

The leak the rule is about, shown on a real server; the cases it must report
and those it must leave alone, offline (the SQL replayed) and live (executed
and the catalog linted) alike; the policy-file form of the fix; and the
shipped projects, which stay quiet.
"""

from __future__ import annotations

import re
import shutil

import psycopg
import pytest

from rlsctl.lint import live, sqlfiles
from rlsctl.lint.model import LintModel
from rlsctl.lint.project import project_model
from rlsctl.lint.rule import Finding
from rlsctl.lint.rules.rls028_reference_to_unreadable_row import ReferenceToUnreadableRow
from rlsctl.lint.runner import run
from rlsctl.policy.project import load_project
from tests.conftest import ROOT, migrate_and_apply

RULE = "RLS028"
ROLE = re.compile(r"\b(?!pg_has_role\b)([a-z][a-z0-9_]*_role)\b")
MODES = ["offline", "live"]
EXAMPLE = ROOT / "examples" / "orgs"


def prefixed(sql: str, prefix: str) -> str:
    return ROLE.sub(lambda m: prefix + m.group(1), sql)


def findings(mode: str, sql: str, make_db) -> list[Finding]:
    if mode == "offline":
        model = sqlfiles.replay(LintModel(source="sql"), sql, "case.sql")
    else:
        database = make_db()
        with database.connect() as conn:
            conn.execute(prefixed(sql, database.prefix).encode())
            model = live.read_model(conn)
    return list(run([model], select=[RULE]).findings)


# -- 1. the leak, on the server ------------------------------------------------------------------------

ALICE, BOB, CAROL = 1, 2, 3  # alice owns collection 10 and shares it with carol; bob owns the private item 20
ROWS = """
INSERT INTO collection VALUES (10, 1, 3);
INSERT INTO item VALUES (20, 2);
"""


def _as(conn: psycopg.Connection, user: int) -> None:
    conn.execute("SELECT set_config('app.user_id', %s, true)", (str(user),))


def _visible_items(conn: psycopg.Connection) -> set[int]:
    return {row[0] for row in conn.execute("SELECT id FROM item")}


def test_the_bad_example_really_leaks_a_private_row_to_whoever_the_collection_is_shared_with(db):
    with db.connect() as conn:
        conn.execute(prefixed(ReferenceToUnreadableRow.example("Bad") + ROWS, db.prefix).encode())
        with conn.transaction(force_rollback=True):
            conn.execute(prefixed("SET LOCAL ROLE app_role", db.prefix))
            for user in (ALICE, CAROL):
                _as(conn, user)
                assert 20 not in _visible_items(conn)  # bob's item is private: neither alice nor carol reads it
            _as(conn, ALICE)
            conn.execute("INSERT INTO collection_item VALUES (10, 20)")  # alice links it into her collection
            _as(conn, CAROL)
            assert 20 in _visible_items(conn)  # ...and carol, who shares the collection, now reads bob's item
            assert conn.execute("SELECT owner_id FROM item WHERE id = 20").fetchone()[0] == BOB


def test_the_good_example_refuses_the_link_and_keeps_the_legitimate_one(db):
    with db.connect() as conn:
        conn.execute(prefixed(ReferenceToUnreadableRow.example("Good") + ROWS, db.prefix).encode())
        conn.execute("INSERT INTO item VALUES (21, 1)")  # alice's own item
        with conn.transaction():
            conn.execute(prefixed("SET LOCAL ROLE app_role", db.prefix))
            _as(conn, ALICE)
            conn.execute("INSERT INTO collection_item VALUES (10, 21)")  # her own item: allowed
        with conn.transaction(force_rollback=True):
            conn.execute(prefixed("SET LOCAL ROLE app_role", db.prefix))
            _as(conn, ALICE)
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
                conn.execute("INSERT INTO collection_item VALUES (10, 20)")
        with conn.transaction(force_rollback=True):
            conn.execute(prefixed("SET LOCAL ROLE app_role", db.prefix))
            _as(conn, CAROL)
            assert _visible_items(conn) == {21}  # what is shared with her, nothing of bob's


def test_an_exists_in_each_direction_recurses_which_is_why_the_good_example_uses_a_helper(db):
    """The docstring's caveat: item's policy reading collection_item through EXISTS, and collection_item's check
    reading item, make PostgreSQL's policy expansion recurse (RLS017 says so offline)."""
    good = ReferenceToUnreadableRow.example("Good")
    helper = "id = ANY ((SELECT collected_items())::int[])"
    assert helper in good
    recursive = good.replace(helper, "EXISTS (SELECT 1 FROM collection_item AS ci WHERE ci.item_id = item.id)")
    model = sqlfiles.replay(LintModel(source="sql"), recursive, "recursive.sql")
    assert {f.object for f in run([model], select=["RLS017"]).findings} >= {"public.collection_item.add_to_mine"}
    with db.connect() as conn:
        conn.execute(prefixed(recursive + ROWS, db.prefix).encode())
        with conn.transaction(force_rollback=True):
            conn.execute(prefixed("SET LOCAL ROLE app_role", db.prefix))
            _as(conn, ALICE)
            with pytest.raises(psycopg.errors.InvalidObjectDefinition, match="infinite recursion"):
                conn.execute("INSERT INTO collection_item VALUES (10, 20)")


@pytest.mark.parametrize("mode", MODES)
def test_the_examples_are_told_apart_and_the_message_names_the_leak(mode, make_db):
    (finding,) = findings(mode, ReferenceToUnreadableRow.example("Bad"), make_db)
    assert finding.object == "public.collection_item.add_to_mine" and finding.level == "error"
    assert "may point item_id at a public.item row it cannot read" in finding.message
    assert "public.item's SELECT policy shows rows through public.collection_item" in finding.message
    assert "{via: item_id}" in finding.message
    assert not findings(mode, ReferenceToUnreadableRow.example("Good"), make_db)


# -- 2. what is reported and what is not --------------------------------------------------------------

ME = "(SELECT NULLIF(current_setting('app.user_id', true), '')::int)"
MINE = f"EXISTS (SELECT 1 FROM collection AS c WHERE c.id = collection_item.collection_id AND c.owner_id = {ME})"
VISIBLE_ITEM = "EXISTS (SELECT 1 FROM item AS i WHERE i.id = collection_item.item_id)"
SCHEMA = f"""
CREATE ROLE app_role;
CREATE TABLE account (id int PRIMARY KEY);
CREATE TABLE collection (id int PRIMARY KEY, owner_id int NOT NULL REFERENCES account);
CREATE TABLE item (id int PRIMARY KEY, owner_id int NOT NULL REFERENCES account);
CREATE TABLE tag (id int PRIMARY KEY);
CREATE TABLE label (id int PRIMARY KEY);
CREATE TABLE collection_item (
    id int PRIMARY KEY,
    collection_id int NOT NULL REFERENCES collection,
    item_id int REFERENCES item,
    added_by int REFERENCES account,
    tag_id int REFERENCES tag,
    label_id int REFERENCES label);
ALTER TABLE account ENABLE ROW LEVEL SECURITY;
ALTER TABLE collection ENABLE ROW LEVEL SECURITY;
ALTER TABLE item ENABLE ROW LEVEL SECURITY;
ALTER TABLE label ENABLE ROW LEVEL SECURITY;
ALTER TABLE collection_item ENABLE ROW LEVEL SECURITY;
GRANT SELECT ON account, collection, item, tag, label TO app_role;
GRANT SELECT, INSERT, UPDATE ON collection_item TO app_role;
CREATE POLICY me ON account FOR SELECT TO app_role USING (id = {ME});
CREATE POLICY mine ON collection FOR SELECT TO app_role USING (owner_id = {ME});
CREATE POLICY mine ON item FOR SELECT TO app_role USING (owner_id = {ME});
CREATE POLICY everyone ON label FOR SELECT TO app_role USING (true);
CREATE POLICY in_mine ON collection_item FOR SELECT TO app_role
    USING (EXISTS (SELECT 1 FROM collection AS c WHERE c.id = collection_item.collection_id));
CREATE FUNCTION can_read_item(item int) RETURNS boolean LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp AS $$ SELECT true $$;
CREATE FUNCTION my_items() RETURNS int[] LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp AS $$ SELECT '{{}}'::int[] $$;
"""
INSERT = "CREATE POLICY p ON collection_item FOR INSERT TO app_role WITH CHECK ({check});"
REPORTED = {
    "collection only": MINE,
    "an OR branch that tests no item": f"({MINE} AND {VISIBLE_ITEM}) OR {MINE}",
    "not visible": f"{MINE} AND NOT {VISIBLE_ITEM}",
    "item compared with a constant": f"{MINE} AND item_id IN (1, 2)",
    "item compared with another column": f"{MINE} AND item_id = collection_id",
    "a match the subquery may skip": (
        f"{MINE} AND EXISTS (SELECT 1 FROM item AS i WHERE i.id = collection_item.item_id OR i.owner_id = {ME})"
    ),
    "a match the subquery negates": f"{MINE} AND EXISTS (SELECT 1 FROM item AS i WHERE NOT i.id = collection_item.item_id)",
    "a subquery over another table that does not read the session": (
        f"{MINE} AND EXISTS (SELECT 1 FROM collection AS o WHERE o.id = collection_item.item_id)"
    ),
}
QUIET = {
    "via": f"{MINE} AND {VISIBLE_ITEM}",
    "via, null allowed": f"{MINE} AND (item_id IS NULL OR {VISIBLE_ITEM})",
    "each branch vouches": f"({MINE} AND {VISIBLE_ITEM}) OR ({MINE} AND item_id = ANY ((SELECT my_items())::int[]))",
    "IN over the referenced table": f"{MINE} AND item_id IN (SELECT i.id FROM item AS i)",
    "the referenced table joined": (
        "EXISTS (SELECT 1 FROM collection AS c JOIN item AS i ON i.id = collection_item.item_id "
        f"WHERE c.id = collection_item.collection_id AND c.owner_id = {ME})"
    ),
    "compared with the identity through a helper": f"{MINE} AND item_id = ANY ((SELECT my_items())::int[])",
    "passed to a helper": f"{MINE} AND can_read_item(item_id)",
    "a share of it with me": (
        f"{MINE} AND EXISTS (SELECT 1 FROM collection_item AS s WHERE s.item_id = collection_item.item_id "
        f"AND s.added_by = {ME})"
    ),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(REPORTED))
def test_a_check_that_does_not_vouch_for_the_referenced_row_is_reported(mode, case, make_db):
    (finding,) = findings(mode, SCHEMA + INSERT.format(check=REPORTED[case]), make_db)
    assert finding.object == "public.collection_item.p"
    assert "may point item_id at a public.item row it cannot read" in finding.message
    # the account (principals), tag (no RLS) and label (every row readable) columns are never named
    assert not re.search(r"added_by|tag_id|label_id", finding.message.split(" does not require")[0])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(QUIET))
def test_a_check_that_vouches_for_the_referenced_row_is_quiet(mode, case, make_db):
    assert not findings(mode, SCHEMA + INSERT.format(check=QUIET[case]), make_db)


UPDATE = f"CREATE POLICY p ON collection_item FOR UPDATE TO app_role USING ({MINE});\n"
GUARD = """
CREATE FUNCTION keep_item() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.item_id IS DISTINCT FROM OLD.item_id THEN
        RAISE EXCEPTION 'an entry keeps its item';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER keep_item BEFORE UPDATE ON collection_item FOR EACH ROW EXECUTE FUNCTION keep_item();
"""
COLUMN_GRANTS = (
    "REVOKE UPDATE ON collection_item FROM app_role;\nGRANT UPDATE (tag_id) ON collection_item TO app_role;\n"
)


@pytest.mark.parametrize("mode", MODES)
def test_an_update_is_judged_by_the_check_it_applies_to_the_new_row(mode, make_db):
    (finding,) = findings(mode, SCHEMA + UPDATE, make_db)  # no WITH CHECK: USING checks the new row
    assert "its UPDATE USING (which checks the new row too)" in finding.message
    fixed = UPDATE.replace(f"USING ({MINE})", f"USING ({MINE}) WITH CHECK ({MINE} AND {VISIBLE_ITEM})")
    assert not findings(mode, SCHEMA + fixed, make_db)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("protection", ["guard trigger", "column grants"])
def test_an_update_that_cannot_change_the_column_is_quiet(mode, protection, make_db):
    extra = GUARD if protection == "guard trigger" else COLUMN_GRANTS
    assert not findings(mode, SCHEMA + UPDATE + extra, make_db)


@pytest.mark.parametrize("mode", MODES)
def test_a_restrictive_policy_that_vouches_covers_the_permissive_ones_of_its_roles(mode, make_db):
    restrictive = (
        "CREATE POLICY visible_item ON collection_item AS RESTRICTIVE FOR INSERT TO {to} "
        f"WITH CHECK ({VISIBLE_ITEM});\n"
    )
    sql = SCHEMA + INSERT.format(check=MINE)
    assert not findings(mode, sql + restrictive.format(to="app_role"), make_db)
    other = "CREATE ROLE other_role;\n" + restrictive.format(to="other_role")  # binds other_role, not app_role
    (finding,) = findings(mode, sql + other, make_db)
    assert finding.object == "public.collection_item.p"


@pytest.mark.parametrize("mode", MODES)
def test_an_open_check_is_left_to_the_rule_that_owns_it(mode, make_db):
    # RLS012 reports a check that scopes nothing, or an OR branch that does not: one cause, one rule
    for check in ("item_id IS NOT NULL", f"item_id IS NULL OR {MINE}"):
        assert not findings(mode, SCHEMA + INSERT.format(check=check), make_db)


@pytest.mark.parametrize("mode", MODES)
def test_a_role_that_reads_every_referenced_row_is_quiet(mode, make_db):
    opened = SCHEMA.replace(f"CREATE POLICY mine ON item FOR SELECT TO app_role USING (owner_id = {ME});", "")
    opened += "CREATE POLICY everyone ON item FOR SELECT TO app_role USING (true);\n"
    assert not findings(mode, opened + INSERT.format(check=MINE), make_db)
    no_rls = SCHEMA.replace("ALTER TABLE item ENABLE ROW LEVEL SECURITY;", "")
    assert not findings(mode, no_rls + INSERT.format(check=MINE), make_db)


@pytest.mark.parametrize("mode", MODES)
def test_a_tenant_table_is_not_a_principal_table(mode, make_db):
    """`org.id = ANY (<my orgs>)`: the session reaches several orgs, so an org is no principal, and an unchecked
    org_id is reported (a row written into another tenant's org), unlike the account a user is."""
    sql = f"""
CREATE ROLE app_role;
CREATE TABLE org (id int PRIMARY KEY);
CREATE TABLE invite (id int PRIMARY KEY, org_id int NOT NULL REFERENCES org, inviter int NOT NULL);
ALTER TABLE org ENABLE ROW LEVEL SECURITY;
ALTER TABLE invite ENABLE ROW LEVEL SECURITY;
GRANT SELECT ON org TO app_role;
GRANT SELECT, INSERT ON invite TO app_role;
CREATE FUNCTION my_orgs() RETURNS int[] LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
    AS $$ SELECT ARRAY[1] $$;
CREATE POLICY mine ON org FOR SELECT TO app_role USING (id = ANY ((SELECT my_orgs())::int[]));
CREATE POLICY p ON invite FOR INSERT TO app_role WITH CHECK (inviter = {ME});
"""
    (finding,) = findings(mode, sql, make_db)
    assert "may point org_id at a public.org row it cannot read" in finding.message
    fixed = sql.replace(
        f"WITH CHECK (inviter = {ME})", f"WITH CHECK (inviter = {ME} AND org_id = ANY ((SELECT my_orgs())::int[]))"
    )
    assert not findings(mode, fixed, make_db)


@pytest.mark.parametrize("mode", MODES)
def test_a_composite_key_is_vouched_for_by_its_tenant_column(mode, make_db):
    """(tenant_id, item_id) -> item (tenant_id, id): a check keeping tenant_id among the user's tenants keeps the
    referenced item in one of them."""
    sql = f"""
CREATE ROLE app_role;
CREATE TABLE item (tenant_id int NOT NULL, id int NOT NULL, PRIMARY KEY (tenant_id, id));
CREATE TABLE pin (id int PRIMARY KEY, tenant_id int NOT NULL, item_id int NOT NULL, pinned_by int NOT NULL,
    FOREIGN KEY (tenant_id, item_id) REFERENCES item (tenant_id, id));
ALTER TABLE item ENABLE ROW LEVEL SECURITY;
ALTER TABLE pin ENABLE ROW LEVEL SECURITY;
GRANT SELECT ON item TO app_role;
GRANT SELECT, INSERT ON pin TO app_role;
CREATE FUNCTION my_tenants() RETURNS int[] LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
    AS $$ SELECT ARRAY[1] $$;
CREATE POLICY mine ON item FOR SELECT TO app_role USING (tenant_id = ANY ((SELECT my_tenants())::int[]));
CREATE POLICY p ON pin FOR INSERT TO app_role WITH CHECK (pinned_by = {ME});
"""
    (finding,) = findings(mode, sql, make_db)
    assert "may point (tenant_id, item_id) at a public.item row it cannot read" in finding.message
    scoped = sql.replace(
        f"WITH CHECK (pinned_by = {ME})",
        f"WITH CHECK (pinned_by = {ME} AND tenant_id = ANY ((SELECT my_tenants())::int[]))",
    )
    assert not findings(mode, scoped, make_db)


# -- 3. the policy files: the fix is {via: item_id} -------------------------------------------------------

COLLECTIONS_SQL = """
CREATE TABLE collection (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES organisation (id),
    name text NOT NULL
);
CREATE INDEX collection_org_id_idx ON collection (org_id);
CREATE TABLE item (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES organisation (id),
    title text NOT NULL
);
CREATE INDEX item_org_id_idx ON item (org_id);
CREATE TABLE collection_item (
    collection_id uuid NOT NULL REFERENCES collection (id),
    item_id uuid NOT NULL REFERENCES item (id),
    PRIMARY KEY (collection_id, item_id)
);
CREATE INDEX collection_item_item_id_idx ON collection_item (item_id);
"""
COLLECTIONS_YAML = """
tables:
  collection:
    tenant: org_id
    policies:
      app:
        select: {tenant_role: viewer}
        insert: {tenant_role: editor}
        update: {tenant_role: editor}
  item:
    tenant: org_id
    policies:
      app:
        select: {tenant_role: viewer}
        insert: {tenant_role: editor}
  collection_item:
    tenant: {via: collection_id}
    policies:
      app:
        select: {via: collection_id}
        insert:
INSERT_RULE
"""
BAD_RULE = "          via: {column: collection_id, rule: update}    # a collection I may change"
GOOD_RULE = """          all:
            - via: {column: collection_id, rule: update}  # a collection I may change...
            - via: item_id                                # ...and an item I can read"""


@pytest.mark.parametrize("rule, reported", [(BAD_RULE, True), (GOOD_RULE, False)], ids=["bad", "good"])
def test_the_policy_file_form(tmp_path, rule, reported):
    """An editor of one organisation links another organisation's item into their collection unless the insert
    rule says `via: item_id`."""
    root = tmp_path / "orgs"
    shutil.copytree(EXAMPLE, root)
    phase = root / "migrations" / "2_collections"
    phase.mkdir()
    (phase / "01_collections.up.sql").write_text(COLLECTIONS_SQL)
    (phase / "01_collections.down.sql").write_text(
        "DROP TABLE collection_item;\nDROP TABLE item;\nDROP TABLE collection;\n"
    )
    (root / "policies" / "collections.yaml").write_text(COLLECTIONS_YAML.replace("INSERT_RULE", rule))
    found = run([project_model(load_project(root))], select=[RULE]).findings
    if reported:
        (finding,) = found
        assert finding.object == "public.collection_item.app_insert"
        assert "may point item_id at a public.item row it cannot read" in finding.message
    else:
        assert not found


# -- 4. the shipped projects stay quiet ------------------------------------------------------------------


@pytest.mark.parametrize("root", [ROOT, EXAMPLE], ids=["promptcraft", "orgs"])
def test_the_shipped_projects_are_quiet_offline(root):
    assert not run([project_model(load_project(root))], select=[RULE]).findings


@pytest.mark.parametrize("root", [ROOT, EXAMPLE], ids=["promptcraft", "orgs"])
def test_the_shipped_projects_are_quiet_live(root, db):
    migrate_and_apply(db, project=load_project(root, role_prefix=db.prefix))
    with db.connect() as conn:
        model = live.read_model(conn)
    assert not run([model], select=[RULE]).findings
