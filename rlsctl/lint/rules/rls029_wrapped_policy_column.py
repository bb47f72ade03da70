from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from sqlglot import exp

from rlsctl.lint import exprs
from rlsctl.lint.model import LintModel, Relation, canonical_type
from rlsctl.lint.rule import Finding, Rule

COMPARISONS = (exp.EQ, exp.GT, exp.GTE, exp.LT, exp.LTE)  # what a btree index on the column could serve
ANCHORS = (*COMPARISONS, exp.In, exp.Between, exp.Is)
# Operators whose result is a new value: `team_id + 0 = ...` compares that value, not the column.
OPERATORS: dict[type[exp.Expression], str] = {
    exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/", exp.Mod: "%", exp.Neg: "unary -",
    exp.DPipe: "||", exp.BitwiseAnd: "&", exp.BitwiseOr: "|", exp.BitwiseXor: "#",
}  # fmt: skip
# Casts that leave a btree index on the column usable: text and varchar share their operators.
SAME_OPERATORS = ({"text", "varchar"},)


def _compatible(column_type: str, target: str) -> bool:
    a, b = column_type.rpartition(".")[2], target.rpartition(".")[2]
    return a == b or any({a, b} <= family for family in SAME_OPERATORS)


@lru_cache(maxsize=4096)
def normalised(sql: str) -> str:
    """An expression as index keys and policies both print it: no table qualifiers, no quotes, lower case."""
    tree = exprs.parse(sql)
    if tree is None:
        return " ".join(sql.lower().replace('"', "").split())
    tree = tree.copy()
    for column in tree.find_all(exp.Column):
        column.set("table", None)
    text = exprs.unwrap(tree).sql(dialect="postgres", identify=False)
    return " ".join(text.lower().replace('"', "").split())


class Wrapped:
    """How a comparison side reads the row: a bare column, or a column inside a function or a cast."""

    def __init__(self, model: LintModel, row: exprs.Row, relation: Relation | None) -> None:
        self.model, self.row, self.relation = model, row, relation

    def bare(self, node: exp.Expression) -> exp.Column | None:
        """The row's column a side is, under parentheses and casts that keep its index usable."""
        node = exprs.unwrap(node)
        if isinstance(node, exp.Cast | exp.TryCast) and self.cast_keeps_index(node):
            node = exprs.unwrap(node.this)
        return node if isinstance(node, exp.Column) and exprs.is_row_ref(node, self.row) else None

    def cast_keeps_index(self, cast: exp.Cast | exp.TryCast) -> bool:
        inner = exprs.unwrap(cast.this)
        if not isinstance(inner, exp.Column) or self.relation is None:
            return True
        column_type = self.relation.types.get(inner.name)
        if column_type is None:
            return True  # unknown type: never reported
        return _compatible(column_type, canonical_type(cast.to.sql(dialect="postgres")))

    def wrapper(self, node: exp.Expression) -> tuple[exp.Column, str] | None:
        """(column, how) when a side is one row column inside a built-in function or a type-changing cast."""
        node = exprs.unwrap(node)
        if isinstance(node, exp.Cast | exp.TryCast):
            inner = exprs.unwrap(node.this)
            if isinstance(inner, exp.Column) and exprs.is_row_ref(inner, self.row) and not self.cast_keeps_index(node):
                return inner, f"a cast to {node.to.sql(dialect='postgres').lower()}"
            return None
        operator = OPERATORS.get(type(node))
        if operator is None and (not isinstance(node, exp.Func) or exprs.user_function(node, self.model)):
            return None  # neither an operator nor a built-in function (a helper of yours: RLS018)
        if node.find(exp.Select) is not None:
            return None
        columns = {c.name: c for c in exprs.row_refs(node, self.row)}
        if len(columns) != 1:
            return None
        column = next(iter(columns.values()))
        if operator is not None:
            return column, f"the {operator} operator"
        return column, f"{exprs.function_name(node) or 'a function'}()"


def _free(node: exp.Expression | None, row: exprs.Row) -> bool:
    return node is None or not exprs.row_refs(node, row)


def _sides(term: exp.Expression) -> list[tuple[exp.Expression, list[exp.Expression]]]:
    """(side, the others) for each side of a comparison an index could serve."""
    if isinstance(term, COMPARISONS):
        return [(term.this, [term.expression]), (term.expression, [term.this])]
    if isinstance(term, exp.In):
        return [(term.this, [*term.expressions, term.args.get("query")])]
    if isinstance(term, exp.Between):
        return [(term.this, [term.args.get("low"), term.args.get("high")])]
    return []


class WrappedPolicyColumn(Rule):
    """A policy compares a column only inside a function, an operator or a cast: no index on the column serves it.

    PostgreSQL uses an index for a comparison only when one side is exactly
    the index's key. `tenant_id::text = (SELECT current_setting(...))` on an
    integer tenant_id, `lower(email) = ...`, `coalesce(team_id, 0) = ...`,
    `team_id + 0 = ...` or `created_at::date = ...` compare an expression, so the index on the bare
    column cannot serve them: when nothing else in the branch narrows the
    rows, every query on the table evaluates the policy on every row (a
    sequential scan), and `rlsctl explain` shows the index scan gone. Compare
    the bare column with a value of its own type, computed once
    (`tenant_id = (SELECT NULLIF(current_setting(...), '')::int)`: the cast
    moves to the side that runs once), or create an index on the expression.
    Casts between text and varchar keep the index usable and are not
    reported, nor are columns no index starts with (RLS010) and columns
    passed to a function of your own (RLS018). rlsctl's own policies never
    wrap a column.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id::text = (SELECT NULLIF(current_setting('app.tenant_id', true), '')));

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
    """

    id = "RLS029"
    name = "wrapped-policy-column"
    level = "warning"
    hint = (
        "Compare the bare column with a value of its type computed once, e.g. tenant_id = (SELECT "
        "NULLIF(current_setting('app.tenant_id', true), '')::int), or CREATE INDEX ON the table ((the expression))"
    )

    def check(self, model: LintModel) -> Iterator[Finding]:
        leads = exprs.index_leads(model)
        keys = expression_keys(model)
        for policy in model.policies:
            if not policy.permissive:  # AND-ed onto the permissive ones: they narrow the scan
                continue
            row = exprs.row_of(model, policy)
            wrapped = Wrapped(model, row, model.relations.get(policy.table_qualified))
            problems: list[str] = []
            for branch in exprs.or_branches(exprs.parse(policy.using)):
                terms = exprs.and_terms(branch)
                if any(_anchored(term, wrapped, leads, policy.table_qualified) for term in terms):
                    continue
                for term in terms:
                    for side, others in _sides(exprs.unwrap(term)):
                        found = wrapped.wrapper(side)
                        if found is None or not all(_free(other, row) for other in others):
                            continue
                        column, how = found
                        if (policy.table_qualified, column.name) not in leads:
                            continue  # no index to lose: RLS010
                        if normalised(side.sql(dialect="postgres")) in keys.get(policy.table_qualified, set()):
                            continue  # an index on the expression serves it
                        problems.append(
                            f"{exprs.short(side, 60)} compares {column.name} through {how}: its index cannot serve "
                            "the comparison"
                        )
            if problems:
                yield self.finding(
                    policy.qualified,
                    f"policy {policy.name} on {policy.table_qualified}: {'; '.join(dict.fromkeys(problems))}, "
                    f"so queries on {policy.table_qualified} evaluate the policy on every row",
                )


def _anchored(term: exp.Expression, wrapped: Wrapped, leads: set[tuple[str, str]], table: str) -> bool:
    """A term that lets an index narrow the scan: a bare indexed column compared with a value, or an EXISTS
    (RLS010 judges its lookup)."""
    term = exprs.unwrap(term)
    if isinstance(term, exp.Exists):
        return True
    if isinstance(term, exp.Is):
        column = wrapped.bare(term.this)
        return column is not None and (table, column.name) in leads
    for side, others in _sides(term):
        column = wrapped.bare(side)
        if column is not None and (table, column.name) in leads and all(_free(o, wrapped.row) for o in others):
            return True
    return False


def expression_keys(model: LintModel) -> dict[str, set[str]]:
    """schema.table -> the expressions its indexes lead with, normalised."""
    found: dict[str, set[str]] = {}
    for index in model.indexes:
        if index.expression:
            found.setdefault(f"{index.schema}.{index.table}", set()).add(normalised(index.expression))
    return found
