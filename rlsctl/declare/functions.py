"""The catalogue of functions rlsctl owns in the helper schema, derived from the declared state.

| function | owner | SECURITY | who may execute it |
|---|---|---|---|
| current_user_id(), tenant_ids(rank), tenant_ids_or_key(rank, scopes) | definer | INVOKER / DEFINER | callers |
| guard_<table>() (trigger) | definer | INVOKER | nobody (triggers only) |
| authenticate_api_key(raw), create_api_key(...) | keys | DEFINER / INVOKER | the app role |
| presented_key_hash() | keys | INVOKER | the keys role (its policy on the API-key table) |
| api_key_tenant(scope), api_key_member(user), api_key_rows_<table>(scope) | keys | DEFINER | their policies' roles |
| encrypt(text or jsonb) | keys | DEFINER | roles that write encrypted columns (through the trigger) |
| decrypt(text or jsonb) | keys | DEFINER | the roles declared as readers |
| encrypt_<table>() (trigger) | keys | INVOKER | nobody (triggers only) |
| master_key(), data_key(id), active_key_id(), key_of, encrypt_with, decrypt_with | keys | INVOKER | their owner |
| retention_<table>(...) (one batch of expired rows) | the table's retention role | DEFINER | its owner (and members) |
| retention_holds(table), retention_record(...) | definer | DEFINER | the retention roles |
| retention_hold(table, tenant, reason), retention_release(...) | definer | DEFINER | the hold roles |
| audit_<table>(), audit_guard_<log>(), audit_record(...), ... | definer | | see rlsctl/declare/audit.py |

Every function has `search_path = pg_catalog, pg_temp` and qualifies every
other name; the bodies are the macros of templates/objects/bodies.sql.j2
named in `body`. The policy helpers are PL/pgSQL, not SQL: PostgreSQL plans a
SQL function's body again at every call when it cannot inline it (and a
function with SET search_path is never inlined), while PL/pgSQL keeps the plan
of each query for the session.
"""

from __future__ import annotations

from rlsctl.declare.audit import audit_functions
from rlsctl.declare.state import DeclaredState, HelperFn, helper_name

TIMESTAMP = "timestamp without time zone"


def catalogue(state: DeclaredState) -> tuple[HelperFn, ...]:
    found = _policy_helpers(state)
    found += [
        HelperFn(
            table.guard_function, "", policy_helper=False, returns="trigger", language="plpgsql",
            volatility="v", owner=state.definer, body="guard", table=table.name,
        )
        for table in state.tables
        if table.guards
    ]  # fmt: skip
    found += _api_key_functions(state)
    found += _encryption_functions(state)
    found += _retention_functions(state)
    found += audit_functions(state)
    return tuple(found)


def _policy_helpers(state: DeclaredState) -> list[HelperFn]:
    found = [
        HelperFn(
            "current_user_id", "", policy_helper=True, returns=state.identity_type, language="plpgsql",
            owner=state.definer, executors=state.helper_callers("current_user_id"), body="current_user_id",
        ),
    ]  # fmt: skip
    if state.tenancy is not None:
        found.append(
            HelperFn(
                "tenant_ids", "text", policy_helper=True, arg_decl="min_rank text",
                returns=f"{state.tenancy.tenant_id_type}[]", language="plpgsql", security_definer=True,
                owner=state.definer, executors=state.helper_callers("tenant_ids"), body="tenant_ids",
            )
        )  # fmt: skip
    if state.tenancy is not None and state.api_keys is not None:
        found.append(
            HelperFn(
                "tenant_ids_or_key", "text, text[]", policy_helper=True, arg_decl="min_rank text, scopes text[]",
                returns=f"{state.tenancy.tenant_id_type}[]", language="plpgsql", security_definer=True,
                owner=state.definer, executors=state.helper_callers("tenant_ids_or_key"), body="tenant_ids_or_key",
            )
        )  # fmt: skip
    return found


def _api_key_functions(state: DeclaredState) -> list[HelperFn]:
    keys, api = state.keys, state.api_keys
    if keys is None or api is None:
        return []
    found = [
        HelperFn(
            "authenticate_api_key", "text", policy_helper=False, arg_decl="raw_key text", returns="boolean",
            language="plpgsql", volatility="v", security_definer=True, owner=keys, executors=(state.app,),
            body="authenticate_api_key",
        ),
        HelperFn(
            "presented_key_hash", "", policy_helper=True, returns="text", language="plpgsql",
            owner=keys, executors=state.helper_callers("presented_key_hash"), body="presented_key_hash",
        ),
        HelperFn(
            "api_key_tenant", "text", policy_helper=True, arg_decl="scope text", returns=api.tenant_type,
            language="plpgsql", security_definer=True, owner=keys, executors=_key_session_readers(state),
            body="api_key_tenant",
        ),
        HelperFn(
            "create_api_key", f"{api.tenant_type}, text, text[], {TIMESTAMP}", policy_helper=False,
            arg_decl=f"tenant {api.tenant_type}, key_name text, key_scopes text[], expires_at {TIMESTAMP} DEFAULT NULL",
            returns="text", language="plpgsql", volatility="v", owner=keys, executors=(state.app,),
            body="create_api_key",
        ),
    ]  # fmt: skip
    found += [
        HelperFn(
            parent.function, "text", policy_helper=True, arg_decl="scope text", returns=f"{parent.key_type}[]",
            language="plpgsql", security_definer=True, owner=keys, executors=state.helper_callers(parent.function),
            body="api_key_rows", table=parent.table,
        )
        for parent in state.api_key_parents
    ]  # fmt: skip
    if state.tenancy is not None:
        found.append(
            HelperFn(
                "api_key_member", state.identity_type, policy_helper=True, arg_decl=f"member {state.identity_type}",
                returns="boolean", language="plpgsql", security_definer=True, owner=keys,
                executors=state.helper_callers("api_key_member"), body="api_key_member",
            )
        )  # fmt: skip
    return found


def _key_session_readers(state: DeclaredState) -> tuple[str, ...]:
    """Who may ask whether this transaction holds an API-key session: the roles whose policies
    ask it, and every role that evaluates current_user_id(), which returns no user inside a key
    session (one principal per transaction): its callers and tenant_ids()'s owner."""
    readers = {*state.helper_callers("api_key_tenant"), *state.helper_callers("current_user_id")}
    if state.tenancy is not None:
        readers.add(state.definer)
    return tuple(sorted(readers))


def _encryption_functions(state: DeclaredState) -> list[HelperFn]:
    keys, encryption = state.keys, state.encryption
    if keys is None or encryption is None:
        return []
    # Key handling: callable only by their owner, from the functions below.
    found = [
        HelperFn(name, args, policy_helper=False, arg_decl=decl, returns="text", language="plpgsql",
                 volatility=volatility, owner=keys, body=name)
        for name, args, decl, volatility in (
            ("master_key", "", "", "s"),
            ("data_key", "text", "key_id text", "s"),
            ("active_key_id", "", "", "v"),  # locks the active key's row (see its body)
        )
    ]  # fmt: skip
    for kind in ("text", "jsonb"):
        found += [
            HelperFn(
                "encrypt", kind, policy_helper=False, arg_decl=f"plaintext {kind}", returns=kind,
                language="plpgsql", volatility="v", security_definer=True, owner=keys,
                executors=encryption.writers, body="encrypt",
            ),
            HelperFn(
                "decrypt", kind, policy_helper=False, arg_decl=f"stored {kind}", returns=kind, language="plpgsql",
                security_definer=True, owner=keys, executors=encryption.readers, body="decrypt",
            ),
            HelperFn(
                "key_of", kind, policy_helper=False, arg_decl=f"stored {kind}", returns="text", volatility="i",
                owner=keys, body=f"key_of_{kind}",
            ),
            HelperFn(
                "encrypt_with", f"{kind}, text, text", policy_helper=False,
                arg_decl=f"plaintext {kind}, key_id text, data_key text", returns=kind, language="plpgsql",
                volatility="v", owner=keys, body=f"encrypt_with_{kind}",
            ),
            HelperFn(
                "decrypt_with", f"{kind}, text", policy_helper=False, arg_decl=f"stored {kind}, data_key text",
                returns=kind, language="plpgsql", owner=keys, body=f"decrypt_with_{kind}",
            ),
        ]  # fmt: skip
    found += [
        HelperFn(
            helper_name("encrypt_", table), "", policy_helper=False, returns="trigger", language="plpgsql",
            volatility="v", owner=keys, body="encrypt_trigger", table=table,
        )
        for table in encryption.tables
    ]  # fmt: skip
    return found



RETENTION_BODIES = "objects/retention_bodies.sql.j2"
# The batch function's signature: every argument has a default, so a pg_cron job or a person
# can call `SELECT * FROM rlsctl.retention_<table>()` for one batch of the default size.
RETENTION_BATCH_ARGS = "text, text, integer, boolean, text"
RETENTION_BATCH_DECL = (
    "cutoff text DEFAULT NULL, after text DEFAULT NULL, batch_size integer DEFAULT 1000, "
    "dry_run boolean DEFAULT false, lock_wait text DEFAULT '2s', "
    "OUT removed bigint, OUT last_seen text, OUT cutoff_used text, OUT held text, OUT skipped bigint"
)


def _retention_functions(state: DeclaredState) -> list[HelperFn]:
    """Retention (docs/retention.md): one batch function per table, owned by its retention role (so
    its policies decide what goes), and the hold register's functions, owned by the definer."""
    spec = state.retention
    if spec is None:
        return []
    found = [
        HelperFn(
            table.function, RETENTION_BATCH_ARGS, policy_helper=False, arg_decl=RETENTION_BATCH_DECL,
            returns="record", language="plpgsql", volatility="v", security_definer=True, owner=table.role,
            body="retention_batch", table=table.table, template=RETENTION_BODIES,
        )
        for table in spec.tables
        if table.primary_key
    ]  # fmt: skip
    found += [
        HelperFn(
            "retention_holds", "text", policy_helper=False, arg_decl="table_name text", returns="text[]",
            language="plpgsql", security_definer=True, owner=spec.owner, executors=spec.deleters,
            body="retention_holds", template=RETENTION_BODIES,
        ),
        HelperFn(
            "retention_record", "text, text, bigint, double precision, boolean, text", policy_helper=False,
            arg_decl="table_name text, cutoff text, removed bigint, seconds double precision, dry_run boolean, "
            "held text",
            returns="void", language="plpgsql", volatility="v", security_definer=True, owner=spec.owner,
            executors=spec.deleters, body="retention_record", template=RETENTION_BODIES,
        ),
    ]  # fmt: skip
    found += [
        HelperFn(
            name, "text, text, text", policy_helper=False, arg_decl="table_name text, tenant text, reason text",
            returns="boolean", language="plpgsql", volatility="v", security_definer=True, owner=spec.owner,
            executors=spec.hold_roles, body=name, template=RETENTION_BODIES,
        )
        for name in ("retention_hold", "retention_release")
    ]  # fmt: skip
    return found
