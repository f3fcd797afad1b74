"""Fixtures for the contract suites: one sandbox per test, reached either over loopback HTTP
or in-process (tests/fakes.py), and limefort's own clients built for it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import pytest
from doubles import MemoryTokens
from fakes import inprocess

from limefort.clients.fortnox import FortnoxClient
from limefort.clients.fortnox_tokens import ServiceAccountTokens
from limefort.clients.limego import LimeGoClient
from limefort.clients.limiter import SlidingWindowLimiter
from limefort.config import FortnoxConfig, HttpConfig, LimeGoConfig
from limefort_sandbox import Sandbox

TRANSPORTS = ["inprocess", "http"]
FAST_HTTP = HttpConfig(timeout=2.0, attempts=3, backoff_initial=0.0, backoff_max=0.0)


@dataclass
class Env:
    transport: str
    sb: Sandbox
    sleeps: list[float]

    def limego(self, **cfg: Any) -> LimeGoClient:
        config = LimeGoConfig(
            base_url=self.sb.limego_url,
            client_id=self.sb.limego_client_id,
            client_secret=self.sb.limego_client_secret,
            **cfg,
        )
        return LimeGoClient(config, http=FAST_HTTP, tokens=MemoryTokens(), sleep=self.sleeps.append)

    def fortnox(self, *, http: HttpConfig = FAST_HTTP, rate_limit: int | None = None):
        config = FortnoxConfig(
            client_id=self.sb.fortnox_client_id,
            client_secret=self.sb.fortnox_client_secret,
            api_url=self.sb.fortnox_url,
            token_url=self.sb.fortnox_token_url,
            auth_url=self.sb.fortnox_auth_url,
            tenant_id=self.sb.fortnox_tenant_id,
        )
        tokens = ServiceAccountTokens(config, MemoryTokens(), http=http, sleep=self.sleeps.append)
        return FortnoxClient(
            config,
            tokens,
            http=http,
            limiter=SlidingWindowLimiter(rate_limit),
            sleep=self.sleeps.append,
        )


def open_sandbox(transport: str, **kw: Any) -> Sandbox:
    kw.setdefault("fortnox_rate_limit", None)
    return Sandbox(serve=transport == "http", **kw).start()


@pytest.fixture(params=TRANSPORTS)
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    transport = request.param
    sb = open_sandbox(transport, seed=5, companies=12, deals=20)
    try:
        with inprocess(sb) if transport == "inprocess" else nullcontext():
            yield Env(transport, sb, [])
    finally:
        sb.stop()
