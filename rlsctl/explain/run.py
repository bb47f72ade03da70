"""`rlsctl explain`: the project's representative queries, planned as each declared principal
under RLS and, with the hand-written filter, by the connecting role (which bypasses RLS); the
plans compared (rlsctl/explain/plans.py).

Everything happens in one transaction that is always rolled back, each plan in a savepoint of
its own: the API keys principals present are created there, and with ANALYZE the statements run
there, writes included, and are undone with it. The checks only mean something on a database
with representative data and statistics (staging, a benchmark load): on a near-empty table
every plan is a sequential scan, so the run notes every table the planner thinks has fewer than
FEW_ROWS rows, or that was never analyzed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg import pq

from rlsctl.errors import UsageError
from rlsctl.explain import queries
from rlsctl.explain.declarations import Declared, Param, Query, declarations
from rlsctl.explain.declarations import where as declared_at
from rlsctl.explain.plans import Finding, Limits, Plan, compare, compare_generic, relations
from rlsctl.explain.principals import Acting, become, find
from rlsctl.explain.statement import Statement
from rlsctl.pg import sql, statements
from rlsctl.policy.project import Project

FEW_ROWS = Limits().min_table_rows  # below this the planner's choices say little about production
STATEMENT_TIMEOUT = "60s"
# With ANALYZE each statement runs this many times and the fastest run counts: the first run of
# a session pays for caches (catalog, PL/pgSQL, buffers) that the application has long warmed.
ANALYZE_RUNS = 3
PREPARED_PREFIX = "rlsctl_explain_generic_"  # --prepared's statements, each deallocated after its plan
_PREPARED_COUNT = itertools.count(1)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Pair:
    """One query as one principal: both plans and what they showed."""

    query: str
    principal: str
    where: str  # file:line of the query's declaration
    rls: Plan
    baseline: Plan
    findings: tuple[Finding, ...]
    notes: tuple[str, ...]
    generic: Plan | None = None  # with --prepared: the generic plan under RLS, as this principal

    @property
    def flagged(self) -> bool:
        return bool(self.findings)


@dataclass(frozen=True)
class TableStats:
    name: str
    rows: int  # the planner's estimate; -1: never analyzed or vacuumed
    analyzed: Any  # the last ANALYZE (manual or automatic), None: never

    @property
    def note(self) -> str | None:
        if self.analyzed is None and self.rows < 0:
            return f"{self.name} was never analyzed: the planner has no statistics for it"
        if self.rows < FEW_ROWS:
            return f"{self.name} has about {max(self.rows, 0)} rows: plans on so few rows say little about production"
        return None


@dataclass(frozen=True)
class ExplainResult:
    where: str
    analyze: bool
    limits: Limits
    principals: tuple[Acting, ...]
    pairs: tuple[Pair, ...]
    tables: tuple[TableStats, ...]
    prepared: bool = False  # generic plans planned too

    @property
    def flagged(self) -> tuple[Pair, ...]:
        return tuple(pair for pair in self.pairs if pair.flagged)

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(note for table in self.tables if (note := table.note) is not None)


def explain(
    conn: psycopg.Connection,
    project: Project,
    where: str,
    *,
    queries_chosen: Collection[str] = (),
    principals_chosen: Collection[str] = (),
    analyze: bool = False,
    prepared: bool = False,
    limits: Limits | None = None,
    progress: Progress | None = None,
) -> ExplainResult:
    """Plan every declared query as each of its principals and compare with its baseline; with
    `prepared`, also plan it under RLS as a prepared statement's generic plan."""
    declared = declarations(project, queries_chosen, principals_chosen)
    limits = limits or Limits()
    wanted = [name for name in declared.principals if any(name in q.principals for q in declared.queries)]
    _check_tables(conn, project, where)
    _check_roles(conn, project, declared, wanted)
    pairs: list[Pair] = []
    with conn.transaction(force_rollback=True):
        path = ", ".join(("pg_catalog", sql.ident(project.schema_name), "pg_temp"))
        queries.run(conn, "settings", timeout=STATEMENT_TIMEOUT, search_path=path)
        acting = {name: _find(conn, project, name, declared) for name in wanted}
        stats = _stats(conn, project)
        sizes = {table.name: table.rows for table in stats}
        total = sum(len(query.principals) for query in declared.queries)
        if progress is not None:
            mode = "EXPLAIN ANALYZE, rolled back" if analyze else "EXPLAIN"
            count = len(declared.queries)
            what = "query" if count == 1 else "queries"
            progress(f"planning {count} {what} as their principals: {total} plans and their baselines ({mode})")
        for query in declared.queries:
            for name in query.principals:
                pairs.append(_pair(conn, project, query, acting[name], analyze, limits, sizes, prepared))
    read = {name for pair in pairs for plan in (pair.rls, pair.baseline) for name in relations(plan.tree)}
    tables = tuple(table for table in stats if table.name in read)
    return ExplainResult(where, analyze, limits, tuple(acting.values()), tuple(pairs), tables, prepared)


def _check_tables(conn: psycopg.Connection, project: Project, where: str) -> None:
    """The database is the project's: a wrong --dsn (or none: libpq's default database) is one
    message naming it, not a missing relation in the first statement that reads one. Some tables
    may be missing (a project's later phases not migrated yet): a query reading one says so."""
    missing = [row["name"] for row in queries.run(conn, "missing_tables", tables=sorted(project.tables),
                                                  schema=project.schema_name)]  # fmt: skip
    if project.tables and len(missing) == len(project.tables):
        raise UsageError(
            f"{where} has none of the project's tables in schema {project.schema_name} ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}): is it the project's database? (--dsn, DATABASE_URL; "
            "`rlsctl migrate` creates them)"
        )


def _check_roles(conn: psycopg.Connection, project: Project, declared: Declared, wanted: list[str]) -> None:
    """The baselines' role must bypass RLS; the principals' roles must exist and must not."""
    rows = queries.run(conn, "connecting_role")
    me = rows[0] if rows else {"role": "?", "superuser": False, "bypassrls": False}
    if not (me["superuser"] or me["bypassrls"]):
        raise UsageError(
            f"the baselines run as the connecting role {me['role']}, which must bypass RLS (SUPERUSER or "
            "BYPASSRLS): connect as the database's administrator"
        )
    roles = sorted({project.role_name(declared.principals[name].role) for name in wanted})
    found = statements.run(conn, "role_risks", schema=project.schema_name, tables=sorted(project.tables), roles=roles)
    for row in found:
        if row["superuser"] or row["bypassrls"]:
            raise UsageError(f"refusing to explain as {row['role']}: it bypasses RLS, so no policy would be planned")
        if row["owns_unforced"]:
            raise UsageError(
                f"refusing to explain as {row['role']}: it owns {row['owns_unforced'][0]}, whose RLS is not forced, "
                "so its policies would not be planned"
            )
    missing = sorted(set(roles) - {row["role"] for row in found})
    if missing:
        raise UsageError(f"role {missing[0]} does not exist: run `rlsctl apply` first")


def _find(conn: psycopg.Connection, project: Project, name: str, declared: Declared) -> Acting:
    try:
        with conn.transaction(force_rollback=True):
            queries.run(conn, "bypass")
            return find(conn, project, name, declared.principals[name])
    except psycopg.Error as exc:
        raise UsageError(f"{declared_at(project, 'principals', name)}: principal {name!r}: {_first(exc)}") from None


def _pair(
    conn: psycopg.Connection,
    project: Project,
    query: Query,
    acting: Acting,
    analyze: bool,
    limits: Limits,
    sizes: dict[str, int],
    prepared: bool = False,
) -> Pair:
    """Both plans of one query for one principal, each in its own rolled-back savepoint (and with
    `prepared` the generic plan under RLS)."""
    with conn.transaction(force_rollback=True):
        queries.run(conn, "bypass")
        params = _params(conn, query, acting)
        baseline = _plan(conn, query, acting, "baseline", query.baseline, params, analyze)
    with conn.transaction(force_rollback=True):
        try:
            with conn.transaction():
                become(conn, project, acting)
        except psycopg.Error as exc:
            raise UsageError(f"{query.where}: query {query.name}: becoming {acting.name}: {_first(exc)}") from None
        rls = _plan(conn, query, acting, "sql", query.sql, params, analyze)
        generic = _generic_plan(conn, query, acting, params, analyze) if prepared else None
    findings, notes = compare(rls, baseline, limits, acting.anonymous, sizes)
    if generic is not None:
        found, noted = compare_generic(rls, generic, limits)
        findings += found
        notes += noted
    if findings:
        findings = _with_policies(conn, project, query, acting, rls, findings)
    return Pair(query.name, acting.name, query.where, rls, baseline, tuple(findings), tuple(notes), generic)


# pg_policy.polcmd of each command's own policies; SELECT policies apply to writes too (the rows an
# UPDATE or DELETE reads, what RETURNING shows), and FOR ALL ones to every command.
_POLICY_COMMANDS = {"SELECT": "r", "INSERT": "a", "UPDATE": "w", "DELETE": "d"}


def _with_policies(
    conn: psycopg.Connection, project: Project, query: Query, acting: Acting, rls: Plan, findings: list[Finding]
) -> list[Finding]:
    """Each finding with the principal's policies behind it: those of its table, or of every table
    the plan reads (a cost or a time is the whole plan's), so CI can name what to change."""
    commands = sorted({"*", "r", _POLICY_COMMANDS[query.sql.command]})
    read = sorted(relations(rls.tree))
    rows = queries.run(
        conn, "policies_of", schema=project.schema_name, tables=read, commands=commands, role=acting.role
    )
    named: dict[str, list[str]] = {}
    for row in rows:
        named.setdefault(row["table_name"], []).append(f"{row['table_name']}.{row['policy']}")
    return [
        replace(
            finding,
            policies=tuple(
                name for table in ([finding.table] if finding.table else read) for name in named.get(table, ())
            ),
        )
        for finding in findings
    ]


def _params(conn: psycopg.Connection, query: Query, acting: Acting) -> dict[str, Any]:
    """The built-in parameters, then each declared one in order (it may use those before it)."""
    values = dict(acting.params)
    for param in query.params:
        values[param.name] = _param(conn, query, acting, param, values)
    return values


def _param(conn: psycopg.Connection, query: Query, acting: Acting, param: Param, values: dict[str, Any]) -> Any:
    try:
        with conn.transaction(), psycopg.RawCursor(conn) as cursor:
            queries.run(conn, "literal_quoting")
            cursor.execute(param.statement.text.encode(), param.statement.values(values))
            row = cursor.fetchone()
    except psycopg.Error as exc:
        raise UsageError(
            f"{param.where}: parameter {param.name!r} (query {query.name}, principal {acting.name}): {_first(exc)}"
        ) from None
    return row[0] if row else None


def _plan(
    conn: psycopg.Connection,
    query: Query,
    acting: Acting,
    side: str,
    statement: Statement,
    params: dict[str, Any],
    analyze: bool,
) -> Plan:
    text = queries.render("explain", statement=statement.text, analyze=analyze).encode()
    found: list[Plan] = []
    for _ in range(ANALYZE_RUNS if analyze else 1):
        try:
            # Its own savepoint, rolled back: with ANALYZE a write runs, and must not stay.
            with conn.transaction(force_rollback=True), psycopg.RawCursor(conn) as cursor:
                queries.run(conn, "literal_quoting")
                cursor.execute(text, statement.values(params))
                row = cursor.fetchone()
        except psycopg.Error as exc:
            who = "the connecting role" if side == "baseline" else f"principal {acting.name}"
            said = f"{_first(exc)}{_privilege_hint(exc, acting, side)}"
            raise UsageError(f"{query.where}: query {query.name} ({side}, as {who}): {said}") from None
        assert row is not None
        found.append(Plan.from_json(row[0]))
    return min(found, key=lambda plan: plan.execution_ms or 0.0)


def _generic_plan(
    conn: psycopg.Connection, query: Query, acting: Acting, params: dict[str, Any], analyze: bool
) -> Plan:
    """The plan a driver that prepares the statement gets once PostgreSQL settles on a generic plan
    (from the sixth execution, when it looks no costlier than the plans made for the values so
    far): made for no values at all, so not for this principal's tenant either (docs/performance.md,
    the generic plan trap). Prepared as the principal, in the principal's transaction."""
    statement = query.sql
    found: list[Plan] = []
    for _ in range(ANALYZE_RUNS if analyze else 1):
        # A name of its own each time, prepared and deallocated around one rolled-back savepoint
        # (the setting goes with it; PREPARE is not transactional, and psycopg may deallocate all at
        # a rollback, so nothing is kept from one run to the next).
        name = f"{PREPARED_PREFIX}{next(_PREPARED_COUNT)}"
        text = queries.render(
            "explain_prepared", statement_name=name, analyze=analyze, values=len(statement.names)
        ).encode()
        try:
            with conn.transaction(force_rollback=True):
                queries.run(conn, "generic_plans")
                _prepare(conn, name, statement.text)
                try:
                    # Values bound by the client: EXECUTE is a utility statement, which takes no
                    # protocol parameters; psycopg quotes each one for its type.
                    with conn.transaction(force_rollback=True), psycopg.ClientCursor(conn) as cursor:
                        cursor.execute(text, statement.values(params))
                        row = cursor.fetchone()
                finally:  # in the outer savepoint, which a failed EXPLAIN left usable
                    _deallocate(conn, name)
        except psycopg.Error as exc:
            raise UsageError(
                f"{query.where}: query {query.name} (prepared, as principal {acting.name}): {_first(exc)}"
            ) from None
        assert row is not None
        found.append(Plan.from_json(row[0]))
    return min(found, key=lambda plan: plan.execution_ms or 0.0)


def _deallocate(conn: psycopg.Connection, name: str) -> None:
    if queries.run(conn, "prepared", name=name):
        statements.execute(conn, queries.render("deallocate", statement_name=name).encode(), {})


def _prepare(conn: psycopg.Connection, name: str, text: str) -> None:
    """PREPARE over the extended protocol (a Parse message), as a driver does: the server refuses
    more than one statement in it, whatever the session's quoting settings."""
    queries.run(conn, "literal_quoting")
    result = conn.pgconn.prepare(name.encode(), text.encode())
    if result.status != pq.ExecStatus.COMMAND_OK:
        raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)


def _stats(conn: psycopg.Connection, project: Project) -> tuple[TableStats, ...]:
    rows = queries.run(conn, "table_stats", schema=project.schema_name)
    return tuple(TableStats(row["name"], int(row["rows"]), row["analyzed"]) for row in rows)


def _privilege_hint(exc: psycopg.Error, acting: Acting, side: str) -> str:
    """A principal's role refused a table: the query may need a grant, or the project is applied to
    this database under another role prefix (the roles exist, cluster-wide, without their grants here)."""
    if side == "baseline" or not isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return ""
    return (
        f" (role {acting.role} lacks that privilege here: the query reads what the role is not granted, "
        "or the project was applied to this database with another --role-prefix; `rlsctl drift` compares)"
    )


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
