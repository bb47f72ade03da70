"""`rlsctl retention ...`: delete expired rows, legal holds, pg_cron jobs (library: rlsctl/retention/)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from rlsctl.cli.options import handle_errors, load_project_option, options_dsn, options_project

if TYPE_CHECKING:
    from rlsctl.pg.db import Target
    from rlsctl.retention import Observer, Retention, RetentionRun, ScheduleReport, StatusRow


@click.group(name="retention")
def retention_group() -> None:
    """Delete rows past their retention window, hold them for legal reasons, schedule it (docs/retention.md)."""


@contextmanager
def _retention(dsn: str | None, project: str | None, role_prefix: str | None) -> Iterator[tuple[Retention, Target]]:
    from rlsctl.pg import db
    from rlsctl.retention import Retention

    loaded = load_project_option(project, role_prefix)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        yield Retention(conn, loaded, target.where), target


def _format_option(func: Any) -> Any:
    return click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)(func)


def _tables_option(func: Any, help: str = "Only this table (repeat for several); default: all.") -> Any:
    return click.option("--table", "tables", multiple=True, metavar="T", help=help)(func)


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Observer | None]:
    """A rich progress line on stderr per table: rows removed so far (the total is not counted
    first: counting the expired rows would cost about as much as deleting them)."""
    from rlsctl.cli import output

    if not enabled:
        yield None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    tasks: dict[str, Any] = {}
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}: {task.completed:,.0f} rows removed"),
        TimeElapsedColumn(),
        console=output.stderr,
        transient=False,
    ) as bar:

        def observe(table: str, removed: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=None)
            bar.advance(tasks[table], removed)

        yield observe


@retention_group.command(name="run")
@_tables_option
@click.option("--dry-run", is_flag=True, help="Count the rows that would go; delete nothing.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    metavar="N",
    help="Rows per batch (default: adaptive, aiming at about 100 ms of row locks per batch).",
)
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0.001),
    default=2.0,
    show_default=True,
    metavar="S",
    help="Seconds a batch waits for a lock before it is tried again, smaller.",
)
@options_dsn
@options_project
@_format_option
@handle_errors
def run_command(
    tables: tuple[str, ...],
    dry_run: bool,
    batch_size: int | None,
    lock_timeout: float,
    dsn: str | None,
    project: str | None,
    role_prefix: str | None,
    fmt: str,
) -> None:
    """Delete the rows past their window (UTC) in batches as the retention role, per table; record the run."""
    from rlsctl import retention as retaining

    with _retention(dsn, project, role_prefix) as (retention, _), _progress_bar(fmt == "text" and not dry_run) as bar:
        done = retaining.run(retention, tables, dry_run, bar, batch_size, lock_timeout)
    _run_report(done, fmt)


def _run_report(done: RetentionRun, fmt: str) -> None:
    from rlsctl.cli import output

    if fmt == "json":
        data = dataclasses.asdict(done)
        data["removed"] = done.removed
        data["p95_batch_seconds"] = done.p95_batch_seconds
        output.emit_json(data)
        return
    for table in done.tables:
        window = f"{table.column} older than {table.days} days"
        if table.skipped is not None:
            output.stdout.print(f"{table.table}: skipped: {table.skipped}")
            continue
        line = f"{table.table} ({window}, before {table.cutoff} UTC): "
        if done.dry_run:
            line += f"{table.expired} rows would go"
        elif table.expired == 0:
            line += "nothing to remove"
        else:
            line += (
                f"{table.removed} of {table.expired} rows removed in {table.batches} batches "
                f"(by {'block ranges' if table.walk == 'blocks' else 'the index'}), {table.seconds:.1f} s"
            )
            if table.remaining:
                line += f"; {table.remaining} left (held by other transactions: the next run takes them)"
        output.stdout.print(line)
        if table.held is not None:
            output.stdout.print(f"  kept: {table.held}")
    if not done.dry_run and done.batch_seconds:
        output.stdout.print(f"row locks per batch: p95 {done.p95_batch_seconds * 1000:.0f} ms")


def _hold_options(func: Any) -> Any:
    func = click.option("--reason", required=True, help="Why (recorded with the change, the login and the time).")(func)
    func = click.option("--tenant", metavar="ID", help="Only this tenant's rows of the tables (default: every row).")(
        func
    )
    func = click.option("--all", "all_tables", is_flag=True, help="Every table that declares retention.")(func)
    return _tables_option(func, "A table (repeat for several).")


def _hold(action: str, tables: tuple[str, ...], all_tables: bool, tenant: str | None, reason: str, dsn: str | None,
          project: str | None, role_prefix: str | None) -> None:  # fmt: skip
    from rlsctl import retention as retaining
    from rlsctl.cli import output

    if bool(tables) == all_tables:
        raise click.UsageError("name the tables (--table T, repeatable) or give --all")
    with _retention(dsn, project, role_prefix) as (retention, _):
        changes = retaining.change(retention, action, () if all_tables else tables, tenant, reason)
    for found in changes:
        what = found.table if found.tenant is None else f"{found.table}, tenant {found.tenant}"
        if action == "hold":
            output.info(f"{what}: {'on hold now' if found.changed else 'already on hold'}")
        else:
            output.info(f"{what}: {'hold lifted' if found.changed else 'was not on hold'}")


@retention_group.command()
@_hold_options
@options_dsn
@options_project
@handle_errors
def hold(tables: tuple[str, ...], all_tables: bool, tenant: str | None, reason: str, dsn: str | None,
         project: str | None, role_prefix: str | None) -> None:  # fmt: skip
    """Put tables (or one tenant of them) on legal hold: retention deletes none of their rows until lifted.

    Runs rlsctl.retention_hold as the login connecting: only members of the table's hold role may."""
    _hold("hold", tables, all_tables, tenant, reason, dsn, project, role_prefix)


@retention_group.command()
@_hold_options
@options_dsn
@options_project
@handle_errors
def release(tables: tuple[str, ...], all_tables: bool, tenant: str | None, reason: str, dsn: str | None,
            project: str | None, role_prefix: str | None) -> None:  # fmt: skip
    """Lift a legal hold (rlsctl.retention_release: members of the table's hold role only)."""
    _hold("release", tables, all_tables, tenant, reason, dsn, project, role_prefix)


@retention_group.command()
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Latest changes and runs.")
@options_dsn
@options_project
@_format_option
@handle_errors
def status(limit: int, dsn: str | None, project: str | None, role_prefix: str | None, fmt: str) -> None:
    """The holds in force, the latest hold changes and the latest runs (as the helper tables' owner)."""
    from rlsctl import retention as retaining

    with _retention(dsn, project, role_prefix) as (retention, _):
        rows = retaining.status(retention, limit)
    _status_report(rows, fmt)


def _status_report(rows: list[StatusRow], fmt: str) -> None:
    from rlsctl.cli import output

    if fmt == "json":
        output.emit_json([dataclasses.asdict(row) | {"at": row.at.isoformat()} for row in rows])
        return
    titles = {"hold": "holds in force", "change": "hold changes", "run": "runs"}
    for kind, title in titles.items():
        found = [row for row in rows if row.kind == kind]
        output.stdout.print(f"{title}: {len(found) or 'none'}")
        for row in found:
            when = row.at.strftime("%Y-%m-%d %H:%M:%S %Z")
            what = row.table if row.tenant is None else f"{row.table}, tenant {row.tenant}"
            if kind == "run":
                dry = "dry run: would remove" if row.dry_run else "removed"
                line = f"  {when} {what}: {dry} {row.removed} (before {row.cutoff}), {row.seconds:.1f} s"
                line += f", by {row.actor} via {row.via}" + (f"; kept: {row.detail}" if row.detail else "")
            else:
                line = f"  {when} {what}: {row.detail} (by {row.actor})"
            output.stdout.print(line)


@retention_group.command()
@click.option("--remove", is_flag=True, help="Unschedule rlsctl's retention jobs of this database.")
@click.option(
    "--every",
    default="17 3 * * *",
    show_default=True,
    metavar="CRON",
    help="When the tables' jobs run (pg_cron syntax, GMT).",
)
@click.option(
    "--history-days",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    metavar="N",
    help="Days of cron.job_run_details the trim job keeps.",
)
@options_dsn
@options_project
@_format_option
@handle_errors
def schedule(remove: bool, every: str, history_days: int, dsn: str | None, project: str | None,
             role_prefix: str | None, fmt: str) -> None:  # fmt: skip
    """Create (or update, or --remove) pg_cron jobs that run retention here, and trim pg_cron's log.

    The jobs run as the login scheduling them (a superuser, or one granted EXECUTE on
    cron.schedule_in_database) and call the tables' SECURITY DEFINER batch functions."""
    from rlsctl import retention as retaining

    with _retention(dsn, project, role_prefix) as (retention, target):
        report = retaining.schedule(retention, target, every, history_days, remove)
    _schedule_report(report, fmt)


def _schedule_report(report: ScheduleReport, fmt: str) -> None:
    from rlsctl.cli import output

    if fmt == "json":
        output.emit_json(dataclasses.asdict(report))
        return
    output.stdout.print(
        f"pg_cron in {report.cron_database}; jobs run in {report.database} as {report.username}"
    )  # fmt: skip
    for title in ("created", "updated", "unchanged", "removed"):
        for name in getattr(report, title):
            output.stdout.print(f"  {title}: {name}")
