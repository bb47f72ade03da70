"""Auditing in the declared state (docs/audit.md): the spec, its functions, triggers and tables.

`audit_spec` reads `project.audit` and the `audit:` of every table; `audit_functions`
and `audit_objects` add what it needs to the declared state, `audit_writer` the
definer role's one policy on the log (it inserts the rows the triggers write).

| function | owner | SECURITY | who may execute it |
|---|---|---|---|
| audit_<table>() (trigger: copies a change into the log) | definer | DEFINER | nobody (triggers only) |
| audit_guard_<log>() (trigger: append-only, UTC stamp) | definer | INVOKER | nobody (triggers only) |
| audit_chain_<log>() (trigger: the hash chain) | definer | DEFINER | nobody (triggers only) |
| audit_actor() | definer | INVOKER | its owner |
| api_key_session_id() | keys | DEFINER | the definer |
| audit_record(job, ...) (rlsctl's own operations) | definer | DEFINER | the owner and keys roles |
| audit_trim(...) (retention removed a chained row) | definer | DEFINER | the log's retention role |
| audit_anchors(log) (lanes, checkpoints: for verify) | definer | DEFINER | the owner role, `readers:` |
| audit_seal(log) (the one order: seals committed rows) | definer | DEFINER | the owner role |
| audit_order_entries(log) (the order: for verify) | definer | DEFINER | the owner role, `readers:` |

The triggers that write rows are SECURITY DEFINER so that nobody can write a row
claiming a change that did not happen: a function the application could call would
let it. They take nothing from the caller but the session's identity.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rlsctl.declare import expr as e
from rlsctl.declare.audit_spec import AuditedTable, AuditLogSpec, AuditSpec, ChainSpec
from rlsctl.declare.bind import BindError
from rlsctl.declare.state import DeclaredState, GrantSpec, HelperFn, PolicySpec, helper_name
from rlsctl.policy.model import AuditSettings, TableAudit, TableDecl, TenantVia
from rlsctl.policy.project import Project
from rlsctl.schema.tables import Schema, Table, with_time_zone
from rlsctl.state.objects import AUDIT_TRIGGERS, KeyTable, Obj, TableSecurity, Trigger

AUDIT_BODIES = "objects/audit_bodies.sql.j2"
AUDIT_TRIGGER, APPEND_ONLY_TRIGGER, NO_TRUNCATE_TRIGGER, CHAIN_TRIGGER = AUDIT_TRIGGERS
RECORD_ARGS = "text, text, text, text, text, jsonb"
TRIM_ARGS = "text, integer, bigint, bytea, bytea"
# As pg_get_function_result() prints it, so that drift compares like with like.
ORDER_ENTRIES = "TABLE(pos bigint, seq bigint, lane integer, prev bytea, hash bytea)"


def audit_spec(project: Project, schema: Schema) -> AuditSpec | None:
    settings = project.settings.audit
    if settings is None:
        return None
    name = log_table(project)
    base = _base(project, settings)
    table = schema.get(name)
    if table is None or not all(table.has_column(c) for c in _required(settings)):
        return base  # the log comes with a later phase: only the chain's tables exist until then
    chain = base.chain
    chained = chain is not None and all(table.has_column(c) for c in (chain.seq, chain.lane, chain.prev, chain.hash))
    audited = tuple(
        _audited(project, schema.table(t), t, decl)
        for t, decl in sorted(project.tables.items())
        if decl.audit is not None and schema.has_table(t) and t != name
    )
    return replace(
        base, log=_log(settings, table), chained=chained, tables=audited, **_deleter(project, name, table),
        guard_function=helper_name("audit_guard_", name), chain_function=helper_name("audit_chain_", name),
    )  # fmt: skip


def _base(project: Project, settings: AuditSettings) -> AuditSpec:
    """Who writes, records and reads, and the chain as declared: what holds before the log exists."""
    owner = project.role_name(project.role_of_kind("owner"))
    readers = tuple(dict.fromkeys((owner, *(project.role_name(_declared(project, key)) for key in settings.readers))))
    # rlsctl's own operations run as a superuser or a login in the owner role; keys runs may run
    # as a login in the keys role only.
    keys = [project.role_name(key) for key, decl in sorted(project.roles.items()) if decl.kind == "keys"]
    declared = settings.chain
    chain = None
    if declared is not None:
        chain = ChainSpec(declared.seq, declared.lane, declared.prev, declared.hash, declared.lanes)
    writer = project.role_name(project.role_of_kind("definer"))
    return AuditSpec(writer=writer, recorders=(owner, *keys), readers=readers, sealer=owner, log=None, chain=chain)


def _deleter(project: Project, name: str, table: Table) -> dict[str, Any]:
    """The log's retention role, the only one that deletes (and only rows past the window)."""
    retention = project.tables[name].retention
    if retention is None or retention.legal_hold or not table.has_column(retention.column):
        return {}
    return {
        "deleter": project.role_name(_declared(project, retention.role)),
        "retention_column": retention.column,
        "retention_days": retention.days,
        "retention_with_zone": with_time_zone(table.column(retention.column).type),
    }


def log_table(project: Project) -> str:
    """The audit log: `project.audit.log`, else the one table declared `audit_log: true`."""
    settings = project.settings.audit
    flagged = sorted(name for name, decl in project.tables.items() if decl.audit_log)
    name = settings.log if settings is not None and settings.log is not None else None
    if name is None:
        if len(flagged) != 1:
            raise BindError("project.audit: name the log (`log: TABLE`) or declare exactly one table `audit_log: true`")
        return flagged[0]
    if name not in project.tables or not project.tables[name].audit_log:
        raise BindError(f"project.audit.log: {name!r} must be a declared table with `audit_log: true`")
    return name


def _declared(project: Project, key: str) -> str:
    if key not in project.roles:
        raise BindError(f"project.audit: role {key!r} is not declared in roles")
    return key


def _required(settings: AuditSettings) -> tuple[str, ...]:
    columns = settings.columns
    named = (columns.id, columns.actor, columns.action, columns.resource_type, columns.resource_id,
             columns.created_at, columns.tenant, columns.metadata)  # fmt: skip
    return tuple(column for column in named if column is not None)


def _log(settings: AuditSettings, table: Table) -> AuditLogSpec:
    columns = settings.columns
    return AuditLogSpec(
        table=table.name, id=columns.id, id_type=table.column(columns.id).type, actor=columns.actor,
        action=columns.action, resource_type=columns.resource_type, resource_id=columns.resource_id,
        created_at=columns.created_at, created_type=table.column(columns.created_at).type,
        tenant=columns.tenant, tenant_type=table.column(columns.tenant).type if columns.tenant else None,
        metadata=columns.metadata,
    )  # fmt: skip


def _audited(project: Project, table: Table, name: str, decl: TableDecl) -> AuditedTable:
    audit = decl.audit
    assert audit is not None
    _refuse_secrets(project, name, decl, audit)
    key = (audit.key,) if audit.key is not None else table.primary_key
    if not key or not all(table.has_column(column) for column in key):
        raise BindError(f"tables.{name}.audit: give `key:`, the column naming the row (the table has no primary key)")
    tenant = _tenant(project, name, decl, audit)
    columns = tuple(column for column in audit.columns if table.has_column(column))
    others = tuple(column for column in table.column_names if column not in columns)
    return AuditedTable(
        table=name, function=helper_name("audit_", name), key=key,
        tenant=tenant if tenant is not None and table.has_column(tenant) else None,
        columns=columns, others=others, actions=audit.actions,
    )  # fmt: skip


def _tenant(project: Project, name: str, decl: TableDecl, audit: TableAudit) -> str | None:
    """The team of a row: `audit.tenant`, else the table's own tenant column (the tenants
    table's key for the tenants table). A tenant reached through another table (`via:`) is not
    looked up: the trigger runs as the definer, which reads no other table (docs/audit.md)."""
    if audit.tenant is not None:
        return audit.tenant
    if isinstance(decl.tenant, TenantVia) or decl.tenant is None:
        return None
    return decl.tenant


def _refuse_secrets(project: Project, name: str, decl: TableDecl, audit: TableAudit) -> None:
    """The auditor reads the log: no secret, encrypted column or key hash is ever copied into it."""
    api = project.settings.api_keys
    forbidden = {
        **{column: "declared secret" for column in decl.secrets},
        **{column: "encrypted" for column in (*decl.encrypted, *decl.decrypting)},
        **({api.hash: "the API keys' hash"} if api is not None and api.table == name else {}),
    }
    for column in audit.columns:
        if column in forbidden:
            raise BindError(
                f"tables.{name}.audit.columns: {column} is {forbidden[column]}: the audit log never copies it "
                "(the auditor reads the log)"
            )


def audit_writer(project: Project, name: str, table: Table) -> tuple[list[PolicySpec], list[GrantSpec]]:
    """The definer role inserts the rows the audit triggers write (and rlsctl's own operations):
    one INSERT policy on the log, on the columns it fills. The time, the id of a row the
    application did not name, and the chain are the log's own triggers' to set."""
    settings = project.settings.audit
    if settings is None or name != log_table(project):
        return [], []
    key = project.role_of_kind("definer")
    role = project.role_name(key)
    columns = settings.columns
    filled = (columns.id, columns.actor, columns.tenant, columns.action, columns.resource_type,
              columns.resource_id, columns.metadata)  # fmt: skip
    granted = tuple(column for column in filled if column is not None and table.has_column(column))
    policy = PolicySpec(name, f"{key}_insert", "insert", key, role, None, e.RoleMember(role))
    policies, grants = [policy], [GrantSpec(name, "INSERT", key, role, granted)]
    chain = settings.chain
    links = () if chain is None else tuple(c for c in (chain.seq, chain.lane, chain.hash) if table.has_column(c))
    if chain is not None and len(links) == 3:
        # audit_seal() (the definer's) reads the chain's columns of every row, never the content.
        policies.append(PolicySpec(name, f"{key}_seal", "select", key, role, e.RoleMember(role), None))
        grants.append(GrantSpec(name, "SELECT", key, role, links))
    return policies, grants


def audit_functions(state: DeclaredState) -> list[HelperFn]:
    spec = state.audit
    if spec is None or spec.log is None:
        return []
    writer = spec.writer
    log = spec.log.table
    found = [
        HelperFn("audit_actor", "", policy_helper=False, returns="text", language="plpgsql", owner=writer,
                 body="audit_actor", template=AUDIT_BODIES),
        HelperFn(
            "audit_record", RECORD_ARGS, policy_helper=False,
            arg_decl="job text, action text, resource_type text, resource_id text, tenant text, details jsonb",
            returns="text", language="plpgsql", volatility="v", security_definer=True, owner=writer,
            executors=spec.recorders, body="audit_record", template=AUDIT_BODIES,
        ),
        HelperFn(spec.guard_function, "", policy_helper=False, returns="trigger", language="plpgsql",
                 volatility="v", owner=writer, body="audit_guard", table=log, template=AUDIT_BODIES),
    ]  # fmt: skip
    if state.keys is not None and state.api_keys is not None:
        found.append(
            HelperFn("api_key_session_id", "", policy_helper=False, returns="text", language="plpgsql",
                     security_definer=True, owner=state.keys, executors=(writer,), body="api_key_session_id",
                     template=AUDIT_BODIES)
        )  # fmt: skip
    found += [
        HelperFn(table.function, "", policy_helper=False, returns="trigger", language="plpgsql", volatility="v",
                 security_definer=True, owner=writer, body="audit_trigger", table=table.table,
                 template=AUDIT_BODIES)
        for table in spec.tables
    ]  # fmt: skip
    if spec.chained:
        found += _chain_functions(spec, log)
    return found


def _chain_functions(spec: AuditSpec, log: str) -> list[HelperFn]:
    found = [
        HelperFn(spec.chain_function, "", policy_helper=False, returns="trigger", language="plpgsql",
                 volatility="v", security_definer=True, owner=spec.writer, body="audit_chain", table=log,
                 template=AUDIT_BODIES),
        HelperFn("audit_anchors", "text", policy_helper=False, arg_decl="log text", returns="jsonb",
                 language="plpgsql", security_definer=True, owner=spec.writer, executors=spec.readers,
                 body="audit_anchors", template=AUDIT_BODIES),
        HelperFn("audit_seal", "text", policy_helper=False, arg_decl="log text", returns="bigint",
                 language="plpgsql", volatility="v", security_definer=True, owner=spec.writer,
                 executors=(spec.sealer,), body="audit_seal", template=AUDIT_BODIES),
        HelperFn("audit_order_entries", "text", policy_helper=False, arg_decl="log text", returns=ORDER_ENTRIES,
                 language="sql", security_definer=True, owner=spec.writer, executors=spec.readers,
                 body="audit_order_entries", template=AUDIT_BODIES),
    ]  # fmt: skip
    if spec.deleter is not None:
        found.append(
            HelperFn("audit_trim", TRIM_ARGS, policy_helper=False,
                     arg_decl="trimmed_log text, trimmed_lane integer, trimmed_seq bigint, trimmed_prev bytea, "
                     "trimmed_hash bytea", returns="void",
                     language="plpgsql", volatility="v", security_definer=True, owner=spec.writer,
                     executors=(spec.deleter,), body="audit_trim", template=AUDIT_BODIES)
        )  # fmt: skip
    return found


def audit_objects(state: DeclaredState) -> list[Obj]:
    """The chain's tables (whenever a chain is declared) and the triggers (once the log exists)."""
    spec = state.audit
    if spec is None:
        return []
    helper = state.helper_schema
    found: list[Obj] = []
    for name in spec.helper_tables:
        found += [KeyTable(helper, name, spec.writer), TableSecurity(name, spec.writer, True, False, helper)]
    if spec.log is None:
        return found
    found += [
        Trigger(table.table, AUDIT_TRIGGER, helper, table.function, table.events, timing="AFTER")
        for table in spec.tables
    ]
    log = spec.log.table
    found += [
        Trigger(log, APPEND_ONLY_TRIGGER, helper, spec.guard_function, "INSERT OR DELETE OR UPDATE"),
        Trigger(log, NO_TRUNCATE_TRIGGER, helper, spec.guard_function, "TRUNCATE", level="STATEMENT"),
    ]
    if spec.chained:
        found.append(Trigger(log, CHAIN_TRIGGER, helper, spec.chain_function, "INSERT"))
    return found
