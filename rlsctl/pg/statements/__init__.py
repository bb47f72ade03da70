"""Operational statements rlsctl runs (locks, settings, bookkeeping), one `.sql` file each.

Kept as files so every statement rlsctl sends is reviewable in one place;
values are always bound parameters, never formatted into the text.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

_DIR = Path(__file__).resolve().parent


@cache
def text(name: str) -> str:
    return (_DIR / f"{name}.sql").read_text(encoding="utf-8")


def run(conn: psycopg.Connection, statement: str, **params: Any) -> list[dict[str, Any]]:
    """Execute the statement file `statement` with bound parameters; rows as dicts (empty if none)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(text(statement), params or None)
        return list(cur.fetchall()) if cur.description else []
