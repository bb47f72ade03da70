from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel, Relation
from rlsctl.lint.rule import Finding, Rule


class ReachableWithoutRls(Rule):
    """A table that roles other than its owner can read or write has row-level security disabled.

    Every row is then visible to (and changeable by) everyone holding a
    privilege on it; in a multi-tenant schema that is every tenant's data.
    REFERENCES alone reads and writes no row (a foreign key to Supabase's
    auth.users needs it) and does not count.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        GRANT SELECT ON invoice TO app_role;

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        GRANT SELECT ON invoice TO app_role;
    """

    id = "RLS001"
    name = "reachable-without-rls"
    level = "error"
    hint = "ENABLE and FORCE ROW LEVEL SECURITY, add policies, or revoke the privileges"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for table in model.tables():
            if table.rls or self._under_rls_parent(model, table):  # such partitions are RLS019's
                continue
            holders = sorted(
                {
                    g.grantee
                    for g in model.grants
                    if g.kind in ("table", "column") and g.qualified == table.qualified and g.privilege != "REFERENCES"
                }
            )
            if holders:
                yield self.finding(
                    table.qualified,
                    f"{', '.join(holders)} can access {table.qualified}, which has row-level security disabled: "
                    "they see and change every row",
                )

    @staticmethod
    def _under_rls_parent(model: LintModel, table: Relation) -> bool:
        parent = table.parent
        while parent is not None:
            ancestor = model.relations.get(parent)
            if ancestor is None:
                return False
            if ancestor.rls:
                return True
            parent = ancestor.parent
        return False
