"""The access matrix as people and CI read it: a table, JSON, or JUnit XML; and verify's findings."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from xml.etree import ElementTree as ET

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rlsctl.tester.run import COMMANDS, Cell, MatrixResult
from rlsctl.tester.verify import VerifyResult
from rlsctl.tester.verify import describe as describe_world

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
        "[dim]cells show allowed/tried per principal and command; each case is judged by the expectations "
        "(expectations/*.yaml) and every cell by the invariants[/]"
    )
    for notice in (*result.notices, *refused_by_errors(result)):
        console.print(f"[bold yellow]NOTICE[/] {escape(notice)}")
    _print_coverage(result, console)
    failures = result.failures
    for cell in failures:
        console.print(f"[red]MISMATCH[/] {escape(describe(cell))}")
    for violation in result.violations:
        console.print(
            f"[red]INVARIANT[/] {escape(violation.invariant)}: {escape(violation.table)} "
            f"{violation.command.upper()} {escape(violation.case)} as {escape(violation.principal)}: "
            f"{escape(violation.detail)}"
        )
    for case in result.case_failures:
        console.print(f"[red]CASE[/] {escape(case.name)} ({escape(case.where)}): {escape(case.detail)}")
    problems = len(failures) + len(result.violations) + len(result.case_failures)
    judged = sum(1 for cell in result.cells if cell.judged)
    status = (
        "[green]all cells as expected[/]" if not problems
        else f"[bold red]{len(failures)} mismatching cells, {len(result.violations)} invariant violations, "
        f"{len(result.case_failures)} failing cases[/]"
    )  # fmt: skip
    console.print(f"{escape(result.where)}: {len(result.cells)} cells ({judged} judged by expectations), {status}")


def refused_by_errors(result: MatrixResult) -> list[str]:
    """Cells the database refused with a privilege error on another object than the cell's table: a
    table or function the policies (or their helpers) read that the reading role may not. Such a
    cell counts as denied, which an expectation of "denied" accepts: it is no evidence of a policy."""
    found: Counter[str] = Counter()
    for cell in result.cells:
        detail = cell.actual.detail
        if detail.startswith("error: permission denied for ") and not detail.endswith(f" {cell.table}"):
            found[detail.removeprefix("error: ")] += 1
    return [
        f"{count} cell{'s were' if count != 1 else ' was'} refused by an error, not by a policy: {detail} (is "
        "every table the policies read, the tenancy tables included, declared in the policy files?)"
        for detail, count in sorted(found.items())
    ]


def describe(cell: Cell) -> str:
    """One mismatch: table, command, row, principal, what was expected, what the database did,
    and which of the role's policies let the row through."""
    expected = "allowed" if cell.expected else "denied"
    decided = (
        f"; policies that admitted it: {', '.join(cell.decided_by)}" if cell.decided_by
        else "; no policy of the role admitted it" if cell.actual.allowed is False else ""
    )  # fmt: skip
    return (
        f"{cell.table} {cell.command.upper()} {cell.case} as {cell.principal}: expected {expected}, "
        f"database gave {cell.actual.detail}{decided}"
    )


def _print_coverage(result: MatrixResult, console: Console) -> None:
    covered = result.coverage
    if covered is None:
        return
    console.print(f"[dim]{escape(covered.summary())}[/]")
    for policy in covered.uncovered_policies:
        console.print(f"[yellow]UNCOVERED[/] policy {escape(policy)}: no allowed cell went through it")
    for branch in covered.uncovered_branches:
        if branch.policy in covered.uncovered_policies:
            continue
        where = f"branch {branch.index} of {escape(branch.policy)} ({branch.part})"
        console.print(f"[yellow]UNCOVERED[/] {where}: {escape(branch.text)}")


def to_json(result: MatrixResult) -> str:
    data = {
        "database": result.where,
        "summary": {
            "cells": len(result.cells),
            "judged": sum(1 for cell in result.cells if cell.judged),
            "mismatches": len(result.failures),
            "invariant_violations": len(result.violations),
            "failing_cases": len(result.case_failures),
        },
        "notices": list(result.notices),
        "coverage": result.coverage.as_json() if result.coverage is not None else None,
        "violations": [vars(violation) for violation in result.violations],
        "case_failures": [vars(case) for case in result.case_failures],
        "principals": [
            {"name": p.name, "role": p.role, "has_identity": p.user_id is not None} for p in result.principals
        ],
        "cells": [
            {
                "table": cell.table,
                "command": cell.command,
                "case": cell.case,
                "principal": cell.principal,
                "expected": None if cell.expected is None else "allowed" if cell.expected else "denied",
                "expected_detail": cell.expected_detail,
                "decided_by": list(cell.decided_by),
                "actual": "allowed" if cell.actual.allowed else "denied",
                "actual_detail": cell.actual.detail,
                "ok": cell.ok,
            }
            for cell in result.cells
        ],
    }
    return json.dumps(data, indent=2, sort_keys=True)


def _mismatch(cell: Cell) -> str:
    return describe(cell)


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
    if result.violations or result.case_failures:
        suite = ET.SubElement(
            root, "testsuite", name="invariants and cases",
            tests=str(len(result.violations) + len(result.case_failures) or 1),
            failures=str(len(result.violations) + len(result.case_failures)),
        )  # fmt: skip
        for violation in result.violations:
            case = ET.SubElement(suite, "testcase", classname="rlsctl.invariants", name=violation.invariant)
            failure = ET.SubElement(case, "failure", message=violation.detail)
            failure.text = f"{violation.table} {violation.command} {violation.case} as {violation.principal}"
        for named in result.case_failures:
            case = ET.SubElement(suite, "testcase", classname="rlsctl.cases", name=named.name)
            ET.SubElement(case, "failure", message=named.detail).text = named.where
        root.set("failures", str(int(root.get("failures", "0")) + len(result.violations) + len(result.case_failures)))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


# -- rlsctl verify ---------------------------------------------------------------------------------


def print_verify(result: VerifyResult, console: Console) -> None:
    console.print(
        f"{result.worlds} worlds ({result.examples} explored), {result.cells} cells, {result.seconds:.1f}s"
        + (f"; {result.rejected} drawn worlds refused by the schema's constraints" if result.rejected else "")
    )
    for notice in result.notices:
        console.print(f"[bold yellow]NOTICE[/] {escape(notice)}")
    if not result.findings:
        console.print("[green]no finding[/]: every world held the invariants and the expectations")
        return
    assert result.minimal is not None
    world = escape(result.minimal_description or describe_world(result.minimal))
    console.print(f"[red]{len(result.findings)} findings[/] in the minimal failing world: {world}")
    for finding in result.findings:
        console.print(
            f"[red]{escape(finding.kind.upper() if finding.kind == 'expectation' else finding.kind)}[/] "
            f"{escape(finding.table)} {finding.command} {escape(finding.case)} as {escape(finding.principal)}: "
            f"{escape(finding.detail)}"
        )
    console.print("\n[bold]Reproduce the first in psql (rolled back):[/]")
    console.print(escape(result.findings[0].script), markup=False, highlight=False)


def verify_json(result: VerifyResult) -> str:
    data = {
        "summary": {"worlds": result.worlds, "explored": result.examples, "cells": result.cells,
                    "findings": len(result.findings), "seconds": round(result.seconds, 2),
                    "rejected_worlds": result.rejected},
        "notices": list(result.notices),
        "minimal_world": (result.minimal_description or describe_world(result.minimal))
        if result.minimal is not None
        else None,
        "findings": [
            {"kind": f.kind, "table": f.table, "command": f.command, "case": f.case, "principal": f.principal,
             "detail": f.detail, "sql": f.script}
            for f in result.findings
        ],
    }  # fmt: skip
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
