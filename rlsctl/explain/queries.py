"""rlsctl explain's own statements: `.sql` files with bound parameters (sql/), and templates for
the ones that name the project's tables and columns (templates/explain/), rendered through
rlsctl's quoting filters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from rlsctl.pg import statements
from rlsctl.pg.templates import render_template

_HERE = Path(__file__).resolve().parent
_STATEMENTS = statements.Folder(_HERE / "sql")
TEMPLATES = _HERE / "templates"


def run(conn: psycopg.Connection, name: str, /, **params: Any) -> list[dict[str, Any]]:
    """Execute sql/`name`.sql with bound parameters; rows as dicts (empty if none)."""
    return _STATEMENTS.run(conn, name, **params)


def render(name: str, **context: Any) -> str:
    """templates/explain/`name`.sql.j2, rendered (every name and value through ident/literal)."""
    return render_template(f"explain/{name}.sql.j2", TEMPLATES, **context)


def run_template(conn: psycopg.Connection, name: str, context: dict[str, Any], **params: Any) -> list[dict[str, Any]]:
    """Render templates/explain/`name`.sql.j2 with `context` and run it with bound `params`."""
    return statements.execute(conn, render(name, **context).encode(), params)
