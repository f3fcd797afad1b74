"""What an unattended limefort tells its operator (issue 7): the Prometheus textfile after a
pass, healthchecks-style pings that never fail a pass, JSON log lines, and the runs history."""

from __future__ import annotations

import http.server
import json
import socket
import stat
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Lf
from test_metrics import parse, sample

from limefort_sandbox import FaultRule, Sandbox


@pytest.fixture
def sb(make_sandbox: Any) -> Sandbox:
    # Every company a valid customer and no recent wins: a first pass ends with exit 0.
    return make_sandbox(seed=3, companies=8, deals=10, customer_ratio=1.0, recent_days=0)


def synced_customer(sb: Sandbox) -> str:
    refs = {c.get("ExternalReference") for c in sb.fortnox.customers}
    return next(c for c in sb.limego.customer_ids() if f"limego:company:{c}" in refs)


def troubles(sb: Sandbox) -> str:
    """One of each: an update, a new invoice, a quarantined company, two 429s from Fortnox."""
    cid = synced_customer(sb)
    sb.limego.update_company(cid, phone="08-765 43 21")
    sb.limego.add_deal(cid, stage="won", name="Serviceavtal", value="4200.00")
    bad = sb.limego.add_company(name="", status="customer", business_id="556036-0793")
    sb.fortnox.faults.add(FaultRule("429", times=2, path_prefix="/3/"))
    return bad


# --- the Prometheus textfile ----------------------------------------------------------------


def test_metrics_textfile_after_each_pass(sb: Sandbox, tmp_path: Path) -> None:
    prom = tmp_path / "limefort.prom"
    lf = Lf(sb, tmp_path)
    lf.edit("metrics", textfile=str(prom))

    t0 = time.time()
    r = lf.run("sync")
    t1 = time.time()
    assert r.code == 0, r.err
    fams = parse(prom.read_text(encoding="utf-8"))
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644  # node_exporter runs as another user
    counts = lf.status()["last_run"]["counts"]
    assert sample(fams, "limefort_last_run_exit_code") == 0
    success = sample(fams, "limefort_last_success_timestamp_seconds")
    assert t0 - 1 <= success <= t1 + 1
    assert t0 - 1 <= sample(fams, "limefort_last_run_timestamp_seconds") <= t1 + 1
    assert 0 <= sample(fams, "limefort_last_run_duration_seconds") <= t1 - t0 + 1
    assert sample(fams, "limefort_records_total", kind="customers_created") == 8
    assert counts["customers_created"] == 8
    assert sample(fams, "limefort_fortnox_requests") == counts["fortnox_requests"] > 0
    assert sample(fams, "limefort_fortnox_rate_limited_total") == 0

    # A second pass with a bit of everything, and a quarantine: exit 1.
    troubles(sb)
    time.sleep(0.01)
    r = lf.run("sync")
    assert r.code == 1, r.err
    fams = parse(prom.read_text(encoding="utf-8"))
    counts = lf.status()["last_run"]["counts"]
    assert sample(fams, "limefort_last_run_exit_code") == 1
    # The last success is still the first pass: that is what an alert on staleness watches.
    assert sample(fams, "limefort_last_success_timestamp_seconds") == success
    assert sample(fams, "limefort_last_run_timestamp_seconds") > success

    def kind(k: str) -> float:
        return sample(fams, "limefort_records_total", kind=k)

    assert kind("customers_updated") == counts["customers_updated"] == 1
    assert kind("documents_created") == counts["invoices_created"] == 1
    assert kind("quarantined") == counts["quarantined"] == 1
    assert kind("customers_created") == 0 and kind("pending") == 0 and kind("failed") == 0
    assert sample(fams, "limefort_fortnox_rate_limited_total") == 2
    assert sample(fams, "limefort_fortnox_requests") == counts["fortnox_requests"]
    # Request counts and per-kind document names are not record kinds of their own.
    kinds = {dict(k)["kind"] for k in fams["limefort_records_total"]["samples"]}
    assert not kinds & {"invoices_created", "fortnox_requests", "limego_requests", "rate_limited"}


def test_metrics_tenant_label_and_drift_gauge_from_the_config(sb: Sandbox, tmp_path: Path) -> None:
    lf = Lf(sb, tmp_path)
    # Relative: beside the config, like state.path.
    lf.edit("metrics", textfile="limefort.prom", tenant="acme")
    r = lf.run("sync")
    assert r.code == 0, r.err
    fams = parse((tmp_path / "limefort.prom").read_text(encoding="utf-8"))
    assert sample(fams, "limefort_last_run_exit_code", tenant="acme") == 0
    assert sample(fams, "limefort_drift_records", tenant="acme") == 0
    assert sample(fams, "limefort_records_total", kind="customers_created", tenant="acme") == 8
    assert all(
        dict(labels).get("tenant") == "acme" for fam in fams.values() for labels in fam["samples"]
    )


def test_a_dry_run_leaves_the_textfile_alone(sb: Sandbox, tmp_path: Path) -> None:
    prom = tmp_path / "limefort.prom"
    lf = Lf(sb, tmp_path)
    lf.edit("metrics", textfile=str(prom))
    assert lf.run("sync", "--dry-run").code == 0
    assert not prom.exists()


def test_an_unwritable_textfile_never_fails_the_pass(sb: Sandbox, tmp_path: Path) -> None:
    lf = Lf(sb, tmp_path)
    lf.edit("metrics", textfile=str(tmp_path / "no-such-dir" / "limefort.prom"))
    r = lf.run("sync")
    assert r.code == 0, r.err
    assert "could not write the metrics" in r.err


# --- pings ------------------------------------------------------------------------------------


class _PingHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        body = b"OK"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def ping_server() -> Iterator[tuple[str, list[str]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PingHandler)
    server.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.paths  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_pings_start_and_exit_code_of_each_pass(
    sb: Sandbox, tmp_path: Path, ping_server: tuple[str, list[str]]
) -> None:
    base, paths = ping_server
    lf = Lf(sb, tmp_path)
    lf.edit("metrics", ping_url=f"{base}/ping/0f1e2d3c")
    r = lf.run("sync")
    assert r.code == 0, r.err
    assert paths == ["/ping/0f1e2d3c/start", "/ping/0f1e2d3c/0"]

    troubles(sb)
    r = lf.run("sync")
    assert r.code == 1, r.err
    assert paths[2:] == ["/ping/0f1e2d3c/start", "/ping/0f1e2d3c/1"]

    # A dry run is not a pass anyone monitors.
    lf.run("sync", "--dry-run")
    assert len(paths) == 4


def test_a_ping_url_that_does_not_answer_never_fails_the_pass(sb: Sandbox, tmp_path: Path) -> None:
    lf = Lf(sb, tmp_path)
    lf.edit("metrics", ping_url=f"http://127.0.0.1:{closed_port()}/ping/s3cr3t-uuid")
    started = time.monotonic()
    r = lf.run("sync")
    assert r.code == 0, r.err
    assert time.monotonic() - started < 30  # refused on loopback: no long timeout per ping
    assert "ping start to 127.0.0.1 failed" in r.err
    assert "ping 0 to 127.0.0.1 failed" in r.err
    assert "s3cr3t-uuid" not in r.err  # the ping URL is a credential: only its host is logged
    assert lf.status()["last_run"]["exit_code"] == 0


# --- JSON logs --------------------------------------------------------------------------------


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    assert lines, "nothing on stderr"
    out = []
    for line in lines:
        obj = json.loads(line)  # every line on stderr is one JSON object
        assert isinstance(obj, dict), line
        assert {"time", "level", "event"} <= set(obj), obj
        datetime.fromisoformat(obj["time"])
        assert obj["level"] in {"debug", "info", "warning", "error", "critical"}
        out.append(obj)
    return out


def test_json_logs_are_one_object_a_line_with_keys_and_a_summary(
    sb: Sandbox, tmp_path: Path
) -> None:
    lf = Lf(sb, tmp_path)
    lf.run("sync")
    bad = troubles(sb)
    r = lf.run("--log-format", "json", "-v", "sync")
    assert r.code == 1, r.err
    records = json_lines(r.err)

    # Per-record lines name their record.
    quarantine = [
        x for x in records if x.get("key") == f"company:{bad}" and "quarantined" in x["event"]
    ]
    assert quarantine and quarantine[0]["level"] == "warning"
    created = [
        x
        for x in records
        if x.get("key", "").startswith("deal:") and "created invoice" in x["event"]
    ]
    assert len(created) == 1 and created[0]["level"] == "info"
    updated = [x for x in records if "updated Fortnox customer" in x["event"]]
    assert len(updated) == 1 and updated[0]["key"].startswith("company:")
    # One summary line at the end with the counts as data.
    summary = [x for x in records if "counts" in x]
    assert len(summary) == 1
    counts = summary[0]["counts"]
    assert counts["invoices_created"] == 1 and counts["quarantined"] == 1
    assert counts == lf.status()["last_run"]["counts"]
    assert summary[0]["exit_code"] == 1
    # Secrets never reach a log line.
    for secret in (sb.fortnox_client_secret, sb.limego_client_secret):
        assert secret not in r.err


def test_json_logs_from_the_quiet_default_level_are_json_too(sb: Sandbox, tmp_path: Path) -> None:
    lf = Lf(sb, tmp_path)
    lf.run("sync")
    troubles(sb)
    r = lf.run("--log-format", "json", "sync")
    assert r.code == 1
    records = json_lines(r.err)
    assert any(x.get("key", "").startswith("company:") for x in records)
    assert all(x["level"] in ("warning", "error") for x in records)


# --- status shows the runs --------------------------------------------------------------------


def test_status_shows_the_runs_history(sb: Sandbox, tmp_path: Path) -> None:
    lf = Lf(sb, tmp_path)
    assert lf.run("sync").code == 0
    troubles(sb)
    assert lf.run("sync").code == 1
    assert lf.run("sync", "--dry-run").code == 1 or True  # a dry run is not recorded

    runs = lf.status()["runs"]
    assert [(r["command"], r["exit_code"]) for r in runs] == [("sync", 1), ("sync", 0)]
    assert all(r["started_at"] <= r["finished_at"] for r in runs)
    assert runs[0]["counts"]["quarantined"] == 1
    assert runs[0]["id"] > runs[1]["id"]

    text = lf.run("status")
    assert text.code == 0, text.err
    assert "Recent runs:" in text.out
    lines = text.out.split("Recent runs:")[1].strip().splitlines()
    assert len(lines) == 2
    assert "sync" in lines[0] and "exit 1" in lines[0] and "quarantined" in lines[0]
    assert "sync" in lines[1] and "exit 0" in lines[1] and "8 customers created" in lines[1]
    assert "Last run:" in text.out and "exit 1" in text.out
