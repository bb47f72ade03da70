"""The commands of `rlsctl` but `keys`: each parses its options, calls the library, prints, exits.

The library and the printing (rich) are imported inside each command, so that
listing the commands (`rlsctl --help`) loads nothing but click.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rlsctl.cli.options import (
    handle_errors,
    load_project_option,
    lock_timeout_option,
    options_dsn,
    options_project,
)

if TYPE_CHECKING:
    from rlsctl.lint.rule import Finding
    from rlsctl.policy.project import Project

_options_dsn = options_dsn
_options_project = options_project
_lock_timeout = lock_timeout_option
_project = load_project_option


@click.command()
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
    from rlsctl.cli import output

    loaded = _project(project, role_prefix)
    rendered = render_phases(loaded, phase)
    if out_dir is None:
        for number, script in rendered.items():
            if len(rendered) > 1:
                click.echo(f"-- ===== phase {number} =====")
            click.echo(script, nl=False)
        return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"-o {out_dir}: {exc.strerror or exc}") from None
    for number, script in rendered.items():
        output.write_file(out_dir / f"phase-{number}.sql", script, "-o")


@click.command()
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
    from rlsctl.cli import output
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


@click.command()
@_options_dsn
@_options_project
@click.option("--to", "to", type=click.IntRange(min=0), required=True, help="Phase to return to (it stays applied).")
@click.option("--dry-run", is_flag=True, help="Say what would be reverted and which data would go; change nothing.")
@click.option("--yes", is_flag=True, help="Drop tables and columns that hold data without asking.")
@click.option(
    "--backup-dir", type=click.Path(file_okay=False, path_type=Path), help="pg_dump (custom format) before reverting."
)
@click.option(
    "--audit-exported", is_flag=True, help="The audit log was exported by other means: let the rollback drop it."
)
@_lock_timeout
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def rollback(
    dsn: str | None,
    project: str | None,
    role_prefix: str | None,
    to: int,
    dry_run: bool,
    yes: bool,
    backup_dir: Path | None,
    audit_exported: bool,
    lock_timeout: float,
    fmt: str,
) -> None:
    """Revert phases after N in reverse order and re-secure the tables that remain.

    Tables and columns that hold data are dropped only when confirmed: on a terminal it asks,
    elsewhere it needs --yes. A table declared `audit_log: true` goes only after an export
    (--backup-dir, or --audit-exported once you dumped it yourself).
    """
    from rlsctl.cli import output
    from rlsctl.migrate import run as migrating
    from rlsctl.pg import db

    loaded = _project(project, role_prefix)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        report = migrating.rollback(
            conn, loaded, target.where, to=to, lock_timeout=lock_timeout, progress=output.progress,
            dry_run=dry_run, confirm=_confirm_losses(yes), backup_dir=backup_dir, target=target,
            audit_exported=audit_exported,
        )  # fmt: skip
    output.rollback_report(report, fmt)


def _confirm_losses(yes: bool) -> Any:
    """--yes confirms; a terminal asks; anything else (CI, a pipe) refuses: None."""
    if yes:
        return lambda losses: True
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None

    def ask(losses: list[Any]) -> bool:
        listed = "\n".join(f"  {loss}" for loss in losses)
        return click.confirm(f"the rollback drops data:\n{listed}\ncontinue?", default=False, err=True)

    return ask


@click.command(name="apply")
@_options_dsn
@_options_project
@click.option("--phase", type=click.IntRange(min=0), help="Manage only what migrations up to this phase create.")
@click.option("--dry-run", is_flag=True, help="Run everything in a transaction, then roll it back.")
# Apply's own lock options (docs/locking.md): short attempts, retried; the defaults are
# rlsctl.change.txn's ATTEMPT_SECONDS and TOTAL_SECONDS, not imported so --help stays light.
@click.option(
    "--lock-timeout", type=click.FloatRange(min=0.001), default=0.2, show_default=True, metavar="S",
    help="Seconds one attempt waits for a lock; the table's other users queue behind it meanwhile. "
    "A busy lock rolls the attempt back, and apply tries again after a growing pause.",
)  # fmt: skip
@click.option(
    "--lock-wait-total", type=click.FloatRange(min=0), default=60.0, show_default=True, metavar="S",
    help="Seconds to keep trying; then exit 2 with nothing changed, naming the sessions that held the lock.",
)  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def apply_command(
    dsn: str | None,
    project: str | None,
    role_prefix: str | None,
    phase: int | None,
    dry_run: bool,
    lock_timeout: float,
    lock_wait_total: float,
    fmt: str,
) -> None:
    """Bring roles, grants, RLS and helpers to the declared state, in one transaction."""
    from rlsctl.change import apply as applying
    from rlsctl.cli import output
    from rlsctl.pg import db

    loaded = _project(project, role_prefix)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        report = applying.apply(
            conn, loaded, target.where, phase=phase, dry_run=dry_run, lock_timeout=lock_timeout,
            lock_wait_total=lock_wait_total,
        )  # fmt: skip
    output.apply_report(report, fmt)


@click.command()
@_options_dsn
@_options_project
@click.option("--phase", type=click.IntRange(min=0), help="Manage only what migrations up to this phase create.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--dba-script", "dba_file", type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the SQL a DBA must run for what this session cannot do itself.",
)  # fmt: skip
@handle_errors
def plan(
    dsn: str | None, project: str | None, role_prefix: str | None, phase: int | None, fmt: str, dba_file: Path | None
) -> None:
    """Print the statements apply would run here, each labelled widens, narrows or neutral."""
    from rlsctl.change.dba import dba_script
    from rlsctl.change.drift import read_plan
    from rlsctl.cli import output
    from rlsctl.pg import db

    loaded = _project(project, role_prefix)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        found = read_plan(conn, loaded, target.where, phase)
    # The DBA's script first: a reader of the plan that goes away (`| head`) must not cost it.
    if dba_file is not None:
        output.write_file(dba_file, dba_script(found, target.where, loaded.root / "templates"), "--dba-script")
    output.plan_report(found, target.where, fmt)


@click.command()
@_options_dsn
@_options_project
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def drift(dsn: str | None, project: str | None, role_prefix: str | None, fmt: str) -> None:
    """Compare the live catalog with the declared state; exit 1 when anything differs."""
    from rlsctl.change.drift import read_plan
    from rlsctl.cli import output
    from rlsctl.pg import db

    loaded = _project(project, role_prefix)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        found = read_plan(conn, loaded, target.where, None)
    output.drift_report(found, target.where, fmt)
    sys.exit(1 if found.drift else 0)


@click.command()
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
@click.option(
    "--write-index-phase",
    is_flag=True,
    help="Write the indexes RLS010 asks for as a new migration phase (CREATE INDEX CONCURRENTLY, which apply "
    "cannot run: migrate runs it outside a transaction); prints its folder.",
)
@click.option(
    "--index-phase-name",
    metavar="NAME",
    default="policy_indexes",
    show_default=True,
    help="The name of that phase's folder (after its number).",
)
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
    write_index_phase: bool,
    index_phase_name: str,
) -> None:
    """Lint the project (or SQL FILES) offline; with --dsn or --live also a live database."""
    from contextlib import nullcontext

    from rlsctl.cli import output
    from rlsctl.errors import UsageError
    from rlsctl.lint import LintInputs
    from rlsctl.lint import lint as run_lint
    from rlsctl.lint.report import print_text, to_json, to_sarif
    from rlsctl.lint.runner import read_baseline
    from rlsctl.lint.runner import write_baseline as save_baseline
    from rlsctl.pg import db
    from rlsctl.policy.project import NO_PROJECT, find_project_dir

    connect = dsn is not None or live
    # FILES alone, or a live database outside any project: nothing else is linted.
    found = find_project_dir(project) if (not files or project) else None
    if found is None and not files and not connect:
        raise UsageError(NO_PROJECT.format(cwd=Path.cwd()))
    loaded = _project(str(found), role_prefix) if found is not None else None
    target = db.resolve_dsn(dsn) if connect else None
    with db.session(target) if target is not None else nullcontext() as conn:
        result = run_lint(
            LintInputs(project=loaded, files=list(files), conn=conn),
            select=_ids(select),
            ignore=_ids(ignore),
            baseline=read_baseline(baseline) if baseline else None,
        )
    if write_baseline is not None:
        recorded = save_baseline(write_baseline, result)
        output.info(f"wrote {write_baseline} ({recorded} findings)")
    if write_index_phase:
        _write_index_phase(loaded, result.findings, index_phase_name)
    if fmt == "text" and out_file is None:
        print_text(result, output.stdout, fail_on)
    else:
        if fmt == "json":
            text = to_json(result)
        elif fmt == "sarif":
            text = to_sarif(result)
        else:
            from io import StringIO

            from rich.console import Console

            buffer = StringIO()
            print_text(result, Console(file=buffer, width=120, no_color=True), fail_on)
            text = buffer.getvalue()
        if out_file is None:
            click.echo(text, nl=False)
        else:
            output.write_file(out_file, text, "-o")
    sys.exit(1 if result.at_or_above(fail_on) else 0)


def _write_index_phase(loaded: Project | None, findings: tuple[Finding, ...], name: str) -> None:
    from rlsctl.cli import output
    from rlsctl.errors import UsageError
    from rlsctl.lint.indexes import wanted_indexes, write_index_phase

    if loaded is None:
        raise UsageError("--write-index-phase writes into a project's migrations/: give --project")
    indexes = wanted_indexes(findings)
    if not indexes:
        output.info("no finding asks for an index (RLS010): no phase written")
        return
    folder = write_index_phase(loaded.root / "migrations", loaded.root / "templates", indexes, name)
    plural = "es" if len(indexes) != 1 else ""
    output.info(f"wrote {folder} ({len(indexes)} index{plural}): review it, then rlsctl migrate")


def _ids(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip().upper() for part in (value or "").split(",") if part.strip())


@click.command(name="test")
@_options_dsn
@_options_project
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "junit", "pgtap"]), default="text", show_default=True
)
@click.option(
    "-o", "--output", "out_file", type=click.Path(dir_okay=False, path_type=Path), help="Write the result to a file."
)
@click.option(
    "--table", "tables", multiple=True, metavar="TABLE", help="Test only this table's cells (repeatable)."
)
@click.option(
    "--policy-snapshot", is_flag=True, help="pgtap: also assert the current policies' names and roles (a snapshot)."
)
@click.option(
    "--diff", "base", metavar="BASE",
    help="Print only the cells whose outcome changed since BASE (a project directory or a git ref): "
    "Markdown for a pull request, or --format json.",
)  # fmt: skip
@handle_errors
def test_command(
    dsn: str | None,
    project: str | None,
    role_prefix: str | None,
    fmt: str,
    out_file: Path | None,
    tables: tuple[str, ...],
    policy_snapshot: bool,
    base: str | None,
) -> None:
    """Impersonate every principal on fixture data and check every cell (rolled back)."""
    from rlsctl.cli import output
    from rlsctl.pg import db
    from rlsctl.tester import report
    from rlsctl.tester.pgtap import to_pgtap
    from rlsctl.tester.run import run_matrix

    if policy_snapshot and fmt != "pgtap":
        raise click.UsageError("--policy-snapshot goes with --format pgtap")
    if base is not None and fmt not in ("text", "json"):
        raise click.UsageError("--diff prints Markdown (the default format) or --format json")
    loaded = _project(project, role_prefix)
    target = db.resolve_dsn(dsn)
    if base is not None:
        _test_diff(loaded, target, base, role_prefix, fmt, out_file)
        return
    with db.session(target) as conn, output.cells_progress() as progress:
        result = run_matrix(conn, loaded, target.where, progress=progress, tables=tables)
        # The pgTAP file is written from the expectations, whatever the database did just now.
        tap = to_pgtap(conn, loaded, result, tables, policy_snapshot) if fmt == "pgtap" else None
    if fmt == "text" and out_file is None:
        report.print_text(result, output.stdout)
    else:
        if tap is not None:
            text = tap
        elif fmt == "json":
            text = report.to_json(result)
        elif fmt == "junit":
            text = report.to_junit(result)
        else:
            from io import StringIO

            from rich.console import Console

            buffer = StringIO()
            report.print_text(result, Console(file=buffer, width=120, no_color=True))
            text = buffer.getvalue()
        if out_file is None:
            click.echo(text, nl=False)
        else:
            output.write_file(out_file, text, "-o")
    sys.exit(1 if result.failed else 0)


def _test_diff(loaded: Any, target: Any, base: str, role_prefix: str | None, fmt: str, out_file: Path | None) -> None:
    from rlsctl.cli import output
    from rlsctl.pg import db
    from rlsctl.tester.access_diff import access_diff, base_project, to_json, to_markdown

    with base_project(base, loaded, role_prefix) as based, db.session(target) as conn:
        diff = access_diff(conn, loaded, based, target.where, base, str(loaded.root))
    text = to_json(diff) if fmt == "json" else to_markdown(diff)
    if out_file is None:
        click.echo(text, nl=False)
    else:
        output.write_file(out_file, text, "-o")
    assert diff.head_result is not None
    sys.exit(1 if diff.head_result.failed else 0)


@click.command()
@_options_dsn
@_options_project
@click.option(
    "--profile", type=click.Choice(["ci", "long"]), default="ci", show_default=True,
    help="ci: the complete small world and 300 explored worlds; long: 5000, and longer shrinking.",
)  # fmt: skip
@click.option("--examples", type=click.IntRange(min=0), help="Explore this many generated worlds (default: profile's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the exploration: same seed, same worlds.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def verify(
    dsn: str | None, project: str | None, role_prefix: str | None, profile: str, examples: int | None, seed: int,
    fmt: str,
) -> None:  # fmt: skip
    """Check the invariants and expectations on generated worlds; print a failure's minimal world as SQL."""
    from rlsctl.cli import output
    from rlsctl.pg import db
    from rlsctl.tester import report
    from rlsctl.tester.verify import PROFILES
    from rlsctl.tester.verify import verify as run_verify

    loaded = _project(project, role_prefix)
    target = db.resolve_dsn(dsn)
    settings = PROFILES[profile]
    with db.session(target) as conn:
        result = run_verify(
            conn, loaded, target.where, examples=examples if examples is not None else int(settings["examples"]),
            seed=seed, shrink_seconds=float(settings["shrink_seconds"]), progress=output.progress,
        )  # fmt: skip
    if fmt == "json":
        click.echo(report.verify_json(result), nl=False)
    else:
        report.print_verify(result, output.stdout)
    sys.exit(1 if result.failed else 0)


@click.command()
@click.option("--dsn", metavar="DSN", help="Use a temporary database on this server instead of a throw-away cluster.")
@_options_project
@handle_errors
def demo(dsn: str | None, project: str | None, role_prefix: str | None) -> None:
    """The whole flow (migrate -> apply -> test per phase) on a throw-away PostgreSQL.

    Stopped midway (Ctrl-C, SIGTERM, SIGHUP), it still stops the throw-away server
    and deletes its files, or drops its temporary database and roles.
    """
    from rlsctl.cli import output
    from rlsctl.cli.demo import run_demo

    loaded = _project(project, role_prefix, bundled=True)
    result = run_demo(loaded, dsn, output.progress, role_prefix)
    output.demo_report(result)
    sys.exit(0 if result.ok else 1)
