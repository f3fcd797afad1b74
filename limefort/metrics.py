"""What a pass tells the monitoring: a Prometheus textfile (for node_exporter's textfile
collector) and healthchecks.io-style pings. Monitoring being down must never fail a pass, so
every write and ping here logs a warning instead of raising."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from limefort.http import REDACTOR

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
_OWN_METRIC = {"fortnox_requests", "rate_limited"}


@dataclass
class PassMetrics:
    started_at: float  # Unix time, seconds
    finished_at: float
    exit_code: int
    counts: Mapping[str, int] = field(default_factory=dict)


def _value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if float(v).is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(float(v))


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(
    name: str, help_text: str, samples: Iterable[tuple[Mapping[str, str], float]]
) -> list[str]:
    help_text = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for labels, v in samples:
        lbl = ",".join(f'{k}="{_label(val)}"' for k, val in labels.items())
        lines.append(f"{name}{{{lbl}}} {_value(v)}" if lbl else f"{name} {_value(v)}")
    return lines


def render_textfile(m: PassMetrics, *, last_success: float | None) -> str:
    """The Prometheus text exposition format (0.0.4) for the last pass.

    Everything is a gauge describing the last pass (not a running counter), so a restart or a
    second state file never makes a rate() jump. `last_success` is left out when no pass ever
    succeeded, so `absent()` can alert on it.
    """
    counts = dict(m.counts)
    out: list[str] = []
    out += _family(
        "limefort_last_run_timestamp_seconds",
        "When the last pass finished (Unix time).",
        [({}, m.finished_at)],
    )
    if last_success is not None:
        out += _family(
            "limefort_last_success_timestamp_seconds",
            "When the last pass that exited 0 finished (Unix time).",
            [({}, last_success)],
        )
    out += _family(
        "limefort_last_run_duration_seconds",
        "How long the last pass took.",
        [({}, max(0.0, m.finished_at - m.started_at))],
    )
    out += _family(
        "limefort_last_run_exit_code",
        "Exit code of the last pass: 0 ok, 1 some records quarantined or failed, 3 auth, 75 locked.",
        [({}, m.exit_code)],
    )
    kinds = list(RECORD_KINDS) + sorted(set(counts) - set(RECORD_KINDS) - _OWN_METRIC)
    out += _family(
        "limefort_records_total",
        "Records the last pass handled, by kind.",
        [({"kind": k}, counts.get(k, 0)) for k in kinds],
    )
    out += _family(
        "limefort_fortnox_requests",
        "Requests the last pass made to the Fortnox API.",
        [({}, counts.get("fortnox_requests", 0))],
    )
    out += _family(
        "limefort_fortnox_rate_limited_total",
        "Fortnox answers of 429 Too Many Requests during the last pass.",
        [({}, counts.get("rate_limited", 0))],
    )
    return "\n".join(out) + "\n"


def write_textfile(path: Path, text: str) -> None:
    """Replace `path` atomically (temp file in the same directory, fsync, rename), mode 0644.

    The collector may read at any moment; it must see the old file or the new one, never half.
    The temp name does not end in .prom so the collector never picks it up.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600; node_exporter runs as another user
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except Exception as exc:
        log.warning("could not write the metrics textfile %s: %s", path, exc)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; some filesystems refuse to open a directory, which is fine.
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


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
