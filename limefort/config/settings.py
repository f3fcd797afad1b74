"""The settings a pass runs with, as frozen dataclasses: one per config section, and `Config`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from limefort.config.schema import SCHEMA
from limefort.config.values import MAX_PROBLEMS
from limefort.core.errors import ConfigError
from limefort.core.models import DocumentKind


class ConfigErrors(ConfigError):
    """Every problem found in one load, so a new config is fixed in one round. Its message is
    one line per problem (at most MAX_PROBLEMS, then a count), each starting with its key."""

    def __init__(self, problems: list[ConfigError]) -> None:
        self.problems = problems
        shown = problems[:MAX_PROBLEMS]
        lines = [str(p) for p in shown]
        if len(problems) > len(shown):
            lines.append(f"config: {len(problems) - len(shown)} more problems not listed")
        self.key = problems[0].key
        Exception.__init__(self, "\n".join(lines))


def default(section: str, key: str) -> Any:
    """A key's default as the loader would parse it: written once, in `schema.SCHEMA` (the
    dataclasses below take theirs from there; the template is checked against it)."""
    raw, parse = SCHEMA[section][key]
    return parse(f"{section}.{key}", raw)


@dataclass(frozen=True)
class HttpConfig:
    timeout: float = default("http", "timeout")  # seconds, per request
    attempts: int = default("http", "attempts")  # tries per request for retryable failures
    # seconds; doubles each try, with jitter
    backoff_initial: float = default("http", "backoff_initial")
    backoff_max: float = default("http", "backoff_max")


@dataclass(frozen=True)
class LimeGoConfig:
    base_url: str
    client_id: str
    client_secret: str
    customer_statuses: tuple[str, ...] = default("limego", "customer_statuses")
    won_stage_categories: tuple[str, ...] = default("limego", "won_stage_categories")
    won_stage_names: tuple[str, ...] = default("limego", "won_stage_names")
    scope: str = default("limego", "scope")
    page_size: int = default("limego", "page_size")


@dataclass(frozen=True)
class FortnoxConfig:
    client_id: str
    client_secret: str
    api_url: str = default("fortnox", "api_url")
    token_url: str = default("fortnox", "token_url")
    auth_url: str = default("fortnox", "auth_url")
    tenant_id: str | None = default("fortnox", "tenant_id")  # service account (client credentials)
    refresh_token: str | None = default(
        "fortnox", "refresh_token"
    )  # authorization code flow: imported once into the store
    scopes: tuple[str, ...] = default("fortnox", "scopes")
    redirect_uri: str = default("fortnox", "redirect_uri")
    rate_limit: int = default(
        "fortnox", "rate_limit"
    )  # requests per rate_window, per client id and tenant
    rate_window: float = default("fortnox", "rate_window")


@dataclass(frozen=True)
class SyncConfig:
    deal_target: str = default("sync", "deal_target")  # invoice | order | none
    start: str = default(
        "sync", "start"
    )  # ISO date/datetime, or "now" (resolved and stored on the first pass)
    lookback: timedelta = default("sync", "lookback")
    interval: timedelta = default("sync", "interval")
    cron: str | None = default("sync", "cron")
    article_number: str = default("sync", "article_number")
    account_number: str = default("sync", "account_number")
    require_orgnr: bool = default("sync", "require_orgnr")
    require_positive_value: bool = default("sync", "require_positive_value")
    on_deal_change: str = default(
        "sync", "on_deal_change"
    )  # warn | update-unbooked (DESIGN rule 12)
    # What the dates a person types mean (sync.start, backfill, audit): days in this zone.
    timezone: str = default("sync", "timezone")
    # Another installation's documents this recent stop a pass (DESIGN rule 14).
    writer_lease: timedelta = default("sync", "writer_lease")

    @property
    def document_kind(self) -> DocumentKind | None:
        """What a won deal becomes in Fortnox (None: nothing, `deal_target = "none"`)."""
        if self.deal_target == "none":
            return None
        return "order" if self.deal_target == "order" else "invoice"


@dataclass(frozen=True)
class StateConfig:
    path: Path = default("state", "path")
    busy_timeout: float = default(
        "state", "busy_timeout"
    )  # seconds to wait for another program writing the file


@dataclass(frozen=True)
class MetricsConfig:
    textfile: Path | None = default("metrics", "textfile")
    ping_url: str | None = default("metrics", "ping_url")
    tenant: str | None = default(
        "metrics", "tenant"
    )  # a `tenant` label on every series; one fixed value per config


@dataclass(frozen=True)
class MappingConfig:
    # Fortnox field -> Lime Go source path ("" removes the field); merged over the defaults.
    customer: dict[str, str] = field(default_factory=dict)
    document: dict[str, str] = field(default_factory=dict)
    # A house spelling of a country name -> its ISO alpha-2 code ("Tyskl." = "DE").
    countries: dict[str, str] = field(default_factory=dict)
    # The VATType of customers abroad: "eu" and/or "outside_eu" -> a Fortnox VATType.
    vat_type: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    limego: LimeGoConfig
    fortnox: FortnoxConfig
    sync: SyncConfig = field(default_factory=SyncConfig)
    state: StateConfig = field(default_factory=StateConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    source: Path | None = None  # the file it came from, for messages
