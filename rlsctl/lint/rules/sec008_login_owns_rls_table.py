from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class LoginOwnsRlsTable(Rule):
    """A role that can log in owns an RLS-enabled table, directly or as a member of the owning role.

    A table's owner is exempt from its policies unless RLS is forced, and
    even then it can ALTER TABLE ... NO FORCE / DISABLE ROW LEVEL SECURITY
    or drop the policies. Sessions of an owning login role (an application
    running migrations with its runtime credentials, a member of the owner
    role) are one statement away from every row. Superusers are left out:
    ownership gives them nothing they lack (SEC007).

    Bad:

        CREATE ROLE owner_role LOGIN;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        ALTER TABLE invoice OWNER TO owner_role;
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;

    Good:

        CREATE ROLE owner_role NOLOGIN;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        ALTER TABLE invoice OWNER TO owner_role;
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
    """

    id = "SEC008"
    name = "login-owns-rls-table"
    level = "warning"
    hint = (
        "own the tables by a NOLOGIN role; run migrations by a separate login that is granted it only while "
        "migrating, and connect applications as roles that are not members of it"
    )
    sources = ("live",)

    def check(self, model: LintModel) -> Iterator[Finding]:
        owned: dict[str, dict[str, list[str]]] = {}  # login role -> owner (itself or a group) -> tables
        members: dict[str, set[str]] = {}
        for table in model.tables():
            if not table.rls:
                continue
            if table.owner not in members:
                # Not through memberships rlsctl grants on purpose: the migration login of a
                # managed host is a member of the owner role it created (apply does that).
                members[table.owner] = {table.owner} | model.members_of(table.owner, intended=False)
            for name in members[table.owner]:
                role = model.roles.get(name)
                if role is None or not role.login or role.superuser:
                    continue
                owned.setdefault(name, {}).setdefault(table.owner, []).append(table.qualified)
        for name, by_owner in sorted(owned.items()):
            parts = []
            for owner, tables in sorted(by_owner.items()):
                shown = ", ".join(sorted(tables)[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
                parts.append(shown if owner == name else f"{shown} (as a member of {owner})")
            yield self.finding(
                name,
                f"login role {name} owns RLS-enabled {'; '.join(parts)}: owners skip unforced policies and can "
                "disable RLS or drop policies, so its sessions are one statement away from every row",
            )
