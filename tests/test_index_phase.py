"""A missing index for a policy column (RLS010) becomes a named migration phase of CREATE INDEX
CONCURRENTLY statements (`rlsctl lint --write-index-phase`), which `rlsctl migrate` runs outside
a transaction (docs/migrations.md, docs/performance.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from rlsctl.cli.main import main
from rlsctl.errors import UsageError
from rlsctl.migrate import run as migrating
from rlsctl.policy.project import load_project
from tests.conftest import ROOT, TestDatabase

DROPPED = ('CREATE INDEX "AuditLog_userId_idx" ON "AuditLog"("userId");',
           'CREATE INDEX "UsageAnalytics_userId_idx" ON "UsageAnalytics"("userId");')  # fmt: skip


def project_without_user_indexes(tmp_path: Path) -> Path:
    """PromptCraft without the indexes on "AuditLog"."userId" and "UsageAnalytics"."userId",
    which the app's SELECT policies filter on (their `userId = current_user_id()` branch)."""
    root = tmp_path / "project"
    for folder in ("policies", "migrations", "expectations"):
        shutil.copytree(ROOT / folder, root / folder)
    for path in (root / "migrations").rglob("*.up.sql"):
        text = path.read_text()
        for line in DROPPED:
            text = text.replace(line + "\n", "")
        path.write_text(text)
    return root


def lint(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main, ["lint", "--project", str(root), "--select", "RLS010", "--fail-on", "warning", *args]
    )
    return result.exit_code, result.stdout, result.stderr


def indexes(database: TestDatabase) -> dict[str, bool]:
    with database.connect() as conn:
        return {
            name: valid
            for name, valid in conn.execute(
                """SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                   WHERE c.relname LIKE '%rlsctl_idx'"""
            )
        }


def test_the_indexes_rls010_asks_for_become_a_concurrent_phase_that_migrate_runs(tmp_path, db):
    root = project_without_user_indexes(tmp_path)
    code, out, _ = lint(root)
    reported = out.split("SUPPRESSED")[0]  # the shipped project's suppressions are listed after
    assert code == 1 and reported.count("RLS010 public.") == 3, out  # two policies on UsageAnalytics
    code, out, _ = lint(root, "--format", "json")
    proposed = sorted(
        (i["table"], tuple(i["columns"])) for f in json.loads(out)["findings"] for i in f.get("indexes", ())
    )
    assert proposed == [("AuditLog", ("userId",)), ("UsageAnalytics", ("userId",)), ("UsageAnalytics", ("userId",))]
    code, _, err = lint(root, "--write-index-phase")
    assert "wrote" in err and "5_policy_indexes (2 indexes)" in err, err
    phase = root / "migrations" / "5_policy_indexes"
    up = [line for line in (phase / "01_policy_indexes.up.sql").read_text().splitlines() if not line.startswith("--")]
    assert up == [
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "AuditLog_userId_rlsctl_idx" ON "public"."AuditLog" ("userId");',
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "UsageAnalytics_userId_rlsctl_idx" ON "public"."UsageAnalytics" '
        '("userId");',
    ]
    down = (phase / "01_policy_indexes.down.sql").read_text().splitlines()
    assert [line for line in down if not line.startswith("--")] == [
        'DROP INDEX IF EXISTS "public"."UsageAnalytics_userId_rlsctl_idx";',
        'DROP INDEX IF EXISTS "public"."AuditLog_userId_rlsctl_idx";',
    ]
    assert lint(root)[0] == 0  # the offline schema has them now

    project = load_project(root, role_prefix=db.prefix)
    with db.connect() as conn:
        report = migrating.migrate(conn, project, db.target)
    assert [ran.phase for ran in report.ran] == [0, 1, 2, 3, 4, 5]
    assert indexes(db) == {"AuditLog_userId_rlsctl_idx": True, "UsageAnalytics_userId_rlsctl_idx": True}
    with db.connect() as conn:
        migrating.rollback(conn, project, db.target.where, to=4, confirm=lambda losses: True)
    assert indexes(db) == {}
    code, _, err = lint(root, "--write-index-phase")  # nothing asked for: nothing written
    assert code == 0 and "no finding asks for an index" in err


def phase_of(root: Path, number: int, text: str) -> None:
    folder = root / "migrations" / f"{number}_extra"
    folder.mkdir()
    (folder / "01_extra.up.sql").write_text(text)
    (folder / "01_extra.down.sql").write_text("SELECT 1;\n")


def test_a_phase_mixing_concurrent_indexes_with_other_statements_is_refused_before_it_runs(tmp_path, db):
    root = project_without_user_indexes(tmp_path)
    phase_of(root, 5, 'CREATE TABLE "Extra" (id text PRIMARY KEY);\n'
                      'CREATE INDEX CONCURRENTLY "Extra_id_idx" ON "Extra" (id);\n')  # fmt: skip
    project = load_project(root, role_prefix=db.prefix)
    with db.connect() as conn, pytest.raises(UsageError, match="mixes CREATE INDEX CONCURRENTLY"):
        migrating.migrate(conn, project, db.target)
    with db.connect() as conn:
        assert conn.execute("""SELECT to_regclass('public."Extra"')""").fetchone() == (None,)
        assert [ran.phase for ran in migrating.applied_phases(conn, project)] == [0, 1, 2, 3, 4]


def test_a_failed_concurrent_build_leaves_no_invalid_index_and_no_record(tmp_path, db):
    root = project_without_user_indexes(tmp_path)
    phase_of(root, 5, 'CREATE UNIQUE INDEX CONCURRENTLY "User_updatedAt_rlsctl_idx" ON "User" ("updatedAt");\n')
    project = load_project(root, role_prefix=db.prefix)
    with db.connect() as conn:
        migrating.migrate(conn, project, db.target, to=4)
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('a', 'a@x', '2026-01-01'),
                        ('b', 'b@x', '2026-01-01')""")  # fmt: skip
        with pytest.raises(UsageError, match=r"phase 5 \(extra\) 01_extra\.up\.sql: could not create unique index"):
            migrating.migrate(conn, project, db.target)
        assert [ran.phase for ran in migrating.applied_phases(conn, project)] == [0, 1, 2, 3, 4]
    assert indexes(db) == {}
