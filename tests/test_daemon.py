"""`limefort run` and `limefort sync` as real processes against the sandbox (issue 7): changes
reach Fortnox on the next tick; SIGTERM in the middle of a pass ends it at a record boundary
with a consistent state and a recorded run; nothing is lost when it starts again."""

from __future__ import annotations

import json
import signal
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Lf, finish, spawn_logged, wait_for

from limefort_sandbox import Sandbox

BATCH = 40  # new won deals: with the added latency a pass over them takes seconds


def synced_customers(lf: Lf, sb: Sandbox) -> list[str]:
    """Lime Go customers that are in Fortnox (not quarantined)."""
    refs = {c.get("ExternalReference") for c in sb.fortnox.customers}
    return [c for c in sb.limego.customer_ids() if f"limego:company:{c}" in refs]


def fortnox_customer(sb: Sandbox, cid: str) -> dict[str, Any] | None:
    ref = f"limego:company:{cid}"
    return next((c for c in sb.fortnox.customers if c.get("ExternalReference") == ref), None)


def invoices_for(sb: Sandbox, deals: list[str]) -> int:
    refs = Counter(d.get("ExternalInvoiceReference1") for d in sb.fortnox.invoices)
    return sum(1 for d in deals if refs[f"limego:deal:{d}"])


def add_batch(sb: Sandbox, customers: list[str], n: int = BATCH) -> list[str]:
    return [
        sb.limego.add_deal(
            customers[i % len(customers)], stage="won", name=f"Ny affär {i}", value=500 + i
        )
        for i in range(n)
    ]


def assert_one_document_per_won_deal(lf: Lf, sb: Sandbox) -> None:
    """Every deal won since sync.start has exactly one invoice (or is quarantined with a
    reason), no other deal has one, and nothing is left pending."""
    status = lf.status()
    quarantined = {q["key"] for q in status["quarantined"]}
    start = datetime.fromisoformat(sb.start_date).replace(tzinfo=UTC)
    wanted = {f"limego:deal:{d}" for d in sb.limego.won_deal_ids(since=start)}
    refs = Counter(d.get("ExternalInvoiceReference1") for d in sb.fortnox.invoices)
    for ref in wanted:
        assert refs[ref] == 1 or ref.removeprefix("limego:") in quarantined, ref
    assert set(refs) <= wanted
    assert status["documents"]["invoice"] == len(sb.fortnox.invoices)
    assert status["pending"] == []


@pytest.fixture
def sb(make_sandbox: Any) -> Sandbox:
    return make_sandbox(seed=11, companies=24, deals=30)


@pytest.mark.http
def test_daemon_follows_changes_then_stops_cleanly_on_sigterm_mid_pass(
    sb: Sandbox, tmp_path: Path
) -> None:
    lf = Lf(sb, tmp_path)
    lf.edit("sync", interval='"1s"')
    # An open deal of a customer company, to win while the daemon runs.
    lf.run("sync")
    customers = synced_customers(lf, sb)
    assert len(customers) >= 3
    cid = customers[0]
    open_deal = sb.limego.add_deal(cid, stage="open", name="Fönsterbyte", value="9900.00")

    proc, err = spawn_logged(lf, "daemon", "--log-format", "json", "run")
    try:
        # The first pass (at start) sees the open deal and does nothing with it.
        wait_for(
            lambda: any(r["command"] == "run" and r["finished_at"] for r in lf.status()["runs"]),
            what="a finished pass",
        )
        assert sb.fortnox.documents_by_ref(f"limego:deal:{open_deal}") == []

        # Changes in Lime Go reach Fortnox on a following tick.
        sb.limego.update_company(cid, phone="08-123 456 78")
        sb.limego.win_deal(open_deal)
        wait_for(
            lambda: (fortnox_customer(sb, cid) or {}).get("Phone1") == "08-123 456 78",
            what="the phone change in Fortnox",
        )
        inv = wait_for(
            lambda: sb.fortnox.documents_by_ref(f"limego:deal:{open_deal}"),
            what="the won deal's invoice",
        )
        assert len(inv) == 1
        assert inv[0]["CustomerNumber"] == fortnox_customer(sb, cid)["CustomerNumber"]  # type: ignore[index]

        # A batch of new work, slowed down, so a pass is busy with it when SIGTERM comes.
        sb.latency = 0.1
        batch = add_batch(sb, customers)
        wait_for(lambda: invoices_for(sb, batch) >= 1, what="the batch to start")
        proc.send_signal(signal.SIGTERM)
        code = finish(proc, 30.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.read_text()
    assert code == 0, text
    assert "Traceback" not in text
    # --log-format json: every line on stderr is one JSON object, the stop among them.
    events = [json.loads(line) for line in text.splitlines()]
    assert all({"time", "level", "event"} <= set(e) for e in events), events
    assert any("stop requested" in e["event"] for e in events), events  # between two records

    # Consistent: the stopped pass is recorded, nothing is pending, every invoice is known.
    done_before = invoices_for(sb, batch)
    assert 1 <= done_before < BATCH, done_before
    status = lf.status()
    assert status["pending"] == []
    last = status["last_run"]
    assert last["command"] == "run" and last["finished_at"]
    assert last["exit_code"] == 1  # stopped early: cursors held for the next pass
    # Passes on their own ticks: the first, the one with the changes, the stopped one.
    assert sum(r["command"] == "run" for r in status["runs"]) >= 3
    assert status["documents"]["invoice"] == len(sb.fortnox.invoices)

    # Nothing lost: the next pass brings the rest in, each deal once.
    sb.latency = 0.0
    r = lf.run("sync")
    assert r.code == 0, r.err
    assert invoices_for(sb, batch) == BATCH
    refs = Counter(d.get("ExternalInvoiceReference1") for d in sb.fortnox.invoices)
    assert all(refs[f"limego:deal:{d}"] == 1 for d in [*batch, open_deal])
    assert_one_document_per_won_deal(lf, sb)


@pytest.mark.http
def test_sync_honours_sigterm_at_a_record_boundary(sb: Sandbox, tmp_path: Path) -> None:
    """systemd stops a oneshot with SIGTERM: the record in hand finishes and commits, the
    command exits 1 and the deals cursor stays where it was."""
    lf = Lf(sb, tmp_path)
    assert lf.run("sync").code in (0, 1)
    before = lf.status()
    customers = synced_customers(lf, sb)
    sb.latency = 0.1
    batch = add_batch(sb, customers)

    proc, err = spawn_logged(lf, "sync", "sync")
    try:
        wait_for(lambda: invoices_for(sb, batch) >= 1, what="the sync to start on the batch")
        proc.send_signal(signal.SIGTERM)
        code = finish(proc, 30.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.read_text()
    assert code == 1, text
    assert "Traceback" not in text
    assert "stopped on request" in text
    done = invoices_for(sb, batch)
    assert 1 <= done < BATCH, done

    status = lf.status()
    assert status["pending"] == []
    assert status["cursors"]["deals"] == before["cursors"]["deals"]
    last = status["last_run"]
    assert last["command"] == "sync" and last["exit_code"] == 1 and last["finished_at"]
    assert last["counts"]["invoices_created"] == done
    assert status["documents"]["invoice"] == len(sb.fortnox.invoices)

    sb.latency = 0.0
    r = lf.run("sync")
    assert r.code == before["last_run"]["exit_code"], r.err
    assert invoices_for(sb, batch) == BATCH
    assert_one_document_per_won_deal(lf, sb)
    assert lf.status()["cursors"]["deals"] > before["cursors"]["deals"]
