"""Which columns the policy files name and read, per table: questions about the model alone.

`validate` uses them to refuse encrypting a column that rules compare, and
`declare` to report columns named but not present yet. They need no schema.
"""

from __future__ import annotations

from rlsctl.policy import conditions as c
from rlsctl.policy.model import TableDecl, TenantVia
from rlsctl.policy.project import Project


def policy_conditions(decl: TableDecl) -> list[c.Cond]:
    """Every condition of a table's policies (USING and WITH CHECK)."""
    found: list[c.Cond] = []
    for rules in decl.policies.values():
        for command in rules.declared():
            rule = getattr(rules, command)
            if command == "update":
                found += [rule.using] + ([rule.check] if rule.check is not None else [])
            else:
                found.append(rule)
    return found


def columns_rules_read(
    project: Project, name: str, decl: TableDecl, through_exists: dict[str, dict[str, str]] | None = None
) -> dict[str, str]:
    """Columns of table `name` that policies, guards, tenancy, retention or api_keys read, and by what."""
    used: dict[str, str] = {}
    for cond in policy_conditions(decl):
        for column in c.columns_of(cond):
            used.setdefault(column, "a policy condition")
    read_by_exists = exists_reads(project) if through_exists is None else through_exists
    for column, reader in read_by_exists.get(name, {}).items():
        used.setdefault(column, reader)
    for guard in decl.guards:
        conditions = (guard.require, *((guard.require_new,) if guard.require_new is not None else ()))
        for column in (*guard.changed, *(col for cond in conditions for col in c.columns_of(cond))):
            used.setdefault(column, "a guard")
    if isinstance(decl.tenant, str):
        used.setdefault(decl.tenant, "the tenant mapping")
    elif isinstance(decl.tenant, TenantVia):
        used.setdefault(decl.tenant.via, "the tenant mapping")
    if decl.retention is not None:
        used.setdefault(decl.retention.column, "the retention window")
    tenancy = project.tenancy
    if tenancy is not None and tenancy.membership is not None and tenancy.membership.table == name:
        for column in (tenancy.membership.tenant, tenancy.membership.user, tenancy.membership.rank):
            if column:
                used.setdefault(column, "the tenancy section")
    if tenancy is not None and tenancy.tenants.table == name:
        for column in (tenancy.tenants.key, tenancy.tenants.owner):
            if column:
                used.setdefault(column, "the tenancy section")
    keys = project.settings.api_keys
    if keys is not None and keys.table == name:
        for column in (keys.key, keys.tenant, keys.hash, keys.scopes, keys.expires, keys.name):
            if column:
                used.setdefault(column, "project.api_keys")
    return used


def columns_named(
    project: Project, name: str, decl: TableDecl, through_exists: dict[str, dict[str, str]] | None = None
) -> tuple[str, ...]:
    """Every column of table `name` that the policy files name: what rules read, plus
    column privileges, secrets and encryption (apply reports those that do not exist yet).
    Pass `exists_reads(project)` when asking for many tables: it walks every table's rules."""
    named = set(columns_rules_read(project, name, decl, through_exists))
    for privileges in decl.columns.values():
        for listed in (privileges.select, privileges.insert, privileges.update):
            if listed is not None:
                named.update(listed.names())
    named.update(decl.secrets, decl.encrypted, decl.decrypting)
    return tuple(sorted(named))


def exists_reads(project: Project) -> dict[str, dict[str, str]]:
    """Per table, the columns that `exists` conditions of any table's policies read, and whose."""
    found: dict[str, dict[str, str]] = {}
    for other_name, other in project.tables.items():
        for cond in policy_conditions(other):
            for table, column in _read_through_exists(cond):
                found.setdefault(table, {}).setdefault(column, f"an exists condition of {other_name}")
    return found


def _read_through_exists(cond: c.Cond) -> set[tuple[str, str]]:
    """(table, column) pairs that `exists` conditions (at any depth) match on or filter by."""
    found: set[tuple[str, str]] = set()
    for node in c.walk(cond):
        if isinstance(node, c.Exists):
            found |= {(node.table, theirs) for theirs, _ in node.match}
            found |= {(node.table, column) for column in c.columns_of(node.where)}
            found |= _read_through_exists(node.where)
    return found
