"""Every config key: its default and its parser, by section. `docs/design.md` lists them all
(a test keeps the two the same)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from limefort.config.values import (
    _account,
    _article,
    _bool,
    _cron,
    _deal_target,
    _int,
    _label_value,
    _nonempty,
    _on_deal_change,
    _opt_path,
    _opt_str,
    _opt_url,
    _path,
    _positive_duration,
    _seconds,
    _start_value,
    _statuses,
    _strlist,
    _timezone,
    check_url,
    parse_duration,
)

_REQUIRED = object()

SCHEMA: dict[str, dict[str, tuple[Any, Callable[[str, Any], Any]]]] = {
    "limego": {
        "base_url": (_REQUIRED, check_url),
        "client_id": (_REQUIRED, _nonempty),
        "client_secret": (_REQUIRED, _nonempty),
        "customer_statuses": (["customer"], _statuses),
        "won_stage_categories": (["won"], _strlist),
        "won_stage_names": ([], _strlist),
        "scope": ("companies:read deals:read contacts:read reference:read", _nonempty),
        "page_size": (100, _int(1, 100)),
    },
    "fortnox": {
        "api_url": ("https://api.fortnox.se", check_url),
        "token_url": ("https://apps.fortnox.se/oauth-v1/token", check_url),
        "auth_url": ("https://apps.fortnox.se/oauth-v1/auth", check_url),
        "client_id": (_REQUIRED, _nonempty),
        "client_secret": (_REQUIRED, _nonempty),
        "tenant_id": ("", _opt_str),
        "refresh_token": ("", _opt_str),
        "scopes": (["customer", "invoice", "order", "companyinformation"], _strlist),
        "redirect_uri": ("http://127.0.0.1:8765/callback", check_url),
        "rate_limit": (25, _int(0, 10_000)),
        "rate_window": ("5s", _seconds),
    },
    "sync": {
        "deal_target": ("invoice", _deal_target),
        "start": ("now", _start_value),
        "timezone": ("Europe/Stockholm", _timezone),
        "lookback": ("10m", parse_duration),
        "interval": ("5m", _positive_duration),
        "cron": ("", _cron),
        "article_number": ("", _article),
        "account_number": ("", _account),
        "require_orgnr": (False, _bool),
        "require_positive_value": (True, _bool),
        "on_deal_change": ("warn", _on_deal_change),
        "writer_lease": ("15m", _positive_duration),
    },
    "state": {"path": ("limefort.db", _path), "busy_timeout": ("10s", _seconds)},
    "metrics": {
        "textfile": ("", _opt_path),
        "ping_url": ("", _opt_url),
        "tenant": ("", _label_value),
    },
    "http": {
        "timeout": ("30s", _seconds),
        "attempts": (6, _int(1, 20)),
        "backoff_initial": ("0.5s", _seconds),
        "backoff_max": ("30s", _seconds),
    },
}
MAPPING_SECTIONS = ("customer", "document", "countries", "vat_type")
