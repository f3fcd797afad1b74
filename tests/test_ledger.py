"""Fortnox is the ledger (issue 12): whatever happens to the state file, Fortnox itself stops a
second document or customer. Against the sandbox, through the CLI in-process."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from limefort_sandbox import Sandbox
from tests.conftest import Lf
from tests.test_exactly_once import assert_exactly_once, expected


def writes(sb: Sandbox) -> Counter[str]:
    return Counter(
        f"{r.method} {r.path}"
        for r in sb.fortnox.requests
        if r.method in ("POST", "PUT")
        and r.path.startswith("/3/")
        and not r.path.startswith("/3/customers/")  # adopting a customer sends our fields
    )


def orgless(sb: Sandbox, n: int) -> list[str]:
    """Make n customers of the CRM companies without an organisation number."""
    ids = sorted(sb.limego.customer_ids())[:n]
    for cid in ids:
        sb.limego.update_company(cid, business_id=None)
    return ids


def test_state_file_deleted_after_a_pass_creates_nothing_again(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb = make_sandbox(seed=21, companies=24, deals=40)
    lf = Lf(sb, tmp_path, start="2000-01-01")
    no_orgnr = orgless(sb, 2)
    first = lf.run("sync")
    assert first.code == 0, first.err
    deals, companies = expected(sb, lf)
    made = writes(sb)
    assert made["POST /3/invoices"] > 0 and made["POST /3/customers"] > 0

    lf.state.unlink()
    sb.fortnox.reset_log()
    again = lf.run("sync")
    assert again.code == 0, again.err
    assert writes(sb) == Counter(), "nothing is created twice"
    status = lf.status()
    docs = sum(status["documents"].values())
    assert docs == made["POST /3/invoices"]
    assert f"rebuilt links: {status['customers']} customers, {docs} documents" in again.out
    assert status["customers"] == len(companies)
    assert_exactly_once(sb, lf, deals, companies)
    # The two without an organisation number were found by limefort's ExternalReference.
    custs = {c["ExternalReference"] for c in sb.fortnox.customers}
    assert {f"limego:company:{cid}" for cid in no_orgnr} <= custs


def test_an_older_backup_restored_makes_no_duplicates(make_sandbox: Any, tmp_path: Path) -> None:
    sb = make_sandbox(seed=22, companies=24, deals=40)
    lf = Lf(sb, tmp_path, start="2000-01-01")
    assert lf.run("sync").code == 0
    backup = tmp_path / "backup.db"
    shutil.copy(lf.state, backup)

    # After the backup: more deals won and invoiced, and a new customer without an orgnr.
    new_company = sb.limego.add_company(name="Nyföretaget utan orgnr", status="customer")
    won = sb.limego.stage_id("won")
    open_deals = [d for d in sorted(sb.limego.deals) if d not in set(sb.limego.won_deal_ids(None))]
    for did in open_deals[:3]:
        sb.limego.update_deal(did, stage=won)
    sb.limego.update_deal(open_deals[3], stage=won, company_id=new_company)
    assert lf.run("sync").code == 0
    deals, companies = expected(sb, lf)

    lf.state.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(lf.state) + suffix).unlink(missing_ok=True)
    shutil.copy(backup, lf.state)
    sb.fortnox.reset_log()
    r = lf.run("sync")
    assert r.code == 0, r.err
    assert writes(sb) == Counter()
    tally = assert_exactly_once(sb, lf, deals, companies)
    assert not tally.duplicate_documents and not tally.duplicate_customers


def _fortnox_put(sb: Sandbox, path: str) -> None:
    token = sb.fortnox.issue_access_token()
    resp = requests.put(
        f"{sb.fortnox_url}/3{path}",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        timeout=5,
    )
    assert resp.status_code == 200, resp.text


@pytest.mark.http
def test_a_document_made_twice_by_hand_is_named_and_a_cancelled_one_is_not_recreated(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb = make_sandbox(seed=23, companies=20, deals=30)
    lf = Lf(sb, tmp_path, start="2000-01-01")
    assert lf.run("sync").code == 0
    invoices = sorted(sb.fortnox.invoices, key=lambda d: int(d["DocumentNumber"]))
    twice, cancelled = invoices[0], invoices[1]
    copy = {
        k: twice[k]
        for k in ("CustomerNumber", "ExternalInvoiceReference1", "InvoiceRows")
        if k in twice
    }
    copy["InvoiceRows"] = [
        {k: v for k, v in row.items() if k in ("Description", "Price", "DeliveredQuantity")}
        for row in copy["InvoiceRows"]
    ]
    extra = sb.fortnox.add_invoice(copy)
    _fortnox_put(sb, f"/invoices/{cancelled['DocumentNumber']}/cancel")

    # A lost state file: the next pass must read both facts from Fortnox, not from the cache.
    lf.state.unlink()
    sb.fortnox.reset_log()
    r = lf.run("sync")
    # An unacknowledged duplicate: named, exit 1, never "in line" (rule 14).
    assert r.code == 1, r.err
    assert "duplicate" in r.err and "in line" not in r.out
    assert writes(sb) == Counter(), "the cancelled invoice is not re-created"
    status = lf.status()
    key = "deal:" + twice["ExternalInvoiceReference1"].removeprefix("limego:deal:")
    dup = [d for d in status["duplicates"] if d["key"] == key]
    assert dup and set(dup[0]["documents"]) == {
        f"invoice:{twice['DocumentNumber']}",
        f"invoice:{extra}",
    }
    ckey = "deal:" + cancelled["ExternalInvoiceReference1"].removeprefix("limego:deal:")
    assert [c["key"] for c in status["cancelled"]] == [ckey]
    text = lf.run("status")
    assert key in text.out and ckey in text.out and "cancelled" in text.out


def test_a_dry_run_with_a_lost_state_file_finds_in_fortnox_what_it_would_have_made(
    make_sandbox: Any, tmp_path: Path
) -> None:
    """A dry run writes no state: what it reads of Fortnox goes into a scratch index in memory,
    and its plan is read against that. After the state file is lost, the dry run adopts every
    customer and links every document Fortnox already holds: it plans to create nothing."""
    sb = make_sandbox(seed=21, companies=12, deals=20)
    lf = Lf(sb, tmp_path, start="2000-01-01")
    orgless(sb, 1)  # found by limefort's ExternalReference, read one by one into the scratch
    assert lf.run("sync").code == 0
    made = writes(sb)
    lf.state.unlink()
    sb.fortnox.reset_log()
    dry = lf.run("sync", "--dry-run")
    assert dry.code == 0, dry.err
    assert "+ create" not in dry.out
    assert dry.out.count("= link invoice") == made["POST /3/invoices"] > 0
    assert "= adopt customer" in dry.out
    assert writes(sb) == Counter()
    status = lf.status()  # and the state file holds no link the dry run found
    assert status["customers"] == 0 and sum(status["documents"].values()) == 0
