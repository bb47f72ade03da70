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


def execute(conn: psycopg.Connection, sql: str | bytes, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Execute `sql` with bound parameters; rows as dicts (empty if none)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params or None)
        return list(cur.fetchall()) if cur.description else []


class Folder:
    """A folder of `.sql` statement files, each read once; values always bound, never formatted in.
    The packages that keep their own statements (explain, testing) run them through one of these."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.text = cache(self._read)

    def _read(self, name: str) -> str:
        return (self.directory / f"{name}.sql").read_text(encoding="utf-8")

    def run(self, conn: psycopg.Connection, name: str, /, **params: Any) -> list[dict[str, Any]]:
        """Execute `name`.sql with bound parameters; rows as dicts (empty if none)."""
        return execute(conn, self.text(name), params)


_OWN = Folder(_DIR)


def text(name: str) -> str:
    return _OWN.text(name)


def run(conn: psycopg.Connection, statement: str, /, **params: Any) -> list[dict[str, Any]]:
    """Execute the statement file `statement` with bound parameters; rows as dicts (empty if none)."""
    return _OWN.run(conn, statement, **params)
