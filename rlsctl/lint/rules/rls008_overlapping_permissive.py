from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from rlsctl.lint import exprs
from rlsctl.lint.model import PUBLIC, LintModel
from rlsctl.lint.rule import Finding, Rule


class OverlappingPermissive(Rule):
    """Two or more permissive policies apply to the same role and command.

    PostgreSQL ORs them: a row is visible (or writable) when any of them
    holds, so what a role may do is spread over several policies that have
    to be read together, and every row pays for each of them. A policy FOR
    ALL counts for every command; a policy for PUBLIC overlaps every role's.
    One policy per role and command, with its branches OR-ed inside, says
    the same thing in one place.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL, owner_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        CREATE INDEX ON invoice (owner_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_rows ON invoice FOR ALL TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        CREATE POLICY own_rows ON invoice FOR SELECT TO app_role
            USING (owner_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int));

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL, owner_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        CREATE INDEX ON invoice (owner_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY app_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int)
                   OR owner_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int));
        CREATE POLICY app_update ON invoice FOR UPDATE TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
    """

    id = "RLS008"
    name = "overlapping-permissive"
    level = "warning"
    hint = "Merge the overlapping policies into one per role and command (OR their conditions inside it)"

    def check(self, model: LintModel) -> Iterator[Finding]:
        by_table = exprs.policies_by_table(model)
        for table in model.tables():
            permissive = [p for p in by_table.get(table.qualified, ()) if p.permissive]
            if len(permissive) < 2:
                continue
            roles = {r for p in permissive for r in p.roles}
            # (policies) -> [(role, command)] where exactly those policies apply
            overlaps: dict[tuple[str, ...], list[tuple[str, str]]] = defaultdict(list)
            for role in sorted(roles):
                for command in ("select", "insert", "update", "delete"):
                    applying = tuple(
                        sorted(
                            p.name for p in permissive
                            if command in exprs.commands(p.command) and (role in p.roles or PUBLIC in p.roles)
                        )
                    )  # fmt: skip
                    if len(applying) > 1:
                        overlaps[applying].append((role, command))
            if not overlaps:
                continue
            parts = []
            for names, where in sorted(overlaps.items()):
                by_role: dict[str, list[str]] = defaultdict(list)
                for role, command in where:
                    by_role[role].append(command.upper())
                scope = "; ".join(f"{role} {'/'.join(cmds)}" for role, cmds in sorted(by_role.items()))
                parts.append(f"{', '.join(names)} ({scope})")
            yield self.finding(
                table.qualified,
                f"permissive policies on {table.qualified} overlap and are OR-ed: {'; and '.join(parts)}",
            )
