from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class RlsNotForced(Rule):
    """Row-level security is enabled but not forced, so the table's owner bypasses every policy.

    Without FORCE ROW LEVEL SECURITY, the owner and every role that is a
    member of the owner role read and write all rows. An application that
    connects as (or as a member of) the owner then runs with no tenant
    isolation at all, and nothing in the policies shows it.

    Bad:

        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;

    Good:

        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
    """

    id = "RLS005"
    name = "rls-not-forced"
    level = "warning"
    hint = "ALTER TABLE ... FORCE ROW LEVEL SECURITY (migrations that must see every row use a BYPASSRLS role)"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for table in model.tables():
            if not table.rls or table.forced or table.parent is not None:
                continue
            members = sorted(model.members_of(table.owner))
            owner = "the role that ran the script" if table.owner == "CURRENT_USER" else table.owner
            members = sorted(model.members_of(table.owner))
            who = (
                f"its owner ({owner}) bypasses"
                if not members
                else (f"its owner ({owner}) and the members of that role ({', '.join(members)}) bypass")
            )
            role = model.roles.get(table.owner)
            note = ""
            if role is not None and (role.superuser or role.bypassrls):
                note = f"; {table.owner} is {'a superuser' if role.superuser else 'BYPASSRLS'}, which FORCE cannot "
                note += "restrain: the table needs an owner without it"
            yield self.finding(
                table.qualified,
                f"{table.qualified} has row-level security enabled but not forced: {who} its policies{note}",
            )
