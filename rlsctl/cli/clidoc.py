"""Generate docs/cli.md from the click commands: `python -m rlsctl.cli.clidoc > docs/cli.md`.

A test regenerates it and compares, so the reference never falls behind the CLI.
"""

from __future__ import annotations

import click

from rlsctl.cli.main import main

HEADER = """# CLI reference

Generated from `rlsctl --help` by `python -m rlsctl.cli.clidoc > docs/cli.md`; a test
checks it is current. Exit status everywhere: 0 clean, 1 findings, failures or
drift, 2 usage or connection error.
"""


def reference() -> str:
    parts = [HEADER]
    context = main.make_context("rlsctl", [], resilient_parsing=True, terminal_width=100)
    parts += _sections(main, context, "rlsctl")
    return "".join(parts)


def _sections(group: click.Group, context: click.Context, prefix: str) -> list[str]:
    """One section per command, groups followed by their own commands."""
    found: list[str] = []
    for name in sorted(group.list_commands(context)):
        command = group.get_command(context, name)
        assert command is not None
        sub = command.make_context(name, [], parent=context, resilient_parsing=True, terminal_width=100)
        found.append(f"\n## {prefix} {name}\n\n```\n{command.get_help(sub).rstrip()}\n```\n")
        if isinstance(command, click.Group):
            found += _sections(command, sub, f"{prefix} {name}")
    return found


if __name__ == "__main__":
    print(reference(), end="")
