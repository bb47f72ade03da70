"""Check a project against the tables and columns that can exist.

`known` is the union of what the migrations create (all phases) and what the
live catalog has. A name in neither is an error that points at the file and
line declaring it; a table the migrations create in a later phase is fine
(apply reports it as pending).
"""

from __future__ import annotations

import re

from rlsctl.declare import expr as e
from rlsctl.policy import conditions as c
from rlsctl.policy.columns import columns_rules_read
from rlsctl.policy.model import ColumnList, TableDecl, TenantVia
from rlsctl.policy.project import Project
from rlsctl.schema.tables import Schema

TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_ ]*(\(\d+(,\s*\d+)?\))?(\[\])?$")


def validate(project: Project, known: Schema) -> None:
    _identity(project, known)
    _tenancy(project, known)
    _api_keys(project, known)
    _encryption(project)
    _retention_settings(project)
    for name, decl in project.tables.items():
        _table(project, known, name, decl)
    _fixtures(project, known)
    _acknowledgements(project)


PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _acknowledgements(project: Project) -> None:
    """A `{KEY}` of an acknowledgement must be a declared role's key: a misspelt one would match no
    difference, and the difference it meant would fail drift forever without saying why."""
    for index, item in enumerate(project.settings.acknowledged):
        for key in PLACEHOLDER.findall(item.object):
            if key not in project.roles:
                raise project.error(
                    ("project", "acknowledged", index, "object"),
                    f"{{{key}}} names no declared role (role keys: {', '.join(sorted(project.roles))})",
                )


# Types a session's user id is written in (the setting is text; the helpers cast it). Checked
# offline, so that `identity.type: uuidd` fails at render and plan, not halfway into apply.
# Only types whose cast from text either keeps the value or fails: `char`, `name`, `numeric`
# and any length limit (`varchar(8)`) truncate or round without an error, so a setting of
# 'u-victim-and-more' would become the identity 'u-victim'.
IDENTITY_TYPES = frozenset({"text", "varchar", "character varying", "citext", "uuid",
                            "smallint", "int2", "integer", "int", "int4", "bigint", "int8"})  # fmt: skip


def _identity(project: Project, known: Schema) -> None:
    identity = project.settings.identity
    where = ("project", "identity", "type")
    if not TYPE_NAME.match(identity.type):
        raise project.error(where, f"not a type name: {identity.type!r}")
    base = identity.type.strip().lower()
    enums = {name.lower() for name, _ in known.enums}
    if base not in IDENTITY_TYPES and base not in enums:
        raise project.error(
            where,
            f"identity.type {identity.type!r} is not a type an identity can have here "
            f"(one of {', '.join(sorted(IDENTITY_TYPES))}, or an enum the migrations create; "
            "no length limits: they truncate)",
        )


def _tenancy(project: Project, known: Schema) -> None:
    tenancy = project.tenancy
    if tenancy is None:
        return
    path = ("tenancy",)
    _column(project, known, tenancy.tenants.table, tenancy.tenants.key, (*path, "tenants", "key"))
    if tenancy.tenants.owner:
        _column(project, known, tenancy.tenants.table, tenancy.tenants.owner, (*path, "tenants", "owner"))
    membership = tenancy.membership
    if membership is not None:
        for field in ("tenant", "user", "rank"):
            column = getattr(membership, field)
            if column:
                _column(project, known, membership.table, column, (*path, "membership", field))
        if membership.rank:
            _ranks_match_enum(project, known, membership.table, membership.rank, tenancy.ranks)


def _ranks_match_enum(project: Project, known: Schema, table: str, column: str, ranks: tuple[str, ...]) -> None:
    """Ranks the rank column cannot hold would silently grant nobody anything."""
    labels = dict(known.enums).get(known.table(table).column(column).type.strip('"'))
    if labels is None:
        return
    unknown = [rank for rank in ranks if rank not in labels]
    if unknown:
        raise project.error(
            ("tenancy", "ranks"),
            f"rank {unknown[0]!r} is not a value of {table}.{column} (its values: {', '.join(labels)})",
        )


def _column(project: Project, known: Schema, table: str, column: str, path: tuple[str | int, ...]) -> None:
    if not known.has_table(table):
        raise project.error(path, f"table {table!r} is in neither the migrations nor the database")
    if not known.has_column(table, column):
        raise project.error(path, f"column {table}.{column} is in neither the migrations nor the database")


def _table(project: Project, known: Schema, name: str, decl: TableDecl) -> None:
    path: tuple[str | int, ...] = ("tables", name)
    if not known.has_table(name):
        raise project.error(path, f"table {name!r} is in neither the migrations nor the database")
    if isinstance(decl.tenant, str):
        _column(project, known, name, decl.tenant, (*path, "tenant"))
    elif isinstance(decl.tenant, TenantVia):
        _column(project, known, name, decl.tenant.via, (*path, "tenant", "via"))
        _via_target(project, known, name, decl.tenant.via, decl.tenant.table, decl.tenant.key, (*path, "tenant"))
    for role, rules in decl.policies.items():
        _role(project, role, (*path, "policies", role))
        for command in rules.declared():
            rule = getattr(rules, command)
            where = (*path, "policies", role, command)
            if command == "update":
                _condition(project, known, name, decl, rule.using, where)
                if rule.check is not None:
                    _condition(project, known, name, decl, rule.check, where)
            else:
                _condition(project, known, name, decl, rule, where)
    for role, privileges in decl.columns.items():
        _role(project, role, (*path, "columns", role))
        for command in ("select", "insert", "update"):
            chosen: ColumnList | None = getattr(privileges, command)
            for column in chosen.names() if chosen else ():
                _column(project, known, name, column, (*path, "columns", role, command))
    for index, guard in enumerate(decl.guards):
        for column in guard.changed:
            _column(project, known, name, column, (*path, "guards", index, "changed"))
        for role in guard.roles:
            _role(project, role, (*path, "guards", index, "roles"))
        where = (*path, "guards", index)
        _condition(project, known, name, decl, guard.require, (*where, "require"), in_guard=True)
        if guard.require_new is not None:
            _condition(project, known, name, decl, guard.require_new, (*where, "require_new"), in_guard=True)
    for column, readers in decl.secrets.items():
        _column(project, known, name, column, (*path, "secrets", column))
        for role in readers:
            _role(project, role, (*path, "secrets", column))
    if decl.retention is not None:
        _column(project, known, name, decl.retention.column, (*path, "retention", "column"))
        _role(project, decl.retention.role, (*path, "retention", "role"))
        if decl.retention.hold_role is not None:
            _role(project, decl.retention.hold_role, (*path, "retention", "hold_role"))
    _encrypted_columns(project, known, name, decl, path)


ENCRYPTABLE = ("text", "jsonb")


def _encrypted_columns(
    project: Project, known: Schema, name: str, decl: TableDecl, path: tuple[str | int, ...]
) -> None:
    for field in ("encrypted", "decrypting"):
        for column in getattr(decl, field):
            where = (*path, field)
            _column(project, known, name, column, where)
            kind = known.table(name).column(column).type
            if kind not in ENCRYPTABLE:
                raise project.error(where, f"{name}.{column} is {kind}: rlsctl encrypts only text and jsonb columns")
            if not _declares_kind(project, "keys"):
                raise project.error(where, "encrypted columns need a role of kind keys (docs/encryption.md)")
    # Only tables with encrypted columns need it: it walks every table's rules.
    used = columns_rules_read(project, name, decl) if decl.encrypted else {}
    for column in decl.encrypted:
        if column in used:
            raise project.error(
                (*path, "encrypted"),
                f"{name}.{column} is read by {used[column]}: an encrypted column holds ciphertext, "
                "so rules comparing it would silently change meaning",
            )
    both = set(decl.encrypted) & set(decl.decrypting)
    if both:
        raise project.error((*path, "decrypting"), f"{name}.{sorted(both)[0]} is both encrypted and decrypting")
    if decl.encrypted and isinstance(decl.tenant, str) and decl.tenant in decl.encrypted:
        raise project.error((*path, "encrypted"), f"{name}.{decl.tenant} maps rows to tenants: it cannot be encrypted")


def _declares_kind(project: Project, kind: str) -> bool:
    return any(declared.kind == kind for declared in project.roles.values())


def _api_keys(project: Project, known: Schema) -> None:
    keys = project.settings.api_keys
    if keys is None:
        return
    path: tuple[str | int, ...] = ("project", "api_keys")
    for field in ("key", "tenant", "hash", "scopes", "expires", "name"):
        column = getattr(keys, field)
        if column is not None:
            _column(project, known, keys.table, column, (*path, field))
    if not _declares_kind(project, "keys"):
        raise project.error(path, "api_keys needs a role of kind keys to own rlsctl.authenticate_api_key")
    if project.tenancy is None:
        raise project.error(path, "api_keys needs the tenancy section (a key acts for one tenant)")
    if not re.match(r"^[A-Za-z0-9_]{0,16}$", keys.raw_prefix):
        raise project.error((*path, "raw_prefix"), "raw_prefix: up to 16 letters, digits or underscores")


def _encryption(project: Project) -> None:
    for index, role in enumerate(project.settings.encryption.readers):
        _role(project, role, ("project", "encryption", "readers", index))


def _retention_settings(project: Project) -> None:
    if project.settings.retention.hold_role is not None:
        _role(project, project.settings.retention.hold_role, ("project", "retention", "hold_role"))


def _role(project: Project, role: str, path: tuple[str | int, ...]) -> None:
    if role not in project.roles:
        known = ", ".join(sorted(project.roles))
        raise project.error(path, f"role {role!r} is not declared in roles (declared: {known})")


def _via_target(
    project: Project,
    known: Schema,
    table: str,
    column: str,
    parent: str | None,
    key: str | None,
    path: tuple[str | int, ...],
) -> str:
    if parent is None:
        fk = known.table(table).foreign_key_for(column)
        if fk is None:
            raise project.error(path, f"{table}.{column} has no foreign key: name the parent with table and key")
        parent, key = fk.ref_table, fk.ref_columns[0]
    _column(project, known, parent, key or "id", path)
    if parent not in project.tables:
        raise project.error(path, f"{table}.{column} leads to {parent!r}, which has no entry in tables")
    return parent


def _condition(
    project: Project,
    known: Schema,
    table: str,
    decl: TableDecl,
    cond: c.Cond,
    path: tuple[str | int, ...],
    in_guard: bool = False,
) -> None:
    for column in sorted(c.columns_of(cond)):
        _column(project, known, table, column, path)
    for node in c.walk(cond):
        if isinstance(node, c.Not) and any(isinstance(inner, c.Same) for inner in c.walk(node.item)):
            # `same` fails closed (an unseen or NULL row is "not the same"); negated, that would
            # turn into passing exactly when nothing could be checked.
            raise project.error(path, "same cannot be negated: an unseen row would then pass")
        if isinstance(node, c.Same):
            if not in_guard:
                raise project.error(path, "same compares the old and the new row: use it in a guard's require")
            _same_path(project, known, table, node.old, path)
            _same_path(project, known, table, node.new, path)
        if isinstance(node, c.TenantRole | c.TenantMember | c.CoMember):
            _needs_tenancy(project, table, decl, node, path)
        if isinstance(node, c.SelfIs):
            _compares_with_identity(project, known, table, node.column, path)
        if isinstance(node, c.Via):
            _via_target(project, known, table, node.column, node.table, node.key, path)
        if isinstance(node, c.Exists):
            for theirs, _ in node.match:
                _column(project, known, node.table, theirs, path)
            other = project.tables.get(node.table)
            if other is None:
                raise project.error(path, f"exists reads {node.table!r}, which has no entry in tables")
            _condition(project, known, node.table, other, node.where, path)
        if isinstance(node, c.ApiKeyScope | c.ApiKeyMember) and project.settings.api_keys is None:
            raise project.error(path, "api_key conditions need project.api_keys (docs/policy-format.md)")
        if isinstance(node, c.ApiKeyScope) and decl.tenant is None:
            raise project.error(path, f"api_key needs a tenant mapping on {table!r}")
        if isinstance(node, c.Expired) and decl.retention is None:
            raise project.error(path, f"expired needs a retention declaration on {table!r}")


def _compares_with_identity(
    project: Project, known: Schema, table: str, column: str, path: tuple[str | int, ...]
) -> None:
    """`self: c` needs a comparison PostgreSQL has: the identity's type, integers of another
    width, or text (the identity cast to text); anything else fails at apply, or worse, at run time."""
    found = known.table(table).column(column)
    identity = project.settings.identity.type
    if e.identity_comparison(found.type, identity) is None:
        raise project.error(
            path,
            f"self: {table}.{column} is {found.type} and the identity is {identity}: they cannot be compared "
            f"(keep the user id in a column of type {identity} or text, or declare identity.type {found.type})",
        )


def _same_path(
    project: Project, known: Schema, table: str, steps: tuple[str, ...], path: tuple[str | int, ...]
) -> None:
    """Every step but the last is a foreign key to follow; the last is a column of the table reached."""
    for step in steps[:-1]:
        _column(project, known, table, step, path)
        table = _via_target(project, known, table, step, None, None, path)
    _column(project, known, table, steps[-1], path)


def _needs_tenancy(project: Project, table: str, decl: TableDecl, node: c.Cond, path: tuple[str | int, ...]) -> None:
    if project.tenancy is None:
        raise project.error(path, "tenant conditions need the tenancy section")
    if isinstance(node, c.TenantRole) and node.rank not in project.tenancy.ranks:
        ranks = ", ".join(project.tenancy.ranks)
        raise project.error(path, f"unknown tenant rank {node.rank!r} (ranks: {ranks})")
    if isinstance(node, c.TenantRole | c.TenantMember) and decl.tenant is None:
        raise project.error(
            path, f"table {table!r} has no tenant mapping (add tenant: COLUMN or tenant: {{via: COLUMN}})"
        )


def _fixtures(project: Project, known: Schema) -> None:
    fixtures = project.fixtures
    if fixtures is None:
        return
    for section in ("rows", "inserts", "updates"):
        for table, rows in getattr(fixtures, section).items():
            if not known.has_table(table):
                raise project.error(("fixtures", section, table), f"unknown table {table!r}")
            for row_name, row in rows.items():
                for column in row:
                    if not known.has_column(table, column):
                        where = ("fixtures", section, table, row_name, column)
                        raise project.error(where, f"unknown column {table}.{column}")
    for name, principal in fixtures.principals.items():
        _role(project, principal.role, ("fixtures", "principals", name, "role"))
