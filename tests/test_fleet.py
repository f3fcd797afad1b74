"""`limefort fleet status` (issue 18): one row per tenant config, read-only, exit 0 only when
every tenant is fine.

The end-to-end tests build real state files by running real passes against the sandbox; the
rest test the pure row functions and the reader on state files made with `Store`."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import Lf

from limefort.commands import fleet
from limefort.state.lock import RunLock, lock_path
from limefort.state.readonly import read_only_uri
from limefort.state.store import Store

# --- helpers ----------------------------------------------------------------------------------


def run_cli(*args: str) -> tuple[int, str, str]:
    from limefort.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def fleet_json(directory: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    code, out, err = run_cli("fleet", "status", str(directory), "--json")
    rows = json.loads(out)
    assert isinstance(rows, list), err
    assert [r["tenant"] for r in rows] == sorted(r["tenant"] for r in rows)
    return code, {r["tenant"]: r for r in rows}


def tenant_config(directory: Path, tenant: str, state: str, **extra_sections: str) -> Path:
    """A minimal valid config that needs no server (fleet status never talks to one)."""
    text = (
        '[limego]\nbase_url = "https://crm.example.com"\nclient_id = "lg"\n'
        'client_secret = "s1"\n\n[fortnox]\nclient_id = "fx"\nclient_secret = "s2"\n'
        f'tenant_id = "1"\n\n[state]\npath = "{state}"\n'
    )
    for section, body in extra_sections.items():
        text += f"\n[{section}]\n{body}\n"
    path = directory / f"{tenant}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def state_with_run(path: Path, exit_code: int | None = 0, command: str = "sync") -> Store:
    path.parent.mkdir(parents=True, exist_ok=True)
    store = Store.open(path)
    run = store.start_run(command)
    if exit_code is not None:
        store.finish_run(run, exit_code, {})
    return store


def lf_in(sb: Any, directory: Path) -> Lf:
    directory.mkdir()
    return Lf(sb, directory)


def snapshot(directory: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under `directory`: size, mtime and content hash."""
    return {
        str(p.relative_to(directory)): (
            p.stat().st_size,
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


# --- end to end over three tenants --------------------------------------------------------------


def test_three_tenants_clean_quarantined_and_never_ran(make_sandbox: Any, tmp_path: Path) -> None:
    fleet_dir = tmp_path / "etc-limefort"
    fleet_dir.mkdir()

    # acme: a clean pass
    acme = lf_in(make_sandbox(seed=31, companies=6, deals=6), fleet_dir / "acme")
    assert acme.run("sync").code == 0
    (fleet_dir / "acme.toml").write_text(acme.config.read_text())

    # beta: one company the pass has to quarantine (a customer with no name)
    beta_sb = make_sandbox(seed=32, companies=6, deals=6)
    bad = beta_sb.limego.add_company(name=None, status="customer")
    beta = lf_in(beta_sb, fleet_dir / "beta")
    r = beta.run("sync")
    assert r.code == 1, r.err
    # its fleet config names the same state file relative to the config's directory
    text = beta.config.read_text().replace(str(beta.state), "beta/limefort.db")
    assert 'path = "beta/limefort.db"' in text
    (fleet_dir / "beta.toml").write_text(text)

    # gamma: configured, never ran
    tenant_config(fleet_dir, "gamma", str(fleet_dir / "gamma" / "limefort.db"))

    before = snapshot(fleet_dir)
    code, rows = fleet_json(fleet_dir)
    assert code == 1
    assert set(rows) == {"acme", "beta", "gamma"}  # the configs in subdirectories are not tenants
    assert snapshot(fleet_dir) == before, "fleet status changed a file"
    assert not (fleet_dir / "gamma").exists(), "fleet status created a state directory"

    a = rows["acme"]
    acme_status = acme.status()
    assert a["config"] == str(fleet_dir / "acme.toml")
    assert a["last_run"] == {
        "started_at": acme_status["last_run"]["started_at"],
        "finished_at": acme_status["last_run"]["finished_at"],
        "exit_code": 0,
        "command": "sync",
    }
    assert a["last_success"] == a["last_run"]["finished_at"]
    assert (a["quarantined"], a["pending"], a["drift"]) == (0, 0, 0)
    assert a["error"] is None and a["ok"] is True

    b = rows["beta"]
    beta_status = beta.status()
    assert b["state"] == str(fleet_dir / "beta" / "limefort.db")
    assert b["last_run"]["exit_code"] == 1
    assert b["last_run"]["started_at"] == beta_status["last_run"]["started_at"]
    assert b["last_success"] is None  # its only pass exited 1
    assert [q["key"] for q in beta_status["quarantined"]] == [f"company:{bad}"]
    assert b["quarantined"] == 1
    assert b["pending"] == len(beta_status["pending"]) == 0
    assert b["ok"] is False and b["error"] is None

    g = rows["gamma"]
    assert g["last_run"] is None and g["last_success"] is None
    assert (g["quarantined"], g["pending"], g["drift"]) == (0, 0, 0)
    assert g["ok"] is False and g["error"] is None

    # the table says the same, one line per tenant
    code, out, _ = run_cli("fleet", "status", str(fleet_dir))
    assert code == 1
    lines = {line.split()[0]: line for line in out.splitlines()[1:4]}
    assert set(lines) == {"acme", "beta", "gamma"}
    assert lines["gamma"].split()[1] == "never" and "never ran" in lines["gamma"]
    assert lines["beta"].split()[3] == "1"  # the exit code column
    assert "2 need attention" in out

    # beta's company gets its name, the next pass brings it in; without gamma all is clean
    beta_sb.limego.update_company(bad, name="Namngiven AB")
    assert beta.run("sync").code == 0
    (fleet_dir / "gamma.toml").unlink()
    code, rows = fleet_json(fleet_dir)
    assert code == 0, rows
    assert rows["beta"]["quarantined"] == 0 and rows["beta"]["last_run"]["exit_code"] == 0
    assert all(r["ok"] for r in rows.values())
    code, out, _ = run_cli("fleet", "status", str(fleet_dir))
    assert code == 0 and "2 tenants: all fine" in out


# --- read-only, no lock -------------------------------------------------------------------------


def test_reads_beside_a_running_pass_without_the_lock_or_a_write(tmp_path: Path) -> None:
    state = tmp_path / "acme" / "limefort.db"
    tenant_config(tmp_path, "acme", str(state))
    writer = state_with_run(state, 0)
    try:
        writer.start_run("sync")  # a pass in progress: committed start, no end yet
        with writer.transaction():  # and an uncommitted write in hand
            writer.quarantine("deal:9", name="x", reason="r", hint="h", source_hash=None)
            with RunLock(state):  # the lock is held, as by a running pass
                wal = state.with_name(state.name + "-wal")
                assert wal.exists()
                files = {p: p.read_bytes() for p in (state, wal)}
                code, rows = fleet_json(tmp_path)
                assert {p: p.read_bytes() for p in files} == files
        row = rows["acme"]
        assert code == 0, row  # the last pass that is over exited 0
        assert row["last_run"]["exit_code"] == 0
        assert row["running_since"] is not None
        assert row["quarantined"] == 0, "an uncommitted write is not visible"
    finally:
        writer.close()


def test_an_idle_state_directory_is_left_exactly_as_it_was(tmp_path: Path) -> None:
    # Nothing has the file open: a plain read-only open would leave -wal and -shm files behind.
    state = tmp_path / "acme" / "limefort.db"
    tenant_config(tmp_path, "acme", str(state))
    state_with_run(state, 0).close()
    assert sorted(p.name for p in state.parent.iterdir()) == ["limefort.db"]
    before = snapshot(tmp_path)
    assert fleet_json(tmp_path)[0] == 0
    assert snapshot(tmp_path) == before
    assert not lock_path(state).exists()


def test_the_state_file_cannot_be_written_through_the_readers_connection(tmp_path: Path) -> None:
    state = tmp_path / "limefort.db"
    state_with_run(state, 0).close()
    for wal_exists in (False, True):
        conn = sqlite3.connect(read_only_uri(state, wal_exists=wal_exists), uri=True)
        try:
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                conn.execute("DELETE FROM runs")
        finally:
            conn.close()


def test_no_migration_runs_on_an_old_state_file(tmp_path: Path) -> None:
    state = tmp_path / "old.db"
    state_with_run(state, 0).close()
    with sqlite3.connect(state) as conn:  # as if written before the newest migration
        conn.execute("DELETE FROM _migrations WHERE name = '002_quarantine_waits_for'")
    conn.close()
    tenant_config(tmp_path, "old", str(state))
    assert fleet_json(tmp_path)[0] == 0
    with sqlite3.connect(state) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM _migrations")}
    conn.close()
    assert "002_quarantine_waits_for" not in names


# --- what counts ------------------------------------------------------------------------------


def test_drift_counts_only_unacknowledged_rows_and_fails_the_fleet(tmp_path: Path) -> None:
    state = tmp_path / "acme" / "limefort.db"
    tenant_config(tmp_path, "acme", str(state))
    store = state_with_run(state, 0)
    assert fleet_json(tmp_path)[1]["acme"]["drift"] == 0  # an empty drift table: none
    # Migration 004_drift's table; only `acked_at` matters here.
    with store.transaction():
        for key in ("deal:1", "deal:2"):
            store.record_drift(key, document="invoice:1", changes={"value": ("1.00", "2.00")})
        store.ack_drift(["deal:2"])
    store.close()
    code, rows = fleet_json(tmp_path)
    assert rows["acme"]["drift"] == 1
    assert code == 1 and rows["acme"]["ok"] is False
    # A state file written before the drift table existed counts none.
    with sqlite3.connect(state) as conn:
        conn.execute("DROP TABLE drift")
    conn.close()
    assert fleet_json(tmp_path)[1]["acme"]["drift"] == 0


def test_pending_is_shown_but_waits_for_no_person(tmp_path: Path) -> None:
    state = tmp_path / "limefort.db"
    tenant_config(tmp_path, "acme", str(state))
    store = state_with_run(state, 0)
    with store.transaction():
        store.document_intent(
            "7",
            kind="invoice",
            idem_key="limego:deal:7",
            company_id="1",
            customer_number="1",
            name="n",
            value="1",
            won_at="2026-01-01",
        )
        store.customer_intent("3", orgnr=None, name="n", payload="{}", hash="h")
    store.close()
    code, rows = fleet_json(tmp_path)
    assert rows["acme"]["pending"] == 2
    assert code == 0


def test_a_killed_pass_is_the_last_run_once_another_has_started(tmp_path: Path) -> None:
    state = tmp_path / "limefort.db"
    tenant_config(tmp_path, "acme", str(state))
    store = state_with_run(state, 0)
    killed = store.start_run("sync")  # never finished: SIGKILL
    killed_at = store.runs(1)[0]["started_at"]
    assert store.runs(1)[0]["id"] == killed
    store.close()
    code, rows = fleet_json(tmp_path)
    # alone, it may still be running: the pass before it decides
    assert code == 0 and rows["acme"]["running_since"] is not None
    store = Store.open(state)
    store.start_run("sync")  # the next pass started, so the one before is over
    store.close()
    code, rows = fleet_json(tmp_path)
    last = rows["acme"]["last_run"]
    assert last["exit_code"] is None and last["finished_at"] is None
    assert last["started_at"] == killed_at
    assert code == 1
    assert "killed" in run_cli("fleet", "status", str(tmp_path))[1]


# --- problems are rows, not crashes -------------------------------------------------------------


def test_configs_and_state_files_that_cannot_be_read_are_rows_with_an_error(
    tmp_path: Path,
) -> None:
    state_with_run(tmp_path / "good" / "limefort.db", 0).close()
    tenant_config(tmp_path, "good", str(tmp_path / "good" / "limefort.db"))
    (tmp_path / "broken.toml").write_text("[limego\n")
    (tmp_path / "nourl.toml").write_text('[limego]\nclient_id = "x"\n[fortnox]\nclient_id = "y"\n')
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database, just bytes " * 200)
    tenant_config(tmp_path, "corrupt", str(garbage))
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).execute("CREATE TABLE t (x)").connection.close()
    tenant_config(tmp_path, "other", str(empty))
    (tmp_path / "notes.txt").write_text("not a config")

    code, rows = fleet_json(tmp_path)
    assert code == 1
    assert set(rows) == {"good", "broken", "nourl", "corrupt", "other"}
    assert rows["good"]["ok"] is True and rows["good"]["error"] is None
    assert "not valid TOML" in rows["broken"]["error"]
    assert rows["nourl"]["error"].startswith("limego.base_url: missing")
    assert str(garbage) in rows["corrupt"]["error"]
    assert "not a limefort state file" in rows["other"]["error"]
    for name in ("broken", "nourl", "corrupt", "other"):
        assert rows[name]["ok"] is False
    code, out, err = run_cli("fleet", "status", str(tmp_path))
    assert code == 1 and "error: limego.base_url: missing" in out, err


def test_secrets_kept_in_each_tenants_environment_are_not_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_with_run(tmp_path / "a.db", 0).close()
    (tmp_path / "acme.toml").write_text(
        '[limego]\nbase_url = "https://crm.example.com"\nclient_id = "lg"\n'
        f'[fortnox]\nclient_id = "fx"\ntenant_id = "1"\n[state]\npath = "{tmp_path / "a.db"}"\n'
    )
    # This process's LIMEFORT_* environment belongs to no tenant: it must not move the state.
    monkeypatch.setenv("LIMEFORT_STATE_PATH", str(tmp_path / "elsewhere.db"))
    code, rows = fleet_json(tmp_path)
    assert rows["acme"]["error"] is None
    assert rows["acme"]["state"] == str(tmp_path / "a.db")
    assert code == 0


def test_two_tenants_on_one_state_file_are_both_flagged(tmp_path: Path) -> None:
    state_with_run(tmp_path / "s" / "limefort.db", 0).close()
    tenant_config(tmp_path, "acme", str(tmp_path / "s" / "limefort.db"))
    tenant_config(tmp_path, "copy", "s/limefort.db")  # relative: the same file
    tenant_config(tmp_path, "own", str(tmp_path / "own.db"))
    code, rows = fleet_json(tmp_path)
    assert code == 1
    assert "also the state file of copy" in rows["acme"]["error"]
    assert "also the state file of acme" in rows["copy"]["error"]
    assert rows["own"]["error"] is None


def test_an_empty_or_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run_cli("fleet", "status", str(tmp_path))
    assert code == 2 and "no tenant configs" in err
    code, _, err = run_cli("fleet", "status", str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in err


# --- pure functions ---------------------------------------------------------------------------


def R(started: str, finished: str | None, code: int | None) -> fleet.Run:
    return fleet.Run(started, finished, code, "sync")


def test_split_runs() -> None:
    done, going, killed = R("t3", "t4", 0), R("t5", None, None), R("t1", None, None)
    assert fleet.split_runs([]) == (None, None)
    assert fleet.split_runs([done]) == (done, None)
    assert fleet.split_runs([going]) == (None, "t5")
    assert fleet.split_runs([going, done]) == (done, "t5")
    assert fleet.split_runs([done, killed]) == (done, None)
    assert fleet.split_runs([going, killed, done]) == (killed, "t5")


def facts(*runs: fleet.Run, q: int = 0, p: int = 0, d: int = 0) -> fleet.StateFacts:
    return fleet.StateFacts(runs=runs, last_success=None, quarantined=q, pending=p, drift=d)


TENANT = fleet.Tenant("acme", Path("/etc/limefort/acme.toml"), Path("/var/lib/a.db"))


@pytest.mark.parametrize(
    ("state", "ok"),
    [
        (facts(R("a", "b", 0)), True),
        (facts(R("a", "b", 0), p=3), True),
        (facts(R("c", None, None), R("a", "b", 0)), True),
        (facts(R("a", "b", 1)), False),
        (facts(R("a", "b", 2)), False),
        (facts(R("a", "b", 0), q=1), False),
        (facts(R("a", "b", 0), d=1), False),
        (facts(R("c", None, None), R("b", None, None), R("a", "b", 0)), False),
        (facts(), False),
        (None, False),
    ],
)
def test_row_ok(state: fleet.StateFacts | None, ok: bool) -> None:
    row = fleet.build_row(TENANT, state)
    assert row["ok"] is ok
    assert fleet.exit_code([row]) == (0 if ok else 1)
    assert fleet.build_row(TENANT, state, error="state file: bad")["ok"] is False


def test_exit_code_of_no_rows_is_not_success() -> None:
    assert fleet.exit_code([]) == 1


def test_resolve_state_path() -> None:
    cfg = Path("/etc/limefort/acme.toml")
    assert fleet.resolve_state_path(cfg, Path("acme.db")) == Path("/etc/limefort/acme.db")
    assert fleet.resolve_state_path(cfg, Path("/var/lib/x.db")) == Path("/var/lib/x.db")


def test_read_only_uri_quotes_the_path() -> None:
    uri = read_only_uri(Path("/srv/a b?#/s.db"), wal_exists=True)
    assert uri == "file:///srv/a%20b%3F%23/s.db?mode=ro"
    assert read_only_uri(Path("/s.db"), wal_exists=False).endswith("?mode=ro&immutable=1")


def test_render_table_lines_up_and_summarises() -> None:
    rows = [
        fleet.build_row(
            TENANT, facts(R("2026-01-01T10:00:00+00:00", "2026-01-01T10:01:00+00:00", 0))
        ),
        fleet.build_row(fleet.Tenant("b", Path("/b.toml"), None, error="config: broken"), None),
    ]
    text = fleet.render_table(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["TENANT", "LAST", "RUN", "EXIT", "LAST", "SUCCESS"] + [
        "QUARANTINED",
        "PENDING",
        "DRIFT",
    ]
    assert lines[1].split()[:5] == ["acme", "2026-01-01", "10:01:00Z", "0", "-"]
    assert lines[2].endswith("error: config: broken")
    assert lines[0].index("EXIT") == lines[1].index(" 0 ") + 1
    assert lines[-1] == "2 tenants: 1 needs attention"


SETPRIV = shutil.which("setpriv")


def _runnable_by_anyone(where: Path) -> tuple[list[str], str]:
    """limefort and what it imports, where `nobody` may read them: the clone (and its .venv)
    may sit in a private directory (CI's clone, a 0700 `mktemp -d`, a home directory), so the
    test must not run them from there. Hard links where the file system allows (instant),
    copies elsewhere; the interpreter itself is the venv's base one, outside the clone."""
    import sysconfig

    import limefort

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    skip = shutil.ignore_patterns(
        "__pycache__", "*.pth", "__editable__*", "mypy*", "hypothesis*", "_pytest", "pip",
        "pip-*", "kubernetes_validate*", "fortpyx*", "ruff*", "*.dist-info",
    )  # fmt: skip
    site = where / "site"
    shutil.copytree(sysconfig.get_paths()["purelib"], site, ignore=skip, copy_function=link_or_copy)
    src = where / "src"
    shutil.copytree(
        Path(limefort.__file__).parent, src / "limefort", ignore=skip, copy_function=link_or_copy
    )
    for d in [where, *where.rglob("*")]:
        if d.is_dir():
            d.chmod(0o755)
    return [os.path.realpath(sys.executable), "-S"], f"{src}{os.pathsep}{site}"


@pytest.mark.skipif(
    os.geteuid() != 0 or SETPRIV is None, reason="needs root and setpriv to run as another user"
)
def test_another_user_gets_a_row_with_the_reason_not_a_traceback() -> None:
    # A state directory is 0700, its tenant's user's; the operator may run fleet status as
    # someone else. That tenant's row says why; a tenant whose files it may read still shows,
    # even beside a running pass whose -wal and -shm files it cannot write.
    assert SETPRIV
    base = Path(tempfile.mkdtemp(prefix="limefort-fleet-"))
    try:
        base.chmod(0o755)
        python, pythonpath = _runnable_by_anyone(base / "python")
        for tenant, mode in (("acme", 0o700), ("beta", 0o755)):
            (base / tenant).mkdir(mode=mode)
            (base / tenant).chmod(mode)
            tenant_config(base, tenant, f"{tenant}/limefort.db").chmod(0o644)
            state_with_run(base / tenant / "limefort.db", 0).close()
        writer = Store.open(base / "beta" / "limefort.db")
        try:
            writer.start_run("sync")
            for p in (base / "beta").iterdir():
                p.chmod(0o644)
            proc = subprocess.run(
                [SETPRIV, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
                + [*python, "-m", "limefort", "fleet", "status", str(base), "--json"],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, "PYTHONPATH": pythonpath},
            )
        finally:
            writer.close()
        assert proc.returncode == 1, proc.stderr
        rows = {r["tenant"]: r for r in json.loads(proc.stdout)}
        assert "Permission denied" in rows["acme"]["error"]
        assert rows["beta"]["error"] is None and rows["beta"]["ok"] is True
        assert rows["beta"]["running_since"] is not None
    finally:
        shutil.rmtree(base)


def test_the_cli_default_directory_is_the_fleets() -> None:
    """The CLI names fleet's default directory without importing the fleet module."""
    from limefort.cli import cli
    from limefort.commands.fleet import DEFAULT_DIR

    fleet_status = cli.commands["fleet"].commands["status"]  # type: ignore[attr-defined]
    directory = next(p for p in fleet_status.params if p.name == "directory")
    assert directory.default == str(DEFAULT_DIR)
