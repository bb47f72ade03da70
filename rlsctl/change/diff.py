"""Declared vs live: differences, the operations that remove them, and their order.

`differences` is generic over keyed objects. `operations` turns each
difference into a typed operation that carries the old and the new object
(so it can be shown, labelled and reversed). `ordered` is the one place that
states the order statements run in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from rlsctl.change.effect import SAME, UNKNOWN, rows_admitted
from rlsctl.pg.sql import ident, qualified
from rlsctl.pg.templates import call_macro
from rlsctl.state.objects import (
    ColumnGrant,
    DefaultPrivilege,
    Extension,
    Function,
    FunctionGrant,
    KeyTable,
    Obj,
    Objects,
    Policy,
    Role,
    Schema,
    SchemaPrivilege,
    TableGrant,
    TableSecurity,
    Trigger,
    UndeclaredTable,
    UntrustedCode,
)

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


TRIGGER_STATES = {"D": "disabled", "R": "fires only in replica sessions", "A": "enabled ALWAYS"}


class Irreversible(ValueError):
    """An operation whose previous state is unknown or cannot be brought back."""


# The action that undoes each action (old and new swapped). Every action is listed,
# and the mapping is its own inverse; "refuse" changes nothing, so it undoes itself.
INVERSE = {
    "create": "drop",
    "grant": "revoke",
    "enable": "disable",
    "force": "no_force",
    "grant_option": "revoke_grant_option",
    "detach": "attach",
    "may_create": "may_not_create",
    "regrant": "keep",
    **{same: same for same in ("alter", "owner", "recreate", "replace", "refuse", "needs_dba")},
}
INVERSE.update({undo: do for do, undo in INVERSE.items()})


@dataclass(frozen=True)
class Operation:
    action: str  # the macro of objects/<kind>.sql.j2 that renders it (see MACRO for aliases)
    old: Obj | None
    new: Obj | None
    effect: str  # widens | narrows | neutral
    # Grants its CASCADE removes besides the one named (what the grantee passed on):
    # shown with the statement, never reported as left alone.
    cascades: tuple[Obj, ...] = ()

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

    @property
    def refusal(self) -> str:
        """Why apply will not repair this difference (for a "refuse" operation)."""
        if isinstance(self.old, Role):
            return f"role {self.old.name} is {' and '.join(self.old.bypass_attributes)}; rlsctl will not manage it"
        if isinstance(self.old, Schema) and isinstance(self.new, Schema):
            return (
                f"schema {self.old.name} is owned by {self.old.owner}, not {self.new.owner}; "
                "rlsctl will not adopt it (objects left in it would run as its own)"
            )
        if isinstance(self.new, FunctionGrant | SchemaPrivilege) and self.old is None:
            return (
                f"{self.new.grantee} cannot use {_target(self.new)}, which rlsctl's encryption calls, and this "
                f"session cannot grant it: a DBA must run `{_grant_sql(self.new)}` (see `rlsctl plan --dba-script`)"
            )
        if isinstance(self.old, Extension) and isinstance(self.new, Extension):
            who = ", ".join(self.old.writers) or "this session's own role"
            return (
                f"extension {self.old.name} lives in schema {self.old.schema}, where {who} may create objects: "
                f"an overload planted there would run in the keys role's code, and this session cannot move it; "
                f"a DBA must run `ALTER EXTENSION {ident(self.old.name)} SET SCHEMA {ident(self.new.schema)}`"
                # The owner of a schema keeps CREATE whatever is revoked: only moving helps then.
                + ("" if self.old.owner_is_session else f" (or take CREATE on {self.old.schema} away from {who})")
                + ": see `rlsctl plan --dba-script`"
            )
        return ""

    @property
    def detail(self) -> str:
        """What differs, where the key alone does not say it (for drift)."""
        if self.action == "refuse":
            return self.refusal
        if self.action == "needs_dba":
            return _needs_dba(self.obj, "grant" if self.new is not None else "revoke")
        if self.action == "revoke_grant_option":
            return "WITH GRANT OPTION"
        if isinstance(self.old, Trigger) and isinstance(self.new, Trigger):
            return trigger_change(self.old, self.new)
        if isinstance(self.old, Extension) and isinstance(self.new, Extension):
            return f"in schema {self.old.schema}, not {self.new.schema}"
        if self.old is not None and self.new is not None:
            return fields_changed(self.old, self.new)
        if self.new is not None:
            return "declared, not in the database"
        return "in the database, not declared"

    def reverse(self) -> Operation:
        """The operation that undoes this one: the inverse action, old and new swapped, its own effect.

        Raises Irreversible where the state before is not known (the owner a table
        had before rlsctl first saw it) or cannot come back (a data key, once
        rows may be encrypted with it)."""
        if self.kind == "active_key":
            raise Irreversible(f"{self.key}: data may already be encrypted with it; retire it with rlsctl keys")
        if self.kind == "table" and self.action == "owner" and self.old is None:
            raise Irreversible(f"{self.key}: its owner before rlsctl first secured it is not known")
        action = INVERSE[self.action]
        old, new = self.new, self.old
        if self.kind == "table" and new is None:
            new = old  # a table rlsctl first saw: only the flag the action names changes back
        return Operation(action, old, new, effect_of(action, old, new))


def fields_changed(old: Obj, new: Obj) -> str:
    """`field: live -> declared` for each compared field that differs (long values shortened)."""
    found = [
        f"{field.name.replace('_', ' ')}: {_short(getattr(old, field.name))} -> {_short(getattr(new, field.name))}"
        for field in dataclasses.fields(old)
        if field.compare and getattr(old, field.name) != getattr(new, field.name)
    ]
    return "; ".join(found)


def _short(value: object, limit: int = 80) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _target(obj: FunctionGrant | SchemaPrivilege) -> str:
    if isinstance(obj, FunctionGrant):
        return f"{obj.schema}.{obj.name}({obj.arg_types})"
    return f"schema {obj.schema}"


def _grant_sql(obj: FunctionGrant | SchemaPrivilege) -> str:
    """The statement for a DBA, printed in a message (never run): names quoted as the templates
    quote them, so what a DBA pastes is what `plan --dba-script` writes."""
    if isinstance(obj, FunctionGrant):
        return f"GRANT EXECUTE ON FUNCTION {qualified(obj.schema, obj.name)}({obj.arg_types}) TO {ident(obj.grantee)}"
    return f"GRANT {obj.privilege} ON SCHEMA {ident(obj.schema)} TO {ident(obj.grantee)}"


def _needs_dba(obj: Obj, action: str) -> str:
    """Why apply leaves a difference to a DBA: it cannot act as the role that decides it."""
    if isinstance(obj, UntrustedCode) and not obj.runs_in_keys_sessions:
        return obj.detail
    if isinstance(obj, UntrustedCode):
        return (
            f"{obj.detail}: it would run in rlsctl keys sessions, where the key-encryption key is a "
            "session setting; rlsctl keys refuses this table until a DBA removes it"
        )
    if isinstance(obj, UndeclaredTable) and obj.what == "sequence":
        return (
            f"{', '.join(obj.reached_by)}: its last_value counts every tenant's rows (SELECT), or can be set "
            "(UPDATE), and no declared table's column owns it; revoke the grants (a table's own serial "
            "sequence gets USAGE from rlsctl, never more); apply leaves it alone"
        )
    if isinstance(obj, UndeclaredTable) and obj.parent_of:
        reached = f"; reached by {', '.join(obj.reached_by)}" if obj.reached_by else ""
        return (
            f"declared {', '.join(obj.parent_of)} inherit{'s' if len(obj.parent_of) == 1 else ''} from it "
            f"(ALTER TABLE ... INHERIT): whoever reads it reads their rows without their policies{reached}; "
            "NO INHERIT it, or declare it under tables:; apply leaves it alone"
        )
    if isinstance(obj, UndeclaredTable):
        rls = "row-level security on" if obj.rls else "row-level security OFF"
        return (
            f"no policy file declares it, yet {', '.join(obj.reached_by)} ({rls}): declare it under "
            "tables: so rlsctl manages its grants and policies, or revoke the grants; apply leaves it alone"
        )
    role = obj.creator if isinstance(obj, DefaultPrivilege) else getattr(obj, "grantor", None)
    if isinstance(obj, FunctionGrant):
        role = f"the owner of {obj.schema}.{obj.name}({obj.arg_types})"
    return (
        f"apply cannot {action} it: that needs membership in {role} (or a superuser); "
        f"a DBA must {action} it, apply reports it and changes nothing else about it"
    )


def trigger_change(old: Trigger, new: Trigger) -> str:
    """What differs between a live trigger and the declared one, in SQL's words."""
    found: list[str] = []
    if old.calls != new.calls:
        args = f"'{old.args}'" if old.args else ""
        found.append(f"calls {old.function_schema}.{old.function_name}({args}), not {new.function_name}()")
    if (old.timing, old.level) != (new.timing, new.level):
        found.append(f"{old.timing} FOR EACH {old.level}, not {new.timing} FOR EACH {new.level}")
    if old.events != new.events:
        found.append(f"on {old.events}, not {new.events}")
    if old.columns != new.columns:
        found.append(f"UPDATE OF {', '.join(old.columns)}" if old.columns else "on every column")
    if old.when != new.when:
        found.append(f"WHEN ({old.when})" if old.when is not None else "without WHEN")
    if old.enabled != new.enabled:
        found.append(TRIGGER_STATES.get(old.enabled, "enabled"))
    return "; ".join(found)


def reversed_operations(ops: list[Operation]) -> list[Operation]:
    """The operations that undo `ops`, in the order that undoes them (last first)."""
    return [op.reverse() for op in reversed(ops)]


# -- effects ------------------------------------------------------------------------------

# For grants of every kind and the table's RLS flags.
WIDENING = {"grant", "grant_option", "disable", "no_force"}
NARROWING = {"revoke", "revoke_grant_option", "enable", "force", "needs_dba"}
# Kinds whose creation or removal does not by itself change who reaches which row.
NEUTRAL_KINDS = {
    "role",
    "schema",
    "extension",
    "function",
    "key_table",
    "active_key",
    "encrypted_column",
}


def effect_of(action: str, old: Obj | None, new: Obj | None) -> str:
    """What an operation does to access: widens, narrows or neutral (docs/diff.md)."""
    obj = new if new is not None else old
    assert obj is not None
    if action in ("may_create", "may_not_create", "owner"):
        return NEUTRAL  # CREATE held only while the owner takes its functions; ownership
    if isinstance(obj, Policy):
        return _policy_effect(action, old, new)
    if isinstance(obj, Trigger):
        return _trigger_effect(action, old, new)
    if isinstance(obj, Role):
        return _role_effect(action, old, new)
    if obj.kind in NEUTRAL_KINDS:
        # a body or signature changed can open anything: shown to the reviewer as widening
        return WIDENS if obj.kind == "function" and action in ("replace", "recreate") else NEUTRAL
    if action in WIDENING:
        return WIDENS
    if action in NARROWING:
        return NARROWS
    return NEUTRAL


def _policy_effect(action: str, old: Obj | None, new: Obj | None) -> str:
    """Permissive policies let rows in, restrictive ones filter them out."""
    if action in ("create", "attach"):
        assert isinstance(new, Policy)
        return WIDENS if new.permissive else NARROWS
    if action in ("drop", "detach"):
        assert isinstance(old, Policy)
        return NARROWS if old.permissive else WIDENS
    assert isinstance(old, Policy) and isinstance(new, Policy)
    same_rule = (old.command, old.using, old.check) == (new.command, new.using, new.check)
    if not same_rule:
        return _rule_effect(old, new)
    if old.permissive and new.permissive:
        return NARROWS if _fewer_roles(old.roles, new.roles) else WIDENS
    if not old.permissive and not new.permissive:
        return NARROWS if _fewer_roles(new.roles, old.roles) else WIDENS
    # A way in that becomes a filter (for the same roles) narrows; the other way round widens.
    return NARROWS if old.permissive and old.roles == new.roles else WIDENS


def _rule_effect(old: Policy, new: Policy) -> str:
    """A policy whose expressions changed: proved from their shapes where possible (rlsctl.change.effect),
    else shown as widening. A check left out is the USING (PostgreSQL checks new rows by it)."""
    if old.command != new.command or old.permissive != new.permissive or old.roles != new.roles:
        return WIDENS
    results = {
        rows_admitted(old.using, new.using),
        rows_admitted(old.check or old.using, new.check or new.using),
    } - {SAME}
    if len(results) != 1 or UNKNOWN in results:
        return WIDENS  # unproved, or one widens while the other narrows
    admitted = results.pop()
    if not new.permissive:  # a restrictive policy that admits more rows filters fewer out
        return NARROWS if admitted == WIDENS else WIDENS
    return admitted


def _fewer_roles(before: tuple[str, ...], after: tuple[str, ...]) -> bool:
    """Whether `after` names a strict subset of the roles `before` reaches (PUBLIC is everyone)."""
    if "PUBLIC" in after:
        return False
    return "PUBLIC" in before or set(after) < set(before)


def _trigger_effect(action: str, old: Obj | None, new: Obj | None) -> str:
    """rlsctl's triggers refuse changes (guards) or hide plaintext (encryption): firing narrows,
    and so does firing in more cases (events, columns, WHEN, BEFORE ROW, rlsctl's own function)."""
    if not (isinstance(old, Trigger) and isinstance(new, Trigger)):
        fires = isinstance(new, Trigger) and new.fires
        stops = isinstance(old, Trigger) and old.fires
        return NARROWS if fires else WIDENS if stops else NEUTRAL
    if replace(old, enabled=new.enabled) == new and old.fires == new.fires:
        return NEUTRAL  # enabled ALWAYS vs ORIGIN: the same for the application's sessions
    if new.fires_at_least_as_much_as(old):
        return NEUTRAL if old.fires_at_least_as_much_as(new) else NARROWS
    # Fires in fewer cases, or in others: not something a plan can prove harmless.
    return WIDENS


def _role_effect(action: str, old: Obj | None, new: Obj | None) -> str:
    if action == "refuse":
        return NARROWS  # the repair rlsctl refuses would take SUPERUSER or BYPASSRLS away
    if not (isinstance(old, Role) and isinstance(new, Role)):
        return NEUTRAL  # created or dropped: a NOLOGIN role with nothing granted yet
    gained = new.abilities - old.abilities
    if gained:
        return WIDENS
    return NARROWS if old.abilities - new.abilities else NEUTRAL


# -- choosing operations ------------------------------------------------------------------

GRANT_KINDS = {"membership", "schema_privilege", "default_privilege", "function_grant", "table_grant", "column_grant"}
# Never dropped by apply: data (tables, the key store and its keys) and what other projects may share.
NEVER_REMOVED = {"role", "schema", "extension", "table", "key_table", "active_key", "encrypted_column"}


def operations(
    diff: Differences,
    declared: Objects | None = None,
    live: Objects | None = None,
    dependents: Mapping[str, tuple[str, ...]] | None = None,
) -> list[Operation]:
    """The operations that remove the differences. `dependents`: function key -> live policies calling it."""
    declared = declared or {}
    ops: list[Operation] = []
    for obj in diff.added:
        ops += _added(obj)
    for obj in diff.removed:
        if obj.kind not in NEVER_REMOVED:
            ops.append(_removed(obj))
    for old, new in diff.modified:
        ops += _modified(old, new, declared)
    ops += _column_grants_restored(ops, declared, live or {})
    return _detach_dependents(ops, declared, live or {}, dependents or {})


def _removed(obj: Obj) -> Operation:
    if isinstance(obj, UntrustedCode | UndeclaredTable):
        return _operation("needs_dba", obj, None)  # the tables' owner made it: apply never drops others' code
    if obj.kind not in GRANT_KINDS:
        return _operation("drop", obj, None)
    # Another role's default privileges, or a grant another grantor made, can only be
    # revoked by a session that may act as that role: else a DBA must (no statement).
    return _operation("revoke" if getattr(obj, "repairable", True) else "needs_dba", obj, None)


def _column_grants_restored(ops: list[Operation], declared: Objects, live: Objects) -> list[Operation]:
    """REVOKE of a table-level privilege also takes the grantee's column privileges of that
    kind from the same grantor (PostgreSQL does so on every column): the declared column
    grants it takes are granted again afterwards ("regrant", not drift: they were there and
    stay), so one apply converges. Its reverse ("keep") runs nothing."""
    revoked = {
        (op.old.schema, op.old.table, op.old.grantee, op.old.privilege, op.old.grantor)
        for op in ops
        if op.action == "revoke" and isinstance(op.old, TableGrant)
    }
    return [
        _operation("regrant", None, obj)
        for key, obj in declared.items()
        if isinstance(obj, ColumnGrant) and key in live and obj.group in revoked
    ]


def _operation(action: str, old: Obj | None, new: Obj | None) -> Operation:
    return Operation(action, old, new, effect_of(action, old, new))


def _added(obj: Obj) -> list[Operation]:
    if isinstance(obj, TableSecurity):
        return _table(None, obj)
    if obj.kind not in GRANT_KINDS:
        return [_operation("create", None, obj)]
    if getattr(obj, "repairable", True):
        return [_operation("grant", None, obj)]
    return [_operation("refuse" if getattr(obj, "required", False) else "needs_dba", None, obj)]


def _modified(old: Obj, new: Obj, declared: Objects) -> list[Operation]:
    if isinstance(new, TableSecurity):
        assert isinstance(old, TableSecurity)
        return _table(old, new)
    if isinstance(new, Function):
        assert isinstance(old, Function)
        return _function(old, new, declared)
    if isinstance(new, Policy):
        assert isinstance(old, Policy)
        return [_operation("recreate" if _policy_needs_recreate(old, new) else "alter", old, new)]
    if isinstance(new, Role):
        assert isinstance(old, Role)
        # A managed role that bypasses RLS is drift, but not something apply takes away behind a DBA's back.
        return [_operation("refuse" if old.bypass_attributes else "alter", old, new)]
    if isinstance(new, Extension):
        assert isinstance(old, Extension)
        return [_operation("alter" if old.movable else "refuse", old, new)]
    if isinstance(new, Schema):
        assert isinstance(old, Schema)
        if old.owner in new.adopt_from:
            # A role of rlsctl's that held the helper schema before it moved to the keys role:
            # rlsctl made everything in it (and inspects it: extra functions are dropped).
            return [_operation("owner", old, new)]
        # Someone else's schema (or one given away) may hold objects rlsctl does not inspect.
        return [_operation("refuse", old, new)]
    if isinstance(new, Trigger):
        assert isinstance(old, Trigger)
        # Timing, level, events, columns, WHEN, function or arguments: only CREATE TRIGGER sets
        # them, so the trigger is dropped and created again (one transaction: no window).
        only_state = replace(old, enabled=new.enabled) == new
        return [_operation("enable" if only_state else "recreate", old, new)]
    if isinstance(new, TableGrant | ColumnGrant):
        assert isinstance(old, TableGrant | ColumnGrant)
        # Same key, so only the grant option differs.
        return [_operation("revoke_grant_option" if old.grantable else "grant_option", old, new)]
    return [_operation("alter", old, new)]


def _function(old: Function, new: Function, declared: Objects) -> list[Operation]:
    if old.returns != new.returns:
        # CREATE OR REPLACE cannot change the result type; dropping loses the grants, so re-grant them.
        regrants = [
            _operation("grant", None, obj)
            for obj in declared.values()
            if isinstance(obj, FunctionGrant) and _same_function(obj, new)
        ]
        return [_operation("recreate", old, new), *regrants]
    if replace(old, owner=new.owner) == new:
        return [_operation("owner", old, new)]
    # Body, language, volatility, security, settings: CREATE OR REPLACE keeps grants and dependents.
    return [_operation("replace", old, new)]


def _policy_needs_recreate(old: Policy, new: Policy) -> bool:
    """ALTER POLICY changes roles and expressions, but cannot change the command or
    the kind, nor remove a USING or WITH CHECK clause."""
    if (old.command, old.permissive) != (new.command, new.permissive):
        return True
    return (old.using is not None and new.using is None) or (old.check is not None and new.check is None)


def _table(old: TableSecurity | None, new: TableSecurity) -> list[Operation]:
    """Owner, then RLS enabled, then forced (what differs; everything for a table seen first).
    Declared tables are enabled and forced; the key store is enabled, not forced (its owner
    reads it), and the phase bookkeeping neither: a flag set by hand is taken back too."""
    found: list[Operation] = []
    if old is None or old.owner != new.owner:
        found.append(_operation("owner", old, new))
    # A table seen first gets what is declared on; one seen before, what differs.
    if (new.rls_enabled and old is None) or (old is not None and old.rls_enabled != new.rls_enabled):
        found.append(_operation("enable" if new.rls_enabled else "disable", old, new))
    if (new.rls_forced and old is None) or (old is not None and old.rls_forced != new.rls_forced):
        found.append(_operation("force" if new.rls_forced else "no_force", old, new))
    return found


def _same_function(grant: FunctionGrant, function: Function) -> bool:
    return (grant.schema, grant.name, grant.arg_types) == (function.schema, function.name, function.arg_types)


def _detach_dependents(
    ops: list[Operation], declared: Objects, live: Objects, dependents: Mapping[str, tuple[str, ...]]
) -> list[Operation]:
    """A function that must be dropped and created again, or dropped for good (a helper whose
    argument types change: the declared one has another signature, while the live policies' text
    may not change at all), takes the live policies that call it with it (PostgreSQL refuses to
    drop it under them): they are dropped just before it and the declared ones created again with
    the other policies, in the same transaction. Their tables keep RLS on throughout, so they
    admit fewer rows in between, never more."""
    recreated = {op.key for op in ops if op.kind == "function" and op.action in ("recreate", "drop")}
    detached = sorted({policy for function in recreated for policy in dependents.get(function, ())})
    if not detached:
        return ops
    kept = [op for op in ops if not (op.kind == "policy" and op.key in detached)]
    for key in detached:
        kept.append(_operation("detach", live[key], None))
        if key in declared:
            kept.append(_operation("create", None, declared[key]))
    return kept


# -- order --------------------------------------------------------------------------------------

# The one statement of the order. Roles and schemas first; helper functions
# before the policies that call them; RLS enabled and forced before any policy
# or grant of a table changes; revokes and drops before grants and creates;
# grants last; functions dropped only after nothing references them.
ORDER: tuple[tuple[str, str], ...] = (
    ("role", "refuse"),
    ("role", "create"),
    ("role", "alter"),
    ("membership", "grant"),
    ("membership", "revoke"),
    ("schema", "refuse"),
    ("schema", "create"),
    ("schema", "owner"),
    ("schema_privilege", "refuse"),
    ("schema_privilege", "needs_dba"),
    ("schema_privilege", "revoke"),
    ("schema_privilege", "grant"),
    ("default_privilege", "needs_dba"),
    ("default_privilege", "revoke"),
    ("default_privilege", "grant"),
    ("extension", "refuse"),
    ("extension", "create"),
    ("extension", "alter"),
    ("helper_owner", "may_create"),
    ("key_table", "create"),
    ("policy", "detach"),  # policies calling a function that is dropped and created again
    ("function", "create"),
    ("function", "recreate"),
    ("function", "replace"),
    ("function", "owner"),
    ("helper_owner", "may_not_create"),
    ("active_key", "create"),
    ("encrypted_column", "create"),
    ("function_grant", "refuse"),
    ("function_grant", "needs_dba"),
    ("function_grant", "revoke"),
    ("function_grant", "grant"),
    ("table", "owner"),
    ("table", "enable"),
    ("table", "force"),
    ("table", "no_force"),  # the key store and the bookkeeping table only (their owner reads them)
    ("table", "disable"),
    # Grants another grantor made go first, while that grantor still holds the privilege
    # (its own grant option may be revoked next): REVOKE as a role holding nothing fails.
    ("table_grant_by_other", "revoke"),
    ("column_grant_by_other", "revoke"),
    ("table_grant", "needs_dba"),
    ("column_grant", "needs_dba"),
    ("table_grant", "revoke"),
    ("table_grant", "revoke_grant_option"),
    ("column_grant", "revoke"),
    ("column_grant", "revoke_grant_option"),
    ("untrusted_code", "needs_dba"),
    ("undeclared_table", "needs_dba"),
    ("trigger", "drop"),
    ("trigger", "disable"),
    ("policy", "drop"),
    ("policy", "recreate"),
    ("policy", "alter"),
    ("policy", "create"),
    ("policy", "attach"),
    ("trigger", "recreate"),
    ("trigger", "create"),
    ("trigger", "enable"),
    ("table_grant", "grant"),
    ("table_grant", "grant_option"),
    ("column_grant", "grant"),
    ("column_grant", "regrant"),
    ("column_grant", "grant_option"),
    ("function", "drop"),
    # Only ever the reverse of an apply (Operation.reverse): apply itself never runs these.
    ("column_grant", "keep"),
    ("encrypted_column", "drop"),
    ("key_table", "drop"),
    ("extension", "drop"),
    ("schema", "drop"),
    ("role", "drop"),
)
RANK = {step: index for index, step in enumerate(ORDER)}


def ordered(ops: list[Operation], helper_schema: str, owners: tuple[str, ...]) -> list[Operation]:
    """Operations in execution order; the function owners may create only while they take their functions."""
    result = list(ops)
    taking = {
        op.new.owner
        for op in ops
        if isinstance(op.new, Function | KeyTable)
        and op.action in ("create", "recreate", "replace", "owner", "alter")
    }
    for owner in sorted(taking & set(owners)):
        transient = SchemaPrivilege(helper_schema, owner, "CREATE")
        result.append(Operation("may_create", None, transient, NEUTRAL))
        result.append(Operation("may_not_create", transient, None, NEUTRAL))
    return sorted(result, key=_rank)


def _rank(op: Operation) -> tuple[int, str]:
    kind = op.kind
    if op.action in ("may_create", "may_not_create"):
        kind = "helper_owner"
    elif op.action == "revoke" and getattr(op.obj, "grantor", None) is not None:
        kind = f"{op.kind}_by_other"
    return RANK[(kind, op.action)], op.obj.sort_key


REMOVING = {"drop", "revoke", "detach"}
# Actions rendered by another action's macro, where the statement is the same.
MACRO = {
    ("table_grant", "grant_option"): "grant",
    ("column_grant", "grant_option"): "grant",
    ("column_grant", "regrant"): "grant",
    ("trigger", "enable"): "set_state",
    ("trigger", "disable"): "set_state",
    ("policy", "detach"): "drop",
    ("policy", "attach"): "create",
}
# Differences apply reports but runs nothing for (a refusal stops apply before anything).
NO_STATEMENT = {"refuse", "needs_dba", "keep"}
# Operations that are no difference of their own (drift does not list them).
NOT_DRIFT = {"may_create", "may_not_create", "regrant", "keep"}


def render(op: Operation, context: object, templates: Path | None) -> str:
    """The SQL of one operation, from the macro `action` of `objects/<kind>.sql.j2`."""
    if op.action in NO_STATEMENT:
        return ""
    if op.action == "may_create":
        return call_macro("objects/schema_privilege.sql.j2", "grant", templates, op.new, context)
    if op.action == "may_not_create":
        return call_macro("objects/schema_privilege.sql.j2", "revoke", templates, op.old, context)
    template = f"objects/{op.kind}.sql.j2"
    macro = MACRO.get((op.kind, op.action), op.action)
    if op.kind == "column_grant":
        raise ValueError("column grants render in groups: use render_group")
    if op.kind == "table":
        return call_macro(template, macro, templates, op.obj, context)
    if op.action in REMOVING:
        return call_macro(template, macro, templates, op.old, context)
    if op.old is not None and op.new is not None:
        return call_macro(template, macro, templates, op.new, context, op.old)
    return call_macro(template, macro, templates, op.new, context)


def render_group(ops: list[Operation], context: object, templates: Path | None) -> str:
    """Column grants of one table, grantee, privilege and action as one statement."""
    if ops[0].action in NO_STATEMENT:
        return ""
    objs = [op.old if op.action in REMOVING else op.obj for op in ops]
    macro = MACRO.get(("column_grant", ops[0].action), ops[0].action)
    return call_macro("objects/column_grant.sql.j2", macro, templates, objs, context)


# -- what a CASCADE takes along ----------------------------------------------------------------


def with_cascades(ops: list[Operation], live_grants: Iterable[Obj]) -> list[Operation]:
    """Each revoke that cascades (a grant option goes) names the grants it removes besides
    its own: those the grantee made with the option, and theirs in turn. Grants the plan
    revokes by themselves (before it: see ORDER) are not counted twice."""
    grants = [g for g in live_grants if isinstance(g, TableGrant | ColumnGrant)]
    revoked = {op.old.key for op in ops if op.action in ("revoke", "needs_dba") and op.old is not None}
    result = []
    for op in ops:
        old = op.old
        cascading = op.action in ("revoke", "revoke_grant_option")
        if cascading and isinstance(old, TableGrant | ColumnGrant) and old.grantable:
            op = replace(op, cascades=tuple(g for g in cascade_of(old, grants) if g.key not in revoked))
        result.append(op)
    return result


Grant = TableGrant | ColumnGrant


def cascade_of(grant: Grant, grants: list[Grant]) -> list[Grant]:
    """The grants PostgreSQL removes with `grant`'s grant option: made by its grantee on the
    same table (or column) and privilege, and on down the chain while a grantee holds the
    option from nowhere else. (A table-level option's CASCADE leaves column grants alone.)"""
    level = [g for g in grants if g.chain == grant.chain and _column(g) == _column(grant)]
    losing = {grant.grantee}
    taken: list[Grant] = []
    while True:
        more = [g for g in level if g.grantor in losing and g not in taken and g != grant]
        if not more:
            return taken
        taken += more
        kept = [g for g in level if g not in taken and g != grant]
        still_holding = {k.grantee for k in kept if k.grantable}
        losing = {g.grantee for g in more if g.grantable and g.grantee not in still_holding}


def _column(grant: Grant) -> str | None:
    return grant.column if isinstance(grant, ColumnGrant) else None


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
