"""Progress on a terminal (issue 17): a bar from rich where log lines never glue onto the bar
and the final line is complete, for `backfill` and `sync`, checked on a real pseudo-terminal
through a VT100 emulator; the plain lines a log file gets; the ETA from Fortnox's limit."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Lf
from doubles import ManualClock
from ptyterm import Terminal, run_in_pty

from limefort.commands.progress import (
    NullProgress,
    PassProgress,
    Progress,
    choose_mode,
)
from limefort_sandbox import Sandbox

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR)\s+\S")
LOG_MARK = re.compile(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR)|limefort: ")
BAR_GLYPHS = "━╸╺"


def bar_line(label: str, *, total: bool) -> re.Pattern[str]:
    count = r"\d+/\d+ · " if total else ""
    eta = r" · ETA \d+:\d\d:\d\d" if total else ""
    return re.compile(rf"^{label} [{BAR_GLYPHS} ]+ {count}read \d+ · written \d+ · \d+\.\d/s{eta}$")


class Watch:
    """Checks every state of the screen while the command runs."""

    def __init__(self) -> None:
        self.states = 0
        self.bars_seen = 0

    def __call__(self, term: Terminal) -> None:
        self.states += 1
        for line in term.lines():
            has_bar = any(g in line for g in BAR_GLYPHS)
            if has_bar:
                self.bars_seen += 1
                assert not LOG_MARK.search(line), f"a log line inside the bar: {line!r}"
            if LOG_LINE.match(line):
                assert not has_bar, f"a bar inside a log line: {line!r}"


def check_final(lines: list[str], label: str, *, total: bool) -> str:
    bars = [line for line in lines if any(g in line for g in BAR_GLYPHS)]
    assert len(bars) == 1, bars  # one bar, redrawn in place, left once on screen
    assert bar_line(label, total=total).match(bars[0]), bars[0]
    for line in lines:
        if LOG_MARK.search(line) and not line.startswith("limefort: "):
            assert LOG_LINE.match(line), f"a log line not whole on its own line: {line!r}"
    return bars[0]


@pytest.fixture
def history(make_sandbox: Any, tmp_path: Path) -> tuple[Sandbox, Lf]:
    """30 deals won before sync.start, recorded as history by a first sync."""
    sb = make_sandbox(seed=3, companies=8, deals=0, customer_ratio=1.0)
    customers = sb.limego.customer_ids()
    for i in range(30):
        sb.limego.add_deal(customers[i % 8], stage="won", name=f"Affär {i}", value=100 + i)
    lf = Lf(sb, tmp_path, start=(datetime.now(UTC) + timedelta(seconds=1)).isoformat())
    time.sleep(1.1)
    assert lf.run("sync").code == 0
    return sb, lf


@pytest.mark.slow
@pytest.mark.http
def test_backfill_on_a_terminal_bar_and_log_lines_apart(history: tuple[Sandbox, Lf]) -> None:
    sb, lf = history
    sb.latency = 0.03  # slow enough for the bar to be redrawn between log lines
    today = datetime.now(UTC).date().isoformat()
    watch = Watch()
    rc, term = run_in_pty(
        ["--config", str(lf.config), "-v", "backfill", "--from", today, "--yes"],
        on_output=watch,
    )
    lines = term.lines()
    screen = "\n".join(lines)
    assert rc == 0, screen
    assert watch.bars_seen > 1 and watch.states > 5, screen
    bar = check_final(lines, "backfill", total=True)
    assert " 30/30 · read 30 · written 30 · " in bar, bar
    assert sum("created invoice" in line for line in lines) == 30  # every log line shown, whole
    # 30 POSTs and one read of Fortnox's invoice index (the ledger) before the first.
    # 30 POSTs, the invoice index read once, the writer guard's look after the first three
    # and its check after the pass (rule 14).
    assert lines[-1] == "30 invoices created (33 Fortnox requests)", screen
    assert lines.index(bar) < len(lines) - 1  # the summary comes after the finished bar


@pytest.mark.slow
@pytest.mark.http
def test_sync_on_a_terminal_bar_and_log_lines_apart(make_sandbox: Any, tmp_path: Path) -> None:
    sb = make_sandbox(seed=11, companies=24, deals=30, customer_ratio=1.0)
    lf = Lf(sb, tmp_path, start="2000-01-01")
    sb.latency = 0.02
    watch = Watch()
    rc, term = run_in_pty(["--config", str(lf.config), "sync", "-v"], on_output=watch)
    lines = term.lines()
    screen = "\n".join(lines)
    assert rc in (0, 1), screen
    assert watch.bars_seen > 1, screen
    bar = check_final(lines, "sync", total=True)
    counts = lf.status()["last_run"]["counts"]
    written = sum(
        counts.get(k, 0)
        for k in ("customers_created", "customers_updated", "invoices_created", "orders_created")
    )
    assert written > 0
    assert f" · written {written} · " in bar, (bar, counts)
    read = int(re.search(r"read (\d+)", bar).group(1))  # type: ignore[union-attr]
    assert read >= 24 + 30 - counts.get("quarantined", 0) > 0
    assert re.match(r"^\d+ customers created; \d+ invoices created", lines[-1]), screen


@pytest.mark.slow
def test_sync_not_on_a_terminal_shows_no_progress(lf: Lf) -> None:
    r = lf.run("sync")
    assert r.code in (0, 1)
    assert "━" not in r.err and "/s" not in r.err


# --- the pieces -------------------------------------------------------------------------------


def test_plain_lines_once_a_second_with_count_rate_and_eta() -> None:
    out, clock = io.StringIO(), ManualClock(1000.0)
    p = PassProgress(
        "backfill", limit=25, window=5.0, mode="lines", total=150, stream=out, clock=clock
    )
    with p:
        for _ in range(45):
            clock.t += 0.2  # 5 a second, Fortnox's limit
            p.advance(1, written=1)
    lines = out.getvalue().splitlines()
    assert 8 <= len(lines) <= 10  # 9 s of work: about one line a second, not 45
    assert lines[-1] == "45/150 5.0/s ETA 0:00:21 (read 0, written 45)"


def test_the_eta_never_promises_more_than_fortnox_allows() -> None:
    clock = ManualClock(1000.0)
    p = PassProgress("b", limit=25, window=5.0, mode="off", total=100, clock=clock)
    p.__enter__()
    clock.t += 1.0
    p.advance(50)  # 50/s observed, a burst: the limit (5/s) rules
    assert p.eta() == pytest.approx(10.0)
    p.total(50)  # more work became known
    assert p.eta() == pytest.approx(20.0)


def test_without_a_total_there_is_no_eta_and_the_rate_is_reads() -> None:
    clock = ManualClock(1000.0)
    p = PassProgress("sync", limit=25, window=5.0, mode="off", clock=clock)
    p.__enter__()
    clock.t += 2.0
    p.read(100)
    p.advance(1, written=1)
    assert p.eta() is None
    assert p.info() == "read 100 · written 1 · 50.0/s"


def test_json_mode_logs_a_record(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(1000.0)
    p = PassProgress("backfill", limit=25, window=5.0, mode="json", total=4, clock=clock)
    with caplog.at_level(logging.INFO, logger="limefort"), p:
        for _ in range(4):
            clock.t += 0.5
            p.advance()
    records = [r for r in caplog.records if r.getMessage().startswith("progress")]
    assert records and records[-1].done == 4 and records[-1].total == 4  # type: ignore[attr-defined]
    assert records[-1].eta_seconds == 0  # type: ignore[attr-defined]
    json.dumps(records[-1].__dict__, default=str)


def test_off_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with PassProgress("x", limit=25, window=5.0, mode="off", total=3) as p:
        p.advance(3)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("kw", "mode"),
    [
        ({"quiet": True, "json_logs": False, "tty": True, "lines_when_not_a_tty": True}, "off"),
        ({"quiet": False, "json_logs": True, "tty": True, "lines_when_not_a_tty": True}, "json"),
        ({"quiet": False, "json_logs": False, "tty": True, "lines_when_not_a_tty": False}, "bar"),
        ({"quiet": False, "json_logs": False, "tty": False, "lines_when_not_a_tty": True}, "lines"),
        ({"quiet": False, "json_logs": False, "tty": False, "lines_when_not_a_tty": False}, "off"),
    ],
)
def test_choose_mode(kw: dict[str, bool], mode: str) -> None:
    assert choose_mode(**kw) == mode


def test_null_progress_is_a_progress() -> None:
    def use(p: Progress) -> None:
        p.total(2)
        p.read(10)
        p.advance(2, written=1)

    use(NullProgress())
    use(PassProgress("x", limit=0, window=5.0, mode="off"))
