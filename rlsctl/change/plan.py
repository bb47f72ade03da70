"""The plan: every statement apply would run, in order, each labelled with its effect.

`plan_for_database` compares the declared state with the live catalog;
`plan_for_empty` compares it with nothing (what `rlsctl render` prints: the
statements for a freshly migrated database). Both render through the same
object templates, so the SQL of a change is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import psycopg

from rlsctl.catalog import queries as catalog
from rlsctl.catalog.inspect import Live, live_objects
from rlsctl.change import diff as d
from rlsctl.change.effect import RANKS
from rlsctl.change.normalise import normalise_policies
from rlsctl.declare.objects import declared_objects, render_bodies
from rlsctl.declare.state import DeclaredState
from rlsctl.schema.ddl import split_rendered
from rlsctl.state.objects import (
    ENCRYPT_TRIGGER,
    Obj,
    Objects,
    Role,
    Schema,
    Trigger,
    builtin_defaults,
    grants_of_foreign_functions,
    present_only,
)


@dataclass(frozen=True)
class Statement:
    sql: str
    effect: str
    action: str
    object: str  # the key of the object it changes
    cascades: tuple[str, ...] = ()  # keys of the grants its CASCADE removes besides `object`


@dataclass(frozen=True)
class Plan:
    state: DeclaredState
    operations: tuple[d.Operation, ...]
    statements: tuple[Statement, ...]
    unmanaged: tuple[Obj, ...] = ()  # grants to and memberships of undeclared roles: reported, left alone
    pending: tuple[tuple[str, int | None], ...] = ()  # declared tables not present, with their phase
    pending_columns: tuple[tuple[str, str, int | None], ...] = ()  # (table, column, phase) named but not present
    acknowledged: tuple[tuple[str, str], ...] = ()  # (object key, reason): DBA items the project accepts
    live_schemas: frozenset[str] = frozenset()  # schemas (but public) that exist in the database

    def acknowledgement(self, op: d.Operation) -> str | None:
        """The reason the project gave for leaving this difference to a DBA, if it did."""
        if op.action != "needs_dba":
            return None  # only what apply cannot do may be acknowledged; refusals must be fixed
        return dict(self.acknowledged).get(op.key)

    @property
    def drift(self) -> tuple[d.Operation, ...]:
        """The differences drift fails on: all but those acknowledged and those that change nothing."""
        return tuple(
            op for op in self.operations if op.action not in d.NOT_DRIFT and self.acknowledgement(op) is None
        )

    @property
    def empty(self) -> bool:
        return not self.operations

    @property
    def for_dba(self) -> tuple[d.Operation, ...]:
        """Differences apply cannot repair as this session (drift; apply reports them)."""
        return tuple(op for op in self.operations if op.action == "needs_dba")

    @property
    def refusals(self) -> tuple[str, ...]:
        """Why apply will not run this plan (a managed role that bypasses RLS, a schema given away)."""
        return tuple(op.refusal for op in self.operations if op.action == "refuse")

    @property
    def sql(self) -> tuple[str, ...]:
        return tuple(statement.sql for statement in self.statements)

    @property
    def newly_encrypted_tables(self) -> tuple[str, ...]:
        """Tables whose encryption starts with this plan: their existing plaintext needs a backfill."""
        return tuple(
            sorted(
                op.new.table
                for op in self.operations
                if op.action == "create" and isinstance(op.new, Trigger) and op.new.name == ENCRYPT_TRIGGER
            )
        )


def render_operations(ops: list[d.Operation], state: DeclaredState, templates: Path | None) -> tuple[Statement, ...]:
    """The statements of operations in the order given (column grants of one target share one)."""
    found: list[Statement] = []
    for group in d.grouped(ops):
        first = group[0]
        if first.kind == "column_grant":
            text = d.render_group(group, state, templates)
            label = _column_label(group)
        else:
            text = d.render(first, state, templates)
            label = first.key
        cascades = tuple(obj.key for op in group for obj in op.cascades)
        for sql in split_rendered(text):
            taken = cascades if sql.startswith("REVOKE") else ()  # not the SET ROLE around it
            found.append(Statement(sql, first.effect, first.action, label, taken))
    return tuple(found)


def _column_label(group: list[d.Operation]) -> str:
    """The key of the group's first grant, naming all its columns."""
    columns = ", ".join(op.obj.column for op in group)  # type: ignore[attr-defined]
    return replace(group[0].obj, column=columns).key  # type: ignore[type-var]


def plan_changes(
    state: DeclaredState, declared: Objects, live: Live, templates: Path | None, kinds: set[str] | None = None
) -> tuple[d.Operation, ...]:
    objects = live.objects
    declared = present_only(declared, objects)
    declared = grants_of_foreign_functions(declared, live.foreign_functions, live.foreign_schemas)
    if kinds is not None:
        declared = {k: v for k, v in declared.items() if v.kind in kinds}
        objects = {k: v for k, v in objects.items() if v.kind in kinds}
    # A policy whose rank changed is labelled by the ranks' order (rlsctl.change.effect).
    token = RANKS.set(state.tenancy.ranks if state.tenancy is not None else ())
    try:
        ops = d.operations(d.differences(declared, objects), declared, objects, live.dependents)
    finally:
        RANKS.reset(token)
    ops = d.with_cascades(ops, [*live.objects.values(), *live.unmanaged])
    # The helper schema's owner creates there anyway; the other function owners only while they take theirs.
    owners = tuple(owner for owner in state.function_owners if owner != state.helper_owner)
    return tuple(d.ordered(ops, state.helper_schema, owners))


def plan_for_empty(state: DeclaredState, templates: Path | None) -> Plan:
    """Everything declared, against a database that has only PostgreSQL's built-in defaults
    (operator unknown: a conditional membership grant)."""
    declared = declared_objects(state, render_bodies(state, templates), operator="")
    ops = plan_changes(state, declared, Live(builtin_defaults(state.creators), ()), templates)
    return Plan(state, ops, render_operations(list(ops), state, templates))


def _with_defaults_of_new_roles(live: Live, state: DeclaredState) -> Live:
    """A creator role this plan creates will have PostgreSQL's built-in default privileges (PUBLIC
    executes its functions) the moment it exists: plan for them now, so one apply converges."""
    existing = {obj.name for obj in live.objects.values() if isinstance(obj, Role)}
    missing = tuple(creator for creator in state.creators if creator not in existing)
    if not missing:
        return live
    return replace(live, objects={**builtin_defaults(missing), **live.objects})


def plan_for_database(
    conn: psycopg.Connection, state: DeclaredState, templates: Path | None, kinds: set[str] | None = None
) -> Plan:
    operator_role = catalog.current_role(conn)
    operator = None if operator_role.superuser else operator_role.name
    declared = declared_objects(state, render_bodies(state, templates), operator)
    live = _with_defaults_of_new_roles(live_objects(conn, state.scope, operator, templates), state)
    declared = normalise_policies(conn, state, declared, live.objects, templates)
    ops = plan_changes(state, declared, live, templates, kinds)
    # What a CASCADE removes is not left alone: the statement that removes it names it instead.
    cascaded = {obj.key for op in ops for obj in op.cascades}
    unmanaged = tuple(obj for obj in live.unmanaged if obj.key not in cascaded)
    schemas = frozenset(obj.name for obj in live.objects.values() if isinstance(obj, Schema))
    return Plan(state, ops, render_operations(list(ops), state, templates), unmanaged, live_schemas=schemas)
