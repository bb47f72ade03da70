"""`rlsctl plan` and `rlsctl drift`: the difference, read without changing anything.

The plan is computed exactly as apply computes it, in a REPEATABLE READ
transaction that is rolled back (the policy probe writes only to pg_temp),
and without the advisory lock: reading never waits for an apply.
"""

from __future__ import annotations

import psycopg
from psycopg import IsolationLevel

from rlsctl.change.apply import make_plan
from rlsctl.change.plan import Plan
from rlsctl.policy.project import Project


def read_plan(conn: psycopg.Connection, project: Project, where: str, phase: int | None) -> Plan:
    previous = conn.isolation_level
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    try:
        with conn.transaction(force_rollback=True):
            return make_plan(conn, project, where, phase)
    finally:
        conn.isolation_level = previous


def drift_state(action: str) -> str:
    """How `rlsctl drift` (and the compliance report) words an operation: what apply would create
    or grant is missing, what it would drop, revoke or leave to a DBA is extra; the rest changed."""
    if action in ("create", "grant"):
        return "missing"
    if action in ("drop", "revoke", "needs_dba"):
        return "extra"
    return "changed"
