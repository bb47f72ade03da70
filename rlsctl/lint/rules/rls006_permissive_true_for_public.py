from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint import exprs, scope
from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class PermissiveTrueForPublic(Rule):
    """A permissive policy for PUBLIC whose USING or WITH CHECK is constant true, or has an OR branch that is.

    Permissive policies are OR-ed: one that is always true for every role
    makes every other policy on the table irrelevant for the commands it
    covers. Every role holding a privilege reads (USING) or writes (WITH
    CHECK) every row of every tenant. A condition such as `tenant_id = ...
    OR 1 = 1` is just as true: one OR branch that is always true (`true`,
    `1 = 1`, `'a' = 'a'`, `tenant_id = tenant_id`) opens the whole policy.

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
            found = scope.public_true(policy, model)
            if not found:
                continue
            effect = {"USING": "reads", "WITH CHECK": "writes"}
            what = " and ".join(effect[label] for label, _ in found)
            causes = "; ".join(
                f"its {label} is true" if opened.whole else
                f"the branch `{exprs.short(opened.branch, 60)}` of an OR makes its {label} true for every row"
                for label, opened in found
            )  # fmt: skip
            yield self.finding(
                policy.qualified,
                f"policy {policy.name} on {policy.table_qualified} is permissive, for PUBLIC, and {causes}: "
                f"every role with a privilege {what} every row ({policy.command.upper()}), whatever the other "
                "policies say",
            )
