"""The planner and the cursor rules, pure: no HTTP, no disk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from limefort import cursor
from limefort.mapping import Mapped, Rejected, map_company, payload_hash, to_json
from limefort.models import Company, Deal, Stage
from limefort.plan import (
    AdoptCustomer,
    CreateCustomer,
    CreateDocument,
    Quarantine,
    Release,
    UpdateCustomer,
    company_in_scope,
    describe,
    plan_company,
    plan_document,
    source_hash,
    triage_deals,
    won_stage_ids,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def company(cid: str = "c1", **attrs: Any) -> Company:
    base = {
        "name": "Åkesson AB",
        "status": "customer",
        "business_id": "556036-0793",
        "phone": "08-1",
    }
    return Company(cid, {**base, **attrs}, T0)


def deal(
    did: str = "d1", stage: str = "won", updated: datetime = T0, company_id: str | None = "c1"
) -> Deal:
    return Deal(did, {"name": "Affär", "value": "100.00"}, updated, company_id, stage)


def stored(c: Company) -> dict[str, Any]:
    r = map_company(c)
    assert isinstance(r, Mapped)
    return {
        "state": "done",
        "customer_number": "7",
        "payload": to_json(r.payload),
        "hash": payload_hash(r.payload),
    }


def test_new_company_is_created_or_adopted_by_orgnr() -> None:
    c = company()
    r = map_company(c)
    assert isinstance(plan_company(c, r, state=None, quarantined=None), CreateCustomer)
    act = plan_company(c, r, state=None, quarantined=None, index_matches=["42"])
    assert isinstance(act, AdoptCustomer) and act.customer_number == "42"


def test_unchanged_company_plans_nothing_and_a_change_only_its_fields() -> None:
    c = company()
    state = stored(c)
    assert plan_company(c, map_company(c), state=state, quarantined=None) is None
    changed = company(phone="08-2")
    act = plan_company(changed, map_company(changed), state=state, quarantined=None)
    assert isinstance(act, UpdateCustomer)
    assert act.changes == {"Phone1": ("08-1", "08-2")}
    assert act.customer_number == "7"


def test_pending_customer_is_left_to_reconciliation() -> None:
    c = company()
    state = {**stored(c), "state": "pending"}
    assert (
        plan_company(
            company(phone="x"), map_company(company(phone="x")), state=state, quarantined=None
        )
        is None
    )


def test_quarantine_is_retried_only_when_the_source_changes_or_forced() -> None:
    bad = company(name="")
    r = map_company(bad)
    assert isinstance(r, Rejected)
    act = plan_company(bad, r, state=None, quarantined=None)
    assert isinstance(act, Quarantine) and act.key == "company:c1"
    q = {"source_hash": act.source_hash}
    assert plan_company(bad, r, state=None, quarantined=q) is None
    assert isinstance(plan_company(bad, r, state=None, quarantined=q, force=True), Quarantine)
    fixed = company(name="Fixad AB")
    assert isinstance(
        plan_company(fixed, map_company(fixed), state=None, quarantined=q), CreateCustomer
    )


def test_quarantined_but_already_in_line_is_released() -> None:
    c = company()
    act = plan_company(c, map_company(c), state=stored(c), quarantined={"source_hash": "old"})
    assert act == Release("company:c1")


def test_scope_is_status_or_already_synced() -> None:
    assert company_in_scope(company(), ["customer"], None)
    assert not company_in_scope(company(status="lead"), ["customer"], None)
    assert company_in_scope(company(status="churned"), ["customer"], {"state": "done"})


def test_won_stages_by_category_or_name() -> None:
    stages = {
        "a": Stage("a", "Vunnen", "won"),
        "b": Stage("b", "Klar", "open"),
        "c": Stage("c", "Offert", "open"),
    }
    assert won_stage_ids(stages, ["won"], []) == {"a"}
    assert won_stage_ids(stages, [], ["klar"]) == {"b"}


def test_triage_new_wins_historical_and_done() -> None:
    start = T0
    deals = [
        deal("new", updated=T0 + timedelta(days=1)),
        deal("old", updated=T0 - timedelta(days=1)),
        deal("open", stage="open", updated=T0 + timedelta(days=1)),
        deal("done", updated=T0 + timedelta(days=1)),
        deal("skipped", updated=T0 + timedelta(days=2)),
    ]
    docs = {"done": {"state": "done"}, "skipped": {"state": "skipped"}}
    tri = triage_deals(
        deals, documents=docs, won={"won"}, start=start, quarantined={}, companies={}
    )
    assert [d.id for d in tri.wins] == ["new"]
    assert [d.id for d in tri.historical] == ["old"]
    # A backfill window turns historical and skipped deals in it into wins, never done ones.
    window = (T0 - timedelta(days=5), T0 + timedelta(days=5))
    tri = triage_deals(
        deals, documents=docs, won={"won"}, start=start, quarantined={}, companies={}, window=window
    )
    assert sorted(d.id for d in tri.wins) == ["new", "old", "skipped"]


def test_quarantined_deal_waits_for_a_change_in_the_deal_or_its_company() -> None:
    d = deal(updated=T0 + timedelta(days=1))
    c = company()
    q = {"deal:d1": {"source_hash": source_hash(d, c)}}
    tri = triage_deals([d], documents={}, won={"won"}, start=T0, quarantined=q, companies={"c1": c})
    assert tri.wins == []
    tri = triage_deals(
        [d],
        documents={},
        won={"won"},
        start=T0,
        quarantined=q,
        companies={"c1": company(name="Ny")},
    )
    assert [x.id for x in tri.wins] == ["d1"]


def test_plan_document_and_describe() -> None:
    d, c = deal(), company()
    act = plan_document(
        d, Mapped({"InvoiceRows": [{"Price": 100}], "Currency": "SEK"}), kind="invoice", company=c
    )
    assert isinstance(act, CreateDocument)
    assert "+ create invoice" in describe(act)[0]
    q = plan_document(
        d, Rejected("deal has no company", "give it one"), kind="invoice", company=None
    )
    assert isinstance(q, Quarantine) and "deal has no company" in describe(q)[0]


def test_cursor_rules() -> None:
    lb = timedelta(minutes=10)
    assert cursor.read_since(None, lb) is None
    assert cursor.read_since(T0, lb) == T0 - lb
    assert cursor.read_since(T0, lb, T0 - timedelta(days=9)) == T0 - timedelta(days=9)
    assert cursor.read_since(T0, lb, T0) == T0 - lb  # --since never narrows
    now = T0 + timedelta(hours=1)
    assert cursor.advance(T0, now, complete=True) == now
    assert cursor.advance(T0, now, complete=False) == T0
    assert cursor.advance(now, T0, complete=True) == now  # never backwards
    assert cursor.is_new_win(T0, T0) and not cursor.is_new_win(T0 - timedelta(seconds=1), T0)


def test_summary_lines_for_a_pass_and_a_dry_run() -> None:
    from limefort.runner import summarise

    counts = {
        "customers_created": 1,
        "invoices_created": 3,
        "quarantined": 2,
        "fortnox_requests": 4,
    }
    assert (
        summarise(counts)
        == "1 customer created; 3 invoices created; 2 quarantined (4 Fortnox requests)"
    )
    assert summarise(counts, dry_run=True).startswith(
        "1 customer to create; 3 invoices to create; 2 to quarantine"
    )
    assert summarise({}).startswith("nothing to do")
