"""The audit log (docs/audit.md): triggers record the security-relevant changes with the right
actor, team and allow-listed metadata at the server's UTC time; the log is append-only for every
role but retention's, and only for expired rows; its hash chain catches edits, deletions and
insertions made with triggers off, accepts retention's trimming, and an exported head catches a
chain recomputed by whoever could disable the triggers."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg import sql

from rlsctl.change.apply import live_schema
from rlsctl.change.record import state_digest
from rlsctl.cli.main import main
from rlsctl.declare.bind import BindError
from rlsctl.declare.compile import declare
from rlsctl.migrate import run as migrating
from rlsctl.pg.templates import render_template
from rlsctl.policy.project import load_project
from tests.conftest import ROOT, TestDatabase, migrate_and_apply

LOG = '"AuditLog"'
LOCK_CLASS = 0x726C7363  # rlsctl.pg.locks.CLASS


def seed(conn: psycopg.Connection) -> None:
    """u1 owns team t1 (with its OWNER row), u2 and u3 exist; written as a superuser."""
    conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u1','1@x',now()), ('u2','2@x',now()),
                    ('u3','3@x',now())""")
    conn.execute("""INSERT INTO "Team"(id, name, "updatedAt", "ownerId") VALUES ('t1','T1',now(),'u1')""")
    conn.execute("""INSERT INTO "TeamMember"(id, "teamId", "userId", role) VALUES ('m1','t1','u1','OWNER')""")


@pytest.fixture(scope="module")
def audited(make_module_db) -> TestDatabase:
    database = make_module_db()
    migrate_and_apply(database)
    with database.connect() as conn:
        seed(conn)
    return database


@contextmanager
def as_user(
    database: TestDatabase, user: str | None, role: str = "app", **settings: str
) -> Iterator[psycopg.Connection]:
    """One transaction as a project role, with a user identity (None: none), committed at the end."""
    with database.connect(autocommit=False) as conn:
        for name, value in settings.items():
            conn.execute("SELECT set_config(%s, %s, true)", (name, value))
        conn.execute("SELECT set_config('role', %s, true)", (database.role(role),))
        if user is not None:
            conn.execute("SELECT set_config('app.user_id', %s, true)", (user,))
        yield conn
        conn.commit()


@contextmanager
def triggers_off(database: TestDatabase) -> Iterator[psycopg.Connection]:
    """A superuser's session with ordinary triggers off: how the log is tampered with."""
    with database.connect() as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        yield conn


def rows(database: TestDatabase, where: str = "true", params: tuple[object, ...] = ()) -> list[dict[str, object]]:
    with database.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(f'SELECT * FROM {LOG} WHERE {where} ORDER BY "chainSeq"', params)
        return cur.fetchall()


def audit_cli(database: TestDatabase, *args: str, project: Path = ROOT) -> Result:
    arguments = [*args, "--dsn", database.dsn, "--project", str(project), "--role-prefix", database.prefix]
    return CliRunner().invoke(main, arguments)


def verify(database: TestDatabase, *args: str) -> Result:
    return audit_cli(database, "audit", "verify", *args)


# -- what is recorded ----------------------------------------------------------------------------


def test_security_changes_are_recorded_with_actor_team_and_allow_listed_metadata(audited):
    with as_user(audited, "u1") as conn:
        conn.execute("""INSERT INTO "TeamMember"(id, "teamId", "userId", role) VALUES ('m2','t1','u2','MEMBER')""")
        conn.execute("""UPDATE "TeamMember" SET role = 'ADMIN' WHERE id = 'm2'""")
        conn.execute("""UPDATE "Team" SET name = 'Renamed' WHERE id = 't1'""")
        conn.execute("""INSERT INTO "ApiKey"(id, "teamId", name, "hashedKey", scopes)
                        VALUES ('k1', 't1', 'ci', repeat('a', 64), ARRAY['prompts:read'])""")
        conn.execute("""INSERT INTO "Prompt"(id, "userId", "teamId", title, content, "updatedAt")
                        VALUES ('p1', 'u1', 't1', 'secret title', 'secret content', now())""")
        conn.execute("""DELETE FROM "Prompt" WHERE id = 'p1'""")
        conn.execute("""DELETE FROM "TeamMember" WHERE id = 'm2'""")
    found = rows(audited, """"userId" = 'u1'""")
    summary = [(r["action"], r["resourceType"], r["resourceId"], r["teamId"]) for r in found]
    assert summary == [
        ("insert", "TeamMember", "m2", "t1"),
        ("update", "TeamMember", "m2", "t1"),
        ("update", "Team", "t1", "t1"),
        ("insert", "ApiKey", "k1", "t1"),
        ("delete", "Prompt", "p1", "t1"),  # Prompt: deletes only, its insert is not audited
        ("delete", "TeamMember", "m2", "t1"),
    ]
    metadata = [r["metadata"] for r in found]
    assert metadata[0] == {"new": {"teamId": "t1", "userId": "u2", "role": "MEMBER"}}
    assert metadata[1] == {"changed": {"role": ["MEMBER", "ADMIN"]}}
    assert metadata[2] == {"changed": {"name": ["T1", "Renamed"]}}
    assert metadata[3] == {"new": {"name": "ci", "scopes": ["prompts:read"], "expiresAt": None}}
    assert metadata[4] == {"old": {"userId": "u1", "teamId": "t1"}}
    # Never a key hash, prompt content or title: only the allow-list is copied.
    text = json.dumps(metadata)
    assert "aaaa" not in text and "secret" not in text


def test_an_update_names_the_other_columns_it_changed_never_their_values(audited):
    with as_user(audited, "u1") as conn:
        conn.execute("""UPDATE "Team" SET "updatedAt" = now() - interval '1 day' WHERE id = 't1'""")
        conn.execute("""UPDATE "Team" SET name = name WHERE id = 't1'""")  # changes nothing: not recorded
    last = rows(audited, """"resourceType" = 'Team' AND "userId" = 'u1'""")[-1]
    assert last["metadata"] == {"changed": {}, "also_changed": ["updatedAt"]}


def test_the_actor_without_a_user_is_the_login(audited):
    with audited.connect() as conn:
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u9', '9@x', now())""")
        conn.execute("""INSERT INTO "Team"(id, name, "updatedAt", "ownerId") VALUES ('t9', 'T9', now(), 'u9')""")
    found = rows(audited, """"resourceId" = 't9'""")
    assert [(r["userId"], r["action"]) for r in found] == [("login:postgres", "insert")]


def test_deleting_a_team_and_its_user_leaves_their_audit_rows(audited):
    with audited.connect() as conn:
        conn.execute("""INSERT INTO "User"(id, email, "updatedAt") VALUES ('u8', '8@x', now())""")
        conn.execute("""INSERT INTO "Team"(id, name, "updatedAt", "ownerId") VALUES ('t8', 'T8', now(), 'u8')""")
        conn.execute("""INSERT INTO "TeamMember"(id, "teamId", "userId", role) VALUES ('m8', 't8', 'u8', 'OWNER')""")
    before = {r["id"] for r in rows(audited, """"teamId" = 't8'""")}
    with audited.connect() as conn:
        conn.execute("""DELETE FROM "User" WHERE id = 'u8'""")  # its team and membership go with it
    after = rows(audited, """"teamId" = 't8'""")
    assert before < {r["id"] for r in after}
    assert {(r["action"], r["resourceType"]) for r in after[-2:]} == {("delete", "Team"), ("delete", "TeamMember")}


def test_rlsctl_apply_is_recorded_as_system_with_the_state_it_applied(audited):
    project = audited.project()
    with audited.connect() as conn:
        state = declare(project, live_schema(conn, project, None))
    (applied,) = rows(audited, """"userId" = 'system:apply'""")
    assert applied["action"] == "apply" and applied["resourceType"] == "rlsctl"
    assert applied["metadata"]["state"] == state_digest(state, ROOT / "templates")
    assert applied["metadata"]["login"] == "postgres"


def test_a_later_phase_a_keys_run_and_a_rollback_are_recorded_as_system(db, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(ROOT / "policies", root / "policies")
    shutil.copytree(ROOT / "migrations", root / "migrations")
    migrate_and_apply(db, project=load_project(root, role_prefix=db.prefix))
    later = root / "migrations" / "5_later"
    later.mkdir()
    (later / "01_index.up.sql").write_text('CREATE INDEX "User_name_idx" ON "User"("name");\n')
    (later / "01_index.down.sql").write_text('DROP INDEX "User_name_idx";\n')
    assert audit_cli(db, "migrate", project=root).exit_code == 0
    assert audit_cli(db, "keys", "rotate", project=root).exit_code == 0
    assert audit_cli(db, "rollback", "--to", "4", "--yes", project=root).exit_code == 0
    found = {(r["userId"], r["action"]): r["metadata"] for r in rows(db, """"userId" LIKE 'system:%%'""")}
    assert found[("system:migrate", "migrate")]["phase"] == 5
    assert found[("system:keys", "rotate")]["run"] == "rotate"
    rolled = found[("system:rollback", "rollback")]
    assert rolled["reverted"] == [5] and rolled["to"] == 4 and len(rolled["state"]) == 64
    assert len(found[("system:keys", "rotate")]["state"]) == 64
    assert verify(db).exit_code == 0


def test_an_api_key_session_is_recorded_as_its_key(db, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(ROOT / "policies", root / "policies")
    shutil.copytree(ROOT / "migrations", root / "migrations")
    prompts = root / "policies" / "prompts.yaml"
    prompts.write_text(prompts.read_text().replace("actions: [delete]", "actions: [insert, delete]"))
    migrate_and_apply(db, project=load_project(root, role_prefix=db.prefix))
    with db.connect() as conn:
        seed(conn)
        conn.execute("""INSERT INTO "ApiKey"(id, "teamId", name, "hashedKey", scopes)
                        VALUES ('k7', 't1', 'bot', encode(sha256('pc_raw'::bytea), 'hex'), ARRAY['prompts:write'])""")
    with as_user(db, None) as conn:
        assert conn.execute("SELECT rlsctl.authenticate_api_key('pc_raw')").fetchone()[0] is True
        conn.execute("""INSERT INTO "Prompt"(id, "userId", "teamId", title, content, "updatedAt")
                        VALUES ('p7', 'u1', 't1', 'by key', 'by key', now())""")
    (row,) = rows(db, """"resourceId" = 'p7'""")
    assert (row["userId"], row["teamId"], row["action"]) == ("apikey:k7", "t1", "insert")


@pytest.mark.parametrize(
    ("path", "listed", "refusal"),
    [
        ("security.yaml", "columns: [name, hashedKey]", "hashedKey is the API keys' hash"),
        ("prompts.yaml", "columns: [userId, teamId, content]", "content is declared secret"),
    ],
)
def test_a_secret_column_cannot_be_allow_listed(tmp_path, path, listed, refusal):
    root = tmp_path / "project"
    shutil.copytree(ROOT / "policies", root / "policies")
    shutil.copytree(ROOT / "migrations", root / "migrations")
    policy = root / "policies" / path
    text = policy.read_text()
    for allowed in ("columns: [name, scopes, expiresAt]", "columns: [userId, teamId]"):
        text = text.replace(allowed, listed)
    policy.write_text(text)
    project = load_project(root)
    with pytest.raises(BindError, match=f"{refusal}: the audit log never copies it"):
        declare(project, project.migrated_schema())


# -- the server's time, in UTC -------------------------------------------------------------------


def utc_now(database: TestDatabase):
    with database.connect() as conn:
        return conn.execute("SELECT now() AT TIME ZONE 'UTC'").fetchone()[0]


def test_created_at_is_the_servers_utc_time_whatever_the_session_timezone(audited):
    web = audited.role("web")
    with audited.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(web), sql.Identifier(audited.role("app")))
        )
        conn.execute(sql.SQL("ALTER ROLE {} SET TimeZone = 'XXX-167'").format(sql.Identifier(web)))
    with as_user(audited, "u1", timezone="XXX+167") as conn:  # the app's own row (the guard stamps it)
        conn.execute(f"""INSERT INTO {LOG}(id, "userId", "teamId", action, "resourceType", "resourceId")
                         VALUES ('tz-app', 'u1', 't1', 'login', 'User', 'u1')""")
        conn.execute("""UPDATE "Team" SET name = 'TZ' WHERE id = 't1'""")  # a trigger's row, as the definer
    with psycopg.connect(audited.dsn + f" user={web}") as conn:  # a login whose role sets TimeZone
        conn.execute("SELECT set_config('app.user_id', 'u1', false)")
        conn.execute(f"""INSERT INTO {LOG}(id, "userId", action, "resourceType", "resourceId")
                         VALUES ('tz-login', 'u1', 'login', 'User', 'u1')""")
    with audited.connect() as conn:  # a superuser's default
        conn.execute("SET timezone = 'XXX+167'")
        conn.execute(f"""INSERT INTO {LOG}(id, "userId", action, "resourceType", "resourceId")
                         VALUES ('tz-superuser', 'u1', 'login', 'User', 'u1')""")
    now = utc_now(audited)
    stamped = rows(
        audited,
        """id LIKE 'tz-%%' OR ("resourceType" = 'Team' AND metadata->'changed' ? 'name'
                               AND metadata->'changed'->'name'->>1 = 'TZ')""",
    )
    assert len(stamped) == 4
    for row in stamped:
        assert abs((now - row["createdAt"]).total_seconds()) < 120, row


def test_the_app_still_cannot_choose_the_time_or_the_chain(audited):
    for column, value in (('"createdAt"', "'2000-01-01'"), ('"chainSeq"', "1"), ('"chainHash"', "'\\x00'")):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(audited, "u1") as conn:
            conn.execute(f"""INSERT INTO {LOG}(id, "userId", action, "resourceType", "resourceId", {column})
                             VALUES ('forged', 'u1', 'x', 'User', 'u1', {value})""")


# -- append-only ---------------------------------------------------------------------------------


def test_no_role_updates_or_deletes_audit_rows(audited):
    for role in ("app", "auditor", "analyst", "definer"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(audited, "u1", role=role) as conn:
            conn.execute(f"""UPDATE {LOG} SET action = 'x'""")
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(audited, "u1", role=role) as conn:
            conn.execute(f"""DELETE FROM {LOG}""")


def test_the_owner_role_is_stopped_by_the_trigger_even_without_rls(audited):
    """The owner owns the table: it may lift FORCE ROW LEVEL SECURITY (and so bypass every
    policy), but not the append-only trigger."""
    count = len(rows(audited))
    with audited.connect(autocommit=False) as conn:
        conn.execute("SELECT set_config('role', %s, true)", (audited.role("owner"),))
        assert conn.execute(f"DELETE FROM {LOG}").rowcount == 0  # forced RLS: no policy, no row
        conn.execute(f"ALTER TABLE {LOG} NO FORCE ROW LEVEL SECURITY")
        for statement in (f"UPDATE {LOG} SET action = 'x'", f"DELETE FROM {LOG}", f"TRUNCATE {LOG}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"), conn.transaction():
                conn.execute(statement)
        conn.rollback()
    assert len(rows(audited)) == count


def test_a_superuser_is_stopped_too_unless_it_disables_triggers(audited):
    with audited.connect() as conn:
        for statement in (f"UPDATE {LOG} SET action = 'x'", f"DELETE FROM {LOG}", f"TRUNCATE {LOG}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)


def test_the_retention_role_deletes_only_expired_rows(audited):
    with audited.connect() as conn:  # a superuser may write the time: an old row
        conn.execute(f"""INSERT INTO {LOG}(id, "userId", action, "resourceType", "resourceId", "createdAt")
                         VALUES ('old-1', 'u1', 'login', 'User', 'u1', now() - interval '400 days')""")
    with as_user(audited, None, role="retention") as conn:
        assert conn.execute(f"""DELETE FROM {LOG} WHERE id <> 'old-1'""").rowcount == 0  # younger: not visible
        assert conn.execute(f"""DELETE FROM {LOG} WHERE id = 'old-1'""").rowcount == 1
    assert verify(audited).exit_code == 0  # a removal ahead of younger rows is listed, the chain holds


def test_the_guard_refuses_a_young_row_even_if_a_policy_lets_retention_see_it(audited):
    """Defence in depth: the owner widening the retention role's policy does not make young rows go."""
    with audited.connect(autocommit=False) as conn:
        conn.execute(f"CREATE POLICY widened ON {LOG} FOR DELETE TO {audited.role('retention')} USING (true)")
        conn.execute(f"CREATE POLICY widened_read ON {LOG} FOR SELECT TO {audited.role('retention')} USING (true)")
        conn.execute("SELECT set_config('role', %s, true)", (audited.role("retention"),))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(f"DELETE FROM {LOG} WHERE id IS NOT NULL")  # every row: young ones among them
        conn.rollback()


def test_drift_reports_a_disabled_or_missing_guard(db):
    migrate_and_apply(db)
    with db.connect() as conn:
        conn.execute(f"SET ROLE {db.role('owner')}")  # the owner may: it owns the table
        conn.execute(f"ALTER TABLE {LOG} DISABLE TRIGGER zz_rlsctl_append_only")
        conn.execute('ALTER TABLE "TeamMember" DISABLE TRIGGER zz_rlsctl_audit')
        conn.execute("RESET ROLE")
        conn.execute(f"DROP TRIGGER zz_rlsctl_chain ON {LOG}")
    drift = audit_cli(db, "drift")
    assert drift.exit_code == 1, drift.output
    for name in ("AuditLog.zz_rlsctl_append_only", "TeamMember.zz_rlsctl_audit", "AuditLog.zz_rlsctl_chain"):
        assert f"trigger {name}" in drift.stdout
    assert audit_cli(db, "apply").exit_code == 0
    assert audit_cli(db, "drift").exit_code == 0


def test_only_rlsctl_may_call_its_audit_functions(audited):
    """The application cannot write a row claiming a change, move the chain, or read its anchors."""
    calls = (
        "SELECT rlsctl.audit_record('apply', 'apply', 'rlsctl', 'x', NULL, NULL)",
        r"SELECT rlsctl.audit_trim('AuditLog', 0, 1, '\x00', '\x00')",
        "SELECT rlsctl.audit_anchors('AuditLog')",
        "SELECT rlsctl.audit_actor()",
        "SELECT rlsctl.api_key_session_id()",
        "SELECT * FROM rlsctl.audit_lane",
        "SELECT nextval('rlsctl.audit_seq')",
    )
    for role in ("app", "analyst", "retention"):
        for call in calls:
            # The retention role too: audit_trim is its guard trigger's, never called directly
            # (a made-up row listed as trimmed would hide a deletion).
            with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(audited, "u1", role=role) as conn:
                conn.execute(call)


def test_the_order_is_closed_to_every_role_but_its_functions(audited):
    """The seal and the order are rlsctl's: the application, the analyst, retention and the auditor
    cannot seal, write or read the order directly; only the readers may list it, through its function."""
    writes = (
        "SELECT rlsctl.audit_seal('AuditLog')",
        "SELECT * FROM rlsctl.audit_order",
        r"INSERT INTO rlsctl.audit_order (log, pos, seq, lane, prev, hash) VALUES ('AuditLog', 1, -1, -1, '\x00', '\x00')",
        "DELETE FROM rlsctl.audit_order",
    )
    for role in ("app", "analyst", "retention", "auditor"):
        for call in writes:
            with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(audited, "u1", role=role) as conn:
                conn.execute(call)
    for role in ("app", "analyst", "retention"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(audited, "u1", role=role) as conn:
            conn.execute("SELECT * FROM rlsctl.audit_order_entries('AuditLog')")
    with as_user(audited, None, role="auditor") as conn:  # a reader: positions and hashes, no content
        conn.execute("SELECT * FROM rlsctl.audit_order_entries('AuditLog')").fetchall()


def test_the_definer_reads_the_chain_columns_of_the_log_and_nothing_else(audited):
    """What audit_seal needs (its column grant and policy): the chain's columns, never a row's content."""
    with as_user(audited, None, role="definer") as conn:
        assert conn.execute(f'SELECT count("chainSeq") = count(*) FROM {LOG}').fetchone() == (True,)
    for column in ("id", "userId", "teamId", "action", "metadata", "createdAt"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(audited, None, role="definer") as conn:
            conn.execute(f'SELECT "{column}" FROM {LOG}')
    for statement in (f'UPDATE {LOG} SET "chainHash" = NULL', f"DELETE FROM {LOG}"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(audited, None, role="definer") as conn:
            conn.execute(statement)


# -- the chain -----------------------------------------------------------------------------------


@pytest.fixture
def chained(db) -> TestDatabase:
    migrate_and_apply(db)
    with db.connect() as conn:
        seed(conn)
    with as_user(db, "u1") as conn:
        for n in range(6):
            conn.execute("""INSERT INTO "TeamMember"(id, "teamId", "userId", role) VALUES (%s, 't1', 'u2', 'MEMBER')""",
                         (f"x{n}",))  # fmt: skip
            conn.execute("""DELETE FROM "TeamMember" WHERE id = %s""", (f"x{n}",))
    return db


def test_an_intact_chain_verifies_and_prints_its_head(chained):
    seal(chained)  # export-head seals too: the same head, before and after
    result = verify(chained)
    assert result.exit_code == 0, result.output
    assert "chain intact" in result.stdout and "head " in result.stdout
    exported = audit_cli(chained, "audit", "export-head")
    head = json.loads(exported.stdout)
    assert head["head"] in result.stdout and head["rows"] == len(rows(chained))


def test_an_edited_row_is_named(chained):
    victim = rows(chained)[5]
    with triggers_off(chained) as conn:
        conn.execute(f"""UPDATE {LOG} SET metadata = '{{"new": {{}}}}' WHERE id = %s""", (victim["id"],))
    result = verify(chained)
    assert result.exit_code == 1
    assert f"chain BROKEN at row {victim['id']}" in result.stdout and "changed after it was written" in result.stdout


def test_a_row_deleted_from_the_middle_is_caught_at_the_next_row(chained):
    found = rows(chained, """"userId" = 'u1'""")  # one session's rows: one lane, one after the other
    assert len({r["chainLane"] for r in found}) == 1
    with triggers_off(chained) as conn:
        conn.execute(f"DELETE FROM {LOG} WHERE id = %s", (found[4]["id"],))
    result = verify(chained, "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["breaks"][0]["row"] == found[5]["id"] and report["breaks"][0]["kind"] == "link"


def test_a_row_inserted_out_of_order_is_caught(chained):
    # A gap in the sequence: a transaction that rolled back.
    with chained.connect() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute(f"""INSERT INTO {LOG}(id, "userId", action, "resourceType", "resourceId")
                         VALUES ('gap', 'u1', 'x', 'User', 'u1')""")
        conn.execute(f"UPDATE {LOG} SET action = 'x'")  # fails: rolls the insert back, seq spent
    with as_user(chained, "u1") as conn:
        conn.execute("""UPDATE "Team" SET name = 'After the gap' WHERE id = 't1'""")
    before, after = rows(chained)[-2:]
    assert after["chainSeq"] - before["chainSeq"] == 2
    with triggers_off(chained) as conn:  # a forged row placed in the gap, claiming the link of the row before
        conn.execute(f"""INSERT INTO {LOG}(id, "userId", action, "resourceType", "resourceId", "createdAt",
                                             "chainSeq", "chainLane", "chainPrev", "chainHash")
                         SELECT 'forged', 'u2', 'login', 'User', 'u2', "createdAt", "chainSeq" + 1, "chainLane",
                                "chainPrev", "chainHash"
                         FROM {LOG} WHERE id = %s""", (before["id"],))  # fmt: skip
    result = verify(chained)
    assert result.exit_code == 1 and "chain BROKEN at row forged" in result.stdout, result.stdout


def test_the_newest_rows_deleted_are_caught_by_the_lane_head(chained):
    with triggers_off(chained) as conn:
        conn.execute(f"""DELETE FROM {LOG} WHERE "chainSeq" = (SELECT max("chainSeq") FROM {LOG})""")
    result = verify(chained)
    assert result.exit_code == 1 and re.search(r"the newest rows of lane \d+ are gone", result.stdout)


def recompute_chain(database: TestDatabase) -> None:
    """What whoever can disable triggers can do: rewrite every hash after an edit, and the heads."""
    project = database.project()
    with database.connect() as conn:
        state = declare(project, live_schema(conn, project, None))
        text = render_template("ops/audit_rows.sql.j2", ROOT / "templates", state=state)
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            heads: dict[int, bytes] = {}
            for row_id, seq, lane, _prev, _digest, content in conn.execute(text).fetchall():
                prev = heads.get(lane, bytes(32))
                digest = hashlib.sha256(prev + content).digest()
                conn.execute(f"""UPDATE {LOG} SET "chainPrev" = %s, "chainHash" = %s WHERE id = %s""",
                             (prev, digest, row_id))  # fmt: skip
                heads[lane] = digest
                conn.execute("UPDATE rlsctl.audit_lane SET seq = %s, hash = %s WHERE log = 'AuditLog' AND lane = %s",
                             (seq, digest, lane))  # fmt: skip
            # ... and the one order over the recomputed rows (docs/audit.md, One order).
            prev = bytes(32)
            entries = conn.execute(
                f"""SELECT o.pos, o.seq, r."chainHash" FROM rlsctl.audit_order o JOIN {LOG} r ON r."chainSeq" = o.seq
                    WHERE o.log = 'AuditLog' ORDER BY o.pos"""
            ).fetchall()
            for pos, seq, row_hash in entries:
                digest = hashlib.sha256(prev + seq.to_bytes(8, "big") + bytes(row_hash)).digest()
                conn.execute("UPDATE rlsctl.audit_order SET prev = %s, hash = %s WHERE log = 'AuditLog' AND pos = %s",
                             (prev, digest, pos))  # fmt: skip
                prev = digest


def recompute_lanes_only(database: TestDatabase) -> None:
    """recompute_chain, with the order kept as it was."""
    with database.connect() as conn:
        saved = conn.execute("SELECT pos, prev, hash FROM rlsctl.audit_order WHERE log = 'AuditLog'").fetchall()
    recompute_chain(database)
    with database.connect() as conn:
        for pos, prev, digest in saved:
            conn.execute("UPDATE rlsctl.audit_order SET prev = %s, hash = %s WHERE log = 'AuditLog' AND pos = %s",
                         (prev, digest, pos))  # fmt: skip


def test_a_recomputed_chain_is_caught_by_the_exported_head(chained, tmp_path):
    exported = audit_cli(chained, "audit", "export-head", "-o", str(tmp_path / "head.json"))
    assert exported.exit_code == 0, exported.output
    victim = rows(chained)[3]
    with triggers_off(chained) as conn:
        conn.execute(f"""UPDATE {LOG} SET "userId" = 'u3' WHERE id = %s""", (victim["id"],))
    recompute_chain(chained)  # the lanes and the order
    assert verify(chained).exit_code == 0  # the chain alone cannot tell
    result = verify(chained, "--expect-head", str(tmp_path / "head.json"))
    assert result.exit_code == 1 and "the chain was rewritten" in result.stdout, result.stdout
    # An untouched chain that grew since still holds the exported head.


def test_a_chain_that_grew_still_holds_its_exported_head(chained, tmp_path):
    head = tmp_path / "head.json"
    assert audit_cli(chained, "audit", "export-head", "-o", str(head)).exit_code == 0
    with as_user(chained, "u1") as conn:
        conn.execute("""UPDATE "Team" SET name = 'Later' WHERE id = 't1'""")
    result = verify(chained, "--expect-head", str(head))
    assert result.exit_code == 0, result.output
    bare = json.loads(head.read_text())["head"]
    (tmp_path / "bare").write_text(bare)
    assert verify(chained, "--expect-head", str(tmp_path / "bare")).exit_code == 1  # a bare hash: no row since


def test_export_head_refuses_a_broken_chain(chained):
    with triggers_off(chained) as conn:
        conn.execute(f"""UPDATE {LOG} SET action = 'x' WHERE "chainSeq" = 2""")
    result = audit_cli(chained, "audit", "export-head")
    assert result.exit_code == 1 and not result.stdout and "chain BROKEN" in result.stderr


def test_verify_reads_as_the_auditor_and_refuses_a_login_that_cannot_see_every_row(chained):
    for login, roles in (("reviewer", ("auditor",)), ("webapp", ("app",))):
        name = chained.role(login)
        with chained.connect() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
            for role in roles:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(chained.role(role)), sql.Identifier(name)))
    reviewer = TestDatabase(chained.name, chained.dsn + f" user={chained.role('reviewer')}", chained.prefix)
    assert verify(reviewer).exit_code == 0
    webapp = TestDatabase(chained.name, chained.dsn + f" user={chained.role('webapp')}", chained.prefix)
    refused = verify(webapp)
    assert refused.exit_code == 2 and "reads every row" in refused.stderr


# -- retention trims the old end -----------------------------------------------------------------


def old_rows_in_their_own_lane(database: TestDatabase, count: int, young: bool = True) -> list[str]:
    """Expired rows at the start of a lane that holds no row yet (then a young one, with `young`).
    A transaction chains in the lane its backend's pid points at, else the next free one: the
    lanes from there to a fresh one are held (their advisory locks, docs/audit.md) while the rows
    are written."""
    ids = [f"old-{n}" for n in range(count)]
    with database.connect(autocommit=False) as holder, database.connect(autocommit=False) as conn:
        start = conn.execute("SELECT pg_backend_pid() % 16").fetchone()[0]
        used = {lane for (lane,) in holder.execute("SELECT lane FROM rlsctl.audit_lane WHERE seq > 0")}
        fresh = next((start + n) % 16 for n in range(16) if (start + n) % 16 not in used)
        for n in range((fresh - start) % 16):
            holder.execute("SELECT pg_advisory_xact_lock(%s, 4096 + %s)", (LOCK_CLASS, (start + n) % 16))
        for row_id in ids:
            conn.execute(
                f"""INSERT INTO {LOG}(id, "userId", action, "resourceType", "resourceId", "createdAt")
                    VALUES (%s, 'u1', 'login', 'User', 'u1', now() - interval '400 days')""",
                (row_id,),
            )
        if young:
            conn.execute(f"""INSERT INTO {LOG}(id, "userId", action, "resourceType", "resourceId")
                             VALUES ('young', 'u1', 'x', 'User', 'u1')""")
        conn.commit()
        holder.commit()
    found = rows(database, "id LIKE 'old-%%' OR id = 'young'" if young else "id LIKE 'old-%%'")
    assert {r["chainLane"] for r in found} == {fresh} and found[0]["chainPrev"] == bytes(32)
    return ids


def retention_deletes(database: TestDatabase, *ids: str) -> None:
    with as_user(database, None, role="retention") as conn:
        assert conn.execute(f"DELETE FROM {LOG} WHERE id = ANY (%s)", (list(ids),)).rowcount == len(ids)


def anchors(database: TestDatabase) -> dict[str, list]:
    with database.connect() as conn:
        return conn.execute("SELECT rlsctl.audit_anchors('AuditLog')").fetchone()[0]


def test_retention_trims_the_old_end_and_the_chain_verifies_from_the_checkpoint(chained, tmp_path):
    ids = old_rows_in_their_own_lane(chained, 4)
    head = tmp_path / "head.json"
    assert audit_cli(chained, "audit", "export-head", "-o", str(head)).exit_code == 0
    retention_deletes(chained, ids[1])  # ahead of an older row it keeps (a hold): listed, not folded
    assert [t[1] for t in anchors(chained)["trimmed"]] and not anchors(chained)["checkpoints"]
    assert verify(chained).exit_code == 0
    retention_deletes(chained, ids[0], ids[2], ids[3])
    found = anchors(chained)
    assert not found["trimmed"] and [c[3] for c in found["checkpoints"]] == [4]
    result = verify(chained, "--expect-head", str(head))
    assert result.exit_code == 0, result.output
    assert "4 trimmed by retention" in result.stdout


def test_an_exported_head_whose_row_retention_trimmed_is_noted_and_counted(chained, tmp_path):
    """docs/audit.md: a lane whose exported seq retention has since trimmed is noted, not failed;
    the note was missing, and rows trimmed ahead of an older kept row were not counted."""
    ids = old_rows_in_their_own_lane(chained, 3, young=False)
    head = tmp_path / "head.json"
    assert audit_cli(chained, "audit", "export-head", "-o", str(head)).exit_code == 0
    retention_deletes(chained, ids[2])  # the lane's newest row, the exported head's, ahead of two kept
    result = verify(chained, "--expect-head", str(head))
    assert result.exit_code == 0, result.output
    assert "1 trimmed by retention" in result.stdout
    assert "was trimmed by retention: compared with the hash retention kept of it" in result.output


def test_deleting_old_rows_any_other_way_is_caught(chained):
    ids = old_rows_in_their_own_lane(chained, 3)
    retention_deletes(chained, ids[0])
    with triggers_off(chained) as conn:  # expired, but not removed by retention: no record of it
        conn.execute(f"DELETE FROM {LOG} WHERE id = %s", (ids[1],))
    result = verify(chained)
    assert result.exit_code == 1 and f"chain BROKEN at row {ids[2]}" in result.stdout, result.stdout
    with triggers_off(chained) as conn:  # a young row right after the checkpoint
        conn.execute(f"DELETE FROM {LOG} WHERE id = ANY (%s)", ([ids[2]],))
    assert "chain BROKEN at row young" in verify(chained).stdout


# -- concurrency ---------------------------------------------------------------------------------


def test_concurrent_transactions_take_separate_lanes_and_the_chain_holds(chained):
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            with chained.connect(autocommit=False) as conn:
                for k in range(3):
                    conn.execute(f"""INSERT INTO {LOG}(id, "userId", action, "resourceType", "resourceId")
                                     VALUES (%s, 'u1', 'x', 'User', 'u1')""", (f"conc-{n}-{k}",))  # fmt: skip
                    if k == 0:
                        barrier.wait(timeout=30)  # every transaction holds a lane at once
                conn.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    lanes = {r["chainLane"] for r in rows(chained, "id LIKE 'conc-%%'")}
    assert len(lanes) == 6  # one per transaction: none waited for another's commit
    for n in range(6):  # a transaction keeps its lane
        assert len({r["chainLane"] for r in rows(chained, "id LIKE %s", (f"conc-{n}-%",))}) == 1
    assert verify(chained).exit_code == 0


# -- the one order --------------------------------------------------------------------------------


def order(database: TestDatabase) -> list[tuple[int, int, int, bytes, bytes]]:
    with database.connect() as conn:
        return [
            (pos, seq, lane, bytes(prev), bytes(digest))
            for pos, seq, lane, prev, digest in conn.execute(
                "SELECT pos, seq, lane, prev, hash FROM rlsctl.audit_order WHERE log = 'AuditLog' ORDER BY pos"
            )
        ]


def seal(database: TestDatabase) -> Result:
    result = audit_cli(database, "audit", "seal")
    assert result.exit_code == 0, result.output
    return result


def expected_links(entries: list[tuple[int, int, int, bytes, bytes]], start: bytes = bytes(32)) -> list[bytes]:
    """Each position's hash as docs/audit.md defines it, worked out here from the rows' own hashes."""
    by_seq = {r["chainSeq"]: bytes(r["chainHash"]) for r in ROWS_CACHE}
    found, prev = [], start
    for _pos, seq, _lane, _prev, _digest in entries:
        prev = hashlib.sha256(prev + seq.to_bytes(8, "big") + by_seq[seq]).digest()
        found.append(prev)
    return found


ROWS_CACHE: list[dict[str, object]] = []


def test_sealing_puts_the_rows_of_every_lane_into_one_order_each_covering_the_one_before(chained):
    test_concurrent_transactions_take_separate_lanes_and_the_chain_holds(chained)  # rows in six lanes
    ROWS_CACHE[:] = rows(chained)
    assert f"sealed {len(ROWS_CACHE)} rows" in seal(chained).stdout  # every row of the log, all committed
    entries = order(chained)
    assert [e[0] for e in entries] == list(range(1, len(ROWS_CACHE) + 1))
    assert sorted(e[1] for e in entries) == [r["chainSeq"] for r in ROWS_CACHE]
    assert len({e[2] for e in entries}) >= 6
    hashes = expected_links(entries)
    assert [e[4] for e in entries] == hashes
    assert [e[3] for e in entries] == [bytes(32), *hashes[:-1]]
    assert "sealed 0 rows" in seal(chained).stdout  # nothing new: a seal is idempotent
    result = verify(chained, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["order"] == {"pos": len(entries), "hash": hashes[-1].hex(), "sealed": len(entries), "pending": 0}


def test_a_row_still_in_flight_is_sealed_by_a_later_seal_after_the_rows_committed_before_it(chained):
    seal(chained)
    sealed_before = len(order(chained))
    with chained.connect(autocommit=False) as slow:
        slow.execute(f"""INSERT INTO {LOG}(id, "userId", action, "resourceType", "resourceId")
                         VALUES ('slow', 'u1', 'x', 'User', 'u1')""")  # holds its lane, seq taken
        with as_user(chained, "u1") as conn:  # another lane, a later seq, committed first
            conn.execute("""UPDATE "Team" SET name = 'Quick' WHERE id = 't1'""")
        seal(chained)
        after = order(chained)
        assert len(after) == sealed_before + 1 and after[-1][1] == rows(chained, "action = 'update'")[-1]["chainSeq"]
        pending = json.loads(verify(chained, "--format", "json").stdout)
        assert pending["ok"] and pending["order"]["pending"] == 0  # the slow row is not committed: unseen
        slow.commit()
    assert json.loads(verify(chained, "--format", "json").stdout)["order"]["pending"] == 1
    seal(chained)
    final = order(chained)
    slow_seq = rows(chained, "id = 'slow'")[0]["chainSeq"]
    assert final[-1][1] == slow_seq and slow_seq < final[-2][1]  # the order is the seal's, not the seq's
    assert verify(chained).exit_code == 0


def test_an_order_entry_edited_or_a_position_deleted_is_caught(chained):
    seal(chained)
    entries = order(chained)
    with chained.connect() as conn:
        conn.execute("UPDATE rlsctl.audit_order SET lane = lane + 1 WHERE log = 'AuditLog' AND pos = 3")
    result = verify(chained)
    assert result.exit_code == 1 and "position 3 names lane" in result.stdout, result.stdout
    with chained.connect() as conn:
        conn.execute("UPDATE rlsctl.audit_order SET lane = lane - 1 WHERE log = 'AuditLog' AND pos = 3")
        conn.execute("DELETE FROM rlsctl.audit_order WHERE log = 'AuditLog' AND pos = 5")
    result = verify(chained)
    assert result.exit_code == 1 and "position 6 follows position 4" in result.stdout, result.stdout
    assert f"of lane {entries[4][2]} is not in the order" in result.stdout  # its row is left out, later rows not


def test_a_row_edited_after_its_seal_breaks_its_lane_and_its_position(chained):
    seal(chained)
    victim = rows(chained)[2]
    with triggers_off(chained) as conn:
        conn.execute(f"""UPDATE {LOG} SET action = 'forged' WHERE id = %s""", (victim["id"],))
    recompute_lanes_only(chained)  # the lanes recomputed around the edit: only the order still knows
    result = verify(chained, "--format", "json")
    assert result.exit_code == 1
    kinds = {(b["kind"], b["seq"]) for b in json.loads(result.stdout)["breaks"]}
    assert ("order-edited", victim["chainSeq"]) in kinds


def test_retention_trims_the_old_end_of_the_order_too(chained, tmp_path):
    # The oldest rows of the log made a year old (and the lanes recomputed around that, which a
    # test may do), then sealed: they are the first positions of the order.
    oldest = [r["id"] for r in rows(chained)[:5]]
    with triggers_off(chained) as conn:
        conn.execute(f"""UPDATE {LOG} SET "createdAt" = "createdAt" - interval '400 days' WHERE id = ANY (%s)""",
                     (oldest,))  # fmt: skip
    recompute_chain(chained)
    seal(chained)
    head = tmp_path / "head.json"
    assert audit_cli(chained, "audit", "export-head", "-o", str(head)).exit_code == 0
    before = order(chained)
    retention_deletes(chained, *oldest)
    seal(chained)
    after = order(chained)
    assert after[0][:3] == (5, -1, -1) and after[0][4] == before[4][4]  # the start marker: position 5, its hash
    assert after[1:] == before[5:]
    result = verify(chained, "--expect-head", str(head))
    assert result.exit_code == 0, result.output
    with chained.connect() as conn:  # the marker is the start: an order rewritten from there is caught
        conn.execute("UPDATE rlsctl.audit_order SET hash = sha256(hash) WHERE log = 'AuditLog' AND seq = -1")
    result = verify(chained)
    assert result.exit_code == 1 and "position 6 (seq" in result.stdout and "does not follow" in result.stdout


def test_rows_the_owner_hides_from_the_seal_are_never_folded_away(chained, tmp_path):
    seal(chained)
    head = tmp_path / "head.json"
    assert audit_cli(chained, "audit", "export-head", "-o", str(head)).exit_code == 0
    before = order(chained)
    owner, definer = chained.role("owner"), chained.role("definer")
    with chained.connect() as conn:  # what the owner role can do to its own table
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        conn.execute(sql.SQL('CREATE POLICY hide ON {} AS RESTRICTIVE FOR SELECT TO {} USING (false)').format(
            sql.Identifier("AuditLog"), sql.Identifier(definer)))  # fmt: skip
        conn.execute("RESET ROLE")
    seal(chained)  # it sees no row: folds nothing, since retention removed none
    with chained.connect() as conn:
        conn.execute('DROP POLICY hide ON "AuditLog"')
    seal(chained)
    assert order(chained) == before
    result = verify(chained, "--expect-head", str(head))
    assert result.exit_code == 0 and "trimmed by retention" not in result.stdout, result.stdout


def test_an_order_start_no_retention_accounts_for_is_caught(chained):
    seal(chained)
    entries = order(chained)
    with chained.connect() as conn:  # whoever writes the order: positions 1-4 folded into a forged start
        conn.execute("DELETE FROM rlsctl.audit_order WHERE log = 'AuditLog' AND pos <= 4")
        conn.execute("INSERT INTO rlsctl.audit_order (log, pos, seq, lane, prev, hash) VALUES ('AuditLog', 4, -1, -1, "
                     "%s, %s)", (bytes(32), entries[3][4]))  # fmt: skip
    result = verify(chained)
    assert result.exit_code == 1 and "retention removed only 0 rows" in result.stdout, result.stdout


def test_a_seal_gives_up_on_a_lock_someone_else_holds(chained):
    with chained.connect() as holder:
        holder.execute("SELECT pg_advisory_lock(%s, 18)", (LOCK_CLASS,))  # any login may take it
        result = audit_cli(chained, "audit", "seal")
    assert result.exit_code == 2 and "another session holds the audit seal's lock" in result.stderr, result.output


def test_a_database_without_this_versions_audit_functions_is_told_to_apply(chained):
    with chained.connect() as conn:
        conn.execute("DROP FUNCTION rlsctl.audit_order_entries(text)")
    result = verify(chained)
    assert result.exit_code == 2 and "run rlsctl apply" in result.stderr and "Traceback" not in result.output


def test_sealing_needs_the_owner_role(chained):
    name = chained.role("reviewer2")
    with chained.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(chained.role("auditor")), sql.Identifier(name)))
    reviewer = TestDatabase(chained.name, chained.dsn + f" user={name}", chained.prefix)
    refused = audit_cli(reviewer, "audit", "seal")
    assert refused.exit_code == 2 and "owner role" in refused.stderr
    with chained.connect(user=name) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT rlsctl.audit_seal('AuditLog')")


def test_rollback_past_the_log_needs_the_history_exported(chained):
    with chained.connect() as conn, pytest.raises(Exception, match="AuditLog, the audit history"):
        migrating.rollback(conn, chained.project(), "db", to=3, confirm=lambda losses: True)
