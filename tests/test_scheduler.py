from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from conftest import wait_for

from limefort.core.errors import ConfigError
from limefort.ops.scheduler import (
    KEEPALIVE_JOB_ID,
    PASS_JOB_ID,
    cron_trigger,
    run_daemon,
)
from limefort.ops.signals import stop_on_signals

REPO = Path(__file__).resolve().parents[1]
FAST = timedelta(seconds=0.2)


class Recorder:
    """A fake pass: records each call, how many ran at once, and whether it saw the stop."""

    def __init__(self, *, records: int = 1, record_time: float = 0.0, fail_first: int = 0):
        self.records = records
        self.record_time = record_time
        self.fail_first = fail_first
        self.lock = threading.Lock()
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self.spans: list[tuple[float, float]] = []
        self.entered = threading.Event()
        self.completed: list[bool] = []  # per pass: stopped at a record boundary or ran out
        self.saw_stop: list[bool] = []

    def __call__(self, stop: threading.Event) -> int:
        start = time.monotonic()
        with self.lock:
            self.calls += 1
            n = self.calls
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        self.entered.set()
        try:
            if n <= self.fail_first:
                raise RuntimeError(f"boom {n}")
            saw = False
            for _ in range(self.records):
                if stop.is_set():
                    saw = True
                    break
                time.sleep(self.record_time)  # one record: never cut short
            self.saw_stop.append(saw or stop.is_set())
            self.completed.append(True)
            return 0
        finally:
            with self.lock:
                self.active -= 1
            self.spans.append((start, time.monotonic()))


class DaemonThread:
    """run_daemon in a background thread (no signal handlers there), with its scheduler."""

    def __init__(self, pass_fn: Any, **kw: Any) -> None:
        self.stop = threading.Event()
        self.schedulers: list[BlockingScheduler] = []
        self.result: int | None = None
        self.error: BaseException | None = None

        def factory(**opts: Any) -> BlockingScheduler:
            s = BlockingScheduler(**opts)
            self.schedulers.append(s)
            return s

        def target() -> None:
            try:
                self.result = run_daemon(
                    pass_fn,
                    stop_event=self.stop,
                    install_signal_handlers=False,
                    scheduler_factory=factory,
                    **kw,
                )
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    @property
    def scheduler(self) -> BlockingScheduler:
        wait_for(lambda: self.schedulers and self.schedulers[0].running)
        return self.schedulers[0]

    def finish(self, timeout: float = 10.0) -> int | None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "run_daemon did not return after stop"
        if self.error:
            raise self.error
        return self.result


def overlaps(spans: list[tuple[float, float]]) -> bool:
    spans = sorted(spans)
    return any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))


def test_passes_repeat_on_the_interval_one_at_a_time() -> None:
    rec = Recorder()
    d = DaemonThread(rec, interval=FAST)
    wait_for(lambda: rec.calls >= 4)
    assert d.finish() == 0
    assert rec.max_active == 1
    assert not overlaps(rec.spans)
    calls = rec.calls
    time.sleep(0.5)
    assert rec.calls == calls, "a pass ran after the daemon returned"


def test_first_pass_runs_right_away() -> None:
    rec = Recorder()
    d = DaemonThread(rec, interval=timedelta(minutes=5))
    assert rec.entered.wait(2)
    assert d.finish() == 0
    assert rec.calls == 1


def test_slow_pass_never_overlaps_and_missed_ticks_coalesce() -> None:
    rec = Recorder(records=5, record_time=0.1)  # 0.5 s a pass, ticks every 0.1 s
    started = time.monotonic()
    d = DaemonThread(rec, interval=timedelta(seconds=0.1))
    wait_for(lambda: rec.calls >= 3)
    d.finish()
    elapsed = time.monotonic() - started
    assert rec.max_active == 1
    assert not overlaps(rec.spans)
    # Missed ticks are dropped or folded into one, never queued up as a burst of passes.
    assert rec.calls <= elapsed / 0.5 + 2


def test_stop_event_lets_the_running_pass_finish_its_record() -> None:
    rec = Recorder(records=50, record_time=0.05)
    d = DaemonThread(rec, interval=FAST)
    assert rec.entered.wait(2)
    time.sleep(0.12)  # somewhere in the middle of a record
    t0 = time.monotonic()
    assert d.finish() == 0
    assert time.monotonic() - t0 < 2
    assert rec.calls == 1
    assert rec.completed == [True]
    assert rec.saw_stop == [True]


def test_stop_before_start_runs_nothing() -> None:
    rec = Recorder()
    stop = threading.Event()
    stop.set()
    assert run_daemon(rec, interval=FAST, stop_event=stop, install_signal_handlers=False) == 0
    assert rec.calls == 0


def test_a_crashing_pass_is_logged_and_the_daemon_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="limefort.scheduler")
    rec = Recorder(fail_first=1)
    d = DaemonThread(rec, interval=FAST)
    wait_for(lambda: len(rec.completed) >= 2)
    assert d.finish() == 0
    crashes = [
        r for r in caplog.records if r.name == "limefort.scheduler" and "crashed" in r.message
    ]
    assert crashes and crashes[0].exc_info and "boom 1" in str(crashes[0].exc_info[1])
    assert any("exit code 0" in r.message for r in caplog.records)


def test_return_code_of_each_pass_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="limefort.scheduler")
    codes = iter([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    d = DaemonThread(lambda stop: next(codes, 0), interval=FAST)
    wait_for(lambda: any("exit code 0" in r.message for r in caplog.records))
    d.finish()
    partial = [r for r in caplog.records if "exit code 1" in r.message]
    assert partial and partial[0].levelno == logging.WARNING


def test_interval_job_is_configured_for_one_at_a_time() -> None:
    rec = Recorder()
    d = DaemonThread(rec, interval=timedelta(minutes=5))
    job = d.scheduler.get_job(PASS_JOB_ID)
    assert isinstance(job.trigger, IntervalTrigger)
    assert job.trigger.interval == timedelta(minutes=5)
    assert job.max_instances == 1 and job.coalesce is True
    assert job.misfire_grace_time == 300
    assert str(d.scheduler.timezone) == "UTC"
    assert d.scheduler.get_job(KEEPALIVE_JOB_ID) is None
    d.finish()


def test_sub_second_interval_still_has_a_grace_time() -> None:
    d = DaemonThread(Recorder(), interval=FAST)
    assert d.scheduler.get_job(PASS_JOB_ID).misfire_grace_time == 1
    d.finish()


def test_cron_expression_builds_a_cron_trigger() -> None:
    rec = Recorder()
    d = DaemonThread(rec, interval=timedelta(minutes=5), cron="*/15 8-17 * * 1-5")
    job = d.scheduler.get_job(PASS_JOB_ID)
    assert isinstance(job.trigger, CronTrigger)
    assert job.max_instances == 1 and job.coalesce is True
    assert rec.entered.wait(2), "the first pass runs right away in cron mode too"
    d.finish()


def test_bad_cron_expression_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^sync\.cron"):
        run_daemon(Recorder(), interval=FAST, cron="61 * * * *", install_signal_handlers=False)


def _fires(expr: str, start: datetime, n: int) -> list[datetime]:
    trig = cron_trigger(expr)
    out: list[datetime] = []
    prev = None
    now = start
    for _ in range(n):
        nxt = trig.get_next_fire_time(prev, now)
        out.append(nxt)
        prev, now = nxt, nxt + timedelta(seconds=1)
    return out


SUNDAY = datetime(2026, 3, 1, tzinfo=UTC)  # a Sunday


@pytest.mark.parametrize(
    ("expr", "weekdays"),  # Python weekday(): Monday 0 .. Sunday 6
    [
        ("0 9 * * 1-5", {0, 1, 2, 3, 4}),
        ("0 9 * * 0", {6}),
        ("0 9 * * 7", {6}),
        ("0 9 * * 5-7", {4, 5, 6}),
        ("0 9 * * */2", {6, 1, 3, 5}),  # crontab: Sun, Tue, Thu, Sat
        ("0 9 * * mon,wed", {0, 2}),
        ("0 9 * * *", set(range(7))),
    ],
)
def test_cron_weekdays_mean_what_crontab_means(expr: str, weekdays: set[int]) -> None:
    # APScheduler 3 numbers Monday 0; crontab numbers Sunday 0. The daemon must fire on the
    # days a crontab line would.
    fires = _fires(expr, SUNDAY, 14)
    assert {f.weekday() for f in fires} == weekdays
    assert all((f.hour, f.minute) == (9, 0) for f in fires)


@pytest.mark.parametrize(
    "expr", ["0 0 1 * 1", "* * * *", "0 0 * * 5-1", "0 0 * * funday", "0 25 * * *"]
)
def test_cron_expressions_cron_would_read_differently_are_refused(expr: str) -> None:
    with pytest.raises(ConfigError, match=r"^sync\.cron"):
        cron_trigger(expr)


def test_keepalive_runs_on_its_own_schedule_and_failures_are_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="limefort.scheduler")
    calls: list[float] = []

    def keepalive() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("token endpoint down")

    rec = Recorder()
    d = DaemonThread(rec, interval=timedelta(minutes=5), keepalive=keepalive, keepalive_every=FAST)
    wait_for(lambda: len(calls) >= 3)
    job = d.scheduler.get_job(KEEPALIVE_JOB_ID)
    assert job.max_instances == 1
    assert d.finish() == 0
    warned = [r for r in caplog.records if "keepalive failed" in r.message]
    assert warned and warned[0].levelno == logging.WARNING
    assert rec.calls == 1  # the pass kept its own 5-minute schedule


def test_keepalive_never_runs_beside_a_pass() -> None:
    spans: list[tuple[float, float]] = []

    def keepalive() -> None:
        t = time.monotonic()
        time.sleep(0.05)
        spans.append((t, time.monotonic()))

    rec = Recorder(records=3, record_time=0.05)
    d = DaemonThread(
        rec, interval=FAST, keepalive=keepalive, keepalive_every=timedelta(seconds=0.07)
    )
    wait_for(lambda: rec.calls >= 4 and len(spans) >= 2)
    d.finish()
    assert not overlaps(spans + rec.spans)


def test_stop_while_a_slow_pass_runs_logs_no_scheduler_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Ticks come due while the stop waits for the pass; none may reach a closed executor.
    caplog.set_level(logging.DEBUG)
    rec = Recorder(records=1, record_time=0.8)
    d = DaemonThread(rec, interval=timedelta(seconds=0.1))
    assert rec.entered.wait(2)
    time.sleep(0.3)
    assert d.finish() == 0
    assert rec.completed == [True]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- signals, in this process ----------------------------------------------------------------


def _kill_when(event: threading.Event, *signums: int, gap: float = 0.05) -> threading.Thread:
    def go() -> None:
        event.wait(5)
        time.sleep(0.1)
        for s in signums:
            os.kill(os.getpid(), s)
            time.sleep(gap)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_while_a_pass_runs(signum: int) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    rec = Recorder(records=40, record_time=0.05)
    stop = threading.Event()
    killer = _kill_when(rec.entered, signum)
    t0 = time.monotonic()
    assert run_daemon(rec, interval=FAST, stop_event=stop) == 0
    killer.join(2)
    assert time.monotonic() - t0 < 1.5, "the pass should stop at the next record boundary"
    assert stop.is_set()
    assert rec.calls == 1 and rec.completed == [True] and rec.saw_stop == [True]
    assert {s: signal.getsignal(s) for s in before} == before, "handlers not restored"


def test_second_sigint_never_cuts_a_record_short(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="limefort.scheduler")
    rec = Recorder(records=1, record_time=0.6)  # one long record in flight
    killer = _kill_when(rec.entered, signal.SIGINT, signal.SIGINT)
    assert run_daemon(rec, interval=FAST) == 0
    killer.join(2)
    assert rec.completed == [True]
    assert rec.spans[0][1] - rec.spans[0][0] >= 0.6
    assert any("again" in r.message for r in caplog.records)


def test_stop_on_signals_for_a_one_off_pass() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(2)
    assert signal.getsignal(signal.SIGTERM) is before


def test_handlers_are_not_installed_outside_the_main_thread() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[Any] = []

    def pass_fn(stop: threading.Event) -> int:
        seen.append(signal.getsignal(signal.SIGTERM))
        return 0

    stop = threading.Event()
    t = threading.Thread(target=lambda: run_daemon(pass_fn, interval=FAST, stop_event=stop))
    t.start()
    wait_for(lambda: seen)
    stop.set()
    t.join(5)
    assert seen[0] is before


# --- signals, in a real process ---------------------------------------------------------------

DAEMON_SCRIPT = """
import sys, threading, time
from datetime import timedelta
from limefort.ops.scheduler import run_daemon

out = open(sys.argv[1], "a", buffering=1)
n = 0

def pass_fn(stop: threading.Event) -> int:
    global n
    n += 1
    out.write(f"start {n}\\n")
    for i in range(20):
        if stop.is_set():
            out.write(f"stop seen {n}\\n")
            break
        time.sleep(0.1)
        out.write(f"record {n}.{i}\\n")
    out.write(f"done {n}\\n")
    return 0

sys.exit(run_daemon(pass_fn, interval=timedelta(seconds=0.2)))
"""


@pytest.mark.slow
def test_sigterm_to_the_daemon_process_exits_0_after_the_pass_finishes(tmp_path: Path) -> None:
    script = tmp_path / "daemon.py"
    script.write_text(textwrap.dedent(DAEMON_SCRIPT))
    log = tmp_path / "passes.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(log)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: log.exists() and "record 1.2" in log.read_text(), timeout=10)
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        _, stderr = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert time.monotonic() - t0 < 3
    lines = log.read_text().splitlines()
    assert lines[-1] == "done 1", lines
    assert "stop seen 1" in lines
    assert not any(line.startswith("start 2") for line in lines)
