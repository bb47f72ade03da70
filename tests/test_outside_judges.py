"""The field's own tools, run against rlsctl's output.

- pgspot (PyPI) on the rendered SQL of every phase: no error, no warning;
- pgrls (PyPI, default configuration) on the applied database: no error-level
  finding, and what remains is exactly what docs/lint.md explains;
- plpgsql_check (Debian's postgresql-15-plpgsql-check, installed by .ci/run)
  on every PL/pgSQL function and trigger rlsctl creates: nothing at all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlsctl.change.render import render_phases
from rlsctl.policy.project import load_project
from tests.conftest import ROOT
from tests.test_lint import documented_rows, ticked

PHASES = range(len(load_project(ROOT).phases))  # every phase the project has, not a fixed count


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is not installed: it comes with the [test] extra"
    return found


@pytest.mark.parametrize("phase", PHASES)
def test_pgspot_finds_nothing_in_the_rendered_sql(tmp_path, phase):
    script = tmp_path / f"phase-{phase}.sql"
    script.write_text(render_phases(load_project(ROOT), phase)[phase])
    result = subprocess.run([tool("pgspot"), str(script)], capture_output=True, text=True, check=False)
    summary = result.stdout.strip().splitlines()[-1]
    assert "Errors: 0 Warnings: 0" in summary, result.stdout[-3000:]


def test_pgrls_reports_no_error_on_the_applied_database(secured_db):
    result = subprocess.run(
        [tool("pgrls"), "lint", "--database-url", _url(secured_db), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": _url(secured_db)},
    )
    data = json.loads(result.stdout)
    errors = [v for v in data["violations"] if v["severity"] == "error"]
    assert not errors, json.dumps(errors, indent=1)[:3000]
    assert data["violations"], "pgrls found nothing at all: did it read the database?"
    # What remains is what docs/lint.md explains, no more and no less: (rule, level, policy or trigger name),
    # or (rule, level, "*") for a row that names no object (it covers every table).
    documented: dict[tuple[str, str], set[str]] = {}
    for rule, level, on, _why in documented_rows("pgrls findings"):
        documented[(ticked(rule)[0], level)] = set(ticked(on)) or {"*"}
    remaining = {
        (
            v["rule_id"],
            v["severity"],
            "*" if documented.get((v["rule_id"], v["severity"])) == {"*"} else v["location"].split(".")[-1],
        )
        for v in data["violations"]
    }
    explained = {(rule, level, name) for (rule, level), names in documented.items() for name in names}
    assert remaining == explained, "update the table of pgrls findings in docs/lint.md"


def _url(database) -> str:
    from psycopg import conninfo

    params = conninfo.conninfo_to_dict(database.dsn)
    return f"postgresql://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:{params.get('port', 5432)}/{params['dbname']}"


def test_plpgsql_check_finds_nothing_in_rlsctls_functions(secured_db):
    with secured_db.connect() as conn:
        available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'plpgsql_check'").fetchone()
        assert available, "postgresql-15-plpgsql-check is not installed (.ci/run installs it)"
        conn.execute("CREATE EXTENSION IF NOT EXISTS plpgsql_check")
        # The API-key session table is a temp table its function creates on first use: make it exist
        # in this session so the static check can resolve it (a wrong key authenticates nothing).
        assert conn.execute("SELECT rlsctl.authenticate_api_key('not a key')").fetchone()[0] is False
        checked = conn.execute(
            """SELECT count(*) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
               JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'rlsctl' AND NOT t.tgisinternal"""
        ).fetchone()[0]
        assert checked >= 4  # the guard triggers of Team, TeamMember, Prompt, PromptApproval
        problems = conn.execute(
            """SELECT p.oid::regprocedure::text, t.tgrelid::regclass::text, c.level, c.message
               FROM pg_trigger AS t
               JOIN pg_proc AS p ON p.oid = t.tgfoid
               JOIN pg_namespace AS n ON n.oid = p.pronamespace
               CROSS JOIN LATERAL plpgsql_check_function_tb(p.oid, t.tgrelid, all_warnings => true) AS c
               WHERE n.nspname = 'rlsctl' AND NOT t.tgisinternal"""
        ).fetchall()
        others = conn.execute(
            """SELECT p.oid::regprocedure::text, c.level, c.message
               FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
               JOIN pg_language AS l ON l.oid = p.prolang
               CROSS JOIN LATERAL plpgsql_check_function_tb(p.oid, all_warnings => true) AS c
               WHERE n.nspname = 'rlsctl' AND l.lanname = 'plpgsql' AND p.prorettype <> 'trigger'::regtype"""
        ).fetchall()
    assert not problems and not others, problems + others
