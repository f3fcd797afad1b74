"""The layout docs/design.md draws, checked: SQL only in the store, the planner pure, small classes,
nothing imports the CLI (what the sandbox may import is checked in tests/sandbox/test_seed.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "limefort"
CORE = sorted(p for p in PKG.glob("*.py"))
SQL = re.compile(
    r"\b(SELECT\b.*\bFROM|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE TABLE|PRAGMA \w+)\b"
)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree: ast.Module) -> set[str]:
    """What a module imports when it runs (an `if TYPE_CHECKING:` block is for mypy only)."""
    out: set[str] = set()
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for n in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_sql_lives_only_in_the_store(path: Path) -> None:
    if path.name in ("store.py", "migrations.py"):
        return
    tree = _tree(path)
    strings = [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]
    assert not [s for s in strings if SQL.search(s)], f"SQL in {path.name}"
    assert not {"sqlite3", "sqlite_utils"} & _imports(tree), f"{path.name} opens SQLite itself"


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_no_class_over_400_lines(path: Path) -> None:
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ClassDef):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            assert size <= 400, f"{path.name}: class {node.name} has {size} lines"


@pytest.mark.parametrize(
    "name",
    ["plan.py", "mapping.py", "normalise.py", "cursor.py", "keys.py", "payments.py", "booking.py"],
)
def test_the_planner_and_mapping_are_pure(name: str) -> None:
    imports = _imports(_tree(PKG / name))
    io = {"requests", "sqlite3", "sqlite_utils", "socket", "time", "threading", "subprocess"}
    assert not io & imports, f"{name} imports {io & imports}"
    ours = {m for m in imports if m.startswith("limefort.")}
    allowed = {
        "limefort.models", "limefort.mapping", "limefort.normalise", "limefort.cursor",
        "limefort.errors", "limefort.keys", "limefort.explain", "limefort.payments",
    }  # fmt: skip
    assert ours <= allowed, f"{name} imports {ours - allowed}"


def test_nothing_imports_the_cli() -> None:
    for path in [*CORE, *PKG.glob("sandbox/*.py")]:
        if path.name in ("cli.py", "__main__.py"):
            continue
        assert "limefort.cli" not in _imports(_tree(path)), path.name


def test_the_executor_decides_nothing_about_failures() -> None:
    """What an error means is the planner's table: the executor catches only ServiceError and
    asks `after_failure`, it names no subclass of it."""
    tree = _tree(PKG / "execute.py")
    caught = [
        ast.unparse(h.type) for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler) and h.type
    ]
    assert caught == ["ServiceError"]
