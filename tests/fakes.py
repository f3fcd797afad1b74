"""In-process transport: `requests` sessions that hand each request straight to a sandbox
app, without sockets or threads.

    sb = Sandbox(seed=7, serve=False)          # no servers; each app gets a reserved address
    with inprocess(sb):                        # every session limefort makes routes to sb
        ...  # Lf(sb, tmp_path).run("sync"), LimeGoClient(...), FortnoxClient(...)

or, for one session: `mount_inprocess(session, sb)`. It works for a serving sandbox too (the
apps are the same; the socket server is bypassed).

The apps, the request log, the fault draws and the added latency are the ones the socket
server uses (`limefort_sandbox.http.begin/answer_delay/complete`). Faults that happen at the
socket are raised as the exceptions requests raises for them over a real connection, so the
client's retry classification is exercised exactly as over HTTP:
- "reset", "ghostdrop", `Drop`: `requests.ConnectionError` wrapping urllib3's
  `ProtocolError("Connection aborted.", RemoteDisconnected(...))`;
- an answer later than the read timeout ("slow", or `latency`): `requests.ReadTimeout`
  after waiting the timeout. One simplification: the server's late write is applied before
  the timeout is raised, not after (over HTTP it lands up to `delay - timeout` seconds later).
`tests/contract/test_transport.py` runs the same checks over both transports.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from email.message import Message
from email.utils import formatdate
from http import HTTPStatus
from http.client import RemoteDisconnected
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import requests
import urllib3
from requests.adapters import BaseAdapter
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

import limefort.clients.http
from limefort_sandbox import Sandbox
from limefort_sandbox.http import App, Request, Response, answer_delay, begin, complete

SERVER_HEADER = "limefort-sandbox"  # what the socket server calls itself


def _read_timeout(timeout: Any) -> float | None:
    if isinstance(timeout, tuple):
        timeout = timeout[1]
    if isinstance(timeout, urllib3.Timeout):
        timeout = timeout.read_timeout
    return None if timeout is None else float(timeout)


def _body_bytes(body: Any) -> bytes | None:
    """The bytes http.client would put on the wire, or None for a streamed (chunked) body."""
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("iso-8859-1")  # as http.client encodes a str body
    return None


class InProcessAdapter(BaseAdapter):
    """Answers every request it is mounted for from `app`, in the calling thread."""

    def __init__(self, app: App, *, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        self.app = app
        self.sleep = sleep

    def send(  # type: ignore[override]
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        url = request.url or ""
        method = (request.method or "GET").upper()
        parts = urlsplit(url)
        body = _body_bytes(request.body)
        if body is None:  # the socket server answers a chunked body so
            return self._response(request, Response(411, b"Length Required", "text/plain"))
        headers = Message()
        headers["Host"] = parts.netloc
        for name, value in request.headers.items():
            if name.lower() != "host":
                headers[name] = value
        if body and "Content-Length" not in headers:
            headers["Content-Length"] = str(len(body))
        req = Request(
            method,
            parts.path or "/",
            parse_qs(parts.query, keep_blank_values=True),
            parts.query,
            headers,
            body,
        )
        record, rule = begin(self.app, req)
        delay = answer_delay(self.app, rule)
        limit = _read_timeout(timeout)
        if limit is not None and delay > limit:
            # The client gives up first; the server still applies the request.
            self.sleep(limit)
            if rule is None or rule.kind != "reset":
                complete(self.app, req, record, rule)
            raise requests.exceptions.ReadTimeout(
                urllib3.exceptions.ReadTimeoutError(
                    None,  # type: ignore[arg-type]
                    url,
                    f"Read timed out. (read timeout={limit})",
                ),
                request=request,
            )
        if delay:
            self.sleep(delay)
        resp = complete(self.app, req, record, rule)
        if resp is None:
            raise requests.exceptions.ConnectionError(
                urllib3.exceptions.ProtocolError(
                    "Connection aborted.",
                    RemoteDisconnected("Remote end closed connection without response"),
                ),
                request=request,
            )
        return self._response(request, resp)

    def _response(self, request: requests.PreparedRequest, resp: Response) -> requests.Response:
        # What the socket server sends: Server and Date first (unless the app has its own
        # Date), then Content-Type, Content-Length and the app's headers.
        raw_headers: list[tuple[str, str]] = [("Server", SERVER_HEADER)]
        if not any(k.lower() == "date" for k in resp.headers):
            raw_headers.append(("Date", formatdate(usegmt=True)))
        raw_headers.append(("Content-Type", resp.content_type))
        raw_headers.append(("Content-Length", str(len(resp.body))))
        raw_headers.extend(resp.headers.items())
        body = b"" if request.method == "HEAD" else resp.body
        try:
            reason = HTTPStatus(resp.status).phrase
        except ValueError:
            reason = ""
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(body),
            headers=urllib3.HTTPHeaderDict(raw_headers),
            status=resp.status,
            reason=reason,
            preload_content=False,
            decode_content=True,
            request_method=request.method,
            request_url=request.url,
        )
        out = requests.Response()
        out.status_code = resp.status
        out.headers = CaseInsensitiveDict(raw.headers)
        out.encoding = get_encoding_from_headers(out.headers)
        out.raw = raw
        out.reason = reason
        out.url = request.url or ""
        extract_cookies_to_jar(out.cookies, request, raw)  # type: ignore[arg-type]
        out.request = request
        out.connection = self
        return out

    def close(self) -> None:
        pass


def apps_of(sandbox: Sandbox) -> dict[str, App]:
    """Each app of the sandbox by the origin its clients are configured with."""
    return {sandbox.limego_url: sandbox.limego, sandbox.fortnox_url: sandbox.fortnox}


def mount_inprocess(session: requests.Session, *sandboxes: Sandbox) -> requests.Session:
    """Route this session's requests to the sandboxes' apps in-process; other URLs keep
    the session's own adapters."""
    for sb in sandboxes:
        for origin, app in apps_of(sb).items():
            session.mount(origin + "/", InProcessAdapter(app))
    return session


class Routes:
    """The sandboxes that sessions made by `limefort.clients.http.make_session` reach in-process while
    `inprocess()` is active; `add` more at any time (each new session sees them all)."""

    def __init__(self, sandboxes: tuple[Sandbox, ...] = ()) -> None:
        self.sandboxes: list[Sandbox] = list(sandboxes)

    def add(self, sandbox: Sandbox) -> Sandbox:
        self.sandboxes.append(sandbox)
        return sandbox


@contextmanager
def inprocess(*sandboxes: Sandbox) -> Iterator[Routes]:
    """Every session limefort builds (`limefort.clients.http.make_session`) while inside routes the
    sandboxes' addresses in-process."""
    routes = Routes(sandboxes)
    original = limefort.clients.http.make_session

    def make_session() -> requests.Session:
        return mount_inprocess(original(), *routes.sandboxes)

    with mock.patch.object(limefort.clients.http, "make_session", make_session):
        yield routes
