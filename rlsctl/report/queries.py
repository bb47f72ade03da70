"""The report's own catalog queries: one plain `.sql` file each under rlsctl/report/sql/, values bound.

What the report can read through the library (catalog objects, lint, drift, keys, retention, the
audit chain) it reads there; these files hold only what no other command needs: effective
privileges, PUBLIC's privileges, the roles that bypass RLS, server settings and statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from rlsctl.declare.audit_spec import AuditSpec
from rlsctl.pg import statements
from rlsctl.pg.templates import environment

SQL_DIR = Path(__file__).resolve().parent / "sql"
_STATEMENTS = statements.Folder(SQL_DIR)


def query_text(name: str) -> str:
    return _STATEMENTS.text(name)


def fetch(conn: psycopg.Connection, name: str, /, **params: Any) -> list[dict[str, Any]]:
    """Run rlsctl/report/sql/<name>.sql with bound parameters; rows as dicts."""
    return _STATEMENTS.run(conn, name, **params)


def operations_sql(spec: AuditSpec, schema: str) -> bytes:
    """The latest of each of rlsctl's own operations in the audit log (its table and columns are
    the project's: rendered through the templates' quoting path, never formatted by hand)."""
    template = environment().from_string((SQL_DIR / "operations.sql.j2").read_text(encoding="utf-8"))
    return template.render(log=spec.log, schema=schema).encode()
