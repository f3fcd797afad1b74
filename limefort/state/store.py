"""The local state: the only module that touches SQLite, and it speaks types.

The state file is a cache of links between Lime Go records and Fortnox's, plus the intents
that make a POST safe to retry (Fortnox itself is the ledger: see `ledger.py`). Every change
the sync makes is one transaction (`with store.transaction():`). The file is created 0600
because it holds OAuth tokens, runs in WAL mode with `synchronous=FULL` so a committed intent
survives `kill -9` and a power cut, and its schema changes only through the named migrations
in `migrations.py`. Timestamps come from the injected clock, like the sync's.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from limefort.core.errors import StateError, UserError
from limefort.core.keys import company_key, deal_id_of_ref, deal_key, number_order
from limefort.core.models import (
    CustomerLink,
    DocumentIntent,
    DriftEntry,
    LedgerDocument,
    QuarantineEntry,
    RecordWarning,
    TokenRecord,
)
from limefort.mapping.normalise import orgnr_key
from limefort.state.files import check_private_dir, check_readable_file, open_private
from limefort.state.migrations import MIGRATIONS

__all__ = [
    "MIGRATIONS",
    "CustomerLink",
    "DocumentIntent",
    "LedgerDocument",
    "QuarantineEntry",
    "Store",
]

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- typed rows -------------------------------------------------------------------------------


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


class _Base:
    db: Database
    clock: Clock
    path: Path | None

    def now_iso(self) -> str:
        return self.clock().astimezone(UTC).isoformat(timespec="seconds")

    def _link_done(
        self,
        company_id: str,
        customer_number: str,
        orgnr: str | None,
        name: str,
        payload: str,
        hash: str,
        shared_with: str | None,
    ) -> None:
        """A company linked to its Fortnox customer (shared: another company owns it)."""
        _upsert(
            self.db,
            "customers",
            {
                "company_id": company_id, "state": "done", "customer_number": customer_number,
                "orgnr": orgnr, "name": name, "payload": payload, "hash": hash,
                "updated_at": self.now_iso(), "shared_with": shared_with,
            },
            pk="company_id",
        )  # fmt: skip

    @contextmanager
    def transaction(self) -> Iterator[_Base]:
        try:
            if self.db.conn.in_transaction:
                with self.db.atomic():  # nested: a savepoint
                    yield self
                return
            # IMMEDIATE takes the write lock up front, so another program writing the file makes
            # this wait (busy_timeout) instead of failing at the first write of a transaction
            # that began as a read: SQLite refuses that upgrade at once to avoid a deadlock.
            self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
                self.db.conn.execute("COMMIT")
            except BaseException:
                self.db.conn.rollback()  # a no-op if the error already ended the transaction
                raise
        except sqlite3.OperationalError as exc:
            if not _state_trouble(exc):
                raise  # a bug in limefort, not the file: keep the traceback
            raise StateError(_explain_sqlite(self.path, exc)) from None


class _LedgerTables(_Base):
    """What limefort knows of Fortnox's own records: its customers by organisation number and
    ExternalReference, its documents by key. Filled from list pages (`ledger.py`)."""

    def index_save(self, items: Iterable[Mapping[str, Any]]) -> int:
        rows = [
            {
                "customer_number": str(i["CustomerNumber"]),
                "orgnr": i.get("OrganisationNumber") or None,
                "orgnr_key": orgnr_key(i.get("OrganisationNumber")),
                "name": i.get("Name") or None,
            }
            for i in items
        ]
        if rows:
            # Not upsert_all: that would blank an ext_ref learnt earlier (list items lack it).
            for row in rows:
                _upsert(self.db, "fortnox_customers", row, pk="customer_number")
        return len(rows)

    def index_remember(
        self, customer_number: str, *, orgnr: str | None, name: str | None, ext_ref: str | None
    ) -> None:
        row: dict[str, Any] = {
            "customer_number": customer_number,
            "orgnr": orgnr,
            "orgnr_key": orgnr_key(orgnr),
            "name": name,
        }
        if ext_ref is not None:
            row["ext_ref"] = ext_ref
        _upsert(self.db, "fortnox_customers", row, pk="customer_number")

    def index_by_orgnr(self, orgnr: str) -> list[str]:
        """Fortnox customers holding this organisation number in any format it was stored in
        (compared folded: `5514637445` is `551463-7445`)."""
        key = orgnr_key(orgnr)
        return self._numbers("orgnr_key = ?", [key]) if key else []

    def index_by_ext_ref(self, ext_ref: str) -> list[str]:
        return self._numbers("ext_ref = ?", [ext_ref])

    def index_by_name(self, name: str) -> list[tuple[str, str | None]]:
        """(customer number, ExternalReference if known) of customers with exactly this name."""
        return [
            (r[0], r[1])
            for r in self.db.execute(
                "SELECT customer_number, ext_ref FROM fortnox_customers WHERE name = ? "
                "ORDER BY length(customer_number), customer_number",
                [name],
            )
        ]

    def _numbers(self, where: str, args: list[Any]) -> list[str]:
        return [
            r[0]
            for r in self.db.execute(
                f"SELECT customer_number FROM fortnox_customers WHERE {where} "
                "ORDER BY length(customer_number), customer_number",
                args,
            )
        ]

    def index_forget(self, customer_number: str) -> None:
        self.db.execute(
            "DELETE FROM fortnox_customers WHERE customer_number = ?", [customer_number]
        )

    def ledger_save(self, kind: str, items: Iterable[Mapping[str, Any]]) -> int:
        rows = [
            {
                "kind": kind,
                "document_number": str(i["DocumentNumber"]),
                "ext_ref": i.get("ExternalInvoiceReference1") or None,
                "customer_number": str(i.get("CustomerNumber") or "") or None,
                "cancelled": _flag(i.get("Cancelled")),
                "booked": _flag(i.get("Booked")),
                "sent": _flag(i.get("Sent")),
                "total": None if i.get("Total") is None else str(i.get("Total")),
                "currency": i.get("Currency") or None,
                "stamp": i.get("ExternalInvoiceReference2") or None,
                "balance": None if i.get("Balance") is None else str(i.get("Balance")),
                "due_date": i.get("DueDate") or None,
            }
            for i in items
            if i.get("DocumentNumber") is not None
        ]
        for row in rows:
            _upsert(self.db, "fortnox_documents", row, pk="kind, document_number")
        return len(rows)

    def ledger_by_ref(self, refs: Iterable[str]) -> dict[str, list[LedgerDocument]]:
        out: dict[str, list[LedgerDocument]] = {}
        for r in _rows_where_in(self.db, "fortnox_documents", "ext_ref", refs):
            out.setdefault(r["ext_ref"], []).append(_ledger(r))
        for docs in out.values():
            docs.sort(key=lambda d: (d.kind, number_order(d.document_number)))
        return out

    def ledger_duplicates(self) -> dict[str, list[LedgerDocument]]:
        """Keys Fortnox holds more than one live document for (made twice by hand, by a tool
        that did not look first, or by two installations at one instant). A cancelled extra
        document resolves it: only documents not cancelled are listed."""
        refs = [
            r[0]
            for r in self.db.execute(
                "SELECT ext_ref FROM fortnox_documents WHERE ext_ref LIKE 'limego:deal:%' "
                "AND cancelled = 0 GROUP BY ext_ref HAVING count(*) > 1 ORDER BY ext_ref"
            )
        ]
        return {
            ref: [d for d in docs if not d.cancelled]
            for ref, docs in self.ledger_by_ref(refs).items()
        }

    def ledger_stamps(self, kind: str) -> list[tuple[str, str, str]]:
        """(stamp, document number, key) of every document of `kind` carrying a stamp in
        ExternalInvoiceReference2 (limefort's `limefort <installation> <time>` among them)."""
        return [
            (r[0], r[1], r[2] or "")
            for r in self.db.execute(
                "SELECT stamp, document_number, ext_ref FROM fortnox_documents "
                "WHERE kind = ? AND stamp LIKE 'limefort %'",
                [kind],
            )
        ]

    def customer_duplicates(self) -> dict[str, list[str]]:
        """Companies whose legal entity Fortnox holds as more than one active customer: company key ->
        the customer numbers with its organisation number (folded). Only organisation numbers
        a linked company has: what Fortnox held twice before limefort came is not its to name
        unless limefort uses one of them."""
        out: dict[str, list[str]] = {}
        links = [
            (r[0], r[1])
            for r in self.db.execute(
                "SELECT company_id, orgnr FROM customers WHERE state = 'done' AND orgnr IS NOT "
                "NULL AND (shared_with IS NULL OR shared_with = '') ORDER BY company_id"
            )
        ]
        for company_id, orgnr in links:
            key = orgnr_key(orgnr)
            # An inactive customer is one Fortnox retired (the active one was preferred): not
            # a second customer of the entity.
            numbers = self._numbers(
                "orgnr_key = ? AND (active IS NULL OR active != 0)", [key]
            ) if key else []  # fmt: skip
            if len(numbers) > 1:
                out[company_key(company_id)] = numbers
        return out

    # --- duplicates a person acknowledged ------------------------------------------------------

    def duplicate_acks(self) -> dict[str, str]:
        """key -> the members (document or customer numbers, comma-separated) acknowledged."""
        return {r[0]: r[1] for r in self.db.execute("SELECT key, members FROM duplicate_acks")}

    def ack_duplicate(self, key: str, members: Iterable[str]) -> None:
        _upsert(
            self.db,
            "duplicate_acks",
            {"key": key, "members": ",".join(members), "acked_at": self.now_iso()},
            pk="key",
        )

    def ledger_invoices(self) -> list[dict[str, Any]]:
        """limefort's invoices as the index last read them, with what payments need (the
        arguments of `payments.payment_of`): key, number, cancelled, booked, balance, total,
        due, currency."""
        return [
            {
                "key": deal_key(deal_id_of_ref(r[0]) or ""),
                "number": r[1],
                "cancelled": bool(r[2]),
                "booked": bool(r[3]),
                "balance": r[4],
                "total": r[5],
                "due": r[6],
                "currency": r[7],
            }
            for r in self.db.execute(
                "SELECT ext_ref, document_number, cancelled, booked, balance, total, due_date, "
                "currency FROM fortnox_documents WHERE kind = 'invoice' "
                "AND ext_ref LIKE 'limego:deal:%' ORDER BY ext_ref, document_number"
            )
        ]

    def ledger_cancelled(self) -> list[LedgerDocument]:
        return [
            _ledger(r)
            for r in self.db.table("fortnox_documents").rows_where(
                "cancelled = 1 AND ext_ref LIKE 'limego:deal:%'", order_by="ext_ref"
            )
        ]


class _RunLog(_Base):
    """One row per pass: what `status`, metrics and `fleet status` read."""

    # --- runs ---------------------------------------------------------------------------------

    def start_run(self, command: str) -> int:
        runs = self.db.table("runs")
        with self.transaction():
            runs.insert({"command": command, "started_at": self.now_iso()})
        return int(runs.last_pk or 0)

    def finish_run(
        self, run_id: int, exit_code: int, counts: dict[str, int], reason: str | None = None
    ) -> None:
        with self.transaction():
            self.db.table("runs").update(
                run_id,
                {
                    "finished_at": self.now_iso(),
                    "exit_code": exit_code,
                    "counts": json.dumps(counts),
                    "reason": reason,
                },
            )

    def runs(self, limit: int = 10) -> list[dict[str, Any]]:
        rows = list(self.db.table("runs").rows_where(order_by="id desc", limit=limit))
        for r in rows:
            r["counts"] = json.loads(r["counts"]) if r.get("counts") else {}
        return rows

    def last_success(self) -> str | None:
        row = self.db.execute(
            "SELECT finished_at FROM runs WHERE exit_code = 0 ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return row[0] if row else None


class _DriftTables(_Base):
    """Rule 12: what each document was made from, and the deals that changed since."""

    def document_baseline(self, deal_id: str, *, currency: str | None) -> None:
        """The deal's currency beside the value, name and company a document row keeps."""
        self.db.execute("UPDATE documents SET currency = ? WHERE deal_id = ?", [currency, deal_id])

    def known_currencies(self) -> set[str]:
        """The currencies of the deals limefort made documents for (`check` asks Fortnox
        about each: automatic rates)."""
        return {
            r[0]
            for r in self.db.execute(
                "SELECT DISTINCT currency FROM documents WHERE currency IS NOT NULL"
            )
        }

    def customer_countries(self) -> dict[str, str]:
        """Company id -> the CountryCode last sent for its customer."""
        return {
            r[0]: r[1]
            for r in self.db.execute(
                "SELECT company_id, json_extract(payload, '$.CountryCode') FROM customers "
                "WHERE state = 'done' AND json_valid(payload)"
            )
            if r[1]
        }

    def document_revised(
        self,
        deal_id: str,
        *,
        value: str | None,
        name: str | None,
        company_id: str | None,
        customer_number: str | None,
    ) -> None:
        """limefort updated the document in Fortnox to follow its deal: the new baseline."""
        self.db.execute(
            "UPDATE documents SET value = ?, name = ?, company_id = ?, "
            "customer_number = coalesce(?, customer_number), revised_at = ? WHERE deal_id = ?",
            [value, name, company_id, customer_number, self.now_iso(), deal_id],
        )

    def drift_entries(self, keys: Iterable[str]) -> dict[str, DriftEntry]:
        return {r["key"]: _drift(r) for r in _rows_where_in(self.db, "drift", "key", keys)}

    def record_drift(
        self, key: str, *, document: str, changes: Mapping[str, tuple[str | None, str | None]]
    ) -> None:
        """Unacknowledged from now; `since` stays that of a drift not yet acknowledged."""
        now = self.now_iso()
        old = self.drift_entries([key]).get(key)
        since = old.since if old is not None and not old.acked else now
        _upsert(
            self.db,
            "drift",
            {
                "key": key, "document": document,
                "changes": json.dumps({k: list(v) for k, v in changes.items()}),
                "since": since, "acked_at": None, "updated_at": now,
            },
            pk="key",
        )  # fmt: skip

    def clear_drift(self, key: str) -> None:
        self.db.execute("DELETE FROM drift WHERE key = ?", [key])

    def unacked_drift(self) -> list[DriftEntry]:
        return [
            _drift(r)
            for r in self.db.table("drift").rows_where("acked_at IS NULL", order_by="since, key")
        ]

    def ack_drift(self, keys: Iterable[str] | None) -> list[str]:
        """Acknowledge these keys' drift (None: all of it); the keys that had some, in order."""
        entries = (
            self.unacked_drift()
            if keys is None
            else [e for e in self.drift_entries(keys).values() if not e.acked]
        )
        now = self.now_iso()
        for e in entries:
            self.db.execute(
                "UPDATE drift SET acked_at = ?, updated_at = ? WHERE key = ?", [now, now, e.key]
            )
        return [e.key for e in entries]


class RealWorldTables(_Base):
    """Issue 13's additions: shared customers, the active flag of Fortnox's customers, and
    persistent per-record warnings. A mixin of `Store`, kept apart so it reads as one piece."""

    # --- shared customers (one legal entity is one Fortnox customer) ---------------------------

    def customer_shared(
        self,
        company_id: str,
        *,
        customer_number: str,
        orgnr: str | None,
        name: str,
        payload: str,
        hash: str,
        shared_with: str,
    ) -> None:
        """Link a company to a customer another company owns: its deals are invoiced to it,
        its field changes are never sent (the stored payload is what it had when linked)."""
        self._link_done(company_id, customer_number, orgnr, name, payload, hash, shared_with)

    def owners_of(self, customer_numbers: Iterable[str]) -> dict[str, tuple[str, str]]:
        """Customer number -> (company id, name) of the company that owns it (linked, done,
        not shared)."""
        out: dict[str, tuple[str, str]] = {}
        for r in _rows_where_in(self.db, "customers", "customer_number", customer_numbers):
            if r["state"] == "done" and not r.get("shared_with"):
                out.setdefault(r["customer_number"], (r["company_id"], r["name"] or ""))
        return out

    # --- Fortnox customers' active flag ---------------------------------------------------------

    def index_set_active(self, numbers: Iterable[str], active: bool) -> None:
        for chunk in _chunks(list(numbers)):
            marks = ",".join("?" * len(chunk))
            self.db.execute(
                f"UPDATE fortnox_customers SET active = ? WHERE customer_number IN ({marks})",
                [1 if active else 0, *chunk],
            )

    def index_inactive(self, numbers: Iterable[str]) -> set[str]:
        """Those of `numbers` Fortnox's list shows as inactive."""
        return {
            r["customer_number"]
            for r in _rows_where_in(self.db, "fortnox_customers", "customer_number", numbers)
            if r.get("active") == 0
        }

    # --- warnings on records ------------------------------------------------------------------

    def set_warning(
        self,
        key: str,
        kind: str,
        text: str,
        *,
        field: str | None = None,
        held: str | None = None,
        sent: str | None = None,
    ) -> None:
        """Keeps `since` while the text stays the same."""
        row = self.db.execute(
            "SELECT text, since FROM warnings WHERE key = ? AND kind = ?", [key, kind]
        ).fetchone()
        since = row[1] if row is not None and row[0] == text else self.now_iso()
        _upsert(
            self.db,
            "warnings",
            {
                "key": key, "kind": kind, "text": text, "since": since,
                "field": field, "held": held, "sent": sent,
            },
            pk="key, kind",
        )  # fmt: skip

    def replace_field_warnings(
        self, key: str, notes: Iterable[tuple[str, str, str | None, str | None]]
    ) -> None:
        """The values the record's last write cut, cleaned away or left blank, as
        (field, text, held, sent), one row per field: those of an earlier write go (the record
        changed), those still true keep their `since`."""
        notes = list(notes)
        keep = [f"field:{field}" for field, *_ in notes]
        marks = ",".join("?" * len(keep))
        self.db.execute(
            "DELETE FROM warnings WHERE key = ? AND kind LIKE 'field:%'"
            + (f" AND kind NOT IN ({marks})" if keep else ""),
            [key, *keep],
        )
        for field, text, held, sent in notes:
            self.set_warning(key, f"field:{field}", text, field=field, held=held, sent=sent)

    def records_with_warnings(self, kind: str = "") -> int:
        """Records with a warning (of kinds starting `kind`: "field:" for values cut)."""
        return int(
            self.db.execute(
                "SELECT count(DISTINCT key) FROM warnings WHERE kind LIKE ?", [kind + "%"]
            ).fetchone()[0]
        )

    def clear_warning(self, key: str, kind: str | None = None) -> None:
        if kind is None:
            self.db.execute("DELETE FROM warnings WHERE key = ?", [key])
        else:
            self.db.execute("DELETE FROM warnings WHERE key = ? AND kind = ?", [key, kind])

    def all_warnings(self) -> list[RecordWarning]:
        return [
            RecordWarning(
                r["key"],
                r["kind"],
                r["text"],
                r["since"],
                r.get("field"),
                r.get("held"),
                r.get("sent"),
            )
            for r in self.db.table("warnings").rows_where(order_by="since, key, kind")
        ]


class Store(_LedgerTables, _RunLog, _DriftTables, RealWorldTables):
    def __init__(self, db: Database, path: Path | None = None, clock: Clock = _utcnow) -> None:
        self.db = db
        self.path = path
        self.clock = clock

    # --- opening ------------------------------------------------------------------------------

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
            conn = sqlite3.connect(str(path), timeout=busy_timeout)
            db = Database(conn)
            store = cls(db, path)
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
        if "_migrations" not in self.db.table_names():
            return []
        return [r["name"] for r in self.db.table("_migrations").rows]

    @classmethod
    def memory(cls, clock: Clock = _utcnow) -> Store:
        store = cls(Database(memory=True), clock=clock)
        store.migrate()
        return store

    def _configure(self, busy_timeout: float) -> None:
        with self.db.ensure_autocommit_on():
            mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StateError(f"state.path: cannot switch {self.path} to WAL mode (got {mode})")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")

    def migrate(self) -> list[str]:
        if "_migrations" not in self.db.table_names():
            self.db.table("_migrations").create({"name": str, "applied_at": str}, pk="name")
        applied = set(self._applied())
        _refuse_newer(self.path, applied)
        done = []
        for name, fn in MIGRATIONS:
            if name in applied:
                continue
            with self.db.atomic():
                fn(self.db)
                self.db.table("_migrations").insert({"name": name, "applied_at": self.now_iso()})
            done.append(name)
        return done

    def close(self) -> None:
        self.db.close()

    # --- cursors and meta ---------------------------------------------------------------------

    def cursors(self) -> dict[str, str]:
        return {r["name"]: r["value"] for r in self.db.table("cursors").rows}

    def get_cursor(self, name: str) -> datetime | None:
        row = self.db.execute("SELECT value FROM cursors WHERE name = ?", [name]).fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    def set_cursor(self, name: str, value: datetime) -> None:
        _upsert(
            self.db,
            "cursors",
            {"name": name, "value": value.isoformat(), "updated_at": self.now_iso()},
            pk="name",
        )

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        _upsert(self.db, "meta", {"key": key, "value": value}, pk="key")

    # --- customer links -----------------------------------------------------------------------

    def links(self, company_ids: Iterable[str]) -> dict[str, CustomerLink]:
        return {
            r["company_id"]: _link(r)
            for r in _rows_where_in(self.db, "customers", "company_id", company_ids)
        }

    def link(self, company_id: str) -> CustomerLink | None:
        return self.links([company_id]).get(company_id)

    def customer_intent(
        self, company_id: str, *, orgnr: str | None, name: str, payload: str, hash: str
    ) -> None:
        """Recorded before a customer POST: a crash after it leaves a pending row to reconcile."""
        now = self.now_iso()
        _upsert(
            self.db,
            "customers",
            {
                "company_id": company_id, "state": "pending", "customer_number": None,
                "orgnr": orgnr, "name": name, "payload": payload, "hash": hash,
                "intent_at": now, "outcome": None, "updated_at": now,
            },
            pk="company_id",
        )  # fmt: skip

    def customer_done(
        self,
        company_id: str,
        *,
        customer_number: str,
        orgnr: str | None,
        name: str,
        payload: str,
        hash: str,
        ext_ref: str | None = None,
    ) -> None:
        self._link_done(company_id, customer_number, orgnr, name, payload, hash, None)
        self.index_remember(customer_number, orgnr=orgnr, name=name, ext_ref=ext_ref)

    def drop_customer_intent(self, company_id: str) -> None:
        self.db.execute(
            "DELETE FROM customers WHERE company_id = ? AND state = 'pending'", [company_id]
        )

    def forget_link(self, company_id: str) -> None:
        """The Fortnox customer behind a link is gone: the company is linked afresh."""
        self.db.execute("DELETE FROM customers WHERE company_id = ?", [company_id])

    def mark_outcome(self, key_kind: str, record_id: str, outcome: str) -> None:
        """How a pending POST ended, when that is known: `lost` (Fortnox finished, answer
        lost) or `not_sent` (certainly not applied)."""
        table, pk = (
            ("customers", "company_id") if key_kind == "company" else ("documents", "deal_id")
        )
        self.db.execute(
            f"UPDATE {table} SET outcome = ? WHERE {pk} = ? AND state = 'pending'",
            [outcome, record_id],
        )

    def pending_customers(self) -> list[CustomerLink]:
        rows = self.db.table("customers").rows_where("state = 'pending'", order_by="intent_at")
        return [_link(r) for r in rows]

    def count_customers(self) -> int:
        # A shared link is a second company on a customer already counted.
        sql = "SELECT count(*) FROM customers WHERE state = 'done' AND shared_with IS NULL"
        return int(self.db.execute(sql).fetchone()[0])

    # --- documents ----------------------------------------------------------------------------

    def intents(self, deal_ids: Iterable[str]) -> dict[str, DocumentIntent]:
        return {
            r["deal_id"]: _intent(r)
            for r in _rows_where_in(self.db, "documents", "deal_id", deal_ids)
        }

    def document(self, deal_id: str) -> DocumentIntent | None:
        return self.intents([deal_id]).get(deal_id)

    def document_intent(
        self,
        deal_id: str,
        *,
        kind: str,
        idem_key: str,
        company_id: str | None,
        customer_number: str,
        name: str | None,
        value: str | None,
        won_at: str,
    ) -> None:
        """Committed before the POST (rule 3): from here on the outcome is tracked."""
        _upsert(
            self.db,
            "documents",
            {
                "deal_id": deal_id, "kind": kind, "state": "pending", "idem_key": idem_key,
                "document_number": None, "customer_number": customer_number,
                "company_id": company_id, "name": name, "value": value, "won_at": won_at,
                "since": self.now_iso(), "outcome": None, "done_at": None,
            },
            pk="deal_id",
        )  # fmt: skip

    def document_done(
        self, deal_id: str, *, document_number: str, customer_number: str | None = None
    ) -> None:
        self.db.execute(
            "UPDATE documents SET state = 'done', document_number = ?, done_at = ?, "
            "customer_number = coalesce(?, customer_number) WHERE deal_id = ?",
            [str(document_number), self.now_iso(), customer_number, deal_id],
        )

    def document_linked(
        self,
        deal_id: str,
        *,
        kind: str,
        idem_key: str,
        document_number: str,
        customer_number: str | None,
        company_id: str | None,
        name: str | None,
        value: str | None,
        won_at: str,
    ) -> None:
        """A document Fortnox already holds for this deal, linked without a POST."""
        now = self.now_iso()
        _upsert(
            self.db,
            "documents",
            {
                "deal_id": deal_id, "kind": kind, "state": "done", "idem_key": idem_key,
                "document_number": document_number, "customer_number": customer_number,
                "company_id": company_id, "name": name, "value": value, "won_at": won_at,
                "since": now, "outcome": None, "done_at": now,
            },
            pk="deal_id",
        )  # fmt: skip

    def drop_document_intent(self, deal_id: str) -> None:
        self.db.execute("DELETE FROM documents WHERE deal_id = ? AND state = 'pending'", [deal_id])

    def documents_skipped(self, rows: Iterable[tuple[str, str, str | None, str]]) -> None:
        """Deals already won before `sync.start` (deal id, kind, name, won_at): never invoiced
        by `sync`, only by an explicit `backfill`."""
        now = self.now_iso()
        items = [
            {"deal_id": d, "kind": k, "state": "skipped", "name": n, "won_at": w, "since": now}
            for d, k, n, w in rows
        ]
        if items:
            self.db.table("documents").insert_all(items, pk="deal_id", ignore=True)

    def pending_documents(self) -> list[DocumentIntent]:
        rows = self.db.table("documents").rows_where("state = 'pending'", order_by="since")
        return [_intent(r) for r in rows]

    def count_documents(self) -> dict[str, int]:
        counts = {"invoice": 0, "order": 0}
        for kind, n in self.db.execute(
            "SELECT kind, count(*) FROM documents WHERE state = 'done' GROUP BY kind"
        ):
            counts[kind] = n
        return counts

    def count_skipped(self) -> int:
        sql = "SELECT count(*) FROM documents WHERE state = 'skipped'"
        return int(self.db.execute(sql).fetchone()[0])

    # --- quarantine ---------------------------------------------------------------------------

    def quarantined(self, keys: Iterable[str]) -> dict[str, QuarantineEntry]:
        return {r["key"]: _entry(r) for r in _rows_where_in(self.db, "quarantine", "key", keys)}

    def quarantine(
        self,
        key: str,
        *,
        name: str | None,
        reason: str,
        hint: str,
        source_hash: str | None,
        waits_for: str | None = None,
    ) -> None:
        """`waits_for`: the key of the record that must reach Fortnox first (its company)."""
        existing = self.quarantined([key]).get(key)
        now = self.now_iso()
        _upsert(
            self.db,
            "quarantine",
            {
                "key": key, "name": name, "reason": reason, "hint": hint,
                "attempts": (existing.attempts if existing else 0) + 1,
                "source_hash": source_hash,
                "first_seen": existing.first_seen if existing else now,
                "last_seen": now, "waits_for": waits_for,
            },
            pk="key",
        )  # fmt: skip

    def waiting_ready(self) -> list[str]:
        """Quarantined records whose company they waited for is now in Fortnox."""
        return [
            r[0]
            for r in self.db.execute(
                "SELECT q.key FROM quarantine q JOIN customers c "
                "ON q.waits_for = 'company:' || c.company_id "
                "WHERE c.state = 'done' ORDER BY q.first_seen, q.key"
            )
        ]

    def release(self, key: str) -> None:
        self.db.execute("DELETE FROM quarantine WHERE key = ?", [key])

    def all_quarantined(self) -> list[QuarantineEntry]:
        return [
            _entry(r) for r in self.db.table("quarantine").rows_where(order_by="first_seen, key")
        ]

    # --- tokens (the TokenCache protocol of the clients) ---------------------------------------

    def load(self, name: str) -> TokenRecord | None:
        row = next(_rows_where_in(self.db, "tokens", "name", [name]), None)
        if not row:
            return None
        return TokenRecord(
            access_token=row["access_token"],
            expires_at=row["expires_at"] or 0.0,
            refresh_token=row["refresh_token"],
            refresh_issued_at=row["refresh_issued_at"],
            scope=row["scope"],
            tenant_id=row["tenant_id"],
        )

    def save(self, name: str, record: TokenRecord) -> None:
        """Committed when it returns: a rotated refresh token must be durable before use."""
        if self.db.conn.in_transaction:
            # Inside an open transaction this would only be a savepoint, lost on a crash.
            raise RuntimeError("tokens must be saved outside any store transaction")
        with self.transaction():
            self.db.table("tokens").upsert(
                {
                    "name": name,
                    "access_token": record.access_token,
                    "expires_at": record.expires_at,
                    "refresh_token": record.refresh_token,
                    "refresh_issued_at": record.refresh_issued_at,
                    "scope": record.scope,
                    "tenant_id": record.tenant_id,
                    "updated_at": self.now_iso(),
                },
                pk="name",
            )


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


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


def _upsert(db: Database, table: str, row: Mapping[str, Any], *, pk: str) -> None:
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
    db: Database, table: str, column: str, keys: Iterable[str]
) -> Iterator[dict[str, Any]]:
    """Lookups in batches (one query per 500 keys, not one per record)."""
    keys = list(dict.fromkeys(keys))
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        marks = ",".join("?" * len(chunk))
        cur = db.execute(f"SELECT * FROM [{table}] WHERE [{column}] IN ({marks})", chunk)
        cols = [c[0] for c in cur.description]
        for row in cur:
            yield dict(zip(cols, row, strict=True))


def _state_trouble(exc: sqlite3.DatabaseError) -> bool:
    """The file is locked, read-only, full, unreadable or damaged: the user's to fix."""
    text = str(exc).lower()
    words = ("locked", "busy", "readonly", "read-only", "disk i/o", "full", "malformed")
    return any(w in text for w in (*words, "not a database"))


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
        store = cls(Database(conn), path)
        applied = set(store._applied())
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            raise StateError(_explain_sqlite(path, exc)) from None
        # WAL left a -wal file behind, and this mount cannot take the -shm beside it: the
        # main file alone (what the last checkpoint holds) is still the file's state.
        conn = sqlite3.connect(read_only_uri(path, wal_exists=False), uri=True, timeout=5)
        store = cls(Database(conn), path)
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


def _refuse_newer(path: Path | None, applied: set[str]) -> None:
    """A state file with migrations this limefort does not know was written by a newer one."""
    unknown = applied - {name for name, _ in MIGRATIONS}
    if unknown:
        raise StateError(
            f"state.path: {path} was written by a newer limefort "
            f"(unknown migrations {sorted(unknown)}); upgrade limefort"
        )


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


def token_age_days(record: TokenRecord | None) -> float | None:
    if not record or not record.refresh_issued_at:
        return None
    return (time.time() - record.refresh_issued_at) / 86400


# --- read-only peeks (`fleet status`): no lock, no migration, nothing created ----------------


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


# --- what limefort recorded, read-only (`audit`): no lock, no migration, nothing written -----


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
        cur = conn.execute("SELECT * FROM documents WHERE state = 'done'")
        cols = [c[0] for c in cur.description]
        intents = [_intent(dict(zip(cols, row, strict=True))) for row in cur]
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
