"""Legal holds: set and lift them, and read what is in force, what changed and what ran.

A hold stops retention from deleting a table's rows (tenant None) or one
tenant's rows of a table. Holds are set and lifted only through
rlsctl.retention_hold() and retention_release() (objects/retention_bodies.sql.j2):
they refuse anyone who is not a member of the table's hold role, and record
every change with its author, time and reason. The login running these calls
is the author: rlsctl acts as nobody else.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from rlsctl.errors import UsageError
from rlsctl.retention.session import Retention


@dataclass(frozen=True)
class HoldChange:
    table: str
    tenant: str | None
    changed: bool  # False: there was nothing to change (already held, or no such hold)


@dataclass(frozen=True)
class StatusRow:
    kind: str  # hold (in force), change (of a hold), run
    table: str
    tenant: str | None
    at: dt.datetime
    actor: str
    detail: str | None  # the hold's reason; "hold: reason" / "release: reason"; why a run kept rows
    removed: int | None = None
    seconds: float | None = None
    cutoff: str | None = None
    dry_run: bool | None = None
    via: str | None = None  # a run: rlsctl, pg_cron...; a change: the role the login had set


def change(
    retention: Retention, action: str, tables: tuple[str, ...], tenant: str | None, reason: str
) -> list[HoldChange]:
    """Hold (`action` "hold") or release the `tables` (all of them when empty), or one tenant of them."""
    if not reason.strip():
        raise UsageError("a hold change needs a reason (--reason)")
    found = []
    for table in retention.tables(tables):
        rows = retention.fetch(
            "retention_hold_change", {"table": table.table, "tenant": tenant, "reason": reason}, action=action
        )
        found.append(HoldChange(table.table, tenant, bool(rows[0][0])))
    return found


def status(retention: Retention, limit: int = 20) -> list[StatusRow]:
    """The holds in force, and the latest `limit` hold changes and runs."""
    retention.tables()  # a project without retention is told so
    rows = retention.fetch("retention_status", {"limit": limit})
    return [StatusRow(*row) for row in rows]
