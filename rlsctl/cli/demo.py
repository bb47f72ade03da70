"""`rlsctl demo`: the whole flow, phase by phase, on a throw-away PostgreSQL.

Without `--dsn` it starts a temporary cluster from the installed binaries;
with `--dsn` it creates a temporary database on that server (and roles with
a random prefix, since roles are cluster-wide) and drops both afterwards.
Per phase: migrate -> apply -> test, with progress, then a summary.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import conninfo

from rlsctl.change import apply as applying
from rlsctl.migrate import run as migrating
from rlsctl.pg import db, localpg, statements
from rlsctl.pg.templates import render_template
from rlsctl.policy.project import Project
from rlsctl.tester.run import run_matrix

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PhaseSummary:
    phase: int
    name: str
    tables: tuple[str, ...]
    pending: tuple[str, ...]
    statements: int
    cells: int
    mismatches: int


@dataclass(frozen=True)
class DemoResult:
    server: str
    identity_setting: str
    phases: tuple[PhaseSummary, ...]

    @property
    def ok(self) -> bool:
        return all(phase.mismatches == 0 for phase in self.phases)


@contextmanager
def _database(
    dsn: str | None, project: Project, progress: Progress, role_prefix: str | None = None
) -> Iterator[tuple[db.Target, Project, str]]:
    if dsn is None:
        progress("starting a throw-away PostgreSQL cluster (initdb + pg_ctl)")
        with localpg.temporary_cluster(secret_settings=_demo_master_key(project)) as cluster:
            with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
                admin.execute(render_template("ops/create_database.sql.j2", name="demo").encode())
            yield db.Target(cluster.dsn("demo"), "throw-away cluster"), project, "a throw-away cluster"
            progress("stopping the throw-away cluster and deleting its files")
        return
    # On an existing server: a temporary database, and a role prefix of its own.
    suffix = secrets.token_hex(3)
    name = f"rlsctl_demo_{suffix}"
    server = db.resolve_dsn(dsn)
    # The given prefix starts the demo's own: the roles dropped afterwards are only the demo's.
    prefix = f"{role_prefix or 'rlsctl_'}demo_{suffix}_"
    scoped = project.with_role_prefix(prefix)
    try:  # from the CREATE on: a signal right after it still drops the database
        progress(f"creating temporary database {name} on {server.where}")
        with db.session(server) as admin:
            admin.execute(render_template("ops/create_database.sql.j2", name=name).encode())
        yield (
            db.Target(_with_master_key(server.dsn, name, scoped), f"{server.where} ({name})"),
            scoped,
            server.where,
        )
    finally:
        progress(f"dropping temporary database {name} and roles {prefix}*")
        with db.session(server) as admin:
            admin.execute(render_template("ops/drop_database.sql.j2", name=name).encode())
            for row in statements.run(admin, "roles_with_prefix", prefix=prefix):
                admin.execute(render_template("ops/drop_role.sql.j2", name=row["name"]).encode())


def _demo_master_key(project: Project) -> dict[str, str]:
    """A random key-encryption key for a throw-away demo (docs/encryption.md: production keeps its own)."""
    return {project.settings.encryption.master_key_setting: secrets.token_hex(32)}


def _with_master_key(dsn: str, database: str, project: Project) -> str:
    """The demo database's DSN, carrying a random key-encryption key in libpq options (never in SQL)."""
    params = conninfo.conninfo_to_dict(dsn)
    ((setting, key),) = _demo_master_key(project).items()
    options = f"{params.get('options') or ''} -c {setting}={key}".strip()
    return conninfo.make_conninfo(dsn, dbname=database, options=options)


def run_demo(project: Project, dsn: str | None, progress: Progress, role_prefix: str | None = None) -> DemoResult:
    summaries: list[PhaseSummary] = []
    with (
        localpg.termination_unwinds(),  # a stopped demo still drops what it made
        _database(dsn, project, progress, role_prefix) as (target, scoped, server),
        db.session(target) as conn,
    ):
        for phase in scoped.phases:
            progress(f"phase {phase.label}: migrate")
            migrating.migrate(conn, scoped, target, to=phase.number)
            progress(f"phase {phase.label}: apply")
            report = applying.apply(conn, scoped, target.where)
            progress(f"phase {phase.label}: test (impersonating every principal)")
            matrix = run_matrix(conn, scoped, target.where)
            summaries.append(
                PhaseSummary(
                    phase=phase.number,
                    name=phase.name,
                    tables=report.managed,
                    pending=tuple(name for name, _ in report.plan.pending),
                    statements=len(report.plan.statements),
                    cells=len(matrix.cells),
                    mismatches=len(matrix.failures) + len(matrix.violations) + len(matrix.case_failures),
                )
            )
    return DemoResult(server, project.settings.identity.setting, tuple(summaries))
