"""Configuration: TOML plus `LIMEFORT_<SECTION>_<KEY>` environment overrides, validated into
frozen dataclasses. Every problem is a `ConfigError` whose message starts with the key.

The pieces: `settings` (the dataclasses), `values` (one parser per kind of value), `schema`
(every key's default and parser) and `load`; this module is their one face.
"""

from limefort.config.load import (
    load,
    placeholders,
    secrets_of,
    template_text,
    world_readable_with_secret,
)
from limefort.config.schema import (
    MAPPING_SECTIONS,
    SCHEMA,
)
from limefort.config.settings import (
    Config,
    ConfigErrors,
    FortnoxConfig,
    HttpConfig,
    LimeGoConfig,
    MappingConfig,
    MetricsConfig,
    StateConfig,
    SyncConfig,
    default,
)
from limefort.config.values import (
    COMPANY_STATUSES,
    DEFAULT_PATH,
    MAX_PROBLEMS,
    SECRET_KEYS,
    check_url,
    end_of_day,
    parse_duration,
    parse_start,
    resolve_start,
    url_host,
)

__all__ = [
    "default",
    "COMPANY_STATUSES",
    "Config",
    "ConfigErrors",
    "DEFAULT_PATH",
    "FortnoxConfig",
    "HttpConfig",
    "LimeGoConfig",
    "MAPPING_SECTIONS",
    "MAX_PROBLEMS",
    "MappingConfig",
    "MetricsConfig",
    "SCHEMA",
    "SECRET_KEYS",
    "StateConfig",
    "SyncConfig",
    "check_url",
    "end_of_day",
    "load",
    "parse_duration",
    "parse_start",
    "placeholders",
    "resolve_start",
    "secrets_of",
    "template_text",
    "url_host",
    "world_readable_with_secret",
]
