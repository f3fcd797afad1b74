"""Configuration: every broken config is one line naming the key, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from limefort import config
from limefort.core.errors import ConfigError

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
    ("duration", "seconds"),
    [("10m", 600), ("30s", 30), ("1h", 3600), ("1d", 86400), ("500ms", 0.5), (" 2 m ", 120)],
)
def test_durations(duration: object, seconds: float) -> None:
    assert config.parse_duration("k", duration).total_seconds() == seconds


@pytest.mark.parametrize("bare", [10, 2.5, "10", "0"])
def test_a_bare_number_is_not_a_duration_and_the_message_asks_for_a_unit(bare: object) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse_duration("sync.lookback", bare)
    msg = str(info.value)
    assert msg.startswith("sync.lookback: ") and "no unit" in msg
    assert f'"{bare}m"' in msg and f'"{bare}s"' in msg


def test_lookback_10_in_the_file_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'^sync\.lookback: 10 has no unit: write "10s"'):
        config.load(write(tmp_path, GOOD + "\n[sync]\nlookback = 10\n"), environ={}, explicit=True)


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
    ("bare number duration", GOOD + "\n[sync]\ninterval = 300\n", "sync.interval"),
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
        "unknown customer status",
        GOOD.replace(
            'client_secret = "lg-secret"',
            'client_secret = "lg-secret"\ncustomer_statuses = ["customer", "kund"]',
        ),
        "limego.customer_statuses",
    ),
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


def test_example_config_documents_every_key_and_its_placeholders_are_named() -> None:
    example = Path(__file__).parent.parent / "config.example.toml"
    text = example.read_text(encoding="utf-8")
    for section, keys in config.SCHEMA.items():
        assert f"[{section}]" in text, section
        for key in keys:
            assert f"\n{key} = " in text or f"\n# {key} = " in text, f"{section}.{key}"
    # As shipped it cannot run: each example value is named, and nothing else is wrong.
    with pytest.raises(config.ConfigErrors) as info:
        config.load(example, environ={}, explicit=True)
    assert [p.key for p in info.value.problems] == [
        "limego.base_url",
        "limego.client_id",
        "limego.client_secret",
        "fortnox.client_id",
        "fortnox.client_secret",
    ]
    assert str(info.value).splitlines()[1] == (
        "limego.client_id: is still the example value "
        "(set it in [limego] or in LIMEFORT_LIMEGO_CLIENT_ID)"
    )
    cfg = config.load(example, environ={}, explicit=True, allow_placeholders=("limego", "fortnox"))
    assert cfg.sync.deal_target == "invoice"
    assert cfg.fortnox.tenant_id is None


def test_the_template_shows_every_default_the_loader_uses() -> None:
    """A default is written once (config.SCHEMA; the dataclasses take theirs from it) and the
    template shows the same value, or leaves the key commented out."""
    from limefort.config.schema import _REQUIRED

    example = Path(__file__).parent.parent / "config.example.toml"
    cfg = config.load(example, environ={}, explicit=True, allow_placeholders=("limego", "fortnox"))
    for section, keys in config.SCHEMA.items():
        for key, (raw, _) in keys.items():
            if raw is _REQUIRED:
                continue
            got, want = getattr(getattr(cfg, section), key), config.default(section, key)
            if isinstance(want, Path):  # a relative path is relative to the config's directory
                got, want = got.name, want.name
            assert got == want, f"{section}.{key}: the template says {got!r}, SCHEMA {want!r}"


def test_the_example_is_the_template_shipped_in_the_package() -> None:
    example = Path(__file__).parent.parent / "config.example.toml"
    assert example.read_text(encoding="utf-8") == config.template_text()


def test_placeholders_filled_from_the_environment_are_fine(tmp_path: Path) -> None:
    example = (Path(__file__).parent.parent / "config.example.toml").read_text(encoding="utf-8")
    env = {
        "LIMEFORT_LIMEGO_BASE_URL": "https://acme.lime-go.com",
        "LIMEFORT_LIMEGO_CLIENT_ID": "a",
        "LIMEFORT_LIMEGO_CLIENT_SECRET": "b",
        "LIMEFORT_FORTNOX_CLIENT_ID": "c",
        "LIMEFORT_FORTNOX_CLIENT_SECRET": "d",
    }
    cfg = config.load(write(tmp_path, example), environ=env, explicit=True)
    assert cfg.limego.client_id == "a" and cfg.fortnox.client_secret == "d"


def test_only_the_sections_a_command_needs_must_be_filled(tmp_path: Path) -> None:
    text = GOOD.replace('client_id = "lg-id"', 'client_id = "your-lime-go-client-id"')
    with pytest.raises(ConfigError, match="^limego.client_id: is still the example value"):
        config.load(write(tmp_path, text), environ={}, explicit=True)
    cfg = config.load(
        write(tmp_path, text), environ={}, explicit=True, allow_placeholders=["limego"]
    )
    assert cfg.fortnox.client_id == "fx-id"


def test_every_problem_at_once_one_line_each_naming_its_key(tmp_path: Path) -> None:
    text = (
        GOOD.replace('client_id = "lg-id"', "client_id = 42").replace(
            'tenant_id = "123456"', 'tenant_id = "1"\nrefresh_token = "r"'
        )
        + '\n[sync]\nlookback = 10\ndeal_target = "quote"\ndeal_targte = "x"\n'
        + '\n[limegoo]\nx = 1\n[mapping.customer]\nNaem = "name"\n'
    )
    env = {"LIMEFORT_SYNC_LOOKBAK": "1m"}
    with pytest.raises(config.ConfigErrors) as info:
        config.load(write(tmp_path, text), environ=env, explicit=True)
    lines = str(info.value).splitlines()
    keys = sorted(line.split(":")[0] for line in lines)
    assert keys == sorted(
        [
            "limegoo",
            "sync.deal_targte",
            "LIMEFORT_SYNC_LOOKBAK",
            "limego.client_id",
            "fortnox.tenant_id",
            "sync.deal_target",
            "sync.lookback",
            "mapping.customer.Naem",
        ]
    ), lines


def test_more_than_ten_problems_lists_ten_and_counts_the_rest(tmp_path: Path) -> None:
    text = GOOD + "\n[sync]\n" + "".join(f"bogus{i} = 1\n" for i in range(13))
    with pytest.raises(config.ConfigErrors) as info:
        config.load(write(tmp_path, text), environ={}, explicit=True)
    assert len(info.value.problems) == 13
    lines = str(info.value).splitlines()
    assert len(lines) == 11
    assert all(line.startswith("sync.bogus") for line in lines[:10])
    assert lines[10] == "config: 3 more problems not listed"


def test_cli_prints_every_problem_on_its_own_line_and_exits_2(tmp_path: Path) -> None:
    text = GOOD.replace('client_id = "lg-id"', "client_id = 42") + "\n[sync]\nlookback = 10\n"
    proc = subprocess.run(
        [sys.executable, "-m", "limefort", "--config", str(write(tmp_path, text)), "check"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "limefort: limego.client_id: expected a string, got int 42",
        'limefort: sync.lookback: 10 has no unit: write "10s", "10m" or "10h" (a duration needs one)',
    ]
    assert proc.stdout == ""  # nothing was checked: no network call was made


def test_customer_statuses_outside_the_api_values_are_refused_at_load(tmp_path: Path) -> None:
    env = {"LIMEFORT_LIMEGO_CUSTOMER_STATUSES": "customer,active"}
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, GOOD), environ=env, explicit=True)
    assert str(info.value) == (
        "limego.customer_statuses: 'active' is not a Lime Go company status "
        "(known: lead, prospect, customer, churned, inactive, unknown)"
    )
    ok = {"LIMEFORT_LIMEGO_CUSTOMER_STATUSES": "customer,churned,inactive"}
    cfg = config.load(write(tmp_path, GOOD), environ=ok, explicit=True)
    assert cfg.limego.customer_statuses == ("customer", "churned", "inactive")


def test_a_relative_state_path_is_beside_the_config_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = GOOD.replace('path = "{state}"', 'path = "data/limefort.db"')
    text += '\n[metrics]\ntextfile = "limefort.prom"\n'
    p = conf_dir / "limefort.toml"
    p.write_text(text, encoding="utf-8")
    # Named relative to the working directory on the command line: still the file's directory.
    cfg = config.load(Path("../etc/limefort.toml"), environ={}, explicit=True)
    assert cfg.state.path == conf_dir / "data" / "limefort.db"
    assert cfg.state.path.is_absolute()
    assert cfg.metrics.textfile == conf_dir / "limefort.prom"


def test_environment_only_config_resolves_state_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
    assert cfg.source is None
    assert cfg.state.path == tmp_path / "limefort.db"
