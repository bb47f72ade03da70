"""migrate and rollback: recorded phases, backups, validation, and rollback that leaves no orphans."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from rlsctl.catalog import queries as catalog
from rlsctl.cli.main import main
from rlsctl.errors import UsageError
from rlsctl.migrate import run as migrating
from rlsctl.pg.pgbin import find
from rlsctl.policy.project import load_project
from rlsctl.tester.run import run_matrix
from tests.conftest import ROOT, as_operator, migrate_and_apply
from tests.helpers import security_snapshot


def test_migrate_records_phases_and_is_idempotent(db):
    project = db.project()
    with db.connect() as conn:
        first = migrating.migrate(conn, project, db.target, to=2)
        assert [r.phase for r in first.ran] == [0, 1, 2]
        assert [(a.phase, a.baseline) for a in migrating.applied_phases(conn, project)] == [
            (0, False),
            (1, False),
            (2, False),
        ]
        second = migrating.migrate(conn, project, db.target, to=2)
        assert not second.ran and second.already == [0, 1, 2]
        rest = migrating.migrate(conn, project, db.target)
        assert [r.phase for r in rest.ran] == [3, 4]
        with pytest.raises(UsageError, match="use `rlsctl rollback --to 1`"):
            migrating.migrate(conn, project, db.target, to=1)


def test_phase_one_adds_prompt_team_id_and_phase_four_keeps_the_audit_log(db):
    project = db.project()
    with db.connect() as conn:
        migrating.migrate(conn, project, db.target)
        schema = catalog.read_schema(conn, "public")
    prompt = schema.table("Prompt")
    assert prompt.has_column("teamId") and prompt.is_indexed("teamId") and prompt.is_indexed("userId")
    fk = prompt.foreign_key_for("teamId")
    assert fk is not None and fk.ref_table == "Team"
    audit = schema.table("AuditLog")
    assert audit.foreign_keys == ()  # the seed's cascading FKs are gone...
    assert audit.is_indexed("userId") and audit.is_indexed("teamId")  # ...and the indexes stay
    with db.connect() as conn:
        rule = conn.execute("""SELECT confdeltype FROM pg_constraint WHERE conname = 'Prompt_teamId_fkey'""").fetchone()
        assert rule == ("n",)  # ON DELETE SET NULL


def test_audit_rows_outlive_their_user_and_team(secured_db):
    with secured_db.connect() as conn:
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u1', 'u@x', now())""")
        conn.execute("""INSERT INTO "Team"(id, name, "updatedAt", "ownerId") VALUES ('t1', 'T', now(), 'u1')""")
        conn.execute("""INSERT INTO "AuditLog"(id, "userId", "teamId", action, "resourceType", "resourceId")
                        VALUES ('a1', 'u1', 't1', 'x', 'Team', 't1')""")
        before = conn.execute('SELECT count(*) FROM "AuditLog"').fetchone()[0]
        conn.execute("""DELETE FROM "User" WHERE id = 'u1'""")  # its team goes with it (ON DELETE CASCADE)
        # Every row stays; the team's deletion is itself recorded (docs/audit.md).
        assert conn.execute("""SELECT count(*) FROM "AuditLog" WHERE id = 'a1'""").fetchone()[0] == 1
        after = conn.execute('SELECT count(*) FROM "AuditLog"').fetchone()[0]
        assert after == before + 1


def test_backup_before_each_phase(db, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "migrate",
            "--dsn",
            db.dsn,
            "--project",
            str(ROOT),
            "--role-prefix",
            db.prefix,
            "--to",
            "1",
            "--backup-dir",
            str(tmp_path / "backups"),
        ],
    )
    assert result.exit_code == 0, result.stderr
    dumps = sorted((tmp_path / "backups").glob("*.dump"))
    assert [d.name.split("-before-phase-")[1].split("-")[0] for d in dumps] == ["0", "1"]
    listing = subprocess.run(
        [str(find("pg_restore")), "--list", str(dumps[1])], capture_output=True, text=True, check=True
    )
    assert "TABLE public User" in listing.stdout and "TABLE DATA public Prompt" in listing.stdout


def test_backup_refused_for_a_role_that_rls_would_hide_rows_from(make_db, tmp_path):
    database = make_db()
    operator = database.role("operator")
    operating = as_operator(database)
    migrate_and_apply(operating, phase=0)
    result = CliRunner().invoke(
        main,
        [
            "migrate",
            "--dsn",
            operating.dsn,
            "--project",
            str(ROOT),
            "--role-prefix",
            database.prefix,
            "--backup-dir",
            str(tmp_path / "b"),
        ],
    )
    assert result.exit_code == 2
    assert "needs a superuser or BYPASSRLS role" in result.stderr and operator in result.stderr
    with database.connect() as conn:
        assert [a.phase for a in migrating.applied_phases(conn, database.project())] == [0]
    assert not (tmp_path / "b").exists() or not list((tmp_path / "b").iterdir())


def _project_with_extra_phase(tmp_path: Path, sql_text: str) -> Path:
    root = tmp_path / "project"
    shutil.copytree(ROOT / "policies", root / "policies")
    shutil.copytree(ROOT / "migrations", root / "migrations")
    extra = root / "migrations" / "5_extra"
    extra.mkdir()
    (extra / "01_extra.up.sql").write_text(sql_text)
    (extra / "01_extra.down.sql").write_text("SELECT 1;\n")
    return root


def test_a_phase_that_changes_row_counts_is_rolled_back(db, tmp_path):
    root = _project_with_extra_phase(tmp_path, 'DELETE FROM "Prompt" WHERE "title" = \'doomed\';\n')
    project = load_project(root, role_prefix=db.prefix)
    with db.connect() as conn:
        migrating.migrate(conn, project, db.target, to=4)  # not secured yet: the owner writes freely
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u1', 'u@x', now())""")
        conn.execute("""INSERT INTO "Prompt"(id, "userId", title, content, "updatedAt")
                        VALUES ('p1', 'u1', 'doomed', 'c', now())""")
        with pytest.raises(UsageError, match=r"changed the row count of Prompt \(1 -> 0\); rolled back"):
            migrating.migrate(conn, project, db.target)
        assert conn.execute('SELECT count(*) FROM "Prompt"').fetchone()[0] == 1
        assert 5 not in {a.phase for a in migrating.applied_phases(conn, project)}


def test_a_data_change_that_rls_would_silently_skip_fails_loudly(db, tmp_path):
    """On a secured table the owner writes nothing through RLS: the phase must fail, not do nothing."""
    root = _project_with_extra_phase(tmp_path, 'UPDATE "Prompt" SET "title" = \'renamed\';\n')
    project = load_project(root, role_prefix=db.prefix)
    migrate_and_apply(db, project=project, phase=4)
    with db.connect() as conn:
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u1', 'u@x', now())""")
        conn.execute("""INSERT INTO "Prompt"(id, "userId", title, content, "updatedAt")
                        VALUES ('p1', 'u1', 'kept', 'c', now())""")
        with pytest.raises(UsageError, match="row-level security"):
            migrating.migrate(conn, project, db.target)
        assert conn.execute('SELECT title FROM "Prompt"').fetchone()[0] == "kept"


def test_a_phase_that_leaves_a_constraint_not_valid_is_rolled_back(db, tmp_path):
    root = _project_with_extra_phase(
        tmp_path, 'ALTER TABLE "Prompt" ADD CONSTRAINT "Prompt_title_check" CHECK (length("title") > 0) NOT VALID;\n'
    )
    project = load_project(root, role_prefix=db.prefix)
    with db.connect() as conn:
        with pytest.raises(UsageError, match="left constraint Prompt_title_check on Prompt NOT VALID"):
            migrating.migrate(conn, project, db.target)
        assert [a.phase for a in migrating.applied_phases(conn, project)] == [0, 1, 2, 3, 4]


def test_row_counts_hidden_by_forced_rls_are_reported_not_compared(db, tmp_path):
    root = _project_with_extra_phase(tmp_path, 'CREATE INDEX "Prompt_title_idx" ON "Prompt"("title");\n')
    project = load_project(root, role_prefix=db.prefix)
    migrate_and_apply(db, project=project, phase=4)
    with db.connect() as conn:
        conn.execute('DROP POLICY owner_select ON "Prompt"')  # the owner can no longer see every row
        report = migrating.migrate(conn, project, db.target)
    assert report.ran[0].unverified == ("Prompt",)


@pytest.mark.parametrize("target_phase", [3, 2, 1, 0])
def test_rollback_leaves_what_a_fresh_migrate_and_apply_would(make_db, target_phase):
    rolled = make_db()
    project = migrate_and_apply(rolled)
    with rolled.connect() as conn:
        # apply recorded itself in the audit log (system:apply): that history goes only once
        # exported and confirmed, which tests/test_rollback_safety.py tests; taken as done here.
        report = migrating.rollback(
            conn, project, rolled.target.where, to=target_phase, audit_exported=True, confirm=lambda losses: True
        )
        assert report.reverted == tuple(range(4, target_phase, -1)) and report.reapplied
        assert [a.phase for a in migrating.applied_phases(conn, project)] == list(range(target_phase + 1))
    fresh = make_db()
    migrate_and_apply(fresh, phase=target_phase)
    after_rollback, after_fresh = security_snapshot(rolled), security_snapshot(fresh)
    # The key store stays on purpose (docs/migrations.md): erasing wrapped data keys
    # would make every backup's ciphertext undecryptable. It stays closed to everyone.
    kept = after_rollback.pop("helper_relations") - after_fresh.pop("helper_relations")
    key_store = {(name, "<p>keys", True, False) for name in ("encryption_key", "encrypted_column", "encryption_key_next")}
    # So does the API-key session table of phase 4 (unlogged, empty outside a transaction's session).
    sessions = {("api_key_session", "<p>keys", True, False)}
    assert kept == (key_store if target_phase < 3 else set()) | sessions
    assert after_rollback == after_fresh  # no orphan policy, function, grant or trigger
    with rolled.connect() as conn:
        result = run_matrix(conn, project, "rolled back")
    assert not result.failures


def test_rollback_runs_in_one_transaction(db, tmp_path):
    """A down script that fails leaves every phase and every policy in place."""
    root = tmp_path / "project"
    shutil.copytree(ROOT / "policies", root / "policies")
    shutil.copytree(ROOT / "migrations", root / "migrations")
    project = load_project(root, role_prefix=db.prefix)
    migrate_and_apply(db, project=project)
    before = security_snapshot(db)
    (root / "migrations" / "2_version_control" / "01_seed_plan.down.sql").write_text('DROP TABLE "NoSuchTable";\n')
    project = load_project(root, role_prefix=db.prefix)
    with db.connect() as conn:
        with pytest.raises(UsageError, match="NoSuchTable"):
            migrating.rollback(conn, project, db.target.where, to=0)
        assert [a.phase for a in migrating.applied_phases(conn, project)] == [0, 1, 2, 3, 4]
    assert security_snapshot(db) == before


def _cli(database, *args: str):
    result = CliRunner().invoke(
        main, [*args, "--dsn", database.dsn, "--project", str(ROOT), "--role-prefix", database.prefix]
    )
    return result.exit_code, result.stdout, result.stderr


def _run_phases_without_rlsctl(database, upto: int) -> None:
    """What Prisma or Flyway would have done: the DDL only, no rlsctl bookkeeping."""
    with database.connect() as conn:
        for phase in database.project().phases[: upto + 1]:
            for step in phase.steps:
                conn.execute(step.up_sql().encode())


def _rlsctl_objects(database) -> tuple:
    with database.connect() as conn:
        return (
            conn.execute("SELECT to_regnamespace('rlsctl')").fetchone()[0],
            conn.execute("SELECT count(*) FROM pg_roles WHERE starts_with(rolname, %s)", (database.prefix,)).fetchone(),
        )


def test_baseline_through_the_cli_checks_the_schema_is_really_there(db):
    _run_phases_without_rlsctl(db, 2)
    untouched = _rlsctl_objects(db)
    code, _, err = _cli(db, "migrate", "--baseline", "3")
    assert code == 2 and "--baseline 3: table public.PerformanceMetrics (phase 3) does not exist" in err
    assert "Traceback" not in err and _rlsctl_objects(db) == untouched  # refused before anything was created
    code, _, err = _cli(db, "migrate", "--baseline", "9")
    assert code == 2 and "--baseline 9: the project has phases 0..4" in err
    code, _, err = _cli(db, "migrate", "--baseline", "2", "--to", "4")
    assert code == 2 and "takes neither --to nor --backup-dir" in err
    assert _rlsctl_objects(db) == untouched
    code, _, err = _cli(db, "migrate", "--baseline", "2")
    assert code == 0, err
    with db.connect() as conn:
        assert [(a.phase, a.baseline) for a in migrating.applied_phases(conn, db.project())] == [
            (0, True),
            (1, True),
            (2, True),
        ]
    code, _, err = _cli(db, "migrate")  # postgres still owns the tables: the owner role could not alter them
    assert code == 2 and "table public.Prompt is owned by postgres" in err and "run `rlsctl apply` first" in err
    code, _, err = _cli(db, "apply")
    assert code == 0, err
    code, _, err = _cli(db, "migrate")  # the remaining phases run for real
    assert code == 0, err
    with db.connect() as conn:
        assert [a.phase for a in migrating.applied_phases(conn, db.project()) if not a.baseline] == [3, 4]


def test_baseline_names_a_missing_column(db):
    _run_phases_without_rlsctl(db, 1)
    with db.connect() as conn:
        conn.execute('ALTER TABLE "Prompt" DROP COLUMN "teamId"')
    code, _, err = _cli(db, "migrate", "--baseline", "1")
    assert code == 2 and "column Prompt.teamId does not exist" in err


def test_a_syntax_error_in_a_migration_names_its_file_and_line():
    """It was an internal error (pglast 7's ParseError has no `location`), with no file or line."""
    from rlsctl.schema.ddl import parse_script

    with pytest.raises(UsageError, match=r'^x\.up\.sql:4: SQL syntax error: syntax error at or near "where"$'):
        parse_script("create table x(id int);\n\n\nselect from where;\n", "x.up.sql")


def test_transaction_control_is_named_at_the_line_of_its_first_word():
    """pglast places a statement where the one before it ended: the line before, and comments."""
    from rlsctl.schema.ddl import split_statements

    with pytest.raises(UsageError, match=r"^x\.up\.sql:4: transaction control"):
        split_statements("create table x(id int);\n-- done\n/* all */\nCOMMIT;\n", "x.up.sql")
