"""Section 2, row-level security: every table of the project's schema, its RLS flags and its
policies as the server stores them (rlsctl.catalog's queries, the ones drift compares)."""

from __future__ import annotations

import psycopg

from rlsctl.catalog import queries as catalog
from rlsctl.declare.state import DeclaredState
from rlsctl.report.model import COMMANDS, Policy, RlsSection, RlsTable


def collect(conn: psycopg.Connection, state: DeclaredState) -> RlsSection:
    declared = {table.name for table in state.tables}
    policies: dict[str, list[Policy]] = {}
    for found in catalog.policies(conn, state.schema):
        policy = Policy(
            found.name, found.command, found.permissive, tuple(sorted(found.roles)), found.using, found.check
        )
        policies.setdefault(found.table, []).append(policy)
    tables = tuple(
        RlsTable(
            name=name,
            declared=name in declared,
            owner=table.owner,
            rls_enabled=table.rls_enabled,
            rls_forced=table.rls_forced,
            policies=tuple(sorted(policies.get(name, ()), key=_policy_order)),
        )
        for name, table in sorted(catalog.tables(conn, state.schema).items())
    )
    return RlsSection(state.schema, tables, tuple(sorted(state.pending)))


def _policy_order(policy: Policy) -> tuple[int, str]:
    """SELECT, INSERT, UPDATE, DELETE (then ALL), each by name."""
    order = (*COMMANDS, "all")
    return (order.index(policy.command) if policy.command in order else len(order), policy.name)
