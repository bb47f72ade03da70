"""Section 7, monitoring (volatile: it changes with every query): table and index sizes, dead rows,
the last vacuum and analyze, whether each column the policies read has an index that leads with it
and how often that index was used, and the sessions connected per role."""

from __future__ import annotations

import datetime as dt

import psycopg

from rlsctl.declare.state import DeclaredState
from rlsctl.policy.columns import columns_rules_read, exists_reads
from rlsctl.policy.project import Project
from rlsctl.report import queries
from rlsctl.report.model import ConnectionCount, MonitoringSection, PolicyColumn, TableStat, utc_text

API_KEYS = "project.api_keys"  # what columns_rules_read says of the columns the key functions read


def collect(conn: psycopg.Connection, project: Project, state: DeclaredState) -> MonitoringSection:
    tables = tuple(
        TableStat(
            table=row["table_name"],
            total_bytes=row["total_bytes"],
            table_bytes=row["table_bytes"],
            index_bytes=row["index_bytes"],
            live_rows=row["live_rows"] or 0,
            dead_rows=row["dead_rows"] or 0,
            seq_scan=row["seq_scan"] or 0,
            idx_scan=row["idx_scan"] or 0,
            last_vacuum=_latest(row["last_vacuum"], row["last_autovacuum"]),
            last_analyze=_latest(row["last_analyze"], row["last_autoanalyze"]),
        )
        for row in queries.fetch(conn, "table_stats", schema=state.schema)
    )
    connections = tuple(ConnectionCount(row["role"], row["connections"]) for row in queries.fetch(conn, "connections"))
    return MonitoringSection(tables, policy_columns(conn, project, state), connections)


def policy_columns(conn: psycopg.Connection, project: Project, state: DeclaredState) -> tuple[PolicyColumn, ...]:
    """The columns the rules of each existing table read (rlsctl.policy.columns), each with the first
    index (by name) whose leading column it is, and that index's scans."""
    leading: dict[tuple[str, str], tuple[str, int | None]] = {}
    for row in queries.fetch(conn, "index_usage", schema=state.schema):
        if row["columns"]:
            leading.setdefault((row["table_name"], row["columns"][0]), (row["index_name"], row["idx_scan"]))
    through_exists = exists_reads(project)
    keys = project.settings.api_keys
    found = []
    for table in sorted(state.tables, key=lambda t: t.name):
        read = columns_rules_read(project, table.name, project.tables[table.name], through_exists)
        for column, reader in sorted(read.items()):
            # The key functions find a key by its hash, then read the rest of that one row:
            # only the hash column is searched.
            if reader == API_KEYS and (keys is None or column != keys.hash):
                continue
            index, scans = leading.get((table.name, column), (None, None))
            found.append(PolicyColumn(table.name, column, reader, index, scans))
    return tuple(found)


def _latest(*moments: dt.datetime | None) -> str | None:
    """The later of the manual and the automatic run (autovacuum's), or None when neither ran."""
    found = [moment for moment in moments if moment is not None]
    return utc_text(max(found)) if found else None
