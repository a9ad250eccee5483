"""The help text of every command (issue 9): consistent options, no internal names, no <bool>."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from reconciler.cli.app import app


def _commands() -> list[list[str]]:
    group = typer.main.get_command(app)
    found: list[list[str]] = [[]]
    stack: list[tuple[list[str], object]] = [([], group)]
    while stack:
        path, cmd = stack.pop()
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            found.append([*path, name])
            stack.append(([*path, name], sub))
    return found


COMMANDS = _commands()


def test_every_command_is_covered() -> None:
    names = {" ".join(c) for c in COMMANDS}
    assert {"plan", "apply", "show", "check", "validate", "list", "snapshot", "backups", "backups delete", "backups prune"} <= names
    assert {"restore", "recover"} <= names


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "(top)")
def test_help_is_clean_and_consistent(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=200, env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "<bool>" not in text and "more_states" not in text and "<list[" not in text
    assert not re.search(r"\{[a-z_]+\}", text), "an internal parameter name shows as an argument"
    if "--manifest" in text:
        assert "-m" in text  # one spelling of the manifest option everywhere
    if "--json" in text:
        assert "--format" in text  # --json is documented as --format json: both must exist
    for option in re.findall(r"(--[a-z][a-z-]+)\s{2,}\S", text):
        assert option  # each option row has a help text after it


def test_store_and_manifest_options_are_spelled_the_same_everywhere() -> None:
    for command in COMMANDS:
        text = CliRunner().invoke(app, [*command, "--help"], terminal_width=200).stdout
        assert "--store-path" not in text and "--manifest-file" not in text
