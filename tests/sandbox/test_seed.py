"""The seed generator (deterministic, Swedish, untidy in the right ways), the Sandbox object
(config, lifecycle), and the package's import hygiene."""

from __future__ import annotations

import ast
import re
import tomllib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from limefort_sandbox import Sandbox, toml_value
from limefort_sandbox.rules import bad_character
from limefort_sandbox.seed import generate, luhn_digit, valid_orgnr

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
PACKAGE = Path(__file__).resolve().parents[2] / "limefort_sandbox"


@pytest.fixture(scope="module")
def data():
    return generate(seed=42, companies=1000, deals=1500, now=NOW)


def test_same_seed_same_data_different_seed_different_data() -> None:
    a = generate(seed=5, companies=50, deals=80, now=NOW)
    b = generate(seed=5, companies=50, deals=80, now=NOW)
    assert a == b
    c = generate(seed=6, companies=50, deals=80, now=NOW)
    assert [x["id"] for x in a.companies] != [x["id"] for x in c.companies]
    # with the real clock, everything but the times repeats
    d, e = generate(seed=5, companies=50, deals=80), generate(seed=5, companies=50, deals=80)

    def strip(resources: list[dict]) -> list[dict]:
        return [
            {**r, "attributes": {k: v for k, v in r["attributes"].items() if not k.endswith("_at")}}
            for r in resources
        ]

    assert strip(d.companies) == strip(e.companies) == strip(a.companies)
    assert [(x["id"], x["attributes"]["value"]) for x in d.deals] == [
        (x["id"], x["attributes"]["value"]) for x in a.deals
    ]


def test_sandboxes_with_the_same_seed_agree() -> None:
    one, two = Sandbox(seed=9, companies=20, deals=30), Sandbox(seed=9, companies=20, deals=30)
    assert list(one.limego.companies) == list(two.limego.companies)
    assert one.limego_client_secret == two.limego_client_secret
    assert one.fortnox_tenant_id == two.fortnox_tenant_id
    assert one.limego.customer_ids() == two.limego.customer_ids()


def test_sizes_and_ratios(data) -> None:
    assert len(data.companies) == 1000 and len(data.deals) == 1500
    assert len(data.contacts) == 1000 and len(data.owners) == 5
    statuses = Counter(c["attributes"]["status"] for c in data.companies)
    assert 400 < statuses["customer"] < 600
    assert set(statuses) <= {"customer", "lead", "prospect", "churned"}
    stages = {s["id"]: s["attributes"] for s in data.stages}
    cats = Counter(
        stages[d["relationships"]["stage"]["data"]["id"]]["category"] for d in data.deals
    )
    assert 370 < cats["won"] < 530 and cats["lost"] > 100 and cats["open"] > 500
    names = [
        s["attributes"]["name"]
        for s in sorted(data.stages, key=lambda s: s["attributes"]["position"])
    ]
    assert names == ["Kontakt", "Behov", "Offert", "Förhandling", "Vunnen", "Förlorad"]


def test_recent_wins(data) -> None:
    stages = {s["id"]: s["attributes"]["category"] for s in data.stages}
    won = [d for d in data.deals if stages[d["relationships"]["stage"]["data"]["id"]] == "won"]
    bound = (NOW - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    recent = [d for d in won if d["attributes"]["updated_at"] >= bound]
    assert 0.2 < len(recent) / len(won) < 0.45


def test_timestamps(data) -> None:
    two_years_ago = (NOW - timedelta(days=731)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    now = NOW.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    pattern = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
    for r in data.companies + data.deals + data.contacts:
        a = r["attributes"]
        assert pattern.match(a["created_at"]) and pattern.match(a["updated_at"])
        assert two_years_ago <= a["created_at"] <= a["updated_at"] <= now
        parsed = datetime.fromisoformat(a["updated_at"].replace("Z", "+00:00"))
        assert parsed.tzinfo is not None


def test_swedish_and_untidy_companies(data) -> None:
    attrs = [c["attributes"] for c in data.companies]
    assert any(ch in a["name"] for a in attrs for ch in "åäöÅÄÖ")
    assert sum(a["name"].endswith(" AB") for a in attrs) > 500
    countries = Counter(a["country"] for a in attrs)
    assert {"SE", "Sverige", "Sweden", None} <= set(countries)
    assert countries["Norge"] + countries["NO"] + countries["Norway"] > 5
    swedish = [a for a in attrs if a["country"] in ("SE", "Sverige", "Sweden")]
    assert sum(bool(re.fullmatch(r"\d{3} \d{2}", a["postal_code"])) for a in swedish) > 0.8 * len(
        swedish
    )
    phones = [a["phone"] for a in attrs if a["phone"]]
    assert any(p.startswith("+46 ") for p in phones) and any(re.match(r"0\d+-", p) for p in phones)
    visiting = [a for a in attrs if "visiting_street" in a["custom_fields"]]
    assert 0.6 < len(visiting) / len(attrs) < 0.8
    assert all("visiting_city" in a["custom_fields"] for a in visiting)
    assert any(bad_character(a["name"]) for a in attrs)  # some names Fortnox would refuse


def test_organisation_numbers(data) -> None:
    ids = [c["attributes"]["business_id"] for c in data.companies]
    swedish = [
        c["attributes"]["business_id"]
        for c in data.companies
        if c["attributes"]["country"] not in ("Norge", "NO", "Norway")
    ]
    missing = sum(1 for b in swedish if not b)
    valid = sum(1 for b in swedish if b and valid_orgnr(b))
    invalid = sum(1 for b in swedish if b and not valid_orgnr(b))
    assert 0.02 < missing / len(swedish) < 0.09
    assert 0.02 < invalid / len(swedish) < 0.09
    assert valid / len(swedish) > 0.82
    forms = Counter(
        "dash"
        if re.fullmatch(r"\d{6}-\d{4}", b)
        else "plain"
        if re.fullmatch(r"\d{10}", b)
        else "century"
        if re.fullmatch(r"16\d{6}-\d{4}", b)
        else "other"
        for b in ids
        if b
    )
    assert forms["dash"] > forms["plain"] > forms["century"] > 0
    digits = [re.sub(r"\D", "", b)[-10:] for b in ids if b and valid_orgnr(b)]
    assert len(digits) == len(set(digits))  # unique


def test_luhn() -> None:
    assert luhn_digit("556036079") == 3
    assert valid_orgnr("556036-0793") and valid_orgnr("5560360793") and valid_orgnr("16556036-0793")
    assert (
        not valid_orgnr("556036-0794")
        and not valid_orgnr("55603607")
        and not valid_orgnr("556O36-0793")
    )


def test_deals(data) -> None:
    companies = {c["id"]: c for c in data.companies}
    contacts = {c["id"]: c for c in data.contacts}
    owners = {o["id"] for o in data.owners}
    customer_deals = 0
    for d in data.deals:
        a, rel = d["attributes"], d["relationships"]
        assert re.fullmatch(r"\d+\.\d\d", a["value"])
        assert a["currency"] in ("SEK", "EUR", "NOK")
        company = rel["company"]["data"]
        assert company is not None and company["id"] in companies
        customer_deals += companies[company["id"]]["attributes"]["status"] == "customer"
        assert len(rel["owners"]["data"]) == 1 and rel["owners"]["data"][0]["id"] in owners
        assert 1 <= len(rel["contacts"]["data"]) <= 2
        for c in rel["contacts"]["data"]:
            assert contacts[c["id"]]["relationships"]["company"]["data"]["id"] == company["id"]
    assert customer_deals / len(data.deals) > 0.75
    values = [d["attributes"]["value"] for d in data.deals]
    assert any(v.endswith(".50") for v in values) and any(v == "0.00" for v in values)
    currencies = Counter(d["attributes"]["currency"] for d in data.deals)
    assert currencies["SEK"] > currencies["EUR"] > 0 and currencies["NOK"] > 0
    assert any(len(d["attributes"]["name"]) > 50 for d in data.deals)
    filled = [
        d["attributes"]["custom_fields"] for d in data.deals if d["attributes"]["custom_fields"]
    ]
    assert 0.3 < len(filled) / len(data.deals) < 0.9
    assert any("po_number" in f for f in filled) and any("contract_length" in f for f in filled)


def test_generating_is_fast_enough_for_a_benchmark() -> None:
    # correctness only (no timing assertion): a mid-sized run completes and is consistent
    d = generate(seed=1, companies=5000, deals=5000, contacts=2000)
    assert len({c["id"] for c in d.companies}) == 5000 and len(d.contacts) == 2000


# --- Sandbox object -------------------------------------------------------------------------


def test_config_toml_is_complete_and_parses(tmp_path: Path) -> None:
    with Sandbox(seed=2, companies=2, deals=1, recent_days=10) as sb:
        state = tmp_path / 'dir "with" quotes\\and\tbackslash' / "state.db"
        text = sb.config_toml(
            state, lookback="5m", require_orgnr=True, attempts=3, deal_target="order"
        )
        cfg = tomllib.loads(text)
    assert cfg["limego"] == {
        "base_url": sb.limego_url,
        "client_id": sb.limego_client_id,
        "client_secret": sb.limego_client_secret,
    }
    assert cfg["fortnox"] == {
        "api_url": sb.fortnox_url,
        "token_url": f"{sb.fortnox_url}/oauth-v1/token",
        "auth_url": f"{sb.fortnox_url}/oauth-v1/auth",
        "client_id": sb.fortnox_client_id,
        "client_secret": sb.fortnox_client_secret,
        "tenant_id": sb.fortnox_tenant_id,
    }
    start = (datetime.now(UTC).date() - timedelta(days=10)).isoformat()
    assert cfg["sync"] == {
        "deal_target": "order",
        "start": start,
        "lookback": "5m",
        "require_orgnr": True,
        "attempts": 3,
    }
    assert cfg["state"] == {"path": str(state)}
    assert set(cfg) == {"limego", "fortnox", "sync", "state"}


def test_toml_values() -> None:
    assert toml_value('a"b\\c\n\x01\x7f') == '"a\\"b\\\\c\\n\\u0001\\u007F"'
    assert tomllib.loads("x = " + toml_value('a"b\\c\n\x01\x7fåäö'))["x"] == 'a"b\\c\n\x01\x7fåäö'
    assert (
        toml_value(True) == "true" and toml_value(3) == "3" and toml_value(["a", 1]) == '["a", 1]'
    )
    with pytest.raises(TypeError):
        toml_value({"a": 1})


def test_urls_before_start_and_restart() -> None:
    sb = Sandbox(seed=1, companies=2, deals=1)
    with pytest.raises(RuntimeError):
        sb.limego_url  # noqa: B018
    sb.start()
    try:
        assert sb.limego_url.startswith("http://127.0.0.1:") and sb.fortnox_url != sb.limego_url
        assert requests.get(f"{sb.fortnox_url}/3/customers", timeout=5).status_code == 401
    finally:
        sb.stop()
    sb.stop()  # idempotent
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{sb.fortnox_url}/3/customers", timeout=2)


def test_fixed_ports() -> None:
    with Sandbox(seed=1, companies=1, deals=1) as probe:
        port = int(probe.limego_url.rsplit(":", 1)[1])
    with Sandbox(seed=1, companies=1, deals=1, port_limego=port) as sb:
        assert sb.limego_url == f"http://127.0.0.1:{port}"


def test_stop_closes_kept_alive_connections() -> None:
    sb = Sandbox(seed=1, companies=2, deals=1).start()
    s = requests.Session()
    s.get(f"{sb.limego_url}/api/v1/companies", timeout=5)  # leaves a pooled connection open
    sb.stop()
    with pytest.raises(requests.ConnectionError):
        s.get(f"{sb.limego_url}/api/v1/companies", timeout=2)


def test_the_sandbox_imports_nothing_else_of_limefort() -> None:
    offenders = []
    files = sorted(PACKAGE.glob("*.py"))
    assert {f.name for f in files} >= {
        "__init__.py",
        "http.py",
        "limego.py",
        "fortnox.py",
        "seed.py",
        "faults.py",
        "rules.py",
    }
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: stays inside the package
                    continue
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                # The one table of Fortnox's field limits is data both sides read.
                if top == "limefort" and name not in ("limefort.core.limits", "limefort.core"):
                    offenders.append(f"{path.name}: {name}")
                if top in (
                    "requests",
                    "urllib3",
                    "simplejson",
                    "tenacity",
                    "sqlite_utils",
                    "click",
                ):
                    offenders.append(f"{path.name}: {name} (not stdlib)")
    assert offenders == []
    # ... and that table imports nothing at all but the standard library.
    limits = PACKAGE.parent / "limefort" / "core" / "limits.py"
    tree = ast.parse(limits.read_text(encoding="utf-8"))
    imported = {
        (n.module or "") if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert imported <= {"__future__", "dataclasses"}
