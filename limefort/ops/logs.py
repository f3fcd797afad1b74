"""Logging set-up: text or JSON lines on stderr, every line passed through the redactor,
each message made one printable line and personnummer masked (`limefort.core.privacy`).

Secrets never reach a handler: the redacting filter sits on the handler, so records from any
library (requests, urllib3, tenacity, apscheduler) are cleaned too.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from limefort.clients.redaction import REDACTOR, RedactingFilter
from limefort.core.privacy import mask_personnummer, printable

# A query string in a URL: up to whitespace or a quote (urllib3 quotes its request line).
_QUERY = re.compile(r"\?[^\s'\"]*")
# Loggers of the HTTP libraries under limefort: their request lines carry whole URLs.
_HTTP_LIBRARIES = ("urllib3", "requests")

_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


class LibraryUrlFilter(logging.Filter):
    """Query strings out of the HTTP libraries' own lines (urllib3 logs every request line at
    debug): they hold organisation numbers and search terms that limefort's own logging never
    shows. Secrets in the path (the ping URL) are the redactor's job, which runs after this."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(_HTTP_LIBRARIES):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is the library's bug, not ours to hide
            message = str(record.msg)
        record.msg = _QUERY.sub("?...", message)
        record.args = None
        return True


class ShownFilter(logging.Filter):
    """A record's message as one printable line: a service's text inside it (an error
    message, a company name) cannot break the line or send escapes to the terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is the caller's bug, not ours to hide
            message = str(record.msg)
        record.msg = printable(message)
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    """One object a line: time, level, event, logger, and any `extra=` fields (key, counts)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        for k, v in vars(record).items():
            if k not in _STANDARD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        # Personnummer masked over the whole line, `extra=` fields and tracebacks included.
        return mask_personnummer(REDACTOR.redact(json.dumps(out, default=str, ensure_ascii=False)))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return mask_personnummer(REDACTOR.redact(super().format(record)))


def setup(verbosity: int, fmt: str = "text", stream: Any = None) -> None:
    """verbosity: -1 quiet (errors), 0 warnings, 1 info (-v), 2 debug (-vv)."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(LibraryUrlFilter())
    handler.addFilter(ShownFilter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    # Library chatter only at -vv; urllib3 at debug would print request lines.
    for noisy in ("urllib3", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
