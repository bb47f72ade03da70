from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class RlsTableWithoutPrimaryKey(Rule):
    """A table with row-level security has no primary key.

    Tenant tables are read and written one row at a time through their
    policies; without a primary key an UPDATE or DELETE cannot name a
    single row for sure, ORMs cannot track rows, and logical replication
    (read replicas, change data capture) cannot publish the table's updates
    and deletes. Partitions are left to their parent.

    Bad:

        CREATE TABLE event_log (tenant_id int NOT NULL, at timestamptz NOT NULL, body text);
        ALTER TABLE event_log ENABLE ROW LEVEL SECURITY;
        ALTER TABLE event_log FORCE ROW LEVEL SECURITY;

    Good:

        CREATE TABLE event_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id int NOT NULL,
                                at timestamptz NOT NULL, body text);
        ALTER TABLE event_log ENABLE ROW LEVEL SECURITY;
        ALTER TABLE event_log FORCE ROW LEVEL SECURITY;
    """

    id = "RLS027"
    name = "rls-table-without-primary-key"
    level = "info"
    hint = "ALTER TABLE ... ADD PRIMARY KEY (or add an identity column as the key)"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for table in sorted(model.tables(), key=lambda t: t.qualified):
            if table.rls and table.parent is None and not table.primary_key:
                yield self.finding(
                    table.qualified,
                    f"{table.qualified} has row-level security and no primary key: updates and deletes cannot "
                    "name one row for sure, and logical replication cannot publish them",
                )
