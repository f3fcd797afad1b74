"""SIGTERM and SIGINT as a request to stop between two records.

Apart from the daemon (`scheduler.py`) so that a one-off `limefort sync` installs its handlers
without importing APScheduler: an idle pass should cost little more than Python itself.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

log = logging.getLogger("limefort.scheduler")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """SIGTERM/SIGINT set `stop` inside the block (for a one-off pass such as `limefort sync`,
    so `systemctl stop` also ends it at a record boundary); previous handlers come back after.
    Does nothing outside the main thread, where Python cannot install handlers."""
    previous = install_handlers(stop)
    try:
        yield stop
    finally:
        restore_handlers(previous)


def restore_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def install_handlers(stop: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        log.debug("not in the main thread: leaving signal handling to the caller")
        return {}

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            # Nothing is safe to cut short any more: the pass stops at its next record
            # boundary anyway, and killing it mid-record would leave a write unaccounted for.
            log.warning(
                "%s again: still waiting for the current record to commit "
                "(SIGKILL abandons it; the next pass reconciles)",
                name,
            )
            return
        stop.set()
        log.info("%s received: stopping after the current record", name)

    previous: dict[int, Any] = {}
    for signum in STOP_SIGNALS:
        old = signal.signal(signum, handler)
        previous[signum] = signal.SIG_DFL if old is None else old
    return previous
