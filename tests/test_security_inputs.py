"""Issue 19, item 3: malformed answers are malformed answers, never a crash (exit 70).

A 429 whose Retry-After is `nan`, negative, a past date or garbage is a 429 without one; JSON
nested deeper than the parser can recurse is not JSON; an answer past the size cap is not read;
a listing stops after a bounded number of pages."""

from __future__ import annotations

import gzip
from typing import Any

import pytest
from conftest import Lf, Recorder

from limefort.clients import http as http_mod
from limefort.clients.http import HttpClient, capped_pages
from limefort.clients.retries import MAX_RETRY_AFTER, RetrySettings, parse_retry_after
from limefort.core.errors import TransientError, UnknownOutcome
from limefort_sandbox import Sandbox
from limefort_sandbox.http import Response

BAD_RETRY_AFTER = ["nan", "NaN", "inf", "-5", "Wed, 21 Oct 2015 07:28:00 GMT", "garbage", "1e999"]
NESTED = b"[" * 100_000 + b"]" * 100_000


def answer_first(app: Any, prefix: str, times: int, make: Any) -> list[int]:
    """The first `times` requests under `prefix` get `make(req)` instead of the real answer."""
    handle = app.handle
    hits: list[int] = []

    def wrapped(req: Any) -> Any:
        if req.path.startswith(prefix) and len(hits) < times:
            hits.append(1)
            return make(req)
        return handle(req)

    app.handle = wrapped
    return hits


@pytest.mark.parametrize("value", BAD_RETRY_AFTER)
def test_retry_after_that_is_no_usable_wait_is_absent(value: str) -> None:
    assert parse_retry_after(value, now=1445412480.0 + 3600) is None


def test_retry_after_that_is_usable_still_counts() -> None:
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("100000") == MAX_RETRY_AFTER


@pytest.mark.parametrize("value", ["nan", "-5", "Wed, 21 Oct 2015 07:28:00 GMT", "garbage"])
def test_a_pass_goes_on_through_429s_with_a_bad_retry_after(
    lf: Lf, sandbox: Sandbox, value: str
) -> None:
    def limited(req: Any) -> Response:
        return Response(429, b'{"message": "slow down"}', headers={"Retry-After": value})

    # Two on Lime Go's listing and two on Fortnox's API: each is retried with the backoff.
    lime = answer_first(sandbox.limego, "/api/v1/", 2, limited)
    fortnox = answer_first(sandbox.fortnox, "/3/", 2, limited)
    r = lf.run("sync")
    assert r.code in (0, 1), r.err
    assert len(lime) == 2 and len(fortnox) == 2
    assert "internal error" not in r.err
    assert sandbox.fortnox.invoices  # the pass did its work


@pytest.mark.parametrize("where", ["limego", "fortnox"])
def test_deeply_nested_json_is_not_json(lf: Lf, sandbox: Sandbox, where: str) -> None:
    app, prefix = (sandbox.limego, "/api/v1/") if where == "limego" else (sandbox.fortnox, "/3/")
    answer_first(app, prefix, 1_000, lambda req: Response(200, NESTED))
    r = lf.run("sync")
    assert r.code not in (0, 70), r.err
    assert "internal error" not in r.err and "RecursionError" not in r.err
    assert "not JSON" in r.err


def test_nested_json_in_an_error_body_is_just_an_unreadable_body() -> None:
    assert HttpClient.json_or_none(_response(400, NESTED)) is None
    with pytest.raises(ValueError):
        HttpClient.loads(NESTED)


def _response(status: int, body: bytes) -> Any:
    import requests

    resp = requests.Response()
    resp.status_code = status
    resp._content = body
    return resp


# --- the size cap --------------------------------------------------------------------------


def client_for(rec: Recorder, limit: int) -> HttpClient:
    client = HttpClient(rec.url, "T", settings=RetrySettings(attempts=1, sleep=lambda s: None))
    client.max_body = limit
    return client


def test_an_answer_within_the_cap_is_read_whole(recorder: Recorder) -> None:
    recorder.reply = (200, {"Content-Type": "application/json"}, b'{"a": "' + b"x" * 900 + b'"}')
    resp = client_for(recorder, 1000).request("GET", "/x")
    assert len(resp.content) == 909 and resp.json()["a"] == "x" * 900


@pytest.mark.parametrize("declared", [True, False])
def test_an_answer_past_the_cap_is_not_read(recorder: Recorder, declared: bool) -> None:
    body = b"[" + b"1," * 5000 + b"1]"
    headers = {} if declared else {"Transfer-Encoding": "chunked"}
    payload = body if declared else f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    recorder.reply = (200, headers, payload)
    with pytest.raises(TransientError, match="larger than 1000 bytes"):
        client_for(recorder, 1000).request("GET", "/x")
    with pytest.raises(UnknownOutcome, match="larger than"):
        client_for(recorder, 1000).request("POST", "/x", json={})


def test_the_cap_counts_decompressed_bytes(recorder: Recorder) -> None:
    bomb = gzip.compress(b" " * 200_000)
    recorder.reply = (200, {"Content-Encoding": "gzip"}, bomb)
    assert len(bomb) < 1000
    with pytest.raises(TransientError, match="larger than"):
        client_for(recorder, 10_000).request("GET", "/x")


def test_a_chained_gzip_bomb_is_refused_within_the_cap(recorder: Recorder) -> None:
    """`Content-Encoding: gzip, gzip`: 64 MiB of blanks in a few hundred bytes. urllib3 from
    its floor (2.6.3) decodes it in bounded steps, so the cap sees it before memory does;
    urllib3 2.5 inflated the whole chain first (2 GB from 1.8 KB, past 40 s)."""
    import urllib3
    from packaging.version import Version

    assert Version(urllib3.__version__) >= Version("2.6.3")
    bomb = gzip.compress(gzip.compress(b" " * (64 << 20)))
    assert len(bomb) < 100_000
    recorder.reply = (200, {"Content-Encoding": "gzip, gzip"}, bomb)
    with pytest.raises(TransientError, match="larger than"):
        client_for(recorder, 32 << 20).request("GET", "/x")


def test_a_pass_against_answers_past_the_cap_fails_cleanly(
    lf: Lf, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_mod, "MAX_BODY_BYTES", 200)
    r = lf.run("sync")
    assert r.code not in (0, 70), r.err
    assert "larger than 200 bytes" in r.err and "internal error" not in r.err


# --- the page cap --------------------------------------------------------------------------


def test_a_listing_stops_after_the_page_cap() -> None:
    endless = iter(range(10**9))
    got = []
    with pytest.raises(TransientError, match="more than 5 pages"):
        for page in capped_pages(endless, "T", "/x", limit=5):
            got.append(page)
    assert got == [0, 1, 2, 3, 4]
    assert list(capped_pages(range(5), "T", "/x", limit=5)) == [0, 1, 2, 3, 4]
