"""One pass at a time (DESIGN.md rule 7): an exclusive `flock` on a file beside the state file.

`flock` is released by the kernel when the process dies, even by SIGKILL, so a crashed pass
never leaves a stale lock behind; the pid written into the file is only for the message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from limefort.errors import LockHeld


def lock_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".lock")


class RunLock:
    def __init__(self, state_path: Path) -> None:
        self.path = lock_path(state_path)
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise LockHeld(
                f"another limefort ({who}) is working on {self.path.with_suffix('')}; "
                "this run did nothing, try again when it has finished"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        data = os.pread(fd, 32, 0).decode().strip()
        return int(data) if data else None
    except (OSError, ValueError):
        return None
