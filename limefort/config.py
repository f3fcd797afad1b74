"""Configuration: TOML plus `LIMEFORT_<SECTION>_<KEY>` environment overrides, validated into
frozen dataclasses. Every problem is a `ConfigError` whose message starts with the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path


@dataclass(frozen=True)
class HttpConfig:
    timeout: float = 30.0  # seconds, per request
    attempts: int = 6  # tries per request for retryable failures
    backoff_initial: float = 0.5  # seconds; doubles each try, with jitter
    backoff_max: float = 30.0


@dataclass(frozen=True)
class LimeGoConfig:
    base_url: str
    client_id: str
    client_secret: str
    customer_statuses: tuple[str, ...] = ("customer",)
    won_stage_categories: tuple[str, ...] = ("won",)
    won_stage_names: tuple[str, ...] = ()
    scope: str = "companies:read deals:read contacts:read reference:read"
    page_size: int = 100


@dataclass(frozen=True)
class FortnoxConfig:
    client_id: str
    client_secret: str
    api_url: str = "https://api.fortnox.se"
    token_url: str = "https://apps.fortnox.se/oauth-v1/token"
    auth_url: str = "https://apps.fortnox.se/oauth-v1/auth"
    tenant_id: str | None = None  # service account (client credentials)
    refresh_token: str | None = None  # authorization code flow: imported once into the store
    scopes: tuple[str, ...] = ("customer", "invoice", "order", "companyinformation")
    redirect_uri: str = "http://127.0.0.1:8765/callback"
    rate_limit: int = 25  # requests per rate_window, per client id and tenant
    rate_window: float = 5.0


@dataclass(frozen=True)
class SyncConfig:
    deal_target: str = "invoice"  # invoice | order | none
    start: str = "now"  # ISO date/datetime, or "now" (resolved and stored on the first pass)
    lookback: timedelta = timedelta(minutes=10)
    interval: timedelta = timedelta(minutes=5)
    cron: str | None = None
    article_number: str = ""
    account_number: str = ""
    require_orgnr: bool = False
    require_positive_value: bool = True


@dataclass(frozen=True)
class StateConfig:
    path: Path = Path("limefort.db")


@dataclass(frozen=True)
class MetricsConfig:
    textfile: Path | None = None
    ping_url: str | None = None


@dataclass(frozen=True)
class MappingConfig:
    # Fortnox field -> Lime Go source path ("" removes the field); merged over the defaults.
    customer: dict[str, str] = field(default_factory=dict)
    document: dict[str, str] = field(default_factory=dict)


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
