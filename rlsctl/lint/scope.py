"""Which part of a policy's condition lets rows through whoever the user is: the shared analysis of RLS006,
RLS007, RLS012, RLS013 and RLS014.

A condition scopes its rows when every way it can be true compares a column of
the row with the session's identity (or a subquery, another table's row, a
helper). Each OR branch is one such way: `tenant_id = (SELECT ...) OR 1 = 1`
scopes nothing, because its second branch is true for every row. The analysis
walks the AND/OR structure and names the branch that opens the policy, so a
finding can say what is wrong ("the branch `1 = 1` of an OR ..."), not only
that something is.

One cause, one rule: a branch that opens the policy only when the identity is
missing (`current_setting(...) IS NULL`, `tenant_id = COALESCE(<identity>,
tenant_id)`) is RLS014's (fails open), not an unscoped branch.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from sqlglot import exp

from rlsctl.lint import exprs
from rlsctl.lint.model import PUBLIC, LintModel, Policy

COMPARE: dict[type[exp.Expression], Callable[[object, object], bool]] = {
    exp.EQ: operator.eq, exp.NullSafeEQ: operator.eq, exp.NEQ: operator.ne, exp.NullSafeNEQ: operator.ne,
    exp.GT: operator.gt, exp.GTE: operator.ge, exp.LT: operator.lt, exp.LTE: operator.le,
}  # fmt: skip
REFLEXIVE = (exp.EQ, exp.NullSafeEQ, exp.GTE, exp.LTE)  # x op x is true (for a non-null x)


# -- constants ------------------------------------------------------------------------------


def _literal(node: exp.Expression) -> float | str | None:
    while isinstance(node, exp.Paren | exp.Cast | exp.TryCast):
        node = node.this
    if not isinstance(node, exp.Literal):
        return None
    if not node.is_string:
        try:
            return float(node.this)
        except ValueError:
            return None
    return node.this


def _deterministic(node: exp.Expression) -> bool:
    """Columns, literals and casts only: the same text gives the same value twice (random() does not)."""
    return not any(
        isinstance(child, exp.Func | exp.Select | exp.Subquery) and not isinstance(child, exp.Cast | exp.TryCast)
        for child in node.walk()
    )


def constant_truth(node: exp.Expression) -> bool | None:
    """The value of a condition that does not depend on the row or the session: `true`, `1 = 1`, `'a' = 'a'`,
    `NOT false`, `tenant_id = tenant_id` (true for every row with a tenant); None when it depends on them."""
    node = exprs.unwrap(node)
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Not):
        inner = constant_truth(node.this)
        return None if inner is None else not inner
    if isinstance(node, exp.And | exp.Or):
        values = [constant_truth(node.this), constant_truth(node.expression)]
        decisive = isinstance(node, exp.Or)  # OR: one true decides; AND: one false decides
        if decisive in values:
            return decisive
        return None if None in values else not decisive
    compare = COMPARE.get(type(node))
    if compare is None:
        return None
    left, right = node.this, node.expression
    values = _literal(left), _literal(right)
    if None not in values:
        a, b = values
        if isinstance(a, float) != isinstance(b, float):
            a, b = str(a).removesuffix(".0"), str(b).removesuffix(".0")
        return compare(a, b)
    if _deterministic(left) and exprs.strip(left) == exprs.strip(right):
        return isinstance(node, REFLEXIVE)
    return None


def role_true(node: exp.Expression, roles: tuple[str, ...]) -> bool:
    """`(SELECT pg_has_role(CURRENT_USER, 'r', 'USAGE'))` in a policy TO r: true for everyone the policy applies
    to (how rlsctl renders a role-scoped "every row" rule)."""
    node = exprs.strip(node)
    if not (isinstance(node, exp.Anonymous) and node.name.lower() == "pg_has_role" and len(node.expressions) in (2, 3)):
        return False
    args = [exprs.strip(a) for a in node.expressions]
    who = args[0] if len(args) == 3 else exp.CurrentUser()  # the two-argument form asks for the current user
    role = args[-2]
    return isinstance(who, exp.CurrentUser | exp.SessionUser) and isinstance(role, exp.Literal) and role.name in roles


# -- failing open when the identity is missing (RLS014's causes) ----------------------------------------


def missing_identity_test(node: exp.Expression, model: LintModel) -> bool:
    """`identity IS NULL` or `identity = ''`, where identity derives from current_setting or an identity helper."""
    node = exprs.unwrap(node)
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null) and not node.args.get("negate"):
        return exprs.reads_identity(node.this, model)
    if isinstance(node, exp.EQ):
        for side, other in ((node.this, node.expression), (node.expression, node.this)):
            value = exprs.strip(other)
            if isinstance(value, exp.Literal) and value.is_string and value.name == "":
                return exprs.reads_identity(side, model)
    return False


def _coalesce_args(node: exp.Expression) -> list[exp.Expression]:
    return [node.this, *(node.expressions or [])] if isinstance(node, exp.Coalesce) else []


def identity_fallback(node: exp.Expression, row: exprs.Row, model: LintModel) -> str | None:
    """Why a comparison or COALESCE is true for every row when the identity is missing, or None:
    `tenant_id = COALESCE(<identity>, tenant_id)` compares the column with itself, and
    `COALESCE(<condition on the identity>, true)` is true."""
    args = _coalesce_args(node)
    opens = len(args) > 1 and constant_truth(args[-1]) is True
    if opens and any(exprs.reads_identity(a, model) for a in args[:-1]):
        return f"{exprs.short(node, 60)} is true when the identity is missing"
    if not isinstance(node, exp.EQ | exp.NullSafeEQ):
        return None
    for side, other in ((node.this, node.expression), (node.expression, node.this)):
        column, fallback = exprs.strip(side), _coalesce_args(exprs.strip(other))
        if not (isinstance(column, exp.Column) and exprs.is_row_ref(column, row) and len(fallback) > 1):
            continue
        first = [a for a in fallback[:-1] if exprs.reads_identity(a, model)]
        last = exprs.strip(fallback[-1])
        if first and isinstance(last, exp.Column) and last.name == column.name and exprs.is_row_ref(last, row):
            return (
                f"{exprs.short(node, 60)} compares {column.name} with itself when the identity is missing: "
                "every row matches"
            )
    return None


def fails_open(node: exp.Expression, row: exprs.Row, model: LintModel) -> bool:
    """Whether a branch is RLS014's: true only because the identity is missing."""
    if missing_identity_test(node, model):
        return True
    return any(identity_fallback(n, row, model) for n in node.find_all(exp.EQ, exp.NullSafeEQ, exp.Coalesce))


# -- the branch that opens a policy ------------------------------------------------------------


@dataclass(frozen=True)
class Opening:
    """The part of a condition that lets rows through whoever the user is."""

    branch: exp.Expression
    constant: bool  # true for every row (a constant, or the policy's own role test), not just unscoped
    whole: bool  # the branch is the whole condition, not one way of an OR

    def reason(self, label: str, row: exprs.Row) -> str:
        shown = exprs.short(self.branch, 70)
        if self.whole:
            if self.constant:
                return f"its {label} ({shown}) is always true for them"
            if exprs.row_refs(self.branch, row):
                return f"its {label} ({shown}) filters the row only on constant conditions"
            return f"its {label} ({shown}) reads no column of the row"
        if self.constant:
            return f"the branch `{shown}` of an OR in its {label} makes the policy true for every row"
        what = "compares the row only with constants" if exprs.row_refs(self.branch, row) else "reads no column"
        return f"the branch `{shown}` of an OR in its {label} {what}: whenever it holds, every row passes"


def opening(text: str | None, row: exprs.Row, model: LintModel, roles: tuple[str, ...]) -> Opening | None:
    """The first way the condition is true without scoping the row, or None when every way scopes it (or the
    condition is unparsable, absent or constant false). Several rules ask about the same policy: the answer is
    kept per model."""
    cache: dict[tuple[object, ...], Opening | None] = model.__dict__.setdefault("_openings", {})
    key = (text, row.schema, row.table, row.columns, roles)
    if key not in cache:
        cache[key] = _opening(text, row, model, roles)
    return cache[key]


def _opening(text: str | None, row: exprs.Row, model: LintModel, roles: tuple[str, ...]) -> Opening | None:
    tree = exprs.parse(text)
    if tree is None:
        return None
    top = exprs.unwrap(tree)
    found = _open(top, Walk(row, model, roles, top))
    if found is None:
        return None
    branch, constant = found
    return Opening(branch, constant, whole=branch is top)


@dataclass(frozen=True)
class Walk:
    row: exprs.Row
    model: LintModel
    roles: tuple[str, ...]
    top: exp.Expression

    @cached_property
    def tenant_columns(self) -> set[str]:
        """The columns the whole condition scopes by somewhere (asked only for `col IS NULL` branches)."""
        return exprs.scoping_columns(self.top, self.row, ranges=False)


def _open(node: exp.Expression, walk: Walk) -> tuple[exp.Expression, bool] | None:
    node = exprs.unwrap(node)
    if isinstance(node, exp.Or):  # the first branch that opens, named as such
        return _open(node.this, walk) or _open(node.expression, walk)
    if isinstance(node, exp.And):
        terms = [_open(term, walk) for term in exprs.and_terms(node)]
        if any(term is None for term in terms):
            return None  # one scoped (or false) term scopes the conjunction
        return node, all(term[1] for term in terms if term is not None)
    truth = constant_truth(node)
    if truth is False:
        return None
    if truth is True or role_true(node, walk.roles):
        return node, True
    if fails_open(node, walk.row, walk.model) or exprs.scoping_columns(node, walk.row) or _no_tenant(node, walk):
        return None
    return node, False


def _no_tenant(node: exp.Expression, walk: Walk) -> bool:
    """`team_id IS NULL` where the condition scopes team_id elsewhere: the rows of no tenant (shared rows, or a
    prompt taken out of its team), not every tenant's rows. `deleted_at IS NULL` scopes nothing."""
    if not (isinstance(node, exp.Is) and isinstance(node.expression, exp.Null)) or node.args.get("negate"):
        return False
    column = exprs.strip(node.this)
    return isinstance(column, exp.Column) and exprs.is_row_ref(column, walk.row) and column.name in walk.tenant_columns


# -- which rule owns a policy's opening ---------------------------------------------------------


def public_true(policy: Policy, model: LintModel) -> list[tuple[str, Opening]]:
    """RLS006's case: a permissive PUBLIC policy whose USING or WITH CHECK is true for every row."""
    if not policy.permissive or PUBLIC not in policy.roles:
        return []
    row = exprs.row_of(model, policy)
    found = []
    for label, text in (("USING", policy.using), ("WITH CHECK", policy.check)):
        opened = opening(text, row, model, ())
        if opened is not None and opened.constant:
            found.append((label, opened))
    return found


def open_write(policy: Policy, model: LintModel) -> Opening | None:
    """RLS012's case: a permissive write policy whose effective check lets a row into any tenant while what it
    may read or touch (USING) is scoped: an INSERT check that scopes nothing, or an UPDATE/ALL WITH CHECK that
    scopes nothing under a scoped USING. (When USING is open as well, the policy is RLS007's.)"""
    if not policy.permissive or not policy.writes or public_true(policy, model):
        return None
    row = exprs.row_of(model, policy)
    if policy.command == "insert":
        return opening(policy.check, row, model, policy.roles)
    if policy.check is None:
        return None  # USING checks the new row too
    check = opening(policy.check, row, model, policy.roles)
    if check is not None and opening(policy.using, row, model, policy.roles) is None:
        return check
    return None
