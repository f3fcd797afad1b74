"""One contract, two transports: limefort's clients against the sandbox over loopback HTTP
and in-process (tests/fakes.py) must see the same answers, the same errors and the same
failure classes. A test that passes in-process therefore says what it would over a socket."""

from __future__ import annotations

import time

import pytest
from conftest import wait_for

from limefort.core.errors import ApiError, NotFound, TransientError, UnknownOutcome
from limefort_sandbox import FaultRule

from .conftest import Env

CUSTOMER = {"Name": "Kontrakt AB", "OrganisationNumber": "556036-0793", "City": "Lund"}


def _invoice(customer_number: str, ref: str) -> dict:
    return {
        "CustomerNumber": customer_number,
        "ExternalInvoiceReference1": ref,
        "InvoiceRows": [{"Description": "Licens", "Price": 1200, "DeliveredQuantity": "2"}],
    }


def test_limego_pages_follow_links_next(env: Env) -> None:
    client = env.limego(page_size=5)
    pages = list(client.iter_companies())
    assert [len(p) for p in pages] == [5, 5, 2]
    assert sorted(c.id for p in pages for c in p) == sorted(env.sb.limego.companies)
    listed = [r for r in env.sb.limego.requests if r.path == "/api/v1/companies"]
    assert len(listed) == 3 and all(r.status == 200 for r in listed)
    deals = [d for page in client.iter_deals() for d in page.deals]
    assert len(deals) == 20


def test_fortnox_pages_by_page_number(env: Env) -> None:
    client = env.fortnox()
    for i in range(7):
        client.create_customer({"Name": f"Kund {i}"})
    pages = list(client.iter_customers(limit=3))
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [r.query.get("page") for r in env.sb.fortnox.requests if r.method == "GET"] == [
        "1",
        "2",
        "3",
    ]


def test_create_a_customer_and_an_invoice(env: Env) -> None:
    client = env.fortnox()
    customer = client.create_customer(CUSTOMER)
    number = customer["CustomerNumber"]
    assert env.sb.fortnox.customer(number)["Name"] == "Kontrakt AB"
    invoice = client.create_document("invoice", _invoice(number, "limego:deal:1"))
    assert str(invoice["Total"]) == "2400"
    assert [d["DocumentNumber"] for d in client.find_documents("invoice", "limego:deal:1")] == [
        invoice["DocumentNumber"]
    ]
    assert env.sb.fortnox.count("POST") == 2


def test_404_error_bodies(env: Env) -> None:
    lg = env.limego()
    assert lg.get_company("00000000-0000-4000-8000-000000000000") is None
    with pytest.raises(NotFound) as lime_err:
        lg._get("/api/v1/deals/00000000-0000-4000-8000-000000000000")
    assert lime_err.value.code == "not_found" and lime_err.value.status == 404
    assert lime_err.value.request_id  # x-request-id is read from the answer

    fx = env.fortnox()
    assert fx.get_customer("999") is None
    with pytest.raises(ApiError) as fx_err:
        fx.update_customer("999", {"Name": "x"})
    assert (fx_err.value.status, fx_err.value.code) == (404, 2000433)


def test_429_from_the_rate_limiter(env: Env) -> None:
    env.sb.fortnox.rate_limit = 2
    env.sb.fortnox.rate_window = 60.0
    client = env.fortnox()  # its own limiter off: the server's must answer
    client.get_customer("1")
    client.get_customer("1")
    with pytest.raises(TransientError) as err:
        client.get_customer("1")
    assert err.value.status == 429
    assert env.sb.fortnox.rate_limited == 3  # every one of the three attempts was refused
    assert client.stats["rate_limited"] == 3


@pytest.mark.parametrize("kind", ["ghostdrop", "ghost500"])
def test_a_ghost_write_is_an_unknown_outcome_and_is_applied(env: Env, kind: str) -> None:
    client = env.fortnox()
    number = client.create_customer(CUSTOMER)["CustomerNumber"]
    env.sb.fortnox.faults.add(FaultRule(kind, methods=("POST",), path_prefix="/3/invoices"))
    with pytest.raises(UnknownOutcome) as err:
        client.create_document("invoice", _invoice(number, "limego:deal:7"))
    assert not err.value.in_flight
    assert ("reset" in err.value.message) == (kind == "ghostdrop")
    env.sb.fortnox.faults.clear()
    assert len(client.find_documents("invoice", "limego:deal:7")) == 1


def test_a_reset_is_retried_for_a_read_and_is_unknown_for_a_write(env: Env) -> None:
    client = env.fortnox()
    env.sb.fortnox.faults.add(FaultRule("reset", methods=("GET",), times=1))
    assert client.get_customer("1") is None
    assert client.stats["retries"] == 1
    env.sb.fortnox.faults.add(FaultRule("reset", methods=("POST",), times=1))
    with pytest.raises(UnknownOutcome) as err:
        client.create_customer(CUSTOMER)
    assert "connection reset" in err.value.message
    assert env.sb.fortnox.customers == []  # a reset request was never applied


def test_a_slow_answer_times_out_and_the_write_lands(env: Env) -> None:
    client = env.fortnox()
    env.sb.fortnox.faults.add(
        FaultRule("slow", methods=("POST",), path_prefix="/3/customers", delay=0.6, times=1)
    )
    from limefort.config import HttpConfig

    short = env.fortnox(http=HttpConfig(timeout=0.2, attempts=2, backoff_initial=0.0))
    with pytest.raises(UnknownOutcome) as err:
        short.create_customer(CUSTOMER)
    assert err.value.in_flight and "read timeout" in err.value.message
    wait_for(lambda: len(env.sb.fortnox.customers) == 1, what="the customer")
    assert client.get_customer("1") is not None


def test_latency_is_added_to_every_answer(env: Env) -> None:
    env.sb.limego.latency = 0.05
    client = env.limego()
    started = time.monotonic()
    client.stages()  # one token request and one page
    # Not a speed claim: a lower bound the knob must guarantee on any machine.
    assert time.monotonic() - started >= 0.1


@pytest.mark.http
def test_inprocess_serves_without_sockets_or_threads() -> None:
    import threading

    import requests

    from limefort_sandbox import Sandbox

    from .conftest import open_sandbox

    before = set(threading.enumerate())
    sb = open_sandbox("inprocess", seed=5, companies=3, deals=2)
    try:
        # No thread was started (one left over from another test may have ended meanwhile).
        assert isinstance(sb, Sandbox) and not set(threading.enumerate()) - before
        # Its addresses are reserved but never listened on: an unrouted client is refused.
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{sb.limego_url}/oauth/token", timeout=2)
        assert sb.limego.requests == []
    finally:
        sb.stop()


@pytest.mark.http  # make_sandbox serves over loopback here: the two transports are compared
def test_a_whole_pass_does_the_same_over_both(make_sandbox, make_inprocess_sandbox, tmp_path):
    from conftest import Lf, fortnox_calls

    outcomes = []
    for make, name in ((make_sandbox, "http"), (make_inprocess_sandbox, "inprocess")):
        sb = make(seed=11, companies=10, deals=12)
        (tmp_path / name).mkdir()
        result = Lf(sb, tmp_path / name).run("sync")
        assert result.code == 0, result.err
        documents = sorted(d["ExternalInvoiceReference1"] for d in sb.fortnox.invoices)
        outcomes.append((fortnox_calls(sb), len(sb.fortnox.customers), documents))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][2]  # the pass did make invoices
