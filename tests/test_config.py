"""Configuration: every broken config is one line naming the key, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from limefort import config
from limefort.errors import ConfigError

GOOD = """
[limego]
base_url = "https://agentic.staging.lime-go.com"
client_id = "lg-id"
client_secret = "lg-secret"

[fortnox]
client_id = "fx-id"
client_secret = "fx-secret"
tenant_id = "123456"

[state]
path = "{state}"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "limefort.toml"
    p.write_text(text.replace("{state}", str(tmp_path / "s.db")), encoding="utf-8")
    p.chmod(0o600)
    return p


def test_good_config_and_defaults(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, GOOD), environ={}, explicit=True)
    assert cfg.limego.base_url == "https://agentic.staging.lime-go.com"
    assert cfg.fortnox.api_url == "https://api.fortnox.se"
    assert cfg.sync.deal_target == "invoice"
    assert cfg.sync.lookback == timedelta(minutes=10)
    assert cfg.sync.interval == timedelta(minutes=5)
    assert cfg.limego.customer_statuses == ("customer",)
    assert cfg.state.path == tmp_path / "s.db"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    env = {
        "LIMEFORT_LIMEGO_CLIENT_SECRET": "from-env",
        "LIMEFORT_SYNC_DEAL_TARGET": "order",
        "LIMEFORT_SYNC_LOOKBACK": "30s",
        "LIMEFORT_LIMEGO_CUSTOMER_STATUSES": "customer, churned",
    }
    cfg = config.load(write(tmp_path, GOOD), environ=env, explicit=True)
    assert cfg.limego.client_secret == "from-env"
    assert cfg.sync.deal_target == "order"
    assert cfg.sync.lookback == timedelta(seconds=30)
    assert cfg.limego.customer_statuses == ("customer", "churned")


def test_environment_alone_is_enough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {
        "LIMEFORT_LIMEGO_BASE_URL": "https://x.lime-go.com",
        "LIMEFORT_LIMEGO_CLIENT_ID": "a",
        "LIMEFORT_LIMEGO_CLIENT_SECRET": "b",
        "LIMEFORT_FORTNOX_CLIENT_ID": "c",
        "LIMEFORT_FORTNOX_CLIENT_SECRET": "d",
        "LIMEFORT_FORTNOX_TENANT_ID": "1",
    }
    cfg = config.load(None, environ=env)
    assert cfg.fortnox.tenant_id == "1" and cfg.source is None


@pytest.mark.parametrize(
    ("duration", "seconds"), [("10m", 600), ("30s", 30), ("1h", 3600), ("1d", 86400), (45, 45)]
)
def test_durations(duration: object, seconds: float) -> None:
    assert config.parse_duration("k", duration).total_seconds() == seconds


def test_loopback_http_is_allowed_and_remote_http_refused() -> None:
    assert config.check_url("k", "http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert config.check_url("k", "http://localhost:1") == "http://localhost:1"
    with pytest.raises(ConfigError, match="refusing plain http:// to api.fortnox.se"):
        config.check_url("fortnox.api_url", "http://api.fortnox.se")


# (name, how to break the good config, the key the message must start with)
BROKEN = [
    ("missing file", None, "config"),
    ("toml syntax", GOOD + "\n[sync\n", "config"),
    ("unknown key", GOOD + '\n[sync]\ndeal_targte = "invoice"\n', "sync.deal_targte"),
    ("unknown section", GOOD + "\n[limegoo]\nx = 1\n", "limegoo"),
    (
        "missing base_url",
        GOOD.replace('base_url = "https://agentic.staging.lime-go.com"', ""),
        "limego.base_url",
    ),
    (
        "missing client_secret",
        GOOD.replace('client_secret = "lg-secret"', ""),
        "limego.client_secret",
    ),
    ("wrong type", GOOD.replace('client_id = "lg-id"', "client_id = 42"), "limego.client_id"),
    (
        "bad url",
        GOOD.replace("https://agentic.staging.lime-go.com", "agentic.staging"),
        "limego.base_url",
    ),
    ("http to remote", GOOD.replace("https://agentic", "http://agentic"), "limego.base_url"),
    ("bad deal_target", GOOD + '\n[sync]\ndeal_target = "quote"\n', "sync.deal_target"),
    ("bad duration", GOOD + '\n[sync]\nlookback = "ten minutes"\n', "sync.lookback"),
    ("zero interval", GOOD + '\n[sync]\ninterval = "0s"\n', "sync.interval"),
    ("bad start", GOOD + '\n[sync]\nstart = "yesterday"\n', "sync.start"),
    ("bad account", GOOD + '\n[sync]\naccount_number = "30011"\n', "sync.account_number"),
    (
        "statuses not a list",
        GOOD.replace(
            'client_secret = "lg-secret"', 'client_secret = "lg-secret"\ncustomer_statuses = 3'
        ),
        "limego.customer_statuses",
    ),
    ("bad bool", GOOD + '\n[sync]\nrequire_orgnr = "maybe"\n', "sync.require_orgnr"),
    (
        "both tenant and refresh",
        GOOD.replace('tenant_id = "123456"', 'tenant_id = "1"\nrefresh_token = "r"'),
        "fortnox.tenant_id",
    ),
    ("bad cron", GOOD + '\n[sync]\ncron = "every five minutes"\n', "sync.cron"),
    ("bad mapping field", GOOD + '\n[mapping.customer]\nNaem = "name"\n', "mapping.customer.Naem"),
    (
        "page size",
        GOOD.replace('client_secret = "lg-secret"', 'client_secret = "lg-secret"\npage_size = 500'),
        "limego.page_size",
    ),
]


@pytest.mark.parametrize(("name", "text", "key"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_names_the_key(tmp_path: Path, name: str, text: str | None, key: str) -> None:
    path = tmp_path / "limefort.toml" if text is None else write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path, environ={}, explicit=True)
    assert str(info.value).startswith(key + ":"), str(info.value)


@pytest.mark.parametrize(("name", "text", "key"), BROKEN[:14], ids=[b[0] for b in BROKEN[:14]])
def test_broken_config_cli_exit_2_one_line(
    tmp_path: Path, name: str, text: str | None, key: str
) -> None:
    path = tmp_path / "limefort.toml" if text is None else write(tmp_path, text)
    proc = subprocess.run(
        [sys.executable, "-m", "limefort", "--config", str(path), "sync"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"limefort: {key}:"), lines[0]
    assert "Traceback" not in proc.stderr


def test_toml_error_says_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line"):
        config.load(write(tmp_path, GOOD + "\n[sync\n"), environ={}, explicit=True)


def test_unknown_environment_setting_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^LIMEFORT_SYNC_LOOKBAK:"):
        config.load(write(tmp_path, GOOD), environ={"LIMEFORT_SYNC_LOOKBAK": "1m"}, explicit=True)


def test_example_config_loads_and_documents_every_key() -> None:
    example = Path(__file__).parent.parent / "config.example.toml"
    cfg = config.load(example, environ={}, explicit=True)
    assert cfg.sync.deal_target == "invoice"
    text = example.read_text(encoding="utf-8")
    for section, keys in config.SCHEMA.items():
        assert f"[{section}]" in text, section
        for key in keys:
            assert f"\n{key} = " in text or f"\n# {key} = " in text, f"{section}.{key}"
