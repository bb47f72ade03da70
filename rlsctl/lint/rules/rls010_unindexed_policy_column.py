from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from sqlglot import exp

from rlsctl.lint import exprs
from rlsctl.lint.model import PUBLIC, LintModel, Policy, Relation
from rlsctl.lint.rule import Finding, Rule
from rlsctl.lint.rules.rls029_wrapped_policy_column import Wrapped, expression_keys, normalised

COMPARISONS = (exp.EQ, exp.GT, exp.GTE, exp.LT, exp.LTE)  # IS NOT DISTINCT FROM uses no index
# What may stand between a branch and its column for the column to count as compared as it is.
PREDICATES = (exp.Paren, exp.And, exp.Or, exp.Not, *COMPARISONS, exp.NEQ, exp.NullSafeEQ, exp.NullSafeNEQ,
              exp.In, exp.Between, exp.Is, exp.Cast, exp.TryCast)  # fmt: skip


def _column(node: exp.Expression) -> exp.Column | None:
    """The column a predicate side is, under parentheses and casts (a cast to text keeps a text index usable)."""
    while isinstance(node, exp.Paren | exp.Cast | exp.TryCast):
        node = node.this
    return node if isinstance(node, exp.Column) else None


class Anchors:
    """Whether a predicate can drive an index scan on the policy's row: an equality (IN a list, = ANY), a
    range, IS NULL or a boolean test on an indexed column (or an indexed expression) compared with
    something that does not read the row, or an EXISTS correlated on an indexed column. AND needs one
    anchored term, OR needs every branch anchored.

    A subquery never drives an index scan itself: PostgreSQL keeps a policy's subquery a SubPlan, run
    row by row or hashed, never a join. `col IN (SELECT ...)` is one (`col = ANY (ARRAY(SELECT ...))`
    is not). An EXISTS alone or AND-ed is anchored by the query's own filter on the column it
    correlates on (a `via` table is read through its parent's key); as a branch of an OR (`in_or`)
    it keeps the other branches from their indexes (a BitmapOr needs every branch to be an index
    scan), so it is not anchored whatever is indexed."""

    def __init__(self, leads: set[tuple[str, str]], table: str, row: exprs.Row, wrapped: Wrapped,
                 expressions: set[str]) -> None:  # fmt: skip
        self.leads, self.table, self.row, self.wrapped, self.expressions = leads, table, row, wrapped, expressions

    def indexed_ref(self, node: exp.Expression) -> bool:
        column = _column(node)
        if column is not None:
            return exprs.is_row_ref(column, self.row) and (self.table, column.name) in self.leads
        node = exprs.unwrap(node)  # lower(email) with an index on lower(email)
        return bool(exprs.row_refs(node, self.row)) and normalised(node.sql(dialect="postgres")) in self.expressions

    def free(self, *nodes: exp.Expression | None) -> bool:
        return all(n is None or not exprs.row_refs(n, self.row) for n in nodes)

    def anchored(self, node: exp.Expression, in_or: bool = False) -> bool:
        node = exprs.unwrap(node)
        if isinstance(node, exp.And):
            return any(self.anchored(term, in_or) for term in exprs.and_terms(node))
        if isinstance(node, exp.Or):
            return all(self.anchored(branch, in_or=True) for branch in exprs.or_branches(node))
        if isinstance(node, COMPARISONS):
            return any(
                self.indexed_ref(a) and self.free(b)
                for a, b in ((node.this, node.expression), (node.expression, node.this))
            )
        if isinstance(node, exp.In):
            if node.args.get("query") is not None:
                return False  # a subquery, hashed: never an index condition
            return self.indexed_ref(node.this) and self.free(*node.expressions)
        if isinstance(node, exp.Between):
            return self.indexed_ref(node.this) and self.free(node.args.get("low"), node.args.get("high"))
        if isinstance(node, exp.Is | exp.Not):
            return self.indexed_ref(node.this)  # IS NULL; NOT flag
        if isinstance(node, exp.Column):
            return self.indexed_ref(node)  # a boolean column: flag = true
        if isinstance(node, exp.Exists):
            return not in_or and bool(self.correlated(node, indexed=True))
        return False

    def correlated(self, node: exp.Exists, indexed: bool) -> list[str]:
        """The row's columns an EXISTS correlates on by equality, indexed or not."""
        found = [
            column.name
            for eq in node.find_all(exp.EQ)
            for side in (eq.this, eq.expression)
            if (column := _column(side)) is not None and exprs.is_row_ref(column, self.row)
            and ((self.table, column.name) in self.leads) == indexed
        ]  # fmt: skip
        return list(dict.fromkeys(found))

    def wanted(self, node: exp.Expression, in_or: bool = False) -> list[str]:
        """Unindexed columns whose indexes would let PostgreSQL scan by `node`, one index each: for an
        AND the first term that can be served (terms against a value of the session before those
        against a constant: `status = 'active'` rarely narrows), for an OR every branch not anchored
        yet, for an EXISTS alone the columns it correlates on. A column compared with <>, through a
        function or a type-changing cast, or with a subquery is none: no index serves it."""
        node = exprs.unwrap(node)
        if self.anchored(node, in_or):
            return []
        if isinstance(node, exp.And):
            terms = sorted(exprs.and_terms(node), key=_against_constant)
            return next((found for term in terms if (found := self.wanted(term, in_or))), [])
        if isinstance(node, exp.Or):
            return list(dict.fromkeys(c for branch in exprs.or_branches(node) for c in self.wanted(branch, True)))
        if isinstance(node, COMPARISONS):
            sides = ((node.this, node.expression), (node.expression, node.this))
            return next(([column.name] for a, b in sides if (column := self.bare(a)) and self.free(b)), [])
        if isinstance(node, exp.In) and node.args.get("query") is None and (column := self.bare(node.this)):
            return [column.name] if self.free(*node.expressions) else []
        if isinstance(node, exp.Between) and (column := self.bare(node.this)):
            return [column.name] if self.free(node.args.get("low"), node.args.get("high")) else []
        if isinstance(node, exp.Is | exp.Not) and (column := self.bare(node.this)):
            return [column.name]
        if isinstance(node, exp.Column) and (column := self.bare(node)):
            return [column.name]
        if isinstance(node, exp.Exists) and not in_or:
            return self.correlated(node, indexed=False)
        return []

    def bare(self, node: exp.Expression) -> exp.Column | None:
        """The row's column a side is, under casts that keep its index usable (RLS029's judgement)."""
        return self.wrapped.bare(node)

    def unservable(self, branch: exp.Expression) -> bool:
        """Whether the branch compares a column as it is with a value of the session or a constant, but
        by an operator no b-tree serves (<>, IS [NOT] DISTINCT FROM): no index can help it."""
        for node in branch.find_all(exp.NEQ, exp.NullSafeEQ, exp.NullSafeNEQ):
            if node.find_ancestor(exp.Exists, exp.Select) is not None:
                continue
            for a, b in ((node.this, node.expression), (node.expression, node.this)):
                if self.bare(a) is not None and self.free(b):
                    return True
        return False

    def as_is(self, column: exp.Column, branch: exp.Expression) -> bool:
        """Whether the branch compares the column as it is: no function, arithmetic or type-changing
        cast around it (`status <> 'x'`, `id IS NOT DISTINCT FROM ...`, not `lower(email) = ...`)."""
        node: exp.Expression = column
        while node is not branch and node.parent is not None:
            node = node.parent
            if isinstance(node, exp.Cast | exp.TryCast) and not self.wrapped.cast_keeps_index(node):
                return False
            if not isinstance(node, PREDICATES):
                return False
        return True


def _against_constant(term: exp.Expression) -> bool:
    """A comparison whose other side is a literal (`status = 'active'`): indexing it narrows little."""
    term = exprs.unwrap(term)
    sides = [term.args.get(k) for k in ("expression", "expressions", "low", "high") if term.args.get(k) is not None]
    flat = [x for side in sides for x in (side if isinstance(side, list) else [side])]
    return bool(flat) and all(isinstance(_uncast(x), exp.Literal | exp.Boolean | exp.Null) for x in flat)


def _uncast(node: exp.Expression) -> exp.Expression:
    """`'active'::text` (as the catalog prints a literal) is the literal."""
    node = exprs.unwrap(node)
    while isinstance(node, exp.Cast | exp.TryCast):
        node = exprs.unwrap(node.this)
    return node


def _outside_subqueries(branch: exp.Expression, row: exprs.Row) -> list[exp.Column]:
    """The row's columns a branch compares itself, not inside one of its EXISTS."""
    return [c for c in exprs.row_refs(branch, row) if c.find_ancestor(exp.Exists) is None]


def _inner_gaps(select: exp.Select, relation: Relation, alias: str, leads: set[tuple[str, str]]) -> list[str]:
    """Columns of a subquery's table its WHERE compares by equality, when none of them is indexed."""
    where = select.args.get("where")
    if where is None:
        return []
    compared: list[str] = []
    for term in exprs.and_terms(where.this):
        if not isinstance(term, exp.EQ | exp.In | exp.NullSafeEQ):
            continue
        for side in (term.this, term.expression):
            column = _column(side) if side is not None else None
            if column is None or column.find_ancestor(exp.Select) is not select:
                continue
            if column.table == alias or (not column.table and column.name in relation.columns):
                compared.append(column.name)
    if not compared or any((relation.qualified, c) in leads for c in compared):
        return []
    return sorted(set(compared))


def overlapping(same_table: list[Policy], policy: Policy, permissive: bool) -> Iterator[Policy]:
    """The other policies of the table, permissive or restrictive, that apply with this one (a command
    in common, and a role): PostgreSQL ORs the permissive ones and ANDs the restrictive ones onto them.
    A restrictive policy narrows this one only if it covers one of this one's roles (its own PUBLIC,
    or a role they share): a permissive policy for PUBLIC is not narrowed, for every other role, by a
    restrictive one for the app role. A permissive one ORed with this one may come from either side."""
    for other in same_table:
        if other is policy or other.permissive != permissive or other.using is None:
            continue
        if not set(exprs.commands(other.command)) & set(exprs.commands(policy.command)):
            continue
        public = PUBLIC in other.roles or (permissive and PUBLIC in policy.roles)
        if not public and not set(other.roles) & set(policy.roles):
            continue
        yield other


def _anchors(model: LintModel, policy: Policy, leads: set[tuple[str, str]]) -> Anchors:
    row = exprs.row_of(model, policy)
    relation = model.relations.get(policy.table_qualified)
    expressions = expression_keys(model).get(policy.table_qualified, set())
    return Anchors(leads, policy.table_qualified, row, Wrapped(model, row, relation), expressions)


def narrowed(model: LintModel, same_table: list[Policy], policy: Policy, leads: set[tuple[str, str]]) -> bool:
    """Whether an anchored RESTRICTIVE policy is AND-ed onto this permissive one (for one of its roles and
    commands): the scan can use that policy's index, whatever this one filters on. A restrictive
    subquery anchors nothing (it is a filter, not an index condition)."""
    for other in overlapping(same_table, policy, permissive=False):
        tree = exprs.parse(other.using)
        if tree is not None and _anchors(model, other, leads).anchored(tree, in_or=True):
            return True
    return False


class UnindexedPolicyColumn(Rule):
    """A policy branch filters rows only on columns no index starts with, so every query scans the whole table.

    PostgreSQL applies a policy's USING as a filter: when the branch that
    scopes rows (tenant_id = ..., owner_id = ..., an EXISTS correlated on
    parent_id) compares an unindexed column, every query on the table reads
    all of it and evaluates the policy on each row, for every tenant. Each
    OR-branch needs its own index (a bitmap OR combines them), and so does
    each permissive policy, which PostgreSQL ORs with the others. A
    low-cardinality discriminator ANDed with an indexed tenant predicate is
    fine, and so are EXISTS subqueries whose table is indexed on the column
    they look up. RESTRICTIVE policies are AND-ed onto the permissive ones:
    they need no index of their own, and an indexed one covers the
    permissive policies it narrows. An index counts when it can serve the
    comparison: a valid b-tree led by the column (or by the expression the
    policy compares, `lower(email)`), not partial unless its predicate
    tests that column alone; a hash, BRIN, partial or invalid index (a
    failed concurrent build) does not.

    A subquery is never an index scan of the policy's table: PostgreSQL runs
    a policy's subquery as a filter (per row, or hashed), never as a join.
    `col IN (SELECT ...)` is reported with its remedy, `col = ANY
    (ARRAY(SELECT ...))`, which an index on col serves. An EXISTS alone (a
    child table read through its parent's key) relies on the query's own
    filter on the column it correlates on, which needs the index. As one
    branch of an OR whose other branches have indexes (or next to another
    permissive policy that has one), it takes theirs away (a bitmap OR needs
    every branch to be an index scan), and no index can give them back:
    compare the column with an array, or accept the scan for queries that
    do not filter the table themselves.

    The indexes it proposes (`--write-index-phase`) are the ones that serve
    the branch: one on the first column of an AND compared by equality, IN
    a list, a range, IS NULL or as a boolean (a comparison with a value of
    the session before one with a constant), one per branch of an OR. A
    column compared with <> or IS [NOT] DISTINCT FROM, through a function,
    arithmetic or a type-changing cast, or in a subquery gets none, and the
    finding says so (RLS029 reports a wrapped column that is indexed).

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL, status text NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int)
                   AND status <> 'deleted');
    """

    id = "RLS010"
    name = "unindexed-policy-column"
    level = "warning"
    hint = "CREATE INDEX ON the table (the column the branch scopes by); for an EXISTS, index the column it looks up"

    def branches(
        self, model: LintModel, policy: Policy, using: exp.Expression, anchors: Anchors, same_table: list[Policy]
    ) -> tuple[list[str], list[tuple[str, str, tuple[str, ...]]]]:
        """What each unanchored OR-branch of a permissive USING lacks, and the indexes that would serve it."""
        row, table = anchors.row, policy.table_qualified
        problems: list[str] = []
        indexes: list[tuple[str, str, tuple[str, ...]]] = []
        branches = exprs.or_branches(using)
        # A subquery costs an OR its index only when another branch, or another permissive policy
        # (PostgreSQL ORs them), has one to lose; an OR of subqueries is read, as one subquery is,
        # through the query's own filter.
        others = [t for o in overlapping(same_table, policy, permissive=True) if (t := exprs.parse(o.using))]
        in_or = any(anchors.anchored(t, in_or=True) for t in others) or (
            len(branches) > 1 and any(anchors.anchored(branch, in_or=True) for branch in branches)
        )
        for branch in branches:
            if anchors.anchored(branch, in_or) or not exprs.row_refs(branch, row):
                continue
            where = "USING" if len(branches) == 1 else f"the USING branch {exprs.short(branch, 70)}"
            if in_or and not _outside_subqueries(branch, row):
                # No index on this table can serve a subquery: only another shape can.
                problems.append(
                    f"{where} is a subquery, which PostgreSQL runs as a filter and never through an index: in an OR "
                    f"(or next to another permissive policy) it keeps the other branches from their indexes, and "
                    f"queries on {table} that do not filter it themselves scan all of it; compare the column "
                    "with an array instead (column = ANY (ARRAY(SELECT ...)))"
                )
                continue
            unindexed = anchors.wanted(branch, in_or)
            subqueries = [
                n for n in branch.find_all(exp.In) if n.args.get("query") is not None and anchors.bare(n.this)
            ]
            if unindexed:
                indexes += [(policy.schema, policy.table, (column,)) for column in unindexed]
                problems.append(
                    f"{where} filters on {', '.join(unindexed)}, which no index starts with: queries on "
                    f"{table} scan all of it"
                )
            elif subqueries:
                column = anchors.bare(subqueries[0].this)
                assert column is not None
                problems.append(
                    f"{where} compares {column.name} with IN (SELECT ...), a subquery PostgreSQL runs as a filter "
                    f"and never through an index: write {column.name} = ANY (ARRAY(SELECT ...)), which an index "
                    f"on {column.name} serves; as it is, queries on {table} that do not filter it scan all of it"
                )
            elif wrapped := sorted(
                {c.name for c in _outside_subqueries(branch, row) if not anchors.as_is(c, branch)}
                - {column for (t, column) in anchors.leads if t == table}
            ):
                # Indexed, such a column is RLS029's finding; unindexed, nobody else's.
                problems.append(
                    f"{where} compares {', '.join(wrapped)} through a function, arithmetic or a type-changing cast, "
                    f"which no index on the column serves: queries on {table} that do not filter it themselves "
                    "scan all of it; compare the column itself with a value of its type, or index the expression"
                )
            elif anchors.unservable(branch):
                problems.append(
                    f"{where} compares its column by an operator no index serves (<>, IS [NOT] DISTINCT FROM) and in "
                    f"no other way an index could serve (an equality, IN a list, a range, IS NULL, a boolean test), "
                    f"so no index helps: "
                    f"queries on {table} that do not filter it themselves scan all of it"
                )
        return problems, indexes

    def check(self, model: LintModel) -> Iterator[Finding]:
        leads = exprs.index_leads(model)
        by_table = exprs.policies_by_table(model)
        for policy in model.policies:
            row = exprs.row_of(model, policy)
            using, check = exprs.parse(policy.using), exprs.parse(policy.check)
            if not exprs.row_refs(using, row) and not exprs.row_refs(check, row):
                continue  # scopes nothing by the row: RLS007
            problems: list[str] = []
            indexes: list[tuple[str, str, tuple[str, ...]]] = []
            if (
                policy.permissive
                and exprs.row_refs(using, row)
                and not narrowed(model, by_table[policy.table_qualified], policy, leads)
            ):
                anchors = _anchors(model, policy, leads)
                problems, indexes = self.branches(model, policy, using, anchors, by_table[policy.table_qualified])
            for label, tree in (("USING", using), ("WITH CHECK", check)):
                if tree is None:
                    continue
                for exists in tree.find_all(exp.Exists):
                    select = exists.this
                    if not isinstance(select, exp.Select) or not exprs.row_refs(select, row):
                        continue
                    sources = exprs.select_sources(select)
                    if len(sources) != 1 or not isinstance(sources[0], exp.Table):
                        continue
                    source = sources[0]
                    name = f"{source.db}.{source.name}" if source.db else source.name
                    relation = exprs.resolve_relation(model, name, policy.schema)
                    if relation is None or not relation.is_table:
                        continue
                    gaps = _inner_gaps(select, relation, source.alias_or_name, leads)
                    if gaps:
                        indexes.append((relation.schema, relation.name, tuple(gaps)))
                        problems.append(
                            f"the EXISTS in {label} looks up {relation.qualified} by {', '.join(gaps)}, which no "
                            f"index starts with: each lookup scans {relation.qualified}"
                        )
            if problems:
                found = self.finding(
                    policy.qualified,
                    f"policy {policy.name} on {policy.table_qualified}: {'; '.join(dict.fromkeys(problems))}",
                )
                yield replace(found, indexes=tuple(dict.fromkeys(indexes)))
