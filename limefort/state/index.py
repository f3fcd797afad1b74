"""What limefort knows of Fortnox's own records (its customers by organisation number,
ExternalReference and name, their active flag; its documents by key and installation stamp),
filled from list pages by the ledger, and the duplicates found there."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from limefort.core.keys import company_key, deal_id_of_ref, deal_key, number_order
from limefort.core.models import LedgerDocument
from limefort.mapping.normalise import orgnr_key
from limefort.state.rows import (
    Tables,
    _chunks,
    _flag,
    _ledger,
    _rows_where_in,
    _select,
    _upsert,
)


class FortnoxIndex(Tables):
    """Fortnox's customers and documents as its list pages showed them."""

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
                _upsert(self.conn, "fortnox_customers", row, pk="customer_number")
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
        _upsert(self.conn, "fortnox_customers", row, pk="customer_number")

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
            for r in self.conn.execute(
                "SELECT customer_number, ext_ref FROM fortnox_customers WHERE name = ? "
                "ORDER BY length(customer_number), customer_number",
                [name],
            )
        ]

    def _numbers(self, where: str, args: list[Any]) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                f"SELECT customer_number FROM fortnox_customers WHERE {where} "
                "ORDER BY length(customer_number), customer_number",
                args,
            )
        ]

    def index_forget(self, customer_number: str) -> None:
        self.conn.execute(
            "DELETE FROM fortnox_customers WHERE customer_number = ?", [customer_number]
        )

    def index_set_active(self, numbers: Iterable[str], active: bool) -> None:
        for chunk in _chunks(list(numbers)):
            marks = ",".join("?" * len(chunk))
            self.conn.execute(
                f"UPDATE fortnox_customers SET active = ? WHERE customer_number IN ({marks})",
                [1 if active else 0, *chunk],
            )

    def index_inactive(self, numbers: Iterable[str]) -> set[str]:
        """Those of `numbers` Fortnox's list shows as inactive."""
        return {
            r["customer_number"]
            for r in _rows_where_in(self.conn, "fortnox_customers", "customer_number", numbers)
            if r.get("active") == 0
        }

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
            _upsert(self.conn, "fortnox_documents", row, pk="kind, document_number")
        return len(rows)

    def ledger_by_ref(self, refs: Iterable[str]) -> dict[str, list[LedgerDocument]]:
        out: dict[str, list[LedgerDocument]] = {}
        for r in _rows_where_in(self.conn, "fortnox_documents", "ext_ref", refs):
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
            for r in self.conn.execute(
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
            for r in self.conn.execute(
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
            for r in self.conn.execute(
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

    def duplicate_acks(self) -> dict[str, str]:
        """key -> the members (document or customer numbers, comma-separated) acknowledged."""
        return {r[0]: r[1] for r in self.conn.execute("SELECT key, members FROM duplicate_acks")}

    def ack_duplicate(self, key: str, members: Iterable[str]) -> None:
        _upsert(
            self.conn,
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
            for r in self.conn.execute(
                "SELECT ext_ref, document_number, cancelled, booked, balance, total, due_date, "
                "currency FROM fortnox_documents WHERE kind = 'invoice' "
                "AND ext_ref LIKE 'limego:deal:%' ORDER BY ext_ref, document_number"
            )
        ]

    def ledger_cancelled(self) -> list[LedgerDocument]:
        return [
            _ledger(r)
            for r in _select(
                self.conn,
                "fortnox_documents",
                "cancelled = 1 AND ext_ref LIKE 'limego:deal:%'",
                order_by="ext_ref",
            )
        ]
