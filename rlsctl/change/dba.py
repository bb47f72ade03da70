"""`rlsctl plan --dba-script FILE`: the SQL for what this session may not do itself.

On a managed host nobody is superuser, and some differences can only be removed by a
role apply cannot act as: a grant made by the platform's admin, EXECUTE on a function
the bootstrap superuser owns, an extension in a schema others may create objects in.
apply reports them; this writes them down as statements a DBA can review and run, each
after a comment saying what it repairs and why apply could not (and, for what the
project acknowledged, the reason it gave). Code others put on the tables is named in a
comment only: what to drop is the DBA's call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlsctl.change import diff as d
from rlsctl.change.plan import Plan, render_operations
from rlsctl.pg.templates import render_template
from rlsctl.state.objects import Extension, FunctionGrant, Role, SchemaPrivilege, UndeclaredTable, UntrustedCode


@dataclass(frozen=True)
class DbaItem:
    object: str
    why: str
    statements: tuple[str, ...]  # empty: a decision the DBA makes (named in the comment)
    acknowledged: str | None = None


def dba_items(plan: Plan, templates: Path | None) -> list[DbaItem]:
    found: list[DbaItem] = []
    for op in plan.operations:
        fixes = _fixes(op, plan.state.keys, plan.state.schema)
        moved = fixes[0].new if fixes and isinstance(op.old, Extension) and fixes[0].action == "alter" else None
        if isinstance(moved, Extension) and moved.schema not in plan.live_schemas:
            # The schema it belongs in is apply's to create (with rlsctl's owner): the DBA drops the
            # extension instead (IF EXISTS, no CASCADE: anything built on it makes this fail), and
            # apply creates it there. The login that created a trusted extension may drop it too.
            fixes = [d.Operation("drop", op.old, None, op.effect)]
        if fixes is None:
            continue
        rendered = tuple(s.sql for s in render_operations(fixes, plan.state, templates))
        found.append(DbaItem(op.key, op.detail, rendered, plan.acknowledgement(op)))
    return found


def _fixes(op: d.Operation, keys: str | None, project_schema: str) -> list[d.Operation] | None:
    """The operations a DBA runs for `op`; [] when only a comment can say it; None when apply
    does it."""
    if op.action == "needs_dba":
        if isinstance(op.obj, UntrustedCode | UndeclaredTable):
            return []  # what to drop or revoke is the DBA's (and the team's) call
        return [d.Operation("grant" if op.new is not None else "revoke", op.old, op.new, op.effect)]
    if op.action != "refuse":
        return None
    if isinstance(op.old, Extension) and op.old.writers and _revoking_helps(op.old, project_schema):
        # The platform's extension stays where it is: CREATE on its schema goes instead, and
        # the keys role, which will call it there, gets USAGE (the next plan would ask for it).
        fixes = [d.Operation("revoke", SchemaPrivilege(op.old.schema, who, "CREATE"), None, "narrows")
                 for who in op.old.writers]  # fmt: skip
        if keys is not None:
            fixes.append(d.Operation("grant", None, SchemaPrivilege(op.old.schema, keys, "USAGE"), "widens"))
        return fixes
    if isinstance(op.old, Extension | Role) and op.new is not None:
        return [d.Operation("alter", op.old, op.new, op.effect)]
    if isinstance(op.new, FunctionGrant | SchemaPrivilege) and op.old is None:
        return [d.Operation("grant", None, op.new, op.effect)]
    return []


def _revoking_helps(extension: Extension, project_schema: str) -> bool:
    """Taking CREATE away makes the extension's schema safe, unless the session owns that schema
    (RDS's `public`, through pg_database_owner: no REVOKE removes an owner's rights) or it is the
    project's schema (the owner role creates the tables there): then the DBA moves the extension."""
    return not extension.owner_is_session and extension.schema != project_schema


def dba_script(plan: Plan, where: str, templates: Path | None) -> str:
    return render_template(
        "ops/dba_script.sql.j2", templates, where=where, project=plan.state.project_name,
        items=dba_items(plan, templates),
    )  # fmt: skip
