"""rlsctl's own operations in the audit log (docs/audit.md): migrate, apply, rollback, keys runs.

Each is written by `rlsctl.audit_record()` as `system:<job>`, in the transaction of the
change it records where there is one (so the record commits with the change, or not at
all), with the SHA-256 of the declared state (`state_digest`). Nothing is recorded where
the project declares no audit log, or before apply has made the recording function.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import psycopg

from rlsctl.change.plan import plan_for_empty
from rlsctl.declare.audit import RECORD_ARGS
from rlsctl.declare.state import DeclaredState
from rlsctl.errors import UsageError
from rlsctl.pg import statements
from rlsctl.pg.sql import qualified
from rlsctl.pg.templates import render_template


def state_digest(state: DeclaredState, templates: Path | None) -> str:
    """SHA-256 of the statements that build the declared state from nothing (what `rlsctl
    render` prints, without its comments): the same project, prefix and schema give the same."""
    rendered = "\n".join(plan_for_empty(state, templates).sql)
    return hashlib.sha256(rendered.encode("utf-8")).hexdigest()


def record_operation(
    conn: psycopg.Connection,
    state: DeclaredState,
    job: str,
    action: str,
    details: dict[str, Any],
    templates: Path | None,
) -> bool:
    """Write one `system:<job>` row; False when this database has nowhere to write it yet."""
    if state.audit is None or state.audit.log is None:
        return False
    signature = f"{qualified(state.helper_schema, 'audit_record')}({RECORD_ARGS})"
    found = statements.run(conn, "audit_recorder", signature=signature)[0]
    if not found["present"]:
        return False
    if not found["allowed"]:
        raise UsageError(
            f"this login may not record {job} in the audit log ({state.helper_schema}.audit_record): "
            "run rlsctl as a superuser or a member of the owner role (docs/audit.md)"
        )
    sql = render_template("ops/audit_record.sql.j2", templates, helper_schema=state.helper_schema)
    params = {
        "job": job,
        "action": action,
        "resource_type": "rlsctl",
        "resource_id": state.project_name,
        "details": json.dumps(details, sort_keys=True),
    }
    conn.execute(sql.encode(), params)
    return True
