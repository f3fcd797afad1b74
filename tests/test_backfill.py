"""`limefort backfill` end to end (issue 7): 150 deals won before sync.start, a backfill that is
interrupted twice (a polite SIGINT, then a SIGKILL) and resumed, ending with exactly one
invoice per deal; the dry run, the refusal without a terminal, the progress line and its ETA."""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import DEADLINE, Lf, finish, fortnox_calls, spawn_logged, wait_for

from limefort import plan as P
from limefort.commands.passes import Progress
from limefort.engine.sync import eta_seconds
from limefort.state.store import Store
from limefort_sandbox import Sandbox

N = 150


class _Any:
    def __eq__(self, other: object) -> bool:
        return True


ANY = _Any()


@dataclass
class Historical:
    sb: Sandbox
    lf: Lf
    deals: list[str]

    @property
    def today(self) -> str:
        return datetime.now(UTC).date().isoformat()

    def refs(self) -> Counter[str]:
        return Counter(d.get("ExternalInvoiceReference1") for d in self.sb.fortnox.invoices)

    def created(self) -> int:
        return len(self.sb.fortnox.invoices)


@pytest.fixture
def hist(make_sandbox: Any, tmp_path: Path) -> Historical:
    """A Lime Go whose only wins are N deals won before sync.start; a first `sync` has run and
    recorded them as skipped."""
    sb = make_sandbox(seed=3, companies=8, deals=0, customer_ratio=1.0)
    customers = sb.limego.customer_ids()
    deals = [
        sb.limego.add_deal(
            customers[i % len(customers)], stage="won", name=f"Historisk affär {i}", value=1000 + i
        )
        for i in range(N)
    ]
    # sync.start a moment after the last of them: to `sync` they are history.
    start = datetime.now(UTC) + timedelta(seconds=1)
    lf = Lf(sb, tmp_path, start=start.isoformat())
    r = lf.run("sync")
    assert r.code == 0, r.err
    status = lf.status()
    assert status["skipped_historical"] == N
    assert status["quarantined"] == [] and status["pending"] == []
    assert sb.fortnox.invoices == []
    assert "150 deals won before sync.start skipped" in r.out
    return Historical(sb, lf, deals)


@pytest.mark.http
def test_backfill_interrupted_twice_ends_with_exactly_one_invoice_per_deal(
    hist: Historical,
) -> None:
    sb, lf = hist.sb, hist.lf
    sb.latency = 0.03  # slow enough that the interruptions land mid-way

    # 1. SIGINT (Ctrl-C) after some invoices: the record in hand finishes, exit 1.
    proc, err = spawn_logged(lf, "bf1", "backfill", "--from", hist.today, "--yes")
    wait_for(lambda: hist.created() >= 30 or proc.poll() is not None, what="30 invoices")
    proc.send_signal(signal.SIGINT)
    assert finish(proc) == 1, err.read_text()
    first = hist.created()
    assert 30 <= first < N, first
    text = err.read_text()
    assert "Traceback" not in text
    assert "stopped on request" in text
    # The progress line: count, rate and ETA.
    assert re.search(r"\b\d+/150 \d+(\.\d+)?/s ETA \d+:\d\d:\d\d\b", text), text
    status = lf.status()
    assert status["pending"] == []  # stopped between records: nothing left in the air
    assert status["last_run"]["command"] == "backfill"
    assert status["last_run"]["exit_code"] == 1
    assert status["last_run"]["finished_at"]
    assert status["last_run"]["counts"]["invoices_created"] == first
    assert status["documents"]["invoice"] == first

    # 2. SIGKILL a little later: no chance to tidy up; at most one intent is left pending.
    proc, err = spawn_logged(lf, "bf2", "backfill", "--from", hist.today, "--yes")
    out2 = (lf.dir / "bf2.out").read_text
    wait_for(lambda: hist.created() >= first + 30 or proc.poll() is not None, what="30 more")
    proc.kill()
    assert finish(proc) == -signal.SIGKILL, err.read_text()
    second = hist.created()
    assert first + 30 <= second < N, (first, second)
    assert f"{N - first} deals won between" in out2()
    assert len(lf.status()["pending"]) <= 1

    # 3. Resume at full speed. A POST cut off by the kill may still be "in flight" for a
    # while (the designed wait before believing Fortnox has none); then it is sent or adopted.
    sb.latency = 0.0
    resumes = 0
    end = time.monotonic() + DEADLINE
    while True:
        r = lf.run("backfill", "--from", hist.today, "--yes")
        resumes += 1
        status = lf.status()
        if r.code == 0 or time.monotonic() > end:
            break
        # Only the designed wait may hold it up: one pending deal, nothing else wrong.
        assert r.code == 1 and len(status["pending"]) == 1, (r.code, r.err)
        assert status["quarantined"] == [], status["quarantined"]
        time.sleep(0.5)
    assert r.code == 0, r.err
    refs = hist.refs()
    assert refs == Counter({f"limego:deal:{d}": 1 for d in hist.deals})
    assert len(sb.fortnox.invoices) == N
    assert status["documents"]["invoice"] == N
    assert status["pending"] == [] and status["quarantined"] == []
    assert status["skipped_historical"] == 0
    assert [x["command"] for x in status["runs"][: resumes + 2]] == ["backfill"] * (resumes + 2)
    killed = status["runs"][resumes]  # the SIGKILLed one: recorded as started, never finished
    assert killed["finished_at"] is None and killed["exit_code"] is None

    # Done means done: another backfill finds nothing and writes nothing.
    sb.fortnox.reset_log()
    r = lf.run("backfill", "--from", hist.today, "--yes")
    assert r.code == 0, r.err
    assert "0 deals won between" in r.out
    assert [c for c in fortnox_calls(sb) if not c.startswith("GET")] == []


def test_a_pending_backfill_intent_is_sent_by_the_next_backfill(hist: Historical) -> None:
    """A backfill killed between committing an intent and sending its POST leaves a pending
    row that Fortnox knows nothing about. Once that is certain, the next backfill must send it,
    not fall back to `sync`'s rule and mark the deal skipped again (which would end "done" with
    a deal short)."""
    lf, did = hist.lf, hist.deals[0]
    store = Store.open(lf.state, create=False)
    try:
        cust = store.db.execute("SELECT customer_number FROM customers LIMIT 1").fetchone()[0]
        with store.transaction():
            store.document_intent(
                did,
                kind="invoice",
                idem_key=f"limego:deal:{did}",
                company_id=None,
                customer_number=cust,
                name="Historisk affär 0",
                value="1000",
                won_at=datetime.now(UTC).isoformat(),
            )
            store.db.execute(
                "UPDATE documents SET since = ? WHERE deal_id = ?",
                [(datetime.now(UTC) - timedelta(hours=1)).isoformat(), did],
            )
    finally:
        store.close()
    assert lf.status()["pending"] == [{"key": f"deal:{did}", "kind": "invoice", "since": ANY}]

    r = lf.run("backfill", "--from", hist.today, "--yes")
    assert r.code == 0, r.err
    assert hist.refs() == Counter({f"limego:deal:{d}": 1 for d in hist.deals})
    status = lf.status()
    assert status["documents"]["invoice"] == N
    assert status["skipped_historical"] == 0 and status["pending"] == []


def test_dry_run_writes_nothing_and_estimates_from_the_rate_limit(hist: Historical) -> None:
    lf, sb = hist.lf, hist.sb
    # With Fortnox's real limit (25 requests per 5 s) 150 invoices take about 30 s; say so.
    lf.write(lf.config.read_text().replace("rate_limit = 0", "rate_limit = 25"))
    before = lf.status()
    state_before = lf.state.read_bytes()
    sb.fortnox.reset_log()
    r = lf.run("backfill", "--from", hist.today, "--dry-run")
    assert r.code == 0, r.err
    assert f"150 deals won between {hist.today} and {hist.today} have no invoice" in r.out
    assert "about 0:00:30 at Fortnox's rate limit" in r.out
    assert r.out.count("+ create invoice") == N, r.out[-2000:]
    assert [c for c in fortnox_calls(sb) if not c.startswith("GET")] == []
    assert sb.fortnox.invoices == []
    assert lf.status() == before  # no run recorded, no cursor moved, nothing pending
    assert lf.state.read_bytes() == state_before


@pytest.mark.http
def test_without_yes_and_without_a_terminal_it_refuses_in_one_line(hist: Historical) -> None:
    hist.sb.fortnox.reset_log()
    proc, err = spawn_logged(hist.lf, "noyes", "backfill", "--from", hist.today)
    assert finish(proc) == 2
    lines = err.read_text().strip().splitlines()
    assert len(lines) == 1, lines
    assert "--yes" in lines[0] and lines[0].startswith("limefort: ")
    assert hist.sb.fortnox.invoices == []
    assert [c for c in fortnox_calls(hist.sb) if c.startswith("POST")] == []


def test_eta_never_promises_more_than_fortnox_allows() -> None:
    assert eta_seconds(150, 0, 25, 5.0) == pytest.approx(30.0)
    # Faster than the limit so far (a burst): the limit still rules the estimate.
    assert eta_seconds(150, 100.0, 25, 5.0) == pytest.approx(30.0)
    # Slower than the limit: the observed rate rules.
    assert eta_seconds(150, 2.0, 25, 5.0) == pytest.approx(75.0)
    # No limit and nothing observed yet: no estimate rather than a made-up one.
    assert eta_seconds(150, 0, 0, 5.0) == 0.0


def test_progress_line_shows_count_rate_and_eta(capsys: pytest.CaptureFixture[str]) -> None:
    bar = Progress(150, 25, 5.0)
    bar.t0 -= 9.0  # as if 45 records took 9 s: 5/s, exactly Fortnox's limit
    for _ in range(45):
        bar._last_print = 0.0  # print every step, as a terminal would
        bar.step(None)  # type: ignore[arg-type]
    line = capsys.readouterr().err.strip().splitlines()[-1]
    m = re.search(r"(\d+)/150 ([\d.]+)/s ETA (\d+):(\d\d):(\d\d)", line)
    assert m, line
    assert m.group(1) == "45"
    assert 4.0 < float(m.group(2)) <= 5.0
    eta = int(m.group(3)) * 3600 + int(m.group(4)) * 60 + int(m.group(5))
    assert 20 <= eta <= 27  # 105 left at <= 5/s: about 21 s


def test_backfill_of_150_is_a_few_seconds_and_one_post_each(hist: Historical) -> None:
    """With the client limiter off and no latency the cost is the requests: one POST per deal
    and a handful of reads, not a read per deal."""
    sb, lf = hist.sb, hist.lf
    sb.fortnox.reset_log()
    sb.limego.reset_log()
    started = time.monotonic()
    r = lf.run("backfill", "--from", hist.today, "--yes")
    took = time.monotonic() - started
    assert r.code == 0, r.err
    assert hist.refs() == Counter({f"limego:deal:{d}": 1 for d in hist.deals})
    calls = fortnox_calls(sb)
    # One POST each, plus one read of Fortnox's invoice index (pages of 500) before the first:
    # Fortnox is the ledger, so no key it already holds is sent again. The writer guard reads
    # what changed again after the first 3 and then every 50 creations, and once after the
    # pass (rule 14): 1 + 3 + 1 reads for 150.
    looks = sum(P.writer_check_due(n, 3) for n in range(1, N))
    assert looks == 3
    assert Counter(calls) == Counter({"POST /3/invoices": N, "GET /3/invoices": 1 + looks + 1})
    limego_reads = [x for x in sb.limego.requests if x.path.startswith("/api/")]
    assert len(limego_reads) < 20, [x.path for x in limego_reads]
    assert took < 30, took  # about a second here; generous for a slow CI machine
