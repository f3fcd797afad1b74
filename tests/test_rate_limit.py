"""Fortnox's rate limit, for real: 25 requests in any 5-second window per tenant.

The sandbox enforces the real limit here (sliding window, HTTP 429 past it). With the client's
`SlidingWindowLimiter` at the real setting a pass never draws a 429; without it the same
server does answer 429, and the pass still completes because 429 is retried (rule 6).
These tests wait for the window on purpose (about 10 and 6 seconds).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from conftest import Lf, fortnox_calls

from limefort_sandbox import Sandbox

LIMIT, WINDOW = 25, 5.0


def orgnr(i: int) -> str:
    """A valid Swedish organisation number (Luhn check digit), distinct for each i."""
    body = f"556{i:06d}"
    total = 0
    for pos, ch in enumerate(body):
        d = int(ch) * (2 if pos % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return f"{body[:6]}-{body[6:]}{(10 - total % 10) % 10}"


def add_customers(sb: Sandbox, n: int) -> None:
    for i in range(1, n + 1):
        sb.limego.add_company(name=f"Takt {i} AB", business_id=orgnr(i), status="customer")


def real_limit(make_sandbox: Callable[..., Sandbox], latency: float = 0.0) -> Sandbox:
    return make_sandbox(
        seed=21, companies=0, deals=0, fortnox_rate_limit=LIMIT, fortnox_rate_window=WINDOW,
        latency=latency,
    )  # fmt: skip


def test_client_limiter_at_the_real_setting_draws_no_429(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    # Every answer 100 ms late: new customers go three at a time (issue 26), and the limiter
    # dates each answered request back by half the fastest round trip.
    sb = real_limit(make_sandbox, latency=0.1)
    add_customers(sb, 54)  # 54 POSTs + 2 index pages (active, inactive): three windows' worth
    lf = Lf(sb, tmp_path, rate_limit=LIMIT, start="now")
    t0 = time.monotonic()
    r = lf.run("sync")
    elapsed = time.monotonic() - t0
    assert r.code == 0, r.err
    calls = fortnox_calls(sb)
    # 54 POSTs; the customer index (active, inactive) and the invoice index read once; the
    # writer guard's looks after the 3rd and the 53rd creation (invoices, and the customers'
    # two lists again) and the check after the pass (the customers' lists: no invoice was
    # made): rule 14.
    assert Counter(calls) == {
        "POST /3/customers": 54,
        "GET /3/customers": 2 + 2 * 2 + 2,
        "GET /3/invoices": 1 + 2,
    }
    assert sb.fortnox.rate_limited == 0
    assert all(x.status != 429 for x in sb.fortnox.requests)
    assert len(sb.fortnox.customers) == 54
    # The limiter did hold the pass back (64 requests need two full windows) ...
    assert elapsed >= 2 * WINDOW
    # ... and no 5-second window at the server saw more than the limit.
    at = [x.at for x in sb.fortnox.requests if x.path.startswith("/3/")]
    assert max(sum(1 for u in at if t <= u < t + WINDOW) for t in at) <= LIMIT


def test_without_the_limiter_fortnox_answers_429_and_the_pass_still_completes(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sb = real_limit(make_sandbox)
    add_customers(sb, 30)
    lf = Lf(sb, tmp_path, rate_limit=0, start="now")
    # Backoff long enough to outlast the window (the tests' usual waits are tiny).
    text = lf.config.read_text(encoding="utf-8")
    for key, value in (("attempts", "8"), ("backoff_initial", '"1s"'), ("backoff_max", '"2s"')):
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
    lf.write(text)
    r = lf.run("sync")
    assert r.code == 0, r.err
    assert sb.fortnox.rate_limited > 0
    assert any(x.status == 429 for x in sb.fortnox.requests)
    assert len(sb.fortnox.customers) == 30
    # Each customer created once: a 429 is a request Fortnox never applied.
    refs = [c.get("ExternalReference") for c in sb.fortnox.customers]
    assert len(set(refs)) == 30
    assert lf.status()["last_run"]["counts"]["fortnox_rate_limited"] == sb.fortnox.rate_limited
