"""`rlsctl test --format pgtap`: the expectation cells as one pgTAP file for `pg_prove`.

Each test asserts what the expectations (expectations/*.yaml) say of one cell, not
what the database did when the file was exported and not what the policies say:
run on the applied database the file is green, and it goes red once a policy is
dropped or widened. The file does what rlsctl test does (rlsctl/tester/run.py), as
SQL: in one rolled-back transaction it loads the same fixture rows as the tables'
owner, then judges every cell in a subtransaction of its own, as its principal
(templates/ops/pgtap.sql.j2, pgtap_cell.sql.j2). Every statement in it is the one
rlsctl test renders for the cell (Runner), through the templates' quoting path.

An optional section asserts a snapshot of the current policies (pgTAP's
policies_are, policy_roles_are), labelled as such: it is no independent expectation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from rlsctl.catalog import queries as catalog
from rlsctl.change.apply import live_schema
from rlsctl.declare.compile import declare
from rlsctl.declare.state import DeclaredState
from rlsctl.errors import UsageError
from rlsctl.pg import statements
from rlsctl.policy.project import Project
from rlsctl.tester.evaluate import Principal
from rlsctl.tester.fixtures import FixtureRow, Resolved, resolve
from rlsctl.tester.probes import principal_json

# The runner's own case building, so that each exported statement is the very one rlsctl
# test ran for the cell (the update cases a table gets, "@self" in an insert candidate).
from rlsctl.tester.run import Cell, MatrixResult, Runner, update_cases, with_self

# Where the file creates pgTAP when the database lacks it (rolled back with the rest).
EXTENSION_SCHEMA = "pgtap"


@dataclass(frozen=True)
class Check:
    """One pgTAP test: a cell's statement, run as its principal, and what the expectations say."""

    principal: str
    command: str
    statement: str  # select: counts the visible rows with the cell's key; else the write itself
    expected: str  # "allowed" | "denied"
    description: str


@dataclass(frozen=True)
class Setup:
    """What run_matrix built to run the cells, built again the same way to write them out."""

    runner: Runner
    resolved: Resolved
    state: DeclaredState


def to_pgtap(
    conn: psycopg.Connection,
    project: Project,
    result: MatrixResult,
    tables: Sequence[str] = (),
    snapshot: bool = False,
) -> str:
    """The pgTAP file for the judged cells of `result` (of `tables` only, when given)."""
    chosen = _chosen_tables(result, tables)
    setup = build_setup(conn, project)
    cells = [cell for cell in result.cells if cell.judged and cell.table in chosen]
    if not cells:
        # A file that asserts nothing would pass whatever the policies do.
        raise UsageError(f"no expectation covers {', '.join(chosen)}: there is no cell to export (docs/testing.md)")
    checks = [check_of(setup, cell) for cell in cells]
    policies = _snapshot(conn, project, chosen) if snapshot else []
    return setup.runner.sql(
        "pgtap",
        where=result.where,
        cells=len(checks),
        tests=len(checks) + sum(1 + len(table["roles"]) for table in policies),
        extension_schema=EXTENSION_SCHEMA,
        setting=project.settings.identity.setting,
        helper_schema=setup.state.helper_schema,
        owner=setup.state.owner,
        app=setup.state.app,
        api_keys=setup.state.api_keys is not None,
        **_fixtures(setup),
        **_principals(result.principals, checks),
        snapshot=policies,
    )


def _chosen_tables(result: MatrixResult, tables: Sequence[str]) -> tuple[str, ...]:
    unknown = [table for table in tables if table not in result.tables]
    if unknown:
        raise UsageError(f"--table {unknown[0]}: not a table rlsctl test checks here ({', '.join(result.tables)})")
    return tuple(dict.fromkeys(tables)) or result.tables


def build_setup(conn: psycopg.Connection, project: Project) -> Setup:
    """The runner, fixture rows and declared state, as run_matrix makes them."""
    if project.fixtures is None:
        raise UsageError("the project declares no fixtures section: rlsctl test has nothing to run")
    schema = live_schema(conn, project, None)
    state = declare(project, schema)
    with conn.transaction(force_rollback=True):
        # Read under the test's search_path (pg_catalog only), as run_matrix does, so the
        # casts of the statements name the project's own types with their schema.
        statements.run(conn, "test_settings")
        runner = Runner(conn, project, catalog.read_schema(conn, project.schema_name), state)
    return Setup(runner, resolve(project.fixtures, schema), state)


def _fixtures(setup: Setup) -> dict[str, Any]:
    """The fixture inserts in load order, and FORCE lifted then restored around them (run.py `_load`)."""
    runner, resolved = setup.runner, setup.resolved
    managed = {table.name for table in setup.state.tables}
    loaded = sorted({row.table for row in resolved.rows if row.table in managed})
    return {
        "fixtures": [runner.insert_sql(runner.schema.table(row.table), row.values).rstrip() for row in resolved.rows],
        "force_off": runner.sql("tester_force", tables=loaded, force=False) if loaded else "",
        "force_on": runner.sql("tester_force", tables=loaded, force=True) if loaded else "",
    }


def check_of(setup: Setup, cell: Cell) -> Check:
    expected = "allowed" if cell.expected else "denied"
    description = f"{cell.table} {cell.command} {cell.case} as {cell.principal}: {expected}"
    # Trailing newlines only: the templates end their statements with one.
    return Check(cell.principal, cell.command, statement_of(setup, cell).rstrip(), expected, description)


def statement_of(setup: Setup, cell: Cell) -> str:
    """The statement rlsctl test ran for the cell (for a select: counting the cell's row alone)."""
    context = cell.context
    assert context is not None  # run_matrix gives every cell its context
    runner = setup.runner
    key = runner.key(cell.table).name
    if cell.command == "select":
        return runner.sql("pgtap_visible", select=runner.select_sql(cell.table, [context.row[key]]))
    if cell.command == "insert":
        candidate = _candidate(setup.resolved, cell)
        return runner.insert_sql(runner.schema.table(cell.table), with_self(candidate, context.principal))
    if cell.command == "update":
        return runner.update_sql(cell.table, _update_values(setup, cell), context.row[key])
    return runner.delete_sql(cell.table, context.row[key])


def _candidate(resolved: Resolved, cell: Cell) -> FixtureRow:
    for candidate in resolved.inserts:
        if candidate.table == cell.table and candidate.name == cell.case:
            return candidate
    raise UsageError(f"pgtap: no insert candidate {cell.case!r} for {cell.table}")


def _update_values(setup: Setup, cell: Cell) -> dict[str, Any]:
    """The values of the cell's update case: its name is "<case>:<row name>" (run.py `_contexts`)."""
    assert cell.context is not None
    suffix = ":" + _row_name(setup, cell.table, cell.context.row)
    for case, values in update_cases(setup.runner, cell.table, setup.resolved).items():
        if cell.case == case + suffix:
            return values
    raise UsageError(f"pgtap: no update case for {cell.table} {cell.case!r}")


def _row_name(setup: Setup, table: str, row: dict[str, Any]) -> str:
    key = setup.runner.key(table).name
    names = {str(fixture.values[key]): fixture.name for fixture in setup.resolved.rows_of(table)}
    return names.get(str(row[key]), str(row[key]))


def _principals(principals: Sequence[Principal], checks: list[Check]) -> dict[str, Any]:
    """The principals that have checks, how each is impersonated, and their checks in the
    matrix's order (a section each)."""
    rows: list[dict[str, str]] = []
    sections: list[dict[str, Any]] = []
    for principal in principals:
        mine = [check for check in checks if check.principal == principal.name]
        if mine:
            rows.append({"name": principal.name, "who": json.dumps(principal_json(principal), sort_keys=True)})
            sections.append({"name": principal.name, "description": principal.description, "checks": mine})
    return {"principals": rows, "sections": sections}


def _snapshot(conn: psycopg.Connection, project: Project, tables: Sequence[str]) -> list[dict[str, Any]]:
    """Each table's policies and their roles as the catalog has them now."""
    live = catalog.policies(conn, project.schema_name)
    found: list[dict[str, Any]] = []
    for table in tables:
        mine = [policy for policy in live if policy.table == table]
        # pgTAP lists a policy's roles from pg_roles: PUBLIC (no role) never shows up there.
        roles = [{"name": p.name, "roles": [r for r in p.roles if r != "PUBLIC"]} for p in mine]
        found.append({"name": table, "policies": sorted(p.name for p in mine), "roles": roles})
    return found


__all__ = ["Check", "Setup", "build_setup", "check_of", "statement_of", "to_pgtap"]
