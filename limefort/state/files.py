"""Opening the files that hold or guard secrets (the state file, its lock, a backup) so that
nobody else can have prepared them.

A symlink at the path is refused (`O_NOFOLLOW`: a lock must not truncate its target, and a
dangling link must not make SQLite create the database wherever it points); a file limefort
creates is created with `O_EXCL` and mode 0600; an existing file is checked on the open
descriptor (`fstat`, so the file checked is the file used) to be a regular file owned by the
current user. One of ours that others may read is closed on that same descriptor (`fchmod`),
as limefort always did (said under -v): refusing it would only stop the passes, and a file
nobody else owns cannot have been planted. The directory holding them must not be writable by
group or others, or anyone could swap the files after they were checked.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from limefort.core.errors import StateError, UserError

log = logging.getLogger("limefort.files")

PRIVATE_MODE = 0o600
# Bits that let someone else read or change the file.
_OPEN_TO_OTHERS = stat.S_IRWXG | stat.S_IRWXO


def check_private_dir(directory: Path, key: str = "state.path") -> None:
    """The directory exists, belongs to the current user or root, and only its owner may
    create, rename or delete entries in it."""
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        raise StateError(f"{key}: directory {directory} does not exist") from None
    if not stat.S_ISDIR(st.st_mode):
        raise StateError(f"{key}: {directory} is not a directory")
    if st.st_uid not in (os.geteuid(), 0):
        raise StateError(
            f"{key}: directory {directory} belongs to another user (uid {st.st_uid}), who could "
            "replace the state file; use a directory of your own"
        )
    if st.st_mode & stat.S_IWGRP and not st.st_mode & stat.S_IWOTH and kubelet_volume(st):
        # What Kubernetes makes of a volume with `fsGroup`: group-owned by the pod's own group,
        # group-writable and setgid (kubelet's volume_linux.go). Only that group may write,
        # and it is this process's own: nobody else can swap the files.
        log.debug("%s: group-writable volume of this process's own group (fsGroup)", directory)
        return
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StateError(
            f"{key}: directory {directory} is writable by other users, who could replace the "
            f"state file or its lock: `chmod go-w {directory}`, or use a private directory"
        )


def kubelet_volume(st: os.stat_result) -> bool:
    """A directory as the kubelet leaves a volume for a pod with `fsGroup`: setgid, and its
    group this process's own (effective) group."""
    return bool(st.st_mode & stat.S_ISGID) and st.st_gid == os.getegid()


def open_private(path: Path, flags: int, *, create: bool, what: str = "state file") -> int:
    """A descriptor for `path`, refusing a symlink, creating the file 0600 with O_EXCL when
    `create` and it is missing, and checking an existing file with `check_private_fd`.

    FileNotFoundError when the file is missing and `create` is false."""
    base = flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    for _ in range(3):  # the file may vanish between the two opens; try again, not for ever
        if create:
            try:
                return os.open(path, base | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
            except FileExistsError:
                pass  # it exists (or a symlink does): open it without O_CREAT and check it
            except OSError as exc:
                raise _refused(path, exc, what) from None
        try:
            fd = os.open(path, base)
        except FileNotFoundError:
            if create:
                continue
            raise
        except OSError as exc:
            raise _refused(path, exc, what) from None
        try:
            check_private_fd(fd, path, what)
        except BaseException:
            os.close(fd)
            raise
        return fd
    raise StateError(f"{path}: the {what} keeps disappearing while limefort opens it")


def check_private_fd(fd: int, path: Path, what: str = "state file", *, fix: bool = True) -> None:
    """A regular file of this user's; one open to others is made 0600 (without `fix`, where
    that cannot be done, as on a read-only mount, it is only said)."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise StateError(f"{path}: the {what} is not a regular file; refusing to use it")
    if st.st_uid != os.geteuid():
        raise StateError(
            f"{path}: the {what} belongs to another user (uid {st.st_uid}); refusing to use a "
            "file someone else prepared: remove it, or run limefort as its owner"
        )
    if st.st_mode & _OPEN_TO_OTHERS:
        try:
            os.fchmod(fd, PRIVATE_MODE)
        except OSError:
            if fix:
                raise
            # A reader on a read-only mount cannot close it; it says so and reads on.
            log.warning(
                "%s: the %s is open to other users (mode %04o): `chmod 600` it",
                path,
                what,
                stat.S_IMODE(st.st_mode),
            )
            return
        # Info, not a warning: fixed as limefort always silently did; said under -v.
        log.info(
            "%s: the %s was open to other users (mode %04o), now 0600%s",
            path,
            what,
            stat.S_IMODE(st.st_mode),
            "; anyone who read it may hold its tokens: consider `limefort auth fortnox` for "
            "fresh ones"
            if what == "state file"
            else "",
        )


def check_readable_file(path: Path, what: str = "state file") -> None:
    """For a reader: `path` is this user's regular file and not a symlink, checked without
    changing anything (FileNotFoundError when it is missing)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _refused(path, exc, what) from None
    try:
        check_private_fd(fd, path, what, fix=False)
    finally:
        os.close(fd)


def _refused(path: Path, exc: OSError, what: str) -> StateError:
    if exc.errno == errno.ELOOP:
        return StateError(
            f"{path}: the {what} is a symbolic link; refusing to follow it (remove the link, "
            "or point state.path at the real file)"
        )
    return StateError(f"{path}: cannot open the {what} ({exc.strerror or exc})")


def check_new_file(path: Path, *, force: bool, option: str) -> None:
    """Before any work: `path` can be written, and replaces nothing unless `force`."""
    if not path.parent.is_dir():
        raise UserError(f"{option} {path}: directory {path.parent} does not exist")
    if os.path.lexists(path) and not force:
        raise UserError(f"{option} {path}: the file exists; use --force to replace it")


def write_new_file(path: Path, text: str, *, force: bool, option: str) -> None:
    """`text` into a fresh 0600 file (O_EXCL, never through a symlink: an existing one is
    replaced only with `force`, the link itself, not its target). One line on failure."""
    check_new_file(path, force=force, option=option)
    try:
        if force and os.path.lexists(path):
            os.unlink(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_MODE)
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot write it ({exc.strerror or exc})") from None
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
