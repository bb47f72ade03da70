"""Section 3, access: the project's roles and the roles that reach them, memberships, effective
privileges on every table (through PUBLIC and inherited memberships too) and what PUBLIC holds."""

from __future__ import annotations

import psycopg

from rlsctl.catalog import queries as catalog
from rlsctl.declare.state import DeclaredState
from rlsctl.report import queries
from rlsctl.report.model import AccessSection, Membership, Privilege, PublicPrivilege, RoleInfo, TestsSection


def collect(conn: psycopg.Connection, state: DeclaredState, tests: TestsSection | None) -> AccessSection:
    names = list(state.managed_role_names)
    return AccessSection(
        roles=roles(conn, state),
        memberships=tuple(
            Membership(row["role"], row["member"]) for row in catalog.fetch(conn, "memberships", names=names)
        ),
        privileges=tuple(
            Privilege(
                row["role"],
                row["table_name"],
                row["privilege"],
                tuple(row["columns"]) if row["columns"] is not None else None,
                row["via"],
            )
            for row in queries.fetch(conn, "effective_privileges", schema=state.schema, roles=names)
        ),
        public=tuple(
            PublicPrivilege(row["kind"], row["name"], row["privilege"])
            for row in queries.fetch(conn, "public_privileges", schemas=sorted({state.schema, state.helper_schema}))
        ),
        tests=tests,
    )


def roles(conn: psycopg.Connection, state: DeclaredState) -> tuple[RoleInfo, ...]:
    """The declared roles as they are here, and every role that is a member of one (directly or not)."""
    declared = {role.name: role for role in state.roles}
    found = []
    for row in queries.fetch(conn, "role_reach", roles=list(declared)):
        spec = declared.get(row["name"])
        found.append(
            RoleInfo(
                name=row["name"],
                kind=spec.kind if spec is not None else "member",
                login=row["login"],
                superuser=row["superuser"],
                bypassrls=row["bypassrls"],
                createrole=row["createrole"],
                reaches=tuple(row["reaches"]),
                description=" ".join(spec.description.split()) if spec is not None else "",
            )
        )
    return tuple(found)
