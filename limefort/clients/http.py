"""The HTTP edge: the one place for retries, timeouts, rate limiting, redaction and the
classification of failures into retryable, unknown-outcome and permanent.

Rule 6 (transient is retried) and rule 3 (exactly once for documents) meet here: a read is
retried on any transport failure, but a POST is re-sent only when the server certainly never
applied it (429, 503, or a connection that was never established). Any other lost answer to a
POST is an `UnknownOutcome`, which the sync reconciles by searching for the idempotency key.
"""

from __future__ import annotations

import logging
import math
import random
import re
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
import simplejson
import tenacity
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from limefort import __version__
from limefort.core.errors import AuthError, ConfigError, TransientError, UnknownOutcome
from limefort.core.models import TokenRecord
from limefort.core.urls import authority_problem, origin
from limefort.core.urls import is_loopback as is_loopback  # re-exported: the one loopback check
from limefort.core.urls import refuse_plain_http as refuse_plain_http

if TYPE_CHECKING:  # config may import this module (refuse_plain_http): no import cycle
    from limefort.config import HttpConfig

log = logging.getLogger("limefort.http")

USER_AGENT = f"limefort/{__version__}"
# A hostile or buggy Retry-After must not park a batch job for hours.
MAX_RETRY_AFTER = 300.0
# Statuses worth another try for a request that may safely be repeated.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Statuses after which the server certainly did not apply the request: safe even for a POST.
NOT_APPLIED_STATUSES = frozenset({429, 503})
# The largest answer read into memory. A page of 100 Lime Go companies or 500 Fortnox
# customers is well under 10 MiB; anything past this is a broken or hostile server.
MAX_BODY_BYTES = 32 * 1024 * 1024
# The most pages one listing may follow: 10 000 pages of 100 is a million records, far past
# any CRM limefort serves, and a server that keeps handing out new cursors stops here.
MAX_PAGES = 10_000


class TokenCache(Protocol):
    """Where token providers keep tokens between runs (implemented by the store).

    Lives here rather than in a client module so both clients import it without a cycle.
    """

    def load(self, name: str) -> TokenRecord | None: ...

    def save(self, name: str, record: TokenRecord) -> None:
        """Must be durable (committed) when it returns: a rotated refresh token depends on it."""
        ...


# ---------------------------------------------------------------------------------------------
# Redaction
# ---------------------------------------------------------------------------------------------

_SECRET_NAMES = r"access_token|refresh_token|id_token|client_secret|client_assertion|password"
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization: Bearer abc / "Authorization": "Basic abc" / 'Authorization': 'go-api:abc'
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,}]+"), r"\1***"),
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9\-._~+/]+=*"), r"\1\2***"),
    # form bodies and query strings: access_token=abc&...
    (re.compile(rf"(?i)\b((?:{_SECRET_NAMES})=)[^&\s\"',;]+"), r"\1***"),
    # JSON and Python reprs: "access_token": "abc" / 'refresh_token': 'abc'
    (
        re.compile(rf"(?i)([\"'](?:{_SECRET_NAMES})[\"']\s*:\s*[\"'])[^\"']*"),
        r"\1***",
    ),
    # Anything that looks like a JWT (Fortnox access tokens are JWTs).
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), "***"),
]


class Redactor:
    """Replaces known secrets and secret-shaped text with `***`.

    Patterns catch the usual shapes; registered strings catch a secret wherever it turns up
    (an exception message, a URL, a repr), which no pattern can promise.
    """

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str | None) -> None:
        # Very short strings would blank out ordinary words in every log line.
        if secret and len(secret) >= 6:
            with self._lock:
                self._secrets.add(secret)

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, "***")
        for pattern, repl in _PATTERNS:
            text = pattern.sub(repl, text)
        return text


REDACTOR = Redactor()


class RedactingFilter(logging.Filter):
    """Redacts the formatted message, exception text and stack of every record it sees.

    Attach it to handlers (the CLI does) so records from every logger pass through it; the
    limefort client loggers also carry one so tests and library users are covered too.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or REDACTOR

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is the logger's bug, not ours to hide
            message = str(record.msg)
        redacted = self.redactor.redact(message)
        if redacted != message or record.args:
            record.msg = redacted
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.redact(record.stack_info)
        return True


for _name in ("limefort.http", "limefort.limego", "limefort.fortnox"):
    logging.getLogger(_name).addFilter(RedactingFilter())


# ---------------------------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------------------------


def redirect_target(url: str, location: str) -> str:
    """Where a redirect points, as `scheme://host[:port]` for a message: never its path or
    query, which may carry a secret; never raw text from the server, which may carry escapes."""
    try:
        scheme, host, port = origin(urljoin(url, location))
    except ValueError:
        return "an address that cannot be parsed"
    if not host or authority_problem(location, allow_userinfo=True):
        return "an address that cannot be parsed"
    shown = host if port == {"http": 80, "https": 443}.get(scheme) else f"{host}:{port}"
    return f"{scheme}://{shown}"


# ---------------------------------------------------------------------------------------------
# Rate limiting
# ---------------------------------------------------------------------------------------------


# The limiter's safety margin past Fortnox's window, in seconds. Each request is counted from
# the latest moment Fortnox may have counted it (its answer's arrival) until `window + MARGIN`
# later, and the next request is counted by Fortnox no earlier than it is sent: so the two are
# always at least `window + MARGIN` apart on our clock. The margin only has to cover what our
# clock cannot see: a window that counts both ends (25 in any 5.000 s, inclusive), Fortnox
# stamping requests to the millisecond, and the rate difference of two clocks over 5 s (well
# under 1 ms for NTP-kept ones). 5 ms covers all three with room, and costs 0.1 % of the rate
# where the old 0.2 s cost 4 % (tests/test_limiter_margin.py).
MARGIN = 0.005


@dataclass(order=True, slots=True)
class _Slot:
    """One request the limiter let go: `at` is its send time until its answer arrives (`done`),
    then the answer's arrival time."""

    at: float
    done: bool = False


class SlidingWindowLimiter:
    """At most `limit` requests that Fortnox may count in any `window + margin` seconds.

    Fortnox counts 25 requests in a sliding 5-second window, at some moment between our send
    and its answer. So a request occupies a slot here from the moment it is sent (`reserve`)
    until `window + margin` after its answer arrived (`release`): while it is in flight, Fortnox
    may count it at any moment, so it holds its slot for as long as it takes. A new request goes
    when fewer than `limit` slots are held, and otherwise waits for the earliest one to expire
    (or, when too many are still in flight, for an answer). With several requests in flight
    (the executor's small pool) this still never lets Fortnox see more than `limit` in a window.
    """

    def __init__(
        self,
        limit: int | None = 25,
        window: float = 5.0,
        margin: float = MARGIN,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit or 0
        self.window = window
        self.margin = margin
        self._clock = clock
        self._sleep = sleep
        # Slots that may still be inside Fortnox's window: in flight, or answered less than
        # `window + margin` ago. Never more than `limit` of them.
        self._sent: list[_Slot] = []
        # One reserver at a time, held while it sleeps on purpose: the others would have to
        # wait just as long. The slots have their own lock, so answers are recorded meanwhile.
        self._turn = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        # The round trips of the last answers (seconds), for `credit`.
        self._trips: deque[float] = deque(maxlen=25)
        self.waits = 0
        self.waited = 0.0

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def acquire(self) -> float:
        """Block until a send is allowed, record it as sent and answered now, and return the
        seconds waited (for a caller that does not report the answer)."""
        slot, waited = self.reserve()
        self.release(slot)
        return waited

    def reserve(self) -> tuple[_Slot, float]:
        """Block until a send is allowed; the slot to `release` when the answer is in (or the
        attempt failed), and the seconds waited."""
        if not self.enabled:
            return _Slot(0.0, True), 0.0
        span = self.window + self.margin
        waited = 0.0
        with self._turn:
            while True:
                with self._cond:
                    now = self._clock()
                    self._sent = [s for s in self._sent if not (s.done and s.at + span <= now)]
                    if len(self._sent) < self.limit:
                        slot = _Slot(now)
                        self._sent.append(slot)
                        break
                    if waited == 0.0:
                        self.waits += 1
                    need = len(self._sent) - self.limit + 1
                    answered = sorted(s.at for s in self._sent if s.done)
                    if len(answered) < need:
                        # Too many still in flight: only an answer frees a slot (or starts
                        # its countdown). Re-checked at least once a window.
                        self._cond.wait(timeout=span)
                        after = self._clock()
                        waited += max(after - now, 0.0)
                        continue
                    delay = answered[need - 1] + span - now
                self._sleep(delay)
                waited += delay
        with self._cond:
            self.waited += waited
        return slot, waited

    def release(self, slot: _Slot, round_trip: float | None = None) -> None:
        """The attempt ended: Fortnox counted the request by now. With the `round_trip` of an
        answer that arrived, it counted it earlier still: the answer spent at least part of
        that trip on its way back, and the slot is dated back by half of the fastest recent
        round trip (see `credit`), so each window no longer loses a whole round trip."""
        with self._cond:
            now = self._clock()
            if round_trip is not None:
                self._trips.append(round_trip)
            back = self.credit() if round_trip is not None else 0.0
            slot.at = max(slot.at, now - back)
            slot.done = True
            self._cond.notify_all()

    def credit(self) -> float:
        """How much earlier than its answer an answered request is taken to have been counted:
        half the fastest of the last round trips. Safe as long as Fortnox spends no more than
        half of its fastest round trip working on a request (the rest is the network, which a
        request crosses before Fortnox counts it and an answer after): over a 150 ms network
        that is 75 ms a window regained; on loopback (a trip of a millisecond or two) it is
        below the 5 ms margin."""
        return min(self._trips) / 2 if self._trips else 0.0


# ---------------------------------------------------------------------------------------------
# Retry settings and failure classification
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrySettings:
    attempts: int = 6
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    timeout: float = 30.0
    # Tests pass a recorder here so no test ever really sleeps.
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    @classmethod
    def from_config(
        cls, cfg: HttpConfig, *, sleep: Callable[[float], None] = time.sleep
    ) -> RetrySettings:
        return cls(
            attempts=cfg.attempts,
            backoff_initial=cfg.backoff_initial,
            backoff_max=cfg.backoff_max,
            timeout=cfg.timeout,
            sleep=sleep,
        )

    def backoff(self, attempt: int) -> float:
        """Exponential with jitter: initial * 2**(attempt-1) + U(0, initial), capped."""
        base = self.backoff_initial * (2 ** max(attempt - 1, 0))
        return min(self.backoff_max, base + random.uniform(0, self.backoff_initial))


class _Retry(Exception):
    """One attempt failed in a way that another attempt may fix."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.request_id = request_id


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps: causes, contexts, and the exceptions requests
    and urllib3 tuck into `args` and `MaxRetryError.reason` instead of chaining them."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        linked = [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
        stack.extend(x for x in linked if isinstance(x, BaseException))


def certainly_not_sent(exc: BaseException) -> bool:
    """True when the request never reached the server: no connection, no DNS, no handshake.

    urllib3 wraps refused connections and DNS failures in NewConnectionError and connect
    timeouts in ConnectTimeoutError (its parent); a failed certificate check happens in the
    handshake, before any byte of the request is written.
    """
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    return any(
        isinstance(
            e,
            urllib3.exceptions.ConnectTimeoutError
            | urllib3.exceptions.NewConnectionError
            | ssl.SSLCertVerificationError,
        )
        for e in exception_chain(exc)
    )


def describe_failure(exc: BaseException) -> str:
    """A short reason for logs and messages. Never `str(exc)`: requests puts the full URL,
    query string included, into its messages."""
    chain = list(exception_chain(exc))

    def has(kind: type[BaseException] | tuple[type[BaseException], ...]) -> bool:
        return any(isinstance(e, kind) for e in chain)

    if has(urllib3.exceptions.NameResolutionError):
        return "DNS lookup failed"
    if has(urllib3.exceptions.NewConnectionError) or has(ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timeout"
    if has(ssl.SSLCertVerificationError):
        return "TLS certificate verification failed"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "read timeout"
    if has(ConnectionResetError):
        return "connection reset"
    if has(ConnectionAbortedError):
        return "connection aborted"
    if (
        has(urllib3.exceptions.ProtocolError)
        or has(ConnectionError)
        or isinstance(exc, requests.exceptions.ConnectionError)
    ):
        return "connection lost"
    return type(exc).__name__


_TRANSPORT_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped.

    Anything that is not a usable wait is treated as absent, so the usual backoff applies:
    `nan` and `inf` (float() takes them, sleep() does not), a negative number, a date in the
    past, garbage.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
            seconds = when.timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)


# ---------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP `Date` header (RFC 9110 IMF-fixdate) as an aware UTC datetime, or None."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def make_session() -> requests.Session:
    session = requests.Session()
    # Retries live in HttpClient only: urllib3 must never re-send anything on its own.
    adapter = HTTPAdapter(max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


AuthProvider = Callable[[bool], dict[str, str]]


class HttpClient:
    """requests with limefort's retry, rate-limit and classification rules.

    `auth(force_refresh)` returns the authentication headers; after a 401 it is called once
    with True and the request tried once more; a second 401 is an `AuthError(auth_hint)`.
    """

    def __init__(
        self,
        base_url: str,
        service: str,
        *,
        session: requests.Session | None = None,
        settings: RetrySettings | None = None,
        limiter: SlidingWindowLimiter | None = None,
        auth: AuthProvider | None = None,
        auth_hint: str = "credentials were rejected",
        config_key: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        refuse_plain_http(self.base_url, config_key or f"{service} URL")
        self.service = service
        self.session = session if session is not None else make_session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        self.settings = settings or RetrySettings()
        self.limiter = limiter
        self.auth = auth
        self.auth_hint = auth_hint
        self.config_key = config_key or f"{service} URL"
        self.max_body = MAX_BODY_BYTES
        # The server's clock, from its `Date` headers: the first and the latest seen.
        self.first_date: datetime | None = None
        self.last_date: datetime | None = None
        self._last_date_at = 0.0
        self._here = threading.local()
        self._stats_lock = threading.Lock()
        self._rtt = 0.0
        self._stats: dict[str, Any] = {
            "requests": 0,
            "retries": 0,
            "rate_limited": 0,
            "auth_refreshes": 0,
            "by_method": {},
        }

    # --- the server's clock ------------------------------------------------------------------

    def _note_date(self, resp: requests.Response) -> None:
        """Remember the server's `Date` header: Lime Go's clock is what cursors follow."""
        when = parse_http_date(resp.headers.get("Date"))
        if when is None:
            return
        self.last_date = when
        self._last_date_at = time.monotonic()
        self._here.date = when
        if self.first_date is None:
            self.first_date = when

    def date_here(self) -> datetime | None:
        """The `Date` of the latest answer this thread received: the server's time of a read
        this thread just made (other threads' writes in flight do not move it)."""
        return getattr(self._here, "date", None)

    def server_now(self) -> datetime | None:
        """Now on the server's clock: its latest `Date` plus the time since it came (None
        before any answer carried one)."""
        if self.last_date is None:
            return None
        return self.last_date + timedelta(seconds=time.monotonic() - self._last_date_at)

    # --- stats ------------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        with self._stats_lock:
            out = dict(self._stats)
            out["by_method"] = dict(self._stats["by_method"])
        if self.limiter is not None:
            out["limiter_waits"] = self.limiter.waits
            out["limiter_waited_seconds"] = round(self.limiter.waited, 3)
        return out

    @property
    def round_trip(self) -> float:
        """Recent seconds from sending a request to having its whole answer (a moving average
        of the answers received; 0.0 before the first): the executor puts more than one
        Fortnox write in flight only when this is long."""
        with self._stats_lock:
            return self._rtt

    def _note_round_trip(self, seconds: float) -> None:
        with self._stats_lock:
            self._rtt = seconds if self._rtt == 0.0 else 0.7 * self._rtt + 0.3 * seconds

    def _bump(self, key: str, method: str | None = None) -> None:
        with self._stats_lock:
            self._stats[key] += 1
            if method is not None:
                by = self._stats["by_method"]
                by[method] = by.get(method, 0) + 1

    # --- urls -------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """An absolute URL for `path`; an absolute `path` (a `links.next`) must stay on the
        configured origin, or the bearer token would go to whoever the link names."""
        if not path:
            return self.base_url
        if "://" not in path and "\\" not in path:
            return self.base_url + ("" if path.startswith("/") else "/") + path
        problem = authority_problem(path)
        if problem:
            raise TransientError(self.service, f"refusing to follow a link: {problem}")
        # Compared as requests will read the URL when it sends it, not as urlsplit reads it.
        try:
            theirs = origin(path)
        except ValueError:
            raise TransientError(
                self.service, "refusing to follow a link that cannot be parsed"
            ) from None
        if theirs != origin(self.base_url):
            raise TransientError(
                self.service, f"refusing to follow a link to another host ({theirs[1]})"
            )
        return path

    @staticmethod
    def display(url: str) -> str:
        # Paths only: query strings can carry organisation numbers (personal numbers of sole
        # traders) and, on token endpoints, secrets.
        return urlsplit(url).path or "/"

    # --- bodies -----------------------------------------------------------------------------

    @staticmethod
    def dumps(obj: Any) -> str:
        # use_decimal: Decimal("1234.50") goes on the wire as 1234.50, never via float.
        return simplejson.dumps(obj, use_decimal=True, ensure_ascii=False)

    @staticmethod
    def loads(raw: bytes | str) -> Any:
        """Parse JSON; ValueError for anything that is not JSON, including nesting deep enough
        to exhaust the parser's recursion (simplejson raises RecursionError there)."""
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        try:
            return simplejson.loads(text, use_decimal=True)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None

    def json(self, resp: requests.Response) -> Any:
        """The parsed body of a successful answer (None when empty). A body that is not JSON
        means the answer is as good as lost: for a POST that is an unknown outcome."""
        if not resp.content:
            return None
        try:
            return self.loads(resp.content)
        except (ValueError, UnicodeDecodeError):
            method = (resp.request.method if resp.request is not None else None) or "GET"
            path = self.display(resp.url or "")
            msg = f"{method} {path}: HTTP {resp.status_code} with a body that is not JSON"
            if method.upper() == "POST":
                raise UnknownOutcome(self.service, msg, status=resp.status_code) from None
            raise TransientError(self.service, msg, status=resp.status_code) from None

    @staticmethod
    def json_or_none(resp: requests.Response) -> Any:
        """For error bodies, which may be HTML from a proxy."""
        try:
            return HttpClient.loads(resp.content) if resp.content else None
        except (ValueError, UnicodeDecodeError):  # loads turns RecursionError into ValueError
            return None

    # --- requests ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, str] | str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        authenticate: bool = True,
    ) -> requests.Response:
        """Send with retries; returns any answer that is not retried (2xx, 3xx, 4xx but 401).

        Raises TransientError when retries run out, UnknownOutcome when a non-idempotent
        request's answer was lost, AuthError after a second 401.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in ("GET", "PUT", "HEAD")
        url = self.url(path)
        send_headers = dict(headers or {})
        body: str | bytes | Mapping[str, str] | None = data
        if json is not None:
            body = self.dumps(json).encode("utf-8")
            send_headers.setdefault("Content-Type", "application/json")
        use_auth = authenticate and self.auth is not None

        def send(force_refresh: bool) -> requests.Response:
            return self._send_with_retries(
                method, url, params, body, send_headers, idempotent, use_auth, force_refresh
            )

        resp = send(False)
        self._note_date(resp)
        if resp.status_code == 401 and use_auth:
            self._bump("auth_refreshes")
            log.info(
                "%s %s: HTTP 401 from %s, fetching a new token and trying once more",
                method,
                self.display(url),
                self.service,
            )
            resp = send(True)
            if resp.status_code == 401:
                raise AuthError(self.auth_hint)
        return resp

    def _read_capped(self, resp: requests.Response, method: str, shown: str) -> None:
        """Read the (streamed) body, at most `max_body` bytes after decompression."""
        limit = self.max_body
        try:
            declared = int(resp.headers.get("Content-Length") or 0)
        except ValueError:
            declared = 0
        chunks: list[bytes] = []
        total = declared if declared > limit else 0
        if not total:
            for chunk in resp.iter_content(64 * 1024):
                total += len(chunk)
                if total > limit:
                    break
                chunks.append(chunk)
        if total > limit:
            resp.close()
            mib = 1024 * 1024
            size = f"{limit // mib} MiB" if limit % mib == 0 else f"{limit} bytes"
            msg = f"{method} {shown}: HTTP {resp.status_code} with an answer larger than {size}"
            if method == "POST":
                raise UnknownOutcome(self.service, msg, status=resp.status_code)
            raise TransientError(self.service, msg, status=resp.status_code)
        # What `resp.content` would have done, bounded.
        resp._content = b"".join(chunks)
        resp._content_consumed = True  # type: ignore[attr-defined]

    def _refuse_redirect(self, resp: requests.Response, method: str, shown: str) -> None:
        """A redirect is never followed: the request carries a secret (a bearer token, a
        client secret, a refresh token or an authorization code) that would go along."""
        location = resp.headers.get("Location")
        if not (300 <= resp.status_code < 400 and location is not None):
            return
        target = redirect_target(resp.url or self.base_url, location)
        resp.close()
        raise ConfigError(
            self.config_key,
            f"{self.service} answered {method} {shown} with HTTP {resp.status_code}, a redirect "
            f"to {target}; limefort does not follow redirects (the request carries credentials): "
            "check the URL",
        )

    def _send_with_retries(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        body: str | bytes | Mapping[str, str] | None,
        headers: dict[str, str],
        idempotent: bool,
        use_auth: bool,
        force_refresh: bool,
    ) -> requests.Response:
        shown = self.display(url)
        settings = self.settings
        force = [force_refresh]  # only the first attempt forces a new token

        def attempt() -> requests.Response:
            hdrs = dict(headers)
            if use_auth and self.auth is not None:
                hdrs.update(self.auth(force[0]))
                force[0] = False
            # Every attempt is a request Fortnox counts, so every attempt asks the limiter.
            slot = self.limiter.reserve()[0] if self.limiter is not None else None
            self._bump("requests", method)
            sent, trip = time.monotonic(), None  # trip: the round trip of an answer
            try:
                resp = self.session.request(
                    method,
                    url,
                    params=params,
                    data=body,
                    headers=hdrs,
                    timeout=settings.timeout,
                    # Every request through here carries a secret: see _refuse_redirect.
                    allow_redirects=False,
                    stream=True,
                )
                self._refuse_redirect(resp, method, shown)
                self._read_capped(resp, method, shown)
                self._note_round_trip(trip := time.monotonic() - sent)
            except _TRANSPORT_ERRORS as exc:
                reason = describe_failure(exc)
                if idempotent or certainly_not_sent(exc):
                    raise _Retry(reason) from exc
                lost = UnknownOutcome(
                    self.service,
                    f"{method} {shown}: the answer was lost ({reason}); the request may or "
                    "may not have been applied",
                )
                # A timeout is us giving up, not the server finishing: the write may still land.
                timeouts = (
                    requests.exceptions.Timeout | urllib3.exceptions.TimeoutError | TimeoutError
                )
                lost.in_flight = any(isinstance(e, timeouts) for e in exception_chain(exc))
                raise lost from exc
            finally:
                if slot is not None and self.limiter is not None:
                    self.limiter.release(slot, round_trip=trip)
            return self._classify(resp, method, shown, idempotent)

        def wait(rs: tenacity.RetryCallState) -> float:
            exc = rs.outcome.exception() if rs.outcome is not None else None
            if isinstance(exc, _Retry) and exc.retry_after is not None:
                return exc.retry_after
            return settings.backoff(rs.attempt_number)

        def before_sleep(rs: tenacity.RetryCallState) -> None:
            self._bump("retries")
            exc = rs.outcome.exception() if rs.outcome is not None else None
            reason = exc.reason if isinstance(exc, _Retry) else type(exc).__name__
            delay = rs.next_action.sleep if rs.next_action is not None else 0.0
            level = (
                logging.INFO if isinstance(exc, _Retry) and exc.status == 429 else logging.WARNING
            )
            log.log(
                level,
                "%s %s %s: attempt %d/%d failed (%s); retrying in %.1fs",
                self.service,
                method,
                shown,
                rs.attempt_number,
                settings.attempts,
                reason,
                delay,
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(settings.attempts, 1)),
            wait=wait,
            retry=tenacity.retry_if_exception_type(_Retry),
            before_sleep=before_sleep,
            sleep=settings.sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Retry as exc:
            raise TransientError(
                self.service,
                f"{method} {shown}: {exc.reason} (gave up after {settings.attempts} attempts)",
                status=exc.status,
                request_id=exc.request_id,
            ) from (exc.__cause__ or exc)

    def _classify(
        self, resp: requests.Response, method: str, shown: str, idempotent: bool
    ) -> requests.Response:
        status = resp.status_code
        request_id = resp.headers.get("x-request-id")
        if status == 429:
            self._bump("rate_limited")
            raise _Retry(
                "HTTP 429 rate limited",
                status=status,
                retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                request_id=request_id,
            )
        if status in NOT_APPLIED_STATUSES:
            raise _Retry(
                f"HTTP {status}",
                status=status,
                retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                request_id=request_id,
            )
        if status >= 500:
            if not idempotent:
                # The server may have applied the write before failing to answer.
                raise UnknownOutcome(
                    self.service,
                    f"{method} {shown}: HTTP {status}; the request may or may not have been "
                    "applied",
                    status=status,
                    request_id=request_id,
                )
            if status in RETRYABLE_STATUSES:
                raise _Retry(f"HTTP {status}", status=status, request_id=request_id)
        return resp


# ---------------------------------------------------------------------------------------------
# Listings
# ---------------------------------------------------------------------------------------------


T = TypeVar("T")


def capped_pages(
    pages: Iterable[T], service: str, path: str, *, limit: int = MAX_PAGES
) -> Iterator[T]:
    """The pages of one listing, at most `limit` of them: a server that keeps handing out new
    cursors (or full pages) would otherwise keep a pass going for ever. Wrap a client's
    page generator in it (`yield from capped_pages(self._pages_unbounded(...), ...)`)."""
    for n, page in enumerate(pages, start=1):
        if n > limit:
            raise TransientError(
                service, f"{path}: more than {limit} pages; refusing to follow any further"
            )
        yield page
