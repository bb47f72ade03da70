"""`rlsctl verify`: the invariants and the expectations on generated worlds, on the real server.

`rlsctl test` judges the hand-written fixtures; a hole the fixtures happen not to
exercise passes it. Verify builds the worlds itself from the schema and
`tenancy` (rlsctl/tester/worlds.py) and runs each through the same runner:

1. **the complete small world**: two tenants, a member of every rank in each,
   an owner with and one without a membership row, a user in both, an
   outsider; rows of every table in each tenant (and in none, where the tenant
   may be NULL) by every member; an API key per tenant and scope; and the
   same world with no rows but the tenancy's own;
2. **explored worlds**: hypothesis draws worlds of up to three tenants, five
   users and a dozen rows, `examples` of them.

The first failing world is shrunk (hypothesis) to a minimal one: fewest
tenants, users, memberships, rows and keys that still fail. Its findings are
printed with a SQL script that rebuilds the world and runs the failing
statement as its principal (in a transaction that is rolled back).

Each world runs in the test's own transaction, rolled back: nothing is left
behind. Time is bounded: shrinking stops at `shrink_seconds`.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg

from rlsctl.change.apply import live_schema
from rlsctl.declare.compile import declare
from rlsctl.errors import UsageError
from rlsctl.pg.templates import render_template
from rlsctl.policy.project import Project
from rlsctl.tester.expectations import Expectations, load_expectations
from rlsctl.tester.probes import principal_json
from rlsctl.tester.run import Cell, Generated, MatrixResult, run_matrix
from rlsctl.tester.worlds import Shape, WorldSpec, complete_world, fixtures_of, has_author, shape_of

Progress = Callable[[str], None]

PROFILES = {
    # CI: the complete world, its empty twin and 300 explored worlds (about 30 s on
    # PromptCraft); on demand: many more, and longer shrinking.
    "ci": {"examples": 300, "shrink_seconds": 60.0},
    "long": {"examples": 5000, "shrink_seconds": 600.0},
}


@dataclass(frozen=True)
class Finding:
    """One failure in a world: a cell the expectations judge otherwise, or a broken invariant."""

    kind: str  # "expectation" or the invariant's name
    table: str
    command: str
    case: str
    principal: str
    detail: str
    script: str  # SQL reproducing it (rolled back)


@dataclass
class VerifyResult:
    worlds: int = 0
    cells: int = 0
    examples: int = 0
    findings: list[Finding] = field(default_factory=list)
    minimal: WorldSpec | None = None
    minimal_description: str = ""  # the minimal world in one line, as its fixtures were built
    notices: tuple[str, ...] = ()
    seconds: float = 0.0
    rejected: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.findings)


def verify(
    conn: psycopg.Connection,
    project: Project,
    where: str,
    examples: int = 25,
    seed: int = 0,
    shrink_seconds: float = 60.0,
    progress: Progress | None = None,
) -> VerifyResult:
    started = time.monotonic()
    schema = live_schema(conn, project, None)
    state = declare(project, schema)
    if not state.tables:
        raise UsageError(f"{where}: no declared table exists yet: run `rlsctl migrate` and `rlsctl apply`")
    if project.tenancy is None:
        raise UsageError("rlsctl verify generates worlds from the project's tenancy section, and it has none")
    shape = shape_of(project, state, schema)
    expectations = load_expectations(project, project.migrated_schema().union(schema))
    world = _World(conn, project, where, shape, expectations)
    result = VerifyResult(notices=_notices(expectations))
    say = progress or (lambda _message: None)
    failing: WorldSpec | None = None
    complete = complete_world(shape)
    for spec in (complete, replace(complete, rows=(), keys=(), label="complete world, no rows")):
        say(f"{spec.label}: {spec.tenants} tenants, {spec.users} users, {len(spec.rows)} rows")
        matrix = world.run(spec)
        result.worlds += 1
        result.cells += len(matrix.cells)
        if failing is None and failed(matrix):
            failing = spec
    if failing is None:
        say(f"exploring {examples} generated worlds (seed {seed})")
        failing = _explore(world, shape, examples, seed, result)
    if failing is not None:
        say("shrinking the failing world")
        minimal = _shrink(world, shape, failing, seed, shrink_seconds)
        result.minimal = minimal
        result.minimal_description = describe(minimal, shape)
        result.findings = findings(world.run(minimal), project, shape)
    result.seconds = time.monotonic() - started
    return result


def _notices(expectations: Expectations | None) -> tuple[str, ...]:
    if expectations is None:
        return ("NO EXPECTATIONS: the generated worlds were held to the invariants only (docs/testing.md)",)
    return ()


@dataclass
class _World:
    """Runs one generated world through rlsctl test's runner."""

    conn: psycopg.Connection
    project: Project
    where: str
    shape: Shape
    expectations: Expectations | None
    runs: int = 0
    cells: int = 0  # in the worlds judged through `fails`
    rejected: int = 0  # drawn worlds the schema's constraints refused
    generated: Generated = field(init=False)

    def __post_init__(self) -> None:
        self.generated = Generated(self.expectations)  # one for all the worlds: it keeps what they share

    def run(self, spec: WorldSpec) -> MatrixResult:
        self.runs += 1
        fixtures = fixtures_of(self.shape, spec)
        project = replace(self.project, fixtures=fixtures)
        return run_matrix(self.conn, project, self.where, generated=self.generated)

    def fails(self, spec: WorldSpec) -> bool:
        try:
            matrix = self.run(spec)
        except UsageError:
            self.rejected += 1
            return False  # a world the schema rejects (a constraint rlsctl cannot see): not a finding
        self.cells += len(matrix.cells)
        return failed(matrix)


# -- exploring and shrinking -------------------------------------------------------------------------


def _strategy(shape: Shape) -> Any:
    """Worlds of up to three tenants, five users, eight memberships, twelve rows, three keys."""
    from hypothesis import strategies as st

    ranks = shape.ranks or ("MEMBER",)

    @st.composite
    def worlds(draw: Any) -> WorldSpec:
        tenants = draw(st.integers(1, 3))
        users = draw(st.integers(1, 5))
        owners = tuple(draw(st.lists(st.one_of(st.none(), st.integers(0, users - 1)), min_size=tenants,
                                     max_size=tenants)))  # fmt: skip
        members = tuple(draw(st.lists(
            st.tuples(st.integers(0, users - 1), st.integers(0, tenants - 1), st.sampled_from(ranks)),
            max_size=8, unique_by=lambda m: (m[0], m[1]),
        )))  # fmt: skip
        rows: tuple[Any, ...] = ()
        if shape.data:
            rows = tuple(draw(st.lists(st.tuples(
                st.sampled_from(shape.data), st.one_of(st.none(), st.integers(0, tenants - 1)),
                st.one_of(st.none(), st.integers(0, users - 1)), st.integers(0, 3),
            ), max_size=12)))  # fmt: skip
        keys: tuple[Any, ...] = ()
        if shape.keys is not None and shape.scopes:
            keys = tuple(draw(st.lists(st.tuples(
                st.integers(0, tenants - 1),
                st.lists(st.sampled_from(shape.scopes), min_size=1, unique=True).map(tuple),
            ), max_size=3)))  # fmt: skip
        return WorldSpec(tenants, users, owners, members, rows, keys, "explored world")

    return worlds()


def _settings(examples: int) -> Any:
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=max(examples, 1), database=None, deadline=None, derandomize=False,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip


def _explore(world: _World, shape: Shape, examples: int, seed: int, result: VerifyResult) -> WorldSpec | None:
    """The first of `examples` drawn worlds that fails, or None. Hypothesis draws them (small
    and edge-case worlds first); the shrinking is ours (`_shrink`), bounded in time."""
    from hypothesis import find
    from hypothesis.configuration import set_hypothesis_home_dir
    from hypothesis.errors import Flaky, NoSuchExample

    tried = 0
    first: WorldSpec | None = None

    def fails(spec: WorldSpec) -> bool:
        nonlocal tried, first
        if first is not None:
            # Hypothesis replays the failing example to confirm it before it returns: the same
            # answer, or it raises Flaky. Anything else after the first failure is not run.
            return spec == first
        if tried >= examples:
            return False
        tried += 1
        if world.fails(spec):
            first = spec
            return True
        return False

    # Hypothesis keeps caches in a .hypothesis/ directory: a temporary one, never the user's
    # working directory (no example database either: the seed replays a run).
    with tempfile.TemporaryDirectory(prefix="rlsctl-verify-") as home:
        set_hypothesis_home_dir(home)
        # NoSuchExample: every drawn world passed. Flaky: hypothesis found a world's second run
        # different from its first; `first` is the world that failed, which is what counts.
        with contextlib.suppress(NoSuchExample, Flaky):
            find(_strategy(shape), fails, settings=_settings(examples), random=random.Random(seed))
    result.examples = tried
    result.worlds += tried
    result.cells += world.cells
    result.rejected = world.rejected
    return first


def _shrink(world: _World, shape: Shape, failing: WorldSpec, seed: int, seconds: float) -> WorldSpec:
    """The smallest failing world hypothesis reaches in `seconds`, starting from `failing`: the
    strategy's draws are replayed with `failing` as their first example."""
    deadline = time.monotonic() + seconds
    best = failing

    def smaller(spec: WorldSpec) -> bool:
        nonlocal best
        if time.monotonic() > deadline or _size(spec) >= _size(best):
            return False
        if world.fails(spec):
            best = spec
            return True
        return False

    best = _delete_chunks(best, smaller)
    return best


def _size(spec: WorldSpec) -> tuple[int, ...]:
    return (spec.tenants + spec.users + len(spec.members) + len(spec.rows) + len(spec.keys), len(spec.rows))


def _delete_chunks(spec: WorldSpec, fails: Callable[[WorldSpec], bool]) -> WorldSpec:
    """Delta debugging: remove halves, then quarters... then single rows, keys and memberships,
    then users and tenants, while the world still fails; again until nothing can go."""
    changed = True
    while changed:
        changed = False
        for name in ("rows", "keys", "members"):
            chunk = max(len(getattr(spec, name)) // 2, 1)
            while chunk >= 1 and getattr(spec, name):
                spec, removed = _remove_chunks(spec, name, chunk, fails)
                changed |= removed
                chunk //= 2
        for candidate in [*(_without_user(spec, u) for u in range(spec.users) if spec.users > 1),
                          *(_without_tenant(spec, t) for t in range(spec.tenants) if spec.tenants > 1)]:  # fmt: skip
            if fails(candidate):
                spec, changed = candidate, True
                break
    return spec


def _remove_chunks(
    spec: WorldSpec, name: str, chunk: int, fails: Callable[[WorldSpec], bool]
) -> tuple[WorldSpec, bool]:
    removed = False
    start = 0
    while start < len(getattr(spec, name)):
        items = getattr(spec, name)
        candidate = replace(spec, **{name: items[:start] + items[start + chunk :]})
        if fails(candidate):
            spec, removed = candidate, True
        else:
            start += chunk
    return spec, removed


def _renumber(index: int | None, gone: int) -> int | None:
    if index is None or index == gone:
        return None
    return index - 1 if index > gone else index


def _without_user(spec: WorldSpec, gone: int) -> WorldSpec:
    """The world without user `gone` (what they owned, held or wrote goes with them)."""
    return replace(
        spec, users=spec.users - 1,
        owners=tuple(_renumber(o, gone) for o in spec.owners),
        members=tuple((_renumber(u, gone), t, rank) for u, t, rank in spec.members if u != gone),  # type: ignore[misc]
        rows=tuple((table, tenant, _renumber(author, gone), v) for table, tenant, author, v in spec.rows),
    )  # fmt: skip


def _without_tenant(spec: WorldSpec, gone: int) -> WorldSpec:
    return replace(
        spec, tenants=spec.tenants - 1,
        owners=tuple(o for t, o in enumerate(spec.owners) if t != gone),
        members=tuple((u, _renumber(t, gone), rank) for u, t, rank in spec.members if t != gone),  # type: ignore[misc]
        rows=tuple((table, _renumber(t, gone), a, v) for table, t, a, v in spec.rows if t != gone),
        keys=tuple((_renumber(t, gone), scopes) for t, scopes in spec.keys if t != gone),  # type: ignore[misc]
    )  # fmt: skip


# -- findings ------------------------------------------------------------------------------------------


def _artifact(cell: Cell) -> bool:
    """A cell the world itself spoiled: an integrity constraint (class 23) refused a write the
    policies let through, and no expectation says the principal must be denied. A NOT NULL
    or CHECK the generator could not know of is no finding; an expected denial that reaches a
    constraint is one (the policies did not refuse it)."""
    return cell.actual.detail.startswith("unexpected error 23") and cell.expected is not False


def failed(matrix: MatrixResult) -> bool:
    return bool(matrix.violations) or any(not _artifact(cell) for cell in matrix.failures)



def findings(matrix: MatrixResult, project: Project, shape: Shape) -> list[Finding]:
    """Every failure of a world, each with the script that reproduces it."""
    by_cell = {(c.table, c.command, c.case, c.principal): c for c in matrix.cells}
    principals = {p.name: p for p in matrix.principals}
    found: list[Finding] = []
    for cell in matrix.failures:
        if _artifact(cell):
            continue
        wanted = "allowed" if cell.expected else "denied"
        detail = f"expected {wanted}, the database gave {cell.actual.detail}"
        if cell.decided_by:
            detail += f" (through {', '.join(cell.decided_by)})"
        found.append(_finding("expectation", cell.table, cell.command, cell.case, cell.principal, detail,
                              cell.statement, "", matrix, project, principals))  # fmt: skip
    for violation in matrix.violations:
        key = (violation.table, violation.command, violation.case, violation.principal)
        statement, setup = violation.statement, violation.setup
        if not statement and key in by_cell:
            statement = by_cell[key].statement
        found.append(_finding(violation.invariant, *key, violation.detail, statement, setup, matrix, project,
                              principals))  # fmt: skip
    return found


def _finding(
    kind: str, table: str, command: str, case: str, principal: str, detail: str, statement: str, setup: str,
    matrix: MatrixResult, project: Project, principals: dict[str, Any],
) -> Finding:  # fmt: skip
    who = principals.get(principal)
    script = render_template(
        "ops/verify_repro.sql.j2", project.root / "templates", schema=project.schema_name,
        helper_schema=project.settings.helper_schema, setting=project.settings.identity.setting,
        title=f"{kind}: {table} {command} {case} as {principal}", detail=detail,
        writer=matrix.writer, forced=matrix.forced, loaded=matrix.loaded, setup=setup.strip(),
        principal_name=principal, principal=principal_json(who) if who is not None else {},
        statement=statement.strip().rstrip(";"),
    )  # fmt: skip
    return Finding(kind, table, command, case, principal, detail, script)


def describe(spec: WorldSpec, shape: Shape | None = None) -> str:
    """The world in one line: its tenants, users, who holds what, its rows and keys. With `shape`,
    as the fixtures were built: an owner column that may not be NULL names u0 when the world chose
    no owner, and a row of a table with no author column has no author."""
    members = ", ".join(f"u{u} {rank} in t{t}" for u, t, rank in spec.members) or "no memberships"
    owners = ", ".join(f"t{t} owned by u{o}" for t, o in enumerate(_owners(spec, shape)) if o is not None)
    rows = ", ".join(
        f"{table} in {'t' + str(tenant) if tenant is not None else 'no tenant'}"
        + (f" by u{author}" if author is not None and (shape is None or has_author(shape, table)) else "")
        for table, tenant, author, _ in spec.rows
    ) or "no rows"
    owners = owners or "no owners"
    keys = ", ".join(f"key of t{t} [{' '.join(scopes)}]" for t, scopes in spec.keys) or "no API keys"
    return f"{spec.tenants} tenants, {spec.users} users; {members}; {owners}; {rows}; {keys}"


def _owners(spec: WorldSpec, shape: Shape | None) -> list[int | None]:
    """Each tenant's owner as the fixtures have it (worlds._tenants)."""
    owners = [spec.owners[t] if t < len(spec.owners) else None for t in range(spec.tenants)]
    tenancy = shape.project.tenancy if shape is not None else None
    if shape is None or tenancy is None or shape.tenants is None or not tenancy.tenants.owner:
        return owners
    table = shape.schema.table(shape.tenants)
    forced = table.has_column(tenancy.tenants.owner) and not shape.nullable(shape.tenants, tenancy.tenants.owner)
    return [0 if owner is None and forced and spec.users else owner for owner in owners]
