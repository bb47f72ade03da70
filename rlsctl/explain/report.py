"""rlsctl explain's results, for people (text) and for CI (JSON)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape

from rlsctl.explain.plans import Plan, outline
from rlsctl.explain.run import ExplainResult, Pair


def print_text(result: ExplainResult, console: Console, plans: bool = False) -> None:
    mode = "EXPLAIN ANALYZE (rolled back)" if result.analyze else "EXPLAIN"
    counted = f"{len(result.pairs)} plan{'' if len(result.pairs) == 1 else 's'}"
    console.print(f"rlsctl explain on {escape(result.where)}: {counted} under RLS, each against its baseline ({mode})")
    console.print("principals:")
    for acting in result.principals:
        console.print(f"  {escape(acting.name)}: {escape(acting.describe())}")
    for pair in result.pairs:
        _pair(console, pair, plans)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    flagged = len(result.flagged)
    if flagged:
        console.print(f"[bold red]{flagged} of {counted} flagged[/]")
    else:
        limits = result.limits
        console.print(
            f"[green]no plan flagged[/] (--max-cost-ratio {limits.max_cost_ratio:g}, --min-extra-cost "
            f"{limits.min_extra_cost:g}, --min-extra-ms {limits.min_extra_ms:g}, --max-subplan-rows "
            f"{limits.max_subplan_rows})"
        )


def _pair(console: Console, pair: Pair, plans: bool) -> None:
    status = "[bold red]FLAGGED[/]" if pair.flagged else "[green]ok[/]"
    console.print(
        f"{status} {escape(pair.query)} as {escape(pair.principal)}  [dim]cost {_cost(pair.rls)} against "
        f"{_cost(pair.baseline)}, rows {pair.rls.rows:,.0f} against {pair.baseline.rows:,.0f}"
        f"{_times(pair)} ({escape(pair.where)})[/]"
    )
    for finding in pair.findings:
        console.print(f"    [red]{finding.check}:[/] {escape(finding.message)}")
        if finding.policies:
            console.print(f"      [dim]policies: {escape(', '.join(finding.policies))}[/]")
    for note in pair.notes:
        console.print(f"    [dim]{escape(note)}[/]")
    if pair.generic is not None:
        console.print(f"    [dim]prepared (generic plan): cost {_cost(pair.generic)}{_time(pair.generic)}[/]")
    if plans and pair.flagged:
        shown = [("under RLS", pair.rls), ("baseline", pair.baseline)]
        if pair.generic is not None:
            shown.append(("prepared under RLS (generic)", pair.generic))
        for label, plan in shown:
            console.print(f"    [dim]plan {label}:[/]")
            for line in outline(plan):
                console.print(f"      {escape(line)}", highlight=False)


def _cost(plan: Plan) -> str:
    return f"{plan.total_cost:,.2f}"


def _time(plan: Plan) -> str:
    return "" if plan.execution_ms is None else f", {plan.execution_ms:,.3f} ms"


def _times(pair: Pair) -> str:
    rls, base = pair.rls, pair.baseline
    if rls.execution_ms is None or base.execution_ms is None:
        return ""
    return (
        f", {rls.execution_ms:,.3f} ms against {base.execution_ms:,.3f} ms, "
        f"actual rows {rls.actual_rows or 0:,.0f} against {base.actual_rows or 0:,.0f}"
    )


def to_json(result: ExplainResult, plans: bool = False) -> str:
    data = {
        "database": result.where,
        "analyze": result.analyze,
        "prepared": result.prepared,
        "max_cost_ratio": result.limits.max_cost_ratio,
        "max_subplan_rows": result.limits.max_subplan_rows,
        "min_extra_cost": result.limits.min_extra_cost,
        "min_extra_ms": result.limits.min_extra_ms,
        "flagged": len(result.flagged),
        "plans": len(result.pairs),
        "principals": [
            {
                "name": acting.name,
                "role": acting.role,
                "user_id": _text(acting.user_id),
                "tenant": _text(acting.tenant),
                "tenant_members": acting.members,
                "rank": acting.rank,
                "api_key_scopes": list(acting.api_scopes) if acting.api_scopes is not None else None,
            }
            for acting in result.principals
        ],
        "results": [_pair_json(pair, plans) for pair in result.pairs],
        "tables": [
            {"table": table.name, "rows_estimate": table.rows, "analyzed": _text(table.analyzed), "note": table.note}
            for table in result.tables
        ],
        "notes": list(result.notes),
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _pair_json(pair: Pair, plans: bool) -> dict[str, Any]:
    return {
        "query": pair.query,
        "principal": pair.principal,
        "where": pair.where,
        "flagged": pair.flagged,
        "rls": _plan_json(pair.rls, plans),
        "baseline": _plan_json(pair.baseline, plans),
        "generic": _plan_json(pair.generic, plans) if pair.generic is not None else None,
        "cost_ratio": round(pair.rls.total_cost / max(pair.baseline.total_cost, 1.0), 3),
        "findings": [
            {"check": f.check, "table": f.table, "message": f.message, "policies": list(f.policies)}
            for f in pair.findings
        ],
        "notes": list(pair.notes),
    }


def _plan_json(plan: Plan, plans: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"total_cost": plan.total_cost, "rows_estimate": plan.rows}
    if plan.execution_ms is not None:
        data["execution_ms"] = plan.execution_ms
        data["actual_rows"] = plan.actual_rows
    if plans:
        data["plan"] = plan.tree
    return data


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
