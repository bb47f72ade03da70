from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class MatviewOverRls(Rule):
    """A materialized view reads an RLS-enabled table and roles other than its owner may select from it.

    Materialized views have no row-level security. REFRESH runs the query as
    the view's owner and stores what the owner sees; everyone granted SELECT
    on the materialized view then reads all of those rows, whatever the
    policies of the table underneath say.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL, amount numeric);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        CREATE MATERIALIZED VIEW invoice_totals AS
            SELECT tenant_id, sum(amount) AS total FROM invoice GROUP BY tenant_id;
        GRANT SELECT ON invoice_totals TO app_role;

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL, amount numeric);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        CREATE MATERIALIZED VIEW invoice_totals AS
            SELECT tenant_id, sum(amount) AS total FROM invoice GROUP BY tenant_id;
        CREATE VIEW my_invoice_totals WITH (security_invoker = true) AS
            SELECT tenant_id, sum(amount) AS total FROM invoice GROUP BY tenant_id;
        GRANT SELECT ON invoice, my_invoice_totals TO app_role;
    """

    id = "RLS020"
    name = "matview-over-rls"
    level = "error"
    hint = (
        "revoke SELECT on the materialized view from everyone but its owner; serve readers through a "
        "security_invoker view over the table (or a table with RLS filled by the owner)"
    )

    def check(self, model: LintModel) -> Iterator[Finding]:
        for view in model.relations.values():
            if view.kind != "m":
                continue
            tables = sorted(model.rls_sources(view, through=("v", "m")))
            if not tables:
                continue
            readers = sorted(
                g.grantee
                for g in model.grants
                if g.kind in ("table", "column") and g.qualified == view.qualified and g.privilege == "SELECT"
            )
            if readers:
                yield self.finding(
                    view.qualified,
                    f"materialized view {view.qualified} stores rows of {', '.join(tables)} (row-level security "
                    f"enabled) and {', '.join(sorted(set(readers)))} may select from it: materialized views have no "
                    "RLS, so every row captured at refresh is readable by them",
                )
