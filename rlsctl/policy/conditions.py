"""The condition language of policy files (surface syntax).

A rule in a policy file is a condition on a row, written in YAML:

    true | false
    {self: COLUMN}                  the column holds the session's user id
    {is_null: COLUMN}               the column is NULL
    {equals: {COLUMN: VALUE}}       the column equals a constant
    {in: {COLUMN: [VALUE, ...]}}    the column is one of some constants
    {tenant_role: RANK}             the user holds at least RANK in the row's tenant
    {tenant_member: COLUMN}         the user named in COLUMN belongs to the row's tenant
    {co_member: COLUMN}             the user named in COLUMN shares a tenant with the session's user
    {via: COLUMN}                   the row COLUMN references is visible (or: passes `rule`)
    {via: {column: C, rule: update, table: T, key: K}}
    {exists: {table: T, match: {THEIR_COLUMN: OUR_COLUMN}, where: CONDITION}}
    {expired: true}                 the row is past the table's retention window
    {api_key: SCOPE}                an API-key session whose key has SCOPE, for the row's tenant
    {api_key_member: COLUMN}        the user named in COLUMN belongs to the API key's tenant
    {user_session: true}            the session has a user identity
    {same: PATH}                    guards only: the old and the new row reach the same value
    {same: {old: PATH, new: PATH}}  (PATH: a column, or foreign-key columns then a column:
                                    project_id.org_id)
    {any: [...]}, {all: [...]}, {not: CONDITION}
    [...]                           a list is `any`

This module only parses; `rlsctl.declare.bind` resolves a condition against a table,
a role and the schema that exists, into the IR of `rlsctl.declare.expr`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

COMMANDS = ("select", "insert", "update", "delete")

Scalar = str | int | bool | None


class ConditionSyntaxError(ValueError):
    """A malformed condition; `path` is where in the condition it is."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Cond:
    """Base of the surface condition nodes."""


@dataclass(frozen=True)
class Const(Cond):
    value: bool


@dataclass(frozen=True)
class SelfIs(Cond):
    column: str


@dataclass(frozen=True)
class IsNull(Cond):
    column: str


@dataclass(frozen=True)
class Equals(Cond):
    column: str
    value: Scalar


@dataclass(frozen=True)
class InValues(Cond):
    column: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class TenantRole(Cond):
    rank: str


@dataclass(frozen=True)
class TenantMember(Cond):
    column: str


@dataclass(frozen=True)
class CoMember(Cond):
    column: str


@dataclass(frozen=True)
class Via(Cond):
    column: str
    rule: str = "select"
    table: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class Exists(Cond):
    table: str
    match: tuple[tuple[str, str], ...]
    where: Cond


@dataclass(frozen=True)
class Expired(Cond):
    pass


@dataclass(frozen=True)
class ApiKeyScope(Cond):
    """An API-key session whose key has `scope`, for the row's tenant."""

    scope: str


@dataclass(frozen=True)
class ApiKeyMember(Cond):
    """The user named in `column` belongs to the tenant of the session's API key."""

    column: str


@dataclass(frozen=True)
class UserSession(Cond):
    """The session has a user identity (not an API-key session, not anonymous)."""


@dataclass(frozen=True)
class Same(Cond):
    """Guards only: the value reached from the old row along `old` equals the one reached
    from the new row along `new`.

    A path is a column of the row, or foreign-key columns followed by a column of the
    last table reached (`project_id.org_id`). Each hop reads the related row as the
    session's role sees it; a NULL or an unseen row anywhere means "not the same".
    """

    old: tuple[str, ...]
    new: tuple[str, ...]


@dataclass(frozen=True)
class AnyOf(Cond):
    items: tuple[Cond, ...]


@dataclass(frozen=True)
class AllOf(Cond):
    items: tuple[Cond, ...]


@dataclass(frozen=True)
class Not(Cond):
    item: Cond


Parser = Callable[[Any, tuple[str | int, ...]], "Cond"]
# Condition kinds another language adds to this one while it parses (rlsctl test's expectations).
_EXTRA: ContextVar[Mapping[str, Parser] | None] = ContextVar("extra_conditions", default=None)


def parse_condition(raw: Any, path: tuple[str | int, ...] = (), extra: Mapping[str, Parser] | None = None) -> Cond:
    """Parse the YAML value of a rule into a condition tree; `extra`: more condition kinds, at any depth."""
    if extra is not None:
        token = _EXTRA.set({**(_EXTRA.get() or {}), **extra})
        try:
            return parse_condition(raw, path)
        finally:
            _EXTRA.reset(token)
    if isinstance(raw, bool):
        return Const(raw)
    if isinstance(raw, list):
        return AnyOf(tuple(parse_condition(item, (*path, i)) for i, item in enumerate(raw)))
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ConditionSyntaxError(path, f"a condition is true, false, a list, or a mapping with one key; got {raw!r}")
    ((key, value),) = raw.items()
    parsers = {**_PARSERS, **(_EXTRA.get() or {})}
    parser = parsers.get(key)
    if parser is None:
        known = ", ".join(sorted(parsers))
        raise ConditionSyntaxError((*path, key), f"unknown condition {key!r} (known: {known})")
    return parser(value, (*path, key))


def _column(value: Any, path: tuple[str | int, ...]) -> str:
    if not isinstance(value, str) or not value:
        raise ConditionSyntaxError(path, f"expected a column name, got {value!r}")
    return value


def _scalar(value: Any, path: tuple[str | int, ...]) -> Scalar:
    if value is not None and not isinstance(value, str | int | bool):
        raise ConditionSyntaxError(path, f"expected a constant, got {value!r}")
    return value


def _single(value: Any, path: tuple[str | int, ...], what: str) -> tuple[str, Any]:
    if not isinstance(value, dict) or len(value) != 1:
        raise ConditionSyntaxError(path, f"expected {{COLUMN: {what}}}, got {value!r}")
    ((column, item),) = value.items()
    return column, item


def _parse_equals(value: Any, path: tuple[str | int, ...]) -> Cond:
    column, item = _single(value, path, "VALUE")
    return Equals(column, _scalar(item, (*path, column)))


def _parse_in(value: Any, path: tuple[str | int, ...]) -> Cond:
    column, items = _single(value, path, "[VALUE, ...]")
    if not isinstance(items, list) or not items:
        raise ConditionSyntaxError((*path, column), "expected a non-empty list of constants")
    return InValues(column, tuple(_scalar(v, (*path, column, i)) for i, v in enumerate(items)))


def _parse_rank(value: Any, path: tuple[str | int, ...]) -> Cond:
    if not isinstance(value, str) or not value:
        raise ConditionSyntaxError(path, f"expected a tenant rank such as ADMIN, got {value!r}")
    return TenantRole(value)


def _parse_via(value: Any, path: tuple[str | int, ...]) -> Cond:
    if isinstance(value, str):
        return Via(_column(value, path))
    if not isinstance(value, dict):
        raise ConditionSyntaxError(path, "expected a column or {column, rule, table, key}")
    unknown = set(value) - {"column", "rule", "table", "key"}
    if unknown:
        raise ConditionSyntaxError((*path, sorted(unknown)[0]), "unknown field in via")
    rule = value.get("rule", "select")
    if rule not in COMMANDS:
        raise ConditionSyntaxError((*path, "rule"), f"rule must be one of {', '.join(COMMANDS)}")
    return Via(
        column=_column(value.get("column"), (*path, "column")),
        rule=rule,
        table=value.get("table"),
        key=value.get("key"),
    )


def _parse_exists(value: Any, path: tuple[str | int, ...]) -> Cond:
    if not isinstance(value, dict) or "table" not in value or "match" not in value:
        raise ConditionSyntaxError(path, "exists needs table and match (and optionally where)")
    unknown = set(value) - {"table", "match", "where"}
    if unknown:
        raise ConditionSyntaxError((*path, sorted(unknown)[0]), "unknown field in exists")
    match = value["match"]
    if not isinstance(match, dict) or not match:
        raise ConditionSyntaxError((*path, "match"), "match maps their columns to ours")
    pairs = tuple(
        (_column(theirs, (*path, "match")), _column(ours, (*path, "match", theirs))) for theirs, ours in match.items()
    )
    where = parse_condition(value.get("where", True), (*path, "where"))
    return Exists(table=_column(value["table"], (*path, "table")), match=pairs, where=where)


def _parse_expired(value: Any, path: tuple[str | int, ...]) -> Cond:
    if value is not True:
        raise ConditionSyntaxError(path, "write expired: true")
    return Expired()


def _scope(value: Any, path: tuple[str | int, ...]) -> str:
    if not isinstance(value, str) or not value:
        raise ConditionSyntaxError(path, f"expected an API-key scope such as prompts:read, got {value!r}")
    return value


def _user_session(value: Any, path: tuple[str | int, ...]) -> Cond:
    if value is not True:
        raise ConditionSyntaxError(path, "write user_session: true")
    return UserSession()


def _path(value: Any, path: tuple[str | int, ...]) -> tuple[str, ...]:
    if not isinstance(value, str) or not value or any(not part for part in value.split(".")):
        raise ConditionSyntaxError(path, f"expected a column or a path such as project_id.org_id, got {value!r}")
    return tuple(value.split("."))


def _parse_same(value: Any, path: tuple[str | int, ...]) -> Cond:
    if isinstance(value, str):
        both = _path(value, path)
        return Same(both, both)
    if not isinstance(value, dict) or set(value) != {"old", "new"}:
        raise ConditionSyntaxError(path, "expected a path, or {old: PATH, new: PATH}")
    return Same(_path(value["old"], (*path, "old")), _path(value["new"], (*path, "new")))


def _parse_items(value: Any, path: tuple[str | int, ...]) -> tuple[Cond, ...]:
    if not isinstance(value, list) or not value:
        raise ConditionSyntaxError(path, "expected a non-empty list of conditions")
    return tuple(parse_condition(item, (*path, i)) for i, item in enumerate(value))


_PARSERS: dict[str, Parser] = {
    "self": lambda v, p: SelfIs(_column(v, p)),
    "is_null": lambda v, p: IsNull(_column(v, p)),
    "equals": _parse_equals,
    "in": _parse_in,
    "tenant_role": _parse_rank,
    "tenant_member": lambda v, p: TenantMember(_column(v, p)),
    "co_member": lambda v, p: CoMember(_column(v, p)),
    "via": _parse_via,
    "exists": _parse_exists,
    "expired": _parse_expired,
    "api_key": lambda v, p: ApiKeyScope(_scope(v, p)),
    "api_key_member": lambda v, p: ApiKeyMember(_column(v, p)),
    "user_session": lambda v, p: _user_session(v, p),
    "same": _parse_same,
    "any": lambda v, p: AnyOf(_parse_items(v, p)),
    "all": lambda v, p: AllOf(_parse_items(v, p)),
    "not": lambda v, p: Not(parse_condition(v, p)),
}


def columns_of(cond: Cond) -> set[str]:
    """Columns of the condition's own table that it names (not those inside exists/via)."""
    if isinstance(cond, SelfIs | IsNull | Equals | InValues | TenantMember | CoMember | ApiKeyMember):
        return {cond.column}
    if isinstance(cond, Via):
        return {cond.column}
    if isinstance(cond, Exists):
        return {ours for _, ours in cond.match}
    if isinstance(cond, Same):
        return {cond.old[0], cond.new[0]}
    if isinstance(cond, AnyOf | AllOf):
        return set().union(*(columns_of(item) for item in cond.items))
    if isinstance(cond, Not):
        return columns_of(cond.item)
    return set()


def walk(cond: Cond) -> list[Cond]:
    """The condition and every condition nested in it through any/all/not (not into exists)."""
    nodes = [cond]
    if isinstance(cond, AnyOf | AllOf):
        for item in cond.items:
            nodes.extend(walk(item))
    elif isinstance(cond, Not):
        nodes.extend(walk(cond.item))
    return nodes
