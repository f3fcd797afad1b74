"""Issue 26: an idle pass costs almost nothing. A bureau runs a thousand of them every five
minutes, so what an idle pass loads and does is a budget. CPU itself is measured in
`make bench` (part 6), never in a test; here the causes are held: what the `limefort` command
imports for a pass with nothing to send, that its modules are frozen out of the collector, and
the requests it makes (rule 14's one read of Fortnox's documents, no token request)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Lf

from limefort_sandbox import Sandbox

# Loaded only by the command that needs them, never by a pass with nothing to send: the
# schema maker (a migration), the monitoring and scheduling libraries, the country tables and
# the terminal UI.
NOT_IN_AN_IDLE_PASS = (
    "sqlite_utils",
    "dateutil",
    "pluggy",
    "prometheus_client",
    "apscheduler",
    "rich",
    "pycountry",
)

# The `limefort` command as installed, with a record of what it loaded taken at exit.
PROBE = """
import atexit, gc, json, sys
out = sys.argv[1]
def record():
    with open(out, "w") as f:
        json.dump({"modules": sorted(sys.modules), "frozen": gc.get_freeze_count(),
                   "collecting": gc.isenabled()}, f)
atexit.register(record)
sys.argv = ["limefort", *sys.argv[2:]]
from limefort.__main__ import run
run()
"""


def idle_pass(lf: Lf, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Any]:
    report = tmp_path / "idle.json"
    argv = [sys.executable, "-c", PROBE, str(report), "--config", str(lf.config), "-q", "sync"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return done, json.loads(report.read_text())


@pytest.mark.http
def test_an_idle_pass_loads_only_what_it_needs(make_sandbox: Any, tmp_path: Path) -> None:
    sb: Sandbox = make_sandbox(seed=61, companies=6, deals=6)
    lf = Lf(sb, tmp_path)
    first = lf.spawn("sync")
    assert first.wait(timeout=120) == 0, first.communicate()
    fx, lg = len(sb.fortnox.requests), len(sb.limego.requests)

    done, seen = idle_pass(lf, tmp_path)
    assert done.returncode == 0, done.stderr
    loaded = set(seen["modules"])
    assert "limefort.engine.sync" in loaded  # it did run a pass
    assert not {m for m in NOT_IN_AN_IDLE_PASS if m in loaded}
    # The modules it loaded were frozen out of the cycle collector, which still runs.
    assert seen["frozen"] > 10_000 and seen["collecting"]

    fortnox = [r.path for r in sb.fortnox.requests[fx:]]
    limego = [r.path for r in sb.limego.requests[lg:]]
    assert fortnox == ["/3/invoices"]  # rule 14: what changed among the documents, once
    assert "/oauth/token" not in limego and all(p.startswith("/api/v1/") for p in limego)


def test_the_installed_command_starts_where_the_modules_are_frozen() -> None:
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "limefort"]
    assert script.value == "limefort.__main__:run"
