"""The plugin's own statements: `.sql` files with bound parameters (sql/), and templates for the
ones that name tables and columns (templates/testing/), rendered through rlsctl's quoting filters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from rlsctl.pg import statements
from rlsctl.pg.templates import render_template

_HERE = Path(__file__).resolve().parent
_STATEMENTS = statements.Folder(_HERE / "sql")
# Searched before rlsctl's own templates, so ops/*.sql.j2 render from here too.
TEMPLATES = _HERE / "templates"


def run(conn: psycopg.Connection, name: str, /, **params: Any) -> list[dict[str, Any]]:
    """Execute sql/`name`.sql with bound parameters; rows as dicts (empty if none)."""
    return _STATEMENTS.run(conn, name, **params)


def render(name: str, **context: Any) -> bytes:
    """templates/testing/`name`.sql.j2, rendered (every name and value through ident/literal)."""
    return render_template(f"testing/{name}.sql.j2", TEMPLATES, **context).encode()
