"""Whether a changed policy expression admits more rows or fewer, where that can be proved.

A plan labels each change widens, narrows or neutral (docs/diff.md). For a policy whose
expression changed, the label is proved from the shape of the two expressions, never
guessed: the same OR with a branch added or removed, the same AND with a condition added
or removed, the whole rule made `true` or `false`, or the same expression with only the
rank of `tenant_ids(...)` raised or lowered. Anything else cannot be proved and is shown
as widening, so a reviewer reads it.
"""

from __future__ import annotations

import re
from contextvars import ContextVar

import pglast
from pglast import ast
from pglast.enums import BoolExprType
from pglast.stream import RawStream

WIDENS, NARROWS, UNKNOWN, SAME = "widens", "narrows", "unknown", "same"

# The tenancy's ranks, lowest first, while a plan is computed (set by rlsctl.change.plan).
RANKS: ContextVar[tuple[str, ...]] = ContextVar("RANKS", default=())
TENANT_IDS = re.compile(r"tenant_ids\('((?:[^']|'')*)'")


def rows_admitted(old: str | None, new: str | None) -> str:
    """How the rows an expression admits change from `old` to `new` (None: no expression, which
    for a check means the USING applies: the caller passes that instead)."""
    if old == new:
        return SAME
    if old is None or new is None:
        return UNKNOWN
    try:
        before, after = _parsed(old), _parsed(new)
    except (pglast.parser.ParseError, ValueError):
        return UNKNOWN
    return _compare(before, after, old, new)


def _compare(before: ast.Node, after: ast.Node, old: str, new: str) -> str:
    if _constant(after) is True or _constant(before) is False:
        return WIDENS
    if _constant(after) is False or _constant(before) is True:
        return NARROWS
    for kind, fewer in ((BoolExprType.OR_EXPR, NARROWS), (BoolExprType.AND_EXPR, WIDENS)):
        old_items, new_items = _items(before, kind), _items(after, kind)
        if new_items < old_items:
            return fewer
        if new_items > old_items:
            return WIDENS if fewer == NARROWS else NARROWS
    return _rank_change(old, new)


def _rank_change(old: str, new: str) -> str:
    """The same expression but for the ranks tenant_ids() is asked for: a higher rank admits fewer."""
    ranks = RANKS.get()
    if not ranks or TENANT_IDS.sub("tenant_ids(''", old) != TENANT_IDS.sub("tenant_ids(''", new):
        return UNKNOWN
    moves = set()
    for before, after in zip(TENANT_IDS.findall(old), TENANT_IDS.findall(new), strict=True):
        if before == after:
            continue
        if before not in ranks or after not in ranks:
            return UNKNOWN
        moves.add(NARROWS if ranks.index(after) > ranks.index(before) else WIDENS)
    return moves.pop() if len(moves) == 1 else UNKNOWN


def _parsed(expression: str) -> ast.Node:
    """The expression's tree, parsed as `SELECT <expression>` (never sent to a server); anything
    but exactly one statement with one target is not an expression (ValueError)."""
    parsed = pglast.parse_sql(f"SELECT {expression}")
    statement = parsed[0].stmt if len(parsed) == 1 else None
    if not isinstance(statement, ast.SelectStmt) or len(statement.targetList or ()) != 1:
        raise ValueError(f"not one expression: {expression!r}")
    return statement.targetList[0].val


def _items(node: ast.Node, kind: BoolExprType) -> frozenset[str]:
    """The arguments of a top-level AND or OR, printed; an expression of another kind is one item."""
    if isinstance(node, ast.BoolExpr) and node.boolop == kind:
        return frozenset(RawStream()(arg) for arg in node.args)
    return frozenset({RawStream()(node)})


def _constant(node: ast.Node) -> bool | None:
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.Boolean):
        return bool(node.val.boolval)
    if isinstance(node, ast.TypeCast) and isinstance(node.arg, ast.A_Const):
        return _constant(node.arg)
    return None
