from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint import exprs, scope
from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class OpenWriteCheck(Rule):
    """A write policy whose check does not tie the new row to the user: rows can be written into any tenant.

    An INSERT policy whose WITH CHECK scopes nothing (`true`, `tenant_id IS
    NOT NULL`, `status = 'draft'`, or an OR branch such as `... OR 1 = 1`),
    or an UPDATE (or ALL) policy scoping the rows it may touch with USING but
    checking the new row with such a condition, lets its roles create rows,
    or move rows they can see, into another tenant. The check is what keeps
    written rows inside the writer's scope. (A check that is
    `pg_has_role(CURRENT_USER, ...)` for the policy's own role is true for
    it too.)

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY app_update ON invoice FOR UPDATE TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int))
            WITH CHECK (true);

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY app_update ON invoice FOR UPDATE TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        CREATE POLICY app_insert ON invoice FOR INSERT TO app_role
            WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
    """

    id = "RLS012"
    name = "open-write-check"
    level = "error"
    hint = "Give the policy a WITH CHECK that scopes the new row like USING does (or drop WITH CHECK to reuse USING)"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for policy in model.policies:
            opened = scope.open_write(policy, model)
            if opened is None:
                continue
            row = exprs.row_of(model, policy)
            roles = ", ".join(policy.roles)
            if policy.command == "insert":
                effect = f"{roles} can insert rows for any tenant"
            else:
                effect = f"USING limits the rows it touches, but {roles} can move them into another tenant"
                if policy.command == "all":
                    effect += " and insert rows for any tenant"
            yield self.finding(
                policy.qualified,
                f"{policy.command.upper()} policy {policy.name} on {policy.table_qualified} checks no tenant on "
                f"the new row: {opened.reason('WITH CHECK', row)}; {effect}",
            )
