"""Fortnox client (REST API v3) and its token providers.

What matters most here: a refresh token is single-use, so a rotated one is saved durably
before its access token is used; documents have no idempotency key, so a lost answer to a
POST surfaces as `UnknownOutcome` (from http.py) and `find_documents` lets the sync look for
the document by its `ExternalInvoiceReference1` before it ever posts again.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

import requests

from limefort.clients.http import MAX_PAGES, HttpClient, capped_pages
from limefort.clients.limiter import SlidingWindowLimiter
from limefort.clients.redaction import REDACTOR
from limefort.clients.retries import RetrySettings
from limefort.clients.tokens import TokenCache, record_from_answer
from limefort.config import FortnoxConfig, HttpConfig
from limefort.core.errors import (
    ApiError,
    AuthError,
    NotFound,
    TransientError,
    UnknownOutcome,
)
from limefort.core.explain import explain, int_code
from limefort.core.models import DocumentKind, TokenRecord

__all__ = [
    "FortnoxClient",
    "RefreshTokenTokens",
    "ServiceAccountTokens",
    "TokenCache",
    "consent_url",
    "exchange_code",
    "explain",
    "tenant_from_token",
]

log = logging.getLogger("limefort.fortnox")

SERVICE = "Fortnox"
TOKEN_NAME = "fortnox"
TOKEN_LIFETIME = 3600.0
TOKEN_MARGIN = 60.0
MAX_LIMIT = 500
STOCKHOLM = ZoneInfo("Europe/Stockholm")
JSON_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}

# kind -> (path, wrapper of one, wrapper of a list)
DOCUMENTS: dict[str, tuple[str, str, str]] = {
    "invoice": ("invoices", "Invoice", "Invoices"),
    "order": ("orders", "Order", "Orders"),
}
# First path segment -> the OAuth scope (and licensed module) it needs.
SCOPE_OF_PATH = {
    "customers": "customer",
    "invoices": "invoice",
    "orders": "order",
    "companyinformation": "companyinformation",
}

BAD_ACCESS_TOKEN = (
    "Fortnox rejected the access token: run `limefort check`; with a refresh token, run "
    "`limefort auth fortnox` again"
)
SPENT_REFRESH_TOKEN = (
    "Fortnox rejected the refresh token (spent or expired): run `limefort auth fortnox` again"
)
NO_REFRESH_TOKEN = (
    "no Fortnox refresh token is stored: run `limefort auth fortnox` (or set [fortnox] "
    "tenant_id to use a service account)"
)
BAD_CLIENT = "Fortnox rejected the client id/secret: check [fortnox] client_id and client_secret"
BAD_SERVICE_ACCOUNT = (
    "Fortnox refused a service-account token: check [fortnox] client_id, client_secret and "
    "tenant_id, and that an administrator consented with account_type=service "
    "(`limefort auth fortnox --service-account`)"
)
BAD_CODE = (
    "Fortnox rejected the authorization code (it lives 10 minutes and works once): run "
    "`limefort auth fortnox` again"
)


def _scope_of(url: str) -> str | None:
    parts = [p for p in urlsplit(url).path.split("/") if p]
    if "3" in parts:
        after = parts[parts.index("3") + 1 :]
        if after:
            return SCOPE_OF_PATH.get(after[0].lower())
    return None


def fortnox_error(resp: requests.Response) -> ApiError:
    """`{"ErrorInformation": {...}}` with either capitalisation, or a non-JSON body."""
    status = resp.status_code
    body = HttpClient.json_or_none(resp)
    info: Mapping[str, Any] = {}
    if isinstance(body, Mapping):
        raw = next((v for k, v in body.items() if k.lower() == "errorinformation"), None)
        if isinstance(raw, Mapping):
            info = {str(k).lower(): v for k, v in raw.items()}
    code = int_code(info.get("code"))
    message = info.get("message")
    if message is None:
        text = (resp.text or "").strip()
        # A proxy's HTML page says nothing useful past its first line.
        message = text.splitlines()[0][:200] if text and not text.startswith("<") else ""
        message = message or f"HTTP {status} {resp.reason or ''}".strip()
    text = explain(code, str(message), scope=_scope_of(resp.url or ""))
    cls = NotFound if status == 404 else ApiError
    return cls(SERVICE, text, status=status, code=code)


# ---------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------


def tenant_from_token(access_token: str) -> str | None:
    """The `tenantId` claim of a Fortnox JWT. No signature check: this only labels things."""
    try:
        payload = access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        return None  # not a JWT we can read (deeply nested JSON included): no label
    tenant = claims.get("tenantId") if isinstance(claims, dict) else None
    return str(tenant) if tenant not in (None, "") else None


def _basic(cfg: FortnoxConfig) -> str:
    raw = f"{cfg.client_id}:{cfg.client_secret}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _token_http(
    cfg: FortnoxConfig,
    http: HttpConfig,
    session: requests.Session | None,
    sleep: Callable[[float], None],
) -> HttpClient:
    REDACTOR.add(cfg.client_secret)
    REDACTOR.add(cfg.refresh_token)
    # The token endpoint is not part of the API's rate-limited window: no limiter.
    return HttpClient(
        cfg.token_url,
        SERVICE,
        session=session,
        settings=RetrySettings.from_config(http, sleep=sleep),
        config_key="fortnox.token_url",
    )


def _post_token(
    client: HttpClient,
    cfg: FortnoxConfig,
    form: dict[str, str],
    headers: Mapping[str, str] | None = None,
) -> tuple[requests.Response, Any]:
    # Repeating a token request whose answer was lost is the only hope of getting one: for a
    # refresh it either works (the server never saw the first) or says invalid_grant, which is
    # where giving up would have left us anyway.
    resp = client.request(
        "POST",
        "",
        data=form,
        headers={"Authorization": _basic(cfg), "Accept": "application/json", **(headers or {})},
        idempotent=True,
        authenticate=False,
    )
    body = HttpClient.json_or_none(resp) if resp.status_code >= 400 else client.json(resp)
    return resp, body


def _oauth_error(body: Any) -> str | None:
    return str(body.get("error")) if isinstance(body, Mapping) and body.get("error") else None


def _record_from(
    body: Any, now: float, *, previous: TokenRecord | None = None, tenant_id: str | None = None
) -> TokenRecord:
    access = body.get("access_token") if isinstance(body, Mapping) else None
    return record_from_answer(
        SERVICE,
        body,
        now,
        default_lifetime=TOKEN_LIFETIME,
        previous=previous,
        tenant_id=tenant_id or (tenant_from_token(access) if isinstance(access, str) else None),
    )


class _Tokens:
    """Shared caching: memory first, then the TokenCache; `force_refresh` after an API 401
    fetches anew unless someone else already replaced the rejected token."""

    def __init__(
        self,
        cfg: FortnoxConfig,
        cache: TokenCache | None,
        *,
        http: HttpConfig,
        session: requests.Session | None,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        self.cfg = cfg
        self.cache = cache
        self.http = _token_http(cfg, http, session, sleep)
        self._clock = clock
        self._record: TokenRecord | None = None
        self._last_given: str | None = None
        self._lock = threading.Lock()

    def _valid(self, record: TokenRecord | None) -> bool:
        return record is not None and record.fresh(self._clock(), TOKEN_MARGIN)

    def _usable(self, record: TokenRecord | None) -> bool:
        return self._valid(record)

    def _load(self) -> TokenRecord | None:
        record = self.cache.load(TOKEN_NAME) if self.cache is not None else None
        if record is not None:
            REDACTOR.add(record.access_token)
            REDACTOR.add(record.refresh_token)
        return record

    def access_token(self, force_refresh: bool = False) -> str:
        with self._lock:
            record = self._record
            if force_refresh or not self._usable(record):
                # The store is the source of truth: another run may have rotated the tokens.
                record = self._load() or record
            # After a 401, only exactly the token Fortnox just refused is known to be bad.
            refused = (
                force_refresh and record is not None and record.access_token == self._last_given
            )
            if record is None or refused or not self._usable(record):
                record = self._obtain(record)
            self._record = record
            assert record.access_token
            self._last_given = record.access_token
            return record.access_token

    def __call__(self, force_refresh: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token(force_refresh)}"}

    @property
    def stats(self) -> dict[str, Any]:
        return self.http.stats

    def _obtain(self, previous: TokenRecord | None) -> TokenRecord:
        raise NotImplementedError


class ServiceAccountTokens(_Tokens):
    """Client credentials with a `TenantId` header: one access token an hour, no refresh token
    to lose. Cached through the TokenCache as "fortnox" until 60 s before it expires."""

    def __init__(
        self,
        cfg: FortnoxConfig,
        cache: TokenCache | None = None,
        *,
        http: HttpConfig = HttpConfig(),  # noqa: B008 (frozen)
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not cfg.tenant_id:
            raise AuthError("a Fortnox service account needs [fortnox] tenant_id")
        super().__init__(cfg, cache, http=http, session=session, sleep=sleep, clock=clock)

    def _usable(self, record: TokenRecord | None) -> bool:
        # A token cached for another tenant (the config changed) must not be used.
        return self._valid(record) and record is not None and record.tenant_id == self.cfg.tenant_id

    def _obtain(self, previous: TokenRecord | None) -> TokenRecord:
        assert self.cfg.tenant_id
        now = self._clock()
        resp, body = _post_token(
            self.http,
            self.cfg,
            {"grant_type": "client_credentials"},
            {"TenantId": self.cfg.tenant_id},
        )
        if resp.status_code >= 400:
            if resp.status_code in (400, 401, 403):
                raise AuthError(BAD_SERVICE_ACCOUNT)
            raise fortnox_error(resp)
        # Labelled with the configured tenant: that is what `_usable` compares against.
        record = _record_from(body, now, tenant_id=self.cfg.tenant_id)
        if self.cache is not None:
            self.cache.save(TOKEN_NAME, record)
        log.info("Fortnox: new service-account access token")
        return record


class RefreshTokenTokens(_Tokens):
    """Authorization-code tokens with single-use refresh tokens.

    The rotated refresh token is saved through the TokenCache (durably) before the new access
    token is handed out: a crash after the refresh but before the save would otherwise leave
    only a spent token behind and force the user to consent again.
    """

    def __init__(
        self,
        cfg: FortnoxConfig,
        cache: TokenCache,
        *,
        http: HttpConfig = HttpConfig(),  # noqa: B008 (frozen)
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(cfg, cache, http=http, session=session, sleep=sleep, clock=clock)

    def _obtain(self, previous: TokenRecord | None) -> TokenRecord:
        # The store's token wins over the config's: the config's one was imported once and
        # has been spent by the first refresh.
        refresh = (previous.refresh_token if previous else None) or self.cfg.refresh_token
        if not refresh:
            raise AuthError(NO_REFRESH_TOKEN)
        REDACTOR.add(refresh)
        now = self._clock()
        resp, body = _post_token(
            self.http, self.cfg, {"grant_type": "refresh_token", "refresh_token": refresh}
        )
        if resp.status_code >= 400:
            error = _oauth_error(body)
            if error == "invalid_client":
                raise AuthError(BAD_CLIENT)
            if error == "invalid_grant" or resp.status_code == 401:
                raise AuthError(SPENT_REFRESH_TOKEN)
            if resp.status_code in (400, 403):
                raise AuthError(
                    f"{SPENT_REFRESH_TOKEN} (Fortnox said: {error or resp.status_code})"
                )
            raise fortnox_error(resp)
        record = _record_from(body, now, previous=previous or TokenRecord(refresh_token=refresh))
        assert self.cache is not None
        self.cache.save(TOKEN_NAME, record)  # durable before the access token is used
        log.info("Fortnox: refreshed the access token and stored the new refresh token")
        return record


def exchange_code(
    cfg: FortnoxConfig,
    code: str,
    redirect_uri: str,
    *,
    session: requests.Session | None = None,
    http: HttpConfig = HttpConfig(),  # noqa: B008 (frozen)
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> TokenRecord:
    """The authorization-code grant for `limefort auth fortnox`; the caller stores the result."""
    REDACTOR.add(code)
    client = _token_http(cfg, http, session, sleep)
    now = clock()
    resp, body = _post_token(
        client,
        cfg,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
    )
    if resp.status_code >= 400:
        error = _oauth_error(body)
        if error == "invalid_client":
            raise AuthError(BAD_CLIENT)
        if resp.status_code in (400, 401, 403):
            raise AuthError(BAD_CODE + (f" (Fortnox said: {error})" if error else ""))
        raise fortnox_error(resp)
    return _record_from(body, now)


def consent_url(
    cfg: FortnoxConfig,
    state: str,
    *,
    service_account: bool = False,
    redirect_uri: str | None = None,
) -> str:
    params = {
        "client_id": cfg.client_id,
        "response_type": "code",
        "state": state,
        "scope": " ".join(cfg.scopes),
        "redirect_uri": redirect_uri or cfg.redirect_uri,
        "access_type": "offline",
    }
    if service_account:
        params["account_type"] = "service"
    # %20, not +, between scopes: the space-separated list must survive any decoder.
    return f"{cfg.auth_url}?{urlencode(params, quote_via=quote)}"


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
