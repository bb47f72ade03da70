"""Policy expressions, analysed with sqlglot.

Expressions arrive as SQL text: from pg_get_expr (live) or deparsed by
pglast (SQL files). sqlglot parses them into a tree the rules query:
which columns of the row an expression scopes by, which functions it calls
per row, which tables its subqueries read.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache

import sqlglot
from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.tokens import TokenType

from rlsctl.lint.model import Function, LintModel, Policy, Relation

SQLGLOT_LOG = logging.getLogger("sqlglot")
SETTING_FUNCTIONS = ("current_setting",)
CHEAP_PER_ROW = {  # pg_catalog functions that cost nothing per row and read no session state
    "coalesce", "nullif", "lower", "upper", "length", "array_position", "cast", "abs", "greatest", "least",
}  # fmt: skip


@lru_cache(maxsize=4096)
def parse(text: str | None) -> exp.Expression | None:
    if text is None:
        return None
    tree = _parse_quietly(text)
    if tree is not None and not isinstance(tree, exp.Command):
        return tree
    # An expression that starts with a name sqlglot reads as a statement's keyword (a table called
    # comment, set, show, call...: `comment.author_id = ...`) parses as a command, or not at all:
    # read it where only an expression can stand, and detach it from that SELECT. The text is the
    # server's own (pg_get_expr, pglast): sqlglot parses it here, nothing is sent to a server.
    for candidate in (text, _quoted_qualifiers(text)):  # the second: `describe.a`, `insert.a`
        wrapped = _parse_quietly(f"SELECT ({candidate})")
        if isinstance(wrapped, exp.Select) and len(wrapped.expressions) == 1:
            found = wrapped.expressions[0]
            return (found.this if isinstance(found, exp.Paren) else found).copy()
    return None


def _quoted_qualifiers(text: str) -> str:
    """`text` with each bare word before a dot double-quoted: the same name to PostgreSQL (an
    unquoted name comes out of pg_get_expr or pglast only when lower case), never a keyword to
    sqlglot."""
    try:
        tokens = Postgres().tokenize(text)
    except sqlglot.errors.SqlglotError:
        return text
    pieces, done = [], 0
    for token, following in itertools.pairwise(tokens):
        bare = token.token_type != TokenType.IDENTIFIER and re.fullmatch(r"[a-z_][a-z0-9_$]*", token.text)
        if following.token_type == TokenType.DOT and bare:
            pieces += [text[done : token.start], f'"{token.text}"']
            done = token.end + 1
    return "".join(pieces) + text[done:]


def _parse_quietly(text: str) -> exp.Expression | None:
    """sqlglot's tree of `text`, or None; without the warning it logs when it falls back to a command."""
    level = SQLGLOT_LOG.level
    SQLGLOT_LOG.setLevel(logging.ERROR)
    try:
        return sqlglot.parse_one(text, read="postgres")
    except sqlglot.errors.SqlglotError:
        return None
    finally:
        SQLGLOT_LOG.setLevel(level)


def unwrap(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def function_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return node.sql_name().lower() if isinstance(node, exp.Func) else ""


def subquery_tables(tree: exp.Expression | None) -> set[str]:
    """Tables read in FROM clauses inside the expression (schema.table when qualified)."""
    if tree is None:
        return set()
    return {
        f"{t.db}.{t.name}" if t.db else t.name
        for t in tree.find_all(exp.Table)
        if t.name and t.find_ancestor(exp.Select)
    }


def or_branches(tree: exp.Expression | None) -> list[exp.Expression]:
    if tree is None:
        return []
    node = unwrap(tree)
    if isinstance(node, exp.Or):
        return or_branches(node.this) + or_branches(node.expression)
    return [node]


def and_terms(node: exp.Expression) -> list[exp.Expression]:
    node = unwrap(node)
    if isinstance(node, exp.And):
        return and_terms(node.this) + and_terms(node.expression)
    return [node]


# -- the policy's own row ------------------------------------------------------------
#
# A policy expression reads its row through bare column names (pg_get_expr) or
# names qualified with the table's name (pglast keeps what was written); inside
# a subquery a bare name belongs to the subquery's tables first, and an outer
# reference is qualified with the policy's table name.

SESSION_FUNCTIONS = {  # pg_catalog functions that read session state and cost a lookup on every call
    "current_setting", "set_config", "pg_has_role", "row_security_active", "has_table_privilege",
    "has_column_privilege", "has_any_column_privilege", "has_schema_privilege", "has_function_privilege",
    "has_database_privilege", "has_sequence_privilege", "has_type_privilege",
}  # fmt: skip
BUILTIN_SCHEMAS = ("pg_catalog", "information_schema")
PATTERN_MATCHES = (exp.Like, exp.ILike, exp.RegexpLike, exp.RegexpILike, exp.SimilarTo)
SESSION_BODY = re.compile(  # what in a function body reads the session: settings, the user, the clock
    r"\b(current_setting|set_config|current_user|session_user|current_role|pg_has_role|current_timestamp|"
    r"transaction_timestamp|statement_timestamp|clock_timestamp|localtimestamp|auth\.\w+|request\.jwt)\b"
    r"|\b(now)\s*\(",
    re.I,
)


@dataclass(frozen=True)
class Row:
    """The policy's table as its expressions see it."""

    schema: str
    table: str
    columns: frozenset[str]  # empty when the table is unknown to the model
    model: LintModel = field(compare=False, hash=False, repr=False)

    def has(self, column: str) -> bool:
        return not self.columns or column in self.columns


def row_of(model: LintModel, policy: Policy) -> Row:
    relation = model.relations.get(policy.table_qualified)
    return Row(policy.schema, policy.table, frozenset(relation.columns if relation else ()), model)


def resolve_relation(model: LintModel, name: str, default_schema: str) -> Relation | None:
    """The relation a (possibly unqualified) name in an expression reads: its schema, the policy's, public."""
    schema, _, table = name.rpartition(".")
    if schema:
        return model.relations.get(f"{schema}.{table}")
    for candidate in (default_schema, "public"):
        if f"{candidate}.{table}" in model.relations:
            return model.relations[f"{candidate}.{table}"]
    found = [r for r in model.relations.values() if r.name == table]
    return found[0] if len(found) == 1 else None


def select_sources(select: exp.Select) -> list[exp.Expression]:
    """What a SELECT reads: its FROM item and joined items (tables, derived tables, functions)."""
    found: list[exp.Expression] = []
    from_ = select.args.get("from_") or select.args.get("from")
    if from_ is not None:
        found.append(from_.this)
    found.extend(join.this for join in select.args.get("joins") or ())
    return found


def _binds(source: exp.Expression, row: Row, qualifier: str | None, column: str) -> bool:
    """Whether a FROM item of a subquery provides `qualifier.column` (or a bare `column`)."""
    if qualifier is not None:
        return source.alias_or_name.lower() == qualifier.lower()
    if isinstance(source, exp.Table) and source.name:
        relation = resolve_relation(row.model, f"{source.db}.{source.name}" if source.db else source.name, row.schema)
        if relation is not None and relation.columns:
            return column in relation.columns
    return True  # unknown columns: assume the subquery's own


def is_row_ref(column: exp.Column, row: Row) -> bool:
    """Whether a column reference reads the policy's row (directly or correlated from a subquery)."""
    qualifier = column.table or None
    if qualifier is not None and qualifier.lower() != row.table.lower():
        return False
    node = column.parent
    while node is not None:
        if isinstance(node, exp.Select) and any(_binds(s, row, qualifier, column.name) for s in select_sources(node)):
            return False
        node = node.parent
    return row.has(column.name)


def row_refs(tree: exp.Expression | None, row: Row) -> list[exp.Column]:
    if tree is None:
        return []
    return [c for c in tree.find_all(exp.Column) if is_row_ref(c, row)]


def row_names(tree: exp.Expression | None, row: Row) -> set[str]:
    return {c.name for c in row_refs(tree, row)}


def hoisted(node: exp.Expression, row: Row) -> bool:
    """Whether a node sits in a subquery that reads nothing of the row: PostgreSQL runs it once (InitPlan)."""
    parent = node.parent
    while parent is not None:
        if isinstance(parent, exp.Select) and not row_refs(parent, row):
            return True
        parent = parent.parent
    return False


def constant_subquery(node: exp.Expression) -> exp.Expression | None:
    """The constant of `(SELECT <constant>)`: a value at run time, a parameter the planner cannot see into."""
    node = unwrap(node)
    if isinstance(node, exp.Subquery):
        node = node.this
    if not isinstance(node, exp.Select) or len(node.expressions) != 1:
        return None
    # A bare SELECT of one literal: with a WHERE, LIMIT, OFFSET, HAVING... it may return no row (NULL)
    if any(node.args.get(key) for key in node.args if key not in ("expressions", "kind")):
        return None
    value = node.expressions[0]
    value = value.this if isinstance(value, exp.Alias) else value
    return value if isinstance(value, exp.Literal | exp.Boolean) else None


def false_at_run_time(term: exp.Expression) -> bool:
    """`(SELECT 1) <> 1` (rlsctl's plan hint) or `NOT (SELECT true)`: false, whatever the row."""
    term = unwrap(term)
    if isinstance(term, exp.NEQ):
        value = constant_subquery(term.this)
        return value is not None and isinstance(term.expression, exp.Literal) and value == term.expression
    if isinstance(term, exp.Not):
        value = constant_subquery(term.this)
        return isinstance(value, exp.Boolean) and value.this is True
    return False


def switched_off(node: exp.Expression) -> bool:
    """Whether the node sits in a conjunction with a term that is false at run time: rlsctl's plan
    hint (docs/performance.md#plan-hints). AND stops at that false term, so the node is never
    evaluated per row; the planner only estimates it (and may run it once, as an index condition)."""
    parent = node.parent
    while parent is not None:
        if isinstance(parent, exp.And):
            terms = and_terms(parent)
            holder = next((i for i, term in enumerate(terms) if _inside(node, term)), None)
            # PostgreSQL evaluates AND's terms in order: only a false term before the node stops it.
            if holder is not None and any(false_at_run_time(term) for term in terms[:holder]):
                return True
        parent = parent.parent
    return False


def _inside(node: exp.Expression, ancestor: exp.Expression) -> bool:
    while node is not None:
        if node is ancestor:
            return True
        node = node.parent
    return False


IDENTITY_COMPARISONS = (exp.EQ, exp.NullSafeEQ, exp.In)
RANGE_COMPARISONS = (exp.NEQ, exp.NullSafeNEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between, *PATTERN_MATCHES)


def is_constant_expr(node: exp.Expression) -> bool:
    """Literals, NULL, booleans, casts and arrays of them: nothing that depends on the session or on data."""
    for child in node.walk():
        if isinstance(child, exp.Column | exp.Select | exp.Subquery):
            return False
        if isinstance(child, exp.Func) and not isinstance(child, exp.Cast | exp.TryCast | exp.Array):
            return False
    return True


def scoping_columns(tree: exp.Expression | None, row: Row, ranges: bool = True) -> set[str]:
    """Row columns the expression compares with something that is neither a constant nor the row itself
    (the session's identity, a subquery, another table's row), or passes to a helper function: the columns
    that decide whose rows these are. `level = 'admin'` scopes nothing; `team_id = ANY ((SELECT ...))`,
    `_r1.id = doc.parent_id` in an EXISTS and `is_member(team_id)` do. With `ranges`, also <, >, <>,
    BETWEEN and pattern matches (a retention window compares with `now()`)."""
    if tree is None:
        return set()
    kinds = IDENTITY_COMPARISONS + (RANGE_COMPARISONS if ranges else ())
    found: set[str] = set()
    for node in tree.find_all(*kinds):
        sides = [node.this, node.args.get("expression"), node.args.get("query"), node.args.get("low"),
                 node.args.get("high"), *(node.expressions or [])]  # fmt: skip
        sides = [side for side in sides if side is not None]
        for side in sides:
            refs = row_refs(side, row)
            if refs and any(
                other is not side and not is_constant_expr(other) and not row_refs(other, row) for other in sides
            ):
                found |= {r.name for r in refs}
    for call in tree.find_all(exp.Anonymous):
        found |= {c.name for c in row_refs(call, row)}
    return found


# -- per-model lookups (a catalog of thousands of tables: group once, not per table) -----------------------


def policies_by_table(model: LintModel) -> dict[str, list[Policy]]:
    found: dict[str, list[Policy]] = {}
    for policy in model.policies:
        found.setdefault(policy.table_qualified, []).append(policy)
    return found


def index_leads(model: LintModel) -> set[tuple[str, str]]:
    """(schema.table, column) for every column that leads an index the planner can use for a filter on it,
    or the primary key: a valid b-tree, not partial unless its predicate reads that column alone
    (`(published) WHERE published`, which a policy on `published` is written to imply; `(tenant_id)
    WHERE archived_at IS NULL` serves no filter that says nothing of archived_at)."""
    found = {
        (f"{i.schema}.{i.table}", i.columns[0])
        for i in model.indexes
        if i.usable_btree and (i.predicate is None or _reads_only(i.predicate, i.columns[0]))
    }
    found |= {(r.qualified, r.primary_key[0]) for r in model.relations.values() if r.primary_key}
    # A partitioned parent's index is built on every partition, those attached later too: a SQL file
    # shows it on the parent only (the live catalog lists each partition's copy).
    for relation in model.relations.values():
        ancestor = relation.parent
        while ancestor is not None:
            found |= {(relation.qualified, column) for table, column in list(found) if table == ancestor}
            parent = model.relations.get(ancestor)
            ancestor = parent.parent if parent is not None else None
    return found


def _reads_only(predicate: str, column: str) -> bool:
    """Whether an index predicate reads no column but `column` (unparsable: no)."""
    tree = parse(predicate)
    return tree is not None and {c.name for c in tree.find_all(exp.Column)} <= {column}


# -- calls -------------------------------------------------------------------------------


def call_schema(node: exp.Expression, model: LintModel) -> str:
    """The schema of a called function: as written, else pg_catalog live (the catalog is read with
    search_path pg_catalog, so anything else is qualified), else a function the SQL created by that name."""
    if not isinstance(node, exp.Anonymous):
        return "pg_catalog"  # sqlglot knows it: a built-in
    parent = node.parent
    if isinstance(parent, exp.Dot) and parent.expression is node:
        return parent.this.name
    if not model.live:
        for function in model.functions.values():
            if function.name == node.name and function.schema not in BUILTIN_SCHEMAS:
                return function.schema
    return "pg_catalog"


def call_label(node: exp.Expression, model: LintModel) -> str:
    schema = call_schema(node, model)
    name = node.name if isinstance(node, exp.Anonymous) else function_name(node)
    return name if schema == "pg_catalog" else f"{schema}.{name}"


def anonymous_calls(tree: exp.Expression | None) -> list[exp.Anonymous]:
    """Calls sqlglot does not model: user functions and the built-ins it does not know (current_setting...)."""
    return [] if tree is None else list(tree.find_all(exp.Anonymous))


def user_function(node: exp.Expression, model: LintModel) -> bool:
    return isinstance(node, exp.Anonymous) and call_schema(node, model) not in BUILTIN_SCHEMAS


def functions_called(node: exp.Anonymous, model: LintModel) -> list[Function]:
    """The model's functions a call may resolve to (same schema and name, enough parameters: some may have
    defaults)."""
    schema = call_schema(node, model)
    count = len(node.expressions)
    return [
        f for f in model.functions.values()
        if f.schema == schema and f.name == node.name and len([a for a in f.args.split(",") if a.strip()]) >= count
    ]  # fmt: skip


def is_setting_call(node: exp.Expression) -> bool:
    return isinstance(node, exp.Anonymous) and node.name.lower() in SETTING_FUNCTIONS


def setting_name(call: exp.Expression) -> str:
    args = call.expressions if isinstance(call, exp.Anonymous) else []
    if not args:
        return "?"
    first = args[0]
    while isinstance(first, exp.Cast | exp.Paren):
        first = first.this
    return first.name if isinstance(first, exp.Literal) else first.sql(dialect="postgres")


def reads_identity(node: exp.Expression, model: LintModel) -> bool:
    """Whether an expression derives from the session's identity: current_setting, or a helper reading it."""
    for call in node.find_all(exp.Anonymous):
        if is_setting_call(call):
            return True
        if user_function(call, model):
            schema = call_schema(call, model)
            if schema == "auth" or any(SESSION_BODY.search(f.body) for f in functions_called(call, model)):
                return True
    return False


def strip(node: exp.Expression) -> exp.Expression:
    """Drop parentheses, casts, aliases and a scalar subquery wrapper: `(SELECT x::int)` is x."""
    while True:
        if isinstance(node, exp.Paren | exp.Cast | exp.TryCast | exp.Alias):
            node = node.this
        elif isinstance(node, exp.Subquery) and isinstance(node.this, exp.Select) and len(node.this.expressions) == 1:
            select = node.this
            if select_sources(select) or select.args.get("where") is not None:
                return node
            node = select.expressions[0]
        elif isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
            node = node.expression
        else:
            return node


def _display(node: exp.Expression) -> exp.Expression:
    """The expression as people write it: no casts of literals, no column aliases pg_get_expr adds."""
    copy = node.copy()
    for alias in list(copy.find_all(exp.Alias)):
        if isinstance(alias.parent, exp.Select):
            alias.replace(alias.this)
    for cast in list(copy.find_all(exp.Cast)):
        if isinstance(cast.this, exp.Literal):
            if cast is copy:
                return cast.this
            cast.replace(cast.this)
    return copy


def short(node: exp.Expression | str | None, width: int = 90) -> str:
    """An expression for a message, on one line and cut to `width`."""
    if node is None:
        return ""
    if isinstance(node, str):
        tree = parse(node)
        node = unwrap(tree) if tree is not None else node
    text = node if isinstance(node, str) else _display(node).sql(dialect="postgres", normalize_functions=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def commands(command: str) -> tuple[str, ...]:
    return ("select", "insert", "update", "delete") if command == "all" else (command,)
