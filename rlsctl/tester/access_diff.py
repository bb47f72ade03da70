"""`rlsctl test --diff BASE`: the cells whose outcome a change of the policies changes.

For a pull request: BASE is the project as it was (a directory, or a git ref of the
repository holding the project), HEAD the project as it is (`--project`). Both are
evaluated from their policy files, each applied in turn inside a transaction that is
rolled back, on the same world (HEAD's fixtures and principals), so every cell compares
like with like and neither side depends on what happens to be applied to the database
(it ends as it began; run it on a CI database, as apply takes its locks meanwhile). Only
the cells whose outcome differs are reported, each *widened* (BASE denied, HEAD allows)
or *narrowed*. HEAD's own cells are also judged by its expectations: that is the exit
status.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg

from rlsctl.change.apply import apply
from rlsctl.errors import UsageError
from rlsctl.policy.project import Project, load_project
from rlsctl.tester.run import Cell, Generated, MatrixResult, run_matrix

Key = tuple[str, str, str, str]  # table, command, case, principal


@dataclass(frozen=True)
class Change:
    table: str
    command: str
    case: str
    principal: str
    before: str  # BASE's outcome ("hidden", "0 rows", "inserted"...)
    after: str
    widened: bool  # BASE denied, HEAD allows

    @property
    def effect(self) -> str:
        return "widened" if self.widened else "narrowed"


@dataclass
class AccessDiff:
    base: str
    head: str
    compared: int
    changes: list[Change] = field(default_factory=list)
    head_result: MatrixResult | None = None

    @property
    def widened(self) -> list[Change]:
        return [change for change in self.changes if change.widened]

    @property
    def narrowed(self) -> list[Change]:
        return [change for change in self.changes if not change.widened]


@contextmanager
def base_project(spec: str, head: Project, role_prefix: str | None) -> Iterator[Project]:
    """BASE as a project: a directory holding `policies/`, else a git ref of the repository the
    HEAD project lives in (its files at that ref, in a temporary directory)."""
    path = Path(spec)
    if (path / "policies").is_dir():
        yield load_project(path, role_prefix=role_prefix)
        return
    top, relative = _repository(head.root, spec)
    archive = subprocess.run(
        ["git", "-C", str(top), "archive", "--format=tar", spec, "--", str(relative)],
        capture_output=True, check=False,
    )  # fmt: skip
    if archive.returncode != 0:
        lines = archive.stderr.decode(errors="replace").strip().splitlines()
        detail = lines[-1] if lines else ""
        raise UsageError(f"--diff {spec}: not a project directory nor a git ref of {top}: {detail}")
    with tempfile.TemporaryDirectory(prefix="rlsctl-base-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        root = Path(tmp) / relative
        if not (root / "policies").is_dir():
            raise UsageError(f"--diff {spec}: {relative or '.'} at {spec} has no policies/ directory")
        yield load_project(root, role_prefix=role_prefix)


def _repository(root: Path, spec: str) -> tuple[Path, Path]:
    found = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        raise UsageError(f"--diff {spec}: not a project directory, and {root} is not in a git repository")
    top = Path(found.stdout.strip()).resolve()
    return top, root.resolve().relative_to(top)


def access_diff(
    conn: psycopg.Connection, head: Project, base: Project, where: str, base_name: str, head_name: str
) -> AccessDiff:
    with conn.transaction(force_rollback=True):
        apply(conn, head, where)
        head_result = run_matrix(conn, head, where)
    # BASE's policies on HEAD's world: the same rows, principals and cases on both sides.
    based = replace(base, fixtures=head.fixtures)
    with conn.transaction(force_rollback=True):
        apply(conn, based, where)
        base_result = run_matrix(conn, based, where, generated=Generated(None))
    before = {_key(cell): cell for cell in base_result.cells}
    diff = AccessDiff(base_name, head_name, 0, head_result=head_result)
    for cell in head_result.cells:
        old = before.get(_key(cell))
        if old is None:
            continue
        diff.compared += 1
        if old.actual.allowed != cell.actual.allowed:
            diff.changes.append(
                Change(cell.table, cell.command, cell.case, cell.principal, old.actual.detail, cell.actual.detail,
                       cell.actual.allowed)
            )  # fmt: skip
    return diff


def _key(cell: Cell) -> Key:
    return cell.table, cell.command, cell.case, cell.principal


def to_markdown(diff: AccessDiff) -> str:
    """For a pull-request comment: a summary line and one table row per changed cell."""
    lines = [
        f"### rlsctl access diff: {diff.base} → {diff.head}",
        "",
        f"{len(diff.changes)} of {diff.compared} cells changed: **{len(diff.widened)} widened**, "
        f"{len(diff.narrowed)} narrowed.",
    ]
    if diff.changes:
        lines += ["", "| effect | table | command | row | principal | before | after |", "|---" * 7 + "|"]
        for change in sorted(diff.changes, key=lambda c: (not c.widened, c.table, c.command, c.case, c.principal)):
            effect = "**widened**" if change.widened else "narrowed"
            cells = (change.table, change.command, change.case, change.principal, change.before, change.after)
            lines.append(f"| {effect} | " + " | ".join(_md(text) for text in cells) + " |")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    """A table cell: pipes and newlines would break the row, markup would render."""
    return "".join("\\" + ch if ch in "|`*_<>[]" else " " if ch in "\r\n" else ch for ch in text)


def to_json(diff: AccessDiff) -> str:
    data: dict[str, Any] = {
        "base": diff.base,
        "head": diff.head,
        "compared": diff.compared,
        "widened": len(diff.widened),
        "narrowed": len(diff.narrowed),
        "changes": [
            {"effect": c.effect, "table": c.table, "command": c.command, "case": c.case, "principal": c.principal,
             "before": c.before, "after": c.after}
            for c in diff.changes
        ],
    }  # fmt: skip
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
