"""The policy tests of section 3: read from a `rlsctl test --format json` document (CI's artifact,
or a run made now, written the same way by `rlsctl.tester.report.to_json`) and drawn as one grid
per table: principals down, commands across, allowed/tried in each cell."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import psycopg

from rlsctl.errors import UsageError
from rlsctl.policy.project import Project
from rlsctl.report.model import COMMANDS, Grid, GridCell, GridRow, TestsSection
from rlsctl.tester.report import to_json
from rlsctl.tester.run import run_matrix

SHOWN_PROBLEMS = 20  # the first mismatches and violations are named; the grid shows where the rest are
CELL_KEYS = ("table", "command", "case", "principal", "actual", "ok")


def run_now(conn: psycopg.Connection, project: Project, where: str) -> TestsSection:
    """Run the matrix on this database (one transaction, rolled back: docs/testing.md says what it locks)."""
    return from_json(to_json(run_matrix(conn, project, where)), "run now")


def from_json(text: str, where: str, source: str | None = None) -> TestsSection:
    """A `rlsctl test --format json` document; anything else is refused (exit 2) naming `where`.
    `source`: how the report names it (default `where`)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where}: not JSON ({exc.msg}, line {exc.lineno})") from None
    cells = _cells(data, where)
    summary = data.get("summary") if isinstance(data.get("summary"), dict) else {}
    violations = [v for v in data.get("violations") or [] if isinstance(v, dict)]
    cases = [c for c in data.get("case_failures") or [] if isinstance(c, dict)]
    principals = [p["name"] for p in data.get("principals") or [] if isinstance(p, dict) and "name" in p]
    mismatching = [cell for cell in cells if not cell["ok"]]
    return TestsSection(
        source=source or where,
        database=str(data.get("database") or ""),
        cells=len(cells),
        judged=sum(1 for cell in cells if cell.get("expected") is not None),
        mismatches=len(mismatching),
        invariant_violations=max(len(violations), _count(summary, "invariant_violations")),
        failing_cases=max(len(cases), _count(summary, "failing_cases")),
        notices=tuple(str(notice) for notice in data.get("notices") or []),
        problems=_problems(mismatching, violations, cases),
        grids=_grids(cells, principals),
    )


def _cells(data: Any, source: str) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise UsageError(f"{source}: not the output of `rlsctl test --format json` (no list of cells)")
    for number, cell in enumerate(data["cells"]):
        if not isinstance(cell, dict) or any(key not in cell for key in CELL_KEYS):
            raise UsageError(f"{source}: cell {number} is not a cell of `rlsctl test --format json`")
        if cell["command"] not in COMMANDS or not isinstance(cell["ok"], bool):
            raise UsageError(f"{source}: cell {number} has an unknown command or outcome")
    return data["cells"]


def _count(summary: dict[str, Any], key: str) -> int:
    value = summary.get(key, 0)
    return value if isinstance(value, int) else 0


def _problems(
    mismatching: list[dict[str, Any]], violations: list[dict[str, Any]], cases: list[dict[str, Any]]
) -> tuple[str, ...]:
    lines = [
        f"{c['table']} {c['command'].upper()} {c['case']} as {c['principal']}: expected {c.get('expected')}, "
        f"database gave {c.get('actual_detail') or c['actual']}"
        for c in mismatching
    ]
    lines += [
        f"invariant {v.get('invariant')}: {v.get('table')} {str(v.get('command', '')).upper()} {v.get('case')} "
        f"as {v.get('principal')}: {v.get('detail')}"
        for v in violations
    ]
    lines += [f"case {c.get('name')} ({c.get('where')}): {c.get('detail')}" for c in cases]
    if len(lines) > SHOWN_PROBLEMS:
        lines = [*lines[:SHOWN_PROBLEMS], f"and {len(lines) - SHOWN_PROBLEMS} more"]
    return tuple(lines)


def _grids(cells: list[dict[str, Any]], principals: list[str]) -> tuple[Grid, ...]:
    """allowed/tried per (table, principal, command); principals in the order the project declares them
    (the document's list), any the list lacks after them by name."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for cell in cells:
        groups[(cell["table"], cell["principal"], cell["command"])].append(cell)
    order = list(dict.fromkeys([*principals, *sorted({cell["principal"] for cell in cells})]))
    grids = []
    for table in sorted({cell["table"] for cell in cells}):
        present = {principal for (t, principal, _) in groups if t == table}
        rows = tuple(
            GridRow(
                principal, tuple(_cell(command, groups.get((table, principal, command), [])) for command in COMMANDS)
            )
            for principal in order
            if principal in present
        )
        grids.append(Grid(table, rows))
    return tuple(grids)


def _cell(command: str, cases: list[dict[str, Any]]) -> GridCell:
    return GridCell(
        command=command,
        tried=len(cases),
        allowed=sum(1 for case in cases if case["actual"] == "allowed"),
        mismatches=sum(1 for case in cases if not case["ok"]),
        unjudged=sum(1 for case in cases if case.get("expected") is None),
    )
