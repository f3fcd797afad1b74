"""Server plumbing shared by the sandbox Lime Go and Fortnox servers.

Each server is an `App` (routing and behaviour, no sockets) run by a `Server` (a stdlib
`ThreadingHTTPServer` on a daemon thread, HTTP/1.1 keep-alive). The plumbing owns what is
the same for both: reading the request, the request log, added latency, and fault injection,
including the faults that must happen at the socket (a reset, or a lost answer after the
write was applied).
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from decimal import Decimal
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from limefort_sandbox.faults import FaultRule, Faults


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    status: int | None
    fault: str | None
    at: float
    body: dict[str, Any] | None


@dataclass
class Request:
    method: str
    path: str  # without the query string
    query: dict[str, list[str]]  # every value of every parameter, in order
    raw_query: str
    headers: Message
    body: bytes

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class Drop(Exception):
    """Raised by an app to close the connection without answering."""


# ---------------------------------------------------------------------------------------------
# JSON with exact decimals (Fortnox amounts are parsed as Decimal and must come back unrounded)
# ---------------------------------------------------------------------------------------------


def dumps(obj: Any) -> str:
    """JSON text of `obj`; `Decimal` values are written as JSON numbers, digit for digit."""
    parts: list[str] = []
    _encode(obj, parts)
    return "".join(parts)


def _encode(obj: Any, out: list[str]) -> None:
    if isinstance(obj, str):
        out.append(json.dumps(obj, ensure_ascii=False))
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        out.append(str(int(obj)))
    elif isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError(f"cannot encode {obj!r} as JSON")
        out.append(str(obj))
    elif isinstance(obj, float):
        out.append(json.dumps(obj))
    elif isinstance(obj, dict):
        out.append("{")
        first = True
        for k, v in obj.items():
            if not first:
                out.append(",")
            first = False
            out.append(json.dumps(str(k), ensure_ascii=False))
            out.append(":")
            _encode(v, out)
        out.append("}")
    elif isinstance(obj, list | tuple):
        out.append("[")
        for i, v in enumerate(obj):
            if i:
                out.append(",")
            _encode(v, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_decimal(data: bytes) -> Any:
    """Parse JSON with every non-integer number as Decimal; NaN/Infinity are refused."""
    return json.loads(data.decode("utf-8"), parse_float=Decimal, parse_constant=_no_constants)


def json_response(status: int, obj: Any, content_type: str = "application/json", **headers: str):
    return Response(status, dumps(obj).encode("utf-8"), content_type, dict(headers))


# ---------------------------------------------------------------------------------------------
# The app: behaviour without sockets
# ---------------------------------------------------------------------------------------------


class App:
    """Base for a sandbox server's behaviour. Subclasses implement `handle` and
    `fault_response`; the plumbing calls them."""

    #: paths under this prefix are "API calls" for `count()`
    api_prefix = "/"

    def __init__(self, fault_seed: int = 0, latency: float = 0.0) -> None:
        self.faults = Faults(fault_seed)
        self.requests: list[RequestRecord] = []
        self.latency = latency
        self.base_url = ""  # set when the server is bound
        self.server_errors: list[str] = []  # tracebacks of sandbox bugs (answered 500)
        self.lock = threading.RLock()

    # --- to implement ---
    def handle(self, req: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    def fault_response(self, kind: str) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    def decorate(self, resp: Response) -> None:
        """Last touch on every answer (e.g. a request id header)."""

    # --- log ---
    def reset_log(self) -> None:
        self.requests.clear()

    def count(
        self, method: str | None = None, path_prefix: str | None = None, status: int | None = None
    ) -> int:
        """API calls in the log, optionally only those with this method, path prefix, status."""
        n = 0
        for r in list(self.requests):
            if not r.path.startswith(self.api_prefix):
                continue
            if method is not None and r.method != method.upper():
                continue
            if path_prefix is not None and not r.path.startswith(path_prefix):
                continue
            if status is not None and r.status != status:
                continue
            n += 1
        return n

    def body_for_log(self, req: Request) -> dict[str, Any] | None:
        if not req.body:
            return None
        ctype = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        try:
            if ctype == "application/x-www-form-urlencoded":
                form = parse_qs(req.body.decode("utf-8"), keep_blank_values=True)
                out = {k: v[-1] for k, v in form.items()}
                for secret in ("client_secret",):
                    if secret in out:
                        out[secret] = "***"
                return out
            parsed = loads_decimal(req.body)
        except (ValueError, UnicodeDecodeError):
            return None
        return parsed if isinstance(parsed, dict) else None

    def internal_error(self, req: Request) -> Response:
        tb = traceback.format_exc()
        self.server_errors.append(tb)
        print(f"sandbox: error answering {req.method} {req.path}:\n{tb}", file=sys.stderr)
        return self.fault_response("500")


# ---------------------------------------------------------------------------------------------
# One request through an app: shared by the socket server and the in-process transport
# ---------------------------------------------------------------------------------------------


def begin(app: App, req: Request) -> tuple[RequestRecord, FaultRule | None]:
    """Log the request and draw its fault (if any). The record's status is filled in by
    `complete`; it stays None when no answer is given."""
    rule: FaultRule | None = app.faults.pick(req.method, req.path)
    record = RequestRecord(
        method=req.method,
        path=req.path,
        query={k: v[-1] for k, v in req.query.items()},
        status=None,
        fault=rule.kind if rule else None,
        at=time.time(),
        body=app.body_for_log(req),
    )
    app.requests.append(record)
    return record, rule


def answer_delay(app: App, rule: FaultRule | None) -> float:
    """Seconds before the answer (or the reset) leaves: the app's latency, plus the delay
    of a "slow" fault. The request is applied after this wait, as a slow server would."""
    delay = app.latency
    if rule is not None and rule.kind == "slow":
        delay += rule.delay
    return delay


def complete(
    app: App, req: Request, record: RequestRecord, rule: FaultRule | None
) -> Response | None:
    """Apply the request (unless the fault says it never arrived) and return the answer, or
    None when the connection must be closed without one (reset, ghostdrop, `Drop`)."""
    kind = rule.kind if rule else None
    if kind == "reset":
        return None
    if kind in ("429", "500", "503"):
        resp = app.fault_response(kind)
    else:
        try:
            resp = app.handle(req)
        except Drop:
            return None
        except Exception:
            resp = app.internal_error(req)
        if kind == "ghost500":
            resp = app.fault_response("500")
        elif kind == "ghostdrop":
            return None
    record.status = resp.status
    app.decorate(resp)
    return resp


# ---------------------------------------------------------------------------------------------
# The plumbing
# ---------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
    server_version = "limefort-sandbox"

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle's algorithm holds the
        # second until the client's delayed ACK (~40 ms a request).
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the app keeps its own request log

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _drop(self) -> None:
        """Close the connection without a byte of answer (looks like a reset to the client)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.connection.close()

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if length < 0:
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        app = self.server.app
        body = self._read_body()
        if body is None:  # chunked or malformed: nobody we serve sends that
            self._send(Response(411, b"Length Required", "text/plain"))
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        req = Request(self.command, parts.path, query, parts.query, self.headers, body)
        record, rule = begin(app, req)
        delay = answer_delay(app, rule)
        if delay:
            time.sleep(delay)
        resp = complete(app, req, record, rule)
        if resp is None:
            self._drop()
            return
        self._send(resp)

    def _send(self, resp: Response) -> None:
        try:
            if any(k.lower() == "date" for k in resp.headers):
                # The app keeps its own clock (Lime Go's clock offset): its Date, not ours.
                self.log_request(resp.status)
                self.send_response_only(resp.status)
                self.send_header("Server", self.version_string())
            else:
                self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(resp.body)))
            for k, v in resp.headers.items():
                self.send_header(k, v)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], app: App) -> None:
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client went away: nothing to report
            return
        super().handle_error(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._conns_lock:
                self._conns.discard(request)

    def close_all(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)


class Server:
    """Runs an `App` on host:port (0 = any free port) in a daemon thread."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The server's address (still the last one after `stop()`)."""
        if self._httpd is not None:
            host = self.host if ":" not in self.host else f"[{self.host}]"
            self._url = f"http://{host}:{self._httpd.server_address[1]}"
        if self._url is None:
            raise RuntimeError("the sandbox server is not started")
        return self._url

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> None:
        if self._httpd is not None:
            return
        self._httpd = _HTTPServer((self.host, self.port), self.app)
        self.app.base_url = self.url
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-{type(self.app).__name__}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        stop_all([self])


def stop_all(servers: list[Server] | tuple[Server, ...]) -> None:
    """Stop servers together (each waits up to a poll interval for its loop to notice)."""
    running = [(s, s._httpd, s._thread) for s in servers if s._httpd is not None]
    for s, _, _ in running:
        s._httpd = None
    waits = [threading.Thread(target=httpd.shutdown, daemon=True) for _, httpd, _ in running]
    for w in waits:
        w.start()
    for w in waits:
        w.join(timeout=5)
    for _, httpd, thread in running:
        assert httpd is not None
        httpd.close_all()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
