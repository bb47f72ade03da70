"""Generate docs/cli.md from the click commands: `python -m rlsctl.clidoc > docs/cli.md`.

A test regenerates it and compares, so the reference never falls behind the CLI.
"""

from __future__ import annotations

from rlsctl.cli import main

HEADER = """# CLI reference

Generated from `rlsctl --help` by `python -m rlsctl.clidoc > docs/cli.md`; a test
checks it is current. Exit status everywhere: 0 clean, 1 findings, failures or
drift, 2 usage or connection error.
"""


def reference() -> str:
    parts = [HEADER]
    context = main.make_context("rlsctl", [], resilient_parsing=True, terminal_width=100)
    for name in sorted(main.list_commands(context)):
        command = main.get_command(context, name)
        assert command is not None
        sub = command.make_context(name, [], parent=context, resilient_parsing=True, terminal_width=100)
        parts.append(f"\n## rlsctl {name}\n\n```\n{command.get_help(sub).rstrip()}\n```\n")
    return "".join(parts)


if __name__ == "__main__":
    print(reference(), end="")
