"""Won deals and their Fortnox documents: the intent written before a POST (what makes it safe
to retry), the document after it, deals linked to a document found in Fortnox, deals skipped as
historical, and how a pending POST ended."""

from __future__ import annotations

from collections.abc import Iterable

from limefort.core.models import DocumentIntent
from limefort.state.rows import (
    CUSTOMERS,
    DOCUMENTS,
    Tables,
    _intent,
    _rows_where_in,
    _upsert,
)


class DocumentIntents(Tables):
    """Deal -> Fortnox document: intent, document, linked, skipped."""

    def intents(self, deal_ids: Iterable[str]) -> dict[str, DocumentIntent]:
        return {
            r["deal_id"]: _intent(r)
            for r in _rows_where_in(self.conn, "documents", "deal_id", deal_ids)
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
            self.conn,
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
        self.conn.execute(
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
            self.conn,
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
        DOCUMENTS.drop_pending(self.conn, deal_id)

    def documents_skipped(self, rows: Iterable[tuple[str, str, str | None, str]]) -> None:
        """Deals already won before `sync.start` (deal id, kind, name, won_at): never invoiced
        by `sync`, only by an explicit `backfill`."""
        now = self.now_iso()
        items = [
            {"deal_id": d, "kind": k, "state": "skipped", "name": n, "won_at": w, "since": now}
            for d, k, n, w in rows
        ]
        if items:
            self.conn.executemany(
                "INSERT OR IGNORE INTO documents (deal_id, kind, state, name, won_at, since) "
                "VALUES (:deal_id, :kind, :state, :name, :won_at, :since)",
                items,
            )

    def pending_documents(self) -> list[DocumentIntent]:
        return [_intent(r) for r in DOCUMENTS.pending(self.conn)]

    def count_documents(self) -> dict[str, int]:
        counts = {"invoice": 0, "order": 0}
        for kind, n in self.conn.execute(
            "SELECT kind, count(*) FROM documents WHERE state = 'done' GROUP BY kind"
        ):
            counts[kind] = n
        return counts

    def count_skipped(self) -> int:
        sql = "SELECT count(*) FROM documents WHERE state = 'skipped'"
        return int(self.conn.execute(sql).fetchone()[0])

    def mark_outcome(self, key_kind: str, record_id: str, outcome: str) -> None:
        """How a pending POST ended, when that is known: `lost` (Fortnox finished, answer
        lost) or `not_sent` (certainly not applied)."""
        (CUSTOMERS if key_kind == "company" else DOCUMENTS).mark(self.conn, record_id, outcome)
