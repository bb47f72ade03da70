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
        help="Project folder (policies/, migrations/); default RLSCTL_PROJECT, else the current "
        "directory when it has policies/ (no project: exit 2).",
    )(func)
    func = click.option(
        "--role-prefix",
        metavar="PREFIX",
        envvar="RLSCTL_ROLE_PREFIX",
        show_envvar=True,
        help="Override the project's role prefix, used as written: 'acme_' makes acme_app, 'acme' "
        "makes acmeapp (roles are cluster-wide: staging and production sharing a cluster need "
        "different prefixes).",
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


# The status of a program SIGPIPE ends (128 + 13), what shells and `set -o pipefail` report:
# the reader of stdout went away (`rlsctl drift --format json | head -1`), so the output was
# cut short. Never 0: a truncated report of drift must not read as "no drift".
EXIT_CLOSED_PIPE = 141


def handle_errors(func: F) -> F:
    """Turn `RlsctlError` and click's usage errors into one line and exit status 2, a closed
    stdout into a quiet exit 141; anything else is a bug."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            try:
                return func(*args, **kwargs)
            finally:
                # What is still buffered goes now, so that a reader that left is seen here
                # and not at interpreter exit (where Python prints "Exception ignored").
                if sys.stdout is not None:  # None: started with stdout closed
                    sys.stdout.flush()
        except BaseException as exc:  # every way out: one line and an exit status
            _exit_for(exc)

    return wrapper  # type: ignore[return-value]


def _exit_for(exc: BaseException) -> None:
    """Print one line for `exc` and exit with its status (re-raise what is not ours to end)."""
    # Imported here, once something went wrong: listing the commands stays light.
    from rlsctl.cli import output

    if isinstance(exc, BrokenPipeError):
        _detach_stdout()
        sys.exit(EXIT_CLOSED_PIPE)
    if isinstance(exc, click.ClickException):
        # Raised by the command itself (a value it checks): one line like every other error,
        # not click's usage text; click's own parser errors never reach this wrapper.
        output.error(exc.format_message())
        sys.exit(EXIT_USAGE)
    if isinstance(exc, SystemExit | click.exceptions.Exit | click.exceptions.Abort):
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


def _detach_stdout() -> None:
    """Point stdout at /dev/null: the interpreter's last flush would hit the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file behind stdout (a test runner's buffer): nothing to flush
        pass


def _is_database_error(exc: BaseException) -> bool:
    """A psycopg error, recognised without importing psycopg (a command that raised one loaded it)."""
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.Error)


def load_project_option(project: str | None, role_prefix: str | None, bundled: bool = False) -> Any:
    """The project the options name (exit 2 when there is none; `bundled`: the demo's example)."""
    from rlsctl.policy.project import load_project, resolve_project_dir

    return load_project(resolve_project_dir(project, bundled=bundled), role_prefix=role_prefix)
