"""`status` for people (issue 17) and the state beside its config (issue 12): local times with
their zone, a pass still going as "running since", a killed one as "interrupted", the absolute
state path named, and one state file whatever the working directory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Lf, add_keys

from limefort.commands.status import local_time, run_state
from limefort.state.lock import RunLock
from limefort.state.store import Store
from limefort_sandbox import Sandbox


@pytest.fixture
def stockholm(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Stockholm")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_local_time_has_the_zone(stockholm: None) -> None:
    assert local_time("2026-01-15T12:00:00+00:00") == "2026-01-15 13:00:00 CET"
    assert local_time("2026-07-15T12:00:00+00:00") == "2026-07-15 14:00:00 CEST"
    assert local_time(None) == "-"


def test_run_states() -> None:
    done = {"finished_at": "x"}
    assert run_state(done, newest_unfinished=False, lock_held=True) == "finished"
    assert run_state({}, newest_unfinished=True, lock_held=True) == "running"
    assert run_state({}, newest_unfinished=True, lock_held=False) == "interrupted"
    # An older unfinished run is interrupted even while a newer pass holds the lock.
    assert run_state({}, newest_unfinished=False, lock_held=True) == "interrupted"


def test_status_shows_local_times_with_their_zone(lf: Lf, stockholm: None) -> None:
    assert lf.run("sync").code == 0
    data = lf.status()
    started = data["last_run"]["started_at"]
    local = datetime.fromisoformat(started).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    r = lf.run("status")
    assert r.code == 0, r.err
    zone = "CEST" if "CEST" in r.out else "CET"
    assert f"Last run:    sync {local} {zone} -> " in r.out, r.out
    assert started not in r.out  # not the raw UTC string
    assert f"State file:  {lf.state}" in r.out


def test_a_killed_pass_is_interrupted_and_a_live_one_running(lf: Lf) -> None:
    assert lf.run("sync").code == 0
    store = Store.open(lf.state)
    try:
        store.start_run("sync")  # as a pass that was SIGKILLed leaves it
    finally:
        store.close()
    r = lf.run("status")
    assert "Last run:    sync interrupted: started " in r.out, r.out
    assert lf.status()["last_run"]["state"] == "interrupted"

    with RunLock(lf.state):  # a pass is working on it now
        store = Store.open(lf.state)
        try:
            store.start_run("backfill")
        finally:
            store.close()
        r = lf.run("status")
        data = lf.status()
    assert "Last run:    backfill running since " in r.out, r.out
    assert [x["state"] for x in data["runs"]] == ["running", "interrupted", "finished"]
    # The older unfinished one stays interrupted in the list.
    assert "  #2 sync     interrupted: started " in r.out, r.out


def test_status_without_a_state_file_names_the_path_it_looked_for(lf: Lf) -> None:
    r = lf.run("status")
    assert r.code == 2
    assert r.err.strip().splitlines() == [
        f"limefort: state.path: no state file at {lf.state} (state.path in {lf.config}): no pass "
        "has run with this configuration yet; `limefort sync` creates it there"
    ]


def limefort(config: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "limefort", "--config", str(config), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.http
def test_relative_state_path_sync_from_two_directories_one_state_file(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    conf_dir, a, b = tmp_path / "conf", tmp_path / "a", tmp_path / "b"
    for d in (conf_dir, a, b):
        d.mkdir()
    config = conf_dir / "limefort.toml"
    text = sandbox.config_toml("limefort.db")  # relative, as in the template
    text = add_keys(text, "fortnox", rate_limit=0)
    config.write_text(text, encoding="utf-8")
    config.chmod(0o600)

    first = limefort(config, "sync", cwd=a)
    assert first.returncode == 0, first.stderr
    made = len(sandbox.fortnox.invoices), len(sandbox.fortnox.customers)
    assert made[0] > 0
    second = limefort(config, "sync", cwd=b)
    assert second.returncode == 0, second.stderr
    assert (len(sandbox.fortnox.invoices), len(sandbox.fortnox.customers)) == made  # 0 duplicates

    assert (conf_dir / "limefort.db").exists()
    assert sorted(p.name for p in tmp_path.rglob("*.db")) == ["limefort.db"]
    assert not list(a.iterdir()) and not list(b.iterdir())

    # status and check, from yet another directory, name the absolute path used.
    status = limefort(config, "status", cwd=tmp_path)
    assert f"State file:  {conf_dir / 'limefort.db'}" in status.stdout, status.stdout
    data = json.loads(limefort(config, "status", "--json", cwd=tmp_path).stdout)
    assert data["state_path"] == str(conf_dir / "limefort.db")
    assert [r["state"] for r in data["runs"]] == ["finished", "finished"]
    check = limefort(config, "check", cwd=tmp_path)
    assert f"state file: {conf_dir / 'limefort.db'}" in check.stdout, check.stdout


def test_status_json_keeps_utc_times(lf: Lf) -> None:
    assert lf.run("sync").code == 0
    started = lf.status()["last_run"]["started_at"]
    assert datetime.fromisoformat(started).utcoffset() == UTC.utcoffset(None)


# --- status only reads (issue 24, 27) --------------------------------------------------------


def _read_only_mounts_work() -> bool:
    try:
        probe = subprocess.run(
            ["unshare", "-m", "sh", "-c", "mount --bind / /mnt 2>/dev/null; echo ok"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0 and "ok" in probe.stdout


def test_status_works_with_the_state_directory_on_a_read_only_mount(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    if not _read_only_mounts_work():
        pytest.skip("this machine cannot make a private read-only bind mount (unshare -m)")
    sb = make_inprocess_sandbox(seed=61, companies=3, deals=2)
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    lf = Lf(sb, state_dir)
    assert lf.run("sync").code in (0, 1)
    before = {p.name: p.read_bytes() for p in state_dir.iterdir()}
    limefort = Path(sys.executable).parent / "limefort"
    script = (
        f"mount --bind {state_dir} {state_dir} && mount -o remount,ro,bind {state_dir} && "
        f"touch {state_dir}/probe 2>/dev/null && echo WRITABLE; "
        f"{limefort} --config {lf.config} status --json"
    )
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert "WRITABLE" not in proc.stdout, "the mount was not read-only: nothing was tested"
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["state_path"] == str(lf.state) and data["runs"], data
    assert {p.name: p.read_bytes() for p in state_dir.iterdir()} == before


def test_status_reads_an_old_state_file_without_migrating_it(lf: Lf) -> None:
    assert lf.run("sync").code in (0, 1)
    import sqlite3

    conn = sqlite3.connect(lf.state)
    [last] = conn.execute("SELECT max(name) FROM _migrations").fetchone()
    conn.execute("DELETE FROM _migrations WHERE name = ?", [last])
    conn.commit()
    conn.close()
    r = lf.run("status")
    assert r.code == 2 and "needs 1 migration(s)" in r.err and last in r.err, r.err
    assert "the next `limefort sync` applies them" in r.err
    # Nothing was migrated by looking.
    rows = [row["name"] for row in lf.store_rows("_migrations")]
    assert last not in rows
