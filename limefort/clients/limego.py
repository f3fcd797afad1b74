"""Lime Go client (public CRM API v1, JSON:API). Read-only.

Every assumption limefort makes about Lime Go lives in this file (see docs/api/limego.md), so a
difference found against the live service is a one-file change: paths, parameter names,
attribute and relationship names, token lifetime, error shapes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urljoin

import requests

from limefort.clients.http import MAX_PAGES, HttpClient, capped_pages
from limefort.clients.redaction import REDACTOR
from limefort.clients.retries import RetrySettings
from limefort.clients.tokens import TokenCache, record_from_answer
from limefort.config import HttpConfig, LimeGoConfig
from limefort.core.errors import ApiError, AuthError, NotFound, TransientError
from limefort.core.models import (
    Company,
    CustomFieldDef,
    Deal,
    DealPage,
    Person,
    Stage,
    TokenRecord,
)

log = logging.getLogger("limefort.limego")

SERVICE = "Lime Go"
API = "/api/v1"
TOKEN_PATH = "/oauth/token"
TOKEN_NAME = "limego"
TOKEN_LIFETIME = 1800.0  # seconds, when the answer leaves out expires_in
TOKEN_MARGIN = 60.0  # fetch a new token this long before the old one expires
# JSON:API media type: Lime Go documents a 406 for any other Accept on an API call.
JSONAPI = "application/vnd.api+json"
API_HEADERS = {"Accept": JSONAPI}
# A custom-field definition's `entity_type` is a resource type ("deals"); the singular form
# is accepted too, in case an instance answers that way.
DEAL_ENTITY_TYPES = frozenset({"deals", "deal"})
COMPANY_ENTITY_TYPES = frozenset({"companies", "company"})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# No sparse fieldsets (fields[companies], fields[deals]) by default: the mapping is
# user-overridable and may name any attribute (or a custom field), and a sparse fieldset would
# silently turn such an attribute into "missing". A page of 100 is small, so the bandwidth saved
# is not worth that trap; for deals a fieldset would also have to list every relationship by
# name or drop it.

BAD_CLIENT = "Lime Go rejected the client id/secret: check [limego] client_id and client_secret"
BAD_SCOPE = (
    "Lime Go refused the requested scope: check [limego] scope and the scopes granted to the "
    "API client in Lime Go (limefort needs companies:read deals:read contacts:read "
    "reference:read)"
)
BAD_TOKEN = (
    "Lime Go rejected a freshly issued access token: check that the API client is still "
    "active in Lime Go and that [limego] base_url names the right instance"
)


# ---------------------------------------------------------------------------------------------
# Parsing (pure)
# ---------------------------------------------------------------------------------------------


def format_time(dt: datetime) -> str:
    """ISO 8601 UTC with a Z, whole seconds: `2026-11-23T10:00:00Z`. Truncating the
    fraction moves the filter earlier, which only re-reads a record (the cursor overlaps)."""
    if dt.tzinfo is None:
        raise ValueError(f"updated_since must be timezone-aware, got {dt!r}")
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _attributes(resource: Mapping[str, Any]) -> dict[str, Any]:
    attrs = resource.get("attributes")
    return dict(attrs) if isinstance(attrs, Mapping) else {}


def _relationship(resource: Mapping[str, Any], name: str) -> Any:
    rels = resource.get("relationships")
    if not isinstance(rels, Mapping):
        return None
    rel = rels.get(name)
    return rel.get("data") if isinstance(rel, Mapping) else None


def _ref_id(resource: Mapping[str, Any], name: str) -> str | None:
    data = _relationship(resource, name)
    if isinstance(data, Mapping) and data.get("id") is not None:
        return str(data["id"])
    return None


def _ref_ids(resource: Mapping[str, Any], name: str) -> tuple[str, ...]:
    data = _relationship(resource, name)
    if not isinstance(data, list):
        return ()
    return tuple(
        str(item["id"]) for item in data if isinstance(item, Mapping) and item.get("id") is not None
    )


def _updated_at(attrs: Mapping[str, Any]) -> datetime:
    # A record without timestamps still syncs; it only cannot say when it changed.
    return parse_time(attrs.get("updated_at")) or parse_time(attrs.get("created_at")) or EPOCH


def parse_company(resource: Mapping[str, Any]) -> Company:
    attrs = _attributes(resource)
    return Company(id=str(resource["id"]), attributes=attrs, updated_at=_updated_at(attrs))


def parse_deal(resource: Mapping[str, Any]) -> Deal:
    attrs = _attributes(resource)
    return Deal(
        id=str(resource["id"]),
        attributes=attrs,
        updated_at=_updated_at(attrs),
        company_id=_ref_id(resource, "company"),
        stage_id=_ref_id(resource, "stage"),
        contact_ids=_ref_ids(resource, "contacts"),
        owner_ids=_ref_ids(resource, "owners"),
    )


def parse_stage(resource: Mapping[str, Any]) -> Stage:
    attrs = _attributes(resource)
    return Stage(
        id=str(resource["id"]),
        name=str(attrs.get("name") or ""),
        category=attrs.get("category"),
    )


def parse_person(resource: Mapping[str, Any]) -> Person:
    attrs = _attributes(resource)
    return Person(
        id=str(resource["id"]),
        first_name=attrs.get("first_name"),
        last_name=attrs.get("last_name"),
        email=attrs.get("email"),
        attributes=attrs,
    )


def parse_field_def(resource: Mapping[str, Any]) -> CustomFieldDef:
    attrs = _attributes(resource)
    return CustomFieldDef(
        key=str(attrs.get("key") or resource.get("id")),
        label=str(attrs.get("label") or attrs.get("key") or ""),
        entity_type=str(attrs.get("entity_type") or ""),
        field_type=attrs.get("field_type"),
    )


def _data_list(doc: Any) -> list[Mapping[str, Any]]:
    data = doc.get("data") if isinstance(doc, Mapping) else None
    if not isinstance(data, list):
        return []
    return [r for r in data if isinstance(r, Mapping) and r.get("id") is not None]


def _included(doc: Any, type_: str) -> list[Mapping[str, Any]]:
    inc = doc.get("included") if isinstance(doc, Mapping) else None
    if not isinstance(inc, list):
        return []
    return [
        r
        for r in inc
        if isinstance(r, Mapping) and r.get("type") == type_ and r.get("id") is not None
    ]


def _next_link(doc: Any) -> str | None:
    links = doc.get("links") if isinstance(doc, Mapping) else None
    nxt = links.get("next") if isinstance(links, Mapping) else None
    if isinstance(nxt, Mapping):  # JSON:API 1.1 link objects
        nxt = nxt.get("href")
    return nxt if isinstance(nxt, str) and nxt else None


def api_error(resp: Any, *, scope: str | None = None) -> ApiError:
    """A JSON:API error document (or whatever came instead) as ApiError / NotFound."""
    status = resp.status_code
    body = HttpClient.json_or_none(resp)
    errors = body.get("errors") if isinstance(body, Mapping) else None
    code: str | None = None
    details: list[str] = []
    if isinstance(errors, list):
        for err in errors:
            if not isinstance(err, Mapping):
                continue
            if code is None and err.get("code"):
                code = str(err["code"])
            text = err.get("detail") or err.get("title")
            if text:
                details.append(str(text))
    message = "; ".join(details) or f"HTTP {status} {resp.reason or ''}".strip()
    if status == 403 and scope:
        message += f" (the API client may lack a scope; limefort asks for: {scope})"
    cls = NotFound if status == 404 else ApiError
    return cls(
        SERVICE, message, status=status, code=code, request_id=resp.headers.get("x-request-id")
    )


# ---------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------


class LimeGoClient:
    """One instance per pass: reference data and contacts are read once and cached."""

    def __init__(
        self,
        cfg: LimeGoConfig,
        *,
        http: HttpConfig = HttpConfig(),  # noqa: B008 (frozen dataclass, never mutated)
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        tokens: TokenCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        REDACTOR.add(cfg.client_secret)
        self._clock = clock
        self._cache = tokens
        self._record: TokenRecord | None = None
        self._cache_read = False
        self._token_lock = threading.Lock()
        self.http = HttpClient(
            cfg.base_url,
            SERVICE,
            session=session,
            settings=RetrySettings.from_config(http, sleep=sleep),
            auth=self._auth_headers,
            auth_hint=BAD_TOKEN,
            config_key="limego.base_url",
        )
        self._stages: dict[str, Stage] | None = None
        self._owners: dict[str, Person] | None = None
        self._deal_fields: dict[str, CustomFieldDef] | None = None
        self.max_pages = MAX_PAGES  # pages one listing may follow (see `_pages`)
        self._field_defs: list[CustomFieldDef] | None = None
        self._contacts: dict[str, Person | None] = {}

    @property
    def stats(self) -> dict[str, Any]:
        return self.http.stats

    @property
    def last_date(self) -> datetime | None:
        """Lime Go's clock: the `Date` header of its latest answer (None before any)."""
        return self.http.last_date

    @property
    def first_date(self) -> datetime | None:
        """The `Date` header of the first answer this client got."""
        return self.http.first_date

    # --- tokens -----------------------------------------------------------------------------

    def _valid(self, record: TokenRecord | None) -> bool:
        return record is not None and record.fresh(self._clock(), TOKEN_MARGIN)

    def access_token(self, force_refresh: bool = False) -> str:
        with self._token_lock:
            if not force_refresh:
                if self._valid(self._record):
                    assert self._record is not None and self._record.access_token
                    return self._record.access_token
                if self._cache is not None and not self._cache_read:
                    self._cache_read = True
                    cached = self._cache.load(TOKEN_NAME)
                    if cached is not None and self._valid(cached):
                        assert cached.access_token
                        REDACTOR.add(cached.access_token)
                        self._record = cached
                        return cached.access_token
            record = self._fetch_token()
            self._record = record
            if self._cache is not None:
                self._cache.save(TOKEN_NAME, record)
            assert record.access_token
            return record.access_token

    def _auth_headers(self, force_refresh: bool) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token(force_refresh)}"}

    def _fetch_token(self) -> TokenRecord:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.cfg.client_id,
            "client_secret": self.cfg.client_secret,
        }
        if self.cfg.scope:
            form["scope"] = self.cfg.scope
        now = self._clock()
        # Asking for another client-credentials token has no side effect: safe to repeat.
        resp = self.http.request(
            "POST",
            TOKEN_PATH,
            data=form,
            headers={"Accept": "application/json"},
            idempotent=True,
            authenticate=False,
        )
        if resp.status_code >= 400:
            body = HttpClient.json_or_none(resp)
            error = body.get("error") if isinstance(body, Mapping) else None
            if error == "invalid_scope":
                raise AuthError(BAD_SCOPE)
            if resp.status_code in (400, 401, 403):
                raise AuthError(BAD_CLIENT)
            raise api_error(resp)
        record = record_from_answer(
            SERVICE, self.http.json(resp), now, default_lifetime=TOKEN_LIFETIME
        )
        log.info("Lime Go: new access token, valid %.0f s", record.expires_at - now)
        return record

    @property
    def granted_scopes(self) -> set[str]:
        self.access_token()
        scope = self._record.scope if self._record else None
        # RFC 6749 5.1: an answer without "scope" granted exactly what was asked for.
        return set((scope if scope is not None else self.cfg.scope).split())

    # --- reading ----------------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        resp = self.http.request("GET", path, params=params, headers=API_HEADERS)
        if resp.status_code >= 300:
            raise api_error(resp, scope=self.cfg.scope)
        return self.http.json(resp)

    def _pages(self, path: str, params: Mapping[str, Any]) -> Iterator[Any]:
        """Documents of a listing, at most `max_pages` of them (a server that keeps handing
        out cursors would otherwise keep a pass going for ever)."""
        yield from capped_pages(
            self._pages_unbounded(path, params), SERVICE, path, limit=self.max_pages
        )

    def _pages_unbounded(self, path: str, params: Mapping[str, Any]) -> Iterator[Any]:
        """Documents of a listing, following `links.next` (a cursor URL, used as-is)."""
        url: str = path
        query: Mapping[str, Any] | None = params
        seen: set[str] = set()
        while True:
            doc = self._get(url, query)
            yield doc
            nxt = _next_link(doc)
            if nxt is None:
                return
            nxt = urljoin(self.http.url(url), nxt)
            if nxt in seen:
                raise TransientError(SERVICE, f"links.next repeats itself at {path}")
            seen.add(nxt)
            url, query = nxt, None

    def _list_params(
        self, updated_since: datetime | None, *, sort: bool = True
    ) -> dict[str, str | int]:
        params: dict[str, str | int] = {"page[size]": max(1, min(self.cfg.page_size, 100))}
        if sort:
            params["sort"] = "id"
        if updated_since is not None:
            params["filter[updated_since]"] = format_time(updated_since)
        return params

    def iter_companies(
        self,
        *,
        updated_since: datetime | None = None,
        status: str | None = None,
        descending: bool = False,
    ) -> Iterator[list[Company]]:
        """Pages of companies changed since `updated_since`, optionally of one status, by id
        (`descending`: from the highest id down)."""
        params = self._list_params(updated_since)
        if descending:
            params["sort"] = "-id"
        if status:
            params["filter[status]"] = status
        for doc in self._pages(f"{API}/companies", params):
            page = [parse_company(r) for r in _data_list(doc)]
            if page:
                yield page

    def iter_deals(
        self, *, updated_since: datetime | None = None, descending: bool = False
    ) -> Iterator[DealPage]:
        """Pages of deals with their companies (`include=company,stage`), by id
        (`descending`: from the highest id down)."""
        params = self._list_params(updated_since)
        if descending:
            params["sort"] = "-id"
        params["include"] = "company,stage"
        for doc in self._pages(f"{API}/deals", params):
            deals = [parse_deal(r) for r in _data_list(doc)]
            companies = {c.id: c for c in map(parse_company, _included(doc, "companies"))}
            if deals:
                yield DealPage(deals=deals, companies=companies)

    def get_company(self, id: str) -> Company | None:
        try:
            doc = self._get(f"{API}/companies/{quote(str(id), safe='')}")
        except NotFound:
            return None
        data = doc.get("data") if isinstance(doc, Mapping) else None
        return parse_company(data) if isinstance(data, Mapping) else None

    def get_deal(self, id: str) -> tuple[Deal, Company | None] | None:
        try:
            doc = self._get(f"{API}/deals/{quote(str(id), safe='')}", {"include": "company,stage"})
        except NotFound:
            return None
        data = doc.get("data") if isinstance(doc, Mapping) else None
        if not isinstance(data, Mapping):
            return None
        deal = parse_deal(data)
        company = next(
            (
                parse_company(r)
                for r in _included(doc, "companies")
                if str(r["id"]) == deal.company_id
            ),
            None,
        )
        return deal, company

    # --- reference data (read once per client) ----------------------------------------------

    def _all(self, path: str) -> Iterator[Mapping[str, Any]]:
        for doc in self._pages(path, self._list_params(None, sort=False)):
            yield from _data_list(doc)

    def stages(self) -> dict[str, Stage]:
        if self._stages is None:
            self._stages = {s.id: s for s in map(parse_stage, self._all(f"{API}/stages"))}
        return self._stages

    def owners(self) -> dict[str, Person]:
        if self._owners is None:
            self._owners = {p.id: p for p in map(parse_person, self._all(f"{API}/owners"))}
        return self._owners

    def field_defs(self) -> list[CustomFieldDef]:
        """Every custom-field definition (read once per client)."""
        if self._field_defs is None:
            self._field_defs = list(
                map(parse_field_def, self._all(f"{API}/custom-field-definitions"))
            )
        return self._field_defs

    def deal_field_defs(self) -> dict[str, CustomFieldDef]:
        if self._deal_fields is None:
            defs = self.field_defs()
            self._deal_fields = {d.key: d for d in defs if d.entity_type in DEAL_ENTITY_TYPES}
        return self._deal_fields

    def company_field_defs(self) -> dict[str, CustomFieldDef]:
        return {d.key: d for d in self.field_defs() if d.entity_type in COMPANY_ENTITY_TYPES}

    def contact(self, id: str) -> Person | None:
        key = str(id)
        if key not in self._contacts:
            try:
                doc = self._get(f"{API}/contacts/{quote(key, safe='')}")
            except NotFound:
                self._contacts[key] = None
            else:
                data = doc.get("data") if isinstance(doc, Mapping) else None
                self._contacts[key] = parse_person(data) if isinstance(data, Mapping) else None
        return self._contacts[key]
