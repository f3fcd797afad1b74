"""What a person sees while a long pass runs: a progress bar on a terminal (rich), a plain line
at most once a second when stderr is a file, a log record under `--log-format json`.

The sync core reports through the small `Progress` protocol below and knows nothing of how it
is shown. On a terminal, log lines and other output written while the bar is up are printed
above it, whole (rich's live display owns the last line of the screen; the log handlers are
pointed at its proxy for the duration), and the bar's last state stays on screen as a complete
line when it stops.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, TextIO

from limefort.engine.passstate import NullProgress, Progress
from limefort.engine.sync import eta_seconds

__all__ = ["NullProgress", "PassProgress", "Progress", "choose_mode", "hms"]

log = logging.getLogger("limefort")

Mode = Literal["bar", "lines", "json", "off"]


def choose_mode(*, quiet: bool, json_logs: bool, tty: bool, lines_when_not_a_tty: bool) -> Mode:
    """A bar only on a terminal; a file gets plain lines only where the command wants them in
    its log (backfill); a cron job's `sync` log stays free of them."""
    if quiet:
        return "off"
    if json_logs:
        return "json"
    if tty:
        return "bar"
    return "lines" if lines_when_not_a_tty else "off"


def hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class PassProgress:
    """A `Progress` that shows itself; use it as a context manager around the work.

    `limit`/`window`: Fortnox's rate limit, the floor of any ETA (work left at no more than
    limit/window per second, or slower if that is what has been observed).
    """

    def __init__(
        self,
        label: str,
        *,
        limit: int,
        window: float,
        mode: Mode,
        total: int | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.limit, self.window, self.mode = label, limit, window, mode
        self._total = total
        self.done_n = 0
        self.read_n = 0
        self.written_n = 0
        self._clock = clock
        self.t0 = clock()
        self._last_print = 0.0
        self._shown: tuple[int, int, int, int | None] | None = None
        self._stream = stream
        self._bar: Any = None  # a rich Progress while the bar is up
        self._task: Any = None
        self._swapped: list[logging.StreamHandler[Any]] = []

    # --- the Progress protocol -----------------------------------------------------------------

    def total(self, n: int) -> None:
        self._total = (self._total or 0) + n
        self._show()

    def read(self, n: int = 1) -> None:
        self.read_n += n
        self._show()

    def advance(self, n: int = 1, *, written: int = 0) -> None:
        self.done_n += n
        self.written_n += written
        self._show()

    def step(self, _: object = None) -> None:
        """One unit done (the backfill callback's signature)."""
        self.advance(1)

    # --- figures ---------------------------------------------------------------------------------

    def rate(self) -> float:
        elapsed = max(self._clock() - self.t0, 1e-6)
        return (self.done_n if self._total is not None else self.read_n) / elapsed

    def eta(self) -> float | None:
        if self._total is None:
            return None
        return eta_seconds(max(self._total - self.done_n, 0), self.rate(), self.limit, self.window)

    def info(self) -> str:
        parts = []
        if self._total is not None:
            parts.append(f"{self.done_n}/{self._total}")
        parts.append(f"read {self.read_n}")
        parts.append(f"written {self.written_n}")
        parts.append(f"{self.rate():.1f}/s")
        eta = self.eta()
        if eta is not None:
            parts.append(f"ETA {hms(eta)}")
        return " · ".join(parts)

    # --- showing it ------------------------------------------------------------------------------

    def _state(self) -> tuple[int, int, int, int | None]:
        return (self.done_n, self.read_n, self.written_n, self._total)

    def _show(self, *, final: bool = False) -> None:
        if self.mode == "off":
            return
        if self.mode == "bar":
            if self._bar is not None:
                self._bar.update(
                    self._task, total=self._total, completed=self.done_n, info=self.info()
                )
            return
        now = self._clock()
        finished = self._total is not None and self.done_n >= self._total
        if final:
            if self._state() == self._shown:
                return
        elif now - self._last_print < 1.0 and not finished:
            return
        self._last_print = now
        self._shown = self._state()
        eta = self.eta()
        if self.mode == "json":
            log.info(
                "progress %s",
                self.info(),
                extra={
                    "done": self.done_n,
                    "total": self._total,
                    "read": self.read_n,
                    "written": self.written_n,
                    "eta_seconds": None if eta is None else round(eta),
                },
            )
            return
        # Plain lines for a log file: `45/150 5.0/s ETA 0:00:21`, one a line.
        head = f"{self.done_n}/{self._total}" if self._total is not None else f"{self.label}:"
        tail = f" ETA {hms(eta)}" if eta is not None else ""
        line = f"{head} {self.rate():.1f}/s{tail} (read {self.read_n}, written {self.written_n})"
        print(line, file=self._stream or sys.stderr, flush=True)

    def __enter__(self) -> PassProgress:
        self.t0 = self._clock()
        if self.mode != "bar":
            return self
        # rich only when a bar is drawn: a pass from cron or the daemon never imports it.
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn
        from rich.progress import Progress as RichProgress

        real_stderr = self._stream or sys.stderr
        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            # soft_wrap: a long log line is wrapped by the terminal, not cut into two lines.
            console=Console(file=real_stderr, soft_wrap=True),
            # Everything printed while the bar is up goes above it, whole; stdout only when it
            # is the same terminal (a redirected stdout must keep its own output).
            redirect_stderr=True,
            redirect_stdout=sys.stdout.isatty(),
            refresh_per_second=8,
        )
        self._task = self._bar.add_task(self.label, total=self._total, info=self.info())
        self._bar.start()
        # Log handlers hold the stream they were made with: point them at the proxy too.
        for h in logging.getLogger().handlers:
            if isinstance(h, logging.StreamHandler) and h.stream is real_stderr:
                h.setStream(sys.stderr)
                self._swapped.append(h)
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """The last state, shown once more if it was not: the final line is complete."""
        if self.mode in ("lines", "json"):
            self._show(final=True)
        if self._bar is not None:
            bar, self._bar = self._bar, None
            bar.update(self._task, total=self._total, completed=self.done_n, info=self.info())
            bar.stop()  # draws the last state once more, as a finished line
            real = bar.console.file
            for h in self._swapped:
                h.setStream(real)
            self._swapped.clear()
