"""drift sees everything a managed role can reach, and says what differs about each object.

A table made by hand in the managed schema, granted to the app role, RLS off, used to pass
`drift` silently; "changed table ..." came with an empty detail.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result
from psycopg import sql

from rlsctl.cli.main import main


def cli(database, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--dsn", database.dsn, "--role-prefix", database.prefix])


def drift_items(database) -> tuple[int, list[dict]]:
    result = cli(database, "drift", "--format", "json")
    return result.exit_code, json.loads(result.stdout)["drift"]


def test_a_hand_made_table_the_app_can_reach_is_drift(secured_db):
    app = secured_db.role("app")
    with secured_db.connect() as conn:
        conn.execute("CREATE TABLE public.handmade (id int PRIMARY KEY, secret text)")
        conn.execute(sql.SQL("GRANT SELECT, INSERT ON public.handmade TO {}").format(sql.Identifier(app)))
        conn.execute("CREATE TABLE public.private_notes (id int PRIMARY KEY)")  # no managed role reaches it
        conn.execute("CREATE VIEW public.open_view AS SELECT 1 AS one")
        conn.execute("GRANT SELECT ON public.open_view TO PUBLIC")
    code, items = drift_items(secured_db)
    assert code == 1
    found = {item["object"]: item for item in items}
    assert set(found) == {"undeclared table handmade", "undeclared view open_view"}, list(found)
    handmade = found["undeclared table handmade"]["detail"]
    assert f"{app}: SELECT" in handmade and f"{app}: INSERT" in handmade and "row-level security OFF" in handmade
    assert "PUBLIC: SELECT" in found["undeclared view open_view"]["detail"]
    # apply leaves it alone (not rlsctl's to drop): nothing ran, and it says so
    applied = json.loads(cli(secured_db, "apply", "--format", "json").stdout)
    assert applied["statements"] == 0 and applied["changed"] is False
    assert {item["object"] for item in applied["needs_dba"]} >= {"undeclared table handmade"}
    with secured_db.connect() as conn:
        assert conn.execute("SELECT to_regclass('public.handmade') IS NOT NULL").fetchone() == (True,)


def test_a_grant_revoked_leaves_no_drift(secured_db):
    with secured_db.connect() as conn:
        conn.execute("CREATE TABLE public.handmade (id int PRIMARY KEY)")
        conn.execute(sql.SQL("GRANT SELECT ON public.handmade TO {}").format(sql.Identifier(secured_db.role("app"))))
        conn.execute(sql.SQL("REVOKE ALL ON public.handmade FROM {}").format(sql.Identifier(secured_db.role("app"))))
    assert drift_items(secured_db) == (0, [])


def test_every_difference_carries_its_detail(secured_db):
    app = secured_db.role("app")
    with secured_db.connect() as conn:
        conn.execute('ALTER TABLE "Prompt" NO FORCE ROW LEVEL SECURITY')
        conn.execute('ALTER TABLE "TeamMember" DISABLE ROW LEVEL SECURITY')
        conn.execute(sql.SQL('ALTER POLICY app_select ON "Team" TO {}, PUBLIC').format(sql.Identifier(app)))
        conn.execute(sql.SQL('REVOKE DELETE ON "Prompt" FROM {}').format(sql.Identifier(app)))
        conn.execute(sql.SQL('GRANT TRUNCATE ON "Prompt" TO {}').format(sql.Identifier(app)))
        conn.execute('DROP POLICY app_delete ON "Team"')
    code, items = drift_items(secured_db)
    assert code == 1 and len(items) >= 6, items
    assert all(item["detail"] for item in items), [item for item in items if not item["detail"]]
    details = {item["object"]: item["detail"] for item in items}
    prompt = next(detail for key, detail in details.items() if key.startswith("table") and "Prompt" in key)
    assert "force" in prompt.lower(), details
    assert any("roles" in detail and "PUBLIC" in detail for detail in details.values()), details


@pytest.mark.parametrize(
    ("setup", "expected", "reached"),
    [
        (  # a partition granted directly is read without its parent's policies
            "CREATE TABLE public.events (id int, at date) PARTITION BY RANGE (at); "
            "CREATE TABLE public.events_2026 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01'); "
            "GRANT SELECT ON public.events_2026 TO {app}",
            "undeclared partition events_2026", "{app}: SELECT",
        ),
        (  # owned by a managed role: its ACL is NULL, the owner's rights are implicit
            "CREATE TABLE public.mine (x int); ALTER TABLE public.mine OWNER TO {app}",
            "undeclared table mine", "{app}: SELECT",
        ),
        (  # granted to the application's login role, a member of the app role
            "CREATE ROLE {login} LOGIN IN ROLE {app}; CREATE TABLE public.via_login (x int); "
            "GRANT SELECT ON public.via_login TO {login}",
            "undeclared table via_login", "{login} (member of {app}): SELECT",
        ),
    ],
    ids=["partition", "owned by the app", "granted to the app's login"],
)
def test_reach_that_is_not_a_plain_grant_is_drift_too(secured_db, setup, expected, reached):
    names = {"app": secured_db.role("app"), "login": secured_db.role("weblogin")}
    with secured_db.connect() as conn:
        conn.execute(setup.format(**{key: f'"{name}"' for key, name in names.items()}))
    code, items = drift_items(secured_db)
    found = {item["object"]: item["detail"] for item in items}
    assert code == 1 and expected in found, items
    assert reached.format(**names) in found[expected]


def test_a_grant_on_the_keys_roles_transaction_marker_is_drift_that_apply_revokes(secured_db):
    """The marker proves "no key in this transaction" (docs/identity.md, API-key sessions): a role that
    could set it could forge that proof, so any grant on it is drift, and apply takes it back."""
    app = secured_db.role("app")
    with secured_db.connect() as conn:
        conn.execute(sql.SQL("GRANT UPDATE, SELECT ON SEQUENCE rlsctl.api_key_xact TO {}").format(sql.Identifier(app)))
    code, items = drift_items(secured_db)
    assert code == 1
    assert {item["object"] for item in items} == {
        f"UPDATE on rlsctl.api_key_xact to {app}",
        f"SELECT on rlsctl.api_key_xact to {app}",
    }, items
    assert cli(secured_db, "apply").exit_code == 0
    assert drift_items(secured_db) == (0, [])
    with secured_db.connect() as conn:
        assert conn.execute("SELECT relacl FROM pg_class WHERE oid = 'rlsctl.api_key_xact'::regclass").fetchone()[
            0
        ] in (None, [f"{secured_db.role('keys')}=rwU/{secured_db.role('keys')}"])


def test_a_sequence_a_managed_role_may_read_is_drift(secured_db):
    """An outside check detached a serial's sequence from its column (OWNED BY NONE) and granted SELECT
    on it to the app: last_value, every tenant's count, with drift at 0."""
    app = secured_db.role("app")
    with secured_db.connect() as conn:
        conn.execute("CREATE SEQUENCE public.zz_counter")
        conn.execute("CREATE SEQUENCE public.zz_quiet")  # no managed role reaches it
        conn.execute(sql.SQL("GRANT SELECT ON SEQUENCE public.zz_counter TO {}").format(sql.Identifier(app)))
    try:
        code, items = drift_items(secured_db)
        found = {item["object"]: item for item in items}
        assert code == 1 and set(found) == {"undeclared sequence zz_counter"}, list(found)
        assert f"{app}: SELECT" in found["undeclared sequence zz_counter"]["detail"]
        assert "last_value counts every tenant's rows" in found["undeclared sequence zz_counter"]["detail"]
    finally:
        with secured_db.connect() as conn:
            conn.execute("DROP SEQUENCE public.zz_counter, public.zz_quiet")


def test_an_undeclared_parent_of_a_declared_table_is_drift(secured_db):
    """An outside check: ALTER TABLE ... INHERIT made a declared table the child of a hand-made one,
    whose readers then read every row of it without its policies; drift said nothing (the parent
    granted to an undeclared role only)."""
    with secured_db.connect() as conn:
        conn.execute('CREATE TABLE public.shadow (id text, title text)')
        conn.execute('ALTER TABLE "Prompt" INHERIT public.shadow')
    try:
        code, items = drift_items(secured_db)
        found = {item["object"]: item for item in items}
        assert code == 1 and "undeclared table shadow" in found, list(found)
        assert "declared Prompt inherits from it" in found["undeclared table shadow"]["detail"]
    finally:
        with secured_db.connect() as conn:
            conn.execute('ALTER TABLE "Prompt" NO INHERIT public.shadow')
            conn.execute("DROP TABLE public.shadow")
