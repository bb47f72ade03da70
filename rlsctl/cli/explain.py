"""`rlsctl explain`: parses its options, checks the declarations, plans, prints, exits.

The library and the printing (rich) are imported inside the command, so that listing the
commands (`rlsctl --help`) loads nothing but click.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rlsctl.cli.options import handle_errors, load_project_option, options_dsn, options_project


@click.command(name="explain")
@options_dsn
@options_project
@click.option("--query", "chosen_queries", multiple=True, metavar="NAME", help="Plan only this query (repeatable).")
@click.option(
    "--principal", "chosen_principals", multiple=True, metavar="NAME", help="Plan only as this principal (repeatable)."
)
@click.option(
    "--analyze", is_flag=True,
    help="EXPLAIN ANALYZE: run each statement (writes too) inside a transaction that is rolled back, and also "
    "compare execution times.",
)  # fmt: skip
@click.option(
    "--prepared", is_flag=True,
    help="Also plan each query under RLS as a prepared statement's generic plan (what a driver that prepares "
    "statements gets from the sixth execution); with --analyze, flag one much slower than the plan for the "
    "principal's own values.",
)  # fmt: skip
@click.option(
    "--max-cost-ratio", type=click.FloatRange(min=1.0), default=10.0, show_default=True, metavar="X",
    help="Flag a plan whose estimated total cost (with --analyze also its time) is more than X times the baseline's.",
)  # fmt: skip
@click.option(
    "--min-extra-cost", type=click.FloatRange(min=0.0), default=1000.0, show_default=True, metavar="C",
    help="Flag a costlier plan only when it is also at least C cost units above the baseline's: a few units "
    "more is a helper's fixed cost, not a bad plan.",
)  # fmt: skip
@click.option(
    "--min-extra-ms", type=click.FloatRange(min=0.0), default=1.0, show_default=True, metavar="MS",
    help="With --analyze, flag a slower execution (under RLS against the baseline, or a generic plan against "
    "the principal's own) only when it is also at least MS milliseconds longer: less is noise on a "
    "sub-millisecond query.",
)  # fmt: skip
@click.option(
    "--max-subplan-rows", type=click.IntRange(min=1), default=1000, show_default=True, metavar="N",
    help="Flag a per-row SubPlan a policy adds when it runs for at least N rows (estimated, or measured with "
    "--analyze); fewer are noted.",
)  # fmt: skip
@click.option("--plans", "show_plans", is_flag=True, help="Print the plans of flagged queries (JSON: every plan).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "-o", "--output", "out_file", type=click.Path(dir_okay=False, path_type=Path), help="Write the report to a file."
)
@handle_errors
def explain_command(
    dsn: str | None,
    project: str | None,
    role_prefix: str | None,
    chosen_queries: tuple[str, ...],
    chosen_principals: tuple[str, ...],
    analyze: bool,
    prepared: bool,
    max_cost_ratio: float,
    min_extra_cost: float,
    min_extra_ms: float,
    max_subplan_rows: int,
    show_plans: bool,
    fmt: str,
    out_file: Path | None,
) -> None:
    """Plan the project's representative queries as each principal; flag policies that spoil the plan.

    Each query of the policy files' `explain:` section runs with EXPLAIN as each of its principals
    under RLS, and as the connecting role (which must bypass RLS) with its hand-written filter.
    Flagged: a table read by a sequential scan under RLS but by an index in the baseline, a per-row
    SubPlan a policy adds, a plan much costlier than the baseline's; with --prepared --analyze, a
    generic plan much slower than the principal's own. Meant for a database with representative
    data and statistics; everything is rolled back.
    """
    from io import StringIO

    from rich.console import Console

    from rlsctl.cli import output
    from rlsctl.explain.declarations import declarations
    from rlsctl.explain.plans import Limits
    from rlsctl.explain.report import print_text, to_json
    from rlsctl.explain.run import explain
    from rlsctl.pg import db

    loaded = load_project_option(project, role_prefix)
    # The declarations are checked before connecting: a mistake never reaches the database.
    declarations(loaded, chosen_queries, chosen_principals)
    target = db.resolve_dsn(dsn)
    limits = Limits(max_cost_ratio, max_subplan_rows, min_extra_cost, min_extra_ms=min_extra_ms)
    with db.session(target) as conn:
        result = explain(
            conn, loaded, target.where, queries_chosen=chosen_queries, principals_chosen=chosen_principals,
            analyze=analyze, prepared=prepared, limits=limits, progress=output.progress,
        )  # fmt: skip
    if fmt == "json":
        text = to_json(result, show_plans)
    elif out_file is None:
        print_text(result, output.stdout, show_plans)
        text = None
    else:
        buffer = StringIO()
        print_text(result, Console(file=buffer, width=120, no_color=True, highlight=False), show_plans)
        text = buffer.getvalue()
    if text is not None:
        if out_file is None:
            click.echo(text, nl=False)
        else:
            output.write_file(out_file, text, "-o")
    sys.exit(1 if result.flagged else 0)
