from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel, bypass_meaning
from rlsctl.lint.rule import Finding, Rule


class PolicyForBypassRole(Rule):
    """A policy names a role that is SUPERUSER or BYPASSRLS: it never applies to that role.

    Superusers and BYPASSRLS roles skip row-level security entirely, so a
    policy written for them filters nothing: they read and write every row
    whatever it says. The policy suggests a restriction that does not exist.

    Bad:

        CREATE ROLE batch_role BYPASSRLS;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY batch_read ON invoice FOR SELECT TO batch_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));

    Good:

        CREATE ROLE batch_role NOBYPASSRLS;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY batch_read ON invoice FOR SELECT TO batch_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
    """

    id = "RLS023"
    name = "policy-for-bypass-role"
    level = "warning"
    hint = "Drop the role from the policy, or take SUPERUSER / BYPASSRLS away from the role if it must be filtered"
    sources = ("live",)

    def check(self, model: LintModel) -> Iterator[Finding]:
        for policy in model.policies:
            bypassing = []
            meanings = []
            for name in policy.roles:
                role = model.roles.get(name)
                if role is not None and (role.superuser or role.bypassrls):
                    bypassing.append(f"{name} ({'SUPERUSER' if role.superuser else 'BYPASSRLS'})")
                if role is not None and role.bypassrls and not role.superuser:
                    meanings.append(bypass_meaning(name))
            if bypassing:
                yield self.finding(
                    policy.qualified,
                    f"policy {policy.name} on {policy.table_qualified} is for {', '.join(bypassing)}, which "
                    "skips row-level security: the policy never applies and the role reads every row"
                    + "".join(f"; {meaning}" for meaning in meanings),
                )
