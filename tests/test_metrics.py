from __future__ import annotations

import http.server
import logging
import os
import re
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import limefort.ops.metrics as metrics
from limefort.ops.metrics import (
    PassMetrics,
    Pinger,
    build_registry,
    render_textfile,
    write_textfile,
)

# --- a small, strict parser for the Prometheus text format 0.0.4 ------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*)?\}})? (\S+)$")
VALUE = re.compile(r"^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|NaN|[+-]Inf)$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse(text: str) -> dict[str, dict]:
    """{name: {"help", "type", "samples": {labels tuple: float}}}; raises on anything loose."""
    assert text.endswith("\n"), "the format ends every line, the last one too"
    families: dict[str, dict] = {}
    for n, line in enumerate(text.split("\n")[:-1], 1):
        assert line and line == line.strip(), f"line {n}: empty or padded: {line!r}"
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert re.fullmatch(NAME, name), f"line {n}: bad name {name!r}"
            assert name not in families, f"line {n}: second HELP for {name}"
            families[name] = {"help": help_text, "type": None, "samples": {}}
        elif line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert name in families, f"line {n}: TYPE before HELP for {name}"
            assert families[name]["type"] is None and not families[name]["samples"]
            assert typ in TYPES, f"line {n}: unknown type {typ!r}"
            families[name]["type"] = typ
        elif line.startswith("#"):
            raise AssertionError(f"line {n}: unexpected comment {line!r}")
        else:
            m = SAMPLE.match(line)
            assert m, f"line {n}: not `name{{labels}} value`: {line!r}"
            name, labels, value = m.groups()
            assert name in families and families[name]["type"], (
                f"line {n}: sample of {name} before its HELP and TYPE"
            )
            assert list(families)[-1] == name, f"line {n}: {name}'s samples are not grouped"
            assert VALUE.match(value), f"line {n}: bad value {value!r}"
            key = tuple(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels or ""))
            assert key not in families[name]["samples"], f"line {n}: duplicate sample"
            families[name]["samples"][key] = float(value)
    for name, fam in families.items():
        assert fam["type"], f"{name} has no TYPE"
        assert fam["samples"], f"{name} has no samples"
    return families


def test_parser_rejects_what_it_should() -> None:
    for bad in [
        "x 1\n",  # no HELP/TYPE
        "# HELP x h\n# TYPE x gauge\nx 1",  # no final newline
        "# HELP x h\n# TYPE x gauge\nx{a=b} 1\n",  # unquoted label
        "# HELP 1x h\n# TYPE 1x gauge\n1x 1\n",  # bad name
        "# HELP x h\n# TYPE x gauge\nx one\n",  # bad value
    ]:
        with pytest.raises(AssertionError):
            parse(bad)


# --- render_textfile --------------------------------------------------------------------------

COUNTS = {
    "customers_created": 3,
    "customers_updated": 5,
    "documents_created": 2,
    "quarantined": 1,
    "pending": 0,
    "failed": 0,
    "fortnox_requests": 42,
    "rate_limited": 2,
}


def sample(fams: dict[str, dict], name: str, **labels: str) -> float:
    return fams[name]["samples"][tuple(labels.items())]


def test_render_is_valid_exposition_format_with_the_values() -> None:
    m = PassMetrics(
        started_at=1_700_000_000.25, finished_at=1_700_000_012.75, exit_code=1, counts=COUNTS
    )
    text = render_textfile(m, last_success=1_699_999_700.0)
    fams = parse(text)
    assert all(f["type"] == "gauge" and f["help"] for f in fams.values())
    assert sample(fams, "limefort_last_run_timestamp_seconds") == 1_700_000_012.75
    assert sample(fams, "limefort_last_success_timestamp_seconds") == 1_699_999_700.0
    assert sample(fams, "limefort_last_run_duration_seconds") == 12.5
    assert sample(fams, "limefort_last_run_exit_code") == 1
    for kind in ("customers_created", "customers_updated", "documents_created", "quarantined"):
        assert sample(fams, "limefort_records_total", kind=kind) == COUNTS[kind]
    assert sample(fams, "limefort_fortnox_requests") == 42
    assert sample(fams, "limefort_fortnox_rate_limited_total") == 2
    # request counts are metrics of their own, not record kinds
    kinds = {dict(k)["kind"] for k in fams["limefort_records_total"]["samples"]}
    assert "fortnox_requests" not in kinds and "rate_limited" not in kinds


def test_render_fills_missing_counts_with_zero_and_keeps_extra_kinds() -> None:
    m = PassMetrics(started_at=10.0, finished_at=11.0, exit_code=0, counts={"deals_skipped": 7})
    fams = parse(render_textfile(m, last_success=11.0))
    assert sample(fams, "limefort_records_total", kind="failed") == 0
    assert sample(fams, "limefort_records_total", kind="pending") == 0
    assert sample(fams, "limefort_records_total", kind="deals_skipped") == 7
    assert sample(fams, "limefort_fortnox_requests") == 0


def test_render_without_a_success_leaves_that_metric_out() -> None:
    m = PassMetrics(started_at=10.0, finished_at=11.0, exit_code=3, counts={})
    fams = parse(render_textfile(m, last_success=None))
    assert "limefort_last_success_timestamp_seconds" not in fams
    assert sample(fams, "limefort_last_run_exit_code") == 3


def test_label_values_are_escaped() -> None:
    m = PassMetrics(started_at=0, finished_at=0, exit_code=0, counts={'we"ird\\kind\nx': 1})
    fams = parse(render_textfile(m, last_success=None))
    assert sample(fams, "limefort_records_total", kind='we\\"ird\\\\kind\\nx') == 1


def test_clock_going_backwards_never_gives_a_negative_duration() -> None:
    m = PassMetrics(started_at=20.0, finished_at=19.0, exit_code=0, counts={})
    assert (
        sample(parse(render_textfile(m, last_success=None)), "limefort_last_run_duration_seconds")
        == 0
    )


def test_drift_is_a_gauge_of_its_own_zero_when_absent() -> None:
    m = PassMetrics(started_at=0, finished_at=1, exit_code=1, counts={"drift": 4})
    fams = parse(render_textfile(m, last_success=None))
    assert sample(fams, "limefort_drift_records") == 4
    kinds = {dict(k)["kind"] for k in fams["limefort_records_total"]["samples"]}
    assert "drift" not in kinds
    none = PassMetrics(started_at=0, finished_at=1, exit_code=0, counts={})
    assert sample(parse(render_textfile(none, last_success=None)), "limefort_drift_records") == 0


def test_a_tenant_label_is_on_every_series() -> None:
    m = PassMetrics(started_at=0, finished_at=1, exit_code=0, counts=COUNTS)
    fams = parse(render_textfile(m, last_success=1.0, tenant='acme "north"'))
    for name, fam in fams.items():
        for labels in fam["samples"]:
            assert dict(labels)["tenant"] == 'acme \\"north\\"', (name, labels)
    assert sample(fams, "limefort_last_run_exit_code", tenant='acme \\"north\\"') == 0
    assert (
        sample(fams, "limefort_records_total", kind="quarantined", tenant='acme \\"north\\"') == 1
    )


def test_the_metric_names_are_the_documented_ones() -> None:
    m = PassMetrics(started_at=0, finished_at=1, exit_code=0, counts={})
    assert sorted(parse(render_textfile(m, last_success=1.0))) == [
        "limefort_drift_records",
        "limefort_duplicate_records",
        "limefort_fortnox_rate_limited_total",
        "limefort_fortnox_requests",
        "limefort_last_run_duration_seconds",
        "limefort_last_run_exit_code",
        "limefort_last_run_timestamp_seconds",
        "limefort_last_success_timestamp_seconds",
        "limefort_other_writer",
        "limefort_quarantined_records",
        "limefort_records_total",
        "limefort_warning_records",
    ]
    # invoices as the target: what they still owe, per currency (SEK always written)
    owed = PassMetrics(started_at=0, finished_at=1, exit_code=0, owed={})
    fams = parse(render_textfile(owed, last_success=1.0))
    extra = {"unpaid_invoices", "unpaid_amount", "overdue_invoices", "overdue_amount"}
    assert {f"limefort_{n}" for n in extra} <= set(fams)
    ops = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
    table = ops.read_text(encoding="utf-8")
    assert all(f"`{name}" in table for name in fams), "every metric has a row in docs/operations.md"


# --- write_textfile ---------------------------------------------------------------------------


def registry(exit_code: int = 0) -> object:
    return build_registry(
        PassMetrics(started_at=0, finished_at=1, exit_code=exit_code), last_success=None
    )


def test_write_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "limefort.prom"
    target.write_text("old\n")
    old_umask = os.umask(0o077)  # the file must be readable by node_exporter regardless
    try:
        write_textfile(target, registry(1))  # type: ignore[arg-type]
        assert os.umask(0o077) == 0o077  # and the process's umask is as it was
    finally:
        os.umask(old_umask)
    fams = parse(target.read_text())
    assert sample(fams, "limefort_last_run_exit_code") == 1
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["limefort.prom"]


def test_write_into_a_missing_directory_warns_and_does_not_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_textfile(tmp_path / "nope" / "limefort.prom", registry())  # type: ignore[arg-type]
    assert any(r.levelno == logging.WARNING and "textfile" in r.message for r in caplog.records)


def test_a_failed_rename_keeps_the_old_file_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "limefort.prom"
    target.write_text("old\n")

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    # Whichever of the two the library uses to put the new file in place.
    monkeypatch.setattr(metrics.os, "replace", boom)
    monkeypatch.setattr(metrics.os, "rename", boom)
    write_textfile(target, registry())  # type: ignore[arg-type]
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["limefort.prom"]
    assert any("No space left" in r.getMessage() for r in caplog.records)


# --- Pinger -----------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ping_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.paths = []  # type: ignore[attr-defined]
    server.status = 200  # type: ignore[attr-defined]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server: http.server.HTTPServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_pinger_sends_start_then_the_exit_code(ping_server: http.server.HTTPServer) -> None:
    p = Pinger(_url(ping_server, "/ping/abc-123/"))
    p.start()
    p.finish(0)
    p.start()
    p.finish(1)
    assert ping_server.paths == [  # type: ignore[attr-defined]
        "/ping/abc-123/start",
        "/ping/abc-123/0",
        "/ping/abc-123/start",
        "/ping/abc-123/1",
    ]


def test_pinger_without_url_does_nothing() -> None:
    class NoSession:
        def get(self, *a: object, **k: object) -> None:
            raise AssertionError("no URL, no request")

    p = Pinger(None, session=NoSession())
    assert not p.enabled
    p.start()
    p.finish(0)


def test_pinger_error_answer_warns(
    ping_server: http.server.HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    ping_server.status = 500  # type: ignore[attr-defined]
    Pinger(_url(ping_server, "/secret-uuid")).finish(0)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warned and "500" in warned[0].getMessage()
    assert "secret-uuid" not in caplog.text


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_pinger_to_a_closed_port_warns_without_raising_or_leaking_the_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p = Pinger(f"http://127.0.0.1:{_closed_port()}/secret-uuid", timeout=2)
    p.start()
    p.finish(1)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2
    assert "secret-uuid" not in caplog.text


def test_pinger_times_out_instead_of_hanging(caplog: pytest.LogCaptureFixture) -> None:
    # A server that accepts and never answers.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        Pinger(f"http://127.0.0.1:{s.getsockname()[1]}/x", timeout=0.3).start()
    finally:
        s.close()
    assert any("Timeout" in r.getMessage() for r in caplog.records)


def test_pinger_swallows_any_exception(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def get(self, *a: object, **k: object) -> None:
            raise ValueError("whatever the session does")

    Pinger("https://hc-ping.com/u", session=Broken()).finish(0)
    assert any(r.levelno == logging.WARNING for r in caplog.records)
