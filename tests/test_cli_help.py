"""Every command explains itself: its help has an example, and README's commands table has a
row for it (github-to-sqlite's style, DESIGN "Style to follow")."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from limefort.cli import cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def commands(group: click.Group = cli, prefix: str = "") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, cmd in sorted(group.commands.items()):
        full = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            out += commands(cmd, full + " ")
        else:
            out.append((full, cmd))
    return out


COMMANDS = commands()


def test_the_new_commands_are_there() -> None:
    names = {n for n, _ in COMMANDS}
    assert {"audit", "ack", "sync", "status", "fleet status", "auth fortnox"} <= names


@pytest.mark.parametrize(("name", "cmd"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_help_has_an_example(name: str, cmd: click.Command) -> None:
    text = cmd.help or ""
    assert re.search(r"\bExamples?:", text), f"`limefort {name} --help` shows no example"
    assert f"limefort {name.split()[0]}" in text or "limefort " in text


@pytest.mark.parametrize(("name", "cmd"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_readme_has_a_row(name: str, cmd: click.Command) -> None:
    rows = [line for line in README.splitlines() if line.startswith("| `limefort ")]
    assert any(re.match(rf"\| `limefort {re.escape(name)}(\s|`)", r) for r in rows), (
        f"README's commands table has no row for `limefort {name}`"
    )
