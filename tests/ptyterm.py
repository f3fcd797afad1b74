"""Run a real `python -m limefort` on a pseudo-terminal and read what a person would see.

The bytes are fed to pyte (a VT100 emulator), so carriage returns, cursor movements and line
erasures act as they do on a screen: a log line glued onto a progress bar, or a shorter line
leaving the tail of a longer one behind ("ETA 0:00:577"), shows up exactly as it would there.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyte

COLS, ROWS = 120, 400  # tall enough that nothing scrolls off during a test


@dataclass
class Terminal:
    screen: pyte.Screen = field(default_factory=lambda: pyte.Screen(COLS, ROWS))
    raw: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self.stream = pyte.ByteStream(self.screen)

    def feed(self, data: bytes) -> None:
        self.raw.extend(data)
        self.stream.feed(data)

    def lines(self) -> list[str]:
        """The screen's lines without trailing blanks, up to the last non-empty one."""
        out = [line.rstrip() for line in self.screen.display]
        while out and not out[-1]:
            out.pop()
        return out


def _own_terminal() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def run_in_pty(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    answers: Sequence[tuple[str, str]] = (),
    on_output: Callable[[Terminal], None] | None = None,
    timeout: float = 120.0,
) -> tuple[int, Terminal]:
    """`python -m limefort *args` with stdin, stdout and stderr on one terminal. `answers`:
    (text to wait for on the screen, what to type then), in order. `on_output` is called with
    the terminal after every read, to check what is on screen while the command runs."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "limefort", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLS), **(env or {})},
        close_fds=True,
        # Its own session with this terminal as the controlling one: a hidden prompt (getpass)
        # opens /dev/tty, which must be this terminal and never the one running the tests.
        preexec_fn=_own_terminal,
    )
    os.close(slave)
    term = Terminal()
    pending = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                raise AssertionError("timed out; screen so far:\n" + "\n".join(term.lines()))
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the other side is closed
                    data = b""
                if not data:
                    break
                term.feed(data)
                if on_output:
                    on_output(term)
                if pending and pending[0][0] in "\n".join(term.lines()):
                    os.write(master, pending.pop(0)[1].encode() + b"\r")
            elif proc.poll() is not None and not select.select([master], [], [], 0.2)[0]:
                break
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert not pending, f"never asked {pending[0][0]!r}; screen:\n" + "\n".join(term.lines())
    return rc, term
