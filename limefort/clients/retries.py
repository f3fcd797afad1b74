"""Which failures are tried again and how long to wait: retry settings, the classification of a
failure into retryable, certainly-not-sent, unknown outcome and permanent, and Retry-After."""

from __future__ import annotations

import math
import random
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import requests
import urllib3.exceptions

from limefort.core.urls import is_loopback as is_loopback  # re-exported: the one loopback check
from limefort.core.urls import refuse_plain_http as refuse_plain_http

if TYPE_CHECKING:  # config may import this module (refuse_plain_http): no import cycle
    from limefort.config import HttpConfig

# A hostile or buggy Retry-After must not park a batch job for hours.
MAX_RETRY_AFTER = 300.0


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
