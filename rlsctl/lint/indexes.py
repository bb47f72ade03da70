"""`rlsctl lint --write-index-phase`: the indexes RLS010 asks for, as a migration phase of their own.

apply runs in one transaction, where `CREATE INDEX CONCURRENTLY` cannot; a migration phase made
only of such statements can (rlsctl migrate runs it outside a transaction, docs/migrations.md).
The phase is the next free number, named `policy_indexes` unless told otherwise, with one step:
`01_policy_indexes.up.sql` (the indexes) and its `.down.sql` (dropping them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rlsctl.errors import UsageError
from rlsctl.lint.rule import Finding
from rlsctl.pg.templates import render_template
from rlsctl.schema.phases import PHASE_DIR, discover_phases

NAME_LIMIT = 63  # PostgreSQL's identifier length (NAMEDATALEN - 1), in bytes
STEP = "01_policy_indexes"


@dataclass(frozen=True)
class IndexSpec:
    schema: str
    table: str
    columns: tuple[str, ...]

    @property
    def name(self) -> str:
        """`<table>_<columns>_rlsctl_idx`, shortened with a hash when longer than PostgreSQL keeps."""
        wanted = f"{self.table}_{'_'.join(self.columns)}_rlsctl_idx"
        if len(wanted.encode()) <= NAME_LIMIT:
            return wanted
        digest = hashlib.sha256(f"{self.schema}.{wanted}".encode()).hexdigest()[:8]
        head = wanted.encode()[: NAME_LIMIT - len(digest) - 1].decode("utf-8", errors="ignore")
        return f"{head}_{digest}"


def wanted_indexes(findings: Iterable[Finding]) -> tuple[IndexSpec, ...]:
    """Every index the findings name, once, in a stable order."""
    found = {IndexSpec(schema, table, columns) for finding in findings for schema, table, columns in finding.indexes}
    return tuple(sorted(found, key=lambda index: (index.schema, index.table, index.columns)))


def write_index_phase(
    migrations: Path, templates: Path, indexes: tuple[IndexSpec, ...], name: str = "policy_indexes"
) -> Path:
    """Write the phase after the last one; its folder."""
    if not PHASE_DIR.match(f"0_{name}"):
        raise UsageError(f"--index-phase-name {name!r}: use letters, digits, '_' and '-'")
    number = len(discover_phases(migrations))
    folder = migrations / f"{number}_{name}"
    if folder.exists():
        raise UsageError(f"{folder} exists already")
    folder.mkdir(parents=True)
    for direction in ("up", "down"):
        text = render_template(f"migrations/index_phase.{direction}.sql.j2", templates, indexes=indexes)
        (folder / f"{STEP}.{direction}.sql").write_text(text.strip() + "\n", encoding="utf-8")
    return folder
