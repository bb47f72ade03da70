"""`rlsctl retention schedule`: pg_cron jobs that run retention in the database, idempotently.

One job per table declaring retention, scheduled with cron.schedule_in_database
from the database where pg_cron lives (cron.database_name) to run in the
project's database; and one job there that trims pg_cron's own log
(cron.job_run_details), since PostgreSQL has no DML across databases.

pg_cron runs a job as the login that scheduled it (on PostgreSQL 15 it cannot
log in as a NOLOGIN role): the job's command calls the table's batch function,
SECURITY DEFINER and owned by the retention role, so what may be deleted is
still decided by that role's policies (templates/ops/retention_job.sql.j2).

Scheduling again changes only what differs (a job whose schedule or command
changed is updated, a table that no longer declares retention loses its job);
`remove` unschedules them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg import errors as pgerrors

from rlsctl.errors import UsageError
from rlsctl.pg import db, statements
from rlsctl.pg.templates import render_template
from rlsctl.pg.walker import BUSY_RETRIES, FIRST_BATCH, MIN_BATCH
from rlsctl.retention.run import LARGEST_BATCH
from rlsctl.retention.session import Retention, first_line

PREFIX = "rlsctl retention "
TRIM_JOB = PREFIX + "trims cron.job_run_details"
DAILY = "17 3 * * *"  # pg_cron reads schedules in GMT


@dataclass(frozen=True)
class Job:
    name: str
    schedule: str
    command: str
    database: str


@dataclass
class ScheduleReport:
    cron_database: str
    database: str
    username: str  # pg_cron runs the jobs as this login
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def job_name(database: str, table: str) -> str:
    return f"{PREFIX}{database}: {table}"


def wanted_jobs(
    retention: Retention,
    database: str,
    cron_database: str,
    schedule: str = DAILY,
    history_days: int = 30,
    lock_timeout: float = 2.0,
) -> list[Job]:
    """The jobs this project's retention needs: one per table that can be batched, and the trim."""
    found = []
    for table in retention.tables():
        if not table.primary_key or table.static_hold:
            continue
        command = render_template(
            "ops/retention_job.sql.j2",
            retention.templates,
            helper_schema=retention.state.helper_schema,
            function=table.function,
            table=table.table,
            lock_wait=f"{int(lock_timeout * 1000)}ms",
            first_batch=FIRST_BATCH,
            min_batch=MIN_BATCH,
            max_batch=LARGEST_BATCH,
            busy_retries=BUSY_RETRIES,
            target_ms=100,
        )
        found.append(Job(job_name(database, table.table), schedule, command.strip(), database))
    trim = render_template("ops/retention_cron_trim.sql.j2", retention.templates, days=history_days)
    found.append(Job(TRIM_JOB, DAILY, trim.strip(), cron_database))
    return found


def schedule(
    retention: Retention,
    target: db.Target,
    every: str = DAILY,
    history_days: int = 30,
    remove: bool = False,
    lock_timeout: float = 2.0,
) -> ScheduleReport:
    """Make pg_cron's jobs match this project's retention (or, `remove`, drop them)."""
    where = statements.run(retention.conn, "cron_database")[0]
    cron_database, database = where["cron_database"], where["database"]
    if not cron_database:
        raise UsageError(
            f"{retention.where}: pg_cron is not loaded: add it to shared_preload_libraries "
            "(and set cron.database_name), restart the server, CREATE EXTENSION pg_cron there"
        )
    report = ScheduleReport(cron_database, database, where["username"])
    wanted = [] if remove else wanted_jobs(retention, database, cron_database, every, history_days, lock_timeout)
    with db.session(_in_database(target, cron_database)) as cron:
        if not statements.run(cron, "cron_installed"):
            raise UsageError(
                f"{retention.where}: pg_cron is loaded but not installed: CREATE EXTENSION pg_cron in {cron_database}"
            )
        try:
            _sync(cron, wanted, database, report, remove)
        except pgerrors.InsufficientPrivilege as exc:
            raise UsageError(
                f"{retention.where}: {first_line(exc)} (scheduling needs a superuser, or EXECUTE on "
                "cron.schedule_in_database and cron.unschedule granted by one)"
            ) from None
    return report


def _in_database(target: db.Target, database: str) -> db.Target:
    """The same server and login, another database (where pg_cron keeps its jobs)."""
    params: dict[str, Any] = conninfo.conninfo_to_dict(target.dsn)
    params["dbname"] = database
    return db.Target(conninfo.make_conninfo(**params), f"{target.where.rsplit('/', 1)[0]}/{database}")


def _sync(cron: psycopg.Connection, wanted: list[Job], database: str, report: ScheduleReport, remove: bool) -> None:
    existing = [row for row in statements.run(cron, "cron_jobs", prefix=PREFIX) if row["username"] == report.username]
    ours = {row["jobname"]: row for row in existing}
    for job in wanted:
        row = ours.get(job.name)
        if row is not None and (row["schedule"], row["command"], row["database"]) == (
            job.schedule, job.command, job.database,
        ):  # fmt: skip
            report.unchanged.append(job.name)
            continue
        statements.run(cron, "cron_schedule", name=job.name, schedule=job.schedule, command=job.command,
                       database=job.database)  # fmt: skip
        (report.updated if row is not None else report.created).append(job.name)
    names = {job.name for job in wanted}
    mine = job_name(database, "")
    others = [row for row in existing if row["jobname"] != TRIM_JOB and not row["jobname"].startswith(mine)]
    for row in existing:
        stale = row["jobname"] not in names and row["jobname"].startswith(mine)
        # The trim job serves every database's jobs: it goes with the last of them.
        last_trim = remove and row["jobname"] == TRIM_JOB and not others
        if stale or last_trim:
            statements.run(cron, "cron_unschedule", jobid=row["jobid"])
            report.removed.append(row["jobname"])
