"""The shipped PromptCraft policies against their access matrix (docs/access-matrix.md), cell by cell, on a real server.

`spec_matrix.expectation` is written from the matrix by hand; the
tester impersonates every principal on the fixture rows and compares. Both
sides of every rule are covered: the cells list every principal, including
other teams, lower ranks, outsiders and sessions without identity.
"""

from __future__ import annotations

from collections import Counter

import psycopg
import pytest

from rlsctl.tester.run import CellContext, run_matrix
from tests import spec_matrix
from tests.conftest import migrate_and_apply

TABLES = (
    "User",
    "Team",
    "TeamMember",
    "Prompt",
    "PromptVersion",
    "PromptApproval",
    "UsageAnalytics",
    "PerformanceMetrics",
    "ApiKey",
    "AuditLog",
)


CONTEXTS: dict[tuple[str, str, str, str], CellContext] = {}


def recording_expectation(context: CellContext) -> bool:
    """The hand-written oracle, keeping each cell's rows for the tests below."""
    CONTEXTS[(context.table, context.command, context.case, context.principal.name)] = context
    return spec_matrix.expectation(context)


@pytest.fixture(scope="module")
def matrix(make_module_db):
    database = make_module_db()
    project = migrate_and_apply(database)
    with database.connect() as conn:
        return run_matrix(conn, project, database.target.where, expect=recording_expectation)


@pytest.mark.parametrize("phase", [0, 1, 2, 3])
def test_every_cell_of_an_earlier_phase_matches_the_specification(make_db, phase):
    """The hand-written oracle at every phase, not only the last: a policy is rendered for the
    columns that exist (phase 0's Prompt knows nothing of teams), and must still meet the access matrix."""
    database = make_db()
    project = migrate_and_apply(database, phase)
    with database.connect() as conn:
        result = run_matrix(conn, project, database.target.where, expect=spec_matrix.expectation)
    assert result.cells and not result.failures, describe(result.failures)
    tables = {c.table for c in result.cells}
    assert "User" in tables and ("Team" in tables) == (phase >= 1) and ("ApiKey" in tables) == (phase >= 4)


def describe(cells) -> str:
    return "\n".join(
        f"{c.table} {c.command} {c.case} as {c.principal}: spec says "
        f"{'allowed' if c.expected else 'denied'}, database gave {c.actual.detail}"
        for c in cells
    )


def test_every_cell_matches_the_specification(matrix):
    assert not matrix.failures, describe(matrix.failures)


def test_matrix_covers_every_table_command_and_principal(matrix):
    seen = Counter((c.table, c.command) for c in matrix.cells)
    for table in TABLES:
        for command in ("select", "insert", "update", "delete"):
            assert seen[(table, command)] > 0, f"no cell for {table} {command}"
    principals = {c.principal for c in matrix.cells}
    assert {
        "a_owner",
        "a_admin",
        "a_member",
        "ab_admin",
        "b_member",
        "outsider",
        "no_identity",
        "empty_identity",
        "auditor",
        "analyst",
        "retention",
        "owner",
    } <= principals


@pytest.mark.parametrize("table", TABLES)
def test_each_table_has_allowed_and_denied_cells(matrix, table):
    """A rule tested only from one side cannot fail: both must occur for every table."""
    cells = [c for c in matrix.cells if c.table == table]
    assert any(c.actual.allowed for c in cells), f"nobody may do anything on {table}?"
    assert any(not c.actual.allowed for c in cells), f"everybody may do everything on {table}?"


def test_sessions_without_identity_see_nothing_and_change_nothing(matrix):
    for cell in matrix.cells:
        if cell.principal in ("no_identity", "empty_identity"):
            assert not cell.actual.allowed, f"{cell.table} {cell.command} {cell.case}"


def team_of(context: CellContext) -> str | None:
    """The team a fixture row belongs to, read from the rows themselves (not from case names)."""
    world, row = spec_matrix.World(context.world), context.row
    if context.table == "Team":
        return row["id"]
    if "teamId" in row:
        return row.get("teamId")
    if "promptId" in row:
        prompt = world.find("Prompt", row["promptId"])
        return prompt.get("teamId") if prompt else None
    return None


def test_other_team_is_invisible(matrix):
    team_a = next(c.row["id"] for c in CONTEXTS.values() if c.table == "Team" and c.case == "team_a")
    checked = [
        c
        for c in matrix.cells
        if c.principal.startswith("b_") and c.command == "select"
        and team_of(CONTEXTS[(c.table, c.command, c.case, c.principal)]) == team_a
    ]  # fmt: skip
    assert {c.table for c in checked} >= {"Team", "TeamMember", "Prompt", "PromptVersion", "ApiKey", "AuditLog"}
    leaks = [c for c in checked if c.actual.allowed]
    assert not leaks, describe(leaks)


def test_denial_forms(secured_db):
    """docs/access-matrix.md, 'How a denial looks': empty reads, raising inserts, zero-row updates, missing privileges."""
    project = secured_db.project()
    app = secured_db.role("app")
    with secured_db.connect(autocommit=False) as conn:
        conn.execute(
            """INSERT INTO "User"(id, email, "updatedAt") VALUES ('u1', 'u1@x', now()), ('u2', 'u2@x', now())"""
        )
        conn.execute(
            """INSERT INTO "Prompt"(id, "userId", title, content, "updatedAt") VALUES ('p2', 'u2', 't', 'c', now())"""
        )
        conn.execute("SELECT set_config('role', %s, true)", (app,))
        # No identity: reads come back empty, without an error.
        assert conn.execute('SELECT count(*) FROM "Prompt"').fetchone()[0] == 0
        conn.execute("SELECT set_config('app.user_id', 'u1', true)")
        # Someone else's row: UPDATE and DELETE affect zero rows.
        assert conn.execute("""UPDATE "Prompt" SET title = 'x' WHERE id = 'p2'""").rowcount == 0
        assert conn.execute("""DELETE FROM "Prompt" WHERE id = 'p2'""").rowcount == 0
        # A denied INSERT raises.
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute(
                """INSERT INTO "Prompt"(id, "userId", title, content, "updatedAt")
                   VALUES ('p3', 'u2', 't', 'c', now())"""
            )
        # A command the table never allows the app raises (missing privilege).
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("""DELETE FROM "AuditLog" WHERE id = 'nothing'""")
        # "hashedKey" is never readable by the app.
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute('SELECT "hashedKey" FROM "ApiKey"')
        conn.rollback()
    assert project.role_name("app") == app
