"""Links between Lime Go companies and Fortnox customers: the intent before a POST, the link
after it, shared customers (two companies, one organisation number) and their owners."""

from __future__ import annotations

from collections.abc import Iterable

from limefort.core.models import CustomerLink
from limefort.state.index import FortnoxIndex
from limefort.state.rows import (
    CUSTOMERS,
    _link,
    _rows_where_in,
    _upsert,
)


class CustomerLinks(FortnoxIndex):
    """Company -> Fortnox customer: intent, link, shared customers."""

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
            self.conn,
            "customers",
            {
                "company_id": company_id, "state": "done", "customer_number": customer_number,
                "orgnr": orgnr, "name": name, "payload": payload, "hash": hash,
                "updated_at": self.now_iso(), "shared_with": shared_with,
            },
            pk="company_id",
        )  # fmt: skip

    def links(self, company_ids: Iterable[str]) -> dict[str, CustomerLink]:
        return {
            r["company_id"]: _link(r)
            for r in _rows_where_in(self.conn, "customers", "company_id", company_ids)
        }

    def link(self, company_id: str) -> CustomerLink | None:
        return self.links([company_id]).get(company_id)

    def customer_intent(
        self, company_id: str, *, orgnr: str | None, name: str, payload: str, hash: str
    ) -> None:
        """Recorded before a customer POST: a crash after it leaves a pending row to reconcile."""
        now = self.now_iso()
        _upsert(
            self.conn,
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
        CUSTOMERS.drop_pending(self.conn, company_id)

    def forget_link(self, company_id: str) -> None:
        """The Fortnox customer behind a link is gone: the company is linked afresh."""
        self.conn.execute("DELETE FROM customers WHERE company_id = ?", [company_id])

    def pending_customers(self) -> list[CustomerLink]:
        return [_link(r) for r in CUSTOMERS.pending(self.conn)]

    def count_customers(self) -> int:
        # A shared link is a second company on a customer already counted.
        sql = "SELECT count(*) FROM customers WHERE state = 'done' AND shared_with IS NULL"
        return int(self.conn.execute(sql).fetchone()[0])

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
        for r in _rows_where_in(self.conn, "customers", "customer_number", customer_numbers):
            if r["state"] == "done" and not r.get("shared_with"):
                out.setdefault(r["customer_number"], (r["company_id"], r["name"] or ""))
        return out
