"""Retention (docs/retention.md): expired rows deleted in batches, legal holds, pg_cron jobs.

`Retention` is the session (session.py); the commands are `run` (run.py), the
holds (holds.py) and `schedule` (schedule.py).
"""

from rlsctl.retention.holds import HoldChange, StatusRow, change, status
from rlsctl.retention.run import Observer, RetentionRun, TableRun, run
from rlsctl.retention.schedule import ScheduleReport, schedule
from rlsctl.retention.session import Retention

__all__ = [
    "HoldChange",
    "Observer",
    "Retention",
    "RetentionRun",
    "ScheduleReport",
    "StatusRow",
    "TableRun",
    "change",
    "run",
    "schedule",
    "status",
]
