from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint import exprs
from rlsctl.lint.model import PUBLIC, LintModel
from rlsctl.lint.rule import Finding, Rule


class OpenWriteCheck(Rule):
    """A write policy whose check lets any row through: rows can be written into any tenant.

    An INSERT policy with `WITH CHECK (true)`, or an UPDATE (or ALL) policy
    scoping the rows it may touch with USING but checking the new row with a
    constant true, lets its roles create rows, or move rows they can see,
    into another tenant. The check is what keeps written rows inside the
    writer's scope. (A check that is `pg_has_role(CURRENT_USER, ...)` for the
    policy's own role is true for it too.)

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
            if not policy.permissive or not policy.writes or PUBLIC in policy.roles:  # PUBLIC: RLS006
                continue
            if policy.command == "insert":
                if exprs.true_for(policy.check, policy.roles):
                    yield self.finding(
                        policy.qualified,
                        f"INSERT policy {policy.name} on {policy.table_qualified} checks nothing "
                        f"(WITH CHECK {exprs.short(policy.check)}): {', '.join(policy.roles)} can insert rows "
                        "for any tenant",
                    )
            elif (
                policy.check is not None
                and exprs.true_for(policy.check, policy.roles)
                and not exprs.true_for(policy.using, policy.roles)
            ):
                yield self.finding(
                    policy.qualified,
                    f"{policy.command.upper()} policy {policy.name} on {policy.table_qualified} limits the rows "
                    f"it touches (USING) but its WITH CHECK ({exprs.short(policy.check)}) accepts any new row: "
                    f"{', '.join(policy.roles)} can move rows into another tenant",
                )
