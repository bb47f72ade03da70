"""Benchmark PromptCraft's reads under rlsctl's policies against a hand-written WHERE (issue 15).

    python benchmarks/policy_cost_bench.py [--server DSN] [--scale 1.0 ...] [--runs 30] [--warmup 5]
                                           [--protocol prepared|one-shot|custom ...] [--keep]

On a throw-away database migrated and applied with a unique role prefix, the
script generates data as superuser (triggers off), runs `rlsctl keys encrypt` on the
encrypted columns (so "my usage" decrypts what it reads), then times typical
application reads two ways, in the same run, on the same data:

- **RLS**: the application's query as it sends it, run as the app role with its
  identity set (SET LOCAL ROLE <prefix>app; set_config('app.user_id', ..., true));
- **baseline**: the same query run by the superuser (no RLS) with the
  equivalent hand-written WHERE: the team ids the application already knows
  (the user's teams, and those where they are ADMIN or OWNER).

Both must return the same rows (the script fails loudly when they differ). Each
pair is timed as the median of --runs executions after --warmup, identity set
once per batch inside one transaction, batches of the two ways interleaved, for
each way a driver sends statements (--protocol, see Statement): prepared once and
executed again and again (PostgreSQL may settle on a generic plan), and planned at
every execution.
Prints the ratios, their geometric mean and the worst, also under the issue's
rule (a query within 0.05 ms of its baseline counts as 1.0), the plans of
the worst query, and where each statement's time goes under RLS: how often each
of rlsctl's functions runs in it and for how long (PostgreSQL's per-function
statistics, track_functions). Never asserts on time. The default scale (2,000 teams of 10, one
of 1,000 with 100k of the 1M prompts, 2M versions, 2M audit rows) takes a few
minutes to generate; --scale 0.1 is a quick look. Given more than one --scale, each is measured
on its own load, in the order given, and a last table shows how each ratio grew from the first
scale to the last.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import secrets
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo, sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from click.testing import CliRunner  # noqa: E402

from rlsctl.change import apply as applying  # noqa: E402
from rlsctl.cli.main import main as cli  # noqa: E402
from rlsctl.migrate import run as migrating  # noqa: E402
from rlsctl.pg.db import Target  # noqa: E402
from rlsctl.policy.project import load_project  # noqa: E402

PROTOCOLS = ("prepared", "one-shot", "custom")
PREPARED = ("prepared", "custom")
WARMUP_CALLS = 20  # before counting rlsctl's functions: the first executions also plan
NEAR_MS = 0.05  # the rule: within 0.05 ms of the baseline counts as 1.0


@dataclass
class Query:
    """One application statement: the SQL the app sends under RLS, and the baseline's extra WHERE."""

    name: str
    rls: str
    baseline: str
    write: bool = False  # each execution in a savepoint rolled back after it: every run sees the same rows
    for_keys: bool = True  # also run in the API-key session
    for_members: bool = True  # also run for MEMBERs (adding a member is an OWNER's or an ADMIN's)


# {check} is replaced by the hand-written access check (empty under RLS).
QUERIES = [
    Query(
        "prompt page",
        """SELECT id, title, "userId", "updatedAt" FROM "Prompt"
           WHERE "teamId" = %(team)s{check} ORDER BY "updatedAt" DESC, id LIMIT 50""",
        """ AND ("userId" = %(user)s OR "teamId" = ANY(%(member_teams)s))""",
    ),
    Query(
        "prompt + versions",
        """SELECT p.id, p.title, v.id, v.version, v."createdAt" FROM "Prompt" p
           JOIN "PromptVersion" v ON v."promptId" = p.id
           WHERE p.id = %(prompt)s{check} ORDER BY v.version""",
        """ AND (p."userId" = %(user)s OR p."teamId" = ANY(%(member_teams)s))""",
    ),
    Query(
        "versions of 20",
        """SELECT v.id, v."promptId", v.version FROM "PromptVersion" v
           WHERE v."promptId" = ANY(%(prompts)s){check} ORDER BY v."promptId", v.version""",
        """ AND EXISTS (SELECT 1 FROM "Prompt" p WHERE p.id = v."promptId"
               AND (p."userId" = %(user)s OR p."teamId" = ANY(%(member_teams)s)))""",
    ),
    Query(
        "audit page",
        """SELECT id, "userId", action, "resourceId", "createdAt" FROM "AuditLog"
           WHERE "teamId" = %(team)s{check} ORDER BY "createdAt" DESC, id LIMIT 50""",
        """ AND ("userId" = %(user)s OR "teamId" = ANY(%(admin_teams)s))""",
    ),
    Query(
        "member list",
        """SELECT m.id, m."userId", m.role, u.email, u.name FROM "TeamMember" m
           JOIN "User" u ON u.id = m."userId"
           WHERE m."teamId" = %(team)s{check} ORDER BY m."joinedAt", m.id""",
        """ AND m."teamId" = ANY(%(member_teams)s)""",
        for_keys=False,  # a key reads no membership
    ),
    Query(
        "my usage",
        """SELECT id, feature, "usageCount", "lastUsedAt", rlsctl.decrypt(metadata) FROM "UsageAnalytics"
           WHERE "userId" = %(user)s{check} ORDER BY "lastUsedAt" DESC, id LIMIT 50""",
        """ AND ("userId" = %(user)s OR "teamId" = ANY(%(admin_teams)s))""",
        for_keys=False,
    ),
]

# The application's writes: the same statement both ways (an application without RLS checks its
# user's rights in its own code, with what it already knows); the audit triggers fire both ways.
WRITES = [
    Query(
        "create prompt",
        """INSERT INTO "Prompt"(id, title, content, "userId", "teamId", "updatedAt")
           VALUES (%(new_id)s, 'New prompt', 'text', %(author)s, %(team)s, now())""",
        "",
        write=True,  # a key (prompts:write) writes as a member of its team: the author
    ),
    Query(
        "update prompt",
        """UPDATE "Prompt" SET title = 'Renamed', "updatedAt" = now() WHERE id = %(own_prompt)s""",
        "",
        write=True,
    ),
    Query("delete prompt", """DELETE FROM "Prompt" WHERE id = %(own_prompt)s""", "", write=True, for_keys=False),
    Query(
        "add version",
        """INSERT INTO "PromptVersion"(id, "promptId", content, version, "createdBy")
           VALUES (%(new_id)s, %(own_prompt)s, 'text', 99, %(user)s)""",
        "",
        write=True,
        for_keys=False,
    ),
    Query(
        "add member",
        """INSERT INTO "TeamMember"(id, "teamId", "userId", role)
           VALUES (%(new_id)s, %(team)s, %(outsider)s, 'MEMBER')""",
        "",
        write=True,
        for_keys=False,
        for_members=False,
    ),
]
KEY_SCOPES = ["prompts:read", "prompts:write", "audit:read"]


@dataclass
class Sizes:
    small_teams: int
    small_size: int
    big_size: int
    prompts: int
    versions_per_prompt: int
    audit: int

    @classmethod
    def scaled(cls, scale: float) -> Sizes:
        # Scale 1 is the benchmark: 2,000 teams of 10 and one of 1,000 members with a tenth of
        # the million prompts, two versions each, two million audit rows.
        return cls(
            small_teams=max(2, round(2_000 * scale)),
            small_size=10,
            big_size=max(10, round(1_000 * scale)),
            prompts=max(100, round(1_000_000 * scale)),
            versions_per_prompt=2,
            audit=max(100, round(2_000_000 * scale)),
        )


@dataclass
class Timing:
    query: str
    user: str
    protocol: str
    rls: list[float] = field(default_factory=list)
    base: list[float] = field(default_factory=list)

    @property
    def rls_ms(self) -> float:
        return statistics.median(self.rls) * 1000

    @property
    def base_ms(self) -> float:
        return statistics.median(self.base) * 1000

    @property
    def ratio(self) -> float:
        return self.rls_ms / self.base_ms

    @property
    def ruled(self) -> float:
        return 1.0 if self.rls_ms - self.base_ms <= NEAR_MS else self.ratio


def generate(conn: psycopg.Connection, sizes: Sizes) -> None:
    """Users, teams, memberships, prompts, versions and audit rows; as superuser, triggers off."""
    small_users = sizes.small_teams * sizes.small_size
    users = small_users + sizes.big_size
    params = {
        "small_teams": sizes.small_teams,
        "small_size": sizes.small_size,
        "small_users": small_users,
        "big": sizes.big_size,
        "users": users,
        "prompts": sizes.prompts,
        "versions": sizes.versions_per_prompt,
        "audit": sizes.audit,
    }
    conn.execute("SET session_replication_role = replica")
    steps = [
        # User i: in small team (i-1)/small_size + 1 when i <= small_users, else in the big team.
        """INSERT INTO "User"(id, email, name, "updatedAt")
           SELECT 'u' || lpad(i::text, 7, '0'), 'user' || i || '@example.com', 'User ' || i, now()
           FROM generate_series(1, %(users)s) AS i""",
        """INSERT INTO "Team"(id, name, "ownerId", "updatedAt")
           SELECT 't' || lpad(t::text, 6, '0'), 'Team ' || t,
                  'u' || lpad(((t - 1) * %(small_size)s + 1)::text, 7, '0'), now()
           FROM generate_series(1, %(small_teams)s) AS t
           UNION ALL SELECT 'tbig', 'Big team', 'u' || lpad((%(small_users)s + 1)::text, 7, '0'), now()""",
        # Rank: the first user of a team is its OWNER, the next (the next four in the big team) ADMIN.
        """INSERT INTO "TeamMember"(id, "teamId", "userId", role, "joinedAt")
           SELECT 'm' || i,
                  CASE WHEN i <= %(small_users)s
                       THEN 't' || lpad(((i - 1) / %(small_size)s + 1)::text, 6, '0') ELSE 'tbig' END,
                  'u' || lpad(i::text, 7, '0'),
                  (CASE WHEN i <= %(small_users)s
                        THEN CASE (i - 1) %% %(small_size)s WHEN 0 THEN 'OWNER' WHEN 1 THEN 'ADMIN' ELSE 'MEMBER' END
                        ELSE CASE WHEN i = %(small_users)s + 1 THEN 'OWNER'
                                  WHEN i <= %(small_users)s + 5 THEN 'ADMIN' ELSE 'MEMBER' END
                   END)::"TeamRole",
                  timestamp '2025-01-01' + i * interval '1 minute'
           FROM generate_series(1, %(users)s) AS i""",
        # A tenth of the prompts in the big team, seven tenths in the small teams, a fifth private.
        """INSERT INTO "Prompt"(id, "userId", "teamId", title, content, "createdAt", "updatedAt")
           SELECT 'p' || lpad(g::text, 8, '0'), 'u' || lpad(owner::text, 7, '0'), team,
                  'Prompt ' || g, repeat('prompt text ', 20),
                  timestamp '2025-01-01', timestamp '2026-01-01' - ((g::bigint * 7919) %% 525600) * interval '1 minute'
           FROM (SELECT g,
                        CASE WHEN g <= %(prompts)s / 10 THEN %(small_users)s + 1 + g %% %(big)s
                             WHEN g <= %(prompts)s * 4 / 5
                             THEN (g %% %(small_teams)s) * %(small_size)s + 1 + (g / %(small_teams)s) %% %(small_size)s
                             ELSE 1 + g %% %(users)s END AS owner,
                        CASE WHEN g <= %(prompts)s / 10 THEN 'tbig'
                             WHEN g <= %(prompts)s * 4 / 5 THEN 't' || lpad((g %% %(small_teams)s + 1)::text, 6, '0')
                        END AS team
                 FROM generate_series(1, %(prompts)s) AS g) AS s""",
        """INSERT INTO "PromptVersion"(id, "promptId", content, version, "createdBy", "createdAt")
           SELECT p.id || '_v' || n, p.id, p.content, n, p."userId", p."createdAt" + n * interval '1 hour'
           FROM "Prompt" p, generate_series(1, %(versions)s) AS n""",
        # Three features of usage per user, in the user's team.
        """INSERT INTO "UsageAnalytics"(id, "userId", "teamId", feature, "usageCount", "lastUsedAt", metadata)
           SELECT 'ua' || i || '_' || f, 'u' || lpad(i::text, 7, '0'),
                  CASE WHEN i <= %(small_users)s
                       THEN 't' || lpad(((i - 1) / %(small_size)s + 1)::text, 6, '0') ELSE 'tbig' END,
                  'feature ' || f, f, timestamp '2026-01-01' - (i %% 1000) * interval '1 hour' - f * interval '1 day',
                  jsonb_build_object('client', 'web', 'session', i * 3 + f)
           FROM generate_series(1, %(users)s) AS i, generate_series(1, 3) AS f""",
        # A tenth of the audit rows name no team; the rest are spread like the prompts.
        """INSERT INTO "AuditLog"(id, "userId", "teamId", action, "resourceType", "resourceId", "createdAt")
           SELECT 'a' || lpad(g::text, 8, '0'), 'u' || lpad(actor::text, 7, '0'), team, 'update', 'Prompt',
                  'p' || lpad((1 + g %% %(prompts)s)::text, 8, '0'),
                  timestamp '2026-01-01' - ((g::bigint * 104729) %% 525600) * interval '1 minute'
           FROM (SELECT g,
                        CASE WHEN g <= %(audit)s / 10 THEN %(small_users)s + 1 + g %% %(big)s
                             WHEN g <= %(audit)s * 9 / 10
                             THEN (g %% %(small_teams)s) * %(small_size)s + 1 + (g / %(small_teams)s) %% %(small_size)s
                             ELSE 1 + g %% %(users)s END AS actor,
                        CASE WHEN g <= %(audit)s / 10 THEN 'tbig'
                             WHEN g <= %(audit)s * 9 / 10 THEN 't' || lpad((g %% %(small_teams)s + 1)::text, 6, '0')
                        END AS team
                 FROM generate_series(1, %(audit)s) AS g) AS s""",
    ]
    for step in steps:
        conn.execute(step.encode(), params)  # type: ignore[arg-type]
    conn.execute("RESET session_replication_role")
    conn.execute("ANALYZE")


def encrypt(dsn: str, prefix: str) -> None:
    """`rlsctl keys encrypt`, as a user runs it after a load: the usage rows' metadata (declared
    encrypted) was written in plaintext with triggers off; "my usage" reads it with rlsctl.decrypt(),
    both ways, so decryption is in both times and out of the ratio. Then ANALYZE the rewritten table."""
    result = CliRunner().invoke(
        cli, ["keys", "encrypt", "--dsn", dsn, "--role-prefix", prefix, "--project", str(ROOT), "--jobs", "2"]
    )
    if result.exit_code != 0:
        raise SystemExit(f"rlsctl keys encrypt failed ({result.exit_code}):\n{result.output}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('ANALYZE "UsageAnalytics"')
        sealed, total = conn.execute(
            """SELECT count(*) FILTER (WHERE metadata ? 'rlsctl'), count(*) FROM "UsageAnalytics" """
        ).fetchone()  # type: ignore[misc]
    print(f"keys encrypt: {sealed} of {total} usage rows' metadata encrypted")


def principal(conn: psycopg.Connection, user: str) -> dict[str, Any]:
    """What the application knows of a user: its teams, and those it administers."""
    member = [row[0] for row in conn.execute('SELECT "teamId" FROM "TeamMember" WHERE "userId" = %s', (user,))]
    admin = [
        row[0]
        for row in conn.execute(
            """SELECT "teamId" FROM "TeamMember" WHERE "userId" = %s AND role IN ('ADMIN', 'OWNER')
               UNION SELECT id FROM "Team" WHERE "ownerId" = %s""",
            (user, user),
        )
    ]
    return {"user": user, "member_teams": member, "admin_teams": admin}


def subjects(conn: psycopg.Connection, sizes: Sizes) -> dict[str, dict[str, Any]]:
    """A user of each rank (OWNER, ADMIN, MEMBER) in a small team and in the big team, with their
    parameters. An OWNER is both the team's `ownerId` and an OWNER membership row."""
    small_team = f"t{sizes.small_teams // 2:06d}"
    picks = {f"{size} {rank}": (team, rank) for size, team in (("small", small_team), ("big", "tbig"))
             for rank in ("OWNER", "ADMIN", "MEMBER")}  # fmt: skip
    chosen: dict[str, dict[str, Any]] = {}
    for label, (team, role) in picks.items():
        row = conn.execute(
            """SELECT m."userId" FROM "TeamMember" m WHERE m."teamId" = %s AND m.role = %s
                 AND EXISTS (SELECT 1 FROM "Prompt" p WHERE p."teamId" = m."teamId" AND p."userId" = m."userId")
               ORDER BY m."userId" DESC LIMIT 1""",
            (team, role),
        ).fetchone()
        assert row, f"no {role} with a prompt in {team}"
        params = principal(conn, row[0])
        params["own_prompt"] = conn.execute(
            """SELECT id FROM "Prompt" WHERE "teamId" = %s AND "userId" = %s ORDER BY id LIMIT 1""", (team, row[0])
        ).fetchone()[0]  # type: ignore[index]
        params["outsider"] = conn.execute(
            """SELECT u.id FROM "User" u WHERE NOT EXISTS (SELECT 1 FROM "TeamMember" m
                   WHERE m."teamId" = %s AND m."userId" = u.id) ORDER BY u.id LIMIT 1""",
            (team,),
        ).fetchone()[0]  # type: ignore[index]
        params["new_id"] = "bench-new"
        params["author"] = row[0]
        prompts = [
            r[0]
            for r in conn.execute(
                """SELECT id FROM "Prompt" WHERE "teamId" = %s ORDER BY "updatedAt" DESC, id LIMIT 20""", (team,)
            )
        ]
        params.update(team=team, prompt=prompts[0], prompts=prompts)
        chosen[label] = params
    # An API key of the big team: its session reads the team's prompts and audit rows, and writes
    # prompts authored by a member of the team (its scopes).
    raw = conn.execute("SELECT rlsctl.create_api_key('tbig', 'bench', %s::text[])", (KEY_SCOPES,)).fetchone()[0]  # type: ignore[index]
    big = chosen["big MEMBER"]
    chosen["big API key"] = {
        "user": None,
        "api_key": raw,
        "member_teams": ["tbig"],
        "admin_teams": ["tbig"],
        "team": "tbig",
        "prompt": big["prompt"],
        "prompts": big["prompts"],
        "author": big["user"],
        "own_prompt": big["own_prompt"],
        "new_id": "bench-new",
    }
    return chosen


def enter(conn: psycopg.Connection, app: str, params: dict[str, Any]) -> None:
    """The principal of one transaction: the app role, with a user identity or an API key."""
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(app)))
    if params.get("api_key"):
        assert conn.execute("SELECT rlsctl.authenticate_api_key(%s)", (params["api_key"],)).fetchone() == (True,)
    else:
        conn.execute("SELECT pg_catalog.set_config('app.user_id', %s, true)", (params["user"],))


class Statement:
    """One way of running one statement text, as the application's driver sends it.

    - "prepared": the driver prepares the statement once per connection and executes it again and
      again (JDBC, pgx, Prisma, psycopg after five runs): after five custom plans PostgreSQL settles on
      a generic plan when it is not costlier, so a run costs execution, not planning. Here a SQL-level
      PREPARE per statement and way (psycopg's own cache is cleared by every rollback, and the writes
      roll back), executed with its arguments.
    - "one-shot": parsed and planned at every execution (simple drivers, transaction-mode poolers
      without prepared statements): the planning of the policies' subqueries is in every run.
    - "custom": prepared, with `plan_cache_mode = force_custom_plan` in the transaction (both ways):
      a plan for the values of each execution, never a generic one (docs/performance.md, the
      generic plan trap); not run unless asked for.
    """

    def __init__(self, conn: psycopg.Connection, text: str, params: dict[str, Any], protocol: str, name: str):
        self.conn, self.text, self.protocol = conn, text, protocol
        self.names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", text)))
        if protocol in PREPARED:
            self.name = name
            body = re.sub(r"%\((\w+)\)s", lambda m: f"${self.names.index(m.group(1)) + 1}", text)
            types = ", ".join("text[]" if isinstance(params[n], list) else "text" for n in self.names)
            # The name through psycopg's quoting; the types from the two above; the body is ours.
            # A statement without parameters is prepared and executed without the parentheses.
            listed = sql.SQL(" ({})").format(sql.SQL(types)) if types else sql.SQL("")
            prepare = sql.SQL("PREPARE {}{} AS ").format(sql.Identifier(name), listed)
            conn.execute(prepare + sql.SQL(body))  # type: ignore[arg-type]
            self.cursor = psycopg.ClientCursor(conn)
            arguments = sql.SQL(", ").join(sql.Placeholder() * len(self.names))
            self.call = sql.SQL("EXECUTE {}{}").format(
                sql.Identifier(name), sql.SQL("({})").format(arguments) if self.names else sql.SQL("")
            )

    def run(self, params: dict[str, Any]) -> list:
        if self.protocol in PREPARED:
            cursor = self.cursor
            cursor.execute(self.call, [params[n] for n in self.names])
        else:
            cursor = self.conn.execute(self.text.encode(), params, prepare=False)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else [cursor.rowcount]


def batch(
    conn: psycopg.Connection,
    statement: Statement,
    params: dict[str, Any],
    runs: int,
    app: str | None,
    write: bool = False,
) -> tuple[list, list]:
    """Run `statement` `runs` times in one transaction (as `app` with its identity when given); the
    times and rows (a write's: its row count). A write runs in a savepoint rolled back after each run."""
    with conn.transaction(force_rollback=True):
        if statement.protocol == "custom":
            conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        return batch_in_transaction(conn, statement, params, runs, app, write)


def batch_in_transaction(
    conn: psycopg.Connection,
    statement: Statement,
    params: dict[str, Any],
    runs: int,
    app: str | None,
    write: bool,
) -> tuple[list, list]:
    """batch()'s runs, in the caller's transaction."""
    times: list[float] = []
    rows: list = []
    if app:
        enter(conn, app, params)
    for _ in range(runs):
        if write:
            conn.execute("SAVEPOINT bench_write")
        started = time.perf_counter()
        rows = statement.run(params)
        times.append(time.perf_counter() - started)
        if write:
            conn.execute("ROLLBACK TO SAVEPOINT bench_write")
    return times, rows


@dataclass
class Ways:
    """A query's two ways under one protocol: as the app under RLS, and the superuser's baseline."""

    rls: Statement
    base: Statement


def prepare(conn: psycopg.Connection, query: Query, params: dict[str, Any], protocol: str, index: int) -> Ways:
    rls_sql, base_sql = query.rls.format(check=""), query.rls.format(check=query.baseline)
    return Ways(
        Statement(conn, rls_sql, params, protocol, f"bench_{protocol.replace('-', '_')}_rls_{index}"),
        Statement(conn, base_sql, params, protocol, f"bench_{protocol.replace('-', '_')}_base_{index}"),
    )


def measure(
    conn: psycopg.Connection,
    query: Query,
    ways: Ways,
    label: str,
    params: dict[str, Any],
    app: str,
    runs: int,
    warmup: int,
) -> Timing:
    timing = Timing(query.name, label, ways.rls.protocol)
    checked = max(warmup, 1)  # the warm-up runs' rows are compared: at least one, even with --warmup 0
    _, rls_rows = batch(conn, ways.rls, params, checked, app, query.write)
    _, base_rows = batch(conn, ways.base, params, checked, None, query.write)
    if rls_rows != base_rows:
        raise SystemExit(
            f"RESULTS DIFFER: {query.name} for {label} ({timing.protocol}): "
            f"{len(rls_rows)} rows under RLS, {len(base_rows)} in the baseline"
            f"\n  RLS first rows: {rls_rows[:3]}\n  baseline first rows: {base_rows[:3]}"
        )
    if not rls_rows:
        raise SystemExit(f"EMPTY RESULT: {query.name} for {label} returns no row; the comparison would prove nothing")
    rounds = 3
    for _ in range(rounds):  # interleaved, so a busy moment of the machine hits both alike
        times, _ = batch(conn, ways.rls, params, math.ceil(runs / rounds), app, query.write)
        timing.rls.extend(times)
        times, _ = batch(conn, ways.base, params, math.ceil(runs / rounds), None, query.write)
        timing.base.extend(times)
    return timing


def explain(conn: psycopg.Connection, text: str, params: dict[str, Any], app: str | None) -> str:
    cursor = psycopg.ClientCursor(conn)
    with conn.transaction(force_rollback=True):
        if app:
            enter(conn, app, params)
        cursor.execute(("EXPLAIN (ANALYZE off, COSTS off) " + text).encode(), params)  # type: ignore[arg-type]
        return "\n".join(row[0] for row in cursor.fetchall())


def identity_costs(conn: psycopg.Connection, app: str, user: str, raw_key: str, runs: int) -> None:
    """What a transaction pays to say who it acts for: one statement (one round trip) each."""
    setting: list[float] = []
    authenticating: list[float] = []
    for _ in range(runs):
        with conn.transaction(force_rollback=True):
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(app)))
            started = time.perf_counter()
            conn.execute("SELECT pg_catalog.set_config('app.user_id', %s, true)", (user,)).fetchall()
            setting.append(time.perf_counter() - started)
        with conn.transaction(force_rollback=True):
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(app)))
            started = time.perf_counter()
            conn.execute("SELECT rlsctl.authenticate_api_key(%s)", (raw_key,)).fetchall()
            authenticating.append(time.perf_counter() - started)
    print(
        f"\nper transaction (median of {runs}, one round trip each): setting the user identity "
        f"{statistics.median(setting) * 1000:.3f} ms, authenticating an API key "
        f"{statistics.median(authenticating) * 1000:.3f} ms"
    )


# What a statement pays to learn the user's teams, measured three ways in one run: the floor any RLS
# layer stands on (the baseline is handed the team ids; a policy has to look them up), next to
# rlsctl's helper, which does the same lookup as a SECURITY DEFINER function.
LOOKUPS = (
    ("a round trip (SELECT 1), the superuser", "SELECT 1", False),
    (
        "the superuser's own lookup of the user's teams in the statement",
        """SELECT (SELECT pg_catalog.array_agg(t) FROM (
               SELECT "teamId" AS t FROM "TeamMember" WHERE "userId" = %(user)s
               UNION ALL SELECT id FROM "Team" WHERE "ownerId" = %(user)s) AS mine)""",
        False,
    ),
    ("rlsctl's tenant_ids('MEMBER') as the app", "SELECT (SELECT rlsctl.tenant_ids('MEMBER'))", True),
)


def lookup_costs(conn: psycopg.Connection, app: str, params: dict[str, Any], runs: int) -> None:
    """The floor: one membership lookup in a statement, prepared, medians of interleaved batches."""
    statements = [
        (label, Statement(conn, text, params, "prepared", f"bench_lookup_{index}"), app if as_app else None)
        for index, (label, text, as_app) in enumerate(LOOKUPS)
    ]
    times: dict[str, list[float]] = {label: [] for label, _, _ in statements}
    for _ in range(3):  # interleaved, as measure() does
        for label, statement, role in statements:
            batch(conn, statement, params, WARMUP_CALLS, role)  # plans made, caches warm
            times[label] += batch(conn, statement, params, math.ceil(runs / 3), role)[0]
    medians = {label: statistics.median(found) * 1000 for label, found in times.items()}
    trip = medians[LOOKUPS[0][0]]
    print(f"\none lookup of the user's teams in a statement (prepared, median of {runs}, as the small team's MEMBER):")
    for label, ms in medians.items():
        extra = "" if label == LOOKUPS[0][0] else f" ({ms - trip:+.3f} ms over the round trip)"
        print(f"  {label}: {ms:.3f} ms{extra}")


def helper_costs(conn: psycopg.Connection, chosen: dict[str, dict[str, Any]], app: str, runs: int) -> None:
    """Where a statement's time goes under RLS: for each statement, as the big team's MEMBER (an
    ADMIN where a MEMBER may not), how often each rlsctl function runs and its own time, from
    PostgreSQL's per-function statistics of one transaction (track_functions, whose clock adds a
    little to every call). Prepared statements, so what is counted is execution, not planning."""
    print(
        f"\nrlsctl functions per statement under RLS (prepared, {runs} executions, track_functions = 'all'; "
        "each function's own time, nested calls apart):"
    )
    for index, query in enumerate(QUERIES + WRITES):
        label = "big MEMBER" if query.for_members else "big ADMIN"
        params = chosen[label]
        statement = Statement(conn, query.rls.format(check=""), params, "prepared", f"bench_helpers_{index}")
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL track_functions = 'all'")  # a superuser's setting: before the role
            batch_in_transaction(conn, statement, params, WARMUP_CALLS, app, query.write)  # plans made
            conn.execute("RESET ROLE")
            before = function_counters(conn)
            batch_in_transaction(conn, statement, params, runs, app, query.write)
            conn.execute("RESET ROLE")
            after = function_counters(conn)
        # The backend holds counters until it reports them (at most once a second), across
        # transactions: the difference is this batch's.
        spent = {name: (calls - before.get(name, (0, 0.0))[0], ms - before.get(name, (0, 0.0))[1])
                 for name, (calls, ms) in after.items()}  # fmt: skip
        found = sorted(((name, calls, ms) for name, (calls, ms) in spent.items() if calls), key=lambda f: -f[2])
        parts = [f"{name} x{calls / runs:.2f} {self_ms * 1000 / runs:.1f} us" for name, calls, self_ms in found]
        total = sum(self_ms for _, _, self_ms in found) * 1000 / runs
        print(f"  {query.name:<18} {label:<11} {total:6.1f} us in all: {', '.join(parts) or 'none'}")


def function_counters(conn: psycopg.Connection) -> dict[str, tuple[int, float]]:
    """rlsctl's functions' calls and own milliseconds as this backend counts them."""
    rows = conn.execute(
        """SELECT funcname, calls, self_time FROM pg_catalog.pg_stat_xact_user_functions
           WHERE schemaname = 'rlsctl'"""
    ).fetchall()
    counters: dict[str, tuple[int, float]] = {}
    for name, calls, ms in rows:  # overloads (decrypt, encrypt) summed under their name
        known = counters.get(name, (0, 0.0))
        counters[name] = (known[0] + calls, known[1] + ms)
    return counters


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def report(timings: list[Timing], sizes: Sizes, runs: int) -> None:
    print(
        f"PromptCraft reads and writes, {sizes.small_teams} teams of {sizes.small_size} + one of {sizes.big_size}, "
        f"{sizes.prompts} prompts, {sizes.prompts * sizes.versions_per_prompt} versions, {sizes.audit} audit rows; "
        f"median of {runs} runs"
    )
    # measure() stops the run on the first difference: reaching here means every pair was equal.
    print(f"  result sets compared: {len(timings)} statement, principal and protocol pairs, RLS and baseline equal")
    print(
        f"  {'protocol':<9} {'statement':<18} {'principal':<13} {'RLS ms':>8} {'base ms':>8} {'ratio':>6} {'ruled':>6}"
    )
    for t in timings:
        print(
            f"  {t.protocol:<9} {t.query:<18} {t.user:<13} {t.rls_ms:8.3f} {t.base_ms:8.3f}"
            f" {t.ratio:6.2f} {t.ruled:6.2f}"
        )
    writes = {query.name for query in WRITES}
    for protocol in dict.fromkeys(t.protocol for t in timings):
        mine = [t for t in timings if t.protocol == protocol]
        print(f"{protocol}:")
        for label, group in (("reads", [t for t in mine if t.query not in writes]),
                             ("writes", [t for t in mine if t.query in writes])):  # fmt: skip
            if group:
                print(f"  {label}: geometric mean {geomean([t.ratio for t in group]):.2f} "
                      f"(ruled {geomean([t.ruled for t in group]):.2f})")  # fmt: skip
        worst = max(mine, key=lambda t: t.ratio)
        worst_ruled = max(mine, key=lambda t: t.ruled)
        print(
            f"  geometric mean ratio {geomean([t.ratio for t in mine]):.2f}, "
            f"worst {worst.ratio:.2f} ({worst.query}, {worst.user})"
        )
        print(
            f"  with the {NEAR_MS} ms rule: geometric mean {geomean([t.ruled for t in mine]):.2f}, "
            f"worst {worst_ruled.ruled:.2f} ({worst_ruled.query}, {worst_ruled.user})"
        )


def _number(kind: type, least: float, strictly: bool) -> Any:
    """An argparse type: a finite number of `kind` at least `least` (more than it when `strictly`);
    a bad one exits 2 naming the option, before anything is created."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < least or (strictly and value == least):
            raise argparse.ArgumentTypeError(f"must be {'more than' if strictly else 'at least'} {least:g}: {text!r}")
        return value

    return parse


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server", default=os.environ.get("RLSCTL_TEST_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument(
        "--scale",
        action="append",
        type=_number(float, 0, strictly=True),
        help="multiplies teams, users and rows (repeatable: each scale on its own load, then how each ratio "
        "grows from the first to the last; default 1)",
    )
    parser.add_argument(
        "--runs", type=_number(int, 1, strictly=False), default=30, help="timed runs per query, user and way"
    )
    parser.add_argument(
        "--warmup", type=_number(int, 0, strictly=False), default=5, help="untimed runs first (their rows compared)"
    )
    parser.add_argument(
        "--protocol",
        action="append",
        choices=PROTOCOLS,
        help="how the application's driver sends statements (repeatable; default prepared and one-shot): "
        "prepared once and executed again and again, planned at every execution, or prepared with "
        "plan_cache_mode = force_custom_plan",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and roles (prints their names)")
    args = parser.parse_args()
    args.protocol = args.protocol or ["prepared", "one-shot"]
    scales = list(dict.fromkeys(args.scale or [1.0]))
    measured = []
    for number, scale in enumerate(scales):
        if number:
            print("\n")
        measured.append((scale, run_at(args, Sizes.scaled(scale))))
    if len(measured) > 1:
        growth(measured)
    return 0


def run_at(args: argparse.Namespace, sizes: Sizes) -> list[Timing]:
    """One scale: its own throw-away database and roles, loaded, measured, reported, dropped."""
    name, prefix = f"rlsctl_bench_{secrets.token_hex(4)}", f"bench{secrets.token_hex(3)}_"
    admin = conninfo.make_conninfo(args.server, dbname="postgres")
    signal.signal(signal.SIGTERM, _terminated(admin, name, prefix, args.keep))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    print(
        f"benchmark database {name}, roles {prefix}* ({'kept' if args.keep else 'dropped'} at the end)", file=sys.stderr
    )
    dsn = conninfo.make_conninfo(args.server, dbname=name)
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET rlsctl.master_key = {}").format(
                    sql.Identifier(name), sql.Literal(secrets.token_hex(32))
                )
            )
        project = load_project(ROOT, role_prefix=prefix)
        with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
            started = time.perf_counter()
            migrating.migrate(conn, project, Target(dsn, name))
            applying.apply(conn, project, name)
            generate(conn, sizes)
            encrypt(dsn, prefix)
            print(f"setup (migrate, apply, generate, keys encrypt, analyze): {time.perf_counter() - started:.1f} s")
            return measure_all(conn, args, sizes, f"{prefix}app")
    finally:
        if args.keep:
            print(f"\nkept: database {name}, roles {prefix}*")
        else:
            drop(admin, name, prefix)


def measure_all(conn: psycopg.Connection, args: argparse.Namespace, sizes: Sizes, app: str) -> list[Timing]:
    """Every statement for every principal and protocol, the report, and where the time goes."""
    chosen = subjects(conn, sizes)
    timings = []
    for protocol in args.protocol:
        for index, query in enumerate(QUERIES + WRITES):
            ways = prepare(conn, query, next(iter(chosen.values())), protocol, index)
            timings += [
                measure(conn, query, ways, label, params, app, args.runs, args.warmup)
                for label, params in chosen.items()
                if (query.for_keys or "api_key" not in params) and (query.for_members or "MEMBER" not in label)
            ]
    report(timings, sizes, args.runs)
    identity_costs(conn, app, chosen["small MEMBER"]["user"], chosen["big API key"]["api_key"], args.runs)
    lookup_costs(conn, app, chosen["small MEMBER"], max(args.runs, 10) * 10)
    helper_costs(conn, chosen, app, max(args.runs, 10) * 10)
    worst = max(timings, key=lambda t: t.ratio)
    query = next(q for q in QUERIES + WRITES if q.name == worst.query)
    params = chosen[worst.user]
    print(f"\nPlan of the worst, {worst.query} for {worst.user}, under RLS (as {app}):")
    print(explain(conn, query.rls.format(check=""), params, app))
    print("\nand the baseline's (superuser, hand-written WHERE):")
    print(explain(conn, query.rls.format(check=query.baseline), params, None))
    print(f"\n{app}'s SELECT policies on the tables it reads (pg_policies):")
    for table, policy, qual in conn.execute(
        """SELECT tablename, policyname, qual FROM pg_catalog.pg_policies
           WHERE %s = ANY(roles) AND cmd IN ('SELECT', 'ALL') AND strpos(%s, '"' || tablename || '"') > 0
           ORDER BY tablename, policyname""",
        (app, query.rls),
    ):
        print(f"  {table}.{policy}: {qual}")
    return timings


def growth(measured: list[tuple[float, list[Timing]]]) -> None:
    """Each ratio at every scale, and how it grew from the first scale to the last: what a
    bigger team and bigger tables cost under RLS that the baseline does not pay."""
    scales = [scale for scale, _ in measured]
    print("\n\nHow each ratio grows with team size and table size, scale by scale:")
    for scale in scales:
        sizes = Sizes.scaled(scale)
        print(
            f"  scale {scale:g}: {sizes.small_teams} teams of {sizes.small_size} + one of {sizes.big_size}, "
            f"{sizes.prompts} prompts, {sizes.audit} audit rows"
        )
    at = [{(t.protocol, t.query, t.user): t for t in timings} for _, timings in measured]
    header = " ".join(f"{f'at {scale:g}':>9}" for scale in scales)
    print(f"  {'protocol':<9} {'statement':<18} {'principal':<13} {header} {'growth':>8}")
    for key in at[0]:
        if all(key in one for one in at):
            ratios = [one[key].ratio for one in at]
            shown = " ".join(f"{ratio:9.2f}" for ratio in ratios)
            print(f"  {key[0]:<9} {key[1]:<18} {key[2]:<13} {shown} {f'x{ratios[-1] / ratios[0]:.2f}':>8}")
    for protocol in dict.fromkeys(key[0] for key in at[0]):
        means = [geomean([t.ratio for t in one.values() if t.protocol == protocol]) for one in at]
        ruled = [geomean([t.ruled for t in one.values() if t.protocol == protocol]) for one in at]
        worst = [max(t.ratio for t in one.values() if t.protocol == protocol) for one in at]
        print(
            f"  {protocol}: geometric mean {' -> '.join(f'{m:.2f}' for m in means)} "
            f"(ruled {' -> '.join(f'{m:.2f}' for m in ruled)}), worst {' -> '.join(f'{w:.2f}' for w in worst)}"
        )


def _terminated(admin: str, name: str, prefix: str, keep: bool) -> Callable[[int, object], None]:
    """A SIGTERM handler (a CI timeout, `timeout`, a terminal closing) that drops the throw-away
    database and roles and exits 128 + the signal. It does not raise: an exception raised while a
    connection waits for the server leaves that connection mid-command, its rollback then fails
    and its error replaces the exit (seen: exit 1, "another command is already in progress").
    A fresh connection drops the database WITH (FORCE), which also ends the busy one."""

    def handler(signum: int, frame: object) -> None:
        try:
            if keep:
                print(f"\nkept: database {name}, roles {prefix}*", file=sys.stderr)
            else:
                drop(admin, name, prefix)
        except psycopg.Error as exc:
            print(f"policy_cost_bench: cleanup failed: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 + signum)

    return handler


def drop(admin: str, name: str, prefix: str) -> None:
    """The throw-away database and roles, gone."""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (prefix,)):
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except psycopg.Error as exc:  # the server refused or went away: one line, not a traceback
        sys.exit(f"policy_cost_bench: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}")
