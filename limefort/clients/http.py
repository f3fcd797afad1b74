"""The HTTP edge: the one place for retries, timeouts, rate limiting, redaction and the
classification of failures into retryable, unknown-outcome and permanent.

Rule 6 (transient is retried) and rule 3 (exactly once for documents) meet here: a read is
retried on any transport failure, but a POST is re-sent only when the server certainly never
applied it (429, 503, or a connection that was never established). Any other lost answer to a
POST is an `UnknownOutcome`, which the sync reconciles by searching for the idempotency key.

Around it: `redaction` (secrets out of logs and messages), `limiter` (Fortnox's sliding
window), `retries` (what a failure means and how long to wait), `tokens` (the token cache).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
import simplejson
import tenacity
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from limefort import __version__
from limefort.clients.limiter import SlidingWindowLimiter
from limefort.clients.retries import (
    _TRANSPORT_ERRORS,
    RetrySettings,
    _Retry,
    certainly_not_sent,
    describe_failure,
    exception_chain,
    parse_retry_after,
)
from limefort.core.errors import AuthError, ConfigError, TransientError, UnknownOutcome
from limefort.core.urls import authority_problem, origin
from limefort.core.urls import is_loopback as is_loopback  # re-exported: the one loopback check
from limefort.core.urls import refuse_plain_http as refuse_plain_http

log = logging.getLogger("limefort.http")

USER_AGENT = f"limefort/{__version__}"
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
