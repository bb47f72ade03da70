"""Whether a database was applied with the role prefix the tests use, checked before any role is
impersonated.

Roles are cluster-wide. A database applied with another prefix than the one in use (a missing or
wrong --rlsctl-role-prefix) has roles of other names, and the roles the prefix in use names may
not exist, or may belong to another deployment on the same server. Switching into those would
act as a stranger's roles, and fail deep inside a test ("must be owner of table ..."). So the
owner role must own every managed table of this database (by name, as `rlsctl apply` makes it
with ALTER TABLE ... OWNER TO), and the application role must exist; otherwise the plugin stops
with the prefix in use, what it expected and what to change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from rlsctl.declare.state import DeclaredState
from rlsctl.errors import UsageError
from rlsctl.policy.project import Project
from rlsctl.testing import queries

SHOWN_TABLES = 3  # tables a message names for one owner; the others are counted


def check(conn: psycopg.Connection, project: Project, state: DeclaredState, where: str) -> None:
    """Raise a UsageError unless `state.owner` owns every managed table and `state.app` exists."""
    tables = [table.name for table in state.tables]
    owners = queries.run(conn, "table_owners", schema=project.schema_name, tables=tables, owner=state.owner)
    existing = {row["name"] for row in queries.run(conn, "existing_roles", roles=[state.owner, state.app])}
    problem = _problem(state, owners, existing)
    if problem is None:
        return
    raise UsageError(
        f"{where}: {_prefix_in_use(project)}: the plugin expected the owner role {state.owner} to own the "
        f"project's tables and the application role {state.app} to exist, but {problem}. It never acts as "
        f"roles that do not own this database's tables (on a shared server they may be another deployment's): "
        f"{_remedy(project, owners)}"
    )


def _problem(state: DeclaredState, owners: Sequence[dict[str, Any]], existing: set[str]) -> str | None:
    if state.owner not in existing:
        foreign = _owned_by(owners)
        return f"{state.owner} does not exist" + (f" ({foreign})" if foreign else "")
    foreign = _owned_by(owners)
    if foreign:
        return foreign
    if state.app not in existing:
        return f"{state.app} does not exist"
    return None


def _owned_by(owners: Sequence[dict[str, Any]]) -> str:
    """'"A", "B" and 3 more are owned by x; "C" is owned by y' for the tables the owner role does not own."""
    by_owner: dict[str, list[str]] = {}
    for row in owners:
        if not row["owned"]:
            by_owner.setdefault(row["owner"], []).append(row["table"])
    return "; ".join(f"{_tables(tables)} owned by {owner}" for owner, tables in by_owner.items())


def _tables(names: list[str]) -> str:
    shown = ", ".join(f'"{name}"' for name in names[:SHOWN_TABLES])
    more = len(names) - SHOWN_TABLES
    if more > 0:
        return f"{shown} and {more} more are"
    return f"{shown} is" if len(names) == 1 else f"{shown} are"


def _prefix_in_use(project: Project) -> str:
    if project.role_prefix_override is not None:
        return f"role prefix {project.role_prefix!r} (the one given)"
    return f"role prefix {project.role_prefix!r} (the project's role_prefix: no --rlsctl-role-prefix was given)"


def _remedy(project: Project, owners: Sequence[dict[str, Any]]) -> str:
    guess = _applied_prefix(project, owners)
    if guess is not None:
        return f"give the prefix it was applied with, --rlsctl-role-prefix={guess} (ini rlsctl_role_prefix)"
    return (
        "give the prefix it was applied with, --rlsctl-role-prefix=PREFIX (ini rlsctl_role_prefix), "
        "or apply the project to it (`rlsctl apply`)"
    )


def _applied_prefix(project: Project, owners: Sequence[dict[str, Any]]) -> str | None:
    """The prefix the tables' owner was named with, when it is the owner role's key under another prefix."""
    key = project.role_of_kind("owner")
    if project.roles[key].name is not None:
        return None  # named explicitly: its name says nothing of a prefix
    found = {row["owner"] for row in owners if not row["owned"]}
    if len(found) != 1:
        return None
    owner = found.pop()
    return owner.removesuffix(key) if owner.endswith(key) and owner != key else None
