"""One in-memory fake per interface (vdirsyncer's way): `MemoryLimeGo` is a `Source`,
`MemoryFortnox` a `Sink` (limefort/core/services.py). No HTTP, no threads, no clock but the
one they are given: a test of the engine's logic can run on them in microseconds.

They keep the promises the contract suite checks (tests/contract/test_services.py), which
runs the same tests against them and against the sandbox servers over HTTP, so a fake that
drifts from the real behaviour fails there, not in a test that trusted it. They are seeded
with the sandbox's own seeding calls (`add_company`, `add_deal`, `win_deal`, ...), so one
test body seeds either.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from limefort.core.errors import ApiError, NotFound
from limefort.core.models import (
    Company,
    CustomFieldDef,
    Deal,
    DealPage,
    DocumentKind,
    Person,
    Stage,
)

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class Clock:
    """A clock that moves one second per answer, so every change has its own time."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def _pages(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _number(value: Any) -> bool:
    """A number, or a string Fortnox reads as one (`"1"`, `"1.00"`)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float | Decimal):
        return True
    try:
        Decimal(value)
    except (ArithmeticError, TypeError, ValueError):
        return False
    return True


class MemoryLimeGo:
    """Lime Go in memory: companies, deals, contacts, one owner, three stages."""

    STAGES = {
        "st-open": Stage("st-open", "Kvalificering", "open"),
        "st-won": Stage("st-won", "Vunnen", "won"),
        "st-lost": Stage("st-lost", "Förlorad", "lost"),
    }

    def __init__(self, *, page_size: int = 3, clock: Clock | None = None) -> None:
        self.page_size = page_size
        self.clock = clock or Clock()
        self._ids = itertools.count(1001)
        self.companies: dict[str, Company] = {}
        self.deals: dict[str, Deal] = {}
        self.contacts: dict[str, Person] = {}
        self.owner = Person("ow-1", "Anna", "Säljare", "anna@example.se")
        self.field_defs: dict[str, CustomFieldDef] = {}
        self._first: datetime | None = None
        self._last: datetime | None = None

    # --- seeding (the sandbox's calls) -------------------------------------------------------

    def _new_id(self) -> str:
        return str(next(self._ids))

    def add_company(self, **attributes: Any) -> str:
        id_ = self._new_id()
        attrs = {"status": "lead", "custom_fields": {}, **attributes}
        self.companies[id_] = Company(id_, attrs, self.clock.tick())
        return id_

    def update_company(self, id_: str, **attributes: Any) -> None:
        c = self.companies[id_]
        self.companies[id_] = Company(id_, {**c.attributes, **attributes}, self.clock.tick())

    def delete_company(self, id_: str) -> None:
        del self.companies[id_]

    def add_contact(self, company_id: str | None = None, **attributes: Any) -> str:
        id_ = self._new_id()
        self.contacts[id_] = Person(
            id_, attributes.get("first_name"), attributes.get("last_name"), attributes.get("email")
        )
        return id_

    def stage_id(self, stage: str) -> str:
        for s in self.STAGES.values():
            if stage in (s.id, s.name, s.category):
                return s.id
        raise KeyError(stage)

    def add_deal(
        self,
        company_id: str | None = None,
        stage: str = "open",
        contact_ids: tuple[str, ...] | list[str] = (),
        owner_ids: list[str] | None = None,
        **attributes: Any,
    ) -> str:
        if company_id is not None and company_id not in self.companies:
            raise KeyError(f"no company {company_id!r}")
        id_ = self._new_id()
        attrs = {"name": "Affär", "value": "0.00", "currency": "SEK", "custom_fields": {}}
        attrs.update(attributes)
        owners = tuple(owner_ids) if owner_ids is not None else (self.owner.id,)
        self.deals[id_] = Deal(
            id_,
            attrs,
            self.clock.tick(),
            company_id,
            self.stage_id(stage),
            tuple(contact_ids),
            owners,
        )
        return id_

    def win_deal(self, id_: str) -> None:
        d = self.deals[id_]
        self.deals[id_] = Deal(
            d.id,
            d.attributes,
            self.clock.tick(),
            d.company_id,
            "st-won",
            d.contact_ids,
            d.owner_ids,
        )

    # --- Source ----------------------------------------------------------------------------

    def _answer(self) -> None:
        now = self.clock.tick()
        self._first = self._first or now
        self._last = now

    @property
    def first_date(self) -> datetime | None:
        return self._first

    @property
    def last_date(self) -> datetime | None:
        return self._last

    def _listed(self, records: Mapping[str, Any], since: datetime | None, desc: bool) -> list[Any]:
        chosen = [r for r in records.values() if since is None or r.updated_at >= since]
        return sorted(chosen, key=lambda r: int(r.id), reverse=desc)

    def iter_companies(
        self,
        *,
        updated_since: datetime | None = None,
        status: str | None = None,
        descending: bool = False,
    ) -> Iterator[list[Company]]:
        listed = self._listed(self.companies, updated_since, descending)
        if status is not None:
            listed = [c for c in listed if c.status == status]
        for page in _pages(listed, self.page_size):
            self._answer()
            yield page

    def iter_deals(
        self, *, updated_since: datetime | None = None, descending: bool = False
    ) -> Iterator[DealPage]:
        for page in _pages(self._listed(self.deals, updated_since, descending), self.page_size):
            self._answer()
            ids = {d.company_id for d in page if d.company_id in self.companies}
            yield DealPage(page, {i: self.companies[i] for i in ids if i is not None})

    def get_company(self, id: str) -> Company | None:
        self._answer()
        return self.companies.get(id)

    def get_deal(self, id: str) -> tuple[Deal, Company | None] | None:
        self._answer()
        deal = self.deals.get(id)
        if deal is None:
            return None
        return deal, self.companies.get(deal.company_id or "")

    def stages(self) -> dict[str, Stage]:
        self._answer()
        return dict(self.STAGES)

    def owners(self) -> dict[str, Person]:
        self._answer()
        return {self.owner.id: self.owner}

    def deal_field_defs(self) -> dict[str, CustomFieldDef]:
        self._answer()
        return dict(self.field_defs)

    def contact(self, id: str) -> Person | None:
        self._answer()
        return self.contacts.get(id)


# The fields a Fortnox list item carries (the list is a summary of the record).
CUSTOMER_ITEM = ("CustomerNumber", "Name", "OrganisationNumber", "Email", "Phone", "City")
DOCUMENT_ITEM = (
    "DocumentNumber", "CustomerNumber", "CustomerName", "ExternalInvoiceReference1",
    "ExternalInvoiceReference2", "Cancelled", "Booked", "Sent", "Total", "Currency",
)  # fmt: skip


class MemoryFortnox:
    """Fortnox in memory: customers, invoices and orders, numbered as Fortnox numbers them."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.customers: dict[str, dict[str, Any]] = {}
        self.documents: dict[str, dict[str, dict[str, Any]]] = {"invoice": {}, "order": {}}
        self._numbers = {"customer": itertools.count(1), "invoice": itertools.count(1)}
        self._numbers["order"] = itertools.count(1)
        self._changed: dict[tuple[str, str], datetime] = {}
        self.token_renewals = 0
        self._here: datetime | None = None

    def _answer(self) -> datetime:
        self._here = self.clock.tick()
        return self._here

    def _refuse(self, message: str, code: int, status: int = 400) -> ApiError:
        return ApiError("Fortnox", message, status=status, code=code)

    # --- Sink -------------------------------------------------------------------------------

    def fresh_token(self) -> None:
        self.token_renewals += 1

    @property
    def round_trip(self) -> float:
        return 0.0

    def date_here(self) -> datetime | None:
        return self._here

    def server_now(self) -> datetime | None:
        return self._here

    def iter_customers(
        self,
        *,
        lastmodified: datetime | None = None,
        limit: int = 500,
        filter: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        self._answer()
        items = [
            {k: c.get(k) for k in CUSTOMER_ITEM}
            for n, c in self.customers.items()
            if (filter is None or c["Active"] == (filter == "active"))
            and (lastmodified is None or self._changed[("customer", n)] >= lastmodified)
        ]
        yield from _pages(items, limit)

    def find_customers(self, **filters: str) -> list[dict[str, Any]]:
        """Fortnox's filters match as substrings, case-insensitively, on the named field."""
        self._answer()

        def matches(c: dict[str, Any]) -> bool:
            fields = {k.lower(): v for k, v in c.items()}
            return all(
                str(v).lower() in str(fields.get(k.lower()) or "").lower()
                for k, v in filters.items()
            )

        return [{k: c.get(k) for k in CUSTOMER_ITEM} for c in self.customers.values() if matches(c)]

    def get_customer(self, number: str) -> dict[str, Any] | None:
        self._answer()
        found = self.customers.get(str(number))
        return dict(found) if found is not None else None

    def create_customer(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        now = self._answer()
        if not str(payload.get("Name") or "").strip():
            raise self._refuse("Kunden måste ha ett namn.", 2000310)
        number = str(payload.get("CustomerNumber") or next(self._numbers["customer"]))
        if number in self.customers:
            raise self._refuse("Kundnumret är upptaget.", 2000637)
        self.customers[number] = {"Active": True, **payload, "CustomerNumber": number}
        self._changed[("customer", number)] = now
        return dict(self.customers[number])

    def update_customer(self, number: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        now = self._answer()
        if number not in self.customers:
            raise NotFound("Fortnox", "Kunden hittades inte.", status=404, code=2000433)
        self.customers[number].update(fields)
        self._changed[("customer", number)] = now
        return dict(self.customers[number])

    def create_document(self, kind: DocumentKind, payload: Mapping[str, Any]) -> dict[str, Any]:
        now = self._answer()
        customer = self.customers.get(str(payload.get("CustomerNumber") or ""))
        if customer is None:
            raise self._refuse("Kunden hittades inte.", 2000433)
        rows = payload.get("InvoiceRows" if kind == "invoice" else "OrderRows") or []
        for row in rows:  # a price is a number; a quantity a number or a string of one
            price, quantity = row.get("Price", 0), row.get("DeliveredQuantity", 1)
            if not isinstance(price, int | float | Decimal) or not _number(quantity):
                raise self._refuse(f"Värdet måste vara numeriskt ({row!r})", 2000108)
        total = sum(
            (
                Decimal(str(r.get("Price", 0))) * Decimal(str(r.get("DeliveredQuantity", 1)))
                for r in rows
            ),
            Decimal(0),
        )
        number = str(next(self._numbers[kind]))
        doc = {
            "Cancelled": False, "Booked": False, "Sent": False, "Currency": "SEK",
            **payload, "DocumentNumber": number, "CustomerName": customer.get("Name"),
            "Total": float(total),
        }  # fmt: skip
        self.documents[kind][number] = doc
        self._changed[(kind, number)] = now
        return dict(doc)

    def iter_documents(
        self,
        kind: DocumentKind,
        *,
        lastmodified: datetime | None = None,
        limit: int = 500,
        fromdate: date | None = None,
        on_pages: Callable[[int], None] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        self._answer()
        date_field = "InvoiceDate" if kind == "invoice" else "OrderDate"
        items = [
            {k: d.get(k) for k in DOCUMENT_ITEM}
            for n, d in self.documents[kind].items()
            if (lastmodified is None or self._changed[(kind, n)] >= lastmodified)
            and (fromdate is None or str(d.get(date_field) or "9999") >= fromdate.isoformat())
        ]
        pages = list(_pages(items, limit))
        if on_pages is not None:
            on_pages(len(pages))
        yield from pages

    def find_documents(self, kind: DocumentKind, external_ref: str) -> list[dict[str, Any]]:
        self._answer()
        return [
            {k: d.get(k) for k in DOCUMENT_ITEM}
            for d in self.documents[kind].values()
            if d.get("ExternalInvoiceReference1") == external_ref
        ]

    def get_document(self, kind: DocumentKind, number: str) -> dict[str, Any] | None:
        self._answer()
        found = self.documents[kind].get(str(number))
        return dict(found) if found is not None else None

    def update_document(
        self, kind: DocumentKind, number: str, fields: Mapping[str, Any]
    ) -> dict[str, Any]:
        now = self._answer()
        doc = self.documents[kind].get(str(number))
        if doc is None:
            raise NotFound("Fortnox", "Dokumentet hittades inte.", status=404, code=2000434)
        if doc.get("Booked") or doc.get("Cancelled"):
            raise self._refuse(
                "Dokumentet är bokfört eller makulerat och kan inte ändras.", 2000461
            )
        doc.update(fields)
        self._changed[(kind, number)] = now
        return dict(doc)

    # --- what a bookkeeper does in Fortnox -------------------------------------------------

    def book_invoice(self, number: str) -> None:
        self.documents["invoice"][number]["Booked"] = True
        self._changed[("invoice", number)] = self.clock.tick()

    def set_active(self, number: str, active: bool) -> None:
        self.customers[number]["Active"] = active
        self._changed[("customer", number)] = self.clock.tick()
