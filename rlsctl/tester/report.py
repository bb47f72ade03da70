"""The access matrix as people and CI read it: a table, JSON, or JUnit XML."""

from __future__ import annotations

import json
from collections import defaultdict
from xml.etree import ElementTree as ET

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rlsctl.tester.run import COMMANDS, Cell, MatrixResult

LETTER = {"select": "S", "insert": "I", "update": "U", "delete": "D"}


def _grouped(result: MatrixResult) -> dict[tuple[str, str, str], list[Cell]]:
    groups: dict[tuple[str, str, str], list[Cell]] = defaultdict(list)
    for cell in result.cells:
        groups[(cell.table, cell.principal, cell.command)].append(cell)
    return groups


def _summary_cell(cells: list[Cell]) -> str:
    """`allowed/tried`, green when every case matches, red with ✗ otherwise."""
    if not cells:
        return "[dim]·[/]"
    allowed = sum(1 for cell in cells if cell.actual.allowed)
    text = f"{allowed}/{len(cells)}"
    if all(cell.ok for cell in cells):
        return f"[green]{text}[/]" if allowed else f"[dim]{text}[/]"
    return f"[bold red]✗ {text}[/]"


def print_text(result: MatrixResult, console: Console) -> None:
    groups = _grouped(result)
    for table in result.tables:
        grid = Table(title=f"{table}", title_justify="left", show_edge=False, pad_edge=False)
        grid.add_column("principal")
        for command in COMMANDS:
            grid.add_column(command.upper(), justify="right")
        for principal in result.principals:
            grid.add_row(
                escape(principal.name),
                *(_summary_cell(groups.get((table, principal.name, command), [])) for command in COMMANDS),
            )
        console.print(grid)
    console.print(
        "[dim]cells show allowed/tried per principal and command; every case is compared with its expectation[/]"
    )
    failures = result.failures
    for cell in failures:
        expected = "allowed" if cell.expected else "denied"
        console.print(
            f"[red]MISMATCH[/] {escape(cell.table)} {cell.command.upper()} {escape(cell.case)} as "
            f"{escape(cell.principal)}: expected {expected} ({escape(cell.expected_detail)}), "
            f"got {escape(cell.actual.detail)}"
        )
    status = "[green]all cells as expected[/]" if not failures else f"[bold red]{len(failures)} mismatching cells[/]"
    console.print(f"{escape(result.where)}: {len(result.cells)} cells, {status}")


def to_json(result: MatrixResult) -> str:
    data = {
        "database": result.where,
        "summary": {"cells": len(result.cells), "mismatches": len(result.failures)},
        "principals": [
            {"name": p.name, "role": p.role, "has_identity": p.user_id is not None} for p in result.principals
        ],
        "cells": [
            {
                "table": cell.table,
                "command": cell.command,
                "case": cell.case,
                "principal": cell.principal,
                "expected": "allowed" if cell.expected else "denied",
                "expected_detail": cell.expected_detail,
                "actual": "allowed" if cell.actual.allowed else "denied",
                "actual_detail": cell.actual.detail,
                "ok": cell.ok,
            }
            for cell in result.cells
        ],
    }
    return json.dumps(data, indent=2, sort_keys=True)


def _mismatch(cell: Cell) -> str:
    expected = "allowed" if cell.expected else "denied"
    return f"{cell.case}: expected {expected} ({cell.expected_detail}), got {cell.actual.detail}"


def to_junit(result: MatrixResult) -> str:
    """One test suite per table, one test case per principal and command."""
    groups = _grouped(result)
    root = ET.Element(
        "testsuites",
        name="rlsctl access matrix",
        tests=str(len(groups)),
        failures=str(sum(1 for cells in groups.values() if not all(c.ok for c in cells))),
    )
    for table in result.tables:
        keys = [key for key in groups if key[0] == table]
        suite = ET.SubElement(
            root,
            "testsuite",
            name=table,
            tests=str(len(keys)),
            failures=str(sum(1 for key in keys if not all(c.ok for c in groups[key]))),
        )
        for _, principal, command in sorted(keys, key=lambda k: (k[1], COMMANDS.index(k[2]))):
            cells = groups[(table, principal, command)]
            case = ET.SubElement(suite, "testcase", classname=f"rlsctl.{table}", name=f"{principal} {command.upper()}")
            bad = [cell for cell in cells if not cell.ok]
            if bad:
                failure = ET.SubElement(case, "failure", message=f"{len(bad)} of {len(cells)} cases differ")
                failure.text = "\n".join(_mismatch(c) for c in bad)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
