"""Every command is documented (after sqlite-utils): `--help` with an example, and a row in the
README's commands table. A command added without either fails here."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from limefort.cli import cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, cmd in sorted(group.commands.items()):
        full = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            out += _commands(cmd, f"{full} ")
        else:
            out.append((full, cmd))
    return out


COMMANDS = _commands(cli)


def test_the_commands_are_found() -> None:
    names = {n for n, _ in COMMANDS}
    assert {"sync", "backfill", "run", "status", "retry", "check", "auth fortnox", "demo"} <= names
    assert {"audit", "ack", "fleet status", "init", "backup"} <= names


@pytest.mark.parametrize("name,cmd", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_has_help_with_an_example(name: str, cmd: click.Command) -> None:
    text = cmd.help or ""
    assert text.strip(), f"limefort {name} has no help"
    assert "Example" in text and f"limefort {name}" in text, f"limefort {name}: no example"


@pytest.mark.parametrize("name", [n for n, _ in COMMANDS])
def test_every_command_has_a_readme_row(name: str) -> None:
    rows = [line for line in README.splitlines() if line.startswith(f"| `limefort {name}")]
    assert rows, f"README's commands table has no row for `limefort {name}`"


def test_the_readme_stays_what_a_user_needs() -> None:
    """How it works, security, performance and operations live in docs/: the README is the
    way in (getting started, credentials, configuration, commands, deployment,
    troubleshooting), small enough to read, and every page it links to exists."""
    root = Path(__file__).resolve().parent.parent
    assert len(README.encode("utf-8")) <= 20_000, len(README.encode("utf-8"))
    for heading in ("## Getting started", "## Credentials", "## Configuration", "## Commands",
                    "## Deployment", "## Troubleshooting"):  # fmt: skip
        assert f"\n{heading}" in README, heading
    links = re.findall(r"\]\(((?:docs|cron)/[^)#]+)", README)
    assert {"docs/how-it-works.md", "docs/security.md", "docs/performance.md"} <= set(links)
    assert all((root / link).is_file() for link in links), links
