"""The two services as the engine sees them: `Source` (Lime Go, read only) and `Sink` (Fortnox,
read and written). The engine is typed against these, not against the HTTP clients, so a pass
runs the same against `clients.limego`/`clients.fortnox`, the sandbox servers behind them, or
the in-memory fakes in `tests/memory.py`. `tests/contract/test_services.py` is the one contract
suite every implementation passes (the fakes, the sandbox over HTTP, and the live services
read-only when credentials are in the environment).

What each method promises is written here once; the clients' docstrings say how they keep it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from typing import Any, Protocol

from limefort.core.models import (
    Company,
    CustomFieldDef,
    Deal,
    DealPage,
    DocumentKind,
    Person,
    Stage,
)


class Source(Protocol):
    """Lime Go: companies, deals and what a deal's mapping needs, never written."""

    @property
    def first_date(self) -> datetime | None:
        """Lime Go's clock (its `Date`) at its first answer in this pass (rule 10)."""
        ...

    @property
    def last_date(self) -> datetime | None:
        """Lime Go's clock at its latest answer."""
        ...

    def iter_companies(
        self,
        *,
        updated_since: datetime | None = None,
        status: str | None = None,
        descending: bool = False,
    ) -> Iterator[list[Company]]:
        """Pages of companies by id (ascending unless `descending`); with `updated_since`,
        only those changed at or after it; with `status`, only those of that status."""
        ...

    def iter_deals(
        self, *, updated_since: datetime | None = None, descending: bool = False
    ) -> Iterator[DealPage]:
        """Pages of deals by id, each with the companies its deals belong to."""
        ...

    def get_company(self, id: str) -> Company | None:
        """One company; None when there is no such company (deleted, or never was)."""
        ...

    def get_deal(self, id: str) -> tuple[Deal, Company | None] | None:
        """One deal with its company; None when there is no such deal."""
        ...

    def stages(self) -> dict[str, Stage]:
        """Every deal stage by id (a won stage has category "won")."""
        ...

    def owners(self) -> dict[str, Person]:
        """Every user who can own a deal, by id (Vår referens)."""
        ...

    def deal_field_defs(self) -> dict[str, CustomFieldDef]:
        """The deals' custom fields by key, with their labels."""
        ...

    def contact(self, id: str) -> Person | None:
        """One contact (Er referens); None when there is no such contact."""
        ...


class Sink(Protocol):
    """Fortnox: customers and documents read, created and updated. No call is repeated blind:
    a write whose answer was lost raises `UnknownOutcome` (the engine reconciles it)."""

    def fresh_token(self) -> None:
        """Renew the access token now if it is due, on the caller's thread (the token cache is
        the state file, written on the pass's own thread only)."""
        ...

    @property
    def round_trip(self) -> float:
        """A recent round trip in seconds (0.0 before any answer): how many writes to keep in
        flight."""
        ...

    def date_here(self) -> datetime | None:
        """Fortnox's `Date` of the latest answer on this thread (rule 13)."""
        ...

    def server_now(self) -> datetime | None:
        """Now on Fortnox's clock (None before any answer)."""
        ...

    def iter_customers(
        self,
        *,
        lastmodified: datetime | None = None,
        limit: int = 500,
        filter: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of customer list items; `filter` "active" or "inactive"."""
        ...

    def find_customers(self, **filters: str) -> list[dict[str, Any]]:
        """Customers whose fields contain the filters' values (compare exactly after)."""
        ...

    def get_customer(self, number: str) -> dict[str, Any] | None:
        """One customer, every field; None when there is no such customer."""
        ...

    def create_customer(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The customer as created, with its `CustomerNumber`."""
        ...

    def update_customer(self, number: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Changes only the fields sent; returns the customer as it is now."""
        ...

    def create_document(self, kind: DocumentKind, payload: Mapping[str, Any]) -> dict[str, Any]:
        """An invoice or order as created, with its `DocumentNumber`."""
        ...

    def iter_documents(
        self,
        kind: DocumentKind,
        *,
        lastmodified: datetime | None = None,
        limit: int = 500,
        fromdate: date | None = None,
        on_pages: Callable[[int], None] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of document list items (ExternalInvoiceReference1, DocumentNumber, ...)."""
        ...

    def find_documents(self, kind: DocumentKind, external_ref: str) -> list[dict[str, Any]]:
        """Documents whose ExternalInvoiceReference1 is exactly `external_ref`."""
        ...

    def get_document(self, kind: DocumentKind, number: str) -> dict[str, Any] | None:
        """One document with its rows; None when there is no such document."""
        ...

    def update_document(
        self, kind: DocumentKind, number: str, fields: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Changes only the fields sent (rows sent replace the rows); refused when booked or
        cancelled."""
        ...
