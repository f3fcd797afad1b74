"""The monitoring mixin in deploy/monitoring (issue 24): alerting rules that promtool's own
unit tests fire and keep quiet, and a Grafana dashboard with a tenant variable, both on the
metric names limefort really writes.

promtool comes from Debian's `prometheus` package, installed by `make test` (Makefile,
`promtool` target); without it these tests fail, they never skip."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from limefort.ops.metrics import PassMetrics, render_textfile

HERE = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"
RULES = HERE / "alerts.yml"
RULE_TESTS = HERE / "alerts_test.yml"
DASHBOARD = HERE / "dashboard.json"
METRIC = re.compile(r"\blimefort_[a-z_]+\b")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: `make test` installs it (Debian's prometheus package)")
    return found


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def alerts() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def written_metrics() -> set[str]:
    """Every metric name a pass writes, with every optional part present."""
    m = PassMetrics(
        started_at=1.0,
        finished_at=2.0,
        exit_code=0,
        counts={"drift": 1, "duplicates": 1, "other_writer": 1, "in_quarantine": 1},
        owed={"SEK": {"unpaid_count": Decimal(1), "unpaid_amount": Decimal(5)}},
    )
    text = render_textfile(m, last_success=1.0, tenant="acme")
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_the_rules_are_valid_and_their_unit_tests_pass() -> None:
    checked = run_promtool("check", "rules", RULES.name, cwd=HERE)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run_promtool("test", "rules", RULE_TESTS.name, cwd=HERE)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_case_that_fires_and_one_that_does_not() -> None:
    cases: dict[str, list[bool]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for t in test["alert_rule_test"]:
            cases.setdefault(t["alertname"], []).append(bool(t["exp_alerts"]))
    for rule in alerts():
        assert sorted(set(cases.get(rule["alert"], []))) == [False, True], rule["alert"]


@pytest.mark.parametrize("mutation", ["never", "always"])
def test_the_unit_tests_fail_when_an_alert_is_broken(tmp_path: Path, mutation: str) -> None:
    """Each alert in turn made to never fire (its firing case must fail) or to fire always
    (its quiet case must fail): the promtool tests are guards that can fail."""
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    original = yaml.safe_load(RULES.read_text())
    for i, rule in enumerate(alerts()):
        doc = yaml.safe_load(RULES.read_text())
        target = [r for g in doc["groups"] for r in g["rules"]][i]
        target["expr"] = (
            f"({rule['expr']}) and on() vector(0) < 0"
            if mutation == "never"
            else 'label_replace(vector(1), "tenant", "acme", "", "")'
        )
        (tmp_path / RULES.name).write_text(yaml.safe_dump(doc, sort_keys=False))
        got = run_promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
        assert got.returncode != 0, f"{rule['alert']} broken ({mutation}) and still passing"
        assert rule["alert"] in got.stdout + got.stderr
    assert original == yaml.safe_load(RULES.read_text())


def test_rules_and_dashboard_use_only_metrics_limefort_writes() -> None:
    used = set(METRIC.findall(RULES.read_text())) | set(METRIC.findall(DASHBOARD.read_text()))
    assert used and used <= written_metrics(), used - written_metrics()


def test_the_dashboard_has_a_tenant_variable_and_a_panel_for_each_topic() -> None:
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert "label_values(limefort_last_run_timestamp_seconds, tenant)" in json.dumps(
        variables["tenant"]["query"]
    )
    assert variables["tenant"]["multi"] and variables["tenant"]["includeAll"]
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert exprs and all('tenant=~"$tenant"' in e for e in exprs), exprs
    shown = set(METRIC.findall(" ".join(exprs)))
    for topic in (
        "limefort_last_success_timestamp_seconds",  # passes
        "limefort_records_total",  # records
        "limefort_quarantined_records",
        "limefort_drift_records",
        "limefort_fortnox_requests",
        "limefort_fortnox_rate_limited_total",  # 429s
        "limefort_unpaid_amount",
    ):
        assert topic in shown, topic
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
