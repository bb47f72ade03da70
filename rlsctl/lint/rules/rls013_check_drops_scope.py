from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint import exprs
from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class CheckDropsScope(Rule):
    """An UPDATE policy's WITH CHECK ignores the columns its USING scopes rows by: rows can change tenant.

    USING decides which rows a role may update; WITH CHECK decides what the
    updated row may look like. When USING scopes by `tenant_id` but the
    check never mentions it, an update can set `tenant_id` to another
    tenant's id and hand the row over to them (or hide it from its owner).

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL, status text NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY app_update ON invoice FOR UPDATE TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int))
            WITH CHECK (status IN ('draft', 'sent'));

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL, status text NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY app_update ON invoice FOR UPDATE TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int))
            WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int)
                        AND status IN ('draft', 'sent'));
    """

    id = "RLS013"
    name = "check-drops-scope"
    level = "error"
    hint = "Repeat the USING scope in WITH CHECK (or drop WITH CHECK so USING applies to the new row too)"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for policy in model.policies:
            if policy.command not in ("update", "all") or policy.check is None:
                continue
            if exprs.true_for(policy.check, policy.roles):
                continue  # RLS012
            using, check = exprs.parse(policy.using), exprs.parse(policy.check)
            if using is None or check is None:
                continue
            row = exprs.row_of(model, policy)
            scope = exprs.scoping_columns(using, row, ranges=False) or exprs.row_names(using, row)
            if scope and not scope & exprs.row_names(check, row):
                columns = ", ".join(sorted(scope))
                yield self.finding(
                    policy.qualified,
                    f"{policy.command.upper()} policy {policy.name} on {policy.table_qualified} scopes rows by "
                    f"{columns} (USING) but its WITH CHECK ({exprs.short(policy.check)}) never reads "
                    f"{'it' if len(scope) == 1 else 'them'}: an update can move a row to another tenant",
                )
