"""The HTTP edge: limiter, retry classification (rule 6 + exactly-once rule 3), redaction."""

from __future__ import annotations

import http.client
import logging
import threading
from decimal import Decimal

import pytest
import requests
import urllib3.exceptions
from doubles import ManualClock

from limefort.clients.http import USER_AGENT, HttpClient, make_session, refuse_plain_http
from limefort.clients.limiter import SlidingWindowLimiter
from limefort.clients.redaction import REDACTOR, RedactingFilter, Redactor
from limefort.clients.retries import RetrySettings, certainly_not_sent, parse_retry_after
from limefort.core.errors import AuthError, ConfigError, TransientError, UnknownOutcome

BASE = "https://api.example.test"


def refused() -> requests.exceptions.ConnectionError:
    """What requests raises for a refused connection (checked against a closed local port)."""
    inner = urllib3.exceptions.NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] Connection refused"
    )  # type: ignore[arg-type]
    return requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/x", inner))  # type: ignore[arg-type]


def reset() -> requests.exceptions.ConnectionError:
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError(
            "Connection aborted.", ConnectionResetError(104, "Connection reset by peer")
        )
    )


def remote_disconnected() -> requests.exceptions.ConnectionError:
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError(
            "Connection aborted.",
            http.client.RemoteDisconnected("Remote end closed connection without response"),
        )
    )


@pytest.fixture
def client(sleeps: list[float]) -> HttpClient:
    return HttpClient(BASE, "Test", settings=RetrySettings(attempts=4, sleep=sleeps.append))


# --- limiter ---------------------------------------------------------------------------------


def test_limiter_lets_25_through_and_makes_the_26th_wait_for_the_window():
    clock = ManualClock()
    lim = SlidingWindowLimiter(25, 5.0, margin=0.2, clock=clock, sleep=clock.sleep)
    for _ in range(25):
        assert lim.acquire() == 0.0
    assert clock.sleeps == []
    assert lim.acquire() == pytest.approx(5.2)
    assert clock.t == pytest.approx(5.2)
    assert lim.waits == 1


def test_limiter_slides_the_window_over_spread_sends():
    clock = ManualClock()
    lim = SlidingWindowLimiter(25, 5.0, margin=0.2, clock=clock, sleep=clock.sleep)
    for i in range(25):
        clock.t = i * 0.1
        lim.acquire()
    clock.t = 2.5
    lim.acquire()  # the 26th: the first send (t=0) must be 5.2 s old
    assert clock.t == pytest.approx(5.2)
    lim.acquire()  # the 27th: the second send (t=0.1) must be 5.2 s old
    assert clock.t == pytest.approx(5.3)
    # Never more than 25 sends in any 5.2 s span.
    assert lim.waits == 2


def test_limiter_after_a_quiet_spell_does_not_wait():
    clock = ManualClock()
    lim = SlidingWindowLimiter(3, 1.0, margin=0.0, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        lim.acquire()
    clock.t = 10
    assert lim.acquire() == 0.0
    assert clock.sleeps == []


@pytest.mark.parametrize("limit", [None, 0])
def test_limiter_disabled(limit):
    clock = ManualClock()
    lim = SlidingWindowLimiter(limit, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        lim.acquire()
    assert clock.sleeps == [] and not lim.enabled


def test_limiter_is_thread_safe():
    clock = ManualClock()
    lock = threading.Lock()

    def sleep(s: float) -> None:
        with lock:
            clock.t += s

    lim = SlidingWindowLimiter(5, 1.0, margin=0.0, clock=clock, sleep=sleep)
    threads = [
        threading.Thread(target=lambda: [lim.acquire() for _ in range(10)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = sorted(lim._sent)
    assert len(sent) == 5
    # 40 sends at 5 a second take at least 7 s of (fake) time.
    assert clock.t >= 7.0 - 1e-9


# --- classification --------------------------------------------------------------------------


def test_get_500_is_retried(rsps, client, sleeps):
    rsps.get(f"{BASE}/x", status=500)
    rsps.get(f"{BASE}/x", json={"ok": True})
    resp = client.request("GET", "/x")
    assert client.json(resp) == {"ok": True}
    assert len(rsps.calls) == 2 and len(sleeps) == 1
    assert client.stats["retries"] == 1 and client.stats["requests"] == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_get_5xx_exhausted_is_transient(rsps, client, sleeps, status):
    rsps.get(f"{BASE}/x", status=status)
    with pytest.raises(TransientError) as exc:
        client.request("GET", "/x")
    assert exc.value.status == status
    assert len(rsps.calls) == 4 and len(sleeps) == 3


@pytest.mark.parametrize(
    "error",
    [refused(), reset(), remote_disconnected(), requests.exceptions.ReadTimeout("slow")],
)
def test_get_transport_errors_are_retried(rsps, client, sleeps, error):
    rsps.get(f"{BASE}/x", body=error)
    rsps.get(f"{BASE}/x", json={})
    client.request("GET", "/x")
    assert len(rsps.calls) == 2


def test_429_honours_retry_after(rsps, client, sleeps):
    rsps.get(f"{BASE}/x", status=429, headers={"Retry-After": "7"})
    rsps.get(f"{BASE}/x", json={})
    client.request("GET", "/x")
    assert sleeps == [7.0]
    assert client.stats["rate_limited"] == 1


def test_backoff_grows_and_is_capped():
    s = RetrySettings(backoff_initial=0.5, backoff_max=3.0)
    assert 0.5 <= s.backoff(1) <= 1.0
    assert 1.0 <= s.backoff(2) <= 1.5
    assert s.backoff(10) == 3.0


@pytest.mark.parametrize("status", [500, 502, 504])
def test_post_5xx_is_unknown_outcome_and_never_resent(rsps, client, sleeps, status):
    rsps.post(f"{BASE}/x", status=status)
    with pytest.raises(UnknownOutcome):
        client.request("POST", "/x", json={"a": 1})
    assert len(rsps.calls) == 1 and sleeps == []


@pytest.mark.parametrize(
    "error",
    [reset(), remote_disconnected(), requests.exceptions.ReadTimeout("slow")],
    ids=["reset", "remote-disconnected", "read-timeout"],
)
def test_post_lost_answer_is_unknown_outcome(rsps, client, sleeps, error):
    rsps.post(f"{BASE}/x", body=error)
    with pytest.raises(UnknownOutcome) as exc:
        client.request("POST", "/x", json={"a": 1})
    assert len(rsps.calls) == 1 and sleeps == []
    assert "may or may not" in str(exc.value)


@pytest.mark.parametrize(
    "first",
    [
        {"status": 429},
        {"status": 503},
        {"body": refused()},
        {"body": requests.exceptions.ConnectTimeout("connect timeout")},
    ],
    ids=["429", "503", "refused", "connect-timeout"],
)
def test_post_certainly_not_applied_is_retried(rsps, client, sleeps, first):
    rsps.post(f"{BASE}/x", **first)
    rsps.post(f"{BASE}/x", json={"n": 1})
    assert client.json(client.request("POST", "/x", json={})) == {"n": 1}
    assert len(rsps.calls) == 2


def test_post_503_exhausted_is_transient(rsps, client):
    rsps.post(f"{BASE}/x", status=503)
    with pytest.raises(TransientError):
        client.request("POST", "/x", json={})
    assert len(rsps.calls) == 4


def test_idempotent_post_may_be_retried_on_lost_answer(rsps, client):
    rsps.post(f"{BASE}/x", body=reset())
    rsps.post(f"{BASE}/x", json={})
    client.request("POST", "/x", data={"a": "b"}, idempotent=True)
    assert len(rsps.calls) == 2


def test_post_200_with_a_body_that_is_not_json_is_unknown_outcome(rsps, client):
    rsps.post(f"{BASE}/x", body="<html>proxy</html>")
    resp = client.request("POST", "/x", json={})
    with pytest.raises(UnknownOutcome):
        client.json(resp)


def test_4xx_is_handed_back(rsps, client, sleeps):
    rsps.get(f"{BASE}/x", status=422, json={"e": 1})
    assert client.request("GET", "/x").status_code == 422
    assert sleeps == []


def test_certainly_not_sent_knows_the_real_shape():
    assert certainly_not_sent(refused())
    assert certainly_not_sent(requests.exceptions.ConnectTimeout())
    assert not certainly_not_sent(reset())
    assert not certainly_not_sent(requests.exceptions.ReadTimeout())


def test_retry_after_parsing():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("junk") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("100000") == 300.0  # capped


# --- auth ------------------------------------------------------------------------------------


def test_401_refreshes_once_and_retries(rsps, sleeps):
    calls: list[bool] = []

    def auth(force: bool) -> dict[str, str]:
        calls.append(force)
        return {"Authorization": f"Bearer tok{len(calls)}"}

    c = HttpClient(BASE, "T", settings=RetrySettings(sleep=sleeps.append), auth=auth)
    rsps.get(f"{BASE}/x", status=401)
    rsps.get(f"{BASE}/x", json={})
    c.request("GET", "/x")
    assert calls == [False, True]
    assert rsps.calls[1].request.headers["Authorization"] == "Bearer tok2"


def test_second_401_is_auth_error(rsps):
    c = HttpClient(BASE, "T", auth=lambda force: {}, auth_hint="do the thing")
    rsps.get(f"{BASE}/x", status=401)
    with pytest.raises(AuthError, match="do the thing") as exc:
        c.request("GET", "/x")
    assert exc.value.exit_code == 3
    assert len(rsps.calls) == 2


def test_401_without_auth_is_handed_back(rsps, client):
    rsps.post(f"{BASE}/token", status=401)
    assert client.request("POST", "/token", authenticate=False).status_code == 401


# --- wire format, limiter, session -----------------------------------------------------------


def test_decimal_goes_out_as_written_and_comes_back_as_decimal(rsps, client):
    rsps.post(f"{BASE}/x", body='{"Total": 1234.50}', content_type="application/json")
    resp = client.request("POST", "/x", json={"Price": Decimal("1234.50")})
    body = rsps.calls[0].request.body
    assert b'"Price": 1234.50' in body
    assert rsps.calls[0].request.headers["Content-Type"] == "application/json"
    total = client.json(resp)["Total"]
    assert isinstance(total, Decimal) and str(total) == "1234.50"


def test_every_attempt_asks_the_limiter(rsps, sleeps):
    clock = ManualClock()
    lim = SlidingWindowLimiter(2, 5.0, margin=0.0, clock=clock, sleep=clock.sleep)
    c = HttpClient(BASE, "T", settings=RetrySettings(sleep=sleeps.append), limiter=lim)
    rsps.get(f"{BASE}/x", status=503)
    rsps.get(f"{BASE}/x", json={})
    c.request("GET", "/x")
    c.request("GET", "/x")  # the third send within 5 s must wait
    assert clock.sleeps == [5.0]
    assert c.stats["limiter_waits"] == 1


def test_session_has_no_urllib3_retries_and_a_user_agent():
    s = make_session()
    assert s.get_adapter("https://x.test").max_retries.total == 0
    assert s.headers["User-Agent"] == USER_AGENT
    assert s.verify is True


def test_stats_by_method(rsps, client):
    rsps.get(f"{BASE}/x", json={})
    rsps.put(f"{BASE}/x", json={})
    client.request("GET", "/x")
    client.request("PUT", "/x", json={})
    assert client.stats["by_method"] == {"GET": 1, "PUT": 1}


def test_links_to_another_host_are_refused(client):
    assert client.url("https://api.example.test/next?c=1") == "https://api.example.test/next?c=1"
    with pytest.raises(TransientError, match="another host"):
        client.url("https://evil.test/next")


# --- plain http ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000", "http://127.5.0.1", "http://localhost:9", "http://[::1]:80", BASE],
)
def test_plain_http_allowed_on_loopback(url):
    refuse_plain_http(url, "limego.base_url")


@pytest.mark.parametrize("url", ["http://example.com", "http://10.0.0.1", "http://localhost.evil"])
def test_plain_http_refused_elsewhere(url):
    with pytest.raises(ConfigError) as exc:
        refuse_plain_http(url, "limego.base_url")
    assert exc.value.key == "limego.base_url"
    with pytest.raises(ConfigError):
        HttpClient(url, "T", config_key="limego.base_url")


# --- redaction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,secret",
    [
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        ("{'Authorization': 'Basic Zm9vOmJhcg=='}", "Zm9vOmJhcg=="),
        ("sent bearer s3cr3tT0ken", "s3cr3tT0ken"),
        ("grant_type=refresh_token&refresh_token=rt-123&x=1", "rt-123"),
        ("client_secret=hunter22", "hunter22"),
        ("url?access_token=at-999", "at-999"),
        ('{"access_token": "at-json", "expires_in": 3600}', "at-json"),
        ("{'refresh_token': 'rt-repr'}", "rt-repr"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJ0ZW5hbnRJZCI6MX0.c2lnbmF0dXJl here", "eyJhbGci"),
    ],
)
def test_redactor_patterns(text, secret):
    out = Redactor().redact(text)
    assert secret not in out and "***" in out


def test_redactor_registered_secret_anywhere():
    r = Redactor()
    r.add("opaque-token-42")
    r.add("abc")  # too short to register: would blank ordinary words
    assert r.redact("x=opaque-token-42; abc") == "x=***; abc"
    assert r.redact("nothing secret, code 2000433") == "nothing secret, code 2000433"


def test_redacting_filter_covers_args_and_exceptions(caplog):
    REDACTOR.add("filter-secret-1")
    logger = logging.getLogger("limefort.http")
    with caplog.at_level(logging.DEBUG, logger="limefort.http"):
        logger.info("token is %s", "filter-secret-1")
        try:
            raise RuntimeError("boom with filter-secret-1")
        except RuntimeError:
            logger.exception("failed")
    assert "filter-secret-1" not in caplog.text
    for rec in caplog.records:
        assert "filter-secret-1" not in rec.getMessage()
        assert "filter-secret-1" not in (rec.exc_text or "")


def test_redacting_filter_on_a_handler():
    REDACTOR.add("handler-secret-9")
    record = logging.LogRecord(
        "other", logging.INFO, "f", 1, "Bearer %s", ("handler-secret-9",), None
    )
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "Bearer ***"


def test_retry_warnings_carry_no_secret_and_name_path_attempt_reason_wait(rsps, caplog):
    REDACTOR.add("retry-secret-77")
    sleeps: list[float] = []
    c = HttpClient(
        BASE,
        "T",
        settings=RetrySettings(sleep=sleeps.append),
        auth=lambda force: {"Authorization": "Bearer retry-secret-77"},
    )
    err = requests.exceptions.ConnectionError(
        "reset while sending Authorization: Bearer retry-secret-77 to /x?access_token=retry-secret-77"
    )
    rsps.get(f"{BASE}/x", body=err)
    rsps.get(f"{BASE}/x", status=503)
    rsps.get(f"{BASE}/x", json={})
    with caplog.at_level(logging.DEBUG):
        c.request("GET", "/x", params={"orgnr": "5566778899"})
    assert "retry-secret-77" not in caplog.text
    assert "5566778899" not in caplog.text  # query strings stay out of logs
    warnings = [r.getMessage() for r in caplog.records if r.name == "limefort.http"]
    assert len(warnings) == 2
    assert "GET /x: attempt 1/6 failed (connection lost); retrying in" in warnings[0]
    assert "attempt 2/6 failed (HTTP 503)" in warnings[1]


def test_limiter_counts_a_slow_request_from_when_its_answer_arrived():
    clock = ManualClock()
    lim = SlidingWindowLimiter(25, 5.0, margin=0.2, clock=clock, sleep=clock.sleep)
    slow, _ = lim.reserve()  # sent at t=0, answered at t=1: Fortnox may have counted it at 1
    clock.t = 1.0
    lim.release(slow)
    for _ in range(24):
        lim.acquire()
    lim.acquire()  # the 26th waits for the earliest slot, now the slow one at t=1
    assert clock.t == pytest.approx(6.2)


def test_every_attempt_releases_its_slot_even_when_the_connection_fails(rsps):
    clock = ManualClock()
    lim = SlidingWindowLimiter(25, 5.0, margin=0.2, clock=clock, sleep=clock.sleep)
    settings = RetrySettings(attempts=4, sleep=lambda s: None)
    client = HttpClient(BASE, "Fortnox", settings=settings, limiter=lim)
    rsps.get(f"{BASE}/3/x", body=requests.exceptions.ConnectionError("reset"))
    rsps.get(f"{BASE}/3/x", json={"ok": True})
    assert client.request("GET", "/3/x").json() == {"ok": True}
    assert len(lim._sent) == 2
