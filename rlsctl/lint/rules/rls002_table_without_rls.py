from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class TableWithoutRls(Rule):
    """SQL creates a table and does not enable row-level security on it.

    In a migration for a multi-tenant schema, a table created without RLS is
    open to whoever is granted access later. (On a live database this is
    RLS001, which also knows who holds privileges.)

    Bad:

        CREATE TABLE note (id int PRIMARY KEY, tenant_id int NOT NULL, body text);

    Good:

        CREATE TABLE note (id int PRIMARY KEY, tenant_id int NOT NULL, body text);
        ALTER TABLE note ENABLE ROW LEVEL SECURITY;
        ALTER TABLE note FORCE ROW LEVEL SECURITY;
    """

    id = "RLS002"
    name = "table-without-rls"
    level = "warning"
    hint = "ALTER TABLE ... ENABLE ROW LEVEL SECURITY (and FORCE) in the same migration, or declare the table"
    sources = ("sql", "project")

    def check(self, model: LintModel) -> Iterator[Finding]:
        for table in model.tables():
            if not table.rls and table.parent is None:
                yield self.finding(table.qualified, f"{table.qualified} is created without row-level security")
