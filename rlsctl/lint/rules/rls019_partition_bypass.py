from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel, Relation
from rlsctl.lint.rule import Finding, Rule


class PartitionBypass(Rule):
    """A partition of an RLS-enabled table has row-level security disabled while other roles hold privileges on it.

    Policies apply to the table a query names. Querying the partitioned parent
    applies the parent's policies, but a role with privileges on a partition
    can query that partition directly, and with RLS disabled there it sees and
    changes every row stored in it. Privileges granted on the parent do not
    reach its partitions, so a partition is safe without RLS only as long as
    nobody but its owner holds privileges on it.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE event (tenant_id int NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);
        CREATE TABLE event_2024 PARTITION OF event FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        ALTER TABLE event ENABLE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON event FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        GRANT SELECT ON event, event_2024 TO app_role;

    Good:

        CREATE ROLE app_role;
        CREATE TABLE event (id int NOT NULL, tenant_id int NOT NULL, at date NOT NULL, PRIMARY KEY (id, at))
            PARTITION BY RANGE (at);
        CREATE TABLE event_2024 PARTITION OF event FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE INDEX ON event (tenant_id);
        ALTER TABLE event ENABLE ROW LEVEL SECURITY;
        ALTER TABLE event FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON event FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        GRANT SELECT ON event TO app_role;
    """

    id = "RLS019"
    name = "partition-bypass"
    level = "error"
    hint = "revoke the privileges on the partition (grant on the parent only), or enable RLS and add policies on it"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for table in model.tables():
            if table.parent is None or table.rls:
                continue
            guarded = _rls_ancestor(model, table)
            if guarded is None:
                continue
            holders = sorted(model.grantees_of(table.qualified))
            if not holders:
                continue
            kind = "partition" if model.relations[table.parent].kind == "p" else "child table"
            under = (
                f"{guarded.qualified}, which has row-level security"
                if guarded.qualified == table.parent
                else f"{table.parent}, under {guarded.qualified}, which has row-level security"
            )
            yield self.finding(
                table.qualified,
                f"{table.qualified} is a {kind} of {under}, but RLS is "
                f"disabled on it and {', '.join(holders)} {'holds' if len(holders) == 1 else 'hold'} privileges on it: "
                f"querying {table.qualified} "
                f"directly skips {guarded.qualified}'s policies and reaches every row stored in it",
            )


def _rls_ancestor(model: LintModel, table: Relation) -> Relation | None:
    """The nearest ancestor with row-level security enabled, if any."""
    seen: set[str] = set()
    parent = table.parent
    while parent is not None and parent not in seen and parent in model.relations:
        seen.add(parent)
        relation = model.relations[parent]
        if relation.rls:
            return relation
        parent = relation.parent
    return None
