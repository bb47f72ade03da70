"""`rlsctl report`: the compliance report for a security review (library: rlsctl/report/)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rlsctl.cli.options import handle_errors, load_project_option, options_dsn, options_project

if TYPE_CHECKING:
    from rlsctl.report import Report


@click.command(name="report")
@options_dsn
@options_project
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "html", "json"]),
    default="md",
    show_default=True,
    help="md: Markdown for a pull request; html: one self-contained file (prints on A4); "
    "json: the document rlsctl/report/report.schema.json describes.",
)
@click.option(
    "-o",
    "--output",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report to this file instead of stdout.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["fail", "warn", "never"]),
    default="never",
    show_default=True,
    help="Exit 1 when a control is at or above this status (never: always 0 once the report is written).",
)
@click.option(
    "--tests",
    "tests_file",
    metavar="FILE",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="The policy tests' result: a `rlsctl test --format json` file ('-': stdin), e.g. CI's artifact.",
)
@click.option(
    "--run-tests",
    is_flag=True,
    help="Run the policy tests now, in a transaction that is rolled back; it locks the fixture tables "
    "while it runs (docs/report.md).",
)
@handle_errors
def report_command(
    dsn: str | None,
    project: str | None,
    role_prefix: str | None,
    fmt: str,
    out_file: Path | None,
    fail_on: str,
    tests_file: str | None,
    run_tests: bool,
) -> None:
    """The compliance report of a live database: controls mapped to SOC 2 and ISO 27001, RLS, access,
    encryption, retention and audit, findings and drift, monitoring, server settings (docs/report.md)."""
    from rlsctl import report
    from rlsctl.cli import output
    from rlsctl.pg import db

    if tests_file is not None and run_tests:
        raise click.UsageError("give --tests FILE or --run-tests, not both")
    loaded = load_project_option(project, role_prefix)
    tests = None
    if tests_file is not None:
        named = "stdin" if tests_file == "-" else f"file {Path(tests_file).name}"
        tests = report.tests_from_json(_read(tests_file), f"--tests {tests_file}", named)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        built = report.build(conn, loaded, target.where, tests, run_tests)
    text = report.render(built, fmt)
    if out_file is None:
        click.echo(text, nl=False)
    else:
        output.write_file(out_file, text, "-o", say=False)
        output.info(f"wrote {out_file} ({built.status}: {_counts(built)})")
    sys.exit(report.exit_status(built, fail_on))


def _read(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise click.ClickException(f"--tests {path}: {reason}") from None


def _counts(built: Report) -> str:
    found = {status: sum(1 for c in built.controls if c.status == status) for status in ("fail", "warn", "pass")}
    return ", ".join(f"{count} {status}" for status, count in found.items() if count)
