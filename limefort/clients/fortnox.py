"""Fortnox client (REST API v3) and its token providers.

What matters most here: a refresh token is single-use, so a rotated one is saved durably
before its access token is used; documents have no idempotency key, so a lost answer to a
POST surfaces as `UnknownOutcome` (from http.py) and `find_documents` lets the sync look for
the document by its `ExternalInvoiceReference1` before it ever posts again.

Its tokens are `fortnox_tokens`'s, what its refusals mean `fortnox_errors`'s."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import requests

from limefort.clients.fortnox_errors import BAD_ACCESS_TOKEN, SERVICE, fortnox_error
from limefort.clients.fortnox_tokens import RefreshTokenTokens, ServiceAccountTokens
from limefort.clients.http import MAX_PAGES, HttpClient, capped_pages
from limefort.clients.limiter import SlidingWindowLimiter
from limefort.clients.retries import RetrySettings
from limefort.config import FortnoxConfig, HttpConfig
from limefort.core.errors import (
    ApiError,
    NotFound,
    TransientError,
    UnknownOutcome,
)
from limefort.core.explain import int_code
from limefort.core.models import DocumentKind

MAX_LIMIT = 500
STOCKHOLM = ZoneInfo("Europe/Stockholm")
JSON_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}

# kind -> (path, wrapper of one, wrapper of a list)
DOCUMENTS: dict[str, tuple[str, str, str]] = {
    "invoice": ("invoices", "Invoice", "Invoices"),
    "order": ("orders", "Order", "Orders"),
}


# ---------------------------------------------------------------------------------------------
# The API client
# ---------------------------------------------------------------------------------------------


def format_lastmodified(dt: datetime) -> str:
    """Fortnox's `lastmodified` is Swedish local time to the minute; truncating moves the
    filter earlier, which only re-reads a record."""
    if dt.tzinfo is None:
        raise ValueError(f"lastmodified must be timezone-aware, got {dt!r}")
    return dt.astimezone(STOCKHOLM).strftime("%Y-%m-%d %H:%M")


class FortnoxClient:
    def __init__(
        self,
        cfg: FortnoxConfig,
        tokens: ServiceAccountTokens | RefreshTokenTokens,
        *,
        http: HttpConfig = HttpConfig(),  # noqa: B008 (frozen)
        session: requests.Session | None = None,
        limiter: SlidingWindowLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cfg = cfg
        self.tokens = tokens
        self.limiter = (
            limiter
            if limiter is not None
            else SlidingWindowLimiter(cfg.rate_limit, cfg.rate_window)
        )
        self.http = HttpClient(
            f"{cfg.api_url.rstrip('/')}/3",
            SERVICE,
            session=session,
            settings=RetrySettings.from_config(http, sleep=sleep),
            limiter=self.limiter,
            auth=tokens,
            auth_hint=BAD_ACCESS_TOKEN,
            config_key="fortnox.api_url",
        )
        self.max_pages = MAX_PAGES  # pages one listing may follow (see `_pages`)

    @property
    def stats(self) -> dict[str, Any]:
        """API requests (the token endpoint's are under `token_requests`)."""
        out = self.http.stats
        out["token_requests"] = self.tokens.stats["requests"]
        return out

    def fresh_token(self) -> None:
        """Renew the access token now if it is due, on this thread: renewing writes the token
        cache (the state file), which only the pass's own thread may do."""
        self.tokens.access_token()

    @property
    def round_trip(self) -> float:
        return self.http.round_trip

    # --- Fortnox's clock (DESIGN rule 13) ---------------------------------------------------

    def date_here(self) -> datetime | None:
        """Fortnox's `Date` of the latest answer on this thread (a read just made)."""
        return self.http.date_here()

    def server_now(self) -> datetime | None:
        """Now on Fortnox's clock, from its `Date` headers (None before any answer)."""
        return self.http.server_now()

    # --- plumbing ---------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        resp = self.http.request(method, path, params=params, json=json, headers=JSON_HEADERS)
        if resp.status_code >= 300:
            raise fortnox_error(resp)
        return self.http.json(resp)

    @staticmethod
    def _unwrap(body: Any, key: str, *, method: str, path: str) -> dict[str, Any]:
        item = body.get(key) if isinstance(body, Mapping) else None
        if isinstance(item, dict):
            return item
        msg = f"{method} {path}: the answer has no {key!r}"
        if method == "POST":
            # Created or not, we cannot tell without the number: reconcile, never re-post.
            raise UnknownOutcome(SERVICE, msg)
        raise TransientError(SERVICE, msg)

    def _pages(
        self,
        path: str,
        list_key: str,
        params: Mapping[str, Any],
        limit: int = MAX_LIMIT,
        on_pages: Callable[[int], None] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of a listing, at most `max_pages` of them (a server that keeps answering
        full pages would otherwise keep a pass going for ever)."""
        pages = self._pages_unbounded(path, list_key, params, limit, on_pages)
        yield from capped_pages(pages, SERVICE, path, limit=self.max_pages)

    def _pages_unbounded(
        self,
        path: str,
        list_key: str,
        params: Mapping[str, Any],
        limit: int = MAX_LIMIT,
        on_pages: Callable[[int], None] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """`on_pages`: told the number of pages once the first one says it (a progress bar)."""
        page = 1
        while True:
            body = self._call(
                "GET", path, params={**params, "limit": max(1, min(limit, MAX_LIMIT)), "page": page}
            )
            items = body.get(list_key) if isinstance(body, Mapping) else None
            items = [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
            meta = body.get("MetaInformation") if isinstance(body, Mapping) else None
            total = int_code(meta.get("@TotalPages")) if isinstance(meta, Mapping) else None
            if page == 1 and on_pages is not None and total is not None:
                on_pages(total)
            if items:
                yield items
            # Without MetaInformation, a full page means there may be another.
            last = (
                page >= total if total is not None else len(items) < max(1, min(limit, MAX_LIMIT))
            )
            if not items or last:
                return
            page += 1

    # --- customers --------------------------------------------------------------------------

    def iter_customers(
        self,
        *,
        lastmodified: datetime | None = None,
        limit: int = MAX_LIMIT,
        filter: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of customer list items (not every field: the list has a summary).
        `filter`: "active" or "inactive" (list items carry no Active flag of their own)."""
        params: dict[str, Any] = {}
        if lastmodified is not None:
            params["lastmodified"] = format_lastmodified(lastmodified)
        if filter is not None:
            params["filter"] = filter
        yield from self._pages("/customers", "Customers", params, limit)

    def find_customers(self, **filters: str) -> list[dict[str, Any]]:
        """All customers matching the filters. Fortnox matches text as a substring: compare
        the returned values exactly before trusting one."""
        return [c for page in self._pages("/customers", "Customers", filters) for c in page]

    def get_customer(self, number: str) -> dict[str, Any] | None:
        path = f"/customers/{quote(str(number), safe='')}"
        try:
            body = self._call("GET", path)
        except ApiError as exc:
            if exc.status == 404 or exc.code == 2000433:
                return None
            raise
        return self._unwrap(body, "Customer", method="GET", path=path)

    def create_customer(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        body = self._call("POST", "/customers", json={"Customer": dict(payload)})
        return self._unwrap(body, "Customer", method="POST", path="/customers")

    def update_customer(self, number: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        # PUT changes only the fields sent, so sending the same fields twice is harmless.
        path = f"/customers/{quote(str(number), safe='')}"
        body = self._call("PUT", path, json={"Customer": dict(fields)})
        return self._unwrap(body, "Customer", method="PUT", path=path)

    # --- invoices and orders ----------------------------------------------------------------

    def create_document(self, kind: DocumentKind, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Not idempotent: Fortnox will create the same invoice twice. A lost answer raises
        UnknownOutcome; the caller must reconcile with `find_documents` before posting again."""
        path, one, _ = DOCUMENTS[kind]
        body = self._call("POST", f"/{path}", json={one: dict(payload)})
        return self._unwrap(body, one, method="POST", path=f"/{path}")

    def iter_documents(
        self,
        kind: DocumentKind,
        *,
        lastmodified: datetime | None = None,
        limit: int = MAX_LIMIT,
        fromdate: date | None = None,
        on_pages: Callable[[int], None] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of invoice or order list items: each carries ExternalInvoiceReference1,
        DocumentNumber, CustomerNumber, Cancelled, Booked (invoices), Sent and Total.
        `fromdate`: only documents dated (InvoiceDate, OrderDate) on or after it."""
        path, _, many = DOCUMENTS[kind]
        params: dict[str, Any] = {}
        if lastmodified is not None:
            params["lastmodified"] = format_lastmodified(lastmodified)
        if fromdate is not None:
            params["fromdate"] = fromdate.isoformat()
        yield from self._pages(f"/{path}", many, params, limit, on_pages)

    def find_documents(self, kind: DocumentKind, external_ref: str) -> list[dict[str, Any]]:
        """Documents whose ExternalInvoiceReference1 is exactly `external_ref` (Fortnox's search
        is a substring match: `limego:deal:1` also finds `limego:deal:12`)."""
        path, _, many = DOCUMENTS[kind]
        found: list[dict[str, Any]] = []
        for page in self._pages(f"/{path}", many, {"externalinvoicereference1": external_ref}):
            for item in page:
                if "ExternalInvoiceReference1" not in item and item.get("DocumentNumber"):
                    # A list item without the field cannot be compared: read the document.
                    item = self.get_document(kind, str(item["DocumentNumber"])) or {}
                if item.get("ExternalInvoiceReference1") == external_ref:
                    found.append(item)
        return found

    def get_document(self, kind: DocumentKind, number: str) -> dict[str, Any] | None:
        path, one, _ = DOCUMENTS[kind]
        url = f"/{path}/{quote(str(number), safe='')}"
        try:
            body = self._call("GET", url)
        except NotFound:
            return None
        return self._unwrap(body, one, method="GET", path=url)

    def update_document(
        self, kind: DocumentKind, number: str, fields: Mapping[str, Any]
    ) -> dict[str, Any]:
        """PUT changes only the fields sent (rows, when sent, replace the document's rows);
        Fortnox refuses it for a booked or cancelled document. Sending the same fields twice
        is harmless."""
        path, one, _ = DOCUMENTS[kind]
        url = f"/{path}/{quote(str(number), safe='')}"
        body = self._call("PUT", url, json={one: dict(fields)})
        return self._unwrap(body, one, method="PUT", path=url)

    # --- the company ------------------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """A plain GET under /3 and its parsed body (`limefort check` probes scopes and
        licences with it); an error answer raises ApiError / NotFound in plain words."""
        return self._call("GET", path, params=params)

    def company_information(self) -> dict[str, Any]:
        body = self._call("GET", "/companyinformation")
        return self._unwrap(body, "CompanyInformation", method="GET", path="/companyinformation")
