"""rlsctl explain's own statements: `.sql` files with bound parameters (sql/), and templates for
the ones that name the project's tables and columns (templates/explain/), rendered through
rlsctl's quoting filters."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from rlsctl.pg.templates import render_template

_HERE = Path(__file__).resolve().parent
_SQL = _HERE / "sql"
TEMPLATES = _HERE / "templates"


@cache
def _text(name: str) -> str:
    return (_SQL / f"{name}.sql").read_text(encoding="utf-8")


def run(conn: psycopg.Connection, name: str, **params: Any) -> list[dict[str, Any]]:
    """Execute sql/`name`.sql with bound parameters; rows as dicts (empty if none)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_text(name), params or None)
        return list(cur.fetchall()) if cur.description else []


def render(name: str, **context: Any) -> str:
    """templates/explain/`name`.sql.j2, rendered (every name and value through ident/literal)."""
    return render_template(f"explain/{name}.sql.j2", TEMPLATES, **context)


def run_template(conn: psycopg.Connection, name: str, context: dict[str, Any], **params: Any) -> list[dict[str, Any]]:
    """Render templates/explain/`name`.sql.j2 with `context` and run it with bound `params`."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(render(name, **context).encode(), params or None)
        return list(cur.fetchall()) if cur.description else []
