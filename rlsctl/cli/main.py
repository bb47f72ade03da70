"""The `rlsctl` command line: parses arguments, calls the library, prints, exits.

Exit status: 0 clean, 1 findings / failures / drift, 2 usage or connection
error (one line on stderr, never a traceback).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rlsctl.cli import output
from rlsctl.cli.keys import keys_group
from rlsctl.cli.options import (
    handle_errors,
    load_project_option,
    lock_timeout_option,
    options_dsn,
    options_project,
)

_options_dsn = options_dsn
_options_project = options_project
_lock_timeout = lock_timeout_option


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rlsctl")
def main() -> None:
    """rlsctl: declare, render, apply and prove PostgreSQL row-level security."""


_project = load_project_option


@main.command()
@_options_project
@click.option(
    "--phase", type=click.IntRange(min=0), help="Render for the schema after this phase (default: every phase)."
)
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write phase-N.sql files here instead of printing.",
)
@handle_errors
def render(project: str | None, role_prefix: str | None, phase: int | None, out_dir: Path | None) -> None:
    """Write the generated SQL, offline and deterministic (byte-identical across runs)."""
    from rlsctl.change.render import render_phases

    loaded = _project(project, role_prefix)
    rendered = render_phases(loaded, phase)
    if out_dir is None:
        for number, script in rendered.items():
            if len(rendered) > 1:
                click.echo(f"-- ===== phase {number} =====")
            click.echo(script, nl=False)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for number, script in rendered.items():
        path = out_dir / f"phase-{number}.sql"
        path.write_text(script, encoding="utf-8")
        output.info(f"wrote {path}")


@main.command()
@_options_dsn
@_options_project
@click.option("--to", "to", type=click.IntRange(min=0), help="Last phase to run (default: all).")
@click.option("--baseline", type=click.IntRange(min=0), help="Record phases 0..N as applied without running them.")
@click.option(
    "--backup-dir", type=click.Path(file_okay=False, path_type=Path), help="pg_dump (custom format) before each phase."
)
@_lock_timeout
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def migrate(
    dsn: str | None,
    project: str | None,
    role_prefix: str | None,
    to: int | None,
    baseline: int | None,
    backup_dir: Path | None,
    lock_timeout: float,
    fmt: str,
) -> None:
    """Run the phased migrations, each in one transaction, recorded in the helper schema."""
    from rlsctl.migrate import run as migrating
    from rlsctl.pg import db

    loaded = _project(project, role_prefix)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        report = migrating.migrate(
            conn,
            loaded,
            target,
            to=to,
            baseline=baseline,
            backup_dir=backup_dir,
            lock_timeout=lock_timeout,
            progress=output.progress,
        )
    output.migrate_report(report, fmt)


@main.command()
@_options_dsn
@_options_project
@click.option("--to", "to", type=click.IntRange(min=0), required=True, help="Phase to return to (it stays applied).")
@_lock_timeout
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def rollback(
    dsn: str | None, project: str | None, role_prefix: str | None, to: int, lock_timeout: float, fmt: str
) -> None:
    """Revert phases after N in reverse order and re-secure the tables that remain."""
    from rlsctl.migrate import run as migrating
    from rlsctl.pg import db

    loaded = _project(project, role_prefix)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        report = migrating.rollback(
            conn, loaded, target.where, to=to, lock_timeout=lock_timeout, progress=output.progress
        )
    output.rollback_report(report, fmt)


@main.command(name="apply")
@_options_dsn
@_options_project
@click.option("--phase", type=click.IntRange(min=0), help="Manage only what migrations up to this phase create.")
@click.option("--dry-run", is_flag=True, help="Run everything in a transaction, then roll it back.")
@_lock_timeout
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def apply_command(
    dsn: str | None,
    project: str | None,
    role_prefix: str | None,
    phase: int | None,
    dry_run: bool,
    lock_timeout: float,
    fmt: str,
) -> None:
    """Bring roles, grants, RLS and helpers to the declared state, in one transaction."""
    from rlsctl.change import apply as applying
    from rlsctl.pg import db

    loaded = _project(project, role_prefix)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        report = applying.apply(conn, loaded, target.where, phase=phase, dry_run=dry_run, lock_timeout=lock_timeout)
    output.apply_report(report, fmt)


@main.command()
@_options_dsn
@_options_project
@click.option("--phase", type=click.IntRange(min=0), help="Manage only what migrations up to this phase create.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def plan(dsn: str | None, project: str | None, role_prefix: str | None, phase: int | None, fmt: str) -> None:
    """Print the statements apply would run here, each labelled widens, narrows or neutral."""
    from rlsctl.change.drift import read_plan
    from rlsctl.pg import db

    loaded = _project(project, role_prefix)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        found = read_plan(conn, loaded, target.where, phase)
    output.plan_report(found, target.where, fmt)


@main.command()
@_options_dsn
@_options_project
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def drift(dsn: str | None, project: str | None, role_prefix: str | None, fmt: str) -> None:
    """Compare the live catalog with the declared state; exit 1 when anything differs."""
    from rlsctl.change.drift import read_plan
    from rlsctl.pg import db

    loaded = _project(project, role_prefix)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        found = read_plan(conn, loaded, target.where, None)
    output.drift_report(found, target.where, fmt)
    sys.exit(1 if not found.empty else 0)


@main.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_options_dsn
@click.option("--live", is_flag=True, help="Also lint the live catalog, from DATABASE_URL or the libpq environment.")
@_options_project
@click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif"]), default="text", show_default=True)
@click.option(
    "--fail-on",
    type=click.Choice(["error", "warning", "info"]),
    default="error",
    show_default=True,
    help="Exit 1 when a finding is at or above this level.",
)
@click.option("--select", "select", metavar="IDS", help="Run only these rules (comma-separated ids).")
@click.option("--ignore", "ignore", metavar="IDS", help="Skip these rules (comma-separated ids).")
@click.option(
    "--baseline",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Findings recorded in this file do not count (adopting rlsctl on an existing database).",
)
@click.option(
    "--write-baseline", type=click.Path(dir_okay=False, path_type=Path), help="Record today's findings in this file."
)
@click.option(
    "-o", "--output", "out_file", type=click.Path(dir_okay=False, path_type=Path), help="Write the report to a file."
)
@handle_errors
def lint(
    files: tuple[Path, ...],
    dsn: str | None,
    live: bool,
    project: str | None,
    role_prefix: str | None,
    fmt: str,
    fail_on: str,
    select: str | None,
    ignore: str | None,
    baseline: Path | None,
    write_baseline: Path | None,
    out_file: Path | None,
) -> None:
    """Lint the project (or SQL FILES) offline; with --dsn or --live also a live database."""
    from contextlib import nullcontext

    from rlsctl.lint import LintInputs
    from rlsctl.lint import lint as run_lint
    from rlsctl.lint.report import print_text, to_json, to_sarif
    from rlsctl.lint.runner import read_baseline
    from rlsctl.lint.runner import write_baseline as save_baseline
    from rlsctl.pg import db

    chosen = project or None
    loaded = _project(chosen, role_prefix) if (not files or chosen) else None
    connect = dsn is not None or live
    target = db.resolve_dsn(dsn) if connect else None
    with db.session(target) if target is not None else nullcontext() as conn:
        result, locations = run_lint(
            LintInputs(project=loaded, files=list(files), conn=conn),
            select=_ids(select),
            ignore=_ids(ignore),
            baseline=read_baseline(baseline) if baseline else None,
        )
    if write_baseline is not None:
        recorded = save_baseline(write_baseline, result)
        output.info(f"wrote {write_baseline} ({recorded} findings)")
    if fmt == "text" and out_file is None:
        print_text(result, output.stdout, fail_on)
    else:
        if fmt == "json":
            text = to_json(result)
        elif fmt == "sarif":
            text = to_sarif(result, locations)
        else:
            from io import StringIO

            from rich.console import Console

            buffer = StringIO()
            print_text(result, Console(file=buffer, width=120, no_color=True), fail_on)
            text = buffer.getvalue()
        if out_file is None:
            click.echo(text, nl=False)
        else:
            out_file.write_text(text, encoding="utf-8")
            output.info(f"wrote {out_file}")
    sys.exit(1 if result.at_or_above(fail_on) else 0)


def _ids(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip().upper() for part in (value or "").split(",") if part.strip())


@main.command(name="test")
@_options_dsn
@_options_project
@click.option("--format", "fmt", type=click.Choice(["text", "json", "junit"]), default="text", show_default=True)
@click.option(
    "-o", "--output", "out_file", type=click.Path(dir_okay=False, path_type=Path), help="Write the result to a file."
)
@handle_errors
def test_command(
    dsn: str | None, project: str | None, role_prefix: str | None, fmt: str, out_file: Path | None
) -> None:
    """Impersonate every principal on fixture data and check every cell (rolled back)."""
    from rlsctl.pg import db
    from rlsctl.tester import report
    from rlsctl.tester.run import run_matrix

    loaded = _project(project, role_prefix)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        result = run_matrix(conn, loaded, target.where)
    if fmt == "text" and out_file is None:
        report.print_text(result, output.stdout)
    else:
        text = report.to_json(result) if fmt == "json" else report.to_junit(result) if fmt == "junit" else None
        if text is None:
            from io import StringIO

            from rich.console import Console

            buffer = StringIO()
            report.print_text(result, Console(file=buffer, width=120, no_color=True))
            text = buffer.getvalue()
        if out_file is None:
            click.echo(text, nl=False)
        else:
            out_file.write_text(text, encoding="utf-8")
            output.info(f"wrote {out_file}")
    sys.exit(1 if result.failures else 0)


@main.command()
@click.option("--dsn", metavar="DSN", help="Use a temporary database on this server instead of a throw-away cluster.")
@_options_project
@handle_errors
def demo(dsn: str | None, project: str | None, role_prefix: str | None) -> None:
    """The whole flow (migrate -> apply -> test per phase) on a throw-away PostgreSQL.

    Stopped midway (Ctrl-C, SIGTERM, SIGHUP), it still stops the throw-away server
    and deletes its files, or drops its temporary database and roles.
    """
    from rlsctl.cli.demo import run_demo

    loaded = _project(project, role_prefix)
    result = run_demo(loaded, dsn, output.progress)
    output.demo_report(result)
    sys.exit(0 if result.ok else 1)


main.add_command(keys_group)


if __name__ == "__main__":  # pragma: no cover
    main()
