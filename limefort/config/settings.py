"""The settings a pass runs with, as frozen dataclasses: one per config section, and `Config`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

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
    on_deal_change: str = "warn"  # warn | update-unbooked (DESIGN rule 12)
    # What the dates a person types mean (sync.start, backfill, audit): days in this zone.
    timezone: str = "Europe/Stockholm"
    # Another installation's documents this recent stop a pass (DESIGN rule 14).
    writer_lease: timedelta = timedelta(minutes=15)

    @property
    def document_kind(self) -> DocumentKind | None:
        """What a won deal becomes in Fortnox (None: nothing, `deal_target = "none"`)."""
        if self.deal_target == "none":
            return None
        return "order" if self.deal_target == "order" else "invoice"


@dataclass(frozen=True)
class StateConfig:
    path: Path = Path("limefort.db")
    busy_timeout: float = 10.0  # seconds to wait for another program writing the file


@dataclass(frozen=True)
class MetricsConfig:
    textfile: Path | None = None
    ping_url: str | None = None
    tenant: str | None = None  # a `tenant` label on every series; one fixed value per config


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
