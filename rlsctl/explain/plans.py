"""Reading EXPLAIN (FORMAT JSON) plans, and the checks that compare a plan under RLS with the
baseline's (the same query with the hand-written filter, run by a role that bypasses RLS).

- **seq_scan**: a table the baseline reads through an index is read by a sequential scan under RLS
  (not one the planner thinks has fewer than `min_table_rows` rows: scanning those is its best choice).
- **subplan**: a SubPlan the baseline does not have runs once per row (an InitPlan runs once per
  statement, a hashed SubPlan once before a hash lookup per row: neither counts), for at least
  `max_subplan_rows` rows: actual loops with ANALYZE, else an estimate of the rows its filter
  reads (`_considered`).
- **cost**: the plan's total cost is more than `max_cost_ratio` times the baseline's and at
  least `min_extra_cost` more (a few cost units more is a helper's fixed cost, not a bad plan:
  the benchmark's "within 0.05 ms of the baseline counts as 1.0", in the planner's units).
- **time** (ANALYZE only): its execution time is more than `max_cost_ratio` times the
  baseline's, and at least `min_extra_ms` more.
- **generic_plan** (`--prepared` with ANALYZE): the generic plan a prepared statement settles on
  runs more than `max_cost_ratio` times as long as the plan made for the principal's own values,
  and at least `min_extra_ms` more. Without ANALYZE a generic plan that reads a table another way
  than the principal's plan is a note: its estimated cost is for average values, so comparing it
  says nothing about this principal.

Estimated costs are the planner's opinion, not a measurement: a policy whose InitPlan values the
planner cannot see may look cheap and run slowly (docs/performance.md). ANALYZE measures.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

INDEX_SCANS = ("Index Scan", "Index Only Scan", "Bitmap Heap Scan")
SEQ_SCAN = "Seq Scan"
SUBPLAN_SELECTIVITY = 0.5  # PostgreSQL's guess for a SubPlan clause (clause_selectivity)
FILTER_KEYS = ("Filter", "Join Filter", "One-Time Filter", "Recheck Cond", "Index Cond", "Hash Cond", "Merge Cond")


@dataclass(frozen=True)
class Plan:
    """One EXPLAIN result."""

    tree: dict[str, Any]  # the top plan node
    total_cost: float
    rows: float  # the planner's row estimate for the whole statement
    execution_ms: float | None = None  # EXPLAIN ANALYZE only
    actual_rows: float | None = None

    @classmethod
    def from_json(cls, data: Any) -> Plan:
        top = data[0] if isinstance(data, list) else data
        tree = top["Plan"]
        return cls(
            tree, float(tree["Total Cost"]), float(tree["Plan Rows"]), top.get("Execution Time"),
            tree.get("Actual Rows"),
        )  # fmt: skip


@dataclass(frozen=True)
class SubPlan:
    name: str  # "SubPlan 3"
    filters: str | None  # the table whose rows it runs for (None: not a scan's expression)
    reads: tuple[str, ...]  # the tables it reads
    rows: float  # how often it runs: actual loops, or the estimate (see the module's docstring)
    measured: bool

    @property
    def signature(self) -> tuple[str | None, tuple[str, ...]]:
        return self.filters, self.reads

    def describe(self) -> str:
        reads = f" reading {', '.join(self.reads)}" if self.reads else ""
        rows = f"{self.rows:,.0f} times" if self.measured else f"about {self.rows:,.0f} times (estimated)"
        on = f" for the rows of {self.filters}" if self.filters else ""
        return f"{self.name}{reads} runs{on}, {rows}"


@dataclass(frozen=True)
class Finding:
    check: str  # seq_scan | subplan | cost | time | generic_plan
    message: str
    table: str | None = None
    # The principal's policies behind it: on `table`, or on every table the plan reads ("Table.policy").
    policies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limits:
    max_cost_ratio: float = 10.0
    max_subplan_rows: int = 1000
    min_extra_cost: float = 1000.0  # about a few milliseconds of work: a page read is 1, a row filtered 0.01
    min_table_rows: int = 1000  # below this a sequential scan is the planner's best choice, not a lost index
    min_extra_ms: float = 1.0  # below this, a slower execution is noise on a sub-millisecond query


def nodes(tree: dict[str, Any], parent: dict[str, Any] | None = None) -> Iterator[tuple[dict[str, Any], Any]]:
    """Every node with its parent, depth first."""
    yield tree, parent
    for child in tree.get("Plans", ()):
        yield from nodes(child, tree)


def relations(tree: dict[str, Any]) -> set[str]:
    return {node["Relation Name"] for node, _ in nodes(tree) if "Relation Name" in node}


def access(tree: dict[str, Any]) -> dict[str, dict[str, set[str]]]:
    """table -> {"seq": {...}, "index": {index names}}: how a plan reads each table."""
    found: dict[str, dict[str, set[str]]] = {}
    for node, _ in nodes(tree):
        table = node.get("Relation Name")
        kind = node.get("Node Type")
        if table is None or kind not in (SEQ_SCAN, *INDEX_SCANS):
            continue
        ways = found.setdefault(table, {"seq": set(), "index": set()})
        if kind == SEQ_SCAN:
            ways["seq"].add(table)
        else:
            ways["index"] |= _index_names(node)
    return found


def _index_names(node: dict[str, Any]) -> set[str]:
    """The index a scan uses (a bitmap heap scan's come from its bitmap index scans)."""
    return {n["Index Name"] for n, _ in nodes(node) if "Index Name" in n}


def subplans(plan: Plan, sizes: dict[str, int] | None = None) -> list[SubPlan]:
    """The per-row SubPlans of a plan: not InitPlans, not hashed SubPlans. `sizes`: the planner's
    row estimate of each table (how many rows a sequential scan filters)."""
    runs = executions(plan.tree, sizes or {})
    found: list[SubPlan] = []
    for node, parent in nodes(plan.tree):
        name = node.get("Subplan Name") or ""
        if node.get("Parent Relationship") != "SubPlan" or not name.startswith("SubPlan") or parent is None:
            continue
        if _hashed(node, parent):
            continue
        measured = "Actual Loops" in node
        rows = float(node["Actual Loops"]) if measured else runs[id(node)]
        found.append(SubPlan(name, parent.get("Relation Name"), tuple(sorted(relations(node))), rows, measured))
    return found


def executions(tree: dict[str, Any], sizes: dict[str, int]) -> dict[int, float]:
    """id(node) -> how many times the planner expects the node to run: the inner side of a nested
    loop once per outer row, a SubPlan once per row its parent considers, everything else as often
    as its parent."""
    found: dict[int, float] = {}

    def visit(node: dict[str, Any], loops: float) -> None:
        found[id(node)] = loops
        children = node.get("Plans", ())
        outer = next((c for c in children if c.get("Parent Relationship") == "Outer"), None)
        for child in children:
            relation = child.get("Parent Relationship")
            if relation == "SubPlan" and _hashed(child, node):
                visit(child, 1.0)  # uncorrelated: its rows are read once, into the hash table
            elif relation == "SubPlan":
                visit(child, loops * _considered(child, node, sizes))
            elif relation == "InitPlan":
                visit(child, 1.0)
            elif relation == "Inner" and node.get("Node Type") == "Nested Loop" and outer is not None:
                visit(child, loops * max(float(outer.get("Plan Rows", 1)), 1.0))
            else:
                visit(child, loops)

    visit(tree, 1.0)
    return found


def _considered(subplan: dict[str, Any], parent: dict[str, Any], sizes: dict[str, int]) -> float:
    """Rows of its parent a SubPlan runs for, per execution of the parent. In a filter: the rows the
    filter reads, which EXPLAIN does not print; a sequential scan reads the whole table, a bitmap
    heap scan what its bitmap finds (its BitmapAnd, BitmapOr or one index scan); elsewhere the rows
    that pass, doubled (PostgreSQL's guess that half the rows pass a SubPlan)."""
    rows = float(parent.get("Plan Rows", 0))
    name = re.escape(subplan.get("Subplan Name", ""))
    if not any(re.search(rf"\b{name}\b", str(parent.get(key, ""))) for key in FILTER_KEYS):
        return rows  # in the target list: once per row returned
    kind = parent.get("Node Type")
    if kind == SEQ_SCAN and parent.get("Relation Name") in sizes:
        return float(max(sizes[parent["Relation Name"]], 0))
    if kind == "Bitmap Heap Scan":
        # The bitmap's own estimate: a BitmapAnd's is its narrowest index scan's or less, a
        # BitmapOr's their sum; any one index scan under them says nothing alone.
        bitmap = next((c for c in parent.get("Plans", ()) if c.get("Parent Relationship") == "Outer"), None)
        if bitmap is not None:
            return float(bitmap.get("Plan Rows", 0))
    passing = rows / SUBPLAN_SELECTIVITY
    table = parent.get("Relation Name")
    # Never more rows than the table has: a guess of half passing is no reason to read more.
    return min(passing, float(sizes[table])) if table in sizes else passing


def _hashed(subplan: dict[str, Any], parent: dict[str, Any]) -> bool:
    """A hashed SubPlan: run once into a hash table, then probed per row."""
    return _mentions(parent, rf"hashed {re.escape(subplan.get('Subplan Name') or '')}\b")


def _mentions(node: dict[str, Any], pattern: str) -> bool:
    return any(isinstance(value, str) and re.search(pattern, value) for value in node.values()) or any(
        isinstance(value, list) and any(isinstance(item, str) and re.search(pattern, item) for item in value)
        for value in node.values()
    )


def compare(
    rls: Plan, baseline: Plan, limits: Limits, anonymous: bool = False, sizes: dict[str, int] | None = None
) -> tuple[list[Finding], list[str]]:
    """What flags the plan under RLS against the baseline's, and notes that do not. For a session
    without identity (`anonymous`) estimated costs are not compared: the baseline filters on a
    NULL user, which the planner folds to (almost) nothing, while the policies' InitPlans are
    unknown to it, so the ratio says nothing either way; ANALYZE's times still count. `sizes`: the
    planner's row estimate of each table."""
    findings: list[Finding] = []
    notes: list[str] = []
    findings += _seq_scans(rls, baseline, limits, sizes or {})
    found, below = _subplans(rls, baseline, limits, sizes or {})
    findings += found
    notes += below
    timed = _time(rls, baseline, limits)
    measured = rls.execution_ms is not None and baseline.execution_ms is not None
    if anonymous:
        notes.append("no identity: estimated costs not compared (--analyze compares times)")
    elif measured and not timed:
        # A measurement outranks an estimate: a costlier-looking plan that runs in time is a note.
        notes += [f"{finding.message}, but it ran within the limits" for finding in _cost(rls, baseline, limits)]
    else:
        findings += _cost(rls, baseline, limits)
        notes += _cost_below_floor(rls, baseline, limits)
    findings += timed
    if rls.actual_rows is not None and baseline.actual_rows is not None and rls.actual_rows != baseline.actual_rows:
        notes.append(
            f"returned {rls.actual_rows:,.0f} rows under RLS, {baseline.actual_rows:,.0f} in the baseline: "
            "is the hand-written filter the same as the policies?"
        )
    return findings, notes


def _seq_scans(rls: Plan, baseline: Plan, limits: Limits, sizes: dict[str, int]) -> list[Finding]:
    under, base = access(rls.tree), access(baseline.tree)
    found: list[Finding] = []
    for table in sorted(under):
        if not under[table]["seq"] or table not in base or base[table]["seq"] or not base[table]["index"]:
            continue
        if sizes.get(table, limits.min_table_rows) < limits.min_table_rows:
            continue  # the planner scans a small table whole on purpose
        indexes = ", ".join(sorted(base[table]["index"]))
        found.append(
            Finding(
                "seq_scan",
                f"{table} is read by a sequential scan under RLS; the baseline reads it through {indexes}",
                table,
            )
        )
    return found


def _subplans(rls: Plan, baseline: Plan, limits: Limits, sizes: dict[str, int]) -> tuple[list[Finding], list[str]]:
    known = {subplan.signature for subplan in subplans(baseline, sizes)}
    found: list[Finding] = []
    below: list[str] = []
    for subplan in subplans(rls, sizes):
        if subplan.signature in known:
            continue
        if subplan.rows >= limits.max_subplan_rows:
            found.append(
                Finding(
                    "subplan",
                    f"a policy adds a per-row {subplan.describe()} (--max-subplan-rows {limits.max_subplan_rows})",
                    subplan.filters,
                )
            )
        else:
            below.append(f"a policy adds a per-row {subplan.describe()}: below --max-subplan-rows")
    return found, below


def ratio(value: float, base: float, floor: float) -> float:
    return value / max(base, floor)


def _cost(rls: Plan, baseline: Plan, limits: Limits) -> list[Finding]:
    # A baseline the planner folds to nothing (a filter on a NULL identity) costs about 0: a floor
    # of one cost unit keeps the ratio finite without hiding a plan that reads a real table.
    times = ratio(rls.total_cost, baseline.total_cost, 1.0)
    if times <= limits.max_cost_ratio or rls.total_cost - baseline.total_cost < limits.min_extra_cost:
        return []
    return [
        Finding(
            "cost",
            f"estimated cost {rls.total_cost:,.2f} under RLS against {baseline.total_cost:,.2f} for the baseline "
            f"(x{times:,.1f}, above --max-cost-ratio {limits.max_cost_ratio:g}, "
            f"{rls.total_cost - baseline.total_cost:,.0f} more)",
        )
    ]


def _cost_below_floor(rls: Plan, baseline: Plan, limits: Limits) -> list[str]:
    """A ratio above the limit that only --min-extra-cost lets pass: said, as a cheap plan that
    the planner underestimates (a LIMIT over a hashed SubPlan) can run far longer than it costs."""
    times = ratio(rls.total_cost, baseline.total_cost, 1.0)
    extra = rls.total_cost - baseline.total_cost
    if times <= limits.max_cost_ratio or extra >= limits.min_extra_cost:
        return []
    return [
        f"estimated cost x{times:,.1f} the baseline's ({rls.total_cost:,.2f} against {baseline.total_cost:,.2f}), "
        f"but only {extra:,.0f} more, below --min-extra-cost {limits.min_extra_cost:g}: not flagged "
        "(--analyze measures it)"
    ]


def _time(rls: Plan, baseline: Plan, limits: Limits) -> list[Finding]:
    if rls.execution_ms is None or baseline.execution_ms is None:
        return []
    times = ratio(rls.execution_ms, baseline.execution_ms, 0.001)
    if times <= limits.max_cost_ratio or rls.execution_ms - baseline.execution_ms < limits.min_extra_ms:
        return []
    return [
        Finding(
            "time",
            f"ran {rls.execution_ms:,.3f} ms under RLS against {baseline.execution_ms:,.3f} ms for the baseline "
            f"(x{times:,.1f}, above --max-cost-ratio {limits.max_cost_ratio:g})",
        )
    ]


def compare_generic(custom: Plan, generic: Plan, limits: Limits) -> tuple[list[Finding], list[str]]:
    """The generic plan under RLS against the plan for the principal's own values (both under RLS)."""
    if custom.execution_ms is not None and generic.execution_ms is not None:
        times = ratio(generic.execution_ms, custom.execution_ms, 0.001)
        if times > limits.max_cost_ratio and generic.execution_ms - custom.execution_ms >= limits.min_extra_ms:
            return [
                Finding(
                    "generic_plan",
                    f"prepared, its generic plan ran {generic.execution_ms:,.3f} ms against "
                    f"{custom.execution_ms:,.3f} ms for a plan made for this principal's values "
                    f"(x{times:,.1f}, above --max-cost-ratio {limits.max_cost_ratio:g}): a driver that prepares "
                    "it gets that plan from the sixth execution when it looks no costlier (docs/performance.md, "
                    "the generic plan trap)",
                )
            ], []
        return [], []
    mine, theirs = access(custom.tree), access(generic.tree)
    differ = sorted(table for table in mine.keys() | theirs.keys() if mine.get(table) != theirs.get(table))
    if not differ:
        return [], []
    return [], [
        f"prepared, its generic plan reads {', '.join(differ)} another way than the plan for this principal's "
        "values: time both with --analyze --prepared"
    ]


def outline(plan: Plan) -> list[str]:
    """The plan as indented lines (node, table, index, filter, estimates), for people."""
    lines: list[str] = []

    def visit(node: dict[str, Any], depth: int) -> None:
        label = node.get("Subplan Name") or node["Node Type"]
        if node.get("Subplan Name"):
            label = f"{node['Subplan Name']}: {node['Node Type']}"
        if "Relation Name" in node:
            label += f" on {node['Relation Name']}"
        if "Index Name" in node:
            label += f" using {node['Index Name']}"
        label += f"  (cost {node['Total Cost']:,.2f}, rows {node['Plan Rows']:,.0f}"
        if "Actual Loops" in node:
            label += f"; actual rows {node.get('Actual Rows', 0):,.0f}, loops {node['Actual Loops']:,.0f}"
        lines.append("  " * depth + label + ")")
        for key in ("Index Cond", "Recheck Cond", "Filter", "Join Filter", "One-Time Filter"):
            if key in node:
                lines.append("  " * depth + f"    {key}: {node[key]}")
        for child in node.get("Plans", ()):
            visit(child, depth + 1)

    visit(plan.tree, 0)
    return lines
