"""Files that hold or guard secrets: the state file and its -wal/-shm are 0600 even under
umask 022, the lock file too; a config that others can read and that holds a secret gets a
warning naming it; plain http:// to a non-loopback host is refused, naming the key."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Lf
from test_auth import drop_key, set_key

from limefort.state.lock import lock_path
from limefort_sandbox import FaultRule, Sandbox


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sidecars(state: Path) -> list[Path]:
    return [state.with_name(state.name + suffix) for suffix in ("-wal", "-shm")]


def test_state_wal_shm_and_lock_are_0600_under_umask_022(lf: Lf, sandbox: Sandbox) -> None:
    # A slow Fortnox stretches the pass so the -wal and -shm files can be seen while it runs.
    sandbox.fortnox.faults.add(FaultRule("slow", delay=0.15, path_prefix="/3/"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "limefort", "--config", str(lf.config), "sync"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.umask(0o022),
    )
    seen: dict[str, set[int]] = {}
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        for p in [lf.state, lock_path(lf.state), *sidecars(lf.state)]:
            with contextlib.suppress(FileNotFoundError):
                seen.setdefault(p.name, set()).add(mode(p))
        time.sleep(0.02)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 1), err

    assert {"limefort.db", "limefort.db-wal", "limefort.db-shm", "limefort.db.lock"} <= set(seen)
    assert all(modes == {0o600} for modes in seen.values()), seen
    assert mode(lf.state) == 0o600
    assert mode(lock_path(lf.state)) == 0o600
    for p in sidecars(lf.state):
        if p.exists():
            assert mode(p) == 0o600


def test_a_loose_state_file_is_tightened_on_the_next_pass(lf: Lf) -> None:
    assert lf.run("sync").code in (0, 1)
    os.chmod(lf.state, 0o644)
    assert lf.run("sync").code in (0, 1)
    assert mode(lf.state) == 0o600


@pytest.mark.parametrize("loose", [0o644, 0o640])
def test_config_readable_by_others_with_a_secret_warns_naming_it(lf: Lf, loose: int) -> None:
    lf.config.chmod(loose)
    r = lf.run("sync", "--dry-run")
    assert r.code in (0, 1), r.err
    warning = [line for line in r.err.splitlines() if "readable by other users" in line]
    assert len(warning) == 1 and str(lf.config) in warning[0]
    assert "chmod 600" in warning[0]


def test_no_warning_for_a_private_config_or_one_without_secrets(
    lf: Lf, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = lf.run("sync", "--dry-run")
    assert "readable by other users" not in r.err

    # The secrets in the environment instead: the config may be world-readable.
    drop_key(lf, "fortnox", "client_secret")
    drop_key(lf, "limego", "client_secret")
    lf.config.chmod(0o644)
    monkeypatch.setenv("LIMEFORT_FORTNOX_CLIENT_SECRET", sandbox.fortnox_client_secret)
    monkeypatch.setenv("LIMEFORT_LIMEGO_CLIENT_SECRET", sandbox.limego_client_secret)
    r = lf.run("sync", "--dry-run")
    assert r.code in (0, 1), r.err
    assert "readable by other users" not in r.err


@pytest.mark.parametrize("command", [("sync",), ("check",), ("auth", "fortnox", "--code", "x")])
def test_plain_http_to_a_real_host_is_refused_naming_the_key(
    lf: Lf, sandbox: Sandbox, command: tuple[str, ...]
) -> None:
    set_key(lf, "fortnox", "api_url", '"http://api.fortnox.se"')
    r = lf.run(*command)
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("limefort: fortnox.api_url:")
    assert "https://" in lines[0] and "Traceback" not in r.err
    assert sandbox.fortnox.requests == [] and not lf.state.exists()


def test_plain_http_from_the_environment_is_refused_too(
    lf: Lf, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIMEFORT_FORTNOX_TOKEN_URL", "http://apps.fortnox.se/oauth-v1/token")
    r = lf.run("sync")
    assert r.code == 2
    assert r.err.strip().count("\n") == 0 and "fortnox.token_url" in r.err
