"""Issue 16: a few Fortnox writes in flight over a long round trip.

With the sandbox's latency knob (every answer of both services late) and a short rate window
(5 requests per 1 s), a pass sends up to 3 documents at once and never more than the window
allows, counting each request where Fortnox can see it (issue 26): at its arrival, and as the
limiter assumes, no earlier than half-way along its round trip. And a
SIGKILL while documents are in flight still leaves exactly one document per deal: their
intents were committed before the POSTs, and reconciliation settles them.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import fakes
import pytest
from conftest import Lf
from test_exactly_once import assert_exactly_once, expected, sync_until_clean

from limefort.engine.inflight import Flights, width_for
from limefort_sandbox import Sandbox

LIMIT, WINDOW = 5, 1.0


def most_in_any_window(spans: list[tuple[float, float]], window: float) -> int:
    """The most requests that a server counting each one at any moment of its [arrival,
    answer] could count in one window of `window` seconds: intervals meeting [t, t + window),
    over every t where that number can change."""
    starts = [s - window + 1e-9 for s, _ in spans] + [e for _, e in spans]
    return max(sum(1 for s, e in spans if e >= t and s < t + window) for t in starts)


def most_at_once(spans: list[tuple[float, float]]) -> int:
    return max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)


def answer_times(monkeypatch: pytest.MonkeyPatch) -> dict[int, float]:
    """When each in-process request's answer was complete, by its request record's id."""
    answered: dict[int, float] = {}
    real_complete = fakes.complete

    def complete(app: Any, req: Any, record: Any, rule: Any) -> Any:
        try:
            return real_complete(app, req, record, rule)
        finally:
            answered[id(record)] = time.time()

    monkeypatch.setattr(fakes, "complete", complete)
    return answered


def test_documents_in_flight_never_exceed_the_window(
    make_inprocess_sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb: Sandbox = make_inprocess_sandbox(
        seed=5,
        companies=12,
        deals=40,
        won_ratio=0.8,
        customer_ratio=1.0,
        fortnox_rate_limit=LIMIT,
        fortnox_rate_window=WINDOW,
        latency=0.1,
    )
    answered = answer_times(monkeypatch)
    lf = Lf(sb, tmp_path, rate_limit=LIMIT, start="2000-01-01", require_positive_value=False)
    lf.edit("fortnox", rate_window="1s")
    deals, companies = expected(sb, lf)
    assert len(deals) >= 20

    r = lf.run("sync")
    assert r.code == 0, r.err

    calls = [x for x in sb.fortnox.requests if x.path.startswith("/3/")]
    spans = [(x.at, answered[id(x)]) for x in calls]
    # What Fortnox can see (issue 26): each request counted when it reaches the server, which
    # the sandbox's own strict window does (no 429), and which these arrival times show.
    assert sb.fortnox.rate_limited == 0
    assert most_in_any_window([(x.at, x.at) for x in calls], WINDOW) <= LIMIT
    # The limiter dates an answered request back by half the fastest round trip, never more:
    # counted from half-way along each request's own trip, no window holds more either.
    halfway = [(s + (e - s) / 2, s + (e - s) / 2) for s, e in spans]
    assert most_in_any_window(halfway, WINDOW) <= LIMIT
    posts = [
        (x.at, answered[id(x)]) for x in calls if (x.method, x.path) == ("POST", "/3/invoices")
    ]
    assert len(posts) == len(deals)
    assert 2 <= most_at_once(posts) <= 3  # documents did go in flight together, 3 at most
    assert_exactly_once(sb, lf, deals, companies)


def test_customers_and_the_tail_go_in_flight_too(
    make_inprocess_sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 26: new customers overlap like documents (each document still sent after its own
    customer's answer), and so do the last documents of the plan. No rate limit here, so
    what overlaps is the executor's doing alone (the window: the test above and
    test_rate_limit.py)."""
    sb: Sandbox = make_inprocess_sandbox(seed=6, companies=0, deals=0, latency=0.1)
    answered = answer_times(monkeypatch)
    # Half are customers already (made by the companies phase), half become customers by
    # their won deal (made in the deals phase, each just before its document).
    ids = [
        sb.limego.add_company(name=f"Ny Kund {i} AB", status="customer" if i < 4 else "prospect")
        for i in range(8)
    ]
    for i in range(12):
        sb.limego.add_deal(company_id=ids[i % 8], stage="won", name=f"Affär {i}", value="100")
    lf = Lf(sb, tmp_path, start="2000-01-01")
    deals, companies = expected(sb, lf)

    r = lf.run("sync")
    assert r.code == 0, r.err
    calls = [x for x in sb.fortnox.requests if x.path.startswith("/3/")]

    def posts(path: str) -> list[Any]:
        return [x for x in calls if (x.method, x.path) == ("POST", path)]

    def spans(xs: list[Any]) -> list[tuple[float, float]]:
        return [(x.at, answered[id(x)]) for x in xs]

    customers, documents = posts("/3/customers"), posts("/3/invoices")
    assert len(customers) == 8 and len(documents) == 12
    assert 2 <= most_at_once(spans(customers)) <= 3  # customers in flight, 3 at most
    assert most_at_once(spans(documents[-3:])) >= 2  # the plan's tail as full as its middle
    # Each document was sent after the answer that created its customer.
    number_of = {c["ExternalReference"]: c["CustomerNumber"] for c in sb.fortnox.customers}
    created = {
        number_of[x.body["Customer"]["ExternalReference"]]: answered[id(x)] for x in customers
    }
    for x in documents:
        assert x.at >= created[x.body["Invoice"]["CustomerNumber"]]
    assert_exactly_once(sb, lf, deals, companies)


def test_the_window_check_above_can_fail() -> None:
    # Six requests of 100 ms, one every 150 ms: a server counting at the answers sees six in
    # 0.9 s.
    spans = [(i * 0.15, i * 0.15 + 0.1) for i in range(6)]
    assert most_in_any_window(spans, 1.0) == 6
    assert most_at_once([(0, 1), (0.5, 1.5), (0.6, 2)]) == 3


def test_round_trips_decide_how_many_go_at_once() -> None:
    assert width_for(0.0) == 1  # before any answer, and on loopback: strictly in order
    assert width_for(0.01) == 1
    assert width_for(0.15) == 3
    assert width_for(0.4, most=2) == 2


def test_flights_land_in_order_and_all_land_when_one_fails() -> None:
    from concurrent.futures import ThreadPoolExecutor

    landed: list[tuple[int, Any]] = []

    def land(item: int, result: Any) -> None:
        try:
            landed.append((item, result()))
        except ValueError as exc:
            landed.append((item, str(exc)))
            if item == 2:
                raise RuntimeError("recording 2 failed") from exc

    sent: list[int] = []

    def send(i: int) -> Any:
        sent.append(i)
        time.sleep(random.uniform(0, 0.02))
        if i in (2, 4):
            raise ValueError(f"send {i}")
        return i * 10

    with ThreadPoolExecutor(3) as pool:
        flights: Flights[int] = Flights(lambda: pool, lambda: 3, land)
        with pytest.raises(RuntimeError, match="recording 2 failed"), flights:
            for i in range(6):
                flights.start(i, lambda i=i: send(i))  # type: ignore[misc]
        assert flights.most == 3
    # Recording the third raised while the sixth waited for room: the loop stopped there, and
    # every send already made still landed, in order.
    assert sorted(sent) == [0, 1, 2, 3, 4]
    assert landed == [(0, 0), (1, 10), (2, "send 2"), (3, 30), (4, "send 4")]


# ---------------------------------------------------------------------------------------------
# SIGKILL with documents in flight
# ---------------------------------------------------------------------------------------------


def pending_documents(state: Path) -> set[str]:
    """Deals whose document intent is pending: committed, its POST's answer never recorded."""
    if not state.exists():
        return set()
    with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as db:
        return {r[0] for r in db.execute("SELECT deal_id FROM documents WHERE state = 'pending'")}


@pytest.mark.slow
@pytest.mark.http
def test_sigkill_with_documents_in_flight_leaves_one_document_per_deal(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb = make_sandbox(
        seed=2,
        companies=24,
        deals=150,
        won_ratio=0.9,
        customer_ratio=0.7,
        recent_days=30,
        fortnox_rate_limit=LIMIT,
        fortnox_rate_window=WINDOW,
    )
    sb.fortnox.latency = 0.15  # a long Fortnox round trip: documents go 3 at a time
    lf = Lf(sb, tmp_path, rate_limit=LIMIT, require_positive_value=False)
    lf.edit("fortnox", rate_window="1s")
    deals, companies = expected(sb, lf)
    assert len(deals) >= 40
    rng = random.Random(20261216)
    kills: list[dict[str, int]] = []
    while len(kills) < 8:
        before = sb.fortnox.count("POST", "/3/invoices")
        pending_before = pending_documents(lf.state)
        p = lf.spawn("sync")
        waited = time.monotonic()
        # Kill among the documents: after this pass's first invoice POST reached Fortnox.
        while (
            sb.fortnox.count("POST", "/3/invoices") == before
            and p.poll() is None
            and time.monotonic() - waited < 30
        ):
            time.sleep(0.002)
        if len(kills) % 2:
            time.sleep(rng.uniform(0.0, 0.6))
        else:
            # Every other kill waits for the moment two or more intents are pending (documents
            # in flight), so that moment is hit whatever the machine's timing.
            deadline = time.monotonic() + 3
            while (
                len(pending_documents(lf.state) - pending_before) < 2
                and p.poll() is None
                and time.monotonic() < deadline
            ):
                time.sleep(0.001)
        if p.poll() is not None:
            p.communicate()
            break  # it finished: everything is in
        os.kill(p.pid, signal.SIGKILL)
        p.communicate(timeout=10)
        kills.append(
            {
                "posts": sb.fortnox.count("POST", "/3/invoices") - before,
                # intents this pass committed and left pending: documents it had in flight
                "in_flight": len(pending_documents(lf.state) - pending_before),
            }
        )
    assert len(kills) >= 4, kills
    # Some kill caught more than one document between its intent and its answer.
    assert max(k["in_flight"] for k in kills) >= 2, kills
    assert max(k["in_flight"] for k in kills) <= 3, kills  # never more intents than POSTs
    sync_until_clean(lf, deadline=90, spawn=True)
    assert_exactly_once(sb, lf, deals, companies)
    # Nothing here loses a POST's answer: no document was POSTed twice, but for a POST that
    # Fortnox refused with 429 (certainly not applied: a new process's limiter cannot know
    # what the killed one sent just before).
    applied = Counter(
        (r.body or {}).get("Invoice", {}).get("ExternalInvoiceReference1")
        for r in list(sb.fortnox.requests)
        if r.method == "POST" and r.path == "/3/invoices" and r.status != 429
    )
    assert {ref: n for ref, n in applied.items() if n > 1} == {}
    print(
        f"\nkills with documents in flight: {kills}; POSTs per document {Counter(applied.values())}"
    )


def test_a_deals_read_that_fails_early_still_lets_the_companies_through(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    """The deals' first page is read before the companies are written (issue 26); when that
    read fails, the companies still go first and the pass then fails where it always did."""
    from limefort_sandbox import FaultRule

    sb: Sandbox = make_inprocess_sandbox(seed=7, companies=0, deals=0)
    ids = [sb.limego.add_company(name=f"Kund {i} AB", status="customer") for i in range(3)]
    sb.limego.add_deal(company_id=ids[0], stage="won", name="Affär", value="100")
    sb.limego.faults.add(FaultRule("503", methods=("GET",), path_prefix="/api/v1/deals"))
    lf = Lf(sb, tmp_path, start="2000-01-01")
    r = lf.run("sync")
    assert r.code != 0 and "deals" in r.err
    assert len(sb.fortnox.customers) == 3  # the companies went through first
    assert not sb.fortnox.invoices
    sb.limego.faults.clear()
    assert lf.run("sync").code == 0
    assert len(sb.fortnox.invoices) == 1
