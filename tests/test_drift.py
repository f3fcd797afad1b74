"""Drift (DESIGN rule 12, issue 14) end to end against the in-process sandbox: a deal that
changes after its document exists is named in `status`, on every pass and in the metrics,
the pass exits 1 until `limefort ack`, and drift never makes a second document."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import Lf

from limefort_sandbox import Sandbox


def setup(make: Any, tmp_path: Path, **sync: Any) -> tuple[Lf, Sandbox, str, str]:
    """A clean sandbox with one customer and one won deal, invoiced by a first pass."""
    sb: Sandbox = make(seed=41, companies=0, deals=0)
    cid = sb.limego.add_company(name="Driftbolaget AB", status="customer")
    did = sb.limego.add_deal(
        company_id=cid, stage="won", name="Takomläggning", value="2000.00", currency="SEK"
    )
    lf = Lf(sb, tmp_path, **sync)
    first = lf.run("sync")
    assert first.code == 0, first.err
    [invoice] = sb.fortnox.documents_by_ref(f"limego:deal:{did}")
    return lf, sb, did, str(invoice["DocumentNumber"])


def invoices_of(sb: Sandbox, did: str) -> list[dict[str, Any]]:
    return sb.fortnox.documents_by_ref(f"limego:deal:{did}")


def change(sb: Sandbox, did: str, kind: str) -> None:
    lg = sb.limego
    if kind == "value":
        lg.update_deal(did, value="2500.00")
    elif kind == "currency":
        lg.update_deal(did, currency="EUR")
    elif kind == "company":
        other = lg.add_company(name="Andra Bolaget AB", status="customer")
        lg.update_deal(did, company_id=other)
    elif kind == "name":
        lg.update_deal(did, name="Takomläggning och hängrännor")
    elif kind == "lost":
        lg.lose_deal(did)
    elif kind == "reopened":
        lg.update_deal(did, stage="open")
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["value", "currency", "company", "name", "lost", "reopened"])
def test_each_drift_kind_is_named_exits_1_and_ack_clears_it(
    make_inprocess_sandbox: Any, tmp_path: Path, kind: str
) -> None:
    lf, sb, did, number = setup(make_inprocess_sandbox, tmp_path)
    change(sb, did, kind)

    r = lf.run("sync")
    assert r.code == 1, r.err
    key = f"deal:{did}"
    # A warning names it on the pass...
    assert f"{key} drift:" in r.err and kind in r.err
    # ...and again on the next one, which changes nothing else.
    again = lf.run("sync")
    assert again.code == 1 and f"{key} drift:" in again.err

    status = lf.status()
    [entry] = status["drift"]
    assert entry["key"] == key
    assert entry["document"] == f"invoice:{number}"
    assert kind in entry["changes"] and entry["since"]
    old, new = entry["changes"][kind]
    assert old != new
    if kind == "value":
        assert entry["changes"]["value"] == ["2000.00", "2500.00"]
    text = lf.run("status")
    assert text.code == 0 and key in text.out and kind in text.out and "Drift:" in text.out

    # Drift never makes a second document, and never touches the first.
    [invoice] = invoices_of(sb, did)
    assert str(invoice["DocumentNumber"]) == number
    assert invoice["InvoiceRows"][0]["Price"] == Decimal("2000.00")
    assert not invoice["Cancelled"]
    assert len(sb.fortnox.invoices) == 1

    acked = lf.run("ack", key)
    assert acked.code == 0, acked.err
    assert lf.status()["drift"] == []
    after = lf.run("sync")
    assert after.code == 0, after.err
    assert "drift" not in after.err


def test_a_deal_that_changes_back_clears_its_drift(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    lf, sb, did, _ = setup(make_inprocess_sandbox, tmp_path)
    sb.limego.update_deal(did, value="2500.00")
    assert lf.run("sync").code == 1
    assert lf.status()["drift"]
    sb.limego.update_deal(did, value="2000.00")
    r = lf.run("sync")
    assert r.code == 0, r.err
    assert lf.status()["drift"] == []
    # lost, then won again: the same
    sb.limego.lose_deal(did)
    assert lf.run("sync").code == 1
    sb.limego.win_deal(did)
    assert lf.run("sync").code == 0
    assert lf.status()["drift"] == [] and len(invoices_of(sb, did)) == 1


def test_a_new_change_after_ack_is_named_again(make_inprocess_sandbox: Any, tmp_path: Path) -> None:
    lf, sb, did, _ = setup(make_inprocess_sandbox, tmp_path)
    sb.limego.update_deal(did, value="2500.00")
    lf.run("sync")
    assert lf.run("ack", "--all").code == 0
    sb.limego.update_deal(did, probability=0.9)  # read again, the same drift: stays acknowledged
    assert lf.run("sync").code == 0
    sb.limego.update_deal(did, value="3000.00")
    assert lf.run("sync").code == 1
    [entry] = lf.status()["drift"]
    assert entry["changes"] == {"value": ["2000.00", "3000.00"]}


def test_drift_feeds_the_metric_and_the_run_counts(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    lf, sb, did, _ = setup(make_inprocess_sandbox, tmp_path)
    prom = tmp_path / "limefort.prom"
    lf.edit("metrics", textfile=str(prom))
    sb.limego.update_deal(did, value="2500.00")
    assert lf.run("sync").code == 1
    assert "limefort_drift_records 1.0" in prom.read_text()
    status = lf.status()
    assert status["last_run"]["counts"]["drift"] == 1
    assert status["last_run"]["exit_code"] == 1
    lf.run("ack", f"deal:{did}")
    assert lf.run("sync").code == 0
    assert "limefort_drift_records 0.0" in prom.read_text()


def test_update_unbooked_updates_an_unbooked_document(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    lf, sb, did, number = setup(make_inprocess_sandbox, tmp_path, on_deal_change="update-unbooked")
    sb.limego.update_deal(did, value="2500.00", name="Takomläggning, större")
    r = lf.run("sync")
    assert r.code == 0, r.err
    [invoice] = invoices_of(sb, did)
    assert str(invoice["DocumentNumber"]) == number
    [row] = invoice["InvoiceRows"]
    assert row["Price"] == Decimal("2500.00")
    assert row["Description"] == "Takomläggning, större"
    assert lf.status()["drift"] == []
    assert lf.status()["last_run"]["counts"]["documents_updated"] == 1
    # The new values are the baseline now: nothing more to do.
    sb.limego.update_deal(did, probability=0.5)
    assert lf.run("sync").code == 0
    assert len(sb.fortnox.invoices) == 1


def test_update_unbooked_moves_the_invoice_to_the_new_customer(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    lf, sb, did, _ = setup(make_inprocess_sandbox, tmp_path, on_deal_change="update-unbooked")
    other = sb.limego.add_company(name="Nya Ägaren AB", status="customer")
    sb.limego.update_deal(did, company_id=other)
    r = lf.run("sync")  # the companies phase creates the customer first
    assert r.code == 0, r.err
    [customer] = [c for c in sb.fortnox.customers if c["Name"] == "Nya Ägaren AB"]
    [invoice] = invoices_of(sb, did)
    assert invoice["CustomerNumber"] == customer["CustomerNumber"]
    assert invoice["CustomerName"] == "Nya Ägaren AB"


@pytest.mark.parametrize("how", ["booked", "sent"])
def test_update_unbooked_only_warns_for_a_booked_or_sent_document(
    make_inprocess_sandbox: Any, tmp_path: Path, how: str
) -> None:
    lf, sb, did, number = setup(make_inprocess_sandbox, tmp_path, on_deal_change="update-unbooked")
    if how == "booked":
        sb.fortnox.book_invoice(number)
    else:
        sb.fortnox.mark_sent(number)
    sb.limego.update_deal(did, value="2500.00")
    r = lf.run("sync")
    assert r.code == 1, r.err
    assert f"deal:{did} drift:" in r.err
    [invoice] = invoices_of(sb, did)
    assert invoice["InvoiceRows"][0]["Price"] == Decimal("2000.00")
    [entry] = lf.status()["drift"]
    assert entry["changes"] == {"value": ["2000.00", "2500.00"]}
    puts = [r for r in sb.fortnox.requests if r.method == "PUT" and "/invoices/" in r.path]
    assert puts == []


def test_update_unbooked_never_cancels_a_lost_deals_document(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    lf, sb, did, _ = setup(make_inprocess_sandbox, tmp_path, on_deal_change="update-unbooked")
    sb.limego.lose_deal(did)
    assert lf.run("sync").code == 1
    [invoice] = invoices_of(sb, did)
    assert not invoice["Cancelled"]
    assert "lost" in lf.status()["drift"][0]["changes"]


def test_update_unbooked_checks_fortnox_right_before_the_put(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    """Booked after the index was read: the document's own answer stops the PUT."""
    lf, sb, did, number = setup(make_inprocess_sandbox, tmp_path, on_deal_change="update-unbooked")
    sb.limego.update_deal(did, value="2500.00")
    real_get = sb.fortnox.handle

    def book_on_get(req: Any) -> Any:
        if req.method == "GET" and req.path == f"/3/invoices/{number}":
            sb.fortnox.book_invoice(number)
        return real_get(req)

    sb.fortnox.handle = book_on_get  # type: ignore[method-assign]
    r = lf.run("sync")
    assert r.code == 1, r.err
    assert invoices_of(sb, did)[0]["InvoiceRows"][0]["Price"] == Decimal("2000.00")
    assert [r for r in sb.fortnox.requests if r.method == "PUT"] == []
    assert [(e["key"], e["changes"]) for e in lf.status()["drift"]] == [
        (f"deal:{did}", {"value": ["2000.00", "2500.00"]})
    ]


def test_ack_usage(make_inprocess_sandbox: Any, tmp_path: Path) -> None:
    lf, sb, did, _ = setup(make_inprocess_sandbox, tmp_path)
    assert lf.run("ack").code == 2
    assert lf.run("ack", "nonsense").code == 2
    # A company key names a duplicate customer (rule 14): none here, so exit 1, said.
    nothing = lf.run("ack", "company:1")
    assert nothing.code == 1 and "no unacknowledged drift or duplicate" in nothing.err
    assert lf.run("ack", "--all", f"deal:{did}").code == 2
    none = lf.run("ack", f"deal:{did}")
    assert none.code == 1 and "no unacknowledged drift" in none.err
    assert lf.run("ack", "--all").code == 0


def test_on_deal_change_must_be_known(make_inprocess_sandbox: Any, tmp_path: Path) -> None:
    sb = make_inprocess_sandbox(seed=41, companies=0, deals=0)
    lf = Lf(sb, tmp_path, on_deal_change="update-everything")
    r = lf.run("sync")
    assert r.code == 2
    assert "sync.on_deal_change" in r.err
