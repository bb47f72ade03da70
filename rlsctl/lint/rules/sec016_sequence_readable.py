from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import PUBLIC, LintModel
from rlsctl.lint.rule import Finding, Rule


class SequenceReadable(Rule):
    """A role subject to row-level security holds SELECT on a sequence: its last_value tells global volumes.

    Row-level security hides other tenants' rows, but a sequence is shared by
    all of them: `SELECT last_value FROM invoice_id_seq` tells any tenant
    how many invoices every tenant together has created, and how fast. An
    INSERT that draws ids needs USAGE on the sequence, never SELECT.
    Reported for roles that reach a table with RLS (tenant roles); PUBLIC's
    grants are SEC004's.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id bigserial PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_rows ON invoice FOR ALL TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        GRANT SELECT, INSERT ON invoice TO app_role;
        GRANT SELECT, USAGE ON SEQUENCE invoice_id_seq TO app_role;

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id bigserial PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_rows ON invoice FOR ALL TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        GRANT SELECT, INSERT ON invoice TO app_role;
        GRANT USAGE ON SEQUENCE invoice_id_seq TO app_role;
    """

    id = "SEC016"
    name = "sequence-readable"
    level = "info"
    hint = "REVOKE SELECT ON SEQUENCE ... FROM the role; USAGE is enough for inserts (nextval)"

    def check(self, model: LintModel) -> Iterator[Finding]:
        readers: dict[str, set[str]] = {}
        for grant in model.grants:
            relation = model.relations.get(grant.qualified) if grant.kind == "table" else None
            if (
                relation is not None
                and relation.kind == "S"
                and grant.privilege == "SELECT"
                and grant.grantee != PUBLIC
            ):
                readers.setdefault(relation.qualified, set()).add(grant.grantee)
        for sequence, roles in sorted(readers.items()):
            tenants = sorted(r for r in roles if model.rls_tables_within_reach(r))
            if tenants:
                yield self.finding(
                    sequence,
                    f"{', '.join(tenants)} {'holds' if len(tenants) == 1 else 'hold'} SELECT on sequence {sequence}, "
                    "which every tenant shares: its last_value tells them how many rows all tenants created",
                )
