"""Fixtures for the sandbox servers' own tests: small seeded sandboxes and authorised
`requests` sessions against them (all on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from limefort_sandbox import Sandbox


def limego_token(sb: Sandbox, scope: str | None = None) -> str:
    data = {
        "grant_type": "client_credentials",
        "client_id": sb.limego_client_id,
        "client_secret": sb.limego_client_secret,
    }
    if scope is not None:
        data["scope"] = scope
    r = requests.post(f"{sb.limego_url}/oauth/token", data=data, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def limego_session(sb: Sandbox, scope: str | None = None) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {limego_token(sb, scope)}"
    s.headers["Accept"] = "application/vnd.api+json"
    return s


def fortnox_token(sb: Sandbox) -> str:
    """A service-account token (client credentials with the TenantId header)."""
    r = requests.post(
        sb.fortnox_token_url,
        data={"grant_type": "client_credentials"},
        headers={"TenantId": sb.fortnox_tenant_id},
        auth=(sb.fortnox_client_id, sb.fortnox_client_secret),
        timeout=5,
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def fortnox_session(sb: Sandbox, token: str | None = None) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token or fortnox_token(sb)}"
    s.headers["Accept"] = "application/json"
    return s


def error_code(r: requests.Response) -> int:
    return r.json()["ErrorInformation"]["code"]


def jsonapi_code(r: requests.Response) -> str:
    return r.json()["errors"][0]["code"]


def read_all(session: requests.Session, url: str, **params: Any) -> list[dict[str, Any]]:
    """Follow links.next until it is absent."""
    out: list[dict[str, Any]] = []
    r = session.get(url, params=params, timeout=10)
    while True:
        assert r.status_code == 200, r.text
        doc = r.json()
        out.extend(doc["data"])
        nxt = doc["links"].get("next")
        if not nxt:
            return out
        r = session.get(nxt, timeout=10)


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    """A small sandbox with the Fortnox rate limit off (the rate-limit tests make their own)."""
    with Sandbox(seed=3, companies=30, deals=50, fortnox_rate_limit=None) as box:
        yield box


@pytest.fixture
def lg(sb: Sandbox) -> requests.Session:
    return limego_session(sb)


@pytest.fixture
def fx(sb: Sandbox) -> requests.Session:
    return fortnox_session(sb)
