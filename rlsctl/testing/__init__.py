"""rlsctl's pytest plugin: test a project's row-level security from your own pytest suite.

Installing rlsctl registers `rlsctl.testing.plugin` with pytest (the `pytest11` entry point), so
this package is imported by every pytest session on the machine. It and the plugin module import
only the standard library and pytest; the database code (psycopg, jinja2, pglast) is imported by
the `rlsctl_db` fixture when a test asks for it. docs/pytest-plugin.md shows the whole API.
"""

from __future__ import annotations

from rlsctl.testing.ops import Delete, Insert, Operation, Select, Update

__all__ = ["Delete", "Insert", "Operation", "Select", "Update"]
