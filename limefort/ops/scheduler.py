"""The `limefort run` daemon: APScheduler calls one pass function, one at a time.

This module knows only a callable. The pass gets a `threading.Event` that is set when the
daemon should stop; it checks it between records, so a stop finishes and commits the record
in hand. SIGTERM/SIGINT set that event and shut the scheduler down *from another thread*:
BlockingScheduler blocks the main thread, which is also where Python runs signal handlers, so a
handler that waited for the running job there would wait on the very thread that has to wake up.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from apscheduler.events import EVENT_SCHEDULER_STARTED
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from limefort.core.errors import EX_OK, EX_TEMPFAIL, ConfigError
from limefort.ops.signals import install_handlers, restore_handlers

log = logging.getLogger("limefort.scheduler")

PASS_JOB_ID = "limefort-pass"
KEEPALIVE_JOB_ID = "limefort-keepalive"

# crontab numbers Sunday 0 (and 7); APScheduler 3.x numbers Monday 0. Names mean the same in
# both, so day-of-week is rewritten as names before it reaches APScheduler.
_CRON_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_DOW_ITEM = re.compile(r"^(?:(\*)|([0-7]|[a-z]{3})(?:-([0-7]|[a-z]{3}))?)(?:/(\d+))?$")


def _cron_day(token: str, expr: str) -> int:
    if token.isdigit():
        return int(token) % 7
    try:
        return _CRON_DAYS.index(token)
    except ValueError:
        raise ConfigError("sync.cron", f"unknown day of week {token!r} in {expr!r}") from None


def _crontab_weekdays(field: str, expr: str) -> str:
    """A crontab day-of-week field as APScheduler weekday names ("*" stays "*")."""
    if field == "*":
        return field
    days: set[int] = set()
    for item in field.lower().split(","):
        m = _DOW_ITEM.match(item)
        if not m:
            raise ConfigError("sync.cron", f"cannot read day of week {item!r} in {expr!r}")
        star, first, last, step = m.groups()
        if star:
            lo, hi = 0, 6
        else:
            lo = _cron_day(first, expr)
            # "7" as the end of a range is Sunday at the end of the week, as in crontab(5).
            hi = (7 if last == "7" else _cron_day(last, expr)) if last else lo
            if step and not last:
                hi = 6  # "1/2" means from Monday to the end of the week
            if hi < lo:
                raise ConfigError("sync.cron", f"backwards day range {item!r} in {expr!r}")
        stride = int(step) if step else 1
        if stride < 1:
            raise ConfigError("sync.cron", f"a step must be at least 1 in {expr!r}")
        days.update(d % 7 for d in range(lo, hi + 1, stride))
    if len(days) == 7:
        return "*"
    return ",".join(_CRON_DAYS[d] for d in sorted(days))


def cron_trigger(expr: str, timezone: tzinfo = UTC) -> CronTrigger:
    """A CronTrigger that fires when crontab(5) would for `expr` (read in `timezone`).

    Raises ConfigError (naming `sync.cron`) for what APScheduler would silently read
    differently from cron: numeric weekdays are translated; restricting both day-of-month and
    day-of-week (cron: either matches, APScheduler: both must) is refused.
    """
    fields = expr.split()
    if len(fields) != 5:
        raise ConfigError(
            "sync.cron", f'expected 5 fields like "*/5 * * * *", got {len(fields)} in {expr!r}'
        )
    if fields[2] != "*" and fields[4] != "*":
        raise ConfigError(
            "sync.cron",
            f"{expr!r} restricts both day of month and day of week, which cron reads as "
            "'either' and the scheduler as 'both'; restrict only one",
        )
    fields[4] = _crontab_weekdays(fields[4], expr)
    try:
        return CronTrigger.from_crontab(" ".join(fields), timezone=timezone)
    except ValueError as exc:
        raise ConfigError("sync.cron", f"{expr!r}: {exc}") from None


def run_daemon(
    pass_fn: Callable[[threading.Event], int],
    *,
    interval: timedelta,
    cron: str | None = None,
    keepalive: Callable[[], None] | None = None,
    keepalive_every: timedelta = timedelta(days=1),
    stop_event: threading.Event | None = None,
    install_signal_handlers: bool = True,
    scheduler_factory: Callable[..., Any] = BlockingScheduler,
) -> int:
    """Run `pass_fn(stop_event)` now and then on every `interval` tick (or on `cron`), never two
    at a time, until `stop_event` is set or SIGTERM/SIGINT arrives. Returns 0 after a clean
    stop, once the running pass has returned."""
    if interval.total_seconds() <= 0:
        raise ConfigError("sync.interval", "must be longer than zero")
    stop = stop_event if stop_event is not None else threading.Event()
    if stop.is_set():
        return EX_OK

    trigger = (
        cron_trigger(cron, UTC)
        if cron
        else IntervalTrigger(seconds=interval.total_seconds(), timezone=UTC)
    )
    # A tick that fires late (machine asleep, process stalled) still runs if it is less than
    # one interval late, and coalesce folds a backlog into one pass. A tick that comes while a
    # pass is still running is skipped (max_instances=1): the next tick catches up.
    grace = max(1, round(interval.total_seconds()))
    scheduler = scheduler_factory(timezone=UTC)
    in_pass = threading.Event()  # only for telling the operator what the stop waits for
    # The pass and the keepalive both use (and may rotate) the Fortnox refresh token; they must
    # never refresh it side by side, or one of them would spend a token the other just replaced.
    token_lock = threading.Lock()

    def pass_job() -> None:
        if stop.is_set():
            return
        with token_lock:
            if stop.is_set():
                return
            started = time.monotonic()
            in_pass.set()
            try:
                code = pass_fn(stop)
            except SystemExit as exc:  # a pass built from CLI glue may sys.exit()
                code = exc.code if isinstance(exc.code, int) else 1
            except Exception:
                log.exception("pass crashed; the daemon keeps running and tries again")
                return
            finally:
                in_pass.clear()
            took = time.monotonic() - started
            level = logging.INFO if code in (EX_OK, EX_TEMPFAIL) else logging.WARNING
            log.log(level, "pass finished with exit code %s in %.1f s", code, took)

    def keepalive_job() -> None:
        assert keepalive is not None
        if stop.is_set():
            return
        # A running pass refreshes the token itself; no need to queue behind it.
        if not token_lock.acquire(blocking=False):
            log.debug("keepalive skipped: a pass is running")
            return
        try:
            keepalive()
            log.info("keepalive done")
        except Exception:
            log.warning("keepalive failed; trying again in %s", keepalive_every, exc_info=True)
        finally:
            token_lock.release()

    scheduler.add_job(
        pass_job,
        trigger,
        id=PASS_JOB_ID,
        name="limefort pass",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=grace,
        next_run_time=datetime.now(UTC),
    )
    if keepalive is not None:
        every = keepalive_every.total_seconds()
        if every <= 0:
            raise ValueError("keepalive_every must be longer than zero")
        scheduler.add_job(
            keepalive_job,
            IntervalTrigger(seconds=every, timezone=UTC),
            id=KEEPALIVE_JOB_ID,
            name="limefort keepalive",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, round(every)),
        )

    started = threading.Event()
    main_done = threading.Event()
    scheduler.add_listener(lambda _event: started.set(), EVENT_SCHEDULER_STARTED)

    def stopper() -> None:
        stop.wait()
        while not started.wait(0.05):
            if main_done.is_set():
                return
        if in_pass.is_set():
            log.info("stopping: the running pass finishes and commits its current record")
        # Waits for the running jobs, then wakes the main loop, which returns from start().
        # Ticks that come due meanwhile are dropped: shutting down empties the job store.
        with contextlib.suppress(SchedulerNotRunningError):
            scheduler.shutdown(wait=True)

    previous = install_handlers(stop) if install_signal_handlers else {}
    stopper_thread = threading.Thread(target=stopper, name="limefort-stopper", daemon=True)
    stopper_thread.start()
    what = f"cron {cron!r} (UTC)" if cron else f"every {interval}"
    log.info("daemon started: a pass now and then %s", what)
    try:
        scheduler.start()  # blocks until the stopper has shut it down
    finally:
        main_done.set()
        if not stop.is_set():
            stop.set()  # after a crash too: nothing may start another pass
        stopper_thread.join()
        restore_handlers(previous)
    log.info("daemon stopped")
    return EX_OK
