from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from sqlglot import exp

from rlsctl.lint import exprs
from rlsctl.lint.model import PUBLIC, LintModel, Policy, Relation
from rlsctl.lint.rule import Finding, Rule

COMPARISONS = (exp.EQ, exp.GT, exp.GTE, exp.LT, exp.LTE)  # IS NOT DISTINCT FROM uses no index


def _column(node: exp.Expression) -> exp.Column | None:
    """The column a predicate side is, under parentheses and casts (a cast to text keeps a text index usable)."""
    while isinstance(node, exp.Paren | exp.Cast | exp.TryCast):
        node = node.this
    return node if isinstance(node, exp.Column) else None


class Anchors:
    """Whether a predicate can drive an index scan on the policy's row: an equality (IN, = ANY), a range or
    IS NULL on an indexed column compared with something that does not read the row, or an EXISTS
    correlated on an indexed column. AND needs one anchored term, OR needs every branch anchored.

    An EXISTS never drives an index scan itself: PostgreSQL keeps a policy's subquery a SubPlan, run
    row by row or hashed, never a join. Alone or AND-ed it is anchored by the query's own filter on
    the column it correlates on (a `via` table is read through its parent's key); as a branch of an
    OR (`in_or`) it keeps the other branches from their indexes (a BitmapOr needs every branch to be
    an index scan), so it is not anchored whatever is indexed."""

    def __init__(self, leads: set[tuple[str, str]], table: str, row: exprs.Row) -> None:
        self.leads, self.table, self.row = leads, table, row

    def indexed_ref(self, node: exp.Expression) -> bool:
        column = _column(node)
        return column is not None and exprs.is_row_ref(column, self.row) and (self.table, column.name) in self.leads

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
            return self.indexed_ref(node.this) and self.free(*node.expressions, node.args.get("query"))
        if isinstance(node, exp.Between):
            return self.indexed_ref(node.this) and self.free(node.args.get("low"), node.args.get("high"))
        if isinstance(node, exp.Is):
            return self.indexed_ref(node.this)
        if isinstance(node, exp.Exists):
            return not in_or and any(
                self.indexed_ref(a) for eq in node.find_all(exp.EQ) for a in (eq.this, eq.expression)
            )
        return False

    def wanted(self, node: exp.Expression, in_or: bool = False) -> list[str]:
        """Unindexed columns whose indexes would let PostgreSQL scan by `node`, one index each: for an
        AND the first term that can be served (one anchored term suffices), for an OR every branch
        not anchored yet. A column compared with <>, through a function, or in a subquery is none:
        no index serves it."""
        node = exprs.unwrap(node)
        if self.anchored(node, in_or):
            return []
        if isinstance(node, exp.And):
            return next((found for term in exprs.and_terms(node) if (found := self.wanted(term, in_or))), [])
        if isinstance(node, exp.Or):
            return list(dict.fromkeys(c for branch in exprs.or_branches(node) for c in self.wanted(branch, True)))
        if isinstance(node, COMPARISONS):
            sides = ((node.this, node.expression), (node.expression, node.this))
            return next(([_name(a)] for a, b in sides if self.row_ref(a) and self.free(b)), [])
        if isinstance(node, exp.In) and self.row_ref(node.this):
            return [_name(node.this)] if self.free(*node.expressions, node.args.get("query")) else []
        if isinstance(node, exp.Between) and self.row_ref(node.this):
            return [_name(node.this)] if self.free(node.args.get("low"), node.args.get("high")) else []
        if isinstance(node, exp.Is) and self.row_ref(node.this):
            return [_name(node.this)]
        return []

    def row_ref(self, node: exp.Expression) -> bool:
        column = _column(node)
        return column is not None and exprs.is_row_ref(column, self.row)


def _name(node: exp.Expression) -> str:
    column = _column(node)
    assert column is not None
    return column.name


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


def narrowed(model: LintModel, same_table: list[Policy], policy: Policy, leads: set[tuple[str, str]]) -> bool:
    """Whether an anchored RESTRICTIVE policy is AND-ed onto this permissive one (for one of its roles and
    commands): the scan can use that policy's index, whatever this one filters on."""
    for other in same_table:
        if other.permissive or other.using is None:
            continue
        if not set(exprs.commands(other.command)) & set(exprs.commands(policy.command)):
            continue
        if PUBLIC not in other.roles and not set(other.roles) & set(policy.roles):
            continue
        row = exprs.row_of(model, other)
        anchors = Anchors(leads, other.table_qualified, row)
        tree = exprs.parse(other.using)
        if tree is not None and anchors.anchored(tree):
            return True
    return False


class UnindexedPolicyColumn(Rule):
    """A policy branch filters rows only on columns no index starts with, so every query scans the whole table.

    PostgreSQL applies a policy's USING as a filter: when the branch that
    scopes rows (tenant_id = ..., owner_id = ..., an EXISTS correlated on
    parent_id) compares an unindexed column, every query on the table reads
    all of it and evaluates the policy on each row, for every tenant. Each
    OR-branch needs its own index (a bitmap OR combines them). A
    low-cardinality discriminator ANDed with an indexed tenant predicate is
    fine, and so are EXISTS subqueries whose table is indexed on the column
    they look up. RESTRICTIVE policies are AND-ed onto the permissive ones:
    they need no index of their own, and an indexed one covers the
    permissive policies it narrows.

    An EXISTS is never an index scan of the policy's table: PostgreSQL runs a
    policy's subquery as a filter (per row, or hashed), never as a join. A
    policy that is one (a child table read through its parent's key) relies
    on the query's own filter on that key. As one branch of an OR whose other
    branches have indexes, it takes theirs away (a bitmap OR needs every
    branch to be an index scan), and no index can give them back: compare
    the column with an array, `col = ANY (ARRAY(SELECT ...))`, or accept
    the scan for queries that do not filter the table themselves.

    The indexes it proposes (`--write-index-phase`) are the ones that serve
    the branch: one on the first column of an AND compared by equality, IN,
    a range or IS NULL, one per branch of an OR; a column compared with <>,
    through a function or in a subquery gets none (no index serves it).

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
                anchors = Anchors(leads, policy.table_qualified, row)
                branches = exprs.or_branches(using)
                # A subquery branch costs an OR its index only when another branch has one to lose;
                # an OR of subqueries is read, as one subquery is, through the query's own filter.
                in_or = len(branches) > 1 and any(anchors.anchored(branch, in_or=True) for branch in branches)
                for branch in branches:
                    if anchors.anchored(branch, in_or):
                        continue
                    where = "USING" if len(branches) == 1 else f"the USING branch {exprs.short(branch, 70)}"
                    compared = exprs.row_refs(branch, row)
                    if in_or and compared and not _outside_subqueries(branch, row):
                        # No index on this table can serve a subquery: only another shape can.
                        problems.append(
                            f"{where} is a subquery, which PostgreSQL runs as a filter and never through an "
                            f"index: in an OR it keeps the other branches from theirs, and queries on "
                            f"{policy.table_qualified} that do not filter it themselves scan all of it; compare "
                            "the column with an array instead (column = ANY (ARRAY(SELECT ...)))"
                        )
                        continue
                    if in_or:
                        compared = _outside_subqueries(branch, row)
                    if not any((policy.table_qualified, c.name) not in leads for c in compared):
                        continue  # its columns are indexed: how it compares them is RLS029's and RLS014's
                    unindexed = anchors.wanted(branch, in_or)
                    if not unindexed:
                        problems.append(
                            f"{where} compares no unindexed column in a way an index could serve (an equality, "
                            f"IN, a range or IS NULL against a value that does not read the row), so no index "
                            f"helps: queries on {policy.table_qualified} that do not filter it themselves scan "
                            "all of it"
                        )
                        continue
                    indexes += [(policy.schema, policy.table, (column,)) for column in unindexed]
                    problems.append(
                        f"{where} filters on {', '.join(unindexed)}, which no index starts with: queries on "
                        f"{policy.table_qualified} scan all of it"
                    )
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
