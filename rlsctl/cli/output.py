"""Printing command results: text for people (rich), JSON for machines.

Results go to stdout; progress and errors to stderr, so `--format json`
output stays parseable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from rlsctl.change.apply import ApplyReport
    from rlsctl.change.plan import Plan
    from rlsctl.cli.demo import DemoResult
    from rlsctl.migrate.run import MigrateReport, RollbackReport


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """rich exits 1 when the reader of the output went away, which `rlsctl drift | head` would
        read as "drift found": raise it instead, for the commands' one exit path (141, quietly)."""
        self.quiet = True
        raise BrokenPipeError


stdout = _Console(highlight=False, soft_wrap=True)
stderr = _Console(stderr=True, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    stderr.print(f"[bold red]error:[/] {escape(message)}")


def info(message: str) -> None:
    stderr.print(escape(message))


def write_file(path: Path, text: str, option: str, say: bool = True) -> None:
    """Write a command's output to the file `option` names. A path that cannot be written (no such
    directory, a directory, a full disk) is the user's to fix: one line naming the option and the
    path, exit 2, never an internal error."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"{option} {path}: {exc.strerror or exc}") from None
    if say:
        info(f"wrote {path}")


def progress(message: str) -> None:
    stderr.print(f"[dim]…[/] {escape(message)}")


@contextmanager
def cells_progress() -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar of probed cells on stderr when it is a terminal (`rlsctl test` can take
    seconds before the first line of its report); nothing in a pipe or a CI log."""
    if not stderr.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("probing cells"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=stderr, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("cells", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def apply_report(report: ApplyReport, fmt: str) -> None:
    plan = report.plan
    data = {
        "database": report.where,
        "dry_run": report.dry_run,
        "changed": bool(plan.statements),
        "statements": len(plan.statements),
        "managed_tables": list(report.managed),
        "pending_tables": [{"table": name, "phase": phase} for name, phase in plan.pending],
        "pending_columns": _pending_columns_json(plan),
        "encryption_started": list(plan.newly_encrypted_tables),
        "needs_dba": _needs_dba_json(plan),
    }
    if fmt == "json":
        emit_json(data)
        return
    verb = "would run" if report.dry_run else "ran"
    if plan.empty:
        stdout.print(f"apply on {escape(report.where)}: no changes (the database already matches the policy files)")
    elif not plan.statements:
        stdout.print(f"apply on {escape(report.where)}: nothing it can change (see below)")
    else:
        counts = ", ".join(
            f"{sum(1 for s in plan.statements if s.effect == effect)} {effect}"
            for effect in ("widens", "narrows", "neutral")
        )
        stdout.print(
            f"apply on {escape(report.where)}: {verb} {len(plan.statements)} statements in one transaction ({counts})"
        )
    stdout.print(f"  secured: {escape(', '.join(report.managed)) or '(no declared table exists yet)'}")
    for name, phase in plan.pending:
        when = f"phase {phase}" if phase is not None else "no migration"
        stdout.print(f"  not present yet: {escape(name)} (created by {when})")
    for table, column, phase in plan.pending_columns:
        when = f"phase {phase}" if phase is not None else "no migration"
        stdout.print(f"  not present yet: column {escape(table)}.{escape(column)} (added by {when})")
    if plan.newly_encrypted_tables and not report.dry_run:
        stdout.print(
            f"  encryption starts on {escape(', '.join(plan.newly_encrypted_tables))}: new writes are encrypted; "
            "existing plaintext stays until `rlsctl keys encrypt` backfills it (`rlsctl keys status` counts it)"
        )
    for op in plan.for_dba:
        reason = plan.acknowledgement(op)
        if reason is not None:
            stdout.print(f"  [dim]acknowledged, left to a DBA: {escape(op.key)} ({escape(reason)})[/]")
        else:
            stdout.print(f"  [bold yellow]not repaired[/]: {escape(op.key)} ({escape(op.detail)})")
    if report.dry_run:
        stdout.print("  dry run: rolled back, nothing changed")


def _needs_dba_json(plan: Plan) -> list[dict[str, str]]:
    return [{"object": op.key, "kind": op.kind, "detail": op.detail} for op in plan.for_dba]


def migrate_report(report: MigrateReport, fmt: str) -> None:
    if fmt == "json":
        emit_json(
            {
                "database": report.where,
                "ran": [
                    {
                        "phase": r.phase,
                        "name": r.name,
                        "statements": r.statements,
                        "backup": str(r.backup) if r.backup else None,
                        "row_counts_not_verified": list(r.unverified),
                    }
                    for r in report.ran
                ],
                "baselined": report.baselined,
                "already_applied": report.already,
            }
        )
        return
    if report.baselined:
        stdout.print(f"recorded phases {report.baselined} as applied (baseline, nothing run)")
    for r in report.ran:
        line = f"phase {r.phase} ({escape(r.name)}): {r.statements} statements, validated"
        if r.backup:
            line += f", backup {escape(str(r.backup))}"
        stdout.print(line)
        for table in r.unverified:
            stdout.print(f"  row count of {escape(table)} not verified: forced RLS hides rows from the migrating role")
    if not report.ran and not report.baselined:
        stdout.print(f"{escape(report.where)}: nothing to migrate (phases {report.already} already applied)")


def rollback_report(report: RollbackReport, fmt: str) -> None:
    if fmt == "json":
        emit_json({
            "database": report.where, "reverted": list(report.reverted), "reapplied": report.reapplied,
            "dry_run": report.dry_run, "backup": str(report.backup) if report.backup else None,
            "drops": [{"table": loss.table, "column": loss.column, "held": loss.held, "audit_log": loss.audit,
                       "rows_deleted_only": loss.deleted_only}
                      for loss in report.losses],
        })  # fmt: skip
        return
    if not report.reverted:
        stdout.print(f"{escape(report.where)}: nothing to roll back")
        return
    verb = "would revert" if report.dry_run else "reverted"
    stdout.print(f"{verb} phases {list(report.reverted)} on {escape(report.where)}")
    for loss in report.losses:
        stdout.print(f"  {'would drop' if report.dry_run else 'dropped'} {escape(str(loss))}")
    if report.dry_run and not report.losses:
        stdout.print("  no table or column holding data would be dropped")
    if report.backup is not None:
        stdout.print(f"  backup before the rollback: {escape(str(report.backup))}")
    if report.reapplied:
        stdout.print("  security layer re-applied for the tables that remain")


def demo_report(result: DemoResult) -> None:
    if stdout.is_terminal:
        _demo_grid(result)
    else:  # a log or a pipe: one plain line per phase, nothing for an 80-column box to break
        stdout.print(f"rlsctl demo on {escape(result.server)}")
        previous: set[str] = set()
        for phase in result.phases:
            new = [name for name in phase.tables if name not in previous]
            previous = set(phase.tables)
            stdout.print(
                f"phase {phase.phase} {escape(phase.name)}: {len(phase.tables)} tables secured"
                f"{' (new: ' + escape(', '.join(new)) + ')' if new else ''}, {len(phase.pending)} pending, "
                f"{phase.statements} statements, {phase.cells} cells, {phase.mismatches} mismatches"
            )
    _demo_footer(result)


def _demo_grid(result: DemoResult) -> None:
    from rich.table import Table

    grid = Table(title=f"rlsctl demo on {escape(result.server)}", title_justify="left")
    grid.add_column("phase", no_wrap=True)
    grid.add_column("tables secured (new in this phase)")
    for column in ("pending", "statements", "cells", "mismatches"):
        grid.add_column(column, justify="right")
    previous: set[str] = set()
    for phase in result.phases:
        new = [name for name in phase.tables if name not in previous]
        previous = set(phase.tables)
        grid.add_row(
            f"{phase.phase} {escape(phase.name)}",
            f"{len(phase.tables)} (+{escape(', '.join(new))})",
            str(len(phase.pending)),
            str(phase.statements),
            str(phase.cells),
            "[green]0[/]" if not phase.mismatches else f"[bold red]{phase.mismatches}[/]",
        )
    stdout.print(grid)


def _demo_footer(result: DemoResult) -> None:
    stdout.print(
        "cells: one per principal x table x command x fixture row, impersonated with SET LOCAL ROLE and "
        f"{escape(result.identity_setting)} inside a rolled-back transaction, compared with what the policy files allow"
    )
    if result.ok:
        stdout.print("[green]every access-matrix cell matched its expectation in every phase[/]")
    else:
        stdout.print("[bold red]some cells did not match: run `rlsctl test` for the details[/]")


EFFECT_TITLES = {"widens": "Widens access", "narrows": "Narrows access", "neutral": "Neutral"}


def _plan_json(plan: Plan, where: str) -> dict[str, object]:
    return {
        "database": where,
        "changes": len(plan.operations),
        "statements": [
            {"sql": s.sql, "effect": s.effect, "action": s.action, "object": s.object, "cascades": list(s.cascades)}
            for s in plan.statements
        ],
        "needs_dba": _needs_dba_json(plan),
        "refused": list(plan.refusals),
        "unmanaged": [{"object": obj.key, "kind": obj.kind} for obj in plan.unmanaged],
        "pending_tables": [{"table": name, "phase": phase} for name, phase in plan.pending],
        "pending_columns": _pending_columns_json(plan),
    }


def _pending_columns_json(plan: Plan) -> list[dict[str, object]]:
    return [{"table": table, "column": column, "phase": phase} for table, column, phase in plan.pending_columns]


def plan_report(plan: Plan, where: str, fmt: str) -> None:
    if fmt == "json":
        emit_json(_plan_json(plan, where))
        return
    if plan.empty:
        stdout.print(f"{escape(where)}: no changes")
        return
    _refusals(plan)
    stdout.print(f"{escape(where)}: {len(plan.statements)} statements; apply runs them in dependency order")
    for effect in ("widens", "narrows", "neutral"):
        chosen = [s for s in plan.statements if s.effect == effect]
        if not chosen:
            continue
        colour = {"widens": "bold yellow", "narrows": "green", "neutral": "dim"}[effect]
        stdout.print(f"\n[{colour}]{EFFECT_TITLES[effect]} ({len(chosen)})[/]")
        for statement in chosen:
            stdout.print(f"[dim]-- {escape(statement.object)}[/]")
            for key in statement.cascades:
                stdout.print(f"[dim]--   CASCADE also removes: {escape(key)}[/]")
            stdout.print(escape(statement.sql) + ";")
    for op in plan.for_dba:
        stdout.print(f"[bold yellow]needs a DBA:[/] {escape(op.key)} ({escape(op.detail)})")
    _unmanaged(plan)


def _refusals(plan: Plan) -> None:
    for message in plan.refusals:
        stdout.print(f"[bold red]apply will refuse:[/] {escape(message)}")


def _unmanaged(plan: Plan) -> None:
    for obj in plan.unmanaged:
        stdout.print(f"[dim]unmanaged:[/] {escape(obj.key)} (left alone)")


# What drift says about a difference apply does not repair (needs_dba: its detail says why).
REPAIR_NOTE = {"refuse": "apply refuses to repair it", "needs_dba": ""}


def drift_report(plan: Plan, where: str, fmt: str) -> None:
    from rlsctl.change.drift import drift_state

    real = list(plan.drift)
    accepted = [(op, plan.acknowledgement(op)) for op in plan.operations if plan.acknowledgement(op)]
    if fmt == "json":
        data = _plan_json(plan, where)
        data["drift"] = [
            {
                "object": op.key,
                "kind": op.kind,
                "action": op.action,
                "effect": op.effect,
                "state": drift_state(op.action),
                "detail": op.detail,
            }
            for op in real
        ]
        data["acknowledged"] = [{"object": op.key, "reason": reason} for op, reason in accepted]
        emit_json(data)
        return
    if not real:
        stdout.print(f"{escape(where)}: no drift")
    else:
        stdout.print(f"{escape(where)}: {len(real)} objects differ from the declared state")
        for op in real:
            repair = REPAIR_NOTE.get(op.action, f"{op.effect} when repaired")
            note = "; ".join(part for part in (op.detail, repair) if part)
            stdout.print(f"  {drift_state(op.action):9} {escape(op.key)}  [dim]({escape(note)})[/]")
    for op, reason in accepted:
        stdout.print(f"  [dim]acknowledged: {escape(op.key)} ({escape(reason or '')})[/]")
    _unmanaged(plan)
