"""The local state: the only module that touches SQLite.

Every change the sync makes is one transaction (`with store.transaction():`). The file is
created 0600 because it holds OAuth tokens, runs in WAL mode with `synchronous=FULL` so a
committed intent survives `kill -9` and a power cut, and its schema changes only through the
named migrations below, applied in order and recorded in `_migrations`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from limefort.errors import StateError
from limefort.files import check_private_dir, open_private
from limefort.models import TokenRecord


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- migrations -------------------------------------------------------------------------------
# Append only. A released migration is never edited: add a new one.


def _m001_initial(db: Database) -> None:
    db.table("cursors").create({"name": str, "value": str, "updated_at": str}, pk="name")
    db.table("meta").create({"key": str, "value": str}, pk="key")
    db.table("customers").create(
        {
            "company_id": str,
            "state": str,  # pending (POST sent or about to be, outcome unknown) | done
            "customer_number": str,
            "orgnr": str,
            "name": str,
            "payload": str,  # JSON of the payload last sent (Decimal-exact)
            "hash": str,
            "intent_at": str,
            "outcome": str,  # null while the POST may be in flight; "lost" once Fortnox finished
            "updated_at": str,
        },
        pk="company_id",
    )
    db.table("customers").create_index(["orgnr"])
    db.table("customers").create_index(["state"])
    db.table("documents").create(
        {
            "deal_id": str,
            "kind": str,  # invoice | order
            "state": str,  # pending | done | skipped (won before sync.start)
            "idem_key": str,
            "document_number": str,
            "customer_number": str,
            "company_id": str,
            "name": str,
            "value": str,
            "won_at": str,
            "since": str,
            "outcome": str,  # as for customers
            "done_at": str,
        },
        pk="deal_id",
    )
    db.table("documents").create_index(["state"])
    db.table("quarantine").create(
        {
            "key": str,
            "name": str,
            "reason": str,
            "hint": str,
            "attempts": int,
            "source_hash": str,
            "first_seen": str,
            "last_seen": str,
        },
        pk="key",
    )
    db.table("runs").create(
        {
            "id": int,
            "command": str,
            "started_at": str,
            "finished_at": str,
            "exit_code": int,
            "counts": str,
        },
        pk="id",
    )
    db.table("tokens").create(
        {
            "name": str,
            "access_token": str,
            "expires_at": float,
            "refresh_token": str,
            "refresh_issued_at": float,
            "scope": str,
            "tenant_id": str,
            "updated_at": str,
        },
        pk="name",
    )
    # What limefort knows of Fortnox's customers, for matching by organisation number without a
    # search per company (rule 4). Built from pages of 500, refreshed by `lastmodified`.
    db.table("fortnox_customers").create(
        {"customer_number": str, "orgnr": str, "name": str}, pk="customer_number"
    )
    db.table("fortnox_customers").create_index(["orgnr"])
    db.table("fortnox_customers").create_index(["name"])


def _m002_quarantine_waits_for(db: Database) -> None:
    # A deal quarantined only because its company is not in Fortnox names that company here,
    # so it follows once the company is in, even though the deal itself never changes.
    db.table("quarantine").add_column("waits_for", str)


MIGRATIONS: list[tuple[str, Callable[[Database], None]]] = [
    ("001_initial", _m001_initial),
    ("002_quarantine_waits_for", _m002_quarantine_waits_for),
]


class Store:
    def __init__(self, db: Database, path: Path | None = None) -> None:
        self.db = db
        self.path = path

    # --- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> Store:
        path = Path(path)
        # Checked and created by limefort.files (no symlink, ours, 0600, in a private
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
            conn = sqlite3.connect(str(path), timeout=10)
            db = Database(conn)
            store = cls(db, path)
            store._configure()
            store.migrate()
        except sqlite3.DatabaseError as exc:
            raise StateError(_explain_sqlite(path, exc)) from None
        finally:
            os.umask(old_umask)
        return store

    @classmethod
    def memory(cls) -> Store:
        store = cls(Database(memory=True))
        store.migrate()
        return store

    def _configure(self) -> None:
        with self.db.ensure_autocommit_on():
            mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StateError(f"state.path: cannot switch {self.path} to WAL mode (got {mode})")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=10000")

    def migrate(self) -> list[str]:
        if "_migrations" not in self.db.table_names():
            self.db.table("_migrations").create({"name": str, "applied_at": str}, pk="name")
        applied = {r["name"] for r in self.db.table("_migrations").rows}
        known = {name for name, _ in MIGRATIONS}
        if applied - known:
            raise StateError(
                f"state.path: {self.path} was written by a newer limefort "
                f"(unknown migrations {sorted(applied - known)}); upgrade limefort"
            )
        done = []
        for name, fn in MIGRATIONS:
            if name in applied:
                continue
            with self.db.atomic():
                fn(self.db)
                self.db.table("_migrations").insert({"name": name, "applied_at": now_iso()})
            done.append(name)
        return done

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[Store]:
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

    # --- cursors and meta ---------------------------------------------------------------------

    def cursors(self) -> dict[str, str]:
        return {r["name"]: r["value"] for r in self.db.table("cursors").rows}

    def get_cursor(self, name: str) -> datetime | None:
        row = self.db.execute("SELECT value FROM cursors WHERE name = ?", [name]).fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    def set_cursor(self, name: str, value: datetime) -> None:
        self.db.table("cursors").upsert(
            {"name": name, "value": value.isoformat(), "updated_at": now_iso()}, pk="name"
        )

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.table("meta").upsert({"key": key, "value": value}, pk="key")

    # --- customers ----------------------------------------------------------------------------

    def customers_for(self, company_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return _rows_by(self.db, "customers", "company_id", company_ids)

    def customer(self, company_id: str) -> dict[str, Any] | None:
        return self.customers_for([company_id]).get(company_id)

    def customer_intent(
        self, company_id: str, *, orgnr: str | None, name: str, payload: str, hash: str
    ) -> None:
        """Recorded before a customer POST: a crash after it leaves a pending row to reconcile."""
        _upsert(
            self.db,
            "customers",
            {
                "company_id": company_id,
                "state": "pending",
                "customer_number": None,
                "orgnr": orgnr,
                "name": name,
                "payload": payload,
                "hash": hash,
                "intent_at": now_iso(),
                "outcome": None,
                "updated_at": now_iso(),
            },
            pk="company_id",
        )

    def customer_done(
        self,
        company_id: str,
        *,
        customer_number: str,
        orgnr: str | None,
        name: str,
        payload: str,
        hash: str,
    ) -> None:
        _upsert(
            self.db,
            "customers",
            {
                "company_id": company_id,
                "state": "done",
                "customer_number": customer_number,
                "orgnr": orgnr,
                "name": name,
                "payload": payload,
                "hash": hash,
                "updated_at": now_iso(),
            },
            pk="company_id",
        )
        _upsert(
            self.db,
            "fortnox_customers",
            {"customer_number": customer_number, "orgnr": orgnr, "name": name},
            pk="customer_number",
        )

    def drop_customer_intent(self, company_id: str) -> None:
        self.db.execute(
            "DELETE FROM customers WHERE company_id = ? AND state = 'pending'", [company_id]
        )

    def pending_customers(self) -> list[dict[str, Any]]:
        return list(
            self.db.table("customers").rows_where("state = 'pending'", order_by="intent_at")
        )

    def count_customers(self) -> int:
        return self.db.execute("SELECT count(*) FROM customers WHERE state = 'done'").fetchone()[0]

    # --- Fortnox customer index ---------------------------------------------------------------

    def index_save(self, items: Iterable[dict[str, Any]]) -> int:
        rows = [
            {
                "customer_number": str(i["CustomerNumber"]),
                "orgnr": i.get("OrganisationNumber") or None,
                "name": i.get("Name") or None,
            }
            for i in items
        ]
        if rows:
            self.db.table("fortnox_customers").upsert_all(rows, pk="customer_number")
        return len(rows)

    def index_by_orgnr(self, orgnr: str) -> list[str]:
        return [
            r[0]
            for r in self.db.execute(
                "SELECT customer_number FROM fortnox_customers WHERE orgnr = ? "
                "ORDER BY length(customer_number), customer_number",
                [orgnr],
            )
        ]

    # --- documents ----------------------------------------------------------------------------

    def documents_for(self, deal_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return _rows_by(self.db, "documents", "deal_id", deal_ids)

    def document(self, deal_id: str) -> dict[str, Any] | None:
        return self.documents_for([deal_id]).get(deal_id)

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
                "deal_id": deal_id,
                "kind": kind,
                "state": "pending",
                "idem_key": idem_key,
                "document_number": None,
                "customer_number": customer_number,
                "company_id": company_id,
                "name": name,
                "value": value,
                "won_at": won_at,
                "since": now_iso(),
                "outcome": None,
                "done_at": None,
            },
            pk="deal_id",
        )

    def document_done(self, deal_id: str, *, document_number: str) -> None:
        self.db.execute(
            "UPDATE documents SET state = 'done', document_number = ?, done_at = ? "
            "WHERE deal_id = ?",
            [str(document_number), now_iso(), deal_id],
        )

    def drop_document_intent(self, deal_id: str) -> None:
        self.db.execute("DELETE FROM documents WHERE deal_id = ? AND state = 'pending'", [deal_id])

    def documents_skipped(self, rows: Iterable[tuple[str, str, str | None, str]]) -> None:
        """Deals already won before `sync.start` (deal id, kind, name, won_at): never invoiced
        by `sync`, only by an explicit `backfill`."""
        items = [
            {
                "deal_id": d,
                "kind": k,
                "state": "skipped",
                "name": n,
                "won_at": w,
                "since": now_iso(),
            }
            for d, k, n, w in rows
        ]
        if items:
            self.db.table("documents").insert_all(items, pk="deal_id", ignore=True)

    def pending_documents(self) -> list[dict[str, Any]]:
        return list(self.db.table("documents").rows_where("state = 'pending'", order_by="since"))

    def count_documents(self) -> dict[str, int]:
        counts = {"invoice": 0, "order": 0}
        for kind, n in self.db.execute(
            "SELECT kind, count(*) FROM documents WHERE state = 'done' GROUP BY kind"
        ):
            counts[kind] = n
        return counts

    # --- quarantine ---------------------------------------------------------------------------

    def quarantined(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        return _rows_by(self.db, "quarantine", "key", keys)

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
        now = now_iso()
        _upsert(
            self.db,
            "quarantine",
            {
                "key": key,
                "name": name,
                "reason": reason,
                "hint": hint,
                "attempts": (existing["attempts"] if existing else 0) + 1,
                "source_hash": source_hash,
                "first_seen": existing["first_seen"] if existing else now,
                "last_seen": now,
                "waits_for": waits_for,
            },
            pk="key",
        )

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

    def all_quarantined(self) -> list[dict[str, Any]]:
        return list(self.db.table("quarantine").rows_where(order_by="first_seen, key"))

    # --- runs ---------------------------------------------------------------------------------

    def start_run(self, command: str) -> int:
        runs = self.db.table("runs")
        with self.transaction():
            runs.insert({"command": command, "started_at": now_iso()})
        return int(runs.last_pk or 0)

    def finish_run(self, run_id: int, exit_code: int, counts: dict[str, int]) -> None:
        with self.transaction():
            self.db.table("runs").update(
                run_id,
                {"finished_at": now_iso(), "exit_code": exit_code, "counts": json.dumps(counts)},
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

    # --- tokens (the TokenCache protocol of the clients) ---------------------------------------

    def load(self, name: str) -> TokenRecord | None:
        row = _rows_by(self.db, "tokens", "name", [name]).get(name)
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
                    "updated_at": now_iso(),
                },
                pk="name",
            )


def _upsert(db: Database, table: str, row: dict[str, Any], *, pk: str) -> None:
    """Insert the row, or update just these columns of the existing one: sqlite-utils'
    `upsert` as one statement (it spends a dozen introspection queries on each call, most of
    the store's time per record in a first pass)."""
    cols = ", ".join(f"[{c}]" for c in row)
    marks = ", ".join("?" * len(row))
    sets = ", ".join(f"[{c}] = excluded.[{c}]" for c in row if c != pk)
    db.execute(
        f"INSERT INTO [{table}] ({cols}) VALUES ({marks}) ON CONFLICT([{pk}]) DO UPDATE SET {sets}",
        list(row.values()),
    )


def _rows_by(db: Database, table: str, pk: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Primary-key lookups in batches (one query per 500 keys, not one per record)."""
    keys = list(dict.fromkeys(keys))
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        marks = ",".join("?" * len(chunk))
        cur = db.execute(f"SELECT * FROM [{table}] WHERE [{pk}] IN ({marks})", chunk)
        cols = [c[0] for c in cur.description]
        for row in cur:
            d = dict(zip(cols, row, strict=True))
            out[d[pk]] = d
    return out


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


def token_age_days(record: TokenRecord | None) -> float | None:
    if not record or not record.refresh_issued_at:
        return None
    return (time.time() - record.refresh_issued_at) / 86400
