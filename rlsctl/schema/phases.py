"""The project's phased migrations as files: discovery and the offline schema.

Layout: `migrations/<N>_<name>/<NN>_<step>.up.sql` with a matching
`.down.sql` for every step. Phases run in order of N; steps of a phase run in
order of NN, and their down scripts in reverse.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from rlsctl.errors import UsageError
from rlsctl.schema.ddl import apply_ddl
from rlsctl.schema.tables import Schema

PHASE_DIR = re.compile(r"^(\d+)_([A-Za-z0-9_-]+)$")
STEP_FILE = re.compile(r"^(\d+)_([A-Za-z0-9_-]+)\.up\.sql$")


@dataclass(frozen=True)
class Step:
    name: str
    up: Path
    down: Path

    def up_sql(self) -> str:
        return self.up.read_text(encoding="utf-8")

    def down_sql(self) -> str:
        return self.down.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Phase:
    number: int
    name: str
    steps: tuple[Step, ...]

    @property
    def label(self) -> str:
        return f"{self.number} ({self.name})"

    def checksum(self) -> str:
        """SHA-256 over the up scripts: detects an edited, already-applied phase."""
        digest = hashlib.sha256()
        for step in self.steps:
            digest.update(step.up.name.encode() + b"\0" + step.up.read_bytes() + b"\0")
        return digest.hexdigest()


def discover_phases(migrations_dir: Path) -> tuple[Phase, ...]:
    if not migrations_dir.is_dir():
        return ()
    phases: list[Phase] = []
    for folder in sorted(migrations_dir.iterdir()):
        match = PHASE_DIR.match(folder.name)
        if not folder.is_dir() or not match:
            continue
        phases.append(Phase(int(match.group(1)), match.group(2), _steps(folder)))
    phases.sort(key=lambda phase: phase.number)
    numbers = [phase.number for phase in phases]
    if numbers != list(range(len(numbers))):
        raise UsageError(f"{migrations_dir}: phases must be numbered 0, 1, 2, ... without gaps")
    return tuple(phases)


def _steps(folder: Path) -> tuple[Step, ...]:
    steps: list[Step] = []
    for up in sorted(folder.glob("*.up.sql")):
        match = STEP_FILE.match(up.name)
        if not match:
            raise UsageError(f"{up}: step files are named NN_name.up.sql")
        down = up.with_name(up.name.replace(".up.sql", ".down.sql"))
        if not down.is_file():
            raise UsageError(f"{up}: missing rollback script {down.name}")
        steps.append(Step(f"{match.group(1)}_{match.group(2)}", up, down))
    if not steps:
        raise UsageError(f"{folder}: a phase folder needs at least one NN_name.up.sql step")
    return tuple(steps)


def schema_at(phases: tuple[Phase, ...], phase: int | None, schema_name: str) -> Schema:
    """The schema after running phases 0..`phase` (all of them when None), offline."""
    texts = tuple(
        (str(step.up), step.up_sql()) for item in phases if phase is None or item.number <= phase for step in item.steps
    )
    return _schema_from(texts, schema_name)


@functools.lru_cache(maxsize=64)
def _schema_from(texts: tuple[tuple[str, str], ...], schema_name: str) -> Schema:
    """Parsing is the slow part; the same scripts give the same schema."""
    schema = Schema(name=schema_name)
    for path, text in texts:
        schema = apply_ddl(schema, text, path)
    return schema


def phase_creating(phases: tuple[Phase, ...], table: str, schema_name: str) -> int | None:
    """The phase whose migrations first create `table`."""
    for item in phases:
        if schema_at(phases, item.number, schema_name).has_table(table):
            return item.number
    return None


def phase_adding_column(phases: tuple[Phase, ...], table: str, column: str, schema_name: str) -> int | None:
    """The phase whose migrations first give `table` the column `column`."""
    for item in phases:
        if schema_at(phases, item.number, schema_name).has_column(table, column):
            return item.number
    return None
