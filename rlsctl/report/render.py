"""The report as JSON (the document report.schema.json describes), Markdown for a pull request, or one
self-contained HTML file (inline CSS and SVG, no script, printable on A4), and the exit status
`--fail-on` asks for.

Both text formats are Jinja2 templates under rlsctl/report/templates/; the HTML environment
escapes every value (autoescape), the Markdown one escapes through the `md` and `code` filters.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from rlsctl.report.chart import human, stacked_bars
from rlsctl.report.model import COMMANDS, SECTIONS, STATUSES, AccessSection, GridCell, Report, as_document

TEMPLATES = Path(__file__).resolve().parent / "templates"
FAIL_ON = ("fail", "warn", "never")  # --fail-on: the status from which the exit status is 1
SYMBOL = {"pass": "✓", "warn": "!", "fail": "✗"}
MD_STATUS = {"pass": "✅ pass", "warn": "⚠️ warn", "fail": "❌ fail"}
CHECK_SYMBOL = {"pass": "✓", "fail": "✗", "review": "?", "unknown": "-", "n/a": "·"}
MD_BAR = 24  # characters of the longest Markdown bar
BACKTICKS = re.compile("`+")


def schema_path() -> Path:
    """The JSON Schema of `rlsctl report --format json`, shipped in the package."""
    return Path(__file__).resolve().parent / "report.schema.json"


def exit_status(report: Report, fail_on: str) -> int:
    """1 when a control is at or above `fail_on` (fail, or warn and fail); 0 otherwise, and always for never."""
    if fail_on == "never":
        return 0
    threshold = STATUSES.index(fail_on)
    return 1 if any(STATUSES.index(control.status) >= threshold for control in report.controls) else 0


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(as_document(report), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    template = _environment(fmt).get_template(f"report.{fmt}.j2")
    return template.render(r=report, v=_view(report), sections=SECTIONS, commands=COMMANDS)


@cache
def _environment(fmt: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(md=md, code=code, size=human, cell=grid_cell, yesno=yesno)
    env.globals.update(SYMBOL=SYMBOL, MD_STATUS=MD_STATUS, CHECK_SYMBOL=CHECK_SYMBOL)
    return env


# -- filters ------------------------------------------------------------------------------------------


def md(value: object) -> str:
    """Text for Markdown prose and table cells: no markup, no HTML, no line breaks."""
    text = " ".join(str(value).split())
    for char in "\\`*_[]<>|#":
        text = text.replace(char, "\\" + char)
    return text


def code(value: object) -> str:
    """A Markdown code span that survives a table cell: fenced with more backticks than it holds."""
    text = " ".join(str(value).split()).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def yesno(value: bool | None) -> str:
    return "—" if value is None else "yes" if value else "no"


def grid_cell(cell: GridCell) -> dict[str, str]:
    """How one grid cell reads: a symbol (so it reads in black and white), allowed/tried, and a class."""
    if not cell.tried:
        return {"symbol": "·", "text": "", "class": "none", "title": "not tried"}
    text = f"{cell.allowed}/{cell.tried}"
    if cell.mismatches:
        return {"symbol": "✗", "text": text, "class": "bad", "title": f"{cell.mismatches} not as expected"}
    if cell.unjudged:
        return {"symbol": "?", "text": text, "class": "unjudged", "title": f"{cell.unjudged} not judged"}
    kind = "ok" if cell.allowed else "denied"
    return {"symbol": "✓", "text": text, "class": kind, "title": "as expected"}


# -- what the templates show, prepared --------------------------------------------------------------------


def _view(report: Report) -> dict[str, Any]:
    counts = {status: sum(1 for c in report.controls if c.status == status) for status in STATUSES}
    stats = report.monitoring.tables
    largest = max((t.total_bytes for t in stats), default=0) or 1
    return {
        "counts": counts,
        "privileges": privilege_groups(report.access),
        "chart": stacked_bars(
            "Size per table (table and TOAST, indexes)",
            [(t.table, t.total_bytes - t.index_bytes, t.index_bytes) for t in stats],
            ("table and TOAST", "indexes"),
        )
        if stats
        else None,
        "bars": {t.table: "█" * max(1, round(MD_BAR * t.total_bytes / largest)) for t in stats},
        "notes": {anchor: report.unreadable_in(anchor) for anchor, _ in SECTIONS},
        "md_notes": {anchor: _md_notes(report, anchor) for anchor, _ in SECTIONS},
        "titles": dict(SECTIONS),
    }


def _md_notes(report: Report, anchor: str) -> str:
    """What a section could not read, as a Markdown quote under its heading ("" when nothing)."""
    notes = report.unreadable_in(anchor)
    if not notes:
        return ""
    lines = [f"\n\n> **Could not read** (as {md(report.identity.connected_as)}):"]
    lines += [f"> - {md(note.what)}: {md(note.reason)}" for note in notes]
    return "\n".join(lines)


def privilege_groups(section: AccessSection) -> dict[str, list[dict[str, str]]]:
    """Per table, one line per (role, via): "SELECT, UPDATE (name, email)"."""
    grouped: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for p in section.privileges:
        text = p.privilege if p.columns is None else f"{p.privilege} ({', '.join(p.columns)})"
        grouped[(p.table, p.role, p.via)].append(text)
    tables: dict[str, list[dict[str, str]]] = defaultdict(list)
    for (table, role, via), privileges in grouped.items():
        tables[table].append({"role": role, "via": via, "privileges": ", ".join(privileges)})
    return {table: sorted(rows, key=lambda row: (row["role"], row["via"])) for table, rows in sorted(tables.items())}
