from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from rlsctl.lint import bodies, exprs
from rlsctl.lint.model import PUBLIC, LintModel, Policy, Relation
from rlsctl.lint.rule import Finding, Rule


@dataclass(frozen=True)
class Read:
    """A table with RLS that evaluating a policy queries: in a subquery, or in the body of a helper it runs."""

    table: Relation
    as_role: str | None  # the owner of the SECURITY DEFINER helper it is read through; None: the querying role
    via: str  # how, for the message


def reads(model: LintModel, policy: Policy) -> list[Read]:
    found: list[Read] = []
    for text in (policy.using, policy.check):
        for name in sorted(exprs.subquery_tables(exprs.parse(text))):
            relation = exprs.resolve_relation(model, name, policy.schema)
            if relation is not None and relation.is_table and relation.rls:
                found.append(Read(relation, None, relation.qualified))
    for run in bodies.helper_runs(model, (policy.using, policy.check)):
        who = f"as {run.as_role}" if run.as_role else "as the caller"
        for relation in bodies.relations_read(model, run.function):
            if relation.is_table and relation.rls:
                found.append(Read(relation, run.as_role, f"{relation.qualified} (in {' -> '.join(run.chain)}, {who})"))
    return list({(r.table.qualified, r.as_role): r for r in found}.values())


class RecursivePolicy(Rule):
    """A policy reads (in a subquery or through a helper) a table whose policies read back: queries fail.

    Reading a table from a policy applies that table's own SELECT policies,
    for the same user. When they (directly or through other tables) read the
    first table again, every query fails with "infinite recursion detected
    in policy for relation ...". The classic case is a membership table whose
    policy looks itself up. Helpers count: a policy calling `(SELECT
    my_teams())`, where my_teams() is SECURITY INVOKER and reads the same
    table, recurses at run time ("stack depth limit exceeded"). A SECURITY
    DEFINER helper reads as its owner, so it breaks the cycle when the
    owner's reads are not subject to the policy (it owns the table and RLS
    is not forced, or it bypasses RLS) or go through a policy of its own
    that reads nothing back; it does not when the calling policy applies to
    the owner too.

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
        "Break the cycle: read the other table through a SECURITY DEFINER function (called as (SELECT fn())) "
        "owned by a role that reads it without the recursive policy: one with a narrow policy of its own there "
        "(rlsctl's definer role), BYPASSRLS, or the table's owner while RLS is not forced; or scope by a set "
        "computed once"
    )

    def check(self, model: LintModel) -> Iterator[Finding]:
        graph = Graph(model)
        everyone = [*sorted({r for p in model.policies for r in p.roles} - {PUBLIC}), PUBLIC]
        for policy in model.policies:
            if policy.table_qualified not in model.relations or not graph.edges(policy):
                continue
            for role in everyone if PUBLIC in policy.roles else list(policy.roles):
                path = graph.cycle(policy, role)
                if path is not None:
                    chain = " -> ".join([policy.table_qualified, *path])
                    yield self.finding(
                        policy.qualified,
                        f"policy {policy.name} on {policy.table_qualified} reads tables whose policies for "
                        f'{role} read back ({chain}): queries fail with "infinite recursion detected in policy" '
                        '(or, through a function, "stack depth limit exceeded")',
                    )
                    break


class Graph:
    """States are (table, role the table is read as); a policy of the table that applies to that role leads to
    the tables it reads, as the same role or as the owner of a SECURITY DEFINER helper."""

    def __init__(self, model: LintModel) -> None:
        self.model = model
        self.by_table = exprs.policies_by_table(model)
        self._edges: dict[int, list[Read]] = {}
        self._holders: dict[str, set[str]] = {}

    def edges(self, policy: Policy) -> list[Read]:
        if id(policy) not in self._edges:
            self._edges[id(policy)] = reads(self.model, policy)
        return self._edges[id(policy)]

    def holders(self, role: str) -> set[str]:
        if role not in self._holders:
            self._holders[role] = {role, PUBLIC} | self.model.reachable_roles(role)
        return self._holders[role]

    def exempt(self, table: Relation, role: str) -> bool:
        """Whether the table's policies do not apply to the role: superuser, BYPASSRLS, or owner of an unforced
        table (membership in the owner role counts)."""
        if role == PUBLIC:
            return False
        known = self.model.roles.get(role)
        if known is not None and (known.superuser or known.bypassrls):
            return True
        return not table.forced and table.owner in self.holders(role)

    def step(self, table: Relation, role: str) -> Iterator[tuple[Read, str]]:
        """What reading `table` as `role` reads next, and as whom."""
        if self.exempt(table, role):
            return
        names = {PUBLIC} if role == PUBLIC else self.holders(role)
        for other in self.by_table.get(table.qualified, ()):
            if other.command in ("select", "all") and names & set(other.roles):
                for read in self.edges(other):
                    yield read, read.as_role or role

    def cycle(self, policy: Policy, role: str) -> list[str] | None:
        """A path from the policy's reads back to its table: as the same role, or as a role whose own reading of
        the table comes back to it (a helper that recurses as its owner)."""
        start = self.model.relations[policy.table_qualified]
        if self.exempt(start, role):
            return None  # the policy never applies to the role
        first = [(read, read.as_role or role) for read in self.edges(policy)]
        for (table, as_role), path in self._reach(first):
            if table != start.qualified:
                continue
            if as_role == role:
                return path
            for (inner, inner_role), more in self._reach(list(self.step(start, as_role))):
                if inner == start.qualified and inner_role == as_role:
                    return [*path, *more]
        return None

    def _reach(self, first: list[tuple[Read, str]]) -> Iterator[tuple[tuple[str, str], list[str]]]:
        """States reachable from `first` (breadth first), each with the path that reached it."""
        frontier = [(read.table, as_role, [read.via]) for read, as_role in first]
        seen: set[tuple[str, str]] = set()
        while frontier:
            table, as_role, path = frontier.pop(0)
            state = (table.qualified, as_role)
            if state in seen:
                continue
            seen.add(state)
            yield state, path
            frontier.extend((read.table, nxt, [*path, read.via]) for read, nxt in self.step(table, as_role))
