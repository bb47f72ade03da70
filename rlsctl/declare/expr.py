"""The bound form of a policy condition: a small, SQL-shaped expression tree.

`rlsctl.declare.bind` produces it from a policy file's condition for one table, one
role and the schema that exists. Two consumers read it:

- the templates (`templates/expr.sql.j2`) print it as SQL, and
- the access-matrix evaluator (`rlsctl.tester.evaluate`) computes it in
  Python over fixture rows, with SQL's three-valued logic.

Constants are folded as the tree is built (`and_`, `or_`, `not_`), so a
condition about a column that does not exist yet (a NULL) disappears instead
of reaching the SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

Truth = bool | None  # SQL's three-valued logic: True, False, NULL (None)


# -- operands ---------------------------------------------------------------


@dataclass(frozen=True)
class Operand:
    @property
    def kind(self) -> str:
        return type(self).__name__.lower()


# Aliases of a guard's two rows, whichever of them alias 0 names: `same` compares them.
OLD_ROW = -2
NEW_ROW = -1


@dataclass(frozen=True)
class Col(Operand):
    """A column of the row named by `alias` (0: the policy's own row; OLD_ROW, NEW_ROW in a guard)."""

    alias: int
    name: str


@dataclass(frozen=True)
class Identity(Operand):
    """The session's user id (NULL when unset or empty). `as_text`: compared with a text column
    while the identity has another type (a uuid user in an audit log's text actor column): cast
    to its canonical text on the identity's side, so that the column's index still serves."""

    as_text: bool = False


TEXT_TYPES = ("text", "character varying", "varchar", "citext")
INTEGER_TYPES = ("smallint", "int2", "integer", "int", "int4", "bigint", "int8")


def identity_comparison(column_type: str, identity_type: str) -> str | None:
    """How a column compares with the identity: "" as it is (the same type, or integers of two
    widths), "text" with the identity cast to text (a text column, another identity type), None
    when no comparison is right (PostgreSQL has no operator, or a cast could fail or round)."""
    column, identity = _base_type(column_type), _base_type(identity_type)
    if column == identity or (column in INTEGER_TYPES and identity in INTEGER_TYPES):
        return ""
    if column in TEXT_TYPES and identity in TEXT_TYPES:
        return ""
    if column in TEXT_TYPES:
        return "text"
    return None


def _base_type(name: str) -> str:
    """A type name without its length or schema: `character varying(64)` -> `character varying`."""
    return name.strip().lower().split("(")[0].strip().rsplit(".", 1)[-1].strip('"')


@dataclass(frozen=True)
class Value(Operand):
    value: str | int | bool | None


@dataclass(frozen=True)
class TenantIds(Operand):
    """The tenants in which the session's user holds at least `rank`."""

    rank: str


@dataclass(frozen=True)
class ApiKeyTenant(Operand):
    """The tenant of the session's API key if the key has `scope` (any scope when None), else NULL."""

    scope: str | None


@dataclass(frozen=True)
class PresentedKeyHash(Operand):
    """The hash of the API key authenticate_api_key is checking (set only inside it), else NULL.

    Read through a helper rather than current_setting() in the policy itself: a keys
    session trusts rlsctl's helpers, never a direct read of a setting (catalog/sql/untrusted_code.sql)."""


@dataclass(frozen=True)
class Cutoff(Operand):
    """The current instant minus `days` days, in the compared column's terms: `now() AT TIME ZONE 'UTC'`
    for a timestamp without time zone (which holds UTC), `now()` itself for a timestamptz (`with_zone`),
    which a UTC wall-clock time would be converted back to in the session's TimeZone: a window any
    session could move by up to a week."""

    days: int
    with_zone: bool = False


# -- predicates -------------------------------------------------------------


@dataclass(frozen=True)
class Pred:
    @property
    def kind(self) -> str:
        return type(self).__name__.lower()


@dataclass(frozen=True)
class Const(Pred):
    value: Truth


@dataclass(frozen=True)
class Compare(Pred):
    left: Operand
    op: str  # one of = <> <
    right: Operand


@dataclass(frozen=True)
class IsNull(Pred):
    operand: Operand


@dataclass(frozen=True)
class InList(Pred):
    operand: Operand
    values: tuple[Value, ...]


@dataclass(frozen=True)
class InTenants(Pred):
    """`operand = ANY ((SELECT tenant_ids(rank)))`: cached once per statement."""

    operand: Operand
    tenants: TenantIds


@dataclass(frozen=True)
class InTenantsOrKey(Pred):
    """`operand = ANY ((SELECT tenant_ids_or_key(rank, scopes)))`: one InitPlan for what the policy
    says in several branches, `operand = ANY (tenant_ids(rank))` (the user's tenants at `rank`,
    none when `rank` is None) or `operand = api_key_tenant(scope)` for each scope. A transaction acts
    for one principal (a user or a key, never both), so the union is each principal's own answer.
    Made for SQL only (`merge_principal_arms`): the access-matrix evaluator reads the branches."""

    operand: Operand
    rank: str | None
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class InApiKeyMembers(Pred):
    """`api_key_member(operand)`: the user is a member (or the owner) of the API key's tenant.

    A check of the one user per row it is asked for, against the membership index, not the
    tenant's member list: that list grows with the team (1,000 members: 1 ms to build, and a
    search per row), the check does not (docs/performance.md)."""

    operand: Operand


@dataclass(frozen=True)
class InApiKeyRows(Pred):
    """`operand = ANY ((SELECT function()))`: keys of `table`'s rows in the API key's tenant (with `scope`).

    For tables whose tenant is reached through a parent (`tenant: {via: ...}`):
    the parent's rows are read by a SECURITY DEFINER helper through the keys
    role's own policies, so a key with one scope (analytics:read) reaches the
    metrics of its team's prompts without being able to read the prompts.
    """

    operand: Operand
    table: str
    function: str
    key_type: str
    scope: str


@dataclass(frozen=True)
class RoleMember(Pred):
    """The session has the privileges of `role`: what `true` means in a policy for that role.

    Rendered as `(SELECT pg_has_role(CURRENT_USER, role, 'USAGE'))`, the same
    test PostgreSQL applies to a policy's role list, so the policy still
    grants nothing beyond its role if its TO list is ever widened by hand.
    """

    role: str


@dataclass(frozen=True)
class Exists(Pred):
    """A row of `table` (seen through the role's own RLS) for which `where` holds."""

    table: str
    alias: int
    where: Pred


@dataclass(frozen=True)
class And(Pred):
    items: tuple[Pred, ...]


@dataclass(frozen=True)
class Or(Pred):
    items: tuple[Pred, ...]


@dataclass(frozen=True)
class Not(Pred):
    item: Pred


TRUE = Const(True)
FALSE = Const(False)
NULL = Const(None)


def is_null_operand(operand: Operand) -> bool:
    return isinstance(operand, Value) and operand.value is None


def compare(left: Operand, op: str, right: Operand) -> Pred:
    if is_null_operand(left) or is_null_operand(right):
        return NULL
    return Compare(left, op, right)


def is_null(operand: Operand) -> Pred:
    if is_null_operand(operand):
        return TRUE
    return IsNull(operand)


def in_list(operand: Operand, values: tuple[Value, ...]) -> Pred:
    if is_null_operand(operand):
        return NULL
    return InList(operand, values)


def in_tenants(operand: Operand, tenants: TenantIds | None) -> Pred:
    if tenants is None or is_null_operand(operand):
        return NULL
    return InTenants(operand, tenants)


def exists(table: str, alias: int, where: Pred) -> Pred:
    # EXISTS is never NULL: a subquery whose condition cannot hold finds nothing.
    if isinstance(where, Const) and where.value is not True:
        return FALSE
    return Exists(table, alias, where)


def and_(*items: Pred) -> Pred:
    kept: list[Pred] = []
    saw_null = False
    for item in _flatten(items, And):
        if item == FALSE:
            return FALSE
        if item == TRUE:
            continue
        if item == NULL:
            saw_null = True
            continue
        if item not in kept:
            kept.append(item)
    if saw_null:
        # NULL AND x is FALSE when x is FALSE, NULL otherwise: keep it visible.
        return NULL if not kept else And((*kept, NULL))
    if not kept:
        return TRUE
    return kept[0] if len(kept) == 1 else And(tuple(kept))


def or_(*items: Pred) -> Pred:
    kept: list[Pred] = []
    saw_null = False
    for item in _flatten(items, Or):
        if item == TRUE:
            return TRUE
        if item == FALSE:
            continue
        if item == NULL:
            saw_null = True
            continue
        if item not in kept:
            kept.append(item)
    if saw_null:
        return NULL if not kept else Or((*kept, NULL))
    if not kept:
        return FALSE
    return kept[0] if len(kept) == 1 else Or(tuple(kept))


def not_(item: Pred) -> Pred:
    if isinstance(item, Const):
        return Const(None if item.value is None else not item.value)
    if isinstance(item, Not):
        return item.item
    return Not(item)


def _flatten(items: tuple[Pred, ...], kind: type) -> list[Pred]:
    flat: list[Pred] = []
    for item in items:
        if isinstance(item, kind):
            flat.extend(item.items)  # type: ignore[attr-defined]
        else:
            flat.append(item)
    return flat


def never_true(pred: Pred) -> bool:
    """A policy whose condition is FALSE or NULL grants nothing."""
    return isinstance(pred, Const) and pred.value is not True


def walk(pred: Pred) -> list[Pred]:
    """Every predicate node of the tree, parents first."""
    nodes: list[Pred] = [pred]
    if isinstance(pred, And | Or):
        for item in pred.items:
            nodes.extend(walk(item))
    elif isinstance(pred, Not):
        nodes.extend(walk(pred.item))
    elif isinstance(pred, Exists):
        nodes.extend(walk(pred.where))
    return nodes


def tables_read(pred: Pred) -> set[str]:
    """Tables that the condition reads through subqueries (their RLS applies)."""
    return {node.table for node in walk(pred) if isinstance(node, Exists)}


def helpers_used(pred: Pred) -> set[str]:
    """Names of the policy helper functions the rendered condition calls."""
    found: set[str] = set()
    for node in walk(pred):
        operands: tuple[Operand, ...] = ()
        if isinstance(node, Compare):
            operands = (node.left, node.right)
        elif isinstance(node, IsNull | InList):
            operands = (node.operand,)
        elif isinstance(node, InTenants):
            operands = (node.operand, node.tenants)
        elif isinstance(node, InTenantsOrKey):
            operands = (node.operand,)
            found.add("tenant_ids_or_key")
        if isinstance(node, InApiKeyMembers):
            operands = (node.operand,)
            found.add("api_key_member")
        if isinstance(node, InApiKeyRows):
            operands = (node.operand,)
            found.add(node.function)
        for operand in operands:
            if isinstance(operand, Identity):
                found.add("current_user_id")
            elif isinstance(operand, TenantIds):
                found.add("tenant_ids")
            elif isinstance(operand, ApiKeyTenant):
                found.add("api_key_tenant")
            elif isinstance(operand, PresentedKeyHash):
                found.add("presented_key_hash")
    return found


def api_key_scopes(pred: Pred) -> set[str]:
    """The API-key scopes the condition asks for (api_key conditions, direct or through a parent)."""
    found: set[str] = set()
    for node in walk(pred):
        if isinstance(node, InApiKeyRows):
            found.add(node.scope)
        operands: tuple[Operand, ...] = ()
        if isinstance(node, Compare):
            operands = (node.left, node.right)
        elif isinstance(node, InTenants):
            operands = (node.operand, node.tenants)
        found |= {o.scope for o in operands if isinstance(o, ApiKeyTenant) and o.scope is not None}
    return found


def member_scopes(pred: Pred) -> list[set[str]]:
    """For each `api_key_member` in the condition, the scopes of the api_key conditions ANDed
    with it (an empty set when none is): the scopes under which it asks for the members."""
    found: list[set[str]] = []
    for node in walk(pred):
        children: tuple[Pred, ...] = ()
        if isinstance(node, And):
            members = [item for item in node.items if isinstance(item, InApiKeyMembers)]
            others = [item for item in node.items if not isinstance(item, InApiKeyMembers)]
            scopes = set().union(*(api_key_scopes(item) for item in others)) if others else set()
            found += [scopes for _ in members]
            continue
        if isinstance(node, Or):
            children = node.items
        elif isinstance(node, Not):
            children = (node.item,)
        elif isinstance(node, Exists):
            children = (node.where,)
        found += [set() for child in children if isinstance(child, InApiKeyMembers)]
    if isinstance(pred, InApiKeyMembers):
        found.append(set())
    return found


def settle(pred: Pred, positive: bool = True) -> Pred:
    """Replace NULL constants without changing when the whole condition is TRUE.

    A policy passes only when its condition is TRUE. Under an even number of
    NOTs a NULL can therefore become FALSE, under an odd number TRUE; inside
    EXISTS the subquery's condition is positive again. The result has no
    NULL constants left, so the SQL and the evaluator both stay two-valued
    at the leaves that rlsctl introduced.
    """
    if isinstance(pred, Const):
        if pred.value is None:
            return FALSE if positive else TRUE
        return pred
    if isinstance(pred, And):
        return and_(*(settle(item, positive) for item in pred.items))
    if isinstance(pred, Or):
        return or_(*(settle(item, positive) for item in pred.items))
    if isinstance(pred, Not):
        return not_(settle(pred.item, not positive))
    if isinstance(pred, Exists):
        return exists(pred.table, pred.alias, settle(pred.where, True))
    return pred


def implies(a: Pred, b: Pred, ranks: tuple[str, ...] = ()) -> bool:
    """Whether every row for which `a` is TRUE makes `b` TRUE, as far as the tree's shape proves
    it (False when unsure: callers only drop a condition that is proved redundant).

    `ranks`: the tenancy's ranks, lowest first; the tenants where the user holds a rank are
    among those where it holds any lower rank.
    """
    if a == b or b == TRUE or never_true(a):
        return True
    if isinstance(a, Or):
        return all(implies(item, b, ranks) for item in a.items)
    if isinstance(b, And):
        return all(implies(a, item, ranks) for item in b.items)
    if isinstance(b, Or) and any(implies(a, item, ranks) for item in b.items):
        return True
    if isinstance(a, And):
        return any(implies(item, b, ranks) for item in a.items)
    return _narrower_tenants(a, b, ranks)


def _narrower_tenants(a: Pred, b: Pred, ranks: tuple[str, ...]) -> bool:
    """`x = ANY (tenant_ids(high))` implies `x = ANY (tenant_ids(low))` for the same operand."""
    if not (isinstance(a, InTenants) and isinstance(b, InTenants) and a.operand == b.operand):
        return False
    high, low = a.tenants.rank, b.tenants.rank
    return high in ranks and low in ranks and ranks.index(high) >= ranks.index(low)


def merge_principal_arms(pred: Pred) -> Pred:
    """The condition with each OR's comparisons of one operand with the user's tenants and with an
    API key's tenant (one InitPlan each) merged into one InTenantsOrKey: every InitPlan is planned
    and run in every statement that reads the table, and the policies of a table with many
    principals repeat them (docs/performance.md). Same rows, same NULLs: the helper returns the
    tenants whichever principal the transaction has, and an empty array for none."""
    if isinstance(pred, Or):
        return _merged_or(tuple(merge_principal_arms(item) for item in pred.items))
    if isinstance(pred, And):
        return And(tuple(merge_principal_arms(item) for item in pred.items))
    if isinstance(pred, Not):
        return Not(merge_principal_arms(pred.item))
    if isinstance(pred, Exists):
        return Exists(pred.table, pred.alias, merge_principal_arms(pred.where))
    return pred


def _principal_arm(item: Pred) -> tuple[Operand, str | None, str | None] | None:
    """(operand, rank, scope) of `operand = ANY (tenant_ids(rank))` or `operand = api_key_tenant(scope)`."""
    if isinstance(item, InTenants) and isinstance(item.operand, Col):
        return item.operand, item.tenants.rank, None
    if (isinstance(item, Compare) and item.op == "=" and isinstance(item.left, Col)
            and isinstance(item.right, ApiKeyTenant) and item.right.scope is not None):  # fmt: skip
        return item.left, None, item.right.scope
    return None


def _merged_or(items: tuple[Pred, ...]) -> Pred:
    groups: dict[Operand, list[tuple[int, str | None, str | None]]] = {}
    for index, item in enumerate(items):
        arm = _principal_arm(item)
        if arm is not None:
            groups.setdefault(arm[0], []).append((index, arm[1], arm[2]))
    merged: dict[int, Pred] = {}
    dropped: set[int] = set()
    for operand, arms in groups.items():
        ranks = [rank for _, rank, _ in arms if rank is not None]
        scopes = tuple(scope for _, _, scope in arms if scope is not None)
        if not scopes or len(arms) < 2 or len(ranks) > 1:
            continue  # nothing to share, or two ranks of one column (kept as they are)
        first = arms[0][0]
        merged[first] = InTenantsOrKey(operand, ranks[0] if ranks else None, scopes)
        dropped |= {index for index, _, _ in arms[1:]}
    kept = [merged.get(index, item) for index, item in enumerate(items) if index not in dropped]
    return kept[0] if len(kept) == 1 else Or(tuple(kept))
