"""Role declarations that would blind rlsctl are refused (found by a security review).

- Two keys naming one PostgreSQL role: an `external` alias of the owner role hid the
  memberships in it from drift (a login could then SET ROLE to the owner unreported).
- Reserved names (`public`, `pg_*`, ...).
- A platform's (external) app role that is BYPASSRLS or SUPERUSER: every policy skipped.
"""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner, Result
from psycopg import sql

from rlsctl.cli.main import main
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "orgs"


def orgs_with(tmp_path, old: str, new: str):
    root = tmp_path / "orgs"
    shutil.copytree(EXAMPLE, root)
    settings = root / "policies" / "project.yaml"
    text = settings.read_text()
    assert text.count(old) == 1
    settings.write_text(text.replace(old, new))
    return root


def cli(root, *args: str, database=None) -> Result:
    extra = ["--dsn", database.dsn, "--role-prefix", database.prefix] if database is not None else []
    return CliRunner().invoke(main, [*args, "--project", str(root), *extra])


@pytest.mark.parametrize(
    ("alias", "says"),
    [
        ("  zalias:\n    external: true\n    name: orgs_owner\n", "are both 'orgs_owner'"),
        ("  zalias:\n    external: true\n    name: public\n", "a name PostgreSQL reserves"),
        ("  zalias:\n    external: true\n    name: pg_read_all_data\n", "a name PostgreSQL reserves"),
    ],
    ids=["alias of the owner role", "public", "pg_ role"],
)
def test_a_role_name_that_would_blind_rlsctl_is_refused(tmp_path, alias, says):
    root = orgs_with(tmp_path, "roles:\n", "roles:\n" + alias)
    result = cli(root, "render")
    assert result.exit_code == 2, result.output
    assert "project.yaml:" in result.stderr and says in result.stderr


def test_an_external_app_role_that_bypasses_rls_is_refused(db, tmp_path):
    app = db.role("platform_app")
    with db.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN BYPASSRLS").format(sql.Identifier(app)))
    root = orgs_with(
        tmp_path, "  app:\n    kind: app\n", f"  app:\n    kind: app\n    external: true\n    name: {app}\n"
    )
    assert cli(root, "migrate", database=db).exit_code == 0
    for command in ("apply", "drift"):
        result = cli(root, command, database=db)
        assert result.exit_code == 2, result.output
        assert f"role {app}" in result.stderr and "BYPASSRLS" in result.stderr
    with db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_policy").fetchone() == (0,)  # nothing was applied
