"""Loading: the TOML file, `LIMEFORT_<SECTION>_<KEY>` overrides and `*_FILE` secrets, every
problem collected (one line each, exit 2), the mapping tables checked, the template written by
`init`."""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Collection, Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from limefort.config.schema import _REQUIRED, MAPPING_SECTIONS, SCHEMA
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
)
from limefort.config.values import DEFAULT_PATH, SECRET_KEYS, parse_start
from limefort.core.errors import ConfigError


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
