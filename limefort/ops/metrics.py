"""What a pass tells the monitoring: a Prometheus textfile (for node_exporter's textfile
collector) and healthchecks.io-style pings. Monitoring being down must never fail a pass, so
every write and ping here logs a warning instead of raising.

The textfile is written by prometheus_client (a registry of gauges and its
`write_to_textfile`), so the exposition format, label escaping and the atomic rename are the
library's, not ours."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

if TYPE_CHECKING:  # imported where the textfile is made: a pass without one never loads it
    from prometheus_client import CollectorRegistry

from limefort.clients.redaction import REDACTOR

log = logging.getLogger("limefort.metrics")

# The record kinds always written, as 0 when a pass had none: a series that vanishes makes an
# alert on it go quiet instead of firing.
RECORD_KINDS = (
    "customers_created",
    "customers_updated",
    "documents_created",
    "quarantined",
    "pending",
    "failed",
)
# Counts with a metric of their own rather than a `kind` of limefort_records_total.
_OWN_METRIC = {
    "fortnox_requests",
    "rate_limited",
    "drift",
    "duplicates",
    "other_writer",
    "in_quarantine",
    "with_warnings",
    "field_warnings",  # the pass's own count of them; limefort_warning_records says it
}


@dataclass
class PassMetrics:
    started_at: float  # Unix time, seconds
    finished_at: float
    exit_code: int
    counts: Mapping[str, int] = field(default_factory=dict)
    # currency -> payments.owed_by_currency's row: what limefort's invoices still owe, as the
    # index Fortnox's invoice list fills says (None: invoices are not limefort's target).
    owed: Mapping[str, Mapping[str, Decimal]] | None = None


def build_registry(
    m: PassMetrics, *, last_success: float | None, tenant: str | None = None
) -> CollectorRegistry:
    """The gauges for the last pass, in a registry of their own.

    Everything is a gauge describing the last pass (not a running counter), so a restart or a
    second state file never makes a rate() jump. `last_success` is left out when no pass ever
    succeeded, so `absent()` can alert on it. `tenant` (the config's `[metrics] tenant`) is a
    label on every series, so one node_exporter can collect several tenants' files; it is one
    fixed value per config, which keeps the number of series bounded.
    """
    from prometheus_client import CollectorRegistry, Gauge

    reg = CollectorRegistry(auto_describe=True)
    base = {"tenant": tenant} if tenant else {}
    names = list(base)
    counts = dict(m.counts)

    def gauge(name: str, help_text: str, value: float) -> None:
        g = Gauge(name, help_text, names, registry=reg)
        (g.labels(**base) if names else g).set(value)

    gauge(
        "limefort_last_run_timestamp_seconds",
        "When the last pass finished (Unix time).",
        m.finished_at,
    )
    if last_success is not None:
        gauge(
            "limefort_last_success_timestamp_seconds",
            "When the last pass that exited 0 finished (Unix time).",
            last_success,
        )
    gauge(
        "limefort_last_run_duration_seconds",
        "How long the last pass took.",
        max(0.0, m.finished_at - m.started_at),
    )
    gauge(
        "limefort_last_run_exit_code",
        "Exit code of the last pass: 0 ok, 1 some records quarantined or failed, 3 auth, "
        "4 another installation writes to the tenant, 75 locked.",
        m.exit_code,
    )
    records = Gauge(
        "limefort_records_total",
        "Records the last pass handled, by kind.",
        [*names, "kind"],
        registry=reg,
    )
    for kind in list(RECORD_KINDS) + sorted(set(counts) - set(RECORD_KINDS) - _OWN_METRIC):
        records.labels(**base, kind=kind).set(counts.get(kind, 0))
    gauge(
        "limefort_fortnox_requests",
        "Requests the last pass made to the Fortnox API.",
        counts.get("fortnox_requests", 0),
    )
    gauge(
        "limefort_fortnox_rate_limited_total",
        "Fortnox answers of 429 Too Many Requests during the last pass.",
        counts.get("rate_limited", 0),
    )
    gauge(
        "limefort_drift_records",
        "Deals changed in Lime Go after their Fortnox document was made, not yet acknowledged.",
        counts.get("drift", 0),
    )
    gauge(
        "limefort_quarantined_records",
        "Records in quarantine after the last pass, however long ago they were quarantined "
        '(limefort_records_total{kind="quarantined"} counts only the last pass\'s).',
        counts.get("in_quarantine", 0),
    )
    gauge(
        "limefort_warning_records",
        "Records Fortnox holds other than Lime Go has them (a value cut, cleaned away, left "
        "out or blank), or with another warning in `limefort status`.",
        counts.get("with_warnings", 0),
    )
    gauge(
        "limefort_duplicate_records",
        "Records Fortnox holds more than once (two documents for a deal, two customers for a "
        "company), not yet acknowledged.",
        counts.get("duplicates", 0),
    )
    gauge(
        "limefort_other_writer",
        "1 when the last pass stopped because another installation writes to this tenant.",
        counts.get("other_writer", 0),
    )
    if m.owed is not None:
        _owed_gauges(reg, names, base, m.owed)
    return reg


# (metric, help, payments.owed_by_currency field). "Unpaid" is everything still owed, overdue
# included; "overdue" the part past its due date. One series per currency: amounts in two
# currencies are never added. SEK is always written (as 0), so an alert on it never goes quiet.
_OWED = (
    (
        "limefort_unpaid_invoices",
        "Invoices limefort made that are not paid in full.",
        "unpaid_count",
    ),
    (
        "limefort_unpaid_amount",
        "What those invoices still owe (Fortnox's Balance).",
        "unpaid_amount",
    ),
    ("limefort_overdue_invoices", "Unpaid invoices past their due date.", "overdue_count"),
    ("limefort_overdue_amount", "What the overdue invoices still owe.", "overdue_amount"),
)


def _owed_gauges(
    reg: CollectorRegistry,
    names: list[str],
    base: dict[str, str],
    owed: Mapping[str, Mapping[str, Decimal]],
) -> None:
    from prometheus_client import Gauge

    for name, help_text, field_name in _OWED:
        g = Gauge(name, help_text, [*names, "currency"], registry=reg)
        for currency in sorted({"SEK", *owed}):
            g.labels(**base, currency=currency).set(
                float(owed.get(currency, {}).get(field_name, 0))
            )


def render_textfile(
    m: PassMetrics, *, last_success: float | None, tenant: str | None = None
) -> str:
    """The Prometheus text exposition format (0.0.4) for the last pass."""
    from prometheus_client import generate_latest

    reg = build_registry(m, last_success=last_success, tenant=tenant)
    return generate_latest(reg).decode("utf-8")


def write_textfile(path: Path, registry: CollectorRegistry) -> None:
    """Replace `path` atomically with the registry's metrics, mode 0644 (node_exporter runs as
    another user), never raising: the collector may read at any moment and sees the old file or
    the new one (prometheus_client writes a temp file beside it, not ending in .prom, and
    renames it)."""
    # The temp file is created under this umask; 0644 from the start, so there is no moment
    # when the new file is unreadable to the collector.
    from prometheus_client import write_to_textfile

    old_umask = os.umask(0o022)
    try:
        write_to_textfile(str(path), registry)
    except Exception as exc:
        log.warning("could not write the metrics textfile %s: %s", path, exc)
    finally:
        os.umask(old_umask)


class Pinger:
    """healthchecks.io-style pings: `{url}/start` when a pass begins, `{url}/{exit_code}` when it
    ends. With no URL every call does nothing. The URL is a credential (anyone holding it can
    report for us), so only its host is ever logged."""

    def __init__(self, url: str | None, *, timeout: float = 5.0, session: Any = None) -> None:
        self.url = url.rstrip("/") if url else None
        self.timeout = timeout
        self._session = session
        if self.url:
            # urllib3 logs request lines at -vv: the redactor must know the URL's secret part.
            REDACTOR.add(self.url)
            REDACTOR.add(urlsplit(self.url).path.strip("/"))

    @property
    def enabled(self) -> bool:
        return self.url is not None

    def start(self) -> None:
        self._ping("start")

    def finish(self, exit_code: int) -> None:
        self._ping(str(int(exit_code)))

    def _ping(self, suffix: str) -> None:
        if self.url is None:
            return
        host = urlsplit(self.url).hostname or "?"
        try:
            if self._session is None:
                self._session = requests.Session()
            # A redirect would hand the credential's path to whoever the Location names.
            # Streamed and closed unread: the answer's body means nothing, however large.
            resp = self._session.get(
                f"{self.url}/{suffix}", timeout=self.timeout, allow_redirects=False, stream=True
            )
            resp.close()
            if 300 <= resp.status_code < 400:
                log.warning(
                    "ping %s to %s answered HTTP %s, a redirect; not followed: check "
                    "metrics.ping_url",
                    suffix,
                    host,
                    resp.status_code,
                )
            elif resp.status_code >= 400:
                log.warning("ping %s to %s answered HTTP %s", suffix, host, resp.status_code)
        except Exception as exc:
            # Neither the URL nor the exception text (which quotes the URL) is logged.
            log.warning("ping %s to %s failed: %s", suffix, host, type(exc).__name__)
