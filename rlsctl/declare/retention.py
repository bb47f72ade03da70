"""Retention in the declared state: which tables expire rows, by what, who deletes and who holds.

`retention_spec` reads the `retention:` of every table (docs/retention.md). The
spec exists as soon as one table declares retention, even before a migration
creates that table: the hold register and the run log are created with it and
never dropped, so a rollback leaves what a fresh apply would.
"""

from __future__ import annotations

from rlsctl.declare.state import RetentionSpec, RetentionTable
from rlsctl.policy.model import TableDecl, TenantVia
from rlsctl.policy.project import Project
from rlsctl.schema.tables import Schema

# The advisory lock (class rlsctl.pg.locks.CLASS) that orders hold changes and batches: every
# batch takes it shared for its transaction, a hold change exclusively, so a hold set while a
# batch runs waits for that batch, and every later batch sees the hold.
RETENTION_LOCK = 16


def retention_spec(project: Project, schema: Schema) -> RetentionSpec | None:
    declared = {name: decl for name, decl in sorted(project.tables.items()) if decl.retention is not None}
    if not declared:
        return None
    tables = tuple(
        _table(project, schema, name, decl)
        for name, decl in declared.items()
        if schema.has_table(name) and schema.has_column(name, decl.retention.column)  # type: ignore[union-attr]
    )
    roles = {decl.retention.role for decl in declared.values() if decl.retention is not None}
    creators = tuple(sorted(project.role_name(key) for key in roles if key in project.roles))
    return RetentionSpec(tables, project.role_name(project.role_of_kind("definer")), RETENTION_LOCK, creators)


def _table(project: Project, schema: Schema, name: str, decl: TableDecl) -> RetentionTable:
    retention = decl.retention
    assert retention is not None
    table = schema.table(name)
    tenant = decl.tenant if isinstance(decl.tenant, str) and table.has_column(decl.tenant) else None
    holder = retention.hold_role or project.settings.retention.hold_role
    return RetentionTable(
        table=name,
        column=retention.column,
        column_type=table.column(retention.column).type,
        days=retention.days,
        role_key=retention.role,
        role=project.role_name(retention.role),
        hold_role=project.role_name(holder) if holder is not None else None,
        static_hold=retention.legal_hold,
        primary_key=table.primary_key,
        tenant=tenant,
        tenant_via=isinstance(decl.tenant, TenantVia),
        tenant_type=table.column(tenant).type if tenant is not None else "text",
    )
