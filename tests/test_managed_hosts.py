"""Managed hosts, where nobody is superuser: every command as the platform's login.

- **RDS-like**: a LOGIN role with CREATEROLE and CREATEDB, not superuser, owning the database;
  rlsctl creates pgcrypto itself (a trusted extension: its functions belong to the bootstrap
  superuser, whose grants this login cannot change).
- **Supabase-like**: the platform installed pgcrypto in schema `extensions`, owned by its own
  admin role, before rlsctl ever ran.

Both must migrate, apply, converge (a second apply changes nothing, drift exits 0), test,
encrypt, rotate and lint clean as that login. What only a DBA can do is refused with the
statement to hand over (`plan --dba-script`), and can be acknowledged.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from psycopg import sql

from rlsctl.cli.main import main
from tests.conftest import ROOT, TestDatabase

KEK = "k" * 40


def managed(database: TestDatabase, setup: str) -> TestDatabase:
    """The database as the platform's login sees it, after the platform's own setup."""
    operator = database.role("operator")
    admin = database.role("platform_admin")
    with database.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB NOSUPERUSER NOBYPASSRLS").format(
            sql.Identifier(operator)))  # fmt: skip
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(database.name),
                                                                     sql.Identifier(operator)))  # fmt: skip
        if setup == "supabase":
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(admin)))
            conn.execute(sql.SQL("CREATE SCHEMA extensions AUTHORIZATION {}").format(sql.Identifier(admin)))
            conn.execute("CREATE EXTENSION pgcrypto WITH SCHEMA extensions")
            conn.execute("GRANT USAGE ON SCHEMA extensions TO PUBLIC")
    return TestDatabase(database.name, database.dsn + f" user={operator}", database.prefix)


@pytest.fixture(params=["rds", "supabase"])
def host(request, db, monkeypatch) -> TestDatabase:
    monkeypatch.setenv("PGOPTIONS", f"-c rlsctl.master_key={KEK}")
    return managed(db, request.param)


def cli(database: TestDatabase, *args: str, project: Path = ROOT) -> Result:
    arguments = [*args, "--dsn", database.dsn, "--project", str(project), "--role-prefix", database.prefix]
    return CliRunner().invoke(main, arguments)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def test_every_command_as_the_platform_login(host):
    ok(cli(host, "migrate"))
    ok(cli(host, "apply"))
    again = json.loads(ok(cli(host, "apply", "--format", "json")).stdout)
    assert again["changed"] is False and again["statements"] == 0 and again["needs_dba"] == []
    assert "no drift" in ok(cli(host, "drift")).output
    assert "no changes" in ok(cli(host, "plan")).output
    assert "all cells as expected" in ok(cli(host, "test")).output
    linted = json.loads(cli(host, "lint", "--live", "--format", "json").stdout)
    assert not [f for f in linted["findings"] if f["rule"] == "SEC008"], "rlsctl's own memberships are intended"
    # Encryption works where the platform put pgcrypto: a backfill, a rotation, an API key.
    superuser = TestDatabase(host.name, host.dsn.rsplit(" user=", 1)[0], host.prefix)
    with superuser.connect() as conn:  # the application's rows, written past RLS
        conn.execute("""INSERT INTO "User" (id, email, "updatedAt") VALUES ('u1', 'u1@example.test', now())""")
        conn.execute("""INSERT INTO "Team" (id, name, "ownerId", "updatedAt") VALUES ('t1', 'T', 'u1', now())""")
    ok(cli(host, "keys", "encrypt"))
    ok(cli(host, "keys", "rotate"))
    created = ok(cli(host, "keys", "create-api-key", "--team", "t1", "--scope", "prompts:read"))
    assert created.stdout.strip()
    status = json.loads(ok(cli(host, "keys", "status", "--format", "json")).stdout)
    assert status
    assert "no drift" in ok(cli(host, "drift")).output


def test_supabase_like_as_superuser_converges_too(db, monkeypatch):
    """The platform's extension is used where it is, not moved: no difference after apply."""
    monkeypatch.setenv("PGOPTIONS", f"-c rlsctl.master_key={KEK}")
    managed(db, "supabase")  # the platform's setup; then rlsctl runs as the superuser
    ok(cli(db, "migrate"))
    ok(cli(db, "apply"))
    assert "no drift" in ok(cli(db, "drift")).output
    with db.connect() as conn:
        assert conn.execute("SELECT extnamespace::regnamespace::text FROM pg_extension "
                            "WHERE extname = 'pgcrypto'").fetchone() == ("extensions",)  # fmt: skip


def test_what_needs_a_dba_is_refused_scripted_and_then_converges(db, tmp_path, monkeypatch):
    """The platform's `extensions` schema is not usable by rlsctl's keys role: apply refuses,
    changing nothing; the DBA script grants it; then apply and drift pass."""
    monkeypatch.setenv("PGOPTIONS", f"-c rlsctl.master_key={KEK}")
    host = managed(db, "supabase")
    with db.connect() as conn:
        conn.execute("REVOKE USAGE ON SCHEMA extensions FROM PUBLIC")
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA extensions TO {}").format(sql.Identifier(db.role("operator"))))
    ok(cli(host, "migrate"))
    refused = cli(host, "apply")
    assert refused.exit_code == 2 and "cannot use schema extensions" in refused.output
    assert "nothing was changed" in refused.output
    script = tmp_path / "dba.sql"
    ok(cli(host, "plan", "--dba-script", str(script)))
    text = script.read_text()
    assert f'GRANT USAGE ON SCHEMA "extensions" TO "{db.role("keys")}";' in text
    with db.connect() as conn:  # the DBA runs it
        conn.execute(text)
    ok(cli(host, "apply"))
    assert "no drift" in ok(cli(host, "drift")).output


def test_an_extension_in_a_schema_others_may_write_is_refused(db, tmp_path, monkeypatch):
    """A planted overload in pgcrypto's schema would run in the keys role's code."""
    monkeypatch.setenv("PGOPTIONS", f"-c rlsctl.master_key={KEK}")
    host = managed(db, "supabase")
    with db.connect() as conn:
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA extensions TO {}").format(sql.Identifier(db.role("operator"))))
    ok(cli(host, "migrate"))
    refused = cli(host, "apply")
    assert refused.exit_code == 2, refused.output
    assert "where " + db.role("operator") + " may create objects" in refused.output
    script = tmp_path / "dba.sql"
    ok(cli(host, "plan", "--dba-script", str(script)))
    with db.connect() as conn:
        conn.execute(script.read_text())
    ok(cli(host, "apply"))
    assert "no drift" in ok(cli(host, "drift")).output


def run_as_dba(database: TestDatabase, script: Path) -> None:
    """The DBA runs the script the way DBAs do: psql -f, default (autocommit) mode, stop on error."""
    subprocess.run(["psql", "-d", database.dsn, "-v", "ON_ERROR_STOP=1", "-q", "-f", str(script)],
                   check=True, capture_output=True, text=True)  # fmt: skip


def test_a_pgcrypto_the_login_created_in_public_is_moved_by_the_dba(db, tmp_path, monkeypatch):
    """RDS habit: the login ran CREATE EXTENSION pgcrypto (trusted) in public before rlsctl. The
    extension is the login's but its functions the bootstrap superuser's, so the login cannot move
    it, and owning public it cannot be kept from creating an overload there. apply refuses,
    changing nothing; the DBA script moves it (psql -f as is); then everything converges."""
    monkeypatch.setenv("PGOPTIONS", f"-c rlsctl.master_key={KEK}")
    host = managed(db, "rds")
    with host.connect() as conn:
        conn.execute("CREATE EXTENSION pgcrypto")
    ok(cli(host, "migrate"))
    refused = cli(host, "apply")
    assert refused.exit_code == 2, refused.output
    assert 'ALTER EXTENSION "pgcrypto" SET SCHEMA "rlsctl"' in refused.output and "nothing was changed" in refused.output
    assert "take CREATE" not in refused.output  # revoking cannot help the schema's owner
    with db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_policy").fetchone() == (0,)
    script = tmp_path / "dba.sql"
    ok(cli(host, "plan", "--dba-script", str(script)))
    assert 'ALTER EXTENSION "pgcrypto" SET SCHEMA "rlsctl";' in script.read_text()
    run_as_dba(db, script)
    ok(cli(host, "apply"))
    again = json.loads(ok(cli(host, "apply", "--format", "json")).stdout)
    assert again["changed"] is False and again["statements"] == 0
    assert "no drift" in ok(cli(host, "drift")).output


def test_a_dba_script_revoking_another_roles_grant_works_under_plain_psql(db, tmp_path, monkeypatch):
    """A grant the platform's admin made can only be revoked as that admin (SET LOCAL ROLE): the
    script is one transaction, so plain `psql -f` runs it as written."""
    monkeypatch.setenv("PGOPTIONS", f"-c rlsctl.master_key={KEK}")
    host = managed(db, "supabase")
    ok(cli(host, "migrate"))
    ok(cli(host, "apply"))
    admin = db.role("platform_admin")
    with db.connect() as conn:  # the platform's admin opens rlsctl's table to the app
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(admin)))
        conn.execute(sql.SQL("GRANT SELECT ON \"ApiKey\" TO {} WITH GRANT OPTION").format(sql.Identifier(admin)))
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(admin)))
        conn.execute(sql.SQL("GRANT SELECT ON \"ApiKey\" TO {}").format(sql.Identifier(db.role("analyst"))))
        conn.execute("RESET ROLE")
    drift = cli(host, "drift")
    assert drift.exit_code == 1, drift.output
    script = tmp_path / "dba.sql"
    ok(cli(host, "plan", "--dba-script", str(script)))
    assert "BEGIN;" in script.read_text() and "COMMIT;" in script.read_text()
    run_as_dba(db, script)
    with db.connect() as conn:
        granted = conn.execute(
            "SELECT has_table_privilege(%s, 'public.\"ApiKey\"', 'SELECT')", (db.role("analyst"),)
        ).fetchone()
    assert granted == (False,)


def test_an_acknowledged_dba_item_does_not_fail_drift_but_a_new_one_does(db, tmp_path, monkeypatch):
    monkeypatch.setenv("PGOPTIONS", f"-c rlsctl.master_key={KEK}")
    host = managed(db, "rds")
    ok(cli(host, "migrate"))
    ok(cli(host, "apply"))
    # The platform's admin, holding a grant option, grants the app a privilege this login cannot revoke.
    platform = db.role("platform_admin")
    with db.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(platform)))
        conn.execute(sql.SQL('GRANT DELETE ON "AuditLog" TO {} WITH GRANT OPTION').format(sql.Identifier(platform)))
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(platform)))
        conn.execute(sql.SQL('GRANT DELETE ON "AuditLog" TO {}').format(sql.Identifier(db.role("app"))))
        conn.execute("RESET ROLE")
    drift = cli(host, "drift", "--format", "json")
    items = [item["object"] for item in json.loads(drift.stdout)["drift"] if item["action"] == "needs_dba"]
    assert drift.exit_code == 1 and items, drift.output
    project = tmp_path / "project"
    for part in ("policies", "migrations", "expectations"):
        shutil.copytree(ROOT / part, project / part)
    acknowledged = [item.replace(db.role("app"), "{app}") for item in items]
    with (project / "policies" / "project.yaml").open("a") as file:
        file.write("\n# accepted until the platform team revokes it\n")
    text = (project / "policies" / "project.yaml").read_text()
    block = "".join(f"    - object: {json.dumps(item)}\n      reason: granted by the platform team, ticket OPS-1\n"
                    for item in acknowledged)  # fmt: skip
    text = text.replace("project:\n", "project:\n  acknowledged:\n" + block, 1)
    (project / "policies" / "project.yaml").write_text(text)
    assert "acknowledged" in ok(cli(host, "drift", project=project)).output
    with db.connect() as conn:  # a new one still fails
        conn.execute(sql.SQL('GRANT TRUNCATE ON "Prompt" TO {}').format(sql.Identifier(db.role("app"))))
    assert cli(host, "drift", project=project).exit_code == 1


def test_a_wrong_key_encryption_key_is_refused_where_the_platform_put_pgcrypto(db, monkeypatch):
    """The key check runs with pgcrypto in the platform's schema too (it used to need it in rlsctl's)."""
    monkeypatch.setenv("PGOPTIONS", f"-c rlsctl.master_key={KEK}")
    host = managed(db, "supabase")
    ok(cli(host, "migrate"))
    ok(cli(host, "apply"))
    monkeypatch.setenv("PGOPTIONS", f"-c rlsctl.master_key={'w' * 40}")
    refused = cli(host, "apply")
    assert refused.exit_code == 2, refused.output
    assert "does not unwrap the data keys" in refused.output and "nothing was changed" in refused.output
