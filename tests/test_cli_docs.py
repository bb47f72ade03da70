"""The CLI reference in docs/ is generated from --help and must be current; the README names every command."""

from __future__ import annotations

import click

from rlsctl.cli.clidoc import reference
from rlsctl.cli.main import main
from tests.conftest import ROOT


def test_cli_reference_is_current():
    assert (ROOT / "docs" / "cli.md").read_text() == reference(), "run: python -m rlsctl.cli.clidoc > docs/cli.md"


def test_every_command_and_option_is_documented():
    text = (ROOT / "docs" / "cli.md").read_text()
    readme = (ROOT / "README.md").read_text()
    context = click.Context(main)
    for name in main.list_commands(context):
        command = main.get_command(context, name)
        assert f"## rlsctl {name}" in text
        assert f"rlsctl {name}" in readme, f"README does not mention rlsctl {name}"
        subcommands = [command]
        if isinstance(command, click.Group):
            subcommands += [command.get_command(context, sub) for sub in command.list_commands(context)]
            for sub in command.list_commands(context):
                assert f"## rlsctl {name} {sub}" in text
        for each in subcommands:
            assert each is not None
            for param in each.params:
                for option in getattr(param, "opts", []):
                    if option.startswith("-"):
                        assert option in text, f"{name} {option}"
