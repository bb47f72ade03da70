"""Serial columns: whoever may insert gets USAGE on the column's sequence, nothing more.

A `bigserial` id draws its value with nextval(), which runs with the inserting role's
rights: without USAGE the application's first INSERT fails with "permission denied for
sequence", while drift said "no drift" (an outside check on a schema of its own).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from rlsctl.change.drift import read_plan
from rlsctl.change.render import render_phases
from rlsctl.policy.project import Project, load_project
from tests.conftest import migrate_and_apply
from tests.helpers import orgs_with_phase

EVENTS_UP = """
CREATE SEQUENCE event_number;
CREATE TABLE event (
    id bigserial PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES organisation (id),
    serial_no integer NOT NULL DEFAULT nextval('event_number'),
    body text NOT NULL
);
ALTER SEQUENCE event_number OWNED BY event.serial_no;
CREATE INDEX event_org_id_idx ON event (org_id);
CREATE SEQUENCE unrelated_counter;
-- Defaults that merely mention a sequence the column does not own: another table's, another
-- application's counter. rlsctl must grant neither (an adversarial review: the owner login had
-- apply, run as a superuser, grant what it could not grant itself).
CREATE TABLE tally (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES organisation (id),
    borrowed bigint DEFAULT nextval('unrelated_counter'),
    peeked bigint DEFAULT currval('event_id_seq')
);
CREATE INDEX tally_org_id_idx ON tally (org_id);
"""
EVENTS_POLICY = """
tables:
  event:
    tenant: org_id
    policies:
      app:
        select: {tenant_role: viewer}
        insert: {tenant_role: editor}
  tally:
    tenant: org_id
    policies:
      app:
        select: {tenant_role: viewer}
        insert: {tenant_role: viewer}
"""


@pytest.fixture
def events_project(tmp_path: Path) -> Path:
    down = "DROP TABLE tally;\nDROP TABLE event;\nDROP SEQUENCE unrelated_counter;\n"
    return orgs_with_phase(tmp_path, EVENTS_UP, down, EVENTS_POLICY)


def usage(conn: psycopg.Connection, sequence: str, role: str) -> tuple[bool, bool]:
    row = conn.execute(
        "SELECT has_sequence_privilege(%s, %s, 'USAGE'), has_sequence_privilege(%s, %s, 'SELECT')",
        (role, sequence, role, sequence),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def insert_as(conn: psycopg.Connection, project: Project, level: str | None) -> int:
    """A member of an organisation at `level` (None: a session without identity) inserts an event,
    as the application does."""
    member, org = conn.execute(
        "INSERT INTO account (email) VALUES (%s) RETURNING id, (SELECT id FROM organisation LIMIT 1)",
        (f"{level}@example.test",),
    ).fetchone()  # type: ignore[misc]
    if org is None:
        org = conn.execute("INSERT INTO organisation (name, slug) VALUES ('o', 'o') RETURNING id").fetchone()[0]  # type: ignore[index]
    conn.execute(
        "INSERT INTO org_membership (org_id, account_id, level) VALUES (%s, %s, %s)", (org, member, level or "viewer")
    )
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(project.role_name("app"))))
    conn.execute("SELECT set_config('request.account_id', %s, true)", ("" if level is None else str(member),))
    row = conn.execute("INSERT INTO event (org_id, body) VALUES (%s, 'hello') RETURNING id", (org,)).fetchone()
    assert row is not None
    return int(row[0])


def test_the_app_inserts_into_a_table_with_serial_columns_and_can_read_no_sequence(db, events_project):
    project = migrate_and_apply(db, project=load_project(events_project, role_prefix=db.prefix))
    app = project.role_name("app")
    with db.connect() as conn:
        assert usage(conn, "event_id_seq", app) == (True, False)
        assert usage(conn, "event_number", app) == (True, False)  # a DEFAULT nextval() of its own
        assert usage(conn, "unrelated_counter", app) == (False, False)
        for reader in ("reporting", "provisioner"):  # roles that insert no event get nothing on its sequences
            assert usage(conn, "event_id_seq", project.role_name(reader)) == (False, False)
    with db.connect(autocommit=False) as conn:
        assert insert_as(conn, project, "editor") >= 1
        conn.rollback()
    # USAGE on the sequence opens no row: a lower rank and a session without identity are still refused.
    for level in ("viewer", None):
        with db.connect(autocommit=False) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            insert_as(conn, project, level)


def test_drift_sees_a_sequence_grant_missing_or_extra_and_apply_repairs_both(db, events_project):
    project = migrate_and_apply(db, project=load_project(events_project, role_prefix=db.prefix))
    app = sql.Identifier(project.role_name("app"))
    with db.connect() as conn:
        assert not read_plan(conn, project, "test", None).statements  # converged: a second apply changes nothing
        conn.execute(sql.SQL("REVOKE USAGE ON SEQUENCE event_id_seq FROM {}").format(app))
        conn.execute(sql.SQL("GRANT SELECT ON SEQUENCE event_number TO {}").format(app))
        plan = read_plan(conn, project, "test", None)
        text = "\n".join(statement.sql for statement in plan.statements)
        assert f'GRANT USAGE ON SEQUENCE "public"."event_id_seq" TO "{project.role_name("app")}"' in text
        assert f'REVOKE SELECT ON SEQUENCE "public"."event_number" FROM "{project.role_name("app")}"' in text
    migrate_and_apply(db, project=project)
    with db.connect() as conn:
        assert usage(conn, "event_id_seq", project.role_name("app")) == (True, False)
        assert usage(conn, "event_number", project.role_name("app")) == (True, False)
        assert not read_plan(conn, project, "test", None).statements


def test_render_grants_the_sequences_offline(events_project):
    """Offline, a serial column's sequence is PostgreSQL's own name for it."""
    project = load_project(events_project, role_prefix="offline_")
    script = render_phases(project, 2)[2]
    assert 'GRANT USAGE ON SEQUENCE "public"."event_id_seq" TO "offline_app";' in script
    assert "event_number" not in script  # OWNED BY the column only in the catalog: apply's to grant
    assert "unrelated_counter" not in script and "SELECT ON SEQUENCE" not in script
