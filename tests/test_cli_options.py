"""Global options where people put them (issue 17): `--config`, `-v`, `-q` and `--log-format`
work after the command name too; sandbox --write-config never overwrites; completion exists."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from conftest import Lf

from limefort.cli import hoist_global_options, main


@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        (["sync"], ["sync"]),
        (["sync", "--config", "x.toml"], ["--config", "x.toml", "sync"]),
        (["sync", "--config=x.toml", "-q"], ["--config=x.toml", "-q", "sync"]),
        (["-v", "sync", "--dry-run", "-v"], ["-v", "-v", "sync", "--dry-run"]),
        (
            ["status", "--json", "--log-format", "json"],
            ["--log-format", "json", "status", "--json"],
        ),
        (
            ["auth", "fortnox", "--code", "c", "--config", "x"],
            ["--config", "x", "auth", "fortnox", "--code", "c"],
        ),
        # Already in front: left alone.
        (["--config", "x", "-q", "sync"], ["--config", "x", "-q", "sync"]),
        # After `--` nothing is touched.
        (["retry", "--", "--config"], ["retry", "--", "--config"]),
        # A value of a command's own option is not mistaken for one (it is not a global name).
        (["backfill", "--from", "2026-01-01", "-vv"], ["-vv", "backfill", "--from", "2026-01-01"]),
    ],
)
def test_hoisting(given: list[str], parsed: list[str]) -> None:
    assert hoist_global_options(given) == parsed


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_config_and_quiet_after_the_command(lf: Lf) -> None:
    code, out, err = run("sync", "--config", str(lf.config), "-q")
    assert code == 0, err
    assert out == ""  # -q took effect
    code, out, _ = run("status", "--json", "--config", str(lf.config))
    assert code == 0 and json.loads(out)["last_run"]["exit_code"] == 0


def test_log_format_after_the_command(lf: Lf, tmp_path: Path) -> None:
    lf.write(lf.config.read_text(encoding="utf-8").replace('client_id = "', 'client_id = 4 #"', 1))
    code, _, err = run("check", "--log-format", "json", "--config", str(lf.config))
    assert code == 2
    record = json.loads(err.strip().splitlines()[0])
    assert record["level"] == "error" and record["key"] == "limego.client_id"


def test_sandbox_write_config_refuses_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "sandbox.toml"
    target.write_text("keep me\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "limefort", "sandbox", "--write-config", str(target)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert proc.returncode == 2
    assert target.read_text(encoding="utf-8") == "keep me\n"
    assert "already exists" in proc.stderr and str(target) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_shell_completion_is_provided_by_click() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "limefort"],
        capture_output=True,
        text=True,
        env={**os.environ, "_LIMEFORT_COMPLETE": "bash_source"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "_limefort_completion" in proc.stdout
    assert "complete -o nosort -F _limefort_completion limefort" in proc.stdout


def test_help_mentions_options_after_the_command_and_init() -> None:
    code, out, _ = run("--help")
    assert code == 0
    assert "may also follow the command" in out
    assert "init" in out


@pytest.mark.parametrize("command", [["demo"], ["sandbox"]])
def test_without_the_sandbox_package_demo_and_sandbox_say_how_to_get_it(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The container image leaves limefort_sandbox out: `demo` and `sandbox` there are one
    line and exit 2, not a traceback."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "limefort_sandbox" else real(name, *a),
    )
    code, out, err = run(*command)
    assert code == 2 and "Traceback" not in err
    assert "sandbox servers are not installed here" in err and "make demo" in err
