"""`limefort backup PATH`: a consistent, private copy of the state file.

The state file holds the Fortnox refresh token; `sqlite3 limefort.db ".backup copy.db"` gives
the copy the umask's mode (0644 as a rule), readable by every user. This writes the copy
through SQLite's online backup API (consistent even while a pass is writing: WAL readers see
one snapshot) into a file created 0600 with O_EXCL beside the destination, then renames it
into place, so a half-written or world-readable copy never exists under PATH.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from limefort.core.errors import StateError, UserError
from limefort.state.files import check_private_dir, open_private
from limefort.state.readonly import copy_database


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    mode: int


def backup(state_path: Path, dest: Path, *, force: bool = False) -> BackupResult:
    """Copy the state file at `state_path` to `dest` (0600). Refuses to replace an existing
    `dest` unless `force`, and never writes over the state file itself."""
    state_path = Path(state_path)
    dest = Path(dest)
    check_private_dir(state_path.parent)
    try:
        os.close(open_private(state_path, os.O_RDONLY, create=False))
    except FileNotFoundError:
        raise StateError(f"state.path: no state file at {state_path}; nothing to back up") from None
    if not dest.parent.is_dir():
        raise UserError(f"backup: directory {dest.parent} does not exist")
    if os.path.lexists(dest):
        if not force:
            raise UserError(f"backup: {dest} exists; choose a new name, or pass --force")
        with contextlib.suppress(OSError):
            if os.path.samefile(dest, state_path):
                raise UserError(f"backup: {dest} is the state file itself")

    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    os.close(open_private(tmp, os.O_RDWR, create=True, what="backup"))
    old_umask = os.umask(0o077)  # any journal SQLite makes beside the copy is private too
    try:
        ok = copy_database(state_path, tmp)
        if ok != "ok":
            raise StateError(f"backup: the copy failed SQLite's check ({ok}); {dest} untouched")
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    finally:
        os.umask(old_umask)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    st = os.stat(dest, follow_symlinks=False)
    return BackupResult(dest, st.st_size, st.st_mode & 0o777)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
