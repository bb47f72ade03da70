"""Options and error handling shared by the command groups of the CLI."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from rlsctl.errors import EXIT_USAGE, RlsctlError

F = TypeVar("F", bound=Callable[..., Any])


def options_dsn(func: F) -> F:
    func = click.option(
        "--dsn",
        metavar="DSN",
        help="Database to use; default DATABASE_URL, else the libpq environment (PGHOST, ...).",
    )(func)
    return func


def options_project(func: F) -> F:
    func = click.option(
        "--project",
        metavar="DIR",
        help="Project folder (policies/, migrations/); default RLSCTL_PROJECT, the current "
        "directory when it has policies/, else the bundled PromptCraft project.",
    )(func)
    func = click.option(
        "--role-prefix",
        metavar="PREFIX",
        envvar="RLSCTL_ROLE_PREFIX",
        help="Override the project's role prefix (roles are cluster-wide: staging and "
        "production sharing a cluster need different prefixes).",
    )(func)
    return func


def lock_timeout_option(func: F) -> F:
    return click.option(
        "--lock-timeout",
        type=click.FloatRange(min=0.001),
        default=10.0,
        show_default=True,
        metavar="S",
        help="Seconds to wait for the advisory lock and for table locks.",
    )(func)


def handle_errors(func: F) -> F:
    """Turn `RlsctlError` into its message and exit status; anything else is a bug."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BaseException as exc:  # every way out: one line and an exit status
            _exit_for(exc)

    return wrapper  # type: ignore[return-value]


def _exit_for(exc: BaseException) -> None:
    """Print one line for `exc` and exit with its status (re-raise what is not ours to end)."""
    # Imported here, once something went wrong: listing the commands stays light.
    from rlsctl.cli import output

    if isinstance(exc, SystemExit | click.exceptions.Exit | click.ClickException | click.exceptions.Abort):
        raise exc
    if isinstance(exc, RlsctlError):
        output.error(str(exc))
        sys.exit(exc.exit_code)
    if _is_database_error(exc):
        text = str(exc).strip().splitlines()
        output.error(f"database error: {text[0] if text else type(exc).__name__}")
        sys.exit(EXIT_USAGE)
    if isinstance(exc, KeyboardInterrupt):
        output.error("interrupted; the current transaction was rolled back")
        sys.exit(130)
    if not isinstance(exc, Exception) or os.environ.get("RLSCTL_DEBUG"):
        raise exc
    # A bug: say so in one line, keep the traceback for debugging.
    output.error(f"internal error: {type(exc).__name__}: {exc} (set RLSCTL_DEBUG=1 for details)")
    sys.exit(EXIT_USAGE)


def _is_database_error(exc: BaseException) -> bool:
    """A psycopg error, recognised without importing psycopg (a command that raised one loaded it)."""
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.Error)


def load_project_option(project: str | None, role_prefix: str | None) -> Any:
    from rlsctl.policy.project import load_project, resolve_project_dir

    return load_project(resolve_project_dir(project), role_prefix=role_prefix)
