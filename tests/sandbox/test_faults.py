"""Fault injection: every kind, on both servers, and that the "ghost" kinds really apply the
write before the answer is lost."""

from __future__ import annotations

import time

import pytest
import requests

from limefort_sandbox import FaultRule, Sandbox
from limefort_sandbox.faults import Faults

from .conftest import error_code, fortnox_session, jsonapi_code, limego_session

CUSTOMER = {"Customer": {"Name": "Felfri AB"}}


def customers_url(sb: Sandbox) -> str:
    return f"{sb.fortnox_url}/3/customers"


@pytest.mark.parametrize("kind", ["429", "500", "503"])
def test_status_faults_on_fortnox_are_not_applied(
    sb: Sandbox, fx: requests.Session, kind: str
) -> None:
    sb.fortnox.faults.add(FaultRule(kind, methods=("POST",), times=1))
    r = fx.post(customers_url(sb), json=CUSTOMER)
    assert r.status_code == int(kind)
    assert "ErrorInformation" in r.json()
    assert "Retry-After" not in r.headers
    assert sb.fortnox.customers == []
    rec = sb.fortnox.requests[-1]
    assert rec.fault == kind and rec.status == int(kind) and rec.method == "POST"
    # times=1: the next one goes through
    assert fx.post(customers_url(sb), json=CUSTOMER).status_code == 201
    assert sb.fortnox.rate_limited == 0  # injected 429s are not the rate limiter's


@pytest.mark.parametrize(
    ("kind", "code"), [("429", "rate_limited"), ("500", "internal_error"), ("503", "unavailable")]
)
def test_status_faults_on_limego(sb: Sandbox, lg: requests.Session, kind: str, code: str) -> None:
    sb.limego.faults.add(FaultRule(kind, path_prefix="/api/v1/deals", times=2))
    url = f"{sb.limego_url}/api/v1/deals"
    for _ in range(2):
        r = lg.get(url)
        assert r.status_code == int(kind) and jsonapi_code(r) == code
        assert r.headers["x-request-id"]
        if kind in ("429", "503"):
            assert r.headers["Retry-After"] == "1"
    assert lg.get(f"{sb.limego_url}/api/v1/companies").status_code == 200  # other paths
    assert lg.get(url).status_code == 200
    assert [x.fault for x in sb.limego.requests[-4:]] == [kind, kind, None, None]


def test_reset_looks_like_a_dropped_connection_and_applies_nothing(
    sb: Sandbox, fx: requests.Session
) -> None:
    sb.fortnox.faults.add(FaultRule("reset", methods=("POST",), times=1))
    with pytest.raises(requests.ConnectionError):
        fx.post(customers_url(sb), json=CUSTOMER)
    assert sb.fortnox.customers == []
    rec = sb.fortnox.requests[-1]
    assert rec.fault == "reset" and rec.status is None
    assert fx.post(customers_url(sb), json=CUSTOMER).status_code == 201  # the session recovers


def test_reset_on_limego_and_on_a_token_endpoint(sb: Sandbox) -> None:
    sb.limego.faults.add(FaultRule("reset", path_prefix="/oauth/token", times=1))
    with pytest.raises(requests.ConnectionError):
        limego_session(sb)
    lg = limego_session(sb)
    sb.limego.faults.add(FaultRule("reset", times=1))
    with pytest.raises(requests.ConnectionError):
        lg.get(f"{sb.limego_url}/api/v1/companies")
    assert lg.get(f"{sb.limego_url}/api/v1/companies").ok


def test_fortnox_token_endpoint_faults(sb: Sandbox) -> None:
    sb.fortnox.faults.add(FaultRule("503", path_prefix="/oauth-v1/token", times=1))
    with pytest.raises(AssertionError):
        fortnox_session(sb)
    assert fortnox_session(sb)
    assert sb.fortnox.count() == 0  # token calls are not API calls


def test_ghost500_applies_the_write_then_answers_500(sb: Sandbox, fx: requests.Session) -> None:
    number = sb.fortnox.add_customer({"Name": "Kund AB"})
    sb.fortnox.faults.add(
        FaultRule("ghost500", methods=("POST",), path_prefix="/3/invoices", times=1)
    )
    body = {"Invoice": {"CustomerNumber": number, "ExternalInvoiceReference1": "limego:deal:g"}}
    r = fx.post(f"{sb.fortnox_url}/3/invoices", json=body)
    assert r.status_code == 500 and error_code(r) == 1000003
    assert [d["DocumentNumber"] for d in sb.fortnox.documents_by_ref("limego:deal:g")] == ["1"]
    rec = sb.fortnox.requests[-1]
    assert rec.fault == "ghost500" and rec.status == 500
    found = fx.get(
        f"{sb.fortnox_url}/3/invoices", params={"externalinvoicereference1": "limego:deal:g"}
    )
    assert found.json()["MetaInformation"]["@TotalResources"] == 1


def test_ghostdrop_applies_the_write_then_drops_the_connection(
    sb: Sandbox, fx: requests.Session
) -> None:
    sb.fortnox.faults.add(FaultRule("ghostdrop", methods=("POST",), times=1))
    with pytest.raises(requests.ConnectionError):
        fx.post(customers_url(sb), json=CUSTOMER)
    assert [c["Name"] for c in sb.fortnox.customers] == ["Felfri AB"]
    assert sb.fortnox.requests[-1].status is None
    assert sb.fortnox.requests[-1].fault == "ghostdrop"


def test_ghost_faults_on_a_failing_write_still_lose_the_answer(
    sb: Sandbox, fx: requests.Session
) -> None:
    sb.fortnox.faults.add(FaultRule("ghost500", methods=("POST",), times=1))
    r = fx.post(customers_url(sb), json={"Customer": {"City": "Lund"}})  # invalid: no Name
    assert r.status_code == 500 and sb.fortnox.customers == []


def test_slow_answers_late_and_applies_even_if_the_client_gave_up(
    sb: Sandbox, fx: requests.Session
) -> None:
    sb.fortnox.faults.add(FaultRule("slow", methods=("POST",), times=2, delay=0.4))
    t = time.monotonic()
    r = fx.post(customers_url(sb), json=CUSTOMER)
    assert r.status_code == 201 and time.monotonic() - t >= 0.4
    with pytest.raises(requests.ReadTimeout):
        fx.post(customers_url(sb), json={"Customer": {"Name": "Sen AB"}}, timeout=0.1)
    time.sleep(0.5)
    assert [c["Name"] for c in sb.fortnox.customers] == ["Felfri AB", "Sen AB"]


def test_slow_on_limego(sb: Sandbox, lg: requests.Session) -> None:
    sb.limego.faults.add(FaultRule("slow", delay=0.3, times=1))
    t = time.monotonic()
    assert lg.get(f"{sb.limego_url}/api/v1/stages").ok
    assert time.monotonic() - t >= 0.3


def test_rules_match_on_method_and_path_prefix(sb: Sandbox, fx: requests.Session) -> None:
    sb.fortnox.faults.add(FaultRule("503", methods=("PUT",), path_prefix="/3/customers"))
    number = fx.post(customers_url(sb), json=CUSTOMER).json()["Customer"]["CustomerNumber"]
    assert fx.get(customers_url(sb)).ok
    r = fx.put(f"{customers_url(sb)}/{number}", json={"Customer": {"City": "Lund"}})
    assert r.status_code == 503
    sb.fortnox.faults.clear()
    assert fx.put(f"{customers_url(sb)}/{number}", json={"Customer": {"City": "Lund"}}).ok


def test_rates_are_seeded_and_repeatable() -> None:
    def pattern(seed: int) -> list[bool]:
        faults = Faults(seed)
        faults.add(FaultRule("503", rate=0.3))
        return [faults.pick("GET", "/3/customers") is not None for _ in range(200)]

    a, b = pattern(1), pattern(1)
    assert a == b and a != pattern(2)
    assert 30 < sum(a) < 90
    faults = Faults(1)
    faults.add(FaultRule("503", rate=0.3))
    faults.seed(1)
    assert [faults.pick("GET", "/x") is not None for _ in range(200)] == a


def test_rate_over_http_is_repeatable() -> None:
    def run() -> list[int]:
        with Sandbox(seed=5, companies=3, deals=2, fortnox_rate_limit=None) as sb:
            fx = fortnox_session(sb)
            sb.fortnox.faults.add(FaultRule("500", rate=0.5, path_prefix="/3/"))
            return [fx.get(customers_url(sb)).status_code for _ in range(20)]

    first = run()
    assert first == run() and set(first) == {200, 500}


def test_times_counts_only_applied_faults_then_the_rule_is_gone(
    sb: Sandbox, fx: requests.Session
) -> None:
    sb.fortnox.faults.add(FaultRule("500", times=3, methods=("GET",)))
    codes = [fx.get(customers_url(sb)).status_code for _ in range(5)]
    assert codes == [500, 500, 500, 200, 200]
    assert sb.fortnox.faults.rules == []
    assert sb.fortnox.faults.injected == 3


def test_first_matching_rule_wins(sb: Sandbox, fx: requests.Session) -> None:
    sb.fortnox.faults.add(FaultRule("503", path_prefix="/3/invoices"))
    sb.fortnox.faults.add(FaultRule("500"))
    assert fx.get(f"{sb.fortnox_url}/3/invoices").status_code == 503
    assert fx.get(customers_url(sb)).status_code == 500


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError):
        FaultRule("teapot")
    with pytest.raises(ValueError):
        FaultRule("500", rate=1.5)
    with pytest.raises(ValueError):
        FaultRule("slow", delay=-1)
    one_method = FaultRule("500", methods="post")  # type: ignore[arg-type]
    assert one_method.methods == ("POST",)


def test_latency_is_added_to_every_answer() -> None:
    with Sandbox(seed=1, companies=2, deals=1, latency=0.15, fortnox_rate_limit=None) as sb:
        lg = limego_session(sb)
        t = time.monotonic()
        lg.get(f"{sb.limego_url}/api/v1/stages")
        assert time.monotonic() - t >= 0.15
        sb.latency = 0.0
        assert sb.fortnox.latency == 0.0
