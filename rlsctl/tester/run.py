"""`rlsctl test`: impersonate every principal on fixture data and judge each cell.

Everything happens in one transaction that is always rolled back. Each cell's
statement runs in its own subtransaction as the principal (`SET LOCAL ROLE`,
the identity setting, an API key), inside the server, a few hundred per round
trip (rlsctl/tester/probes.py), so one principal's writes never leak into the
next cell. A denied UPDATE or DELETE is judged by the rows it affected, since
RLS makes it succeed with 0 rows; a denied INSERT, or any command without the
privilege, raises.

Each cell is judged by the project's expectations (rlsctl/tester/expectations.py),
written apart from the policies; every cell is also held to the invariants that
need no expectations (rlsctl/tester/invariants.py).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg

from rlsctl.catalog import queries as catalog
from rlsctl.change.apply import live_schema
from rlsctl.declare.compile import declare
from rlsctl.declare.state import DeclaredState
from rlsctl.declare.validate import validate
from rlsctl.errors import UsageError
from rlsctl.pg import statements
from rlsctl.pg.templates import render_template
from rlsctl.policy.project import Project
from rlsctl.schema.tables import Column, Schema, Table
from rlsctl.state.objects import GUARD_TRIGGER
from rlsctl.tester import probes as probing
from rlsctl.tester.coverage import Allowed, Coverage, coverage
from rlsctl.tester.evaluate import ApiSession, Evaluator, Outcome, Principal
from rlsctl.tester.expectations import Domain, Expectations, Judge, Who, load_expectations, same
from rlsctl.tester.fixtures import (
    SELF,
    FixtureRow,
    Resolved,
    check_names,
    filled,
    resolve,
    sha256_hex,
    sql_value,
)
from rlsctl.tester.invariants import DENIED_WRITE, MONOTONE, OWN_RANK, Seen, Violation, tenant_isolation
from rlsctl.tester.probes import UNSEEN, Probe, Result

COMMANDS = ("select", "insert", "update", "delete")
UNIQUE_OR_FOREIGN_KEY = ("23505", "23503")
Progress = Callable[[int, int], None]  # (probes done, probes in all)


@dataclass(frozen=True)
class CellContext:
    """What an expectation needs to decide one cell."""

    table: str
    command: str
    case: str  # the fixture row, insert candidate, or "<update case>:<row>"
    principal: Principal
    row: dict[str, Any]  # old row (select/update/delete) or new row (insert)
    new: dict[str, Any] | None  # the row after an UPDATE
    world: dict[str, list[dict[str, Any]]]
    set_columns: tuple[str, ...] = ()  # the columns an UPDATE sets (even to their current value)


Expectation = Callable[[CellContext], bool]


@dataclass(frozen=True)
class Cell:
    table: str
    command: str
    case: str
    principal: str
    expected: bool | None  # None: no expectation covers the cell (not judged)
    expected_detail: str
    actual: Outcome
    decided_by: tuple[str, ...] = ()  # the policies of the principal's role for this command that held
    context: CellContext | None = field(default=None, compare=False, repr=False)
    statement: str = field(default="", compare=False, repr=False)  # what the probe ran

    @property
    def judged(self) -> bool:
        return self.expected is not None

    @property
    def ok(self) -> bool:
        if self.actual.detail.startswith("unexpected"):
            return False
        return self.expected is None or self.expected == self.actual.allowed


@dataclass(frozen=True)
class CaseFailure:
    name: str
    where: str
    detail: str


@dataclass(frozen=True)
class MatrixResult:
    where: str
    principals: tuple[Principal, ...]
    tables: tuple[str, ...]
    cells: tuple[Cell, ...]
    violations: tuple[Violation, ...] = ()
    case_failures: tuple[CaseFailure, ...] = ()
    notices: tuple[str, ...] = ()
    # How the fixture world was written, to reproduce a cell by hand (rlsctl verify prints it):
    # the INSERTs in order, the tables whose FORCE was lifted for them, and the role writing them.
    loaded: tuple[str, ...] = ()
    forced: tuple[str, ...] = ()
    writer: str = ""
    coverage: Coverage | None = None  # which policies and OR branches decided an allowed cell

    @property
    def failures(self) -> tuple[Cell, ...]:
        return tuple(cell for cell in self.cells if not cell.ok)

    @property
    def failed(self) -> bool:
        return bool(self.failures or self.violations or self.case_failures)


# -- principals -----------------------------------------------------------------------------


def principals_of(project: Project, resolved: Resolved) -> tuple[Principal, ...]:
    """The declared principals whose user row exists in this phase."""
    fixtures = project.fixtures
    assert fixtures is not None
    found: list[Principal] = []
    for name, declared in fixtures.principals.items():
        role = project.role_name(declared.role)
        if declared.id is not None:
            found.append(Principal(name, declared.role, role, declared.id, True, declared.description))
        elif declared.setting is not None:
            # No identity until the server says the value is one (_valid_settings).
            found.append(Principal(name, declared.role, role, None, True, declared.description,
                                   raw_setting=declared.setting))  # fmt: skip
        elif declared.api_key is not None and declared.user is not None:
            if declared.user not in resolved.keys:
                continue
            # One principal per transaction: key first, the user is ignored; user first, refused.
            session = api_session(project, resolved, declared.api_key)
            found.append(
                Principal(
                    name, declared.role, role, None, False, declared.description, declared.api_key,
                    session if declared.first == "api_key" else None, declared.first,
                    str(resolved.keys[declared.user]),
                )
            )  # fmt: skip
        elif declared.api_key is not None:
            session = api_session(project, resolved, declared.api_key)
            found.append(
                Principal(name, declared.role, role, None, False, declared.description, declared.api_key, session)
            )
        elif declared.user is None or declared.user == "":
            sets = declared.user == ""
            found.append(Principal(name, declared.role, role, None, sets, declared.description))
        elif declared.user in resolved.keys:
            user = str(resolved.keys[declared.user])
            found.append(Principal(name, declared.role, role, user, True, declared.description))
    return tuple(found)


def api_session(project: Project, resolved: Resolved, raw_key: str) -> ApiSession | None:
    """What authenticate_api_key(raw_key) records over the fixture rows: None for a wrong or expired key."""
    api = project.settings.api_keys
    if api is None:
        return None
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for row in resolved.rows_of(api.table):
        values = row.values
        if values.get(api.hash) != sha256_hex(raw_key):
            continue
        expires = values.get(api.expires) if api.expires else None
        if isinstance(expires, dt.datetime) and expires <= now:
            return None
        return ApiSession(values.get(api.tenant), tuple(values.get(api.scopes) or ()))
    return None


def who(project: Project, principal: Principal) -> Who:
    """The principal as expectations and invariants see it."""
    if principal.first == "user":
        return Who(None)  # authenticating a key after a user raises: nothing runs
    if principal.role_key != project.role_of_kind("app"):
        return Who(principal.role_key)
    if principal.api_key is not None:
        session = principal.api_session
        return Who("api_key", None, session.tenant if session else None, session.scopes if session else ())
    if principal.user_id is not None:
        return Who("user", principal.user_id)
    return Who("anonymous")


def _check_literal_ids(conn: psycopg.Connection, project: Project) -> None:
    """A principal's literal id must be a valid user id, or every cell would fail for the wrong reason."""
    assert project.fixtures is not None
    identity_type = project.settings.identity.type
    for name, declared in project.fixtures.principals.items():
        if declared.id is None:
            continue
        check = render_template(
            "ops/cast_check.sql.j2", project.root / "templates", value=declared.id, type=identity_type
        )
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(check.encode())
        except psycopg.Error as exc:
            raise project.error(
                ("fixtures", "principals", name, "id"),
                f"id {declared.id!r} is not a valid {identity_type}: {_first(exc)}",
            ) from None


def _valid_settings(
    conn: psycopg.Connection, project: Project, principals: tuple[Principal, ...]
) -> tuple[Principal, ...]:
    """A raw setting that is a valid identity of the project's type is that user's id; one that
    is not is no identity (the helpers treat it so: the cast is guarded)."""
    found: list[Principal] = []
    for principal in principals:
        canonical = _valid_identity(conn, project, principal.raw_setting) if principal.raw_setting else None
        if canonical is not None:
            principal = replace(principal, user_id=canonical)
        found.append(principal)
    return tuple(found)


def _valid_identity(conn: psycopg.Connection, project: Project, value: str) -> str | None:
    """The identity a raw setting is to the server (its canonical text), None when it is none."""
    check = render_template(
        "ops/cast_check.sql.j2", project.root / "templates", value=value, type=project.settings.identity.type
    )
    try:
        with conn.transaction(force_rollback=True):
            row = conn.execute(check.encode()).fetchone()
    except psycopg.errors.DataError:
        return None
    return str(row[0]) if row and row[0] is not None else None


def refuse_false_greens(
    conn: psycopg.Connection,
    project: Project,
    state: DeclaredState,
    roles: list[str],
    principals: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Exit 2 rather than test a role for which RLS proves nothing. `principals`: the fixture
    principals acting as each role, named in the message."""
    tables = [table.name for table in state.tables]
    for row in statements.run(conn, "role_risks", schema=project.schema_name, tables=tables, roles=roles):
        if row["superuser"] or row["bypassrls"]:
            kind = "SUPERUSER" if row["superuser"] else "BYPASSRLS"
            raise UsageError(
                f"refusing to test as {row['role']}{_acting(principals, row['role'])}: it is {kind}, so RLS "
                f"would not apply to it{_bypass_meaning(state, row['role'], kind)}"
            )
        if row["owns_unforced"]:
            raise UsageError(
                f"refusing to test as {row['role']}: it owns {row['owns_unforced'][0]}, whose RLS is not "
                "forced, so its policies would not apply"
            )
        if row["role"] == state.app and row["owns"]:
            raise UsageError(f"refusing to test as {row['role']}: the application role owns {row['owns'][0]}")
        if not row["can_switch"]:
            # Every cell would be denied by "permission denied to set role", not by a policy: a false green.
            raise UsageError(
                f"refusing to test as {row['role']}{_acting(principals, row['role'])}: this login cannot SET ROLE "
                f"to it (it is not a member), so every statement as it would fail for that reason, not by a policy: "
                f"{row['grant_to_login']} (docs/testing.md)"
            )
    missing = set(roles) - {
        row["role"]
        for row in statements.run(conn, "role_risks", schema=project.schema_name, tables=tables, roles=roles)
    }
    if missing:
        name = sorted(missing)[0]
        if name in {role.name for role in state.roles if role.external}:
            raise UsageError(f"role {name} does not exist: it is the platform's (external), rlsctl does not create it")
        raise UsageError(f"role {name} does not exist: run `rlsctl apply` first")


def _acting(principals: Mapping[str, Sequence[str]] | None, role: str) -> str:
    names = sorted((principals or {}).get(role, ()))
    if not names:
        return ""
    return f" (fixture principal{'s' if len(names) > 1 else ''} {', '.join(names)})"


def _bypass_meaning(state: DeclaredState, role: str, kind: str) -> str:
    """What a BYPASSRLS platform role (Supabase's service_role) means, in the refusal."""
    if kind != "BYPASSRLS" or role not in {spec.name for spec in state.roles if spec.external}:
        return ""
    return (
        "; it is the platform's server-side role: every query made as it (on Supabase: with the service key) "
        "ignores every policy, so it is never a tenant principal: test the tenant roles, and make the server-side "
        "code that uses it check the tenant itself"
    )


# -- the run ------------------------------------------------------------------------------------


class Runner:
    """Renders the tester's statements and loads fixture rows, as the connecting role."""

    def __init__(
        self,
        conn: psycopg.Connection,
        project: Project,
        schema: Schema,
        state: DeclaredState,
        rendered: dict[tuple[Any, ...], str] | None = None,
    ) -> None:
        self.conn = conn
        self.project = project
        self.schema = schema
        self.state = state
        self.templates = project.root / "templates"
        # Statements by what they say (table, values): shared by the worlds of one verify run.
        self._rendered: dict[tuple[Any, ...], str] = {} if rendered is None else rendered
        self.principals: tuple[Principal, ...] = ()
        self.loaded: list[str] = []  # the fixture rows' INSERTs, in order
        self.guarded: set[str] | None = None  # the tables carrying rlsctl's guard trigger (read once)

    def sql(self, name: str, **context: Any) -> str:
        return render_template(f"ops/{name}.sql.j2", self.templates, schema=self.project.schema_name, **context)

    def key(self, table: str) -> Column:
        found = self.schema.table(table)
        if len(found.primary_key) != 1:
            raise UsageError(f"rlsctl test needs a single-column primary key on {table}")
        return found.column(found.primary_key[0])

    def insert_sql(self, table: Table, values: dict[str, Any], returning: bool = False) -> str:
        # The same statement comes back for every principal: rendered once.
        memo = ("insert", table.name, _frozen(values), returning)
        if memo not in self._rendered:
            full = filled(table, values, self.schema)
            columns = [table.column(name) for name in full]
            typed = {column.name: sql_value(full[column.name], column.type) for column in columns}
            self._rendered[memo] = self.sql(
                "tester_insert", table=table, columns=columns, values=typed, returning=returning
            )
        return self._rendered[memo]

    def update_sql(self, table: str, values: dict[str, Any], key_value: Any) -> str:
        memo = ("update", table, _frozen(values), str(key_value))
        if memo not in self._rendered:
            columns = [self.schema.table(table).column(name) for name in values]
            typed = {column.name: sql_value(values[column.name], column.type) for column in columns}
            self._rendered[memo] = self.sql(
                "tester_update", table=table, columns=columns, values=typed, key=self.key(table), key_value=key_value
            )
        return self._rendered[memo]

    def delete_sql(self, table: str, key_value: Any) -> str:
        memo = ("delete", table, str(key_value))
        if memo not in self._rendered:
            self._rendered[memo] = self.sql("tester_delete", table=table, key=self.key(table), key_value=key_value)
        return self._rendered[memo]

    def select_sql(self, table: str, keys: list[Any]) -> str:
        memo = ("select", table, _frozen(keys))
        if memo not in self._rendered:
            self._rendered[memo] = self.sql("tester_select", table=table, key=self.key(table), keys=keys)
        return self._rendered[memo]

    def fingerprint(self, table: str) -> str:
        memo = ("fingerprint", table)
        if memo not in self._rendered:
            self._rendered[memo] = self.sql("tester_fingerprint", table=table)
        return self._rendered[memo]


def _frozen(value: Any) -> str:
    """A stable key for rendered statements (values may be lists, dicts, dates)."""
    return json.dumps(value, sort_keys=True, default=str)


def run_matrix(
    conn: psycopg.Connection,
    project: Project,
    where: str,
    expect: Expectation | None = None,
    progress: Progress | None = None,
    generated: Generated | None = None,
    tables: Collection[str] = (),
) -> MatrixResult:
    """Every cell of the matrix, judged by `expect` (rlsctl's own tests), else by the project's
    expectation files, else by the invariants alone (with a notice). `generated`: the fixtures
    are a generated world (rlsctl verify), judged by expectations loaded once for all worlds;
    the named cases, which speak of the hand-written fixtures, are not checked. `tables`: probe
    only these (every fixture row is still loaded; an unknown name is an error)."""
    if project.fixtures is None:
        raise UsageError("the project declares no fixtures section: rlsctl test has nothing to run")
    memo = generated.memo if generated is not None else {}
    schema, state = _declared(conn, project, where, memo)
    every_phase = project.migrated_schema().union(schema)
    if generated is None:
        check_names(project, every_phase)
        expectations = load_expectations(project, every_phase)
    else:
        expectations = generated.expectations
    resolved = resolve(project.fixtures, schema)
    # API-key principals only where the key table exists in this phase.
    principals = tuple(p for p in principals_of(project, resolved) if p.api_key is None or state.api_keys is not None)
    acting: dict[str, list[str]] = {}
    for principal in principals:
        acting.setdefault(principal.role, []).append(principal.name)
    checked = ("roles checked", *sorted(acting))
    if checked not in memo:
        refuse_false_greens(conn, project, state, sorted(acting), acting)
        memo[checked] = True
    _check_literal_ids(conn, project)
    principals = _valid_settings(conn, project, principals)
    managed = [table.name for table in state.tables]
    unknown = sorted(set(tables) - set(managed))
    if unknown:
        raise UsageError(f"{where}: {unknown[0]} is not a declared table that exists (tables: {', '.join(managed)})")
    probed = [name for name in managed if not tables or name in tables]
    with conn.transaction(force_rollback=True):
        statements.run(conn, "test_settings")
        # Read again under the test's search_path (pg_catalog only), so that the casts of its
        # statements name the project's own types with their schema.
        if "tester schema" not in memo:
            memo["tester schema"] = catalog.read_schema(conn, project.schema_name)
        runner = Runner(conn, project, memo["tester schema"], state, memo.setdefault("rendered", {}))
        # The batch functions belong to the connecting role (every principal may run them).
        setting = project.settings.identity.setting
        conn.execute(runner.sql("tester_batch", setting=setting, helper_schema=state.helper_schema).encode())
        loaded_tables = sorted({row.table for row in resolved.rows if row.table in managed})
        # Fixtures are written as the owner role (FORCE lifted for it, inside this rolled-back
        # transaction), never as the connecting role: code the owner put on its tables
        # (triggers, rules) would otherwise run with that role's rights, a superuser's often.
        statements.run(conn, "set_role", role=state.owner)
        if loaded_tables:
            conn.execute(runner.sql("tester_force", tables=loaded_tables, force=False).encode())
        world = _load(runner, resolved)
        candidates = _candidates(runner, resolved, principals, probed)
        if loaded_tables:
            conn.execute(runner.sql("tester_force", tables=loaded_tables, force=True).encode())
        statements.run(conn, "reset_role")
        statements.run(conn, "test_settings")
        _prepare(runner, state)
        domain = Domain(project, schema, world)
        pristine = _pristine(runner, probed)
        plan = _Plan(runner, resolved, world, candidates, probed, pristine)
        runner.principals = principals
        for principal in principals:
            plan.add_principal(principal)
        probes = plan.probes + [p for p in rank_probes(runner, domain, principals) if p.table in probed]
        results = _run_reads_first(conn, probes, project, progress)
        allowed = {id(probe) for probe, result in results if probe.command == "select" or _allowed(result)}
        promoted = [
            (promotion, _promoted_run(runner, plan, promotion, allowed)) for promotion in promotions(runner, domain)
        ]
    judge = Judge(domain, expectations) if expectations is not None and expect is None else None
    cells = _explain_undeclared(conn, project, state, plan.cells(results, state, project, expect, judge))
    seen = [_seen(cell, project) for cell in cells if cell.context is not None]
    violations = tenant_isolation(seen, domain, expectations)
    violations += _probe_violations(results)
    violations += [v for promotion, after in promoted for v in _monotonicity(plan, results, promotion, after)]
    case_failures = _cases(cells, expectations) if expect is None and generated is None else []
    notices = _notices(expectations, probed, expect)
    allowed = [Allowed(c.table, c.command, c.context.principal, c.context.row, c.context.new)
               for c in cells if c.actual.allowed and c.context is not None]  # fmt: skip
    roles = {p.role_key for p in principals}
    covered = coverage(state, world, allowed, roles, project.root / "templates") if generated is None else None
    return MatrixResult(
        where, principals, tuple(probed), tuple(cells), tuple(violations), tuple(case_failures), notices,
        tuple(runner.loaded), tuple(loaded_tables), state.owner, covered,
    )  # fmt: skip


@dataclass(frozen=True)
class Generated:
    """How a generated world is judged (rlsctl verify), and what one world's run leaves for the
    next: nothing a world loads outlives its rolled-back transaction, so the catalog, the
    compiled policies and the roles' checks are the same for every world of one verify run
    (read, compiled and checked for the first; a fifth of a world's time on PromptCraft)."""

    expectations: Expectations | None
    memo: dict[Any, Any] = field(default_factory=dict, compare=False)


def _declared(
    conn: psycopg.Connection, project: Project, where: str, memo: dict[Any, Any]
) -> tuple[Schema, DeclaredState]:
    """The live schema and the state the policies declare for it (not the fixtures': the same
    for every world)."""
    if "declared" not in memo:
        schema = live_schema(conn, project, None)
        # What apply refuses (an unknown rank or column) must not pass here as all cells green.
        validate(project, project.migrated_schema().union(schema))
        state = declare(project, schema)
        if not state.tables:
            raise UsageError(f"{where}: no declared table exists yet: run `rlsctl migrate` and `rlsctl apply`")
        memo["declared"] = (schema, state)
    return memo["declared"]  # type: ignore[no-any-return]


def _prepare(runner: Runner, state: DeclaredState) -> None:
    """The API-key session table, made once by its own function (so each probe's authentication
    only writes a row, rolled back with the probe)."""
    if state.api_keys is not None:
        with runner.conn.transaction():
            statements.run(runner.conn, "impersonate_role", role=state.app)
            runner.conn.execute(
                runner.sql("tester_api_key", helper_schema=state.helper_schema).encode(), {"raw_key": ""}
            )
            statements.run(runner.conn, "reset_role")


def _pristine(runner: Runner, managed: list[str]) -> dict[str, str | None]:
    """Each table's fingerprint before any probe, for the tables whose statements can change
    anything while affecting 0 rows (statement triggers, rules); None for the others, whose
    denied writes need no second look: a statement that touched no row ran no row trigger."""
    risky = statements.run(runner.conn, "statement_side_effects", schema=runner.project.schema_name, tables=managed)
    found: dict[str, str | None] = dict.fromkeys(managed)
    for row in risky:
        table = row["table_name"]
        found[table] = runner.conn.execute(runner.fingerprint(table).encode()).fetchone()[0]  # type: ignore[index]
    return found


def _run_reads_first(
    conn: psycopg.Connection, probes: list[Probe], project: Project, progress: Progress | None
) -> list[tuple[Probe, Result]]:
    """Every probe's result, in the probes' order. The reads run first: an UPDATE or DELETE of
    a row its principal cannot see affects no row (PostgreSQL adds the SELECT policies to a
    write whose WHERE reads the table, and the probes' WHERE reads the key), so such a write
    is not sent; its result says so (`Result.unseen`). Not on a table whose statements can
    change something while affecting no row (statement triggers, rules): there every write
    runs, to show that it changed nothing."""
    reads = [probe for probe in probes if probe.command == "select"]
    done: dict[int, Result] = {id(probe): result for probe, result in _run(conn, reads, progress, len(probes))}
    seen = {(probe.principal, probe.table): done[id(probe)] for probe in reads}
    rest = [probe for probe in probes if id(probe) not in done and not _unseen(probe, seen)]
    done.update((id(probe), result) for probe, result in _run(conn, rest, progress, len(probes), len(reads)))
    return [(probe, done.get(id(probe), UNSEEN)) for probe in probes]


def _unseen(probe: Probe, seen: dict[tuple[Principal, str], Result]) -> bool:
    if probe.command not in ("update", "delete") or probe.fingerprint is not None:
        return False
    read = seen.get((probe.principal, probe.table))
    if read is None or read.error is not None:
        return False  # no read to go by (or it failed): send the write
    row = probe.tag[2] if probe.command == "update" else probe.tag
    return str(row[probe.key]) not in read.visible


def _run(
    conn: psycopg.Connection, probes: list[Probe], progress: Progress | None, total: int, before: int = 0
) -> Iterator[tuple[Probe, Result]]:
    for done, (probe, result) in enumerate(probing.run(conn, probes), before + 1):
        yield probe, result
        if progress is not None and (done % probing.BATCH == 0 or done == before + len(probes)):
            progress(done, total)


def _load(runner: Runner, resolved: Resolved) -> dict[str, list[dict[str, Any]]]:
    world: dict[str, list[dict[str, Any]]] = {}
    for row in resolved.rows:
        statement = runner.insert_sql(runner.schema.table(row.table), row.values)
        runner.loaded.append(statement)
        try:
            runner.conn.execute(statement.encode())
        except psycopg.Error as exc:
            # The fixture file's line where there is one (hand-written fixtures; verify's are generated).
            raise runner.project.error(
                ("fixtures", "rows", row.table, row.name),
                f"fixture row {row.table}.{row.name} cannot be loaded: {_first(exc)}",
            ) from None
    for table in {row.table for row in resolved.rows}:
        keys = [row.values[runner.key(table).name] for row in resolved.rows_of(table)]
        cursor = runner.conn.execute(
            runner.sql("tester_read_back", table=table, key=runner.key(table), keys=keys).encode()
        )
        world[table] = [record[0] for record in cursor.fetchall()]
    return world


def _candidates(
    runner: Runner, resolved: Resolved, principals: tuple[Principal, ...], managed: list[str]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The full new row of each (candidate, principal) as the server would store it (defaults filled),
    from one insert per distinct row, rolled back; probed in batches like the cells."""
    wanted: dict[tuple[str, str], tuple[Table, dict[str, Any]]] = {}
    for candidate in resolved.inserts:
        if candidate.table not in managed:
            continue
        table = runner.schema.table(candidate.table)
        app = runner.project.role_of_kind("app")
        for principal in principals:
            if principal.role_key != app and SELF in candidate.values.values():
                continue  # "@self" is the acting user: a role without one has no such row to try
            wanted[(candidate.name, principal.name)] = (table, with_self(candidate, principal))
    distinct: dict[str, tuple[Table, dict[str, Any]]] = {}
    for table, values in wanted.values():
        distinct.setdefault(runner.insert_sql(table, values, returning=True), (table, values))
    operator = Principal("owner", "", runner.state.owner, None, False)
    probes = [Probe("stored", table.name, operator, sql) for sql, (table, _) in distinct.items()]
    stored: dict[str, dict[str, Any] | None] = {}
    for probe, result in probing.run(runner.conn, probes):
        if result.error in UNIQUE_OR_FOREIGN_KEY:
            # For this principal the row cannot exist (it is already there, or it
            # names a user row that does not): nothing to test.
            continue
        # Another error: the row cannot exist (no identity gives a NULL key); the cell
        # still runs: the policy must refuse it before the constraint.
        table, values = distinct[probe.sql]
        stored[probe.sql] = result.row if result.error is None else filled(table, values, runner.schema)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for key, (table, values) in wanted.items():
        sql = runner.insert_sql(table, values, returning=True)
        if sql in stored:
            found[key] = stored[sql] or {}
    return found


def with_self(candidate: FixtureRow, principal: Principal) -> dict[str, Any]:
    values = dict(candidate.values)
    for column, value in values.items():
        if value == SELF:
            values[column] = principal.user_id
    return values


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# -- the cells ------------------------------------------------------------------------------


@dataclass
class _Plan:
    """The probes of every cell, and how each result becomes a cell."""

    runner: Runner
    resolved: Resolved
    world: dict[str, list[dict[str, Any]]]
    candidates: dict[tuple[str, str], dict[str, Any]]
    managed: list[str]
    pristine: dict[str, str | None]  # table -> its fingerprint before any probe (None: not needed)
    probes: list[Probe] = field(default_factory=list)

    def add_principal(self, principal: Principal) -> None:
        runner = self.runner
        for table in self.managed:
            key = runner.key(table)
            rows = self.world.get(table, [])
            self.probes.append(Probe("select", table, principal, runner.select_sql(table, [r[key.name] for r in rows])))
            before = self.pristine[table]
            fingerprint = runner.fingerprint(table) if before is not None else None
            for candidate in self.resolved.inserts:
                if candidate.table == table and (candidate.name, principal.name) in self.candidates:
                    sql = runner.insert_sql(runner.schema.table(table), with_self(candidate, principal))
                    self.probes.append(Probe("insert", table, principal, sql, fingerprint, candidate.name, before))
            for case, values in update_cases(runner, table, self.resolved).items():
                for row in rows:
                    sql = runner.update_sql(table, values, row[key.name])
                    tag = (case, values, row)
                    self.probes.append(Probe("update", table, principal, sql, fingerprint, tag, before, key.name))
            for row in rows:
                sql = runner.delete_sql(table, row[key.name])
                self.probes.append(Probe("delete", table, principal, sql, fingerprint, row, before, key.name))

    def cells(
        self,
        results: list[tuple[Probe, Result]],
        state: DeclaredState,
        project: Project,
        expect: Expectation | None,
        judge: Judge | None,
    ) -> list[Cell]:
        found: list[Cell] = []
        evaluators: dict[str, Evaluator] = {}
        for probe, result in results:
            if probe.command == "rank":
                continue
            principal = probe.principal
            evaluator = evaluators.setdefault(principal.name, Evaluator(state, self.world, principal))
            for context, actual in self._contexts(probe, result):
                verdict: bool | None = None
                if expect is not None:
                    verdict = expect(context)
                elif judge is not None and judge.judges(context.table):
                    verdict = judge.allowed(
                        who(project, principal), context.table, context.command, context.row, context.new,
                        context.set_columns,
                    )  # fmt: skip
                detail = "" if verdict is None else "allowed" if verdict else "denied"
                # Only a mismatch is explained: the policies that let the row through, if any.
                decided = _decided_by(evaluator, context) if verdict not in (None, actual.allowed) else ()
                found.append(
                    Cell(context.table, context.command, context.case, principal.name, verdict, detail, actual,
                         decided, context, probe.sql)
                )  # fmt: skip
        return found

    def _contexts(self, probe: Probe, result: Result) -> Iterator[tuple[CellContext, Outcome]]:
        table, principal, runner = probe.table, probe.principal, self.runner
        key = runner.key(table)
        names = {str(row.values[key.name]): row.name for row in self.resolved.rows_of(table)}
        if probe.command == "select":
            for row in self.world.get(table, []):
                name = names.get(str(row[key.name]), str(row[key.name]))
                actual = (
                    result.outcome("select") if result.error is not None
                    else Outcome(True, "visible") if str(row[key.name]) in result.visible
                    else Outcome(False, "hidden")
                )  # fmt: skip
                yield CellContext(table, "select", name, principal, row, None, self.world), actual
        elif probe.command == "insert":
            new = self.candidates[(probe.tag, principal.name)]
            yield CellContext(table, "insert", probe.tag, principal, new, None, self.world), result.outcome("insert")
        elif probe.command == "update":
            case, values, row = probe.tag
            name = names.get(str(row[key.name]), str(row[key.name]))
            new = {**row, **_jsonable(values)}
            context = CellContext(table, "update", f"{case}:{name}", principal, row, new, self.world, tuple(values))
            yield context, result.outcome("update")
        else:
            row = probe.tag
            name = names.get(str(row[key.name]), str(row[key.name]))
            yield CellContext(table, "delete", name, principal, row, None, self.world), result.outcome("delete")


def _explain_undeclared(
    conn: psycopg.Connection, project: Project, state: DeclaredState, cells: list[Cell]
) -> list[Cell]:
    """A wrong cell the database allowed although no declared policy admits it: a policy that is
    not in the policy files did (added by hand: `rlsctl drift` names it too). Name the live
    policies of the principal's role for the command that the files do not declare."""
    unexplained = {id(c) for c in cells if not c.ok and c.actual.allowed and not c.decided_by and c.context}
    if not unexplained:
        return cells
    declared = {(table.name, policy.name) for table in state.tables for policy in table.policies}
    live: dict[tuple[str, str, str], list[str]] = {}
    for row in catalog.fetch(conn, "policies", schemas=[project.schema_name]):
        if (row["table_name"], row["name"]) in declared or not row["permissive"]:
            continue
        for role in row["roles"]:
            commands = COMMANDS if row["command"] == "all" else (row["command"],)
            for command in commands:
                live.setdefault((row["table_name"], role, command), []).append(row["name"])
    found: list[Cell] = []
    for cell in cells:
        if id(cell) in unexplained and cell.context is not None:
            role = cell.context.principal.role
            names = live.get((cell.table, role, cell.command), []) + live.get((cell.table, "PUBLIC", cell.command), [])
            if names:
                cell = replace(cell, decided_by=tuple(f"{name} (not in the policy files)" for name in names))
        found.append(cell)
    return found


def _decided_by(evaluator: Evaluator, context: CellContext) -> tuple[str, ...]:
    """The policies of the principal's role for the command that hold for the row (USING, or the
    check of an insert): which ones let it through, when the database allowed it."""
    use_check = context.command == "insert"
    row = context.row
    return tuple(
        policy.name
        for policy in evaluator.policies(context.table, context.command)
        if evaluator.policy_holds(policy, row, use_check)
    )


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """Update values as the read-back JSON would show them (timestamps as ISO text)."""
    return {column: value.isoformat() if hasattr(value, "isoformat") else value for column, value in values.items()}


def update_cases(runner: Runner, table: str, resolved: Resolved) -> dict[str, dict[str, Any]]:
    declared = resolved.updates.get(table)
    if declared:
        return declared
    return {"touch": touch_case(runner.project, runner.state, runner.schema.table(table))}


def touch_case(project: Project, state: DeclaredState, table: Table) -> dict[str, Any]:
    """The default UPDATE case: "touch" the first non-key column the app may update, setting
    it to a new value (a no-op value would never fire the guards)."""
    spec = state.table(table.name)
    grant = spec.grant_for(project.role_of_kind("app"), "UPDATE")
    columns = [c for c in table.columns if c.name not in spec.primary_key]
    if grant is not None and grant.columns is not None:
        columns = [c for c in columns if c.name in grant.columns] or columns
    text_columns = [c for c in columns if c.type == "text"]
    column = (text_columns or columns)[0]
    return {column.name: "rlsctl test touch" if column.type == "text" else None}


# -- invariants and named cases -------------------------------------------------------------------


def rank_probes(runner: Runner, domain: Domain, principals: tuple[Principal, ...]) -> list[Probe]:
    """Nobody raises their own rank: for every user holding a membership below the top rank, an
    UPDATE of their own row to the next rank; for every tenant they belong to but do not own,
    an UPDATE naming themselves its owner. Each must be refused (0 rows or an error)."""
    tenancy = runner.project.tenancy
    if tenancy is None:
        return []
    found: list[Probe] = []
    membership = tenancy.membership
    for principal in principals:
        if principal.role_key != runner.project.role_of_kind("app") or principal.user_id is None:
            continue
        user = principal.user_id
        if membership is not None and membership.rank and membership.table in domain.world:
            key = runner.key(membership.table).name
            for row in domain.world[membership.table]:
                rank = row.get(membership.rank)
                if same(row.get(membership.user), user) and rank in tenancy.ranks[:-1]:
                    higher = tenancy.ranks[tenancy.ranks.index(rank) + 1]
                    sql = runner.update_sql(membership.table, {membership.rank: higher}, row[key])
                    tag = f"{rank} -> {higher} in {row.get(membership.tenant)}"
                    found.append(Probe("rank", membership.table, principal, sql, None, tag))
        owner = tenancy.tenants.owner
        if owner is not None and tenancy.tenants.table in domain.world:
            key = runner.key(tenancy.tenants.table).name
            top = tenancy.ranks[-1]
            for row in domain.world[tenancy.tenants.table]:
                tenant = row.get(tenancy.tenants.key)
                tops = domain.tenants_of(user, top)
                below_top = domain.member(user, tenant) and not any(same(tenant, t) for t in tops)
                if below_top and not same(row.get(owner), user):
                    sql = runner.update_sql(tenancy.tenants.table, {owner: user}, row[key])
                    found.append(Probe("rank", tenancy.tenants.table, principal, sql, None, f"owner of {tenant}"))
    return found


@dataclass(frozen=True)
class Promotion:
    """One user raised one step within one tenant: the next rank on their membership row, or,
    holding the top rank, named in the tenant's owner column."""

    principal: Principal
    table: str  # the membership table, or the tenants table for the owner column
    key: Any  # the row raised
    values: dict[str, Any]  # what it sets
    label: str  # "MEMBER -> ADMIN in team_a"
    tenant: Any
    sql: str = field(default="", compare=False)  # the owner role's UPDATE that raises them


def promotions(runner: Runner, domain: Domain) -> list[Promotion]:
    """Every step up a user principal of the app role can be given in the fixture world."""
    tenancy = runner.project.tenancy
    if tenancy is None:
        return []
    found: list[Promotion] = []
    principals = [p for p in runner.principals if p.role_key == runner.project.role_of_kind("app") and p.user_id]
    membership, tenants, top = tenancy.membership, tenancy.tenants, tenancy.ranks[-1]
    for principal in principals:
        user = principal.user_id
        if membership is not None and membership.rank and membership.table in domain.world:
            key = runner.key(membership.table).name
            for row in domain.world[membership.table]:
                rank, tenant = row.get(membership.rank), row.get(membership.tenant)
                if same(row.get(membership.user), user) and rank in tenancy.ranks[:-1]:
                    higher = tenancy.ranks[tenancy.ranks.index(rank) + 1]
                    values = {membership.rank: higher}
                    label = f"{rank} -> {higher} in {tenant}"
                    found.append(_promotion(runner, principal, membership.table, row[key], values, label, tenant))
        if tenants.owner is not None and tenants.table in domain.world:
            key = runner.key(tenants.table).name
            for row in domain.world[tenants.table]:
                tenant = row.get(tenants.key)
                holds_top = any(same(tenant, t) for t in domain.tenants_of(user, top))
                previous = row.get(tenants.owner)
                # Naming a new owner takes the column from the previous one: only where that
                # changes nobody else's membership (they keep a membership row, or there was none).
                stays = previous is None or _has_membership_row(domain, previous, tenant)
                if holds_top and stays and not same(previous, user):
                    label = f"{top} -> owner of {tenant}"
                    values = {tenants.owner: user}
                    found.append(_promotion(runner, principal, tenants.table, row[key], values, label, tenant))
    return found


def _has_membership_row(domain: Domain, user: Any, tenant: Any) -> bool:
    tenancy = domain.project.tenancy
    membership = tenancy.membership if tenancy is not None else None
    if membership is None:
        return False
    return any(
        same(row.get(membership.user), user) and same(row.get(membership.tenant), tenant)
        for row in domain.world.get(membership.table, [])
    )


def _promotion(
    runner: Runner, principal: Principal, table_name: str, key: Any, values: dict[str, Any], label: str, tenant: Any
) -> Promotion:
    table = runner.schema.table(table_name)
    columns = [table.column(name) for name in values]
    promote = runner.sql(
        "tester_promote", table=table, columns=columns, key=runner.key(table.name), key_value=key,
        values={c.name: sql_value(values[c.name], c.type) for c in columns},
        guarded=_has_guard(runner, table.name), guard_trigger=GUARD_TRIGGER,
    )  # fmt: skip
    return Promotion(principal, table_name, key, values, label, tenant, promote)


def _allowed(result: Result) -> bool:
    return result.error is None and result.rows > 0


def _promoted_run(
    runner: Runner, plan: _Plan, promotion: Promotion, allowed: set[int]
) -> list[tuple[Probe, Result]]:
    """The principal's probes again, in a savepoint where the owner role has raised them: the
    reads, and the writes they were allowed (only those can be lost)."""
    conn = runner.conn
    mine = [replace(probe, fingerprint=None, pristine=None) for probe in plan.probes
            if probe.principal == promotion.principal and id(probe) in allowed]  # fmt: skip
    with conn.transaction(force_rollback=True):
        statements.run(conn, "set_role", role=runner.state.owner)
        conn.execute(promotion.sql.encode())
        statements.run(conn, "reset_role")
        statements.run(conn, "test_settings")
        return list(probing.run(conn, mine))


def _has_guard(runner: Runner, table: str) -> bool:
    """rlsctl's guard trigger is on the table (it may have been dropped: drift's business)."""
    if runner.guarded is None:
        live = catalog.triggers(runner.conn, runner.project.schema_name, runner.state.helper_schema)
        runner.guarded = {trigger.table for trigger in live if trigger.name == GUARD_TRIGGER}
    return table in runner.guarded


def _monotonicity(
    plan: _Plan, before: list[tuple[Probe, Result]], promotion: Promotion, after: list[tuple[Probe, Result]]
) -> list[Violation]:
    """Raised in rank, a user can do at least what they could before: every cell they were
    allowed must stay allowed. The promoted row itself is left out (its own content changed:
    "nobody changes their own team role" holds at every rank)."""
    allowed: dict[tuple[str, str, str], str] = {}
    for probe, result in before:
        if probe.principal != promotion.principal or probe.command == "rank":
            continue
        for context, outcome in plan._contexts(probe, result):
            if outcome.allowed:
                allowed[(context.table, context.command, context.case)] = outcome.detail
    found: list[Violation] = []
    for probe, result in after:
        for context, outcome in plan._contexts(probe, result):
            cell = (context.table, context.command, context.case)
            if cell not in allowed or outcome.allowed or _is_promoted_row(plan, promotion, context):
                continue
            found.append(
                Violation(MONOTONE, context.table, context.command, context.case, promotion.principal.name,
                          f"allowed before, {outcome.detail} once raised ({promotion.label})",
                          probe.sql, promotion.sql)
            )  # fmt: skip
    return found


def _is_promoted_row(plan: _Plan, promotion: Promotion, context: CellContext) -> bool:
    if context.table != promotion.table:
        return False
    key = plan.runner.key(promotion.table).name
    return same(context.row.get(key), promotion.key)


def _probe_violations(results: list[tuple[Probe, Result]]) -> list[Violation]:
    found: list[Violation] = []
    for probe, result in results:
        if probe.command == "rank" and result.error is None and result.rows > 0:
            found.append(
                Violation(OWN_RANK, probe.table, "update", str(probe.tag), probe.principal.name,
                          f"raised their own rank ({probe.tag})", probe.sql)
            )  # fmt: skip
        denied = result.error is None and result.rows == 0
        if probe.command in ("insert", "update", "delete") and denied and result.changed:
            found.append(
                Violation(DENIED_WRITE, probe.table, probe.command, str(probe.tag), probe.principal.name,
                          "affected 0 rows, yet the table changed", probe.sql)
            )  # fmt: skip
    return found


def _seen(cell: Cell, project: Project) -> Seen:
    context = cell.context
    assert context is not None
    principal = who(project, context.principal)
    rows = (context.row,) if context.new is None else (context.row, context.new)
    return Seen(
        cell.table, cell.command, cell.case, cell.principal,
        principal.kind if principal.kind in ("user", "api_key", "anonymous") else None,
        principal.user, principal.key_tenant, cell.actual.allowed, rows,
    )  # fmt: skip


def _cases(cells: list[Cell], expectations: Expectations | None) -> list[CaseFailure]:
    if expectations is None:
        return []
    by_key = {(c.table, c.command, c.case, c.principal): c for c in cells}
    found: list[CaseFailure] = []
    for case in expectations.cases:
        cell = by_key.get((case.table, case.command, case.row, case.principal))
        if cell is None:
            continue  # its table, row or principal does not exist in this phase
        if cell.actual.allowed != case.allowed:
            wanted = "allowed" if case.allowed else "denied"
            found.append(CaseFailure(case.name, case.where, f"expected {wanted}, database gave {cell.actual.detail}"))
    return found


def _notices(expectations: Expectations | None, managed: list[str], expect: Expectation | None) -> tuple[str, ...]:
    if expect is not None:
        return ()
    if expectations is None:
        return (
            "NO EXPECTATIONS: this project has no expectations/ files, so rlsctl test checked only the "
            "invariants (tenant isolation, nobody raises their own rank, a higher rank can do what a lower "
            "one could, denied writes change nothing); "
            "write what each principal may do in expectations/*.yaml (docs/testing.md)",
        )
    unjudged = [table for table in managed if table not in expectations.tables]
    if unjudged:
        return (f"no expectations for {', '.join(unjudged)}: their cells were held to the invariants only",)
    return ()


__all__ = ["COMMANDS", "Cell", "CellContext", "MatrixResult", "replace", "run_matrix"]
