from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint import exprs
from rlsctl.lint.model import PUBLIC, LintModel
from rlsctl.lint.rule import Finding, Rule


class OnlyRestrictive(Rule):
    """RESTRICTIVE policies apply to a role and command that no PERMISSIVE policy covers: every row is denied.

    Restrictive policies only narrow what permissive policies allow (they
    are AND-ed onto the OR of the permissive ones). With no permissive
    policy for the same role and command there is nothing to narrow, so the
    role sees no row and every write fails, with no error saying why.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_only ON invoice AS RESTRICTIVE FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL, archived boolean NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        CREATE POLICY hide_archived ON invoice AS RESTRICTIVE FOR SELECT TO app_role
            USING (NOT archived);
    """

    id = "RLS022"
    name = "only-restrictive"
    level = "warning"
    hint = "Add a PERMISSIVE policy for the role and command (restrictive policies only narrow permissive ones)"

    def check(self, model: LintModel) -> Iterator[Finding]:
        by_table = exprs.policies_by_table(model)
        for table in model.tables():
            if not table.rls:
                continue
            policies = by_table.get(table.qualified, [])
            permissive = [p for p in policies if p.permissive]
            uncovered: list[str] = []
            for restrictive in (p for p in policies if not p.permissive):
                for role in restrictive.roles:
                    covering = [
                        p for p in permissive
                        if role == PUBLIC or role in p.roles or PUBLIC in p.roles
                    ]  # fmt: skip
                    if restrictive.command == "all":
                        open_ = bool(covering)
                    else:
                        open_ = any(restrictive.command in exprs.commands(p.command) for p in covering)
                    if not open_:
                        what = "any command" if restrictive.command == "all" else restrictive.command.upper()
                        item = f"{restrictive.name} ({role}, {what})"
                        if item not in uncovered:
                            uncovered.append(item)
            if uncovered:
                yield self.finding(
                    table.qualified,
                    f"{table.qualified} has restrictive policies that no permissive policy opens: "
                    f"{', '.join(uncovered)}: those roles are denied every row, silently",
                )
