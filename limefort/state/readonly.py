"""Read-only peeks at a state file (`fleet status`, `audit`, `backup`): no lock, no migration,
nothing created, nothing written."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from limefort.core.errors import StateError, UserError
from limefort.core.models import DocumentIntent
from limefort.state.rows import _intent, _select


@dataclass(frozen=True)
class Run:
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    command: str | None


@dataclass(frozen=True)
class StateFacts:
    """What one tenant's state file says, as read (no judgement yet)."""

    runs: tuple[Run, ...]  # newest first
    last_success: str | None
    quarantined: int
    pending: int
    drift: int


def read_only_uri(path: Path, *, wal_exists: bool) -> str:
    """SQLite's read-only mode: the connection cannot write, create the file, or migrate.

    The state file is in WAL mode. While anything has it open, its `-wal` file exists, and a
    read-only reader uses the WAL protocol like any reader: a consistent snapshot beside a
    running pass. With no `-wal` file nothing has it open and every commit is in the main file;
    a plain `mode=ro` reader would still create empty `-wal` and `-shm` files (that it cannot
    remove again) in the tenant's state directory, so it opens the file as `immutable` instead,
    which reads the main file alone and creates nothing."""
    uri = path.resolve().as_uri() + "?mode=ro"
    return uri if wal_exists else uri + "&immutable=1"


def connect_read_only(path: Path, *, timeout: float = 5) -> sqlite3.Connection:
    wal = path.with_name(path.name + "-wal")
    return sqlite3.connect(read_only_uri(path, wal_exists=wal.exists()), uri=True, timeout=timeout)


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [name]
    ).fetchone()
    return row is not None


def _count_drift(conn: sqlite3.Connection) -> int:
    """Unacknowledged drift. The table comes with a later migration: absent means none."""
    if not _has_table(conn, "drift"):
        return 0
    columns = {r[1] for r in conn.execute("PRAGMA table_info(drift)")}
    where = " WHERE acked_at IS NULL" if "acked_at" in columns else ""
    return int(conn.execute(f"SELECT count(*) FROM drift{where}").fetchone()[0])


def read_state(path: Path, *, recent: int = 20) -> StateFacts | None:
    """The facts of one state file; None when it does not exist (no pass has run). Raises
    `UserError` with a one-line reason when it cannot be read."""
    try:
        path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        # typically a state directory (0700, its tenant's user) this user may not enter
        raise UserError(
            f"state file {path}: {exc.strerror or exc} (run fleet status as the user the "
            "passes run as, or as root)"
        ) from None
    try:
        conn = connect_read_only(path)
    except sqlite3.Error as exc:
        raise UserError(f"state file {path}: cannot open it read-only: {exc}") from None
    try:
        for table in ("runs", "quarantine", "customers", "documents"):
            if not _has_table(conn, table):
                raise UserError(f"state file {path}: not a limefort state file (no {table} table)")
        runs = tuple(
            Run(*r)
            for r in conn.execute(
                "SELECT started_at, finished_at, exit_code, command FROM runs "
                "ORDER BY id DESC LIMIT ?",
                [recent],
            )
        )
        success = conn.execute(
            "SELECT finished_at FROM runs WHERE exit_code = 0 ORDER BY id DESC LIMIT 1"
        ).fetchone()
        quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        pending = (
            conn.execute("SELECT count(*) FROM customers WHERE state = 'pending'").fetchone()[0]
            + conn.execute("SELECT count(*) FROM documents WHERE state = 'pending'").fetchone()[0]
        )
        drift = _count_drift(conn)
    except sqlite3.Error as exc:
        raise UserError(f"state file {path}: cannot read it: {exc}") from None
    finally:
        conn.close()
    return StateFacts(
        runs=runs,
        last_success=success[0] if success else None,
        quarantined=int(quarantined),
        pending=int(pending),
        drift=drift,
    )


def copy_database(src_path: Path, dst_path: Path) -> str:
    """SQLite's online backup of `src_path` into `dst_path` (consistent while a pass writes),
    made one self-contained file; returns SQLite's quick_check verdict ("ok")."""
    try:
        src = sqlite3.connect(str(src_path), timeout=10)
        try:
            dst = sqlite3.connect(str(dst_path))
            try:
                src.backup(dst)
                # One self-contained file: the copy needs no -wal or -shm beside it.
                dst.execute("PRAGMA journal_mode=DELETE")
                return str(dst.execute("PRAGMA quick_check").fetchone()[0])
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.DatabaseError as exc:
        raise StateError(f"backup: cannot copy {src_path} ({exc})") from None


@dataclass(frozen=True)
class Recorded:
    """The documents limefort made or linked (by deal id) and the Fortnox customer of each
    linked company (by company id), as one state file says."""

    documents: Mapping[str, DocumentIntent]
    customers: Mapping[str, str]


def read_recorded(path: Path) -> Recorded:
    """Empty when there is no state file (audit works without one); `UserError` when it
    cannot be read."""
    try:
        path.stat()
    except FileNotFoundError:
        return Recorded({}, {})
    except OSError as exc:
        raise UserError(f"state file {path}: {exc.strerror or exc}") from None
    try:
        conn = connect_read_only(path)
    except sqlite3.Error as exc:
        raise UserError(f"state file {path}: cannot open it read-only: {exc}") from None
    try:
        if not (_has_table(conn, "documents") and _has_table(conn, "customers")):
            return Recorded({}, {})
        intents = [_intent(r) for r in _select(conn, "documents", "state = 'done'")]
        customers = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT company_id, customer_number FROM customers WHERE state = 'done'"
            )
        }
    except sqlite3.Error as exc:
        raise UserError(f"state file {path}: cannot read it: {exc}") from None
    finally:
        conn.close()
    return Recorded({i.deal_id: i for i in intents}, customers)
