"""Configuration: TOML plus `LIMEFORT_<SECTION>_<KEY>` environment overrides, validated into
frozen dataclasses. Every problem is a `ConfigError` whose message starts with the key."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limefort.core.errors import ConfigError
from limefort.core.models import DocumentKind
from limefort.core.urls import refuse_plain_http


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


# ---------------------------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------------------------


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


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "config",
            f"file not found: {path.absolute()} (`limefort init` writes one there, or pass --config)",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("config", f"cannot read {path}: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already carries "(at line N, column M)".
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None


def _env_overrides(
    environ: Mapping[str, str], problems: list[ConfigError]
) -> dict[str, dict[str, str]]:
    """`LIMEFORT_<SECTION>_<KEY>` values, `LIMEFORT_<SECTION>_<KEY>_FILE` (a file holding the
    value: a Kubernetes secret volume, Docker secrets) and systemd credentials
    (`LoadCredential=<section>_<key>:...`, read from $CREDENTIALS_DIRECTORY). A secret in a
    file stays out of /proc/PID/environ, which every process of the same user can read."""
    out: dict[str, dict[str, str]] = {}
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        for section, key in SECRET_KEYS:
            path = Path(credentials) / f"{section}_{key}"
            if path.is_file():
                value = _secret_file(f"$CREDENTIALS_DIRECTORY/{path.name}", path, problems)
                if value is not None:
                    out.setdefault(section, {})[key] = value
    for name, value in sorted(environ.items()):
        if not name.startswith("LIMEFORT_") or name == "LIMEFORT_CONFIG":
            continue
        rest = name[len("LIMEFORT_") :].lower()
        found, from_file = _setting(rest), False
        if found is None and rest.endswith("_file"):
            found = _setting(rest.removesuffix("_file"))
            from_file = found is not None
        if found is None:
            problems.append(
                ConfigError(
                    name,
                    "unknown setting in the environment (expected LIMEFORT_<SECTION>_<KEY> "
                    "or LIMEFORT_<SECTION>_<KEY>_FILE)",
                )
            )
            continue
        section, key = found
        if from_file:
            if f"LIMEFORT_{section.upper()}_{key.upper()}" in environ:
                problems.append(
                    ConfigError(name, f"set either {name} or {name[: -len('_FILE')]}, not both")
                )
                continue
            read = _secret_file(name, Path(value), problems)
            if read is None:
                continue
            value = read
        out.setdefault(section, {})[key] = value
    return out


def _setting(rest: str) -> tuple[str, str] | None:
    """`section_key` (lower case) as (section, key) when SCHEMA has it."""
    for section in SCHEMA:
        if rest.startswith(section + "_") and rest[len(section) + 1 :] in SCHEMA[section]:
            return section, rest[len(section) + 1 :]
    return None


def _secret_file(name: str, path: Path, problems: list[ConfigError]) -> str | None:
    """A value from a file, without its trailing line break. Problems name the file, never
    its content."""
    try:
        if path.stat().st_size > 64 * 1024:
            problems.append(ConfigError(name, f"{path} is larger than 64 KiB: not a secret"))
            return None
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(ConfigError(name, f"no file {path}"))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(ConfigError(name, f"cannot read {path}: {type(exc).__name__}"))
        return None
    return text.rstrip("\r\n")


def template_text() -> str:
    """The annotated config shipped inside the package (`limefort init` writes it;
    config.example.toml in the source tree is the same text)."""
    return (resources.files("limefort") / "templates" / "config.toml").read_text(encoding="utf-8")


def placeholders() -> dict[str, str]:
    """`section.key` -> the template's example value, for every required key the template
    fills in: a config still holding one of these was copied and not finished."""
    raw = tomllib.loads(template_text())
    return {
        f"{section}.{key}": raw[section][key]
        for section, keys in SCHEMA.items()
        for key, (default, _) in keys.items()
        if default is _REQUIRED and key in raw.get(section, {})
    }


def load(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    explicit: bool = False,
    allow_placeholders: Collection[str] = (),
) -> Config:
    """Read the TOML file (optional when not explicit and the environment names the required
    keys), overlay the environment, validate, and return a frozen Config.

    Every problem found is reported at once (`ConfigErrors`, up to MAX_PROBLEMS lines, each
    naming its key) so a new config is fixed in one round, not one key per run. A required key
    still holding the template's example value is a problem unless its section is in
    `allow_placeholders` (commands that never use those credentials)."""
    environ = os.environ if environ is None else environ
    path = path or DEFAULT_PATH
    raw: dict[str, Any] = {}
    from_file = explicit or path.exists() or not any(k.startswith("LIMEFORT_") for k in environ)
    if from_file:
        raw = _read_toml(path)
    source = path if raw else None
    # The state belongs to the config: relative paths in it are relative to its directory.
    base = Path(os.path.abspath(path.parent if from_file else Path.cwd()))
    problems: list[ConfigError] = []

    for section, value in raw.items():
        if section == "mapping":
            continue
        if section not in SCHEMA:
            problems.append(
                ConfigError(
                    section, f"unknown section [{section}] (known: {', '.join(SCHEMA)}, mapping)"
                )
            )
            continue
        if not isinstance(value, dict):
            problems.append(ConfigError(section, f"expected a [{section}] table"))
            continue
        for key in sorted(set(value) - set(SCHEMA[section])):
            problems.append(
                ConfigError(
                    f"{section}.{key}",
                    f"unknown key (known in [{section}]: {', '.join(SCHEMA[section])})",
                )
            )

    merged: dict[str, dict[str, Any]] = {
        s: dict(raw[s]) if isinstance(raw.get(s), dict) else {} for s in SCHEMA
    }
    for section, overrides in _env_overrides(environ, problems).items():
        merged[section].update(overrides)

    examples = placeholders()
    values: dict[str, dict[str, Any]] = {}
    for section, keys in SCHEMA.items():
        values[section] = {}
        for key, (default, conv) in keys.items():
            full = f"{section}.{key}"
            env = f"LIMEFORT_{section.upper()}_{key.upper()}"
            try:
                if key in merged[section]:
                    value = merged[section][key]
                    if (
                        full in examples
                        and section not in allow_placeholders
                        and isinstance(value, str)
                        and value.strip().rstrip("/") == examples[full].rstrip("/")
                    ):
                        raise ConfigError(
                            full, f"is still the example value (set it in [{section}] or in {env})"
                        )
                    values[section][key] = conv(full, value)
                elif default is _REQUIRED:
                    raise ConfigError(full, f"missing (set it in [{section}] or in {env})")
                else:
                    values[section][key] = conv(full, default)
            except ConfigError as exc:
                problems.append(exc)

    mapping = _mapping_tables(raw.get("mapping", {}), problems)

    lg, fx = values["limego"], values["fortnox"]
    if fx.get("tenant_id") and fx.get("refresh_token"):
        problems.append(
            ConfigError(
                "fortnox.tenant_id",
                "set either tenant_id (service account) or refresh_token, not both",
            )
        )
    if (
        "won_stage_categories" in lg
        and "won_stage_names" in lg
        and not lg["won_stage_categories"]
        and not lg["won_stage_names"]
    ):
        problems.append(
            ConfigError(
                "limego.won_stage_categories",
                "empty, and no won_stage_names either: no deal could ever be won",
            )
        )
    for section, key in (("state", "path"), ("metrics", "textfile")):
        p = values[section].get(key)
        if p is not None and not p.is_absolute():
            values[section][key] = Path(os.path.normpath(base / p))

    sync_values = values["sync"]
    if "start" in sync_values and "timezone" in sync_values:
        zone = ZoneInfo(sync_values["timezone"])
        sync_values["start"] = parse_start("sync.start", sync_values["start"], zone)

    if problems:
        raise ConfigErrors(problems)

    return Config(
        limego=LimeGoConfig(**lg),
        fortnox=FortnoxConfig(**fx),
        sync=SyncConfig(**values["sync"]),
        state=StateConfig(**values["state"]),
        metrics=MetricsConfig(**values["metrics"]),
        mapping=MappingConfig(
            customer=mapping.get("customer", {}),
            document=mapping.get("document", {}),
            countries=mapping.get("countries", {}),
            vat_type=mapping.get("vat_type", {}),
        ),
        http=HttpConfig(**values["http"]),
        source=source,
    )


def _mapping_tables(mapping_raw: Any, problems: list[ConfigError]) -> dict[str, dict[str, str]]:
    mapping: dict[str, dict[str, str]] = {}
    if not isinstance(mapping_raw, dict):
        problems.append(
            ConfigError("mapping", "expected [mapping.customer] and/or [mapping.document] tables")
        )
        return mapping
    for sub, table in mapping_raw.items():
        if sub not in MAPPING_SECTIONS:
            known = ", ".join(f"mapping.{m}" for m in MAPPING_SECTIONS)
            problems.append(ConfigError(f"mapping.{sub}", f"unknown mapping (known: {known})"))
            continue
        if sub in ("countries", "vat_type") and isinstance(table, dict):
            checked = _check_codes(sub, table, problems)
            if checked is not None:
                mapping[sub] = checked
            continue
        if not isinstance(table, dict):
            problems.append(
                ConfigError(f"mapping.{sub}", 'expected a table of FortnoxField = "lime go source"')
            )
            continue
        good = True
        for field_name, src in table.items():
            if not isinstance(src, str):
                good = False
                problems.append(
                    ConfigError(
                        f"mapping.{sub}.{field_name}",
                        f"expected a string source path, got {src!r}",
                    )
                )
        if good:
            mapping[sub] = dict(table)
    try:
        # The mapping module owns the list of writable Fortnox fields and the source path syntax.
        _check_mapping(mapping)
    except ConfigError as exc:
        problems.append(exc)
    return mapping


def _check_codes(
    sub: str, table: dict[str, Any], problems: list[ConfigError]
) -> dict[str, str] | None:
    """[mapping.countries] ("spelling" = "DE", a code Fortnox knows) and [mapping.vat_type]
    (eu / outside_eu = one of Fortnox's VATType values for that zone)."""
    from limefort.mapping import VAT_TYPES
    from limefort.mapping.normalise import normalise_country

    out: dict[str, str] = {}
    before = len(problems)
    for name, value in table.items():
        key = f"mapping.{sub}.{name}"
        if sub == "vat_type":
            allowed = VAT_TYPES.get(name)
            if allowed is None:
                problems.append(ConfigError(key, "unknown zone (known: eu, outside_eu)"))
            elif value not in allowed:
                problems.append(ConfigError(key, f"expected one of {', '.join(allowed)}"))
            else:
                out[name] = value
            continue
        code = value.strip().upper() if isinstance(value, str) else None
        if code is None or len(code) != 2 or normalise_country(code) != code:
            problems.append(
                ConfigError(key, f'expected an ISO 3166-1 alpha-2 code like "DE", got {value!r}')
            )
        else:
            out[name] = code
    return out if len(problems) == before else None


def _check_mapping(mapping: dict[str, dict[str, str]]) -> None:
    from limefort.mapping import build_mappings

    build_mappings(mapping.get("customer", {}), mapping.get("document", {}))


def secrets_of(cfg: Config) -> list[str]:
    return [
        s
        for s in (
            cfg.limego.client_secret,
            cfg.fortnox.client_secret,
            cfg.fortnox.refresh_token,
            cfg.metrics.ping_url,
        )
        if s
    ]


def world_readable_with_secret(cfg: Config) -> bool:
    """True when the config file itself holds a secret and others may read it."""
    if cfg.source is None:
        return False
    try:
        mode = cfg.source.stat().st_mode
        raw = tomllib.loads(cfg.source.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False
    holds = any(raw.get(s, {}).get(k) for s, k in SECRET_KEYS)
    return bool(holds and mode & (stat.S_IROTH | stat.S_IRGRP))
