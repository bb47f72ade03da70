from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint import exprs, scope
from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class CheckDropsScope(Rule):
    """An UPDATE policy's WITH CHECK scopes by other columns than its USING: rows can change tenant.

    USING decides which rows a role may update; WITH CHECK decides what the
    updated row may look like. When USING scopes by `tenant_id` but the
    check scopes only by, say, `owner_id`, an update can set `tenant_id` to
    another tenant's id and hand the row over to them (or hide it from its
    tenant). A check that scopes nothing at all is RLS012's.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL, owner_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY app_update ON invoice FOR UPDATE TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int))
            WITH CHECK (owner_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int));

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL, owner_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY app_update ON invoice FOR UPDATE TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int))
            WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int)
                        AND owner_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int));
    """

    id = "RLS013"
    name = "check-drops-scope"
    level = "error"
    hint = "Repeat the USING scope in WITH CHECK (or drop WITH CHECK so USING applies to the new row too)"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for policy in model.policies:
            if policy.command not in ("update", "all") or policy.check is None:
                continue
            row = exprs.row_of(model, policy)
            if scope.opening(policy.check, row, model, policy.roles) is not None:
                continue  # a check that scopes nothing: RLS012 (or RLS007 when USING is open too)
            using, check = exprs.parse(policy.using), exprs.parse(policy.check)
            if using is None or check is None:
                continue
            # Compared with the identity, not merely read: `tenant_id IS NOT NULL` keeps no row in its tenant.
            scoped = exprs.scoping_columns(using, row, ranges=False)
            if scoped and not scoped & exprs.scoping_columns(check, row, ranges=False):
                columns = ", ".join(sorted(scoped))
                yield self.finding(
                    policy.qualified,
                    f"{policy.command.upper()} policy {policy.name} on {policy.table_qualified} scopes rows by "
                    f"{columns} (USING) but its WITH CHECK ({exprs.short(policy.check)}) does not scope "
                    f"{'it' if len(scoped) == 1 else 'them'}: an update can move a row to another tenant",
                )
