"""Declared vs live: differences, the operations that remove them, and their order.

`differences` is generic over keyed objects. `operations` turns each
difference into a typed operation that carries the old and the new object
(so it can be shown, labelled and reversed). `ordered` is the one place that
states the order statements run in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from rlsctl.objects import (
    Function,
    FunctionGrant,
    KeyStore,
    Obj,
    Objects,
    Policy,
    Role,
    SchemaPrivilege,
    TableSecurity,
)
from rlsctl.render import call_macro

WIDENS = "widens"
NARROWS = "narrows"
NEUTRAL = "neutral"


@dataclass(frozen=True)
class Differences:
    added: tuple[Obj, ...]  # declared, not live
    removed: tuple[Obj, ...]  # live, not declared
    modified: tuple[tuple[Obj, Obj], ...]  # (live, declared)
    unmodified: tuple[Obj, ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.modified)


def differences(declared: Mapping[str, Obj], live: Mapping[str, Obj]) -> Differences:
    added = tuple(declared[key] for key in sorted(declared.keys() - live.keys()))
    removed = tuple(live[key] for key in sorted(live.keys() - declared.keys()))
    common = sorted(declared.keys() & live.keys())
    modified = tuple((live[key], declared[key]) for key in common if live[key] != declared[key])
    unmodified = tuple(declared[key] for key in common if live[key] == declared[key])
    return Differences(added, removed, modified, unmodified)


@dataclass(frozen=True)
class Operation:
    action: str  # the macro of objects/<kind>.sql.j2 that renders it
    old: Obj | None
    new: Obj | None
    effect: str  # widens | narrows | neutral

    @property
    def obj(self) -> Obj:
        found = self.new if self.new is not None else self.old
        assert found is not None
        return found

    @property
    def kind(self) -> str:
        return self.obj.kind

    @property
    def key(self) -> str:
        return self.obj.key

    def reverse(self) -> Operation:
        """The operation that undoes this one (old and new swapped)."""
        inverse = {"create": "drop", "drop": "create", "grant": "revoke", "revoke": "grant"}
        action = inverse.get(self.action, self.action)
        effect = {WIDENS: NARROWS, NARROWS: WIDENS}.get(self.effect, self.effect)
        return Operation(action, self.new, self.old, effect)


# -- choosing operations ------------------------------------------------------------------

CREATE_EFFECT = {
    "role": NEUTRAL,
    "membership": WIDENS,
    "schema": NEUTRAL,
    "schema_privilege": WIDENS,
    "default_privilege": NARROWS,
    "extension": NEUTRAL,
    "function": NEUTRAL,
    "function_grant": WIDENS,
    "policy": WIDENS,  # permissive: one more way in
    "table_grant": WIDENS,
    "column_grant": WIDENS,
    "trigger": NARROWS,  # a guard refuses changes; encryption hides plaintext
    "key_store": NEUTRAL,
    "active_key": NEUTRAL,
}
GRANT_KINDS = {"membership", "schema_privilege", "function_grant", "table_grant", "column_grant"}
# Never dropped by apply: data (tables, the key store and its keys) and what other projects may share.
NEVER_REMOVED = {"role", "membership", "schema", "default_privilege", "extension", "table", "key_store", "active_key"}


def operations(diff: Differences, declared: Objects | None = None) -> list[Operation]:
    ops: list[Operation] = []
    for obj in diff.added:
        if isinstance(obj, TableSecurity):
            ops += _table(None, obj)
            continue
        action = "grant" if obj.kind in GRANT_KINDS else "create"
        ops.append(Operation(action, None, obj, CREATE_EFFECT[obj.kind]))
    for obj in diff.removed:
        if obj.kind in NEVER_REMOVED:
            continue
        action = "revoke" if obj.kind in GRANT_KINDS else "drop"
        ops.append(Operation(action, obj, None, _removal_effect(obj)))
    for old, new in diff.modified:
        ops += _modified(old, new, declared or {})
    return ops


def _removal_effect(obj: Obj) -> str:
    if obj.kind == "trigger":
        return WIDENS  # a guard goes away
    if obj.kind == "function":
        return NEUTRAL
    return NARROWS


def _modified(old: Obj, new: Obj, declared: Objects) -> list[Operation]:
    if isinstance(new, TableSecurity):
        assert isinstance(old, TableSecurity)
        return _table(old, new)
    if isinstance(new, Function):
        assert isinstance(old, Function)
        if (old.returns, old.language) != (new.returns, new.language):
            # CREATE OR REPLACE cannot change these; dropping loses the grants, so re-grant them.
            regrants = [
                Operation("grant", None, obj, WIDENS)
                for obj in declared.values()
                if isinstance(obj, FunctionGrant) and _same_function(obj, new)
            ]
            return [Operation("recreate", old, new, WIDENS), *regrants]
        if replace(old, owner=new.owner) == new:
            return [Operation("owner", old, new, NEUTRAL)]
        return [Operation("replace", old, new, WIDENS)]
    if isinstance(new, Policy):
        assert isinstance(old, Policy)
        effect = NARROWS if _only_roles_removed(old, new) else WIDENS
        if (old.command, old.permissive) != (new.command, new.permissive) or (old.check and not new.check):
            return [Operation("recreate", old, new, effect)]
        return [Operation("alter", old, new, effect)]
    if isinstance(new, Role):
        return [Operation("alter", old, new, NARROWS if isinstance(old, Role) and old.login else NEUTRAL)]
    return [Operation("recreate" if new.kind == "trigger" else "alter", old, new, NEUTRAL)]


def _table(old: TableSecurity | None, new: TableSecurity) -> list[Operation]:
    """Owner, then RLS enabled, then forced (what differs; everything for a table seen first)."""
    found: list[Operation] = []
    if old is None or old.owner != new.owner:
        found.append(Operation("owner", old, new, NEUTRAL))
    if new.rls_enabled and (old is None or not old.rls_enabled):
        found.append(Operation("enable", old, new, NARROWS))
    if new.rls_forced and (old is None or not old.rls_forced):
        found.append(Operation("force", old, new, NARROWS))
    return found


def _same_function(grant: FunctionGrant, function: Function) -> bool:
    return (grant.schema, grant.name, grant.arg_types) == (function.schema, function.name, function.arg_types)


def _only_roles_removed(old: Policy, new: Policy) -> bool:
    return (old.using, old.check) == (new.using, new.check) and set(new.roles) < set(old.roles)


# -- order --------------------------------------------------------------------------------------

# The one statement of the order. Roles and schemas first; helper functions
# before the policies that call them; RLS enabled and forced before any policy
# or grant of a table changes; revokes and drops before grants and creates;
# grants last; functions dropped only after nothing references them.
ORDER: tuple[tuple[str, str], ...] = (
    ("role", "create"),
    ("role", "alter"),
    ("membership", "grant"),
    ("membership", "revoke"),
    ("schema", "create"),
    ("schema", "alter"),
    ("schema_privilege", "revoke"),
    ("schema_privilege", "grant"),
    ("default_privilege", "create"),
    ("extension", "create"),
    ("helper_owner", "may_create"),
    ("key_store", "create"),
    ("key_store", "alter"),
    ("function", "create"),
    ("function", "recreate"),
    ("function", "replace"),
    ("function", "owner"),
    ("helper_owner", "may_not_create"),
    ("active_key", "create"),
    ("function_grant", "revoke"),
    ("function_grant", "grant"),
    ("table", "owner"),
    ("table", "enable"),
    ("table", "force"),
    ("table_grant", "revoke"),
    ("column_grant", "revoke"),
    ("trigger", "drop"),
    ("policy", "drop"),
    ("policy", "recreate"),
    ("policy", "alter"),
    ("policy", "create"),
    ("trigger", "recreate"),
    ("trigger", "create"),
    ("table_grant", "grant"),
    ("column_grant", "grant"),
    ("function", "drop"),
)
RANK = {step: index for index, step in enumerate(ORDER)}


def ordered(ops: list[Operation], helper_schema: str, owners: tuple[str, ...]) -> list[Operation]:
    """Operations in execution order; the function owners may create only while they take their functions."""
    result = list(ops)
    taking = {
        op.new.owner
        for op in ops
        if isinstance(op.new, Function | KeyStore) and op.action in ("create", "recreate", "replace", "owner", "alter")
    }
    for owner in sorted(taking & set(owners)):
        transient = SchemaPrivilege(helper_schema, owner, "CREATE")
        result.append(Operation("may_create", None, transient, NEUTRAL))
        result.append(Operation("may_not_create", transient, None, NEUTRAL))
    return sorted(result, key=_rank)


def _rank(op: Operation) -> tuple[int, str]:
    kind = "helper_owner" if op.action in ("may_create", "may_not_create") else op.kind
    return RANK[(kind, op.action)], op.obj.sort_key


def render(op: Operation, context: object, templates: Path | None) -> str:
    """The SQL of one operation, from the macro `action` of `objects/<kind>.sql.j2`."""
    if op.action == "may_create":
        return call_macro("objects/schema_privilege.sql.j2", "grant", templates, op.new, context)
    if op.action == "may_not_create":
        return call_macro("objects/schema_privilege.sql.j2", "revoke", templates, op.old, context)
    template = f"objects/{op.kind}.sql.j2"
    if op.kind == "column_grant":
        raise ValueError("column grants render in groups: use render_group")
    if op.action in ("drop", "revoke"):
        return call_macro(template, op.action, templates, op.old, context)
    if op.old is not None and op.new is not None and op.kind != "table":
        return call_macro(template, op.action, templates, op.new, context, op.old)
    return call_macro(template, op.action, templates, op.new, context)


def render_group(ops: list[Operation], context: object, templates: Path | None) -> str:
    """Column grants of one table, grantee, privilege and action as one statement."""
    objs = [op.obj for op in ops]
    return call_macro("objects/column_grant.sql.j2", ops[0].action, templates, objs, context)


def grouped(ops: list[Operation]) -> list[list[Operation]]:
    """Consecutive operations that render as one statement (column grants), else one each."""
    groups: list[list[Operation]] = []
    for op in ops:
        previous = groups[-1][-1] if groups else None
        if (
            previous is not None
            and op.kind == "column_grant"
            and previous.kind == "column_grant"
            and op.action == previous.action
            and op.obj.group == previous.obj.group  # type: ignore[attr-defined]
        ):
            groups[-1].append(op)
        else:
            groups.append([op])
    return groups
