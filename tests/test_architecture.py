"""The layout docs/design.md draws ("Architecture"), checked: every module in a subpackage named
for its role, what each subpackage may import, SQL only in the state package, the planner and
the mapping pure, no product file over 600 lines, nothing imports the CLI."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "limefort"
MODULES = sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)
SQL = re.compile(
    r"\b(SELECT\b.*\bFROM|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE TABLE|PRAGMA \w+)\b"
)

# What each subpackage may import of limefort, besides itself. The order is the layering: a
# package imports only packages listed before it (core is the bottom, the CLI the top). A rule
# broken here is a change of architecture: change docs/design.md with it.
MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "mapping": {"core"},
    "plan": {"core", "mapping"},
    "bookkeeping": {"core", "mapping"},
    "config": {"core", "mapping"},
    "clients": {"core", "config"},
    "state": {"core", "mapping"},
    "ops": {"core", "config", "clients"},
    "engine": {"core", "mapping", "plan", "bookkeeping", "config", "clients", "state", "ops"},
    "commands": {
        "core", "mapping", "plan", "bookkeeping", "config", "clients", "state", "ops", "engine",
    },
}  # fmt: skip
TOP_LEVEL = {"__init__.py", "__main__.py", "cli.py"}  # the package's face and the wiring
PURE = {"core", "mapping", "plan", "bookkeeping"}  # no I/O: rules over data read elsewhere
IO = {"requests", "sqlite3", "sqlite_utils", "socket", "time", "threading", "subprocess"}


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
            if node.module == "limefort":  # `from limefort import plan`: the module named
                out |= {f"limefort.{a.name}" for a in node.names if _is_module(a.name)}
    return out


def _is_module(name: str) -> bool:
    return (PKG / name).is_dir() or (PKG / f"{name}.py").exists()


def _package(path: Path) -> str:
    return path.relative_to(PKG).parts[0]


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_every_module_lives_in_a_subpackage_named_for_its_role() -> None:
    loose = {p.name for p in PKG.glob("*.py")} - TOP_LEVEL
    assert not loose, f"modules beside the subpackages: {sorted(loose)}"
    packages = {p.name for p in PKG.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(MAY_IMPORT), packages ^ set(MAY_IMPORT)
    for name in packages:  # each says what lives in it, for the newcomer reading the file list
        doc = ast.get_docstring(_tree(PKG / name / "__init__.py")) or ""
        assert len(doc) > 80, f"limefort/{name}/__init__.py needs its paragraph"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_product_file_over_600_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 600, f"{_name(path)} has {lines} lines"


@pytest.mark.parametrize(
    "path", [p for p in MODULES if p.name not in TOP_LEVEL or p.parent != PKG], ids=_name
)
def test_each_subpackage_imports_only_what_lies_below_it(path: Path) -> None:
    own = _package(path)
    allowed = MAY_IMPORT[own] | {own}
    wrong = set()
    for name in _imports(_tree(path)):
        parts = name.split(".")
        if parts[0] == "limefort_sandbox" and own != "commands":
            wrong.add(name)  # only `demo` and `sandbox` start the sandbox servers
        if parts[0] != "limefort" or len(parts) == 1:
            continue
        if parts[1] not in allowed:
            wrong.add(name)
    assert not wrong, f"{_name(path)} ({own}) imports {sorted(wrong)}"


@pytest.mark.parametrize("path", [p for p in MODULES if _package(p) in PURE], ids=_name)
def test_the_pure_packages_do_no_io(path: Path) -> None:
    imports = _imports(_tree(path))
    assert not IO & imports, f"{_name(path)} imports {IO & imports}"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_sql_lives_only_in_the_state_package(path: Path) -> None:
    if _package(path) == "state":
        return
    tree = _tree(path)
    strings = [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]
    assert not [s for s in strings if SQL.search(s)], f"SQL in {_name(path)}"
    assert not {"sqlite3", "sqlite_utils"} & _imports(tree), f"{_name(path)} opens SQLite itself"


def test_nothing_imports_the_cli() -> None:
    sandbox = sorted((ROOT / "limefort_sandbox").glob("*.py"))
    for path in [*MODULES, *sandbox]:
        if path.parent == PKG and path.name in ("cli.py", "__main__.py"):
            continue
        assert "limefort.cli" not in _imports(_tree(path)), _name(path)


def test_the_sandbox_is_not_in_the_product_package_nor_in_the_image() -> None:
    assert not (PKG / "sandbox").exists()
    assert (ROOT / "limefort_sandbox" / "__init__.py").exists()
    docker = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    copied = re.findall(r"^COPY (?!--from)(.+?) \S+$", docker, flags=re.M)
    assert copied and not any("sandbox" in c for c in copied), copied


def test_the_executor_decides_nothing_about_failures() -> None:
    """What an error means is the planner's table: the executor catches only ServiceError and
    asks `after_failure`, it names no subclass of it."""
    tree = _tree(PKG / "engine" / "execute.py")
    caught = [
        ast.unparse(h.type) for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler) and h.type
    ]
    assert caught == ["ServiceError"]
