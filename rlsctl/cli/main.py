"""The `rlsctl` command line: parses arguments, calls the library, prints, exits.

Exit status: 0 clean, 1 findings / failures / drift, 2 usage or connection
error (one line on stderr, never a traceback).

Commands are loaded when they run: `rlsctl --version` imports nothing but
click, and `rlsctl --help` only the light modules that declare the commands
(each command imports the library and rich inside its own body).
"""

from __future__ import annotations

import importlib
import logging

import click

# name -> (module, attribute): where each command is declared.
COMMANDS = {
    "apply": ("rlsctl.cli.commands", "apply_command"),
    "audit": ("rlsctl.cli.audit", "audit_group"),
    "demo": ("rlsctl.cli.commands", "demo"),
    "drift": ("rlsctl.cli.commands", "drift"),
    "explain": ("rlsctl.cli.explain", "explain_command"),
    "keys": ("rlsctl.cli.keys", "keys_group"),
    "lint": ("rlsctl.cli.commands", "lint"),
    "migrate": ("rlsctl.cli.commands", "migrate"),
    "plan": ("rlsctl.cli.commands", "plan"),
    "render": ("rlsctl.cli.commands", "render"),
    "report": ("rlsctl.cli.report", "report_command"),
    "retention": ("rlsctl.cli.retention", "retention_group"),
    "rollback": ("rlsctl.cli.commands", "rollback"),
    "test": ("rlsctl.cli.commands", "test_command"),
    "verify": ("rlsctl.cli.commands", "verify"),
}


class LazyGroup(click.Group):
    """A group whose commands are imported from `COMMANDS` when they are asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, attribute = where
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rlsctl")
def main() -> None:
    """rlsctl: declare, render, apply and prove PostgreSQL row-level security."""
    # psycopg logs what it could not do while unwinding (the rollback of a transaction whose
    # query a Ctrl-C interrupted): Python would print that warning on stderr, next to rlsctl's
    # own one line (the server drops the transaction with the connection anyway).
    logging.getLogger("psycopg").addHandler(logging.NullHandler())


if __name__ == "__main__":  # pragma: no cover
    main()
