"""docs/design.md is the design the code cites: it must name every command, every config key
and every exit code limefort has. One added without it fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_docs import COMMANDS

from limefort.config import SCHEMA
from limefort.core import errors

DESIGN = (Path(__file__).resolve().parent.parent / "docs" / "design.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", [n for n, _ in COMMANDS])
def test_every_command_is_in_the_design(name: str) -> None:
    assert f"`limefort {name}" in DESIGN, name


@pytest.mark.parametrize("section, key", [(s, k) for s, keys in SCHEMA.items() for k in keys])
def test_every_config_key_is_in_the_design(section: str, key: str) -> None:
    row = next((line for line in DESIGN.splitlines() if line.startswith(f"| `[{section}]`")), "")
    assert f"`{key}`" in row, f"{section}.{key}"


@pytest.mark.parametrize(
    "code", sorted({v for k, v in vars(errors).items() if k.startswith("EX_")} | {70})
)
def test_every_exit_code_is_in_the_design(code: int) -> None:
    assert re.search(rf"^\| `{code}` \|", DESIGN, flags=re.M), code


def test_the_code_cites_the_design_in_the_repository() -> None:
    """ "DESIGN rule N" means docs/design.md; nothing points outside the repository."""
    root = Path(__file__).resolve().parent.parent
    for path in [*(root / "limefort").rglob("*.py"), *(root / "tests").rglob("*.py")]:
        text = path.read_text(encoding="utf-8").replace("docs/design.md", "")
        assert "DESIGN.md" not in text.replace('"DESIGN.md" not in', ""), path


def test_every_subpackage_is_in_the_design_architecture() -> None:
    """The layout the design draws is the layout on disk: a subpackage added (or renamed)
    without its line in docs/design.md's Architecture fails here."""
    block = DESIGN.split("## Architecture", 1)[1].split("```", 2)[1]
    drawn = {line.split()[0] for line in block.splitlines() if line and not line.startswith(" ")}
    pkg = Path(__file__).resolve().parent.parent / "limefort"
    on_disk = {p.name for p in pkg.iterdir() if (p / "__init__.py").exists()}
    assert on_disk <= drawn, on_disk - drawn
