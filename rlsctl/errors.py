"""Errors that end a command with a clear one-line message.

The CLI turns `RlsctlError` into its message on stderr and its exit status;
any other exception is a bug and is reported as such.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2


class RlsctlError(Exception):
    """An error the user can act on; `str()` is the whole message."""

    exit_code = EXIT_USAGE


class UsageError(RlsctlError):
    """Bad input: arguments, project files, DSN, state of the database."""


class PolicyFileError(UsageError):
    """A policy file is malformed or names something that does not exist."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        location = f"{path}:{line}" if line else path
        super().__init__(f"{location}: {message}")


class ConnectionFailed(UsageError):
    """The database could not be reached; the message names the host."""


class LockTimeout(UsageError):
    """Another rlsctl run held the advisory lock past --lock-timeout."""


class MissingExtension(UsageError):
    """An extension the project needs is not installed on the server."""


class RetireBlocked(UsageError):
    """A column that may still hold ciphertext is no longer declared: no key may be retired."""
