"""The local state, opened, migrated and closed: `Store` is the table families together.

The state file is a cache of links between Lime Go records and Fortnox's, plus the intents
that make a POST safe to retry (Fortnox itself is the ledger: see `engine/ledger.py`). Each
family of tables is a class of its own: `links` (companies and customers), `documents` (deals
and documents), `index` (what Fortnox holds), `drift`, `runs` (run log, cursors, meta) and
`held` (quarantine and warnings); read-only peeks are in `readonly`. Every change
the sync makes is one transaction (`with store.transaction():`). The file is created 0600
because it holds OAuth tokens, runs in WAL mode with `synchronous=FULL` so a committed intent
survives `kill -9` and a power cut, and its schema changes only through the named migrations
in `migrations.py`. Timestamps come from the injected clock, like the sync's."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from limefort.core.errors import StateError
from limefort.core.models import (
    CustomerLink,
    DocumentIntent,
    LedgerDocument,
    QuarantineEntry,
    TokenRecord,
)
from limefort.state.documents import DocumentIntents
from limefort.state.drift import DriftTables
from limefort.state.files import check_private_dir, check_readable_file, open_private
from limefort.state.held import HeldRecords
from limefort.state.index import FortnoxIndex
from limefort.state.links import CustomerLinks
from limefort.state.migrations import MIGRATIONS
from limefort.state.readonly import _has_table, connect_read_only, read_only_uri
from limefort.state.rows import (
    Clock,
    _explain_sqlite,
    _utcnow,
)
from limefort.state.runs import RunLog

__all__ = [
    "MIGRATIONS",
    "CustomerLink",
    "DocumentIntent",
    "LedgerDocument",
    "QuarantineEntry",
    "Store",
]


class Store(CustomerLinks, DocumentIntents, FortnoxIndex, DriftTables, RunLog, HeldRecords):
    def __init__(
        self, conn: sqlite3.Connection, path: Path | None = None, clock: Clock = _utcnow
    ) -> None:
        self.conn = conn
        self.path = path
        self.clock = clock

    @classmethod
    def open(cls, path: Path, *, create: bool = True, busy_timeout: float = 10.0) -> Store:
        """`busy_timeout`: seconds to wait for another program writing the file ([state]
        busy_timeout) before saying it is locked."""
        path = Path(path)
        # Checked and created by limefort.state.files (no symlink, ours, 0600, in a private
        # directory); created here, SQLite gives the -wal and -shm files the same mode.
        check_private_dir(path.parent)
        try:
            os.close(open_private(path, os.O_RDONLY, create=create))
        except FileNotFoundError:
            raise StateError(
                f"state.path: no state file at {path} (no pass has run yet: run `limefort sync`)"
            ) from None
        old_umask = os.umask(0o077)
        try:
            conn = _connect(str(path), timeout=busy_timeout)
            store = cls(conn, path)
            store._configure(busy_timeout)
            store.migrate()
        except sqlite3.DatabaseError as exc:
            raise StateError(_explain_sqlite(path, exc)) from None
        finally:
            os.umask(old_umask)
        return store

    @classmethod
    def open_read_only(cls, path: Path, *, busy_timeout: float = 10.0) -> Store:
        """The state file for reading only (`status`): see `open_read_only` below."""
        return open_read_only(cls, Path(path), busy_timeout)

    def _applied(self) -> list[str]:
        if not _has_table(self.conn, "_migrations"):
            return []
        return [r[0] for r in self.conn.execute("SELECT name FROM _migrations")]

    @classmethod
    def memory(cls, clock: Clock = _utcnow) -> Store:
        store = cls(_connect(":memory:"), clock=clock)
        store.migrate()
        return store

    def _configure(self, busy_timeout: float) -> None:
        mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StateError(f"state.path: cannot switch {self.path} to WAL mode (got {mode})")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")

    def migrate(self) -> list[str]:
        """Apply the named migrations the file lacks. A file that has them all (every pass
        but the first after an upgrade) is read with two queries and sqlite-utils, which
        makes the schema, is not even imported (`Tables.db`)."""
        applied = set(self._applied())
        _refuse_newer(self.path, applied)
        done = []
        for name, fn in MIGRATIONS:
            if name in applied:
                continue
            with self.transaction():
                if not _has_table(self.conn, "_migrations"):
                    self.db.table("_migrations").create({"name": str, "applied_at": str}, pk="name")
                fn(self.db)
                self.conn.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                    [name, self.now_iso()],
                )
            done.append(name)
        return done

    def close(self) -> None:
        self.conn.close()


def quarantined_keys_read_only(path: Path) -> set[str]:
    """The quarantined keys of a state file, read without the lock, a migration or a write
    (`retry` asks before it starts a pass). No state file: nothing is quarantined."""
    if not path.parent.exists():
        raise StateError(f"state.path: directory {path.parent} does not exist")
    if not path.exists():
        return set()
    try:
        conn = connect_read_only(path)
        try:
            if not _has_table(conn, "quarantine"):
                return set()
            return {r[0] for r in conn.execute("SELECT key FROM quarantine")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StateError(_explain_sqlite(path, exc)) from None


def open_read_only(cls: type[Store], path: Path, busy_timeout: float) -> Store:
    """The state file for reading only (`status`): SQLite's read-only mode, so nothing is
    migrated, no journal mode is switched and no file is created, and a state file on a
    read-only mount (a backup, a Kubernetes volume mounted `readOnly`) can be read. A
    state file that needs a migration first says so instead of being half read."""
    try:
        check_readable_file(path)  # no symlink, this user's, a regular file
    except FileNotFoundError:
        raise StateError(
            f"state.path: no state file at {path} (no pass has run yet: run `limefort sync`)"
        ) from None
    try:
        conn = connect_read_only(path, timeout=busy_timeout)
        store = cls(conn, path)
        applied = set(store._applied())
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            raise StateError(_explain_sqlite(path, exc)) from None
        # WAL left a -wal file behind, and this mount cannot take the -shm beside it: the
        # main file alone (what the last checkpoint holds) is still the file's state.
        conn = sqlite3.connect(read_only_uri(path, wal_exists=False), uri=True, timeout=5)
        store = cls(conn, path)
        try:
            applied = set(store._applied())
        except sqlite3.DatabaseError as exc:
            store.close()
            raise StateError(_explain_sqlite(path, exc)) from None
    except sqlite3.DatabaseError as exc:
        raise StateError(_explain_sqlite(path, exc)) from None
    try:
        _refuse_newer(path, applied)
    except StateError:
        store.close()
        raise
    missing = [name for name, _ in MIGRATIONS if name not in applied]
    if missing:
        store.close()
        raise StateError(
            f"state.path: {path} was written by an older limefort and needs "
            f"{len(missing)} migration(s) ({', '.join(missing)}) that `status` does not "
            "make (it only reads): the next `limefort sync` applies them"
        )
    return store


def _connect(database: str, timeout: float = 5.0) -> sqlite3.Connection:
    """The store's connection. `isolation_level=None`: SQLite's own autocommit, so a statement
    outside `Store.transaction()` is committed at once (as sqlite-utils' `execute` does) and a
    transaction is always the explicit BEGIN IMMEDIATE ... COMMIT of `Tables.transaction`,
    never one the sqlite3 module opens by itself and leaves open."""
    return sqlite3.connect(database, timeout=timeout, isolation_level=None)


def _refuse_newer(path: Path | None, applied: set[str]) -> None:
    """A state file with migrations this limefort does not know was written by a newer one."""
    unknown = applied - {name for name, _ in MIGRATIONS}
    if unknown:
        raise StateError(
            f"state.path: {path} was written by a newer limefort "
            f"(unknown migrations {sorted(unknown)}); upgrade limefort"
        )


def token_age_days(record: TokenRecord | None) -> float | None:
    if not record or not record.refresh_issued_at:
        return None
    return (time.time() - record.refresh_issued_at) / 86400
