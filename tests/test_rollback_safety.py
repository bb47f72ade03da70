"""rollback never destroys data without a word: it asks, or refuses without --yes; --dry-run
shows what would go; --backup-dir dumps first; the audit history goes only once exported.

`rollback --to 0` used to drop tables holding rows silently.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

from rlsctl.cli.main import main
from rlsctl.policy.project import load_project
from tests.conftest import ROOT, migrate_and_apply

USERS = """INSERT INTO "User" (id, email, "updatedAt") VALUES ('u1', 'u1@x', now())"""
TEAM = """INSERT INTO "Team" (id, name, "ownerId", "updatedAt") VALUES ('t1', 'T', 'u1', now())"""
PROMPT = """INSERT INTO "Prompt" (id, title, content, "userId", "teamId", "updatedAt")
            VALUES ('p1', 'x', 'x', 'u1', 't1', now())"""
AUDIT = """INSERT INTO "AuditLog" (id, action, "resourceType", "resourceId", "userId", "teamId")
           VALUES ('a1', 'x', 'Prompt', 'p1', 'u1', 't1')"""


def without_audit_history(database) -> None:
    """Empty "AuditLog" as a superuser with triggers off would. apply records itself there
    (system:apply) and the seed rows write their audit rows, so every rollback past phase 4 now
    drops audit history and is refused until it is exported; these tests are about the rows of
    the other tables, and the audit history has its own tests below."""
    with database.connect() as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute('DELETE FROM "AuditLog"')


def cli(database, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--dsn", database.dsn, "--role-prefix", database.prefix])


def phases(database) -> list[int]:
    with database.connect() as conn:
        return [row[0] for row in conn.execute("SELECT phase FROM rlsctl.applied_phase ORDER BY 1")]


def exists(database, table: str) -> bool:
    with database.connect() as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'public."{table}"',)).fetchone()[0]


@pytest.fixture
def with_rows(db, monkeypatch):
    monkeypatch.setenv("PGOPTIONS", "-c rlsctl.master_key=" + "k" * 40)
    migrate_and_apply(db)
    with db.connect() as conn:
        for statement in (USERS, TEAM, PROMPT):
            conn.execute(statement)
    without_audit_history(db)
    return db


def test_without_yes_a_rollback_that_drops_data_is_refused_and_changes_nothing(with_rows):
    before = phases(with_rows)
    result = cli(with_rows, "rollback", "--to", "0")  # not a terminal: no question, a refusal
    assert result.exit_code == 2, result.output
    assert "table Team (1 row)" in result.stderr and "column Prompt.teamId (1 value)" in result.stderr
    assert "--yes" in result.stderr and "nothing was changed" in result.stderr
    assert phases(with_rows) == before and exists(with_rows, "Team")


def test_dry_run_lists_what_would_go_and_changes_nothing(with_rows):
    result = cli(with_rows, "rollback", "--to", "0", "--dry-run", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    drops = {(item["table"], item["column"]): item["held"] for item in report["drops"]}
    assert drops == {("Team", None): 1, ("Prompt", "teamId"): 1}  # User stays, empty tables are no loss
    assert report["dry_run"] is True and report["reverted"] == [4, 3, 2, 1]
    assert phases(with_rows) == [0, 1, 2, 3, 4] and exists(with_rows, "Team")


def test_yes_confirms(with_rows):
    result = cli(with_rows, "rollback", "--to", "0", "--yes")
    assert result.exit_code == 0, result.output
    assert "dropped table Team (1 row)" in result.stdout
    assert phases(with_rows) == [0] and not exists(with_rows, "Team")


def test_a_rollback_that_drops_nothing_holding_data_needs_no_confirmation(db, monkeypatch):
    monkeypatch.setenv("PGOPTIONS", "-c rlsctl.master_key=" + "k" * 40)
    migrate_and_apply(db)
    without_audit_history(db)
    assert cli(db, "rollback", "--to", "2").exit_code == 0
    assert phases(db) == [0, 1, 2]


def test_the_audit_history_goes_only_once_exported(with_rows, tmp_path):
    with with_rows.connect() as conn:
        conn.execute(AUDIT)
    refused = cli(with_rows, "rollback", "--to", "3", "--yes")  # --yes is not enough
    assert refused.exit_code == 2, refused.output
    assert "AuditLog, the audit history" in refused.stderr and "--backup-dir" in refused.stderr
    assert phases(with_rows) == [0, 1, 2, 3, 4] and exists(with_rows, "AuditLog")
    done = cli(with_rows, "rollback", "--to", "3", "--yes", "--backup-dir", str(tmp_path / "backups"))
    assert done.exit_code == 0, done.output
    dumps = list((tmp_path / "backups").glob("*-before-rollback-to-3-*.dump"))
    assert len(dumps) == 1 and dumps[0].stat().st_size > 0
    assert phases(with_rows) == [0, 1, 2, 3] and not exists(with_rows, "AuditLog")


def test_an_audit_log_exported_by_hand_may_go(with_rows):
    with with_rows.connect() as conn:
        conn.execute(AUDIT)
    result = cli(with_rows, "rollback", "--to", "3", "--yes", "--audit-exported")
    assert result.exit_code == 0, result.output
    assert not exists(with_rows, "AuditLog")


def test_a_down_script_that_deletes_rows_needs_the_same_yes(db, tmp_path, monkeypatch):
    """Not only DROP: a down script's TRUNCATE (or DELETE) of rows in a table that stays counts.
    (TRUNCATE: the owner role's DELETE would meet the tables' forced RLS and remove nothing.)"""
    import shutil

    monkeypatch.setenv("PGOPTIONS", "-c rlsctl.master_key=" + "k" * 40)
    root = tmp_path / "project"
    shutil.copytree(ROOT / "policies", root / "policies")
    shutil.copytree(ROOT / "migrations", root / "migrations")
    down = root / "migrations" / "4_enterprise_security" / "01_seed_plan.down.sql"
    down.write_text('TRUNCATE "User" CASCADE;\n' + down.read_text())
    project = load_project(root, role_prefix=db.prefix)
    migrate_and_apply(db, project=project)
    with db.connect() as conn:
        conn.execute(USERS)
    without_audit_history(db)
    result = CliRunner().invoke(
        main, ["rollback", "--to", "3", "--project", str(root), "--dsn", db.dsn, "--role-prefix", db.prefix]
    )
    assert result.exit_code == 2, result.output
    assert "1 row deleted from table User" in result.stderr
    with db.connect() as conn:
        assert conn.execute('SELECT count(*) FROM "User"').fetchone() == (1,)


def test_forward_again_after_a_rollback_converges(with_rows):
    """The key store outlives a rollback to a phase without encrypted columns, its functions do
    not: migrating forward again and applying must not trip over the missing function."""
    assert cli(with_rows, "rollback", "--to", "2", "--yes").exit_code == 0
    assert cli(with_rows, "migrate").exit_code == 0
    applied = cli(with_rows, "apply")
    assert applied.exit_code == 0, applied.output
    drift = cli(with_rows, "drift")
    assert drift.exit_code == 0, drift.output


def project_with_down(tmp_path, db, phase_dir: str, extra_sql: str):
    """A copy of the bundled project whose first down step of `phase_dir` starts with `extra_sql`."""
    import shutil

    root = tmp_path / "project"
    shutil.copytree(ROOT / "policies", root / "policies")
    shutil.copytree(ROOT / "migrations", root / "migrations")
    down = sorted((root / "migrations" / phase_dir).glob("*.down.sql"))[0]
    down.write_text(extra_sql + "\n" + down.read_text())
    return root, load_project(root, role_prefix=db.prefix)


def rollback_cli(db, root, *args: str) -> Result:
    arguments = ["rollback", *args, "--project", str(root), "--dsn", db.dsn, "--role-prefix", db.prefix]
    return CliRunner().invoke(main, arguments)


def test_a_lossy_retype_and_a_table_in_another_schema_count_as_losses(db, tmp_path, monkeypatch):
    monkeypatch.setenv("PGOPTIONS", "-c rlsctl.master_key=" + "k" * 40)
    root, project = project_with_down(
        tmp_path, db, "4_enterprise_security",
        'ALTER TABLE "User" ALTER COLUMN email TYPE varchar(3) USING left(email, 3); DROP TABLE side.archive;',
    )  # fmt: skip
    migrate_and_apply(db, project=project)
    with db.connect() as conn:
        conn.execute(USERS)
        owner = db.role("owner")  # the down scripts run as the owner role: its schema, its table
        conn.execute(f'CREATE SCHEMA side AUTHORIZATION "{owner}"')
        conn.execute(f'SET ROLE "{owner}"')
        conn.execute("CREATE TABLE side.archive (id int); INSERT INTO side.archive VALUES (1), (2)")
        conn.execute("RESET ROLE")
    without_audit_history(db)
    refused = rollback_cli(db, root, "--to", "3")
    assert refused.exit_code == 2, refused.output
    assert "column User.email retyped text -> character varying(3) (1 value)" in refused.stderr
    assert "table side.archive (2 rows)" in refused.stderr
    with db.connect() as conn:
        assert conn.execute('SELECT email FROM "User"').fetchone() == ("u1@x",)


def test_rows_hidden_from_a_non_superuser_operator_are_still_counted(db, tmp_path, monkeypatch):
    """The managed-host login (a member of the owner role, not superuser) cannot see rows under
    forced RLS; the probe lifts it in its savepoint and counts them, TRUNCATE included."""
    from psycopg import sql

    from tests.conftest import as_operator

    monkeypatch.setenv("PGOPTIONS", "-c rlsctl.master_key=" + "k" * 40)
    root, project = project_with_down(tmp_path, db, "4_enterprise_security", 'TRUNCATE "Team" CASCADE;')
    migrate_and_apply(db, project=project)
    with db.connect() as conn:
        conn.execute(USERS)
        conn.execute(TEAM)
    operator = as_operator(db)
    with db.connect() as conn:
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(db.role("owner")), sql.Identifier(db.role("operator"))))
    dry = CliRunner().invoke(main, ["rollback", "--to", "3", "--dry-run", "--project", str(root), "--dsn",
                                    operator.dsn, "--role-prefix", db.prefix])  # fmt: skip
    assert dry.exit_code == 0, dry.output
    assert "1 row deleted from table Team" in dry.stdout, dry.stdout


def test_rows_written_after_the_confirmation_stop_the_rollback(with_rows):
    """The question and the rollback are two transactions: what was confirmed is counted again
    under a lock, and more than that stops it (nothing changed)."""
    from rlsctl.migrate import run as migrating

    def confirm_then_write(losses) -> bool:
        with with_rows.connect() as conn:  # someone writes while the operator reads the question
            conn.execute("""INSERT INTO "Team" (id, name, "ownerId", "updatedAt") VALUES ('t2', 'T2', 'u1', now())""")
        return True

    project = with_rows.project()
    with with_rows.connect() as conn, pytest.raises(Exception, match="data changed since the rollback was confirmed"):
        migrating.rollback(conn, project, "db", to=0, confirm=confirm_then_write)
    assert phases(with_rows) == [0, 1, 2, 3, 4] and exists(with_rows, "Team")


def test_on_a_terminal_it_asks_and_a_no_changes_nothing(with_rows):
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    rlsctl = Path(sys.executable).with_name("rlsctl")
    command = " ".join(
        shlex.quote(part)
        for part in (str(rlsctl), "rollback", "--to", "0", "--dsn", with_rows.dsn, "--role-prefix", with_rows.prefix)
    )
    answered = subprocess.run(
        ["script", "-qec", command, "/dev/null"], input="n\n", capture_output=True, text=True, check=False,
        cwd=ROOT,
    )  # fmt: skip
    assert "the rollback drops data" in answered.stdout and "table Team (1 row)" in answered.stdout
    assert answered.returncode == 2, answered.stdout
    assert phases(with_rows) == [0, 1, 2, 3, 4] and exists(with_rows, "Team")


def test_transaction_control_in_a_down_script_is_refused_before_anything_runs(db, tmp_path, monkeypatch):
    """A COMMIT would end the rollback's (or its dry run's rolled-back probe's) transaction half-way."""
    monkeypatch.setenv("PGOPTIONS", "-c rlsctl.master_key=" + "k" * 40)
    root, project = project_with_down(tmp_path, db, "4_enterprise_security", "COMMIT;")
    migrate_and_apply(db, project=project)
    for extra in (("--dry-run",), ("--yes",)):
        result = rollback_cli(db, root, "--to", "3", *extra)
        assert result.exit_code == 2, result.output
        assert ".down.sql:1: transaction control" in result.stderr and "Traceback" not in result.output
    assert phases(db) == [0, 1, 2, 3, 4] and exists(db, "AuditLog")


def test_a_log_created_again_after_a_rollback_starts_a_chain_of_its_own(db, monkeypatch):
    """The rollback dropped the exported log but kept its chain's lane heads: the log migrate
    created again verified as "chain BROKEN at seq 1 of lane 9" for good (an outside check)."""
    monkeypatch.setenv("PGOPTIONS", "-c rlsctl.master_key=" + "k" * 40)
    migrate_and_apply(db)
    with db.connect() as conn:
        for statement in (USERS, TEAM, AUDIT):
            conn.execute(statement)
    assert cli(db, "audit", "verify").exit_code == 0
    rolled = cli(db, "rollback", "--to", "3", "--yes", "--audit-exported")
    assert rolled.exit_code == 0, rolled.output
    assert cli(db, "migrate").exit_code == 0 and cli(db, "apply").exit_code == 0
    with db.connect() as conn:
        conn.execute(AUDIT.replace("'a1'", "'a2'"))
    verified = cli(db, "audit", "verify")
    assert verified.exit_code == 0, verified.output


@pytest.mark.parametrize("renamed", ["before the rollback", "by its down script"])
def test_a_log_renamed_away_keeps_its_chain(db, tmp_path, monkeypatch, renamed):
    """An adversarial review: the owner login renamed the log out of the way (or a down script
    did), an unrelated rollback then found no table of the log's name and erased its chain's
    bookkeeping, and the rows put back later verified as a fresh, intact chain. Only a log this
    rollback's own down scripts dropped loses its chain."""
    import shutil

    monkeypatch.setenv("PGOPTIONS", "-c rlsctl.master_key=" + "k" * 40)
    root = tmp_path / "project"
    shutil.copytree(ROOT / "policies", root / "policies")
    shutil.copytree(ROOT / "migrations", root / "migrations")
    extra = root / "migrations" / "5_extra"
    extra.mkdir()
    (extra / "01_extra.up.sql").write_text("CREATE TABLE zz_extra (id integer);\n")
    # Renamed, and rid of rlsctl's triggers, which would keep the re-apply from replacing their functions.
    rename = 'ALTER TABLE "AuditLog" RENAME TO "AuditLog_keep";\n' + "".join(
        f'DROP TRIGGER IF EXISTS {trigger} ON "AuditLog_keep";\n'
        for trigger in ("zz_rlsctl_chain", "zz_rlsctl_append_only", "zz_rlsctl_no_truncate")
    )
    (extra / "01_extra.down.sql").write_text((rename if renamed == "by its down script" else "") + "DROP TABLE zz_extra;\n")
    migrate_and_apply(db, project=load_project(root, role_prefix=db.prefix))
    with db.connect() as conn:
        for statement in (USERS, TEAM, AUDIT):
            conn.execute(statement)
        if renamed == "before the rollback":
            conn.execute(rename)
        lanes = conn.execute("SELECT count(*) FROM rlsctl.audit_lane").fetchone()[0]
    assert lanes > 0
    result = rollback_cli(db, root, "--to", "4", "--yes", "--audit-exported")
    assert result.exit_code == 0, result.output
    with db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM rlsctl.audit_lane").fetchone()[0] == lanes
