from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import limefort

REPO = Path(__file__).resolve().parents[1]
CRON = REPO / "cron"
UNITS = ("limefort.service", "limefort.timer", "limefort-daemon.service")
TEMPLATES = ("limefort@.service", "limefort@.timer")
# verify loads a template through an instance name, as `systemctl enable limefort@acme.timer`
INSTANCES = ("limefort@acme.service", "limefort@acme.timer")
INSTALLED_BIN = "/usr/local/bin/limefort"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or (
    "/usr/bin/systemd-analyze" if os.path.exists("/usr/bin/systemd-analyze") else None
)

# What `systemd-analyze verify` may print because of where it runs (a container, a CI runner
# without systemd as PID 1, no `limefort` user), as opposed to what it says about our files.
# Seen here (Debian 12, systemd 252, in a container): nothing at all for good units.
ENVIRONMENTAL = [
    re.compile(p)
    for p in (
        r"System has not been booted with systemd",
        r"Failed to connect to (the )?bus",
        r"Failed to (lookup|look up) RuntimeDirectory",
        r"Failed to (create|open|setup|set up|allocate|attach).*(cgroup|control group|/dev/tty)",
        r"Failed to initialize manager",
        r"[Rr]unning in a container",
        r"[Uu]ser .?limefort.? (does not exist|not found)|Unknown user(name)? .?limefort",
        r"[Gg]roup .?limefort.? (does not exist|not found)|Unknown group .?limefort",
    )
]


def _units_dir(tmp_path: Path, executable: str) -> Path:
    d = tmp_path / "units"
    d.mkdir()
    for name in UNITS + TEMPLATES:
        text = (CRON / name).read_text()
        # verify checks that ExecStart's program exists and is executable
        (d / name).write_text(text.replace(INSTALLED_BIN, executable))
    return d


def _executable() -> str:
    venv_bin = Path(sys.executable).parent / "limefort"
    return str(venv_bin) if os.access(venv_bin, os.X_OK) else "/bin/true"


def _verify(directory: Path, *names: str) -> tuple[int, list[str]]:
    assert SYSTEMD_ANALYZE
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "--man=no", "verify", *(str(directory / n) for n in names)],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"},
    )
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return proc.returncode, lines


def _ours(line: str, directory: Path) -> bool:
    return str(directory) in line or any(u in line for u in UNITS + TEMPLATES + INSTANCES)


def _real_problems(lines: list[str], directory: Path) -> list[str]:
    problems = []
    for line in lines:
        environmental = any(p.search(line) for p in ENVIRONMENTAL)
        # A complaint about another unit file on this machine (network-online.target, ...) is
        # that machine's business; one that names our files never is, unless it is about the
        # limefort user, which the test machine does not have.
        if environmental or not _ours(line, directory) and line.startswith("/"):
            continue
        problems.append(line)
    return problems


needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (no systemd on this host)"
)


@needs_systemd_analyze
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    d = _units_dir(tmp_path, _executable())
    rc, lines = _verify(d, *UNITS)
    assert _real_problems(lines, d) == [], "\n".join(lines)
    assert rc == 0, "\n".join(lines)


@needs_systemd_analyze
def test_verify_does_report_a_broken_unit(tmp_path: Path) -> None:
    # The control for the test above: the same files, one typo, and verify must say so,
    # so a silent verify really means the keys were read.
    d = _units_dir(tmp_path, _executable())
    unit = d / "limefort.service"
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=strickt"))
    _, lines = _verify(d, "limefort.service")
    assert any("strickt" in line or "protect system" in line.lower() for line in lines), lines
    assert _real_problems(lines, d)


@needs_systemd_analyze
def test_verify_notices_a_missing_program(tmp_path: Path) -> None:
    d = _units_dir(tmp_path, str(tmp_path / "no-such-limefort"))
    rc, lines = _verify(d, "limefort.service")
    assert rc != 0 and any("no-such-limefort" in line for line in lines), lines


def _unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string((CRON / name).read_text())
    return cp


def test_oneshot_unit_settings() -> None:
    s = _unit("limefort.service")["Service"]
    assert s["Type"] == "oneshot"
    assert s["User"] == s["Group"] == "limefort"
    assert s["ExecStart"] == (
        f"{INSTALLED_BIN} --config /etc/limefort/limefort.toml --log-format json sync"
    )
    assert "75" in s["SuccessExitStatus"].split()
    assert s["EnvironmentFile"] == "-/etc/limefort/env"
    assert s["StateDirectory"] == "limefort"
    assert s["WorkingDirectory"] == "/var/lib/limefort"
    for key, value in {
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/limefort",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
    }.items():
        assert s[key] == value
    # the network must stay reachable
    assert "PrivateNetwork" not in s and "IPAddressDeny" not in s
    assert {"AF_INET", "AF_INET6"} <= set(s["RestrictAddressFamilies"].split())


def test_timer_settings() -> None:
    u = _unit("limefort.timer")
    t = u["Timer"]
    assert t["OnCalendar"] == "*:0/5"
    assert t["Persistent"] == "true"
    assert t["RandomizedDelaySec"] == "30"
    assert t["Unit"] == "limefort.service"
    assert u["Install"]["WantedBy"] == "timers.target"


def test_daemon_unit_settings() -> None:
    s = _unit("limefort-daemon.service")["Service"]
    assert s["Type"] == "simple"
    assert s["ExecStart"].endswith(" run") and s["ExecStart"].startswith(INSTALLED_BIN)
    assert s["Restart"] == "on-failure"
    assert s["KillSignal"] == "SIGTERM"
    assert int(s["TimeoutStopSec"]) >= 120
    oneshot = _unit("limefort.service")["Service"]
    hardening = [k for k in oneshot if k.startswith(("Protect", "Restrict", "Private", "NoNew"))]
    assert hardening
    for key in hardening + ["ReadWritePaths", "User", "Group", "StateDirectory", "UMask"]:
        assert s.get(key) == oneshot.get(key), f"{key} differs between the two services"


# --- templates: one instance per tenant ----------------------------------------------------------


@needs_systemd_analyze
def test_template_units_pass_systemd_analyze_verify_as_an_instance(tmp_path: Path) -> None:
    d = _units_dir(tmp_path, _executable())
    rc, lines = _verify(d, *INSTANCES)
    assert _real_problems(lines, d) == [], "\n".join(lines)
    assert rc == 0, "\n".join(lines)


@needs_systemd_analyze
def test_verify_reads_the_template_behind_an_instance_name(tmp_path: Path) -> None:
    # The control: a typo in the template must show when verifying limefort@acme.service,
    # and so must a missing program, so a silent verify above really read the template.
    d = _units_dir(tmp_path, _executable())
    unit = d / "limefort@.service"
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=strickt"))
    _, lines = _verify(d, "limefort@acme.service")
    assert any("strickt" in line or "protect system" in line.lower() for line in lines), lines
    assert _real_problems(lines, d)
    (tmp_path / "second").mkdir()
    d2 = _units_dir(tmp_path / "second", str(tmp_path / "no-such-limefort"))
    rc, lines = _verify(d2, "limefort@acme.service")
    assert rc != 0 and any("no-such-limefort" in line for line in lines), lines


def _instance(name: str, tenant: str) -> configparser.ConfigParser:
    """The template with %i expanded, as systemd does for limefort@<tenant>."""
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string((CRON / name).read_text().replace("%i", tenant))
    return cp


def test_template_service_is_the_single_service_for_one_tenant() -> None:
    single = _unit("limefort.service")["Service"]
    s = _instance("limefort@.service", "acme")["Service"]
    # What differs, and only that: the tenant's config, secrets and state directory.
    per_tenant = {
        # The tenant's own copy of its config, as a credential only its user can read.
        "ExecStart": f"{INSTALLED_BIN} --config %d/limefort.toml --log-format json sync",
        "LoadCredential": "limefort.toml:/etc/limefort/acme.toml",
        "EnvironmentFile": "-/etc/limefort/acme.env",
        # Its own user: no tenant reads another's state, config or environment.
        "DynamicUser": "yes",
        "User": "limefort-acme",
        "StateDirectory": "limefort/acme",
        "WorkingDirectory": "/var/lib/limefort/acme",
        "ReadWritePaths": "/var/lib/limefort/acme",
    }
    for key, value in per_tenant.items():
        assert s[key] == value, key
    assert set(s) - {"DynamicUser", "LoadCredential"} == set(single) - {"Group"}, (
        "the template and the single unit set different keys"
    )
    for key in set(single) - set(per_tenant) - {"Group"}:
        assert s[key] == single[key], f"{key} differs from limefort.service"
    assert "75" in s["SuccessExitStatus"].split()


@needs_systemd_analyze
def test_the_template_keeps_its_systemd_analyze_security_exposure_at_1_4(tmp_path: Path) -> None:
    d = _units_dir(tmp_path, _executable())
    instance = d / "limefort@acme.service"
    instance.write_text((d / "limefort@.service").read_text().replace("%i", "acme"))
    out = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(instance)],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert found, out
    assert float(found.group(1)) <= 1.4, out
    # The control: without DynamicUser and with root, the same file scores worse, so the
    # figure above is read from these settings.
    instance.write_text(
        instance.read_text().replace("DynamicUser=yes", "").replace("User=limefort-acme", "")
    )
    worse = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(instance)],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    found_worse = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", worse)
    assert found_worse and float(found_worse.group(1)) > float(found.group(1)), worse


def test_two_instances_share_nothing_writable() -> None:
    a = _instance("limefort@.service", "acme")["Service"]
    b = _instance("limefort@.service", "globex")["Service"]
    assert a["User"] != b["User"] and a["DynamicUser"] == "yes"
    for key in ("LoadCredential", "EnvironmentFile", "StateDirectory", "ReadWritePaths"):
        assert a[key] != b[key], key
    assert not b["ReadWritePaths"].startswith(a["ReadWritePaths"])


def test_template_timer_runs_each_tenant_every_five_minutes_at_its_own_offset() -> None:
    single = _unit("limefort.timer")["Timer"]
    u = _instance("limefort@.timer", "acme")
    t = u["Timer"]
    assert t["OnCalendar"] == single["OnCalendar"] == "*:0/5"
    assert t["Persistent"] == "true"
    assert t["Unit"] == "limefort@acme.service"
    assert t["FixedRandomDelay"] == "yes"
    # a fixed offset below the 5-minute period: still one pass every 5 minutes per tenant
    m = re.fullmatch(r"(\d+)(s|m|min)?", t["RandomizedDelaySec"])
    assert m, t["RandomizedDelaySec"]
    seconds = int(m.group(1)) * (60 if m.group(2) in ("m", "min") else 1)
    assert 60 <= seconds < 300
    assert u["Install"]["WantedBy"] == "timers.target"


# --- cron -------------------------------------------------------------------------------------


def _crontab() -> tuple[dict[str, str], list[str]]:
    text = (CRON / "crontab").read_text()
    assert text.endswith("\n"), "cron ignores a last line without a newline"
    env: dict[str, str] = {}
    jobs: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.fullmatch(r"([A-Z_]+)=(.*)", line)
        if m:
            env[m.group(1)] = m.group(2).strip('"')
        else:
            jobs.append(line)
    return env, jobs


def test_crontab_is_a_cron_d_file_running_every_five_minutes_as_limefort() -> None:
    env, jobs = _crontab()
    assert len(jobs) == 1
    minute, hour, dom, month, dow, user, command = jobs[0].split(None, 6)
    assert (minute, hour, dom, month, dow) == ("*/5", "*", "*", "*", "*")
    assert user == "limefort"
    assert "%" not in command, "cron turns % into a newline"
    assert command.startswith("flock -n /var/lib/limefort/")
    assert "/usr/local/bin" in env["PATH"].split(":"), "where the units expect limefort"
    assert env["SHELL"] == "/bin/sh"


STUB = """#!/bin/sh
# stands in for limefort: records its arguments, says something on both streams, sleeps
printf '%s\\n' "$@" > "$STUB_DIR/argv.$$"
echo "stub on stderr" >&2
touch "$STUB_DIR/started"
sleep "${STUB_SLEEP:-0}"
echo "stub on stdout"
"""


def _cron_command(tmp_path: Path, program: str) -> tuple[str, dict[str, str]]:
    env, jobs = _crontab()
    command = jobs[0].split(None, 6)[6]
    subs = {
        "/var/lib/limefort/limefort.cron.lock": str(tmp_path / "cron.lock"),
        "/var/log/limefort/sync.log": str(tmp_path / "sync.log"),
        " limefort --config": f" {program} --config",
    }
    for old, new in subs.items():
        assert old in command, f"the crontab no longer contains {old!r}"
        command = command.replace(old, new)
    run_env = {"PATH": env["PATH"], "HOME": str(tmp_path), "STUB_DIR": str(tmp_path)}
    return command, run_env


@pytest.fixture
def stub(tmp_path: Path) -> Path:
    if not shutil.which("flock", path="/usr/local/bin:/usr/bin:/bin"):
        pytest.skip("flock(1) is not installed")
    p = tmp_path / "limefort-stub"
    p.write_text(STUB)
    p.chmod(0o755)
    return p


def _argvs(tmp_path: Path) -> list[list[str]]:
    return [p.read_text().splitlines() for p in sorted(tmp_path.glob("argv.*"))]


def test_cron_line_runs_limefort_sync_and_appends_both_streams_to_the_log(
    tmp_path: Path, stub: Path
) -> None:
    command, env = _cron_command(tmp_path, str(stub))
    for _ in range(2):
        proc = subprocess.run(["/bin/sh", "-c", command], env=env, timeout=30)
        assert proc.returncode == 0
    assert _argvs(tmp_path)[0] == [
        "--config",
        "/etc/limefort/limefort.toml",
        "--log-format",
        "json",
        "sync",
    ]
    log = (tmp_path / "sync.log").read_text().splitlines()
    assert log == ["stub on stderr", "stub on stdout"] * 2  # appended, not overwritten


def test_cron_line_skips_at_once_while_a_pass_still_runs(tmp_path: Path, stub: Path) -> None:
    command, env = _cron_command(tmp_path, str(stub))
    first = subprocess.Popen(["/bin/sh", "-c", command], env={**env, "STUB_SLEEP": "3"})
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "started").exists():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.02)
        t0 = time.monotonic()
        second = subprocess.run(["/bin/sh", "-c", command], env=env, timeout=30)
        took = time.monotonic() - t0
        assert second.returncode == 1, "flock -n exits 1 when the lock is held"
        assert took < 1.0, f"the second run waited {took:.1f} s instead of skipping"
        assert len(_argvs(tmp_path)) == 1, "the second limefort must not even start"
        assert first.wait(timeout=15) == 0
    finally:
        if first.poll() is None:
            first.kill()
    # and the lock is free again afterwards
    third = subprocess.run(["/bin/sh", "-c", command], env=env, timeout=30)
    assert third.returncode == 0 and len(_argvs(tmp_path)) == 2


def test_cron_line_with_the_real_limefort(tmp_path: Path) -> None:
    real = Path(sys.executable).parent / "limefort"
    if not os.access(real, os.X_OK):
        pytest.skip("no limefort console script next to this Python")
    probe = subprocess.run([str(real), "--version"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"`limefort --version` does not run here: {probe.stderr.strip()[-200:]}")
    command, env = _cron_command(tmp_path, str(real))
    # --version is eager: the global options the crontab passes must parse, then it exits 0.
    assert " json sync >>" in command
    command = command.replace(" json sync >>", " json --version >>")
    proc = subprocess.run(["/bin/sh", "-c", command], env=env, timeout=60)
    assert proc.returncode == 0, (tmp_path / "sync.log").read_text()
    assert limefort.__version__ in (tmp_path / "sync.log").read_text()


# --- a cron line per tenant (docs/operations.md, "Running many tenants") -------------------------


def _readme_tenant_cron_lines() -> list[str]:
    readme = (REPO / "docs" / "operations.md").read_text()
    section = readme.split("## Running many tenants", 1)[1].split("\n## ", 1)[0]
    block = section.split("**A cron line per tenant**", 1)[1].split("```", 2)[1]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_cron_lines_per_tenant_share_nothing_and_run(tmp_path: Path, stub: Path) -> None:
    lines = _readme_tenant_cron_lines()
    assert len(lines) >= 2
    seen: dict[str, set[str]] = {"minute": set(), "config": set(), "lock": set(), "log": set()}
    for line in lines:
        minute, hour, dom, month, dow, user, command = line.split(None, 6)
        assert (hour, dom, month, dow, user) == ("*", "*", "*", "*", "limefort")
        assert "%" not in command
        m = re.fullmatch(
            r"flock -n (/var/lib/limefort/(\w+)/\S+) limefort --config (/etc/limefort/(\w+)\.toml)"
            r" --log-format json sync >> (/var/log/limefort/(\w+)\.log) 2>&1",
            command,
        )
        assert m, command
        lock, lock_tenant, config, tenant, log, log_tenant = m.groups()
        assert lock_tenant == tenant == log_tenant, line
        for key, value in (("minute", minute), ("config", config), ("lock", lock), ("log", log)):
            assert value not in seen[key], f"two tenants share the {key} {value}"
            seen[key].add(value)
        # and it runs: the tenant's config reaches limefort, the output its own log
        (tmp_path / tenant).mkdir()
        run = (
            command.replace(lock, str(tmp_path / tenant / "cron.lock"))
            .replace(log, str(tmp_path / f"{tenant}.log"))
            .replace(" limefort --config", f" {stub} --config")
        )
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "STUB_DIR": str(tmp_path / tenant)}
        assert subprocess.run(["/bin/sh", "-c", run], env=env, timeout=30).returncode == 0
        (argv,) = _argvs(tmp_path / tenant)
        assert argv == ["--config", config, "--log-format", "json", "sync"]
        assert (tmp_path / f"{tenant}.log").read_text().splitlines() == [
            "stub on stderr",
            "stub on stdout",
        ]
