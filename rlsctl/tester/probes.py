"""Probes: the statements `rlsctl test` runs as each principal, run in batches inside the server.

One probe is one cell's statement (or one invariant check) with who runs it. They
go to the server a few hundred at a time, as JSON, to a temporary PL/pgSQL function
(templates/ops/tester_batch.sql.j2) that runs each in its own subtransaction,
impersonating its principal, and rolls it back whatever it did: one round trip per
batch instead of one per cell, with the same isolation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from rlsctl.pg import statements
from rlsctl.tester.evaluate import Outcome, Principal

BATCH = 400  # probes per round trip: large enough to hide the latency, small enough to stream progress
INSUFFICIENT_PRIVILEGE = "42501"


@dataclass(frozen=True)
class Probe:
    command: str  # select | insert | update | delete | rank (an invariant's) | stored (as the connecting role)
    table: str
    principal: Principal
    sql: str  # rendered through the templates' quoting path
    fingerprint: str | None = None  # writes: the statement hashing the table's content
    tag: Any = field(default=None, compare=False)  # what the caller needs to place the result
    pristine: str | None = field(default=None, compare=False)  # the table's hash before any probe
    key: str = field(default="", compare=False)  # the table's key column (writes of one row)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"command": self.command, "sql": self.sql}
        if self.fingerprint is not None:
            data["fingerprint"] = self.fingerprint
            data["pristine"] = self.pristine
        return data


def principal_json(principal: Principal) -> dict[str, Any]:
    """How the batch function becomes the principal: its role, the identity it sets, its API key."""
    data: dict[str, Any] = {}
    if principal.role != "none":
        data["role"] = principal.role
    if principal.first is not None:
        data["first"] = principal.first
        data["user"] = principal.presented_user or ""
    elif principal.raw_setting is not None:
        data["user"] = principal.raw_setting
    elif principal.sets_identity:
        data["user"] = principal.user_id if principal.user_id is not None else ""
    if principal.api_key is not None:
        data["api_key"] = principal.api_key
    return data


@dataclass(frozen=True)
class Result:
    """What a probe did: the rows it saw (select) or changed (writes), or the error it raised."""

    visible: frozenset[str] = frozenset()
    rows: int = 0
    changed: bool = False  # a write that changed 0 rows left the table different anyway
    error: str | None = None  # SQLSTATE
    message: str = ""
    row: dict[str, Any] | None = None  # a stored probe: the row as the server stored it
    unseen: bool = False  # a write of a row the principal cannot read: not sent (run._run_reads_first)

    def outcome(self, command: str) -> Outcome:
        if self.error is not None:
            if self.error == INSUFFICIENT_PRIVILEGE:
                return Outcome(False, f"error: {self.message}")
            return Outcome(False, f"unexpected error {self.error}: {self.message}")
        if command == "insert":
            return Outcome(True, "inserted")
        if self.unseen:
            return Outcome(False, "0 rows (not visible)")
        return Outcome(self.rows > 0, f"{self.rows} row{'s' if self.rows != 1 else ''}")


UNSEEN = Result(unseen=True)


def run(conn: psycopg.Connection, probes: list[Probe]) -> Iterator[tuple[Probe, Result]]:
    """Every probe's result, in order, a batch per round trip (the function must exist: tester_batch).
    Consecutive probes of one principal share one impersonation (a group)."""
    for start in range(0, len(probes), BATCH):
        chunk = probes[start : start + BATCH]
        groups: list[dict[str, Any]] = []
        for probe in chunk:
            if not groups or groups[-1]["key"] != probe.principal:
                groups.append({"key": probe.principal, "principal": principal_json(probe.principal), "probes": []})
            groups[-1]["probes"].append(probe.as_json())
        payload = json.dumps([{k: v for k, v in group.items() if k != "key"} for group in groups])
        results = statements.run(conn, "run_probes", probes=payload)[0]["results"]
        for probe, raw in zip(chunk, results, strict=True):
            yield probe, _result(raw)


def _result(raw: dict[str, Any]) -> Result:
    if "error" in raw:
        return Result(error=raw["error"], message=raw.get("message", ""))
    return Result(
        row=raw.get("row"),
        visible=frozenset(str(key) for key in raw.get("visible", [])),
        rows=int(raw.get("rows") or 0),
        changed=bool(raw.get("changed")),
    )
