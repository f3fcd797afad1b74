"""One parser per kind of config value (durations, URLs, dates, accounts, label values, ...):
each raises a `ConfigError` naming the key."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limefort.core.errors import ConfigError
from limefort.core.urls import refuse_plain_http

DEFAULT_PATH = Path("limefort.toml")
# At most this many problems are listed, one line each; past that, fixing those comes first.
MAX_PROBLEMS = 10
# The values Lime Go's API takes for a company's status (filter[status]).
COMPANY_STATUSES = ("lead", "prospect", "customer", "churned", "inactive", "unknown")
SECRET_KEYS = (
    ("limego", "client_secret"),
    ("fortnox", "client_secret"),
    ("fortnox", "refresh_token"),
    # A healthchecks-style ping URL is a credential in its path: whoever has it can report
    # this tenant healthy. Only its host is ever shown.
    ("metrics", "ping_url"),
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(key: str, value: Any) -> timedelta:
    """`"10m"`, `"30s"`, `"1h"`, `"1d"`, `"500ms"`. A bare number is refused: `lookback = 10`
    could mean seconds or minutes, and guessing wrong silently widens or narrows every pass."""
    if isinstance(value, bool):
        raise ConfigError(key, f'expected a duration like "10m", got {value!r}')
    if isinstance(value, int | float):
        raise ConfigError(key, _needs_unit(value))
    m = _DURATION.match(str(value))
    if not m:
        raise ConfigError(
            key, f'expected a duration like "30s", "10m", "1h" or "1d", got {value!r}'
        )
    if m.group(2) is None:
        raise ConfigError(key, _needs_unit(m.group(1)))
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    return timedelta(seconds=seconds)


def _needs_unit(number: object) -> str:
    n = str(number).strip()
    return f'{n} has no unit: write "{n}s", "{n}m" or "{n}h" (a duration needs one)'


def check_url(key: str, value: Any) -> str:
    """An absolute https URL; plain http only to loopback (a sandbox), never across a network."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"expected a URL, got {value!r}")
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f"not an absolute http(s) URL: {value!r}")
    refuse_plain_http(url, key)  # the project's one loopback check (limefort.core.urls)
    return url


def parse_start(key: str, value: Any, tz: tzinfo = UTC) -> str:
    """`"now"` or an ISO date/datetime; returned normalised (datetime in UTC, ISO). A date or
    a time without an offset is a calendar day (or wall-clock time) in `tz`: what a person in
    Sweden means by "2026-11-01" is midnight in Stockholm, summer or winter (DESIGN rule 16)."""
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=tz)
        return dt.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=tz).astimezone(UTC).isoformat()
    if not isinstance(value, str):
        raise ConfigError(key, f'expected "now" or an ISO date like "2026-01-31", got {value!r}')
    if value.strip().lower() == "now":
        return "now"
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            key, f'expected "now" or an ISO date like "2026-01-31", got {value!r}'
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(UTC).isoformat()


def end_of_day(value: str, tz: tzinfo) -> datetime:
    """The last instant of the calendar day `value` (YYYY-MM-DD) in `tz`: the next local
    midnight less a microsecond, so a 23- or 25-hour DST day is whole."""
    day = date.fromisoformat(value.strip())
    return (
        datetime(day.year, day.month, day.day, tzinfo=tz)
        + timedelta(days=1)
        - timedelta(microseconds=1)
    )


def _start_value(key: str, v: Any) -> Any:
    """Checked here; read in `sync.timezone` once that key is known (see `load`)."""
    parse_start(key, v)
    return v


def _timezone(key: str, v: Any) -> str:
    name = _nonempty(key, v)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            key, f'{name!r} is not a time zone name (IANA, like "Europe/Stockholm")'
        ) from None
    return name


def resolve_start(start: str, now: datetime) -> datetime:
    return now if start == "now" else datetime.fromisoformat(start)


# Per key: (type description, converter). Converters take (key, raw value).
def _str(key: str, v: Any) -> str:
    if not isinstance(v, str):
        # A secret of the wrong type is still a secret: name its type only.
        shown = "" if tuple(key.split(".", 1)) in SECRET_KEYS else f" {v!r}"
        raise ConfigError(key, f"expected a string, got {type(v).__name__}{shown}")
    return v


def _nonempty(key: str, v: Any) -> str:
    s = _str(key, v).strip()
    if not s:
        raise ConfigError(key, "must not be empty")
    return s


def _opt_str(key: str, v: Any) -> str | None:
    s = _str(key, v).strip()
    return s or None


def _strlist(key: str, v: Any) -> tuple[str, ...]:
    if isinstance(v, str):  # from the environment: comma separated
        v = [p.strip() for p in v.split(",") if p.strip()]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ConfigError(key, f"expected a list of strings, got {v!r}")
    return tuple(v)


def _bool(key: str, v: Any) -> bool:
    if isinstance(v, str):
        low = v.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
    if not isinstance(v, bool):
        raise ConfigError(key, f"expected true or false, got {v!r}")
    return v


def _int(lo: int, hi: int) -> Callable[[str, Any], int]:
    def conv(key: str, v: Any) -> int:
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(key, f"expected a whole number, got {v!r}")
        if not lo <= v <= hi:
            raise ConfigError(key, f"must be between {lo} and {hi}, got {v}")
        return v

    return conv


def _seconds(key: str, v: Any) -> float:
    return parse_duration(key, v).total_seconds()


def _positive_duration(key: str, v: Any) -> timedelta:
    d = parse_duration(key, v)
    if d.total_seconds() <= 0:
        raise ConfigError(key, f"must be longer than zero, got {v!r}")
    return d


def _deal_target(key: str, v: Any) -> str:
    s = _str(key, v).strip().lower()
    if s not in ("invoice", "order", "none"):
        raise ConfigError(key, f'must be "invoice", "order" or "none", got {v!r}')
    return s


def _on_deal_change(key: str, v: Any) -> str:
    s = _str(key, v).strip().lower()
    if s not in ("warn", "update-unbooked"):
        raise ConfigError(key, f'must be "warn" or "update-unbooked", got {v!r}')
    return s


def _cron(key: str, v: Any) -> str | None:
    s = _opt_str(key, v)
    if s is not None and len(s.split()) != 5:
        raise ConfigError(key, f'expected a 5-field cron expression like "*/5 * * * *", got {v!r}')
    return s


def _account(key: str, v: Any) -> str:
    from limefort.mapping import account_problem  # the mapping owns Fortnox's row rules

    s = _str(key, v).strip()
    if problem := account_problem(s):
        raise ConfigError(key, problem)
    return s


def _article(key: str, v: Any) -> str:
    from limefort.mapping import article_problem

    s = _str(key, v).strip()
    if problem := article_problem(s):
        raise ConfigError(key, problem)
    return s


def _path(key: str, v: Any) -> Path:
    return Path(os.path.expanduser(_nonempty(key, v)))


def _opt_path(key: str, v: Any) -> Path | None:
    s = _opt_str(key, v)
    return Path(os.path.expanduser(s)) if s else None


def _opt_url(key: str, v: Any) -> str | None:
    s = _opt_str(key, v)
    if not s:
        return None
    try:
        return check_url(key, s)
    except ConfigError as exc:
        if tuple(key.split(".", 1)) not in SECRET_KEYS:
            raise
        # The problem said with the URL's host only: its path is the secret.
        problem = str(exc).removeprefix(f"{key}: ")
        raise ConfigError(key, problem.replace(repr(s), s).replace(s, url_host(s))) from None


def url_host(url: str) -> str:
    """A secret URL as it may be shown: its scheme and host, the rest elided."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
    return f"{parts.scheme}://{host}/..." if host else "(a URL)"


def _statuses(key: str, v: Any) -> tuple[str, ...]:
    # Lime Go answers 400 to any other filter[status]: that would fail every pass, so say it now.
    values = _strlist(key, v)
    bad = [x for x in values if x not in COMPANY_STATUSES]
    if bad:
        raise ConfigError(
            key,
            f"{', '.join(repr(b) for b in bad)} is not a Lime Go company status "
            f"(known: {', '.join(COMPANY_STATUSES)})",
        )
    return values


def _label_value(key: str, v: Any) -> str | None:
    s = _opt_str(key, v)
    if s is not None and (len(s) > 64 or not s.isprintable()):
        raise ConfigError(
            key, "a label value of at most 64 printable characters, e.g. the customer"
        )
    return s
