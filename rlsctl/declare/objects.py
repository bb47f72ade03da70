"""The declared side of the diff: the declared state as the objects of `rlsctl.state.objects`.

`declared_objects` is everything apply manages, as declared; `render_bodies`
renders the function bodies and policy expressions it needs through the
templates once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlsctl.declare.audit import audit_objects
from rlsctl.declare.state import PGCRYPTO, DeclaredState, HelperFn, TableSpec, helper_name
from rlsctl.pg.templates import call_macro
from rlsctl.state.objects import (
    API_KEY_MARKER,
    API_KEY_TABLES,
    BOOKKEEPING_TABLE,
    ENCRYPT_TRIGGER,
    GUARD_TRIGGER,
    KEY_TABLES,
    READ_SERVER_FILES,
    RETENTION_TABLES,
    SEARCH_PATH,
    ActiveKey,
    ColumnGrant,
    EncryptedColumnRecord,
    Extension,
    Function,
    FunctionGrant,
    KeyTable,
    Membership,
    Obj,
    Objects,
    Policy,
    Role,
    Schema,
    SchemaPrivilege,
    TableGrant,
    TableSecurity,
    Trigger,
    role_exemption,
)


@dataclass(frozen=True)
class Bodies:
    """Function bodies and policy expressions rendered by the templates."""

    functions: dict[str, str]  # helper name -> body
    using: dict[tuple[str, str], str | None]  # (table, policy) -> USING source
    check: dict[tuple[str, str], str | None]


def declared_objects(state: DeclaredState, bodies: Bodies, operator: str | None) -> Objects:
    """Everything apply manages, as declared. `operator`: the non-superuser running rlsctl.

    Some kinds are declared by their absence: managed roles are members of no
    role (the operator's memberships in them are the only ones declared), and
    default privileges of the roles that create objects give nobody anything
    (docs/access-matrix.md, Roles). What the catalog has of those kinds is extra.
    """
    found: list[Obj] = []
    for role in state.roles:
        if role.external:  # the platform's: neither created nor joined, only granted to
            continue
        comment = f"rlsctl {state.project_name}: {role.description}"
        found.append(Role(role.name, comment=comment))
        if operator is not None:
            found.append(Membership(role.name, operator))
    found += _schemas(state)
    found += [Extension(name, state.schema_of_extension(name)) for name in state.extensions]
    for helper in state.helper_functions:
        found.append(_function(state, helper, bodies.functions[f"{helper.name}({helper.args})"]))
        # The owner's own EXECUTE is declared too: a tampered ACL without it is repaired,
        # and a grant to the owner is never revoked.
        found += [
            FunctionGrant(state.helper_schema, helper.name, helper.args, role)
            for role in dict.fromkeys((helper.owner, *helper.executors))
        ]
    found += helper_tables(state)
    if state.keys is not None and state.api_keys is not None:
        found += [KeyTable(state.helper_schema, name, state.keys) for name in API_KEY_TABLES]
        found.append(KeyTable(state.helper_schema, API_KEY_MARKER, state.keys))
    if state.retention is not None:
        found += [KeyTable(state.helper_schema, name, state.retention.owner) for name in RETENTION_TABLES]
    if state.encryption is not None and state.keys is not None:
        found += [
            *(KeyTable(state.helper_schema, name, state.keys) for name in KEY_TABLES),
            ActiveKey(state.helper_schema, state.encryption.crypto_schema),
        ]
        found += [  # decrypting columns are not recorded again: keys decrypt forgets them once done
            EncryptedColumnRecord(state.helper_schema, column.table, column.column)
            for column in state.encryption.columns
            if not column.decrypting
        ]
    if state.keys is not None and state.encryption is not None:
        crypto = state.encryption.crypto_schema
        found += [FunctionGrant(crypto, name, args, state.keys, required=True) for name, args in PGCRYPTO]
        if crypto != state.helper_schema:  # pgcrypto where the platform put it (extensions on Supabase)
            found.append(SchemaPrivilege(crypto, state.keys, "USAGE", required=True))
        if state.encryption.master_key_file is not None:
            # File mode: master_key() reads the key file, as its owner alone (docs/encryption.md).
            found += [
                Membership(READ_SERVER_FILES, state.keys),
                FunctionGrant("pg_catalog", "pg_read_file", "text", state.keys),
            ]
    for table in state.tables:
        found += _table_objects(state, table, bodies)
    found += audit_objects(state)
    return {obj.key: obj for obj in found}


def helper_tables(state: DeclaredState) -> list[Obj]:
    """The protection of rlsctl's helper-schema tables. They are created by their own
    templates; `present_only` keeps those that exist (a missing one is not drift)."""
    found: list[Obj] = [TableSecurity(BOOKKEEPING_TABLE, state.owner, False, False, state.helper_schema)]
    if state.keys is not None:
        found += [TableSecurity(name, state.keys, True, False, state.helper_schema) for name in KEY_TABLES]
    if state.keys is not None and state.api_keys is not None:
        found += [TableSecurity(name, state.keys, True, False, state.helper_schema) for name in API_KEY_TABLES]
    if state.retention is not None:
        owner = state.retention.owner
        found += [TableSecurity(name, owner, True, False, state.helper_schema) for name in RETENTION_TABLES]
    return found


def _schemas(state: DeclaredState) -> list[Obj]:
    # rlsctl's own roles that held the helper schema before: the owner role (older versions), the
    # definer (a project that had no keys role until it declared encrypted columns or API keys).
    previous = tuple(role for role in (state.owner, state.definer) if role != state.helper_owner)
    found: list[Obj] = [Schema(state.helper_schema, state.helper_owner, adopt_from=previous)]
    if state.schema != "public":
        found.append(Schema(state.schema, state.owner))
    for name in state.grantee_role_names:
        if name != state.helper_owner:
            found.append(SchemaPrivilege(state.helper_schema, name, "USAGE"))
        found.append(SchemaPrivilege(state.schema, name, "USAGE"))
    # The owner role reaches its migration bookkeeping (applied_phase) in the helper schema.
    found.append(SchemaPrivilege(state.helper_schema, state.owner, "USAGE"))
    if state.schema == "public":
        found += [SchemaPrivilege("public", state.owner, "USAGE"), SchemaPrivilege("public", state.owner, "CREATE")]
    return found


def _function(state: DeclaredState, helper: HelperFn, body: str) -> Function:
    return Function(
        schema=state.helper_schema,
        name=helper.name,
        arg_types=helper.args,
        returns=helper.returns,
        language=helper.language,
        volatility=helper.volatility,
        security_definer=helper.security_definer,
        config=(SEARCH_PATH,),
        body=body,
        owner=helper.owner,
        arg_decl=helper.arg_decl,
    )


def _table_objects(state: DeclaredState, table: TableSpec, bodies: Bodies) -> list[Obj]:
    found: list[Obj] = [TableSecurity(table.name, state.owner, True, True)]
    for policy in table.policies:
        found.append(
            Policy(
                table=table.name,
                name=policy.name,
                command=policy.command,
                permissive=True,
                roles=(policy.role,),
                using=bodies.using[(table.name, policy.name)],
                check=bodies.check[(table.name, policy.name)],
                source_using=bodies.using[(table.name, policy.name)],
                source_check=bodies.check[(table.name, policy.name)],
            )
        )
    for grant in table.grants:
        if grant.columns is None:
            found.append(TableGrant(table.name, grant.role, grant.privilege))
        else:
            found += [ColumnGrant(table.name, column, grant.role, grant.privilege) for column in grant.columns]
    found += [TableGrant(grant.table, grant.role, grant.privilege, sequence=True) for grant in table.sequence_grants]
    if table.guards:
        found.append(Trigger(table.name, GUARD_TRIGGER, state.helper_schema, table.guard_function))
    if state.encryption is not None and table.name in state.encryption.tables:
        function = helper_name("encrypt_", table.name)
        found.append(
            Trigger(
                table.name, ENCRYPT_TRIGGER, state.helper_schema, function, "INSERT OR UPDATE",
                when=None if state.keys is None else role_exemption(state.keys), exempt_role=state.keys,
            )
        )  # fmt: skip
    return found


def render_bodies(state: DeclaredState, templates: Path | None) -> Bodies:
    """Function bodies and policy expressions, rendered once by the templates."""
    functions: dict[str, str] = {}
    # Bodies start on their own line after the $rlsctl$ quote; PostgreSQL keeps
    # the text verbatim (prosrc), so this is also what the diff compares.
    for helper in state.helper_functions:
        args: tuple[object, ...] = (state,)
        if helper.table is not None:
            args = (state, state.table(helper.table))
        functions[f"{helper.name}({helper.args})"] = "\n" + call_macro(helper.template, helper.body, templates, *args)
    using: dict[tuple[str, str], str | None] = {}
    check: dict[tuple[str, str], str | None] = {}
    for table in state.tables:
        for policy in table.policies:
            text = call_macro("objects/bodies.sql.j2", "using", templates, state, table, policy)
            using[(table.name, policy.name)] = text or None
            text = call_macro("objects/bodies.sql.j2", "check", templates, state, table, policy)
            check[(table.name, policy.name)] = text or None
    return Bodies(functions, using, check)
