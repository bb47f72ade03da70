from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class PoliciesWithoutRls(Rule):
    """A table has policies but row-level security is disabled, so none of them applies.

    The policies give a false sense of safety: PostgreSQL ignores them until
    RLS is enabled on the table.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
    """

    id = "RLS003"
    name = "policies-without-rls"
    level = "error"
    hint = "ALTER TABLE ... ENABLE ROW LEVEL SECURITY (and FORCE)"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for table in model.tables():
            policies = model.policies_on(table.qualified)
            if policies and not table.rls:
                names = ", ".join(sorted(p.name for p in policies))
                yield self.finding(table.qualified, f"{table.qualified} has policies ({names}) but RLS is disabled")
