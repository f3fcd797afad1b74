"""Typed rows from the state file's tables, the small SQL helpers they share, and `Tables`, the
base every table family builds on (connection, clock, transaction).

The queries are plain SQL on the standard library's connection; sqlite-utils makes and changes
the schema (`migrations.py`) and is imported only when a migration runs (see `Tables.db`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from limefort.core.errors import StateError
from limefort.core.models import (
    CustomerLink,
    DocumentIntent,
    DriftEntry,
    LedgerDocument,
    QuarantineEntry,
)

if TYPE_CHECKING:
    from sqlite_utils import Database

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _link(r: Mapping[str, Any]) -> CustomerLink:
    return CustomerLink(
        r["company_id"], r["state"], r["customer_number"], r["orgnr"], r["name"] or "",
        r["payload"], r["hash"], _dt(r["intent_at"]), r["outcome"], r.get("shared_with"),
    )  # fmt: skip


def _intent(r: Mapping[str, Any]) -> DocumentIntent:
    return DocumentIntent(
        r["deal_id"], r["kind"], r["state"], r["idem_key"], r["document_number"],
        r["customer_number"], r["company_id"], r["name"], r["value"], r["won_at"],
        _dt(r["since"]), r["outcome"], currency=r.get("currency"),
    )  # fmt: skip


def _entry(r: Mapping[str, Any]) -> QuarantineEntry:
    return QuarantineEntry(
        r["key"], r["name"], r["reason"] or "", r["hint"] or "", int(r["attempts"] or 0),
        r["source_hash"], r["first_seen"], r["last_seen"], r.get("waits_for"),
    )  # fmt: skip


def _ledger(r: Mapping[str, Any]) -> LedgerDocument:
    return LedgerDocument(
        r["kind"], r["document_number"], r["ext_ref"], r["customer_number"],
        bool(r["cancelled"]), bool(r["booked"]), bool(r["sent"]), r["total"],
    )  # fmt: skip


def _drift(r: Mapping[str, Any]) -> DriftEntry:
    raw = json.loads(r["changes"] or "{}")
    changes = {k: (v[0], v[1]) for k, v in raw.items() if isinstance(v, list) and len(v) == 2}
    return DriftEntry(r["key"], r["document"] or "", changes, r["since"] or "", r["acked_at"])


def _flag(v: Any) -> int:
    return 1 if v in (True, 1, "true", "True") else 0


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _upsert(db: sqlite3.Connection, table: str, row: Mapping[str, Any], *, pk: str) -> None:
    """Insert the row, or update just these columns of the existing one: sqlite-utils'
    `upsert` as one statement (it spends a dozen introspection queries on each call, most of
    the store's time per record in a first pass)."""
    cols = ", ".join(f"[{c}]" for c in row)
    marks = ", ".join("?" * len(row))
    keys = {k.strip() for k in pk.split(",")}
    sets = ", ".join(f"[{c}] = excluded.[{c}]" for c in row if c not in keys)
    conflict = ", ".join(f"[{k.strip()}]" for k in pk.split(","))
    db.execute(
        f"INSERT INTO [{table}] ({cols}) VALUES ({marks}) ON CONFLICT({conflict}) DO UPDATE SET {sets}",
        list(row.values()),
    )


def _rows_where_in(
    db: sqlite3.Connection, table: str, column: str, keys: Iterable[str]
) -> Iterator[dict[str, Any]]:
    """Lookups in batches (one query per 500 keys, not one per record)."""
    keys = list(dict.fromkeys(keys))
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        marks = ",".join("?" * len(chunk))
        yield from _dicts(
            db.execute(f"SELECT * FROM [{table}] WHERE [{column}] IN ({marks})", chunk)
        )


def _dicts(cur: sqlite3.Cursor) -> Iterator[dict[str, Any]]:
    """A query's rows as dicts of column name to value (what the typed rows are built from)."""
    cols = [c[0] for c in cur.description]
    for row in cur:
        yield dict(zip(cols, row, strict=True))


def _select(
    db: sqlite3.Connection,
    table: str,
    where: str = "",
    order_by: str = "",
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """`SELECT *` of one table as dicts; the clauses are limefort's own constants."""
    sql = f"SELECT * FROM [{table}]"
    sql += f" WHERE {where}" if where else ""
    sql += f" ORDER BY {order_by}" if order_by else ""
    sql += f" LIMIT {int(limit)}" if limit is not None else ""
    return _dicts(db.execute(sql))


def _state_trouble(exc: sqlite3.DatabaseError) -> bool:
    """The file is locked, read-only, full, unreadable or damaged: the user's to fix."""
    text = str(exc).lower()
    words = ("locked", "busy", "readonly", "read-only", "disk i/o", "full", "malformed")
    return any(w in text for w in (*words, "not a database"))


def _explain_sqlite(path: Path | None, exc: sqlite3.DatabaseError) -> str:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return f"state.path: {path} is locked by another program ({text}); try again shortly"
    if "not a database" in text or "malformed" in text:
        return (
            f"state.path: {path} is not a readable limefort state file ({text}); "
            "move it aside and restore a backup, or start fresh with a new path"
        )
    return f"state.path: cannot open {path}: {text}"


class Tables:
    """What every table family shares: the connection, the injected clock, the file's path."""

    conn: sqlite3.Connection
    clock: Clock
    path: Path | None
    _db: Database | None = None

    @property
    def db(self) -> Database:
        """sqlite-utils over the same connection, for the migrations. Imported on first use:
        it costs a third of an idle pass's CPU above Python's own start (sqlite-utils, dateutil,
        pluggy, and a scan of the installed packages for its plugins), and an idle pass runs
        none (docs/performance.md). No plugins: an unattended tool's state file is changed by
        its own migrations only, not by whatever else is installed beside it."""
        if self._db is None:
            from sqlite_utils import Database

            self._db = Database(self.conn, execute_plugins=False)
        return self._db

    def now_iso(self) -> str:
        return self.clock().astimezone(UTC).isoformat(timespec="seconds")

    @contextmanager
    def transaction(self) -> Iterator[Tables]:
        try:
            if self.conn.in_transaction:
                with self._savepoint():  # nested
                    yield self
                return
            # IMMEDIATE takes the write lock up front, so another program writing the file makes
            # this wait (busy_timeout) instead of failing at the first write of a transaction
            # that began as a read: SQLite refuses that upgrade at once to avoid a deadlock.
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.rollback()  # a no-op if the error already ended the transaction
                raise
        except sqlite3.OperationalError as exc:
            if not _state_trouble(exc):
                raise  # a bug in limefort, not the file: keep the traceback
            raise StateError(_explain_sqlite(self.path, exc)) from None

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        """A transaction inside a transaction: undone alone if its block raises."""
        self.conn.execute("SAVEPOINT limefort_nested")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:  # an error may have ended the whole transaction
                self.conn.execute("ROLLBACK TO SAVEPOINT limefort_nested")
                self.conn.execute("RELEASE SAVEPOINT limefort_nested")
            raise
        else:
            self.conn.execute("RELEASE SAVEPOINT limefort_nested")


@dataclass(frozen=True)
class Lifecycle:
    """A record limefort POSTs to Fortnox, customer or document: its row is written `pending`
    (the intent) before the POST and `done` after it; a pending row may be dropped again (the POST
    certainly never happened) or marked with how its POST ended. One description, both tables."""

    table: str
    pk: str
    since: str  # the column holding when the intent was written

    def drop_pending(self, db: sqlite3.Connection, record_id: str) -> None:
        db.execute(
            f"DELETE FROM {self.table} WHERE {self.pk} = ? AND state = 'pending'", [record_id]
        )

    def pending(self, db: sqlite3.Connection) -> Iterator[dict[str, Any]]:
        return _select(db, self.table, "state = 'pending'", order_by=self.since)

    def mark(self, db: sqlite3.Connection, record_id: str, outcome: str) -> None:
        db.execute(
            f"UPDATE {self.table} SET outcome = ? WHERE {self.pk} = ? AND state = 'pending'",
            [outcome, record_id],
        )


CUSTOMERS = Lifecycle("customers", "company_id", "intent_at")
DOCUMENTS = Lifecycle("documents", "deal_id", "since")
