"""The sync end to end against the sandbox servers (issue 3's must-shows)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import Lf, beyond_ledger_read

from limefort_sandbox import Sandbox


def won_stage_ids(sb: Sandbox) -> set[str]:
    return {sid for sid, s in sb.limego.stages.items() if s["attributes"]["category"] == "won"}


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def expected_won(sb: Sandbox, start: datetime) -> set[str]:
    won = won_stage_ids(sb)
    return {
        did
        for did, d in sb.limego.deals.items()
        if d["relationships"]["stage"]["data"]["id"] in won
        and parse(d["attributes"]["updated_at"]) >= start
    }


def docs_by_ref(docs: list[dict[str, Any]]) -> Counter[str]:
    return Counter(d.get("ExternalInvoiceReference1") for d in docs)


def customers_by_ref(sb: Sandbox) -> Counter[str]:
    return Counter(c.get("ExternalReference") for c in sb.fortnox.customers)


def start_of(lf: Lf) -> datetime:
    text = lf.config.read_text()
    value = text.split("start = ")[1].split("\n")[0].strip('"')
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def test_first_pass_creates_customers_and_only_new_wins(lf: Lf, sandbox: Sandbox) -> None:
    r = lf.run("sync")
    assert r.code in (0, 1), r.err
    status = lf.status()
    quarantined = {q["key"] for q in status["quarantined"]}

    # Every customer is in Fortnox exactly once, or quarantined with a reason.
    refs = customers_by_ref(sandbox)
    for cid in sandbox.limego.customer_ids():
        key = f"company:{cid}"
        assert refs[f"limego:{key}"] == 1 or key in quarantined, key
    assert all(n == 1 for n in refs.values())

    # Only deals won after sync.start became invoices, each exactly once.
    wanted = expected_won(sandbox, start_of(lf))
    assert wanted, "the seed should hold deals won after start"
    got = docs_by_ref(sandbox.fortnox.invoices)
    for did in wanted:
        key = f"deal:{did}"
        assert got[f"limego:{key}"] == 1 or key in quarantined, key
    assert set(got) <= {f"limego:deal:{d}" for d in wanted}
    assert all(n == 1 for n in got.values())
    assert sandbox.fortnox.orders == []
    assert status["documents"]["invoice"] == len(sandbox.fortnox.invoices)
    assert status["skipped_historical"] > 0
    assert set(status["cursors"]) == {"companies", "deals"}


def test_second_pass_without_changes_makes_one_fortnox_request_the_ledger_look(
    lf: Lf, sandbox: Sandbox
) -> None:
    lf.run("sync")
    sandbox.fortnox.reset_log()
    r = lf.run("sync")
    assert r.code in (0, 1), r.err
    assert beyond_ledger_read(sandbox) == []
    assert [x for x in sandbox.fortnox.requests if x.path.startswith("/oauth")] == []


def test_phone_change_is_one_put_with_only_that_field(lf: Lf, sandbox: Sandbox) -> None:
    lf.run("sync")
    cid = next(
        c
        for c in sandbox.limego.customer_ids()
        if f"company:{c}" not in {q["key"] for q in lf.status()["quarantined"]}
    )
    sandbox.limego.update_company(cid, phone="08-555 12 34")
    sandbox.fortnox.reset_log()
    r = lf.run("sync")
    assert r.code in (0, 1), r.err
    assert [c.split("/3/")[1].split("/")[0] for c in beyond_ledger_read(sandbox)] == ["customers"]
    calls = [x for x in sandbox.fortnox.requests if x.method == "PUT"]
    assert len(calls) == 1, [f"{c.method} {c.path}" for c in calls]
    assert calls[0].method == "PUT" and calls[0].path.startswith("/3/customers/")
    assert calls[0].body == {"Customer": {"Phone1": "08-555 12 34"}}
    number = calls[0].path.rsplit("/", 1)[1]
    fx = next(c for c in sandbox.fortnox.customers if c["CustomerNumber"] == number)
    assert fx["Phone1"] == "08-555 12 34"
    assert fx["ExternalReference"] == f"limego:company:{cid}"


def test_won_deal_for_a_new_company_creates_customer_then_invoice(lf: Lf, sandbox: Sandbox) -> None:
    lf.run("sync")
    cid = sandbox.limego.add_company(
        name="Ödmans Snickeri AB", business_id="556036-0793", status="prospect", city="Örebro"
    )
    did = sandbox.limego.add_deal(company_id=cid, stage="won", name="Köksluckor", value="1234.50")
    sandbox.fortnox.reset_log()
    r = lf.run("sync")
    assert r.code in (0, 1), r.err
    posts = [x for x in sandbox.fortnox.requests if x.method == "POST"]
    assert [p.path for p in posts] == ["/3/customers", "/3/invoices"]
    cust = next(
        c
        for c in sandbox.fortnox.customers
        if c.get("ExternalReference") == f"limego:company:{cid}"
    )
    inv = sandbox.fortnox.documents_by_ref(f"limego:deal:{did}")
    assert len(inv) == 1
    assert inv[0]["CustomerNumber"] == cust["CustomerNumber"]
    assert cust["OrganisationNumber"] == "556036-0793"
    row = inv[0]["InvoiceRows"][0]
    assert Decimal(str(row["Price"])) == Decimal("1234.50")
    assert posts[1].body is not None
    assert str(posts[1].body["Invoice"]["InvoiceRows"][0]["Price"]) == "1234.50"


def test_existing_fortnox_customer_is_adopted_by_orgnr(lf: Lf, sandbox: Sandbox) -> None:
    cid = sandbox.limego.add_company(
        name="Gamla Kunden AB", business_id="5560360793", status="customer"
    )
    existing = sandbox.fortnox.add_customer(
        {"Name": "Gamla Kunden", "OrganisationNumber": "556036-0793"}
    )
    r = lf.run("sync", "--only", "customers")
    assert r.code in (0, 1), r.err
    same = [c for c in sandbox.fortnox.customers if c.get("OrganisationNumber") == "556036-0793"]
    assert len(same) == 1 and same[0]["CustomerNumber"] == existing
    assert same[0]["Name"] == "Gamla Kunden AB"
    assert same[0]["ExternalReference"] == f"limego:company:{cid}"
    # The index came from pages of 500, not one search per company.
    gets = [x for x in sandbox.fortnox.requests if x.method == "GET" and x.path == "/3/customers"]
    assert gets and all(g.query.get("limit") == "500" for g in gets)
    assert not any("organisationnumber" in g.query for g in gets)


@pytest.mark.parametrize("target", ["order", "none"])
def test_deal_target_order_and_none(sandbox: Sandbox, tmp_path: Path, target: str) -> None:
    lf = Lf(sandbox, tmp_path, deal_target=target)
    r = lf.run("sync")
    assert r.code in (0, 1), r.err
    assert sandbox.fortnox.invoices == []
    if target == "none":
        assert sandbox.fortnox.orders == []
        assert "deals" not in lf.status()["cursors"]
    else:
        wanted = expected_won(sandbox, start_of(lf))
        quarantined = {q["key"] for q in lf.status()["quarantined"]}
        got = docs_by_ref(sandbox.fortnox.orders)
        assert {f"limego:deal:{d}" for d in wanted if f"deal:{d}" not in quarantined} == set(got)
        row = sandbox.fortnox.orders[0]["OrderRows"][0]
        assert Decimal(str(row["OrderedQuantity"])) == 1


def test_start_now_creates_no_document_for_historical_wins(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    lf = Lf(sandbox, tmp_path, start="now")
    lf.run("sync")
    assert sandbox.fortnox.invoices == []
    # An old won deal edited later is still not invoiced; a newly won one is.
    won = won_stage_ids(sandbox)
    old = next(
        d
        for d, x in sandbox.limego.deals.items()
        if x["relationships"]["stage"]["data"]["id"] in won
    )
    sandbox.limego.update_deal(old, description="edited after the fact")
    fresh = next(
        d
        for d, x in sandbox.limego.deals.items()
        if x["relationships"]["stage"]["data"]["id"] not in won
        and x["relationships"]["company"]["data"]
    )
    sandbox.limego.win_deal(fresh)
    lf.run("sync")
    refs = docs_by_ref(sandbox.fortnox.invoices)
    assert f"limego:deal:{old}" not in refs
    quarantined = {q["key"] for q in lf.status()["quarantined"]}
    assert refs[f"limego:deal:{fresh}"] == 1 or f"deal:{fresh}" in quarantined


def test_since_reexamines_without_duplicates_or_moving_cursors_back(
    lf: Lf, sandbox: Sandbox
) -> None:
    lf.run("sync")
    before = lf.status()["cursors"]
    n_cust, n_inv = len(sandbox.fortnox.customers), len(sandbox.fortnox.invoices)
    sandbox.fortnox.reset_log()
    long_ago = (datetime.now(UTC) - timedelta(days=900)).date().isoformat()
    r = lf.run("sync", "--since", long_ago)
    assert r.code in (0, 1), r.err
    assert (len(sandbox.fortnox.customers), len(sandbox.fortnox.invoices)) == (n_cust, n_inv)
    assert [x for x in sandbox.fortnox.requests if x.method in ("POST", "PUT")] == []
    after = lf.status()["cursors"]
    for name in before:
        assert after[name] >= before[name]
    # Widening the read did read the old records again.
    assert any("filter[updated_since]" in x.query for x in sandbox.limego.requests)


def test_dry_run_changes_nothing(lf: Lf, sandbox: Sandbox) -> None:
    r = lf.run("sync", "--dry-run")
    assert r.code in (0, 1), r.err
    assert "+ create customer" in r.out and "+ create invoice" in r.out
    assert "Name:" in r.out
    writes = [
        x
        for x in sandbox.fortnox.requests
        if x.method in ("POST", "PUT") and x.path.startswith("/3/")
    ]
    assert writes == []
    assert sandbox.fortnox.customers == [] and sandbox.fortnox.invoices == []
    status = lf.status()
    assert status["cursors"] == {} and status["customers"] == 0 and status["last_run"] is None

    # After a real pass and a change, the dry run shows the field diff, from -> to.
    lf.run("sync")
    cid = next(c for c in sandbox.limego.customer_ids() if lf.status()["customers"])
    old_phone = sandbox.limego.companies[cid]["attributes"].get("phone")
    sandbox.limego.update_company(cid, phone="031-77 88 99")
    cursors = lf.status()["cursors"]
    r = lf.run("sync", "--dry-run")
    if f"company:{cid}" not in {q["key"] for q in lf.status()["quarantined"]}:
        assert "~ update customer" in r.out
        assert "031-77 88 99" in r.out and (
            old_phone is None or old_phone in r.out or "Phone1" in r.out
        )
    assert lf.status()["cursors"] == cursors
    assert not any(x.method == "PUT" for x in sandbox.fortnox.requests[-5:])


def test_status_json_contract(lf: Lf) -> None:
    lf.run("sync")
    s = lf.status()
    assert {"cursors", "customers", "documents", "quarantined", "pending", "last_run"} <= set(s)
    assert set(s["documents"]) >= {"invoice", "order"}
    assert set(s["last_run"]) >= {"started_at", "finished_at", "exit_code", "counts"}
    for q in s["quarantined"]:
        assert {"key", "reason", "attempts", "since"} <= set(q)
        assert q["key"].split(":")[0] in ("company", "deal")


def test_start_now_is_frozen_by_a_first_pass_that_sees_no_deals(
    make_sandbox: Any, tmp_path: Path
) -> None:
    """An empty CRM on the first pass: a deal won before the second pass is a new win."""
    sb = make_sandbox(seed=3, companies=3, deals=0)
    lf = Lf(sb, tmp_path, start="now")
    assert lf.run("sync").code == 0
    cid = sb.limego.add_company(name="Första Kunden AB", status="customer")
    did = sb.limego.add_deal(company_id=cid, stage="won", name="Första affären", value="10.00")
    r = lf.run("sync")
    assert r.code == 0, r.err
    assert len(sb.fortnox.documents_by_ref(f"limego:deal:{did}")) == 1
