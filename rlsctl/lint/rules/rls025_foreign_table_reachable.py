from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class ForeignTableReachable(Rule):
    """Roles other than its owner may query a foreign table, which cannot have row-level security.

    PostgreSQL has no policies for foreign tables: every role holding a
    privilege on one reads (and, if the wrapper allows, writes) every row
    the remote side returns, whatever the tenant. Keep foreign tables to
    their owner and serve tenants from a local table with RLS, or through
    a view or function that filters by the session's identity.

    Bad:

        CREATE ROLE app_role;
        CREATE FOREIGN DATA WRAPPER archive_fdw;
        CREATE SERVER archive FOREIGN DATA WRAPPER archive_fdw;
        CREATE FOREIGN TABLE invoice_archive (id int, tenant_id int) SERVER archive;
        GRANT SELECT ON invoice_archive TO app_role;

    Good:

        CREATE ROLE app_role;
        CREATE FOREIGN DATA WRAPPER archive_fdw;
        CREATE SERVER archive FOREIGN DATA WRAPPER archive_fdw;
        CREATE FOREIGN TABLE invoice_archive (id int, tenant_id int) SERVER archive;
        REVOKE ALL ON invoice_archive FROM app_role;
    """

    id = "RLS025"
    name = "foreign-table-reachable"
    level = "warning"
    hint = (
        "REVOKE the privileges on the foreign table; copy what tenants need into a local table with RLS, or "
        "filter it for them in a view or function"
    )

    def check(self, model: LintModel) -> Iterator[Finding]:
        for relation in sorted(model.relations.values(), key=lambda r: r.qualified):
            if relation.kind != "f":
                continue
            holders = sorted(model.grantees_of(relation.qualified))
            if holders:
                yield self.finding(
                    relation.qualified,
                    f"{', '.join(holders)} can query foreign table {relation.qualified}, which cannot have "
                    "row-level security: they read every row the remote side returns, for every tenant",
                )
