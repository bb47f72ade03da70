"""Bad input: one clear line naming the file, line or object, exit 2, no traceback, database untouched."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from rlsctl.catalog import queries as catalog
from rlsctl.change.txn import LOCK_CLASS, LOCK_ID
from rlsctl.cli.main import main
from rlsctl.migrate import run as migrating
from tests.conftest import ROOT, migrate_and_apply


def copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "policies", project / "policies")
    shutil.copytree(ROOT / "migrations", project / "migrations")
    return project


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def fingerprint(database) -> tuple:
    """What apply could change: roles of the prefix, policies, helpers, RLS flags, grants."""
    with database.connect() as conn:
        return (
            tuple(catalog.roles(conn, database.prefix)),
            tuple(catalog.policies(conn, "public")),
            tuple(catalog.functions(conn, "rlsctl")),
            tuple(sorted(catalog.tables(conn, "public").items())),
            tuple(sorted(catalog.grants(conn, "public"), key=lambda g: g.key)),
        )


def assert_one_clean_line(stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("error: ")


def test_malformed_yaml_names_file_and_line(tmp_path):
    project = copy_project(tmp_path)
    path = project / "policies" / "teams.yaml"
    text = path.read_text().splitlines()
    text[6] = "  User: [unclosed"
    path.write_text("\n".join(text) + "\n")
    code, _, err = run("render", "--project", str(project))
    assert code == 2
    assert_one_clean_line(err)
    assert "teams.yaml:" in err and "malformed YAML" in err


def test_unknown_table_names_file_and_line(tmp_path):
    project = copy_project(tmp_path)
    (project / "policies" / "extra.yaml").write_text(
        "tables:\n  Invoice:\n    policies:\n      app:\n        select: true\n"
    )
    code, _, err = run("render", "--project", str(project))
    assert code == 2
    assert_one_clean_line(err)
    assert "extra.yaml:2" in err and "'Invoice'" in err and "neither the migrations nor the database" in err


def test_unknown_column_names_file_line_and_column(tmp_path):
    project = copy_project(tmp_path)
    path = project / "policies" / "prompts.yaml"
    path.write_text(
        path.read_text().replace(
            "- self: userId\n            - tenant_role: MEMBER",
            "- self: authorId\n            - tenant_role: MEMBER",
            1,
        )
    )
    code, _, err = run("render", "--project", str(project))
    assert code == 2
    assert_one_clean_line(err)
    assert "prompts.yaml:" in err and "Prompt.authorId" in err


def test_unknown_role_and_unknown_condition_are_named(tmp_path):
    project = copy_project(tmp_path)
    path = project / "policies" / "analytics.yaml"
    path.write_text(
        path.read_text().replace(
            "      analyst:\n        select: true", "      analytics_team:\n        select: true", 1
        )
    )
    code, _, err = run("render", "--project", str(project))
    assert code == 2 and "role 'analytics_team' is not declared" in err and "analytics.yaml:" in err
    path.write_text(
        path.read_text().replace("analytics_team", "analyst").replace("- self: userId", "- owner_is: userId", 1)
    )
    code, _, err = run("render", "--project", str(project))
    assert code == 2 and "unknown condition 'owner_is'" in err and "analytics.yaml:" in err


def test_a_table_declared_twice_is_refused(tmp_path):
    project = copy_project(tmp_path)
    (project / "policies" / "dup.yaml").write_text("tables:\n  User:\n    policies: {}\n")
    code, _, err = run("render", "--project", str(project))
    assert code == 2 and "table 'User' is already declared in" in err and "dup.yaml:2" in err


def test_invalid_dsn():
    code, _, err = run("apply", "--dsn", "host=localhost port=5432 this is not a dsn")
    assert code == 2
    assert_one_clean_line(err)
    assert "invalid DSN" in err


def test_unreachable_server_names_the_host_not_the_password():
    code, _, err = run("apply", "--dsn", "postgresql://postgres:s3cret-pw@127.0.0.1:1/nowhere")
    assert code == 2
    assert_one_clean_line(err)
    assert "127.0.0.1:1/nowhere" in err and "s3cret-pw" not in err


def test_unknown_host_is_named():
    code, _, err = run("migrate", "--dsn", "postgresql://postgres@no-such-host.invalid/db")
    assert code == 2 and "no-such-host.invalid" in err


def test_database_url_and_libpq_environment_are_used(db, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/from_env")
    code, _, err = run("apply")
    assert code == 2 and "127.0.0.1:1/from_env" in err
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", "1")
    monkeypatch.setenv("PGDATABASE", "from_pgenv")
    code, _, err = run("apply")
    assert code == 2 and "127.0.0.1:1/from_pgenv" in err


def test_missing_extension_leaves_the_database_untouched(db, tmp_path):
    project = copy_project(tmp_path)
    path = project / "policies" / "project.yaml"
    path.write_text(
        path.read_text().replace("extensions: [pgcrypto]", "extensions: [pgcrypto, rlsctl_no_such_extension]")
    )
    migrate_and_apply(db, phase=1)
    before = fingerprint(db)
    code, _, err = run("apply", "--dsn", db.dsn, "--project", str(project), "--role-prefix", db.prefix)
    assert code == 2
    assert_one_clean_line(err)
    assert "rlsctl_no_such_extension" in err and "not installed" in err
    assert fingerprint(db) == before


def test_lock_held_past_lock_timeout(db):
    migrate_and_apply(db, phase=0)
    before = fingerprint(db)
    options = ["--dsn", db.dsn, "--role-prefix", db.prefix, "--project", str(ROOT)]
    with db.connect() as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, LOCK_ID))
        # apply tries in short attempts until --lock-wait-total, then names who holds the lock
        code, _, err = run("apply", *options, "--lock-timeout", "0.2", "--lock-wait-total", "0.5")
        assert code == 2
        assert_one_clean_line(err)
        assert "another rlsctl run (apply, migrate or rollback) held rlsctl's lock" in err
        assert f"blocked by pid {holder.info.backend_pid} (idle): SELECT pg_advisory_lock" in err
        # migrate waits once, --lock-timeout
        code, _, err = run("migrate", *options, "--lock-timeout", "0.5")
    assert code == 2
    assert_one_clean_line(err)
    assert "held the lock for longer than --lock-timeout 0.5s" in err
    assert fingerprint(db) == before


def test_a_role_turned_superuser_is_refused(db):
    migrate_and_apply(db, phase=0)
    with db.connect() as conn:
        conn.execute(f'ALTER ROLE "{db.prefix}auditor" SUPERUSER')
    before = fingerprint(db)
    try:
        code, _, err = run("apply", "--dsn", db.dsn, "--role-prefix", db.prefix, "--project", str(ROOT))
        assert code == 2
        assert_one_clean_line(err)
        assert f"role {db.prefix}auditor is SUPERUSER; rlsctl will not manage it" in err
        assert fingerprint(db)[1:] == before[1:]
    finally:
        with db.connect() as conn:
            conn.execute(f'ALTER ROLE "{db.prefix}auditor" NOSUPERUSER')


def test_a_statement_failing_late_rolls_everything_back(db, tmp_path):
    """The guard triggers come late in the plan; if one fails, no earlier statement stays."""
    project = copy_project(tmp_path)
    (project / "templates" / "objects").mkdir(parents=True)
    (project / "templates" / "objects" / "trigger.sql.j2").write_text(
        "{% macro create(o, s) -%}\nSELECT pg_catalog.int4div(1, 0);\n{%- endmacro %}\n"
    )
    code, _, err = run("migrate", "--dsn", db.dsn, "--project", str(project), "--role-prefix", db.prefix)
    assert code == 0, err
    before = fingerprint(db)
    code, _, err = run("apply", "--dsn", db.dsn, "--project", str(project), "--role-prefix", db.prefix)
    assert code == 2
    assert_one_clean_line(err)
    assert "division by zero" in err and "nothing was changed" in err
    assert fingerprint(db) == before


def test_no_traceback_from_the_real_entry_point(tmp_path):
    """The installed console script, not just the click runner, prints one line."""
    result = subprocess.run(
        [sys.executable, "-m", "rlsctl.cli.main", "apply", "--dsn", "postgresql://postgres@127.0.0.1:1/x"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert_one_clean_line(result.stderr)


def test_unreadable_project_dir(tmp_path):
    code, _, err = run("render", "--project", str(tmp_path / "missing"))
    assert code == 2 and "no policies/ directory" in err


def test_migrate_refuses_an_edited_applied_phase(db, tmp_path):
    project = copy_project(tmp_path)
    code, _, err = run("migrate", "--dsn", db.dsn, "--project", str(project), "--role-prefix", db.prefix, "--to", "0")
    assert code == 0, err
    step = project / "migrations" / "0_current_schema" / "01_current_schema.up.sql"
    step.write_text(step.read_text() + "\n-- edited\n")
    code, _, err = run("migrate", "--dsn", db.dsn, "--project", str(project), "--role-prefix", db.prefix)
    assert code == 2 and "phase 0 (current_schema) was edited after it was applied" in err
    with psycopg.connect(db.dsn) as conn:
        assert conn.execute("SELECT to_regclass('public.\"Team\"')").fetchone()[0] is None


def test_ranks_that_the_rank_column_cannot_hold_are_refused(tmp_path):
    project = copy_project(tmp_path)
    path = project / "policies" / "project.yaml"
    path.write_text(path.read_text().replace("ranks: [MEMBER, ADMIN, OWNER]", "ranks: [MEMBER, ADMIN, OWNR]"))
    code, _, err = run("render", "--project", str(project))
    assert code == 2 and "rank 'OWNR' is not a value of TeamMember.role" in err and "project.yaml:" in err


def test_a_principal_id_of_the_wrong_type_is_named(secured_db, tmp_path):
    project = copy_project(tmp_path)
    path = project / "policies" / "project.yaml"
    path.write_text(path.read_text().replace("    type: text\n", "    type: uuid\n"))
    code, _, err = run("test", "--dsn", secured_db.dsn, "--project", str(project), "--role-prefix", secured_db.prefix)
    assert code == 2
    assert_one_clean_line(err)
    assert "fixtures.yaml:" in err and "'rlsctl-test-newcomer' is not a valid uuid" in err


def test_an_encrypted_column_read_by_a_rule_is_refused(tmp_path):
    """Ciphertext compared in a policy would silently change what the policy means."""
    project = copy_project(tmp_path)
    path = project / "policies" / "analytics.yaml"
    path.write_text(path.read_text().replace("encrypted: [metadata]", "encrypted: [metadata, userId]", 1))
    code, _, err = run("render", "--project", str(project))
    assert code == 2
    assert_one_clean_line(err)
    assert "analytics.yaml:" in err and "UsageAnalytics.userId is read by a policy condition" in err


def test_an_encrypted_column_read_by_another_tables_exists_is_refused(tmp_path):
    project = copy_project(tmp_path)
    path = project / "policies" / "prompts.yaml"
    path.write_text(path.read_text().replace("# encrypted: [content]", "encrypted: [content, id]", 1))
    code, _, err = run("render", "--project", str(project))
    assert code == 2
    assert_one_clean_line(err)
    assert "PromptVersion.id is read by an exists condition of PromptApproval" in err


def test_encrypting_an_unread_column_is_accepted(tmp_path):
    project = copy_project(tmp_path)
    path = project / "policies" / "prompts.yaml"
    path.write_text(path.read_text().replace("# encrypted: [content]", "encrypted: [content]", 1))
    code, out, err = run("render", "--project", str(project))
    assert code == 0, err
    assert "trigger PromptVersion.zz_rlsctl_encrypt" in out


def test_members_must_be_roles_outside_the_project(db, tmp_path):
    """`members:` lists outside roles; a project role there (its memberships are declared by
    their absence) or an impossible name is refused with the file and line, nothing applied."""
    migrate_and_apply(db, phase=0)
    before = fingerprint(db)
    project = copy_project(tmp_path)
    settings = project / "policies" / "project.yaml"
    original = settings.read_text()
    owner = "  owner:\n    kind: owner\n"
    assert owner in original
    settings.write_text(original.replace(owner, owner + f"    members: [{db.prefix}app]\n"))
    code, _, err = run("apply", "--dsn", db.dsn, "--project", str(project), "--role-prefix", db.prefix)
    assert code == 2
    assert_one_clean_line(err)
    assert "project.yaml:" in err and f"members: '{db.prefix}app' is a role of this project" in err
    assert fingerprint(db) == before
    settings.write_text(original.replace(owner, owner + '    members: [""]\n'))
    code, _, err = run("render", "--project", str(project))
    assert code == 2
    assert_one_clean_line(err)
    assert "project.yaml:" in err and "a role name is 1 to 63 bytes" in err


# -- usage errors raised inside a command, and a reader that goes away ----------------------------


def test_a_bad_value_checked_inside_a_command_is_one_line(db):
    """click's BadParameter, raised by the command itself (not by click's parser): one line, exit 2."""
    code, out, err = run("keys", "create-api-key", "--team", "t", "--scope", "prompts:read", "--expires", "90x",
                         "--dsn", db.dsn, "--project", str(ROOT), "--role-prefix", db.prefix)  # fmt: skip
    assert code == 2 and out == ""
    assert_one_clean_line(err)
    assert "--expires" in err and "'90x'" in err and "internal error" not in err and "Usage:" not in err


def test_a_click_usage_error_inside_a_command_is_one_line():
    code, _, err = run("test", "--policy-snapshot", "--project", str(ROOT))
    assert code == 2
    assert_one_clean_line(err)
    assert "--policy-snapshot goes with --format pgtap" in err and "Usage:" not in err


def rlsctl_into_head(args: str, cwd: Path, lines: int = 1) -> tuple[int, str, str]:
    """`rlsctl ARGS | head -LINES` through a real shell pipe: (rlsctl's exit status, what head printed,
    rlsctl's stderr)."""
    rlsctl = Path(sys.executable).parent / "rlsctl"
    script = f'"{rlsctl}" {args} 2>rlsctl.err | head -{lines}; echo "status=${{PIPESTATUS[0]}}"'
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=cwd, check=True, timeout=120)
    *printed, status = result.stdout.splitlines()
    return int(status.removeprefix("status=")), "\n".join(printed), (cwd / "rlsctl.err").read_text()


def test_a_closed_pipe_ends_quietly_with_141(tmp_path):
    """render prints far more than a pipe holds: head leaves after one line, rlsctl ends like a
    program SIGPIPE stops (141, what `set -o pipefail` reports), without a message or traceback."""
    code, printed, err = rlsctl_into_head(f'render --project "{ROOT}"', tmp_path)
    assert printed == "-- ===== phase 0 ====="
    assert code == 141 and err == ""


def test_drift_json_into_head_ends_quietly(db, tmp_path):
    """The issue's case: drift on a migrated database without its security layer prints a long JSON."""
    with db.connect() as conn:
        migrating.migrate(conn, db.project(), db.target)
    code, printed, err = rlsctl_into_head(
        f'drift --format json --dsn "{db.dsn}" --project "{ROOT}" --role-prefix {db.prefix}', tmp_path
    )
    assert printed == "{"
    assert code == 141 and err == ""


def test_a_short_output_whose_reader_is_gone_is_141_not_drift(db, tmp_path, monkeypatch):
    """"no drift" fits in the pipe's buffer: the write fails only when rich flushes it, and rich
    then exited 1, which `drift | head -0` read as drift found."""
    monkeypatch.setenv("PGOPTIONS", "-c rlsctl.master_key=" + "k" * 40)
    migrate_and_apply(db)
    code, printed, err = rlsctl_into_head(
        f'drift --dsn "{db.dsn}" --project "{ROOT}" --role-prefix {db.prefix}', tmp_path, lines=0
    )
    assert (code, printed, err) == (141, "", "")


@pytest.mark.parametrize(
    "command", [("apply", "--phase", "99"), ("plan", "--phase", "99"), ("rollback", "--to", "99", "--yes"),
                ("render", "--phase", "99")],
)  # fmt: skip
def test_a_phase_the_project_does_not_have_is_refused_by_every_command(db, command):
    """apply and plan said "no changes" for --phase 99, rollback "nothing to roll back": a typo passed."""
    migrate_and_apply(db)
    before = fingerprint(db)
    where = () if command[0] == "render" else ("--dsn", db.dsn)
    code, _, err = run(*command, "--project", str(ROOT), *where, "--role-prefix", db.prefix)
    option = command[1]
    assert code == 2 and err.strip() == f"error: {option} 99: the project has phases 0..4", err
    assert fingerprint(db) == before


def test_test_and_migrate_refuse_the_policy_files_apply_refuses(db, tmp_path):
    """An unknown rank passed `rlsctl test` ("all cells as expected": a condition that names no rank
    grants nothing) and `rlsctl migrate` (which created the project's roles) while apply refused it:
    all three now give apply's message, naming the file and line."""
    project = copy_project(tmp_path)
    shutil.copytree(ROOT / "expectations", project / "expectations")
    prompts = project / "policies" / "prompts.yaml"
    prompts.write_text(prompts.read_text().replace("tenant_role: ADMIN", "tenant_role: admin", 1))
    common = ("--project", str(project), "--dsn", db.dsn, "--role-prefix", db.prefix)
    code, _, refusal = run("plan", *common)
    assert code == 2 and "prompts.yaml:" in refusal and "unknown tenant rank 'admin'" in refusal, refusal
    assert run("migrate", *common)[0::2] == (2, refusal)
    with db.connect() as conn:
        assert not catalog.roles(conn, db.prefix)  # refused before the bootstrap
    migrate_and_apply(db)  # the shipped files, then the edited ones tested against it
    assert run("test", *common)[0::2] == (2, refusal)


def test_an_acknowledgement_naming_no_declared_role_is_refused(tmp_path):
    """`{nosuchrole}` was accepted: the acknowledgement matched nothing and drift failed on the
    difference it meant, forever, without saying why."""
    project = copy_project(tmp_path)
    path = project / "policies" / "project.yaml"
    block = (
        "  acknowledged:\n"
        '    - object: "EXECUTE on pg_catalog.pg_read_file(text) to {apps}"\n'
        "      reason: the platform grants it to every login\n"
    )
    text = path.read_text()
    path.write_text(text.replace("project:\n", "project:\n" + block, 1))
    line = text[: text.index("project:\n")].count("\n") + 3
    code, _, err = run("render", "--project", str(project))
    assert code == 2 and f"project.yaml:{line}: {{apps}} names no declared role (role keys: " in err, err


def test_a_fixture_value_the_server_refuses_is_named_at_its_line(db, tmp_path):
    """A value only the server can judge (an enum label): the message named the row, not where it is."""
    project = copy_project(tmp_path)
    shutil.copytree(ROOT / "expectations", project / "expectations")
    fixtures = project / "policies" / "fixtures.yaml"
    text = fixtures.read_text()
    line = text[: text.index("m_a_coowner:")].count("\n") + 1
    fixtures.write_text(text.replace('userId: "@u_a_coowner", role: OWNER', 'userId: "@u_a_coowner", role: OWNR', 1))
    migrate_and_apply(db)
    code, _, err = run("test", "--project", str(project), "--dsn", db.dsn, "--role-prefix", db.prefix)
    assert code == 2, err
    assert f"fixtures.yaml:{line}: fixture row TeamMember.m_a_coowner cannot be loaded: " in err
    assert "invalid input value for enum" in err
