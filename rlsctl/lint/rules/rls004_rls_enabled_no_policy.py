from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import PUBLIC, LintModel, Relation
from rlsctl.lint.rule import Finding, Rule

ROW_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")  # what row-level security filters


def bypasses(model: LintModel, table: Relation, role: str) -> bool:
    """Whether RLS never applies to a role on a table: superuser, BYPASSRLS, or the owner (or a member of it)
    when RLS is not forced."""
    if role == PUBLIC:
        return False
    known = model.roles.get(role)
    if known is not None and (known.superuser or known.bypassrls):
        return True
    return not table.forced and (role == table.owner or table.owner in model.reachable_roles(role))


class RlsEnabledNoPolicy(Rule):
    """Row-level security is enabled on a table that has no policy, yet other roles hold privileges on it.

    With RLS on and no policy, PostgreSQL denies every row: those roles read
    nothing and every write fails its check, without any error saying why.
    Either a policy is missing or the grants are. A table with RLS and no
    grants (locked on purpose) is fine.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        GRANT SELECT, INSERT ON invoice TO app_role;

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        GRANT SELECT ON invoice TO app_role;
        CREATE TABLE secret (id int PRIMARY KEY, value text);
        ALTER TABLE secret ENABLE ROW LEVEL SECURITY;
        ALTER TABLE secret FORCE ROW LEVEL SECURITY;
    """

    id = "RLS004"
    name = "rls-enabled-no-policy"
    level = "warning"
    hint = "Add policies for the roles that hold privileges on the table, or revoke the privileges"

    def check(self, model: LintModel) -> Iterator[Finding]:
        with_policies = {p.table_qualified for p in model.policies}
        holders: dict[str, set[str]] = {}
        for grant in model.grants:
            if grant.kind in ("table", "column") and grant.privilege in ROW_PRIVILEGES:
                holders.setdefault(grant.qualified, set()).add(grant.grantee)
        for table in model.tables():
            if not table.rls or table.parent is not None or table.qualified in with_policies:
                continue
            affected = sorted(r for r in holders.get(table.qualified, ()) if not bypasses(model, table, r))
            if affected:
                yield self.finding(
                    table.qualified,
                    f"{', '.join(affected)} {'holds' if len(affected) == 1 else 'hold'} privileges on "
                    f"{table.qualified}, which has row-level security enabled and no policy: they silently read "
                    "no row and every write is rejected",
                )
