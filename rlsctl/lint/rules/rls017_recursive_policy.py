from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint import exprs
from rlsctl.lint.model import PUBLIC, LintModel, Policy, Relation
from rlsctl.lint.rule import Finding, Rule


def reads(model: LintModel, policy: Policy) -> list[Relation]:
    """Tables (with RLS) the policy's subqueries read."""
    found: list[Relation] = []
    for text in (policy.using, policy.check):
        for name in sorted(exprs.subquery_tables(exprs.parse(text))):
            relation = exprs.resolve_relation(model, name, policy.schema)
            if relation is not None and relation.is_table and relation.rls and relation not in found:
                found.append(relation)
    return found


def applies(policy: Policy, role: str) -> bool:
    return role in policy.roles or PUBLIC in policy.roles


class RecursivePolicy(Rule):
    """A policy's subquery reads a table whose policies read back: PostgreSQL raises infinite recursion.

    Reading a table from a policy applies that table's own SELECT policies,
    for the same user. When they (directly or through other tables) read the
    first table again, every query fails with "infinite recursion detected
    in policy for relation ...". The classic case is a membership table whose
    policy looks itself up. Read the other table through a SECURITY DEFINER
    helper owned by a role the inner policies do not apply to, or compare
    with a set computed once.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE membership (team_id int NOT NULL, user_id int NOT NULL, PRIMARY KEY (team_id, user_id));
        CREATE INDEX ON membership (user_id);
        ALTER TABLE membership ENABLE ROW LEVEL SECURITY;
        ALTER TABLE membership FORCE ROW LEVEL SECURITY;
        CREATE POLICY team_read ON membership FOR SELECT TO app_role
            USING (EXISTS (SELECT 1 FROM membership AS mine
                           WHERE mine.team_id = membership.team_id
                             AND mine.user_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int)));

    Good:

        CREATE ROLE app_role;
        CREATE TABLE membership (team_id int NOT NULL, user_id int NOT NULL, PRIMARY KEY (team_id, user_id));
        CREATE INDEX ON membership (user_id);
        CREATE TABLE document (id int PRIMARY KEY, team_id int NOT NULL);
        CREATE INDEX ON document (team_id);
        ALTER TABLE membership ENABLE ROW LEVEL SECURITY;
        ALTER TABLE membership FORCE ROW LEVEL SECURITY;
        ALTER TABLE document ENABLE ROW LEVEL SECURITY;
        ALTER TABLE document FORCE ROW LEVEL SECURITY;
        CREATE POLICY own_read ON membership FOR SELECT TO app_role
            USING (user_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int));
        CREATE POLICY team_read ON document FOR SELECT TO app_role
            USING (EXISTS (SELECT 1 FROM membership AS m WHERE m.team_id = document.team_id));
    """

    id = "RLS017"
    name = "recursive-policy"
    level = "error"
    hint = (
        "Break the cycle: read the other table through a SECURITY DEFINER function owned by a role its policies "
        "do not apply to (called as (SELECT fn())), or scope by a set computed once"
    )

    def check(self, model: LintModel) -> Iterator[Finding]:
        edges = {id(p): reads(model, p) for p in model.policies}
        by_table = exprs.policies_by_table(model)
        everyone = [*sorted({r for p in model.policies for r in p.roles} - {PUBLIC}), PUBLIC]
        for policy in model.policies:
            start = model.relations.get(policy.table_qualified)
            if start is None or not edges[id(policy)]:
                continue
            roles = everyone if PUBLIC in policy.roles else list(policy.roles)
            for role in roles:
                path = self._cycle(by_table, edges, start, edges[id(policy)], role)
                if path is not None:
                    chain = " -> ".join([policy.table_qualified, *path])
                    yield self.finding(
                        policy.qualified,
                        f"policy {policy.name} on {policy.table_qualified} reads tables whose policies for "
                        f'{role} read back ({chain}): queries fail with "infinite recursion detected in policy"',
                    )
                    break

    @staticmethod
    def _cycle(
        by_table: dict[str, list[Policy]],
        edges: dict[int, list[Relation]],
        start: Relation,
        first: list[Relation],
        role: str,
    ) -> list[str] | None:
        """A path from the tables `first` back to `start`, through SELECT policies that apply to `role`."""
        frontier: list[tuple[Relation, list[str]]] = [(t, [t.qualified]) for t in first]
        seen: set[str] = set()
        while frontier:
            table, path = frontier.pop(0)
            if table.qualified == start.qualified:
                return path
            if table.qualified in seen:
                continue
            seen.add(table.qualified)
            if role != PUBLIC and not table.forced and table.owner == role:
                continue  # the owner bypasses the table's policies
            for other in by_table.get(table.qualified, ()):
                if other.command in ("select", "all") and applies(other, role):
                    frontier.extend((nxt, [*path, nxt.qualified]) for nxt in edges[id(other)])
        return None
