from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint import exprs
from rlsctl.lint.model import PUBLIC, LintModel
from rlsctl.lint.rule import Finding, Rule


class PermissiveTrueForPublic(Rule):
    """A permissive policy for PUBLIC whose USING or WITH CHECK is constant true.

    Permissive policies are OR-ed: one that is always true for every role
    makes every other policy on the table irrelevant for the commands it
    covers. Every role holding a privilege reads (USING) or writes (WITH
    CHECK) every row of every tenant.

    Bad:

        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY read_all ON invoice FOR SELECT USING (true);

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
    """

    id = "RLS006"
    name = "permissive-true-for-public"
    level = "error"
    hint = "Scope the policy by a tenant or owner column, and name the roles it is for (TO ...) instead of PUBLIC"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for policy in model.policies:
            if not policy.permissive or PUBLIC not in policy.roles:
                continue
            open_parts = [
                label for label, text in (("USING", policy.using), ("WITH CHECK", policy.check))
                if exprs.is_constant(text, True) or exprs.true_for(text, ())
            ]  # fmt: skip
            if open_parts:
                effect = {"USING": "reads", "WITH CHECK": "writes"}
                what = " and ".join(effect[p] for p in open_parts)
                yield self.finding(
                    policy.qualified,
                    f"policy {policy.name} on {policy.table_qualified} is permissive, for PUBLIC, and its "
                    f"{' and '.join(open_parts)} is true: every role with a privilege {what} every row "
                    f"({policy.command.upper()}), whatever the other policies say",
                )
