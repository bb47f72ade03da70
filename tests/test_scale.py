"""Catalog reads are a fixed number of queries and round trips, whatever the number of tables.

Not timed (benchmarks/apply_bench.py times them): a query per table or per policy
would make a 1,000-table plan 1,000 round trips, and this pins the counts so such a
change fails here first. A new catalog query belongs in the existing pipelines.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.scale import counting_connection, scale_project
from rlsctl.change import apply as applying
from rlsctl.change.drift import read_plan
from rlsctl.migrate import run as migrating
from rlsctl.policy.project import load_project

# (queries, round trips); a pipeline of catalog queries is one round trip.
FULL_APPLY = (26, 7)  # the undeclared-relations query, then the helper schema's sequences, joined the pipeline
NO_OP_PLAN = (27, 8)


def counts_for(make_db, tables: int, parent: Path) -> tuple[tuple[int, int], tuple[int, int]]:
    database = make_db()
    project = load_project(scale_project(tables, parent), role_prefix=database.prefix)
    with counting_connection(database.dsn) as conn:
        migrating.migrate(conn, project, database.target)
        conn.reset_counts()
        applying.apply(conn, project, database.target.where)
        full = conn.counts
        conn.reset_counts()
        assert read_plan(conn, project, database.target.where, None).empty
        return full, conn.counts


def test_catalog_round_trips_do_not_grow_with_the_number_of_tables(make_db, tmp_path):
    few, many = counts_for(make_db, 2, tmp_path), counts_for(make_db, 40, tmp_path)
    assert few == many
    assert few == (FULL_APPLY, NO_OP_PLAN)
