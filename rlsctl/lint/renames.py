"""Renames in replayed SQL: ALTER TABLE/VIEW/SEQUENCE ... RENAME TO and SET SCHEMA, RENAME COLUMN, ALTER POLICY
... RENAME TO.

A migration that creates a table and renames it must be linted as the renamed table: its grants, policies,
indexes, keys, triggers and the views reading it follow it, as they do on the server (which tracks them by oid).
Policy expressions written before a column rename are rewritten too, since pg_get_expr would show the new name.
"""

from __future__ import annotations

from dataclasses import replace

from pglast import ast, enums
from sqlglot import exp

from rlsctl.lint import exprs
from rlsctl.lint.model import LintModel, Policy

OBJ = enums.ObjectType
RELATIONS = (OBJ.OBJECT_TABLE, OBJ.OBJECT_VIEW, OBJ.OBJECT_MATVIEW, OBJ.OBJECT_SEQUENCE, OBJ.OBJECT_FOREIGN_TABLE)


class Renames:
    """Handlers mixed into the replay (`rlsctl.lint.sqlfiles.Replay`), which provides `model` and `qualified`."""

    model: LintModel

    def qualified(self, rangevar: ast.RangeVar) -> str:  # pragma: no cover - provided by Replay
        raise NotImplementedError

    def _RenameStmt(self, stmt: ast.RenameStmt) -> None:
        if stmt.relation is None:
            return
        table = self.qualified(stmt.relation)
        if stmt.renameType in RELATIONS:
            move_relation(self.model, table, table.partition(".")[0], stmt.newname)
        elif stmt.renameType == OBJ.OBJECT_POLICY:
            for policy in self.model.policies:
                if policy.table_qualified == table and policy.name == stmt.subname:
                    policy.name = stmt.newname
        elif stmt.renameType == OBJ.OBJECT_COLUMN:
            rename_column(self.model, table, stmt.subname, stmt.newname)

    def _AlterObjectSchemaStmt(self, stmt: ast.AlterObjectSchemaStmt) -> None:
        if stmt.objectType in RELATIONS and stmt.relation is not None:
            old = self.qualified(stmt.relation)
            move_relation(self.model, old, stmt.newschema, old.partition(".")[2])


def move_relation(model: LintModel, old: str, schema: str, name: str) -> None:
    relation = model.relations.pop(old, None)
    if relation is None:
        return
    old_schema, old_name = relation.schema, relation.name
    relation.schema, relation.name = schema, name
    new = relation.qualified
    model.relations[new] = relation
    for policy in model.policies:
        if policy.table_qualified == old:
            policy.schema, policy.table = schema, name
            policy.using, policy.check = (_requalify(t, old_name, name) for t in (policy.using, policy.check))
    model.grants = {
        replace(g, schema=schema, object=name) if g.kind in ("table", "column") and g.qualified == old else g
        for g in model.grants
    }
    for item in (*model.indexes, *model.foreign_keys, *model.triggers):
        if (item.schema, item.table) == (old_schema, old_name):
            item.schema, item.table = schema, name
    for key in model.foreign_keys:
        key.ref_table = new if key.ref_table == old else key.ref_table
    for other in model.relations.values():
        other.parent = new if other.parent == old else other.parent
        if old in other.sources:
            other.sources = (other.sources - {old}) | {new}
    for key in [k for k in model.secrets if k.rpartition(".")[0] == old]:
        model.secrets[f"{new}.{key.rpartition('.')[2]}"] = model.secrets.pop(key)


def rename_column(model: LintModel, table: str, old: str, new: str) -> None:
    relation = model.relations.get(table)
    if relation is None:
        return
    policies = [p for p in model.policies if p.table_qualified == table]
    for policy in policies:  # rewritten while the row still has the old column, so references resolve
        policy.using, policy.check = (_rename_refs(model, policy, t, old, new) for t in (policy.using, policy.check))
    relation.columns = [new if c == old else c for c in relation.columns]
    if old in relation.types:
        relation.types[new] = relation.types.pop(old)
    relation.primary_key = _renamed(relation.primary_key, old, new)
    for index in model.indexes:
        if (index.schema, index.table) == (relation.schema, relation.name):
            index.columns = _renamed(index.columns, old, new)
    for key in model.foreign_keys:
        if (key.schema, key.table) == (relation.schema, relation.name):
            key.columns = _renamed(key.columns, old, new)
    if f"{table}.{old}" in model.secrets:
        model.secrets[f"{table}.{new}"] = model.secrets.pop(f"{table}.{old}")


def _renamed(columns: tuple[str, ...], old: str, new: str) -> tuple[str, ...]:
    return tuple(new if c == old else c for c in columns)


def _rename_refs(model: LintModel, policy: Policy, text: str | None, old: str, new: str) -> str | None:
    tree = exprs.parse(text)
    if tree is None:
        return text
    tree = tree.copy()
    row = exprs.row_of(model, policy)
    refs = [c for c in exprs.row_refs(tree, row) if c.name == old]
    if not refs:
        return text
    for column in refs:
        column.set("this", exp.to_identifier(new, quoted=True))
    return tree.sql(dialect="postgres", normalize_functions=False)


def _requalify(text: str | None, old: str, new: str) -> str | None:
    """Row references written as `old.column` (pglast keeps the qualifier) name the table by its new name."""
    tree = exprs.parse(text)
    if tree is None:
        return text
    tree = tree.copy()
    columns = [c for c in tree.find_all(exp.Column) if c.table == old]
    if not columns:
        return text
    for column in columns:
        column.set("table", exp.to_identifier(new, quoted=True))
    return tree.sql(dialect="postgres", normalize_functions=False)
