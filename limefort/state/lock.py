"""One pass at a time (docs/design.md rule 7): an exclusive `flock` on a file beside the state file.

`flock` is released by the kernel when the process dies, even by SIGKILL, so a crashed pass
never leaves a stale lock behind; the pid written into the file is only for the message.

The lock file is opened like the state file (limefort.state.files): never through a symlink (the
pid write would truncate its target), created 0600 with O_EXCL, and an existing one must
belong to the current user and be closed to others, in a directory only its owner can write.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from limefort.core.errors import LockHeld
from limefort.state.files import check_private_dir, open_private

# How often a waiting acquire tries again.
POLL_SECONDS = 0.1


def lock_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".lock")


class RunLock:
    def __init__(self, state_path: Path) -> None:
        self.path = lock_path(state_path)
        self._fd: int | None = None

    def acquire(
        self,
        wait: float = 0.0,
        *,
        on_wait: Callable[[int | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> RunLock:
        """Take the lock, or raise LockHeld. With `wait` > 0, keep trying for that many
        seconds first (calling `on_wait(holder_pid)` once), for a user who must not lose
        what they are holding (a consent code) to a pass that happens to be running."""
        check_private_dir(self.path.parent)
        fd = open_private(self.path, os.O_RDWR, create=True, what="lock file")
        deadline = clock() + max(wait, 0.0)
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _read_pid(fd)
                if clock() < deadline:
                    if not told and on_wait is not None:
                        on_wait(holder)
                    told = True
                    sleep(POLL_SECONDS)
                    continue
                os.close(fd)
                who = f"pid {holder}" if holder else "another process"
                raise LockHeld(
                    f"another limefort ({who}) is working on {self.path.with_suffix('')}; "
                    "this run did nothing, try again when it has finished"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
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
