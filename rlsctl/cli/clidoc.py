"""Generate docs/cli.md from the click commands: `python -m rlsctl.cli.clidoc > docs/cli.md`.

A test regenerates it and compares, so the reference never falls behind the CLI.
"""

from __future__ import annotations

import click

from rlsctl.cli.main import main

HEADER = """# CLI reference

Generated from `rlsctl --help` by `python -m rlsctl.cli.clidoc > docs/cli.md`; a test
checks it is current. Exit status everywhere: 0 clean, 1 findings, failures or
drift, 2 usage or connection error, 141 when the reader of the output goes away
(`rlsctl drift --format json | head`: no message, and never mistaken for a clean run);
stopped by a signal, 130 (Ctrl-C, with "interrupted; the current transaction was rolled
back"), 143 (SIGTERM) or 129 (SIGHUP), as a shell reports a program a signal ends: the
transaction in flight is rolled back, nothing half-applied stays.

## Which project

Every command that reads a project (`render`, `plan`, `apply`, `drift`, `migrate`,
`rollback`, `test`, `verify`, `keys ...`) takes it from `--project DIR`, else the
`RLSCTL_PROJECT` environment variable, else the current directory when it has a
`policies/` folder. Outside a project it exits 2 with `error: no rlsctl project here
(...)` and touches no database: the PromptCraft example bundled with rlsctl is never
picked up by accident. Only `rlsctl demo` uses it when no project is named (or name
it: `--project` with the path of a checkout). `rlsctl lint` outside a project lints
what it is given: `lint FILE.sql ...` the files, `lint --dsn DSN` the live database
alone (no policy files, so no suppressions); with neither, it exits 2 as well.

`--role-prefix PREFIX` (or `RLSCTL_ROLE_PREFIX`) replaces the project's role prefix and is
used as written: `acme_` makes `acme_app`, `acme` makes `acmeapp`. `demo --dsn` creates
its roles as `PREFIXdemo_<random>_...` (default prefix `rlsctl_`), so that dropping them
afterwards can never touch roles of yours.
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
