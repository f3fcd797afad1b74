"""`limefort init` (issue 17): the shipped template, 0600, never over a file, exit 2 if one is
there; on a terminal the few values without a default are asked for; a config still holding an
example value stops `check` and `sync` (exit 2, naming the key) before any network call."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import Lf
from ptyterm import run_in_pty

from limefort import config
from limefort.commands.init import QUESTIONS, fill, run_init
from limefort_sandbox import Sandbox

ENV = {"PATH": "/usr/bin:/bin"}


def limefort(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "limefort", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**ENV, **(env or {})},
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def test_init_writes_the_template_0600_to_limefort_toml(tmp_path: Path) -> None:
    proc = limefort("init", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    target = tmp_path / "limefort.toml"
    assert target.read_text(encoding="utf-8") == config.template_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert f"Wrote {target}" in proc.stdout
    # It says what is left to fill in, by key.
    assert "limego.client_id" in proc.stdout and "fortnox.client_secret" in proc.stdout


def test_init_honours_config_before_or_after_the_command(tmp_path: Path) -> None:
    assert limefort("--config", "a.toml", "init", cwd=tmp_path).returncode == 0
    assert limefort("init", "--config", "b.toml", cwd=tmp_path).returncode == 0
    env_path = tmp_path / "c.toml"
    assert limefort("init", cwd=tmp_path, env={"LIMEFORT_CONFIG": str(env_path)}).returncode == 0
    for name in ("a.toml", "b.toml", "c.toml"):
        assert (tmp_path / name).read_text(encoding="utf-8") == config.template_text()
    assert not (tmp_path / "limefort.toml").exists()


def test_init_never_overwrites_and_exits_2(tmp_path: Path) -> None:
    target = tmp_path / "limefort.toml"
    target.write_text("# mine\n", encoding="utf-8")
    proc = limefort("init", cwd=tmp_path)
    assert proc.returncode == 2
    assert target.read_text(encoding="utf-8") == "# mine\n"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "already exists" in lines[0] and str(target) in lines[0]


def test_the_filled_template_keeps_its_comments_and_parses() -> None:
    answers = {
        ("limego", "base_url"): "https://acme.lime-go.com",
        ("limego", "client_id"): 'id "quoted" \\ back',
        ("fortnox", "tenant_id"): "98765",
    }
    text = fill(config.template_text(), answers)
    raw = tomllib.loads(text)
    assert raw["limego"]["base_url"] == "https://acme.lime-go.com"
    assert raw["limego"]["client_id"] == 'id "quoted" \\ back'
    assert raw["fortnox"]["tenant_id"] == "98765"
    # Only those lines changed; the commentary is all there.
    before = config.template_text().splitlines()
    after = text.splitlines()
    assert len(before) == len(after)
    assert sum(a != b for a, b in zip(before, after, strict=True)) == 3
    # The fortnox client_id line is not the limego one, though both are `client_id = ...`.
    assert raw["fortnox"]["client_id"] == "your-fortnox-client-id"


def test_run_init_asks_each_question_and_writes_the_answers(tmp_path: Path) -> None:
    asked: list[str] = []
    given = {
        "base_url": "https://acme.lime-go.com",
        "client_id": "the-id",
        "client_secret": "",  # Enter: left for the environment
        "tenant_id": "",
    }

    def ask(q: object) -> str:
        asked.append(f"{q.section}.{q.key}")  # type: ignore[attr-defined]
        return given[q.key]  # type: ignore[attr-defined]

    left = run_init(tmp_path / "x.toml", ask=ask)
    assert asked == [f"{q.section}.{q.key}" for q in QUESTIONS]
    assert left == ["limego.client_secret", "fortnox.client_secret"]
    raw = tomllib.loads((tmp_path / "x.toml").read_text(encoding="utf-8"))
    assert raw["fortnox"]["client_id"] == "the-id"
    assert "tenant_id" not in raw["fortnox"]  # still commented out


@pytest.mark.slow
def test_init_on_a_terminal_asks_for_the_values_without_a_default(tmp_path: Path) -> None:
    rc, term = run_in_pty(
        ["init"],
        cwd=tmp_path,
        answers=[
            ("Lime Go instance URL", "http://acme.lime-go.com"),  # refused: not https
            ("use https://", "https://acme.lime-go.com"),
            ("Lime Go API client id", "lg-id"),
            ("Lime Go API client secret", "lg-secret"),
            ("Fortnox integration client id", "fx-id"),
            ("Fortnox integration client secret", ""),
            ("Fortnox tenant id", "4711"),
        ],
    )
    screen = "\n".join(term.lines())
    assert rc == 0, screen
    assert "lg-secret" not in screen  # a secret is not echoed
    target = tmp_path / "limefort.toml"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    raw = tomllib.loads(target.read_text(encoding="utf-8"))
    assert raw["limego"] | {} == raw["limego"]
    assert raw["limego"]["base_url"] == "https://acme.lime-go.com"
    assert raw["limego"]["client_id"] == "lg-id"
    assert raw["limego"]["client_secret"] == "lg-secret"
    assert raw["fortnox"]["client_id"] == "fx-id"
    assert raw["fortnox"]["tenant_id"] == "4711"
    assert "fortnox.client_secret" in screen  # left for LIMEFORT_FORTNOX_CLIENT_SECRET
    cfg = config.load(target, environ={"LIMEFORT_FORTNOX_CLIENT_SECRET": "s"}, explicit=True)
    assert cfg.fortnox.tenant_id == "4711"


@pytest.mark.parametrize("command", ["check", "sync"])
def test_an_example_value_left_stops_check_and_sync_before_any_request(
    lf: Lf, sandbox: Sandbox, command: str
) -> None:
    text = lf.config.read_text(encoding="utf-8")
    lf.write(text.replace(f'"{sandbox.limego_client_id}"', '"your-lime-go-client-id"'))
    sandbox.limego.reset_log()
    sandbox.fortnox.reset_log()
    r = lf.run(command)
    assert r.code == 2, (r.out, r.err)
    assert r.err.strip().splitlines() == [
        "limefort: limego.client_id: is still the example value "
        "(set it in [limego] or in LIMEFORT_LIMEGO_CLIENT_ID)"
    ]
    assert sandbox.limego.requests == [] and sandbox.fortnox.requests == []
    assert not lf.state.exists()


def test_status_and_fortnox_consent_do_not_need_the_lime_go_half(lf: Lf, sandbox: Sandbox) -> None:
    assert lf.run("sync").code == 0
    text = lf.config.read_text(encoding="utf-8")
    lf.write(text.replace(f'"{sandbox.limego_client_id}"', '"your-lime-go-client-id"'))
    assert lf.run("status").code == 0
    # Consent gets past the config to Fortnox, which refuses this made-up code (exit 3).
    r = lf.run("auth", "fortnox", "--code", "made-up", "--no-browser")
    assert r.code == 3, (r.out, r.err)
    assert "limego" not in r.err
    assert lf.run("sync").code == 2  # a pass still needs it


def test_init_template_is_package_data_not_read_from_the_source_tree(tmp_path: Path) -> None:
    # Importing from the package: the same text whatever the working directory.
    os.chdir(tmp_path)
    assert config.template_text().startswith("# limefort configuration.")


ROOT = Path(__file__).resolve().parent.parent


def test_license_is_mit_as_setup_cfg_says() -> None:
    import configparser

    meta = configparser.ConfigParser()
    meta.read(ROOT / "setup.cfg")
    assert meta["metadata"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text


@pytest.mark.slow
def test_pip_install_into_a_fresh_venv_gives_init_its_template(tmp_path: Path) -> None:
    """`pip install .` as a user would, into a new virtual environment: the template comes
    with the package. Offline (--no-index, --no-deps: the dependencies and the build backend
    come from this venv through a .pth file) and built from a copy, not in the source tree."""
    import shutil
    import sysconfig

    before = sorted(p.name for p in ROOT.iterdir())
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "*.egg-info", "__pycache__", ".*_cache", "*.db*", "*.toml.*"
        ),
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "_limefort_test_deps.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8"
    )
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q"]
        + ["--no-deps", "--no-index", "--no-build-isolation", str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert sorted(p.name for p in ROOT.iterdir()) == before  # nothing built in the checkout

    work = tmp_path / "work"
    work.mkdir()
    where = subprocess.run(
        [str(py), "-c", "import limefort; print(limefort.__file__)"],
        capture_output=True,
        text=True,
        cwd=work,
        check=True,
    ).stdout.strip()
    assert where.startswith(site), where  # the installed copy, not this checkout
    proc = subprocess.run(
        [str(venv / "bin" / "limefort"), "init"],
        capture_output=True,
        text=True,
        cwd=work,
        stdin=subprocess.DEVNULL,
        env=ENV,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    written = (work / "limefort.toml").read_text(encoding="utf-8")
    assert written == (ROOT / "config.example.toml").read_text(encoding="utf-8")
    assert stat.S_IMODE((work / "limefort.toml").stat().st_mode) == 0o600
