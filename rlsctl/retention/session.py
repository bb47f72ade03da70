"""One project's retention on one connection: the session every `rlsctl retention` command works in.

`Retention` knows the tables that declare `retention:` and exist, and renders
the statements that call retention's functions in the helper schema
(templates/ops/retention_*.sql.j2). The commands live beside it: `run`
(deleting expired rows in batches), `holds` (legal holds), `schedule`
(pg_cron jobs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from rlsctl.change.apply import live_schema
from rlsctl.declare.compile import declare
from rlsctl.declare.state import DeclaredState, RetentionSpec, RetentionTable
from rlsctl.declare.validate import validate
from rlsctl.errors import UsageError
from rlsctl.pg.templates import render_template
from rlsctl.policy.project import Project


class Retention:
    """Retention of one project in one database (autocommit: every batch commits on its own)."""

    def __init__(self, conn: psycopg.Connection, project: Project, where: str) -> None:
        self.conn = conn
        self.project = project
        self.where = where
        schema = live_schema(conn, project, None)
        validate(project, project.migrated_schema().union(schema))
        self.state: DeclaredState = declare(project, schema)
        self.templates: Path = project.root / "templates"

    @property
    def spec(self) -> RetentionSpec:
        if self.state.retention is None:
            raise UsageError(f"{self.where}: no table of the project declares retention (tables: <T>: retention:)")
        return self.state.retention

    def tables(self, selected: tuple[str, ...] = ()) -> list[RetentionTable]:
        """The tables declaring retention that exist here, or the `selected` ones of them."""
        declared = {table.table: table for table in self.spec.tables}
        for name in selected:
            if name not in declared:
                known = ", ".join(sorted(declared)) or "none"
                raise UsageError(f"{self.where}: {name} declares no retention here (tables with retention: {known})")
        return [declared[name] for name in dict.fromkeys(selected)] if selected else list(declared.values())

    def sql(self, name: str, **context: Any) -> bytes:
        return render_template(
            f"ops/{name}.sql.j2",
            self.templates,
            schema=self.state.schema,
            helper_schema=self.state.helper_schema,
            **context,
        ).encode()

    def fetch(self, name: str, params: dict[str, Any] | None = None, **context: Any) -> list[tuple[Any, ...]]:
        """Run one of retention's statements (its own transaction on the autocommit connection)."""
        try:
            return self.conn.execute(self.sql(name, **context), params).fetchall()
        except pgerrors.InsufficientPrivilege as exc:
            raise UsageError(f"{self.where}: {first_line(exc)}") from None
        except pgerrors.UndefinedFunction as exc:
            raise UsageError(
                f"{self.where}: {first_line(exc)}: retention's functions are not there; run rlsctl apply first"
            ) from None


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
