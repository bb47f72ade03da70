"""Declared policies in the server's stored form, so they compare with the live ones.

The declared expressions are created on column-for-column copies of their
tables in pg_temp, inside a transaction that is rolled back, and read back
with pg_get_expr under the same search_path as the live ones.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psycopg

from rlsctl.catalog import queries as catalog
from rlsctl.declare.state import DeclaredState
from rlsctl.pg import statements
from rlsctl.pg.templates import call_macro, render_template
from rlsctl.state.objects import Objects, Policy


def normalise_policies(
    conn: psycopg.Connection, state: DeclaredState, declared: Objects, live: Objects, templates: Path | None
) -> Objects:
    """Declared policies that exist live, with USING/CHECK in the server's stored form.

    All probes go to the server in one round trip; only if one of them fails
    (a role or helper it names does not exist yet) are they retried one by
    one. A declared policy that cannot be probed keeps its source text, so
    it compares as changed.
    """
    wanted = [obj for key, obj in declared.items() if isinstance(obj, Policy) and key in live]
    if not wanted:
        return declared
    probe_state = replace(state, schema="pg_temp")
    tables = sorted({policy.table for policy in wanted})
    setup = [render_template("ops/probe_table.sql.j2", templates, table=t, schema=state.schema) for t in tables]
    probes = [
        call_macro("objects/policy.sql.j2", "create", templates, replace(p, name=f"rlsctl_probe_{n}"), probe_state)
        for n, p in enumerate(wanted)
    ]
    with conn.transaction(force_rollback=True):
        statements.run(conn, "stored_form_settings")
        conn.execute(";\n".join(setup).encode())
        try:
            with conn.transaction():
                conn.execute("\n".join(probes).encode())
        except psycopg.Error:
            for probe in probes:
                try:
                    with conn.transaction():
                        conn.execute(probe.encode())
                except psycopg.Error:
                    continue
        by_name = {row["name"]: row for row in catalog.fetch(conn, "temp_policies")}
    result = dict(declared)
    for number, policy in enumerate(wanted):
        row = by_name.get(f"rlsctl_probe_{number}")
        if row is not None:
            result[policy.key] = replace(policy, using=row["using_expr"], check=row["check_expr"])
    return result
