"""Managing API keys from the CLI: scopes checked against the policies, listing and revoking.

Listing and revoking with `--as USER` run as the app role with that identity, so the ApiKey
policies decide (ADMIN or OWNER of the key's team); each rule is tried from the denied side
first: a member, another team's admin, an empty identity.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import psycopg
import pytest
from click.testing import CliRunner

from rlsctl.cli.main import main
from rlsctl.keys import declared_scopes
from rlsctl.policy.project import load_project
from tests.conftest import ROOT, migrate_and_apply

RAW = {"ka": "pc_admin_test_a1", "ka2": "pc_admin_test_a2", "kb": "pc_admin_test_b1"}
PROMPTCRAFT_SCOPES = ("analytics:read", "audit:read", "prompts:read", "prompts:write")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def teams_db(make_module_db):
    """Team A: owner ua, ADMIN uadm, MEMBER um; team B: owner ub; un is in no team."""
    database = make_module_db()
    migrate_and_apply(database)
    with database.connect() as conn:
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES
                        ('ua', 'a@x', now()), ('ub', 'b@x', now()), ('um', 'm@x', now()),
                        ('uadm', 'adm@x', now()), ('un', 'n@x', now())""")
        conn.execute("""INSERT INTO "Team"(id, name, "ownerId", "updatedAt")
                        VALUES ('ta', 'A', 'ua', now()), ('tb', 'B', 'ub', now())""")
        conn.execute("""INSERT INTO "TeamMember"(id, "teamId", "userId", role)
                        VALUES ('m1', 'ta', 'um', 'MEMBER'), ('m2', 'ta', 'uadm', 'ADMIN')""")
        conn.execute(
            """INSERT INTO "ApiKey"(id, "teamId", name, "hashedKey", scopes, "expiresAt") VALUES
               ('ka', 'ta', 'a one', %s, '{prompts:read}', NULL),
               ('ka2', 'ta', 'a two', %s, '{prompts:read,audit:read}', '2999-01-01'),
               ('kb', 'tb', 'b one', %s, '{prompts:read}', NULL)""",
            (sha256(RAW["ka"]), sha256(RAW["ka2"]), sha256(RAW["kb"])),
        )
    return database


def cli(database, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main, [*args, "--dsn", database.dsn, "--project", str(ROOT), "--role-prefix", database.prefix]
    )
    return result.exit_code, result.stdout, result.stderr


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def listed(database, *args: str) -> list[dict]:
    code, out, err = cli(database, "keys", "list-api-keys", "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)["api_keys"]


def ids(database, *args: str) -> list[str]:
    return [key["id"] for key in listed(database, *args)]


def authenticates(database, raw: str) -> bool:
    with database.connect(autocommit=False) as conn:
        conn.execute("SELECT set_config('role', %s, true)", (database.role("app"),))
        return bool(conn.execute("SELECT rlsctl.authenticate_api_key(%s)", (raw,)).fetchone()[0])


def new_key(database, team: str, owner: str) -> tuple[str, str]:
    """A key created through the CLI: (its id, the raw key)."""
    code, out, err = cli(database, "keys", "create-api-key", "--team", team, "--scope", "prompts:read", "--as", owner)
    assert code == 0, err
    raw = out.strip().splitlines()[-1]
    with database.connect() as conn:
        key_id = conn.execute("""SELECT id FROM "ApiKey" WHERE "hashedKey" = %s""", (sha256(raw),)).fetchone()[0]
    return key_id, raw


# -- scopes --------------------------------------------------------------------------------------


def test_the_known_scopes_are_those_the_policies_ask_for():
    assert declared_scopes(load_project(ROOT)) == PROMPTCRAFT_SCOPES


def test_an_unknown_scope_is_refused_naming_it_and_the_known_ones(teams_db):
    with teams_db.connect() as conn:
        before = conn.execute('SELECT count(*) FROM "ApiKey"').fetchone()[0]
    code, out, err = cli(teams_db, "keys", "create-api-key", "--team", "ta", "--as", "ua",
                         "--scope", "prompts:read", "--scope", "bogus:scope")  # fmt: skip
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "'bogus:scope'" in line and ", ".join(PROMPTCRAFT_SCOPES) in line
    with teams_db.connect() as conn:
        assert conn.execute('SELECT count(*) FROM "ApiKey"').fetchone()[0] == before


# -- listing -------------------------------------------------------------------------------------


def test_the_operator_lists_every_team_and_never_a_hash(teams_db):
    code, out, err = cli(teams_db, "keys", "list-api-keys", "--format", "json")
    assert code == 0, err
    keys = {key["id"]: key for key in json.loads(out)["api_keys"]}
    assert {"ka", "ka2", "kb"} <= set(keys)
    assert keys["ka2"]["team"] == "ta" and keys["ka2"]["name"] == "a two"
    assert keys["ka2"]["scopes"] == ["prompts:read", "audit:read"]
    assert keys["ka2"]["expires"].startswith("2999-01-01") and keys["ka"]["expires"] is None
    assert keys["ka"]["created"] is not None and keys["ka"]["last_used"] is None  # no such column in PromptCraft
    for raw in RAW.values():
        assert sha256(raw) not in out and raw not in out
    assert "hash" not in out.lower()
    assert ids(teams_db, "--team", "tb") == ["kb"]


def test_the_text_listing(teams_db):
    code, out, err = cli(teams_db, "keys", "list-api-keys", "--team", "ta", "--as", "ua")
    assert code == 0, err
    assert "ka2: team ta, name 'a two', scopes prompts:read,audit:read, created " in out
    assert "expires 2999-01-01 00:00" in out and sha256(RAW["ka2"]) not in out


def test_admins_list_only_their_teams_keys(teams_db):
    assert set(ids(teams_db, "--as", "ua")) >= {"ka", "ka2"} and "kb" not in ids(teams_db, "--as", "ua")
    assert set(ids(teams_db, "--as", "uadm")) >= {"ka", "ka2"} and "kb" not in ids(teams_db, "--as", "uadm")
    assert ids(teams_db, "--as", "ub") == ["kb"]


def test_other_teams_admins_members_and_strangers_list_nothing(teams_db):
    assert ids(teams_db, "--as", "ub", "--team", "ta") == []
    assert ids(teams_db, "--as", "ua", "--team", "tb") == []
    assert ids(teams_db, "--as", "um") == []
    assert ids(teams_db, "--as", "un") == []
    code, out, _ = cli(teams_db, "keys", "list-api-keys", "--as", "um")
    assert code == 0 and "no API keys that 'um' may see" in out


def test_the_app_role_without_an_identity_lists_nothing(teams_db):
    assert ids(teams_db, "--as", "") == []  # the identity setting set, to nothing
    with teams_db.connect(autocommit=False) as conn:
        conn.execute("SELECT set_config('role', %s, true)", (teams_db.role("app"),))
        assert conn.execute('SELECT count(*) FROM "ApiKey"').fetchone()[0] == 0


# -- revoking ------------------------------------------------------------------------------------


def test_a_revoked_key_no_longer_authenticates(teams_db):
    key_id, raw = new_key(teams_db, "ta", "ua")
    assert authenticates(teams_db, raw)
    code, out, err = cli(teams_db, "keys", "revoke-api-key", key_id, "--as", "uadm")  # an ADMIN, not the owner
    assert code == 0, err
    assert f"revoked API key {key_id}" in out and "of team ta" in out
    assert not authenticates(teams_db, raw)
    assert key_id not in ids(teams_db)
    code, _, err = cli(teams_db, "keys", "revoke-api-key", key_id, "--as", "uadm")
    assert code == 2 and "nothing was revoked" in one_error_line(err)


@pytest.mark.parametrize(("who", "why"), [("um", "a MEMBER"), ("ub", "another team's owner"), ("un", "in no team"),
                                          ("", "no identity")])  # fmt: skip
def test_only_an_admin_of_the_keys_team_revokes(teams_db, who, why):
    key_id, raw = new_key(teams_db, "ta", "ua")
    code, out, err = cli(teams_db, "keys", "revoke-api-key", key_id, "--as", who)
    assert code == 2 and out == "", why
    line = one_error_line(err)
    assert f"may not revoke API key '{key_id}'" in line and "nothing was revoked" in line
    assert authenticates(teams_db, raw), why
    assert key_id in ids(teams_db)


def test_without_an_identity_the_teams_owner_revokes(teams_db):
    key_id, raw = new_key(teams_db, "tb", "ub")
    code, out, err = cli(teams_db, "keys", "revoke-api-key", key_id)
    assert code == 0, err
    assert "of team tb" in out
    assert not authenticates(teams_db, raw)
    assert authenticates(teams_db, RAW["kb"])  # the team's other key is untouched


def test_revoking_a_key_that_does_not_exist(teams_db):
    code, _, err = cli(teams_db, "keys", "revoke-api-key", "no-such-key")
    assert code == 2 and "no API key 'no-such-key'" in one_error_line(err)


def test_revoke_needs_the_key_table(make_db):
    database = make_db()
    migrate_and_apply(database, phase=3)  # ApiKey arrives with phase 4
    for args in (("revoke-api-key", "ka"), ("list-api-keys",)):
        code, _, err = cli(database, "keys", *args)
        assert code == 2 and "declares no api_keys table that exists here" in one_error_line(err)


def test_a_key_session_cannot_list_keys(teams_db):
    """An API key with every scope is no admin: the ApiKey policies ask for a user."""
    with teams_db.connect(autocommit=False) as conn:
        conn.execute("SELECT set_config('role', %s, true)", (teams_db.role("app"),))
        assert conn.execute("SELECT rlsctl.authenticate_api_key(%s)", (RAW["ka2"],)).fetchone()[0] is True
        assert conn.execute('SELECT count(*) FROM "ApiKey"').fetchone()[0] == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute('SELECT "hashedKey" FROM "ApiKey"')


def test_the_owner_role_lists_only_where_a_policy_lets_it(teams_db, tmp_path):
    """A project whose owner role reads no key: listing without --as is refused, not empty."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "policies", project / "policies")
    shutil.copytree(ROOT / "migrations", project / "migrations")
    settings = project / "policies" / "project.yaml"
    every = "every_table:\n  policies:\n    owner:\n      select: true\n"
    assert every in settings.read_text()
    settings.write_text(settings.read_text().replace(every, "every_table:\n"))
    result = CliRunner().invoke(main, ["keys", "list-api-keys", "--dsn", teams_db.dsn, "--project", str(project),
                                       "--role-prefix", teams_db.prefix])  # fmt: skip
    assert result.exit_code == 2 and result.stdout == ""
    line = one_error_line(result.stderr)
    assert f"no policy lets the owner role ({teams_db.role('owner')}) read ApiKey" in line and "--as USER" in line


def key_rows(database) -> int:
    with database.connect() as conn:
        return conn.execute('SELECT count(*) FROM "ApiKey"').fetchone()[0]


def test_without_an_identity_a_team_with_no_owner_to_act_as_is_refused(teams_db):
    """Without --as, rlsctl acts as the team's owner: when there is none, one line, nothing made."""
    before = key_rows(teams_db)
    code, _, err = cli(teams_db, "keys", "create-api-key", "--team", "t_none", "--scope", "prompts:read")
    assert code == 2 and "no such team 't_none'" in err and len(err.strip().splitlines()) == 1, err
    assert key_rows(teams_db) == before


@pytest.mark.parametrize("who", ["um", "ub", "un"], ids=["a member", "another team's owner", "in no team"])
def test_only_an_admin_of_the_team_creates_its_keys(teams_db, who):
    before = key_rows(teams_db)
    code, _, err = cli(teams_db, "keys", "create-api-key", "--team", "ta", "--scope", "prompts:read", "--as", who)
    assert code == 2 and "not allowed to create a key for ta" in err, err
    assert key_rows(teams_db) == before
