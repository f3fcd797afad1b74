"""Fortnox's tokens: a service account's (client credentials with the tenant id) or a refresh
token's (rotated on each use, kept durable before it is used), the authorization-code exchange
and the consent URL `limefort auth fortnox` prints."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import requests

from limefort.clients.fortnox_errors import (
    BAD_CLIENT,
    BAD_CODE,
    BAD_SERVICE_ACCOUNT,
    NO_REFRESH_TOKEN,
    SERVICE,
    SPENT_REFRESH_TOKEN,
    fortnox_error,
)
from limefort.clients.http import HttpClient
from limefort.clients.redaction import REDACTOR
from limefort.clients.retries import RetrySettings
from limefort.clients.tokens import TokenCache, record_from_answer
from limefort.config import FortnoxConfig, HttpConfig
from limefort.core.errors import AuthError
from limefort.core.models import TokenRecord

log = logging.getLogger("limefort.fortnox")

TOKEN_NAME = "fortnox"
TOKEN_LIFETIME = 3600.0
TOKEN_MARGIN = 60.0
# Fortnox: a refresh token is single-use and lives 45 days unused.
REFRESH_TOKEN_DAYS = 45


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
