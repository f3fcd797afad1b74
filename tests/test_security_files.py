"""Issue 19, item 5: the state file, its lock and a backup are never opened through a symlink,
never taken over from another user, and never kept in a directory others can write; a backup
is a consistent 0600 copy."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import Lf

from limefort.core.errors import LockHeld, StateError
from limefort.state.lock import RunLock, lock_path
from limefort.state.store import Store

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def synced(lf: Lf) -> Lf:
    r = lf.run("sync")
    assert r.code in (0, 1), r.err
    return lf


# --- symlinks ---------------------------------------------------------------------------------


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(synced: Lf) -> None:
    lf = synced
    victim = lf.dir / "precious.txt"
    victim.write_text("keep me\n")
    lock = lock_path(lf.state)
    lock.unlink(missing_ok=True)
    lock.symlink_to(victim)
    r = lf.run("sync")
    assert r.code == 2, r.err
    assert "lock file is a symbolic link" in r.err and "internal error" not in r.err
    assert victim.read_text() == "keep me\n"


def test_a_dangling_symlinked_lock_creates_nothing(lf: Lf) -> None:
    target = lf.dir / "elsewhere.lock"
    lock_path(lf.state).symlink_to(target)
    r = lf.run("sync")
    assert r.code == 2 and "symbolic link" in r.err
    assert not target.exists() and not lf.state.exists()


def test_a_symlinked_state_file_is_refused(synced: Lf) -> None:
    lf = synced
    real = lf.dir / "real.db"
    lf.state.rename(real)
    lf.state.symlink_to(real)
    r = lf.run("sync")
    assert r.code == 2, r.err
    assert "state file is a symbolic link" in r.err
    assert lf.run("status").code == 2


def test_a_dangling_symlink_at_state_path_does_not_create_the_database_at_its_target(
    lf: Lf,
) -> None:
    target = lf.dir / "created-elsewhere.db"
    lf.state.symlink_to(target)
    r = lf.run("sync")
    assert r.code == 2, r.err
    assert "symbolic link" in r.err
    assert not target.exists()


# --- other users' files -------------------------------------------------------------------------


def test_a_foreign_owned_lock_file_is_refused(synced: Lf) -> None:
    lf = synced
    lock = lock_path(lf.state)
    os.chown(lock, NOBODY, NOBODY)
    r = lf.run("sync")
    assert r.code == 2, r.err
    assert "lock file belongs to another user (uid 65534)" in r.err


def test_a_premade_foreign_lock_file_is_refused_before_use(lf: Lf) -> None:
    lock = lock_path(lf.state)
    lock.write_text("")
    os.chmod(lock, 0o666)
    os.chown(lock, NOBODY, NOBODY)
    with pytest.raises(StateError, match="belongs to another user"):
        RunLock(lf.state).acquire()
    assert lock.read_text() == ""  # no pid written into someone else's file


def test_a_foreign_owned_state_file_is_refused(synced: Lf) -> None:
    lf = synced
    os.chown(lf.state, NOBODY, NOBODY)
    for command in (("sync",), ("status",), ("backup", str(lf.dir / "copy.db"))):
        r = lf.run(*command)
        assert r.code == 2, (command, r.err)
        assert "state file belongs to another user (uid 65534)" in r.err
    assert not (lf.dir / "copy.db").exists()


def test_a_state_file_that_is_not_a_regular_file_is_refused(lf: Lf) -> None:
    os.mkfifo(lf.state, 0o600)
    r = lf.run("sync")
    assert r.code == 2 and "not a regular file" in r.err


def test_our_own_lock_open_to_others_is_closed_and_said_under_v(synced: Lf) -> None:
    lf = synced
    lock = lock_path(lf.state)
    os.chmod(lock, 0o666)
    r = lf.run("-v", "sync")
    assert r.code in (0, 1), r.err
    assert mode(lock) == 0o600 and "lock file was open to other users (mode 0666)" in r.err


# --- the directory ---------------------------------------------------------------------------


@pytest.mark.parametrize("loose", [0o770, 0o707, 0o777, 0o1777])
def test_a_state_directory_others_can_write_is_refused(tmp_path: Path, loose: int) -> None:
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, loose)
    with pytest.raises(StateError, match="writable by other users"):
        Store.open(d / "limefort.db")
    with pytest.raises(StateError, match="writable by other users"):
        RunLock(d / "limefort.db").acquire()
    assert list(d.iterdir()) == []


def kubelet_volume(d: Path, mode: int = 0o2770, gid: int | None = None) -> None:
    """A volume as the kubelet leaves it for a pod with fsGroup (volume_linux.go): the group
    is the pod's (here this process's own), group-writable, setgid."""
    d.mkdir()
    os.chown(d, -1, os.getegid() if gid is None else gid)
    os.chmod(d, mode)


def test_a_kubernetes_fsgroup_volume_is_accepted_and_a_pass_works(
    make_sandbox: Any, tmp_path: Path
) -> None:
    d = tmp_path / "volume"
    kubelet_volume(d)
    sb = make_sandbox(seed=5, companies=6, deals=6)
    lf = Lf(sb, d, start="2000-01-01")
    r = lf.run("sync")
    assert r.code == 0, r.err
    assert (d / "limefort.db").exists() and sb.fortnox.invoices


@pytest.mark.parametrize(
    "what, mode, gid",
    [
        ("not setgid: not the kubelet's", 0o0770, None),
        ("others may write too", 0o2772, None),
        ("another group's", 0o2770, NOBODY),
    ],
)
def test_other_group_writable_directories_stay_refused(
    tmp_path: Path, what: str, mode: int, gid: int | None
) -> None:
    d = tmp_path / "volume"
    kubelet_volume(d, mode, gid)
    with pytest.raises(StateError, match="writable by other users"):
        Store.open(d / "limefort.db")


def test_a_state_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "theirs"
    d.mkdir(mode=0o755)
    os.chown(d, NOBODY, NOBODY)
    with pytest.raises(StateError, match="belongs to another user"):
        Store.open(d / "limefort.db")


def test_the_command_names_the_directory(lf: Lf) -> None:
    os.chmod(lf.dir, 0o777)
    try:
        r = lf.run("sync")
    finally:
        os.chmod(lf.dir, 0o700)
    assert r.code == 2 and f"directory {lf.dir} is writable by other users" in r.err


def test_the_lock_still_excludes_a_second_holder(tmp_path: Path) -> None:
    state = tmp_path / "limefort.db"
    with RunLock(state), pytest.raises(LockHeld):
        RunLock(state).acquire()
    calls: list[int | None] = []
    with RunLock(state), pytest.raises(LockHeld):
        RunLock(state).acquire(0.3, on_wait=calls.append)
    assert calls == [os.getpid()]  # told once who holds it, then gave up
    assert mode(lock_path(state)) == 0o600


# --- backup ----------------------------------------------------------------------------------


def test_backup_is_a_0600_copy_under_umask_022(synced: Lf) -> None:
    lf = synced
    dest = lf.dir / "backup.db"
    old = os.umask(0o022)
    try:
        r = lf.run("backup", str(dest))
    finally:
        os.umask(old)
    assert r.code == 0, r.err
    assert mode(dest) == 0o600 and "mode 0600" in r.out
    assert [p.name for p in lf.dir.iterdir() if p.name.startswith(".backup.db")] == []
    with sqlite3.connect(dest) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        names = {row[0] for row in db.execute("select name from tokens")}
    assert "fortnox" in names


def test_backup_is_consistent_while_a_write_is_in_progress(synced: Lf) -> None:
    lf = synced
    writer = sqlite3.connect(lf.state, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO meta(key, value) VALUES ('half-done', 'x')")
        r = lf.run("backup", str(lf.dir / "b.db"))
        assert r.code == 0, r.err
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    with sqlite3.connect(lf.dir / "b.db") as db:
        assert db.execute("select count(*) from meta where key='half-done'").fetchone()[0] == 0
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_backup_does_not_overwrite_unless_forced(synced: Lf) -> None:
    lf = synced
    dest = lf.dir / "b.db"
    dest.write_text("older backup")
    r = lf.run("backup", str(dest))
    assert r.code == 2 and "exists" in r.err and dest.read_text() == "older backup"
    r = lf.run("backup", "--force", str(dest))
    assert r.code == 0, r.err
    assert mode(dest) == 0o600 and dest.read_bytes().startswith(b"SQLite format 3")
    r = lf.run("backup", "--force", str(lf.state))
    assert r.code == 2 and "is the state file itself" in r.err


def test_backup_replaces_a_symlink_not_its_target(synced: Lf) -> None:
    lf = synced
    victim = lf.dir / "victim.txt"
    victim.write_text("keep")
    link = lf.dir / "b.db"
    link.symlink_to(victim)
    r = lf.run("backup", "--force", str(link))
    assert r.code == 0, r.err
    assert victim.read_text() == "keep" and not link.is_symlink() and mode(link) == 0o600


def test_backup_without_a_state_file(lf: Lf) -> None:
    r = lf.run("backup", str(lf.dir / "b.db"))
    assert r.code == 2 and "nothing to back up" in r.err
    assert not (lf.dir / "b.db").exists() and not lf.state.exists()
