"""apply on a real server: phase by phase, re-runnable, as a managed-service operator, repairing extras."""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from rlsctl.catalog import queries as catalog
from rlsctl.change import apply as applying
from rlsctl.cli.main import main
from rlsctl.migrate import run as migrating
from rlsctl.tester.run import run_matrix
from tests import spec_matrix
from tests.conftest import ROOT, as_operator, migrate_and_apply
from tests.helpers import security_snapshot

LATER = {
    "Team": 1,
    "TeamMember": 1,
    "PromptVersion": 2,
    "PromptApproval": 2,
    "UsageAnalytics": 3,
    "PerformanceMetrics": 3,
    "ApiKey": 4,
    "AuditLog": 4,
}


def test_phase_by_phase_every_table_is_forced_and_later_tables_are_pending(db):
    project = db.project()
    with db.connect() as conn:
        for phase in range(5):
            migrating.migrate(conn, project, db.target, to=phase)
            report = applying.apply(conn, project, db.target.where)
            tables = catalog.tables(conn, "public")
            assert tables, phase
            for name, table in tables.items():
                assert table.rls_enabled and table.rls_forced, (phase, name)
                assert table.owner == db.role("owner"), (phase, name)
            pending = dict(report.plan.pending)
            assert pending == {name: p for name, p in LATER.items() if p > phase}
            # docs/migrations.md (--baseline N): declared columns of present tables that a later phase adds are reported too
            expected_columns = {("Prompt", "teamId", 1)} if phase == 0 else set()
            assert set(report.plan.pending_columns) == expected_columns, phase


def test_apply_names_declared_columns_that_do_not_exist_yet(db):
    with db.connect() as conn:
        migrating.migrate(conn, db.project(), db.target, to=0)
    args = ["apply", "--dsn", db.dsn, "--project", str(ROOT), "--role-prefix", db.prefix]
    text = CliRunner().invoke(main, args)
    assert text.exit_code == 0, text.output
    assert "not present yet: column Prompt.teamId (added by phase 1)" in text.stdout
    data = json.loads(CliRunner().invoke(main, [*args, "--format", "json"]).stdout)
    assert data["pending_columns"] == [{"table": "Prompt", "column": "teamId", "phase": 1}]


def test_apply_says_when_encryption_starts_and_existing_plaintext_needs_a_backfill(db):
    with db.connect() as conn:
        migrating.migrate(conn, db.project(), db.target, to=3)
    args = ["apply", "--dsn", db.dsn, "--project", str(ROOT), "--role-prefix", db.prefix]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "encryption starts on PerformanceMetrics, UsageAnalytics" in first.stdout
    assert "rlsctl keys encrypt" in first.stdout
    again = json.loads(CliRunner().invoke(main, [*args, "--format", "json"]).stdout)
    assert again["encryption_started"] == []  # said once, when the encrypt triggers are created


def test_second_apply_changes_nothing(secured_db):
    before = security_snapshot(secured_db)
    project = secured_db.project()
    with secured_db.connect() as conn:
        applying.apply(conn, project, secured_db.target.where)
    assert security_snapshot(secured_db) == before


def test_dry_run_changes_nothing(db):
    project = db.project()
    with db.connect() as conn:
        migrating.migrate(conn, project, db.target, to=1)
    before = security_snapshot(db)
    code = CliRunner().invoke(
        main, ["apply", "--dry-run", "--dsn", db.dsn, "--project", str(ROOT), "--role-prefix", db.prefix]
    )
    assert code.exit_code == 0, code.output
    assert "dry run: rolled back" in code.stdout
    assert security_snapshot(db) == before


def test_apply_phase_option_manages_only_that_phase(db):
    project = db.project()
    with db.connect() as conn:
        migrating.migrate(conn, project, db.target)
        report = applying.apply(conn, project, db.target.where, phase=1)
        assert set(report.managed) == {"User", "Prompt", "Team", "TeamMember"}
        assert not catalog.tables(conn, "public")["ApiKey"].rls_enabled


def test_apply_removes_undeclared_policies_and_helpers(secured_db):
    before = security_snapshot(secured_db)
    definer = secured_db.role("definer")
    with secured_db.connect() as conn:
        conn.execute("""CREATE POLICY sneaky ON "Prompt" FOR SELECT TO PUBLIC USING (true)""")
        conn.execute(sql.SQL('GRANT SELECT ON "Prompt" TO PUBLIC'))
        conn.execute(sql.SQL('GRANT DELETE ON "AuditLog" TO {}').format(sql.Identifier(secured_db.role("app"))))
        conn.execute("CREATE FUNCTION rlsctl.leftover() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        conn.execute(sql.SQL("ALTER FUNCTION rlsctl.leftover() OWNER TO {}").format(sql.Identifier(definer)))
        conn.execute('ALTER TABLE "Team" NO FORCE ROW LEVEL SECURITY')
        assert security_snapshot(secured_db) != before
        applying.apply(conn, secured_db.project(), secured_db.target.where)
    assert security_snapshot(secured_db) == before


def test_apply_as_a_managed_service_operator(make_db):
    """Non-superuser that owns the database and has CREATEROLE (RDS, Cloud SQL, Supabase)."""
    database = make_db()
    operating = as_operator(database)
    with operating.connect() as conn:
        assert conn.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone() == (
            False,
            False,
        )
    project = migrate_and_apply(operating)
    with operating.connect() as conn:
        tables = catalog.tables(conn, "public")
        assert all(t.rls_enabled and t.rls_forced and t.owner == database.role("owner") for t in tables.values())
        result = run_matrix(conn, project, "operator", expect=spec_matrix.expectation)
    assert not result.failures, result.failures[:5]
    # The non-superuser's fixture loading must not leave FORCE lifted.
    with operating.connect() as conn:
        assert all(t.rls_forced for t in catalog.tables(conn, "public").values())


KEYS_FUNCTIONS = {
    "authenticate_api_key",
    "presented_key_hash",
    "api_key_tenant",
    "api_key_member",
    "api_key_rows_Prompt",
    "api_key_session_id",  # which key acts in a key session: the audit log's actor (docs/audit.md)
    "create_api_key",
    "master_key",
    "data_key",
    "active_key_id",
    "encrypt",
    "decrypt",
    "key_of",
    "encrypt_PerformanceMetrics",
    "encrypt_UsageAnalytics",
    "encrypt_with",
    "decrypt_with",
}


RETENTION_BATCHES = {"retention_AuditLog", "retention_PerformanceMetrics", "retention_UsageAnalytics"}


def test_helpers_are_stable_definer_only_where_needed_and_owned_by_the_definer(secured_db):
    definer = secured_db.role("definer")
    with secured_db.connect() as conn:
        functions = {f.name: f for f in catalog.functions(conn, "rlsctl") if not f.from_extension}
        assert {"current_user_id", "tenant_ids"} <= set(functions)
        assert set(functions) >= KEYS_FUNCTIONS
        for function in functions.values():
            # Encryption and API-key functions belong to the keys role, each table's retention batches
            # to the retention role (docs/retention.md), the policy helpers and the holds to the definer.
            owner = definer
            if function.name in KEYS_FUNCTIONS:
                owner = secured_db.role("keys")
            elif function.name in RETENTION_BATCHES:
                owner = secured_db.role("retention")
            assert function.owner == owner, function.name
            assert "search_path=pg_catalog, pg_temp" in function.config
            assert "PUBLIC" not in function.executors
        assert functions["tenant_ids"].security_definer and functions["tenant_ids"].volatility == "s"
        assert not functions["current_user_id"].security_definer and functions["current_user_id"].volatility == "s"
        for owner in (definer, secured_db.role("keys"), secured_db.role("retention")):
            role = conn.execute(
                "SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreaterole FROM pg_roles WHERE rolname = %s", (owner,)
            ).fetchone()
            assert role == (False, False, False, False), owner


def test_a_table_a_migration_creates_is_closed_until_apply(db):
    """docs/access-matrix.md (Roles): default privileges give the app roles and PUBLIC nothing on new tables."""
    project = db.project()
    with db.connect() as conn:
        migrating.migrate(conn, project, db.target, to=0)
        applying.apply(conn, project, db.target.where)
        migrating.migrate(conn, project, db.target, to=1)  # creates Team and TeamMember
        for role in ("app", "analyst", "auditor", "retention"):
            for table in ("Team", "TeamMember"):
                granted = conn.execute(
                    """SELECT has_table_privilege(%s, %s, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES')""",
                    (db.role(role), f'"{table}"'),
                ).fetchone()[0]
                assert not granted, (role, table)
        public = conn.execute(
            """SELECT count(*) FROM pg_class AS c, aclexplode(c.relacl) AS a
               WHERE c.relname IN ('Team', 'TeamMember') AND a.grantee = 0"""
        ).fetchone()[0]
        assert public == 0
        conn.execute("SELECT set_config('role', %s, false)", (db.role("app"),))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute('SELECT * FROM "Team"')


def test_definer_reads_only_the_session_users_own_membership_rows(secured_db):
    """Forced RLS binds the helper owner too: its own policies give it exactly what tenant_ids needs."""
    with secured_db.connect() as conn:
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt")
                        VALUES ('u1','1@x',now()), ('u2','2@x',now()), ('u3','3@x',now())""")
        conn.execute("""INSERT INTO "Team"(id, name, "updatedAt", "ownerId")
                        VALUES ('t1','T1',now(),'u1'), ('t2','T2',now(),'u3')""")
        conn.execute("""INSERT INTO "TeamMember"(id, "teamId", "userId", role)
                        VALUES ('m1','t1','u2','ADMIN'), ('m2','t2','u3','OWNER')""")
    with secured_db.connect(autocommit=False) as conn:
        conn.execute(
            "SELECT set_config('role', %s, true), set_config('app.user_id', 'u2', true)", (secured_db.role("definer"),)
        )
        rows = conn.execute('SELECT "teamId", "userId" FROM "TeamMember"').fetchall()
        assert rows == [("t1", "u2")]
        assert conn.execute('SELECT id FROM "Team"').fetchall() == []
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute('SELECT * FROM "Prompt"')
        conn.rollback()
        conn.execute("SELECT set_config('role', %s, true)", (secured_db.role("app"),))
        for user, rank, expected in [
            ("u1", "OWNER", ["t1"]),
            ("u2", "ADMIN", ["t1"]),
            ("u2", "OWNER", []),
            ("u3", "MEMBER", ["t2"]),
            ("nobody", "MEMBER", []),
        ]:
            conn.execute("SELECT set_config('app.user_id', %s, true)", (user,))
            assert conn.execute("SELECT rlsctl.tenant_ids(%s)", (rank,)).fetchone()[0] == expected, (user, rank)
        conn.rollback()


def test_baseline_adopts_a_database_migrated_by_another_tool(db):
    """Prisma or Flyway ran the DDL as some other role: baseline records, apply takes over."""
    project = db.project()
    with db.connect() as conn:
        for phase in project.phases:
            for step in phase.steps:
                conn.execute(step.up_sql().encode())
        assert catalog.tables(conn, "public")["Prompt"].owner == "postgres"
        report = migrating.migrate(conn, project, db.target, baseline=4)
        assert report.baselined == [0, 1, 2, 3, 4] and not report.ran
        applying.apply(conn, project, db.target.where)
        tables = catalog.tables(conn, "public")
        assert all(t.rls_forced and t.owner == db.role("owner") for t in tables.values())
        again = migrating.migrate(conn, project, db.target)
        assert not again.ran and again.already == [0, 1, 2, 3, 4]


def test_a_configurable_identity_expression(db, tmp_path):
    """Supabase-style: policies read an expression, not app.user_id; the tester sets the platform's setting."""
    import shutil

    from rlsctl.policy.project import load_project

    root = tmp_path / "project"
    shutil.copytree(ROOT / "policies", root / "policies")
    shutil.copytree(ROOT / "migrations", root / "migrations")
    settings = root / "policies" / "project.yaml"
    settings.write_text(
        settings.read_text().replace(
            "    setting: app.user_id     # the app runs set_config('app.user_id', <User.id>, true) per transaction\n",
            "    setting: request.jwt.claim.sub\n"
            "    expression: NULLIF(pg_catalog.current_setting('request.jwt.claim.sub', true), '')\n",
        )
    )
    project = load_project(root, role_prefix=db.prefix)
    migrate_and_apply(db, project=project)
    with db.connect() as conn:
        body = next(f.body for f in catalog.functions(conn, "rlsctl") if f.name == "current_user_id")
        assert "request.jwt.claim.sub" in body and "app.user_id" not in body
        result = run_matrix(conn, project, "jwt", expect=spec_matrix.expectation)
    assert not result.failures
