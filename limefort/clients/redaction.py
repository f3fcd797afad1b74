"""Secrets out of every log line and message: tokens, client secrets and Authorization headers
are replaced by *** before text leaves limefort (the filter sits on the clients' loggers)."""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING

from limefort.core.urls import is_loopback as is_loopback  # re-exported: the one loopback check
from limefort.core.urls import refuse_plain_http as refuse_plain_http

if TYPE_CHECKING:  # config may import this module (refuse_plain_http): no import cycle
    pass


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
