from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import PUBLIC, LintModel
from rlsctl.lint.rule import Finding, Rule

KINDS = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "f": "foreign table",
         "S": "sequence"}  # fmt: skip


class PublicRelationPrivileges(Rule):
    """A table, view, materialized view or sequence grants a privilege to PUBLIC.

    PUBLIC is every role in the cluster, including roles created later for
    other applications and databases. Privileges belong to named roles; row-level security
    then decides which rows they reach.

    Bad:

        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        GRANT SELECT ON invoice TO PUBLIC;

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

    id = "SEC004"
    name = "public-relation-privileges"
    level = "error"
    hint = "REVOKE ALL ON ... FROM PUBLIC and grant the named roles that need access"

    def check(self, model: LintModel) -> Iterator[Finding]:
        granted: dict[str, set[str]] = {}
        for grant in model.grants:
            if grant.kind in ("table", "column") and grant.grantee == PUBLIC:
                what = grant.privilege if grant.column is None else f"{grant.privilege} ({grant.column})"
                granted.setdefault(grant.qualified, set()).add(what)
        for qualified, privileges in sorted(granted.items()):
            relation = model.relations.get(qualified)
            kind = KINDS.get(relation.kind, "relation") if relation is not None else "relation"
            yield self.finding(
                qualified,
                f"PUBLIC holds {', '.join(sorted(privileges))} on {kind} {qualified}: every role in the cluster, "
                "present and future, has that access",
            )
