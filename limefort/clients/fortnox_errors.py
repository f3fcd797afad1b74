"""What Fortnox's refusals mean: its `ErrorInformation` bodies read into `ApiError`s in plain
words (with the scope a path needs), and the messages for credentials it rejects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from limefort.clients.http import HttpClient
from limefort.core.errors import (
    ApiError,
    NotFound,
)
from limefort.core.explain import explain, int_code

SERVICE = "Fortnox"
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
