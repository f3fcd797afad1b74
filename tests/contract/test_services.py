"""The one contract suite for the two interfaces the engine is written against
(limefort/core/services.py), run against every implementation (vdirsyncer's StorageTests):

- `memory`: the in-memory fakes (tests/memory.py);
- `sandbox`: limefort's real HTTP clients against the sandbox servers over loopback HTTP;
- `live`: limefort's real clients against the real Lime Go and Fortnox, read-only, when
  credentials are in the environment (LIMEFORT_LIMEGO_BASE_URL, _CLIENT_ID, _CLIENT_SECRET and
  LIMEFORT_FORTNOX_CLIENT_ID, _CLIENT_SECRET, _TENANT_ID). Without them those tests are
  skipped ("not run"), never counted as passed. Tests that write run on the first two only.

Every test states a promise the engine relies on; a fake that breaks one fails here, not in a
test that trusted it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from memory import MemoryFortnox, MemoryLimeGo

from limefort.core.errors import ApiError
from limefort.core.models import Company, DealPage
from limefort.core.services import Sink, Source

from .conftest import Env, open_sandbox

LIVE_KEYS = (
    "LIMEFORT_LIMEGO_BASE_URL", "LIMEFORT_LIMEGO_CLIENT_ID", "LIMEFORT_LIMEGO_CLIENT_SECRET",
    "LIMEFORT_FORTNOX_CLIENT_ID", "LIMEFORT_FORTNOX_CLIENT_SECRET", "LIMEFORT_FORTNOX_TENANT_ID",
)  # fmt: skip
ORGNR = "556036-0793"
OTHER_ORGNR = "556703-7485"


@dataclass
class Services:
    kind: str
    source: Source
    sink: Sink
    crm: Any = None  # seeds the source: MemoryLimeGo or the sandbox's Lime Go
    ledger: Any = None  # what a bookkeeper does in Fortnox: MemoryFortnox or the sandbox's

    def seeded(self) -> bool:
        return self.crm is not None


def _live() -> Iterator[Services]:
    missing = [k for k in LIVE_KEYS if not os.environ.get(k)]
    if missing:
        pytest.skip(f"live services: not run ({len(missing)} LIMEFORT_* credentials unset)")
    from limefort.config import load
    from limefort.engine.runner import build_clients
    from limefort.state.store import Store

    store = Store.memory()
    try:
        limego, fortnox = build_clients(load(None, explicit=False), store)
        yield Services("live", limego, fortnox)
    finally:
        store.close()


@pytest.fixture(params=["memory", "sandbox", "live"])
def services(request: pytest.FixtureRequest) -> Iterator[Services]:
    if request.param == "memory":
        crm, ledger = MemoryLimeGo(), MemoryFortnox()
        yield Services("memory", crm, ledger, crm, ledger)
    elif request.param == "sandbox":
        sb = open_sandbox("http", seed=3, companies=0, deals=0)
        try:
            env = Env("http", sb, [])
            yield Services("sandbox", env.limego(page_size=3), env.fortnox(), sb.limego, sb.fortnox)
        finally:
            sb.stop()
    else:
        yield from _live()


@pytest.fixture
def seeded(services: Services) -> Services:
    """Tests that write or need known records: the fakes and the sandbox only."""
    if not services.seeded():
        pytest.skip(f"{services.kind}: read-only (this test writes or seeds)")
    return services


def _all(pages: Iterator[list[Company]]) -> list[Company]:
    return [c for page in pages for c in page]


# --- Source: promises on any data (live included) --------------------------------------------


def test_company_pages_are_in_id_order_and_descending_reverses_them(services: Services) -> None:
    if services.seeded():
        for name in ("Alfa AB", "Beta AB", "Gamma AB", "Delta AB"):
            services.crm.add_company(name=name, status="customer")
    first = next(services.source.iter_companies(), [])
    ids = [c.id for c in first]  # ids are strings (UUIDs in Lime Go), ordered as strings
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    newest = [c.id for c in next(services.source.iter_companies(descending=True), [])]
    assert newest == sorted(newest, reverse=True)
    if services.seeded():
        assert len(first) == 3  # a page is a page: the rest comes on the next
        assert len(_all(services.source.iter_companies())) == 4


def test_updated_since_leaves_out_what_changed_before(services: Services) -> None:
    if services.seeded():
        old = services.crm.add_company(name="Gammal AB", status="customer")
        services.crm.add_company(name="Ny AB", status="customer")
    if not services.seeded():  # a live CRM is not read whole: what changed this last week
        bound = datetime.now(UTC) - timedelta(days=7)
        since = _all(services.source.iter_companies(updated_since=bound))
        assert all(c.updated_at >= bound.replace(microsecond=0) for c in since)
        return
    everything = _all(services.source.iter_companies())
    bound = max(c.updated_at for c in everything)
    since = _all(services.source.iter_companies(updated_since=bound))
    # Everything changed at or after the bound is there; nothing from before its whole second
    # (the filter is sent to the second, which moves it earlier: a record read twice, never
    # one missed).
    assert {c.id for c in everything if c.updated_at >= bound} <= {c.id for c in since}
    assert all(c.updated_at >= bound.replace(microsecond=0) for c in since)
    if services.seeded():
        before = services.source.get_company(old)
        assert before is not None
        if before.updated_at < bound.replace(microsecond=0):
            assert old not in {c.id for c in since}


def test_a_status_filter_gives_only_that_status(services: Services) -> None:
    if services.seeded():
        services.crm.add_company(name="Kund AB", status="customer")
        services.crm.add_company(name="Lead AB", status="lead")
    pages = services.source.iter_companies(status="customer")
    customers = _all(pages) if services.seeded() else next(pages, [])  # live: one page
    assert all(c.status == "customer" for c in customers)
    if services.seeded():
        assert [c.name for c in customers] == ["Kund AB"]


def test_what_does_not_exist_is_none(services: Services) -> None:
    missing = "999999999"
    assert services.source.get_company(missing) is None
    assert services.source.get_deal(missing) is None
    assert services.source.contact(missing) is None


def test_stages_owners_and_the_source_clock(services: Services) -> None:
    stages = services.source.stages()
    assert stages and all(s.id == k for k, s in stages.items())
    assert any(s.category == "won" for s in stages.values())
    assert all(p.id == k for k, p in services.source.owners().items())
    assert services.source.first_date is not None and services.source.last_date is not None
    assert services.source.first_date <= services.source.last_date


def test_a_deal_page_carries_its_deals_companies(services: Services) -> None:
    if services.seeded():
        company = services.crm.add_company(name="Köpare AB", status="customer")
        deal = services.crm.add_deal(company, name="Licens", value="1200.00")
        services.crm.win_deal(deal)
    page: DealPage | None = next(services.source.iter_deals(descending=True), None)
    if page is None:
        pytest.skip(f"{services.kind}: no deals")
    for d in page.deals:
        if d.company_id is not None and d.company_id in page.companies:
            assert page.companies[d.company_id].id == d.company_id
    if services.seeded():
        found = services.source.get_deal(deal)
        assert found is not None
        d, c = found
        assert d.stage_id is not None and services.source.stages()[d.stage_id].category == "won"
        assert c is not None and c.name == "Köpare AB" and page.companies[company].id == company


# --- Sink: promises on any data (live included) ----------------------------------------------


def test_unknown_customers_and_documents_are_none_and_an_unknown_key_finds_nothing(
    services: Services,
) -> None:
    assert services.sink.get_customer("99999999") is None
    assert services.sink.get_document("invoice", "99999999") is None
    assert services.sink.find_documents("invoice", "limego:deal:no-such-deal") == []
    assert services.sink.server_now() is not None  # Fortnox's clock, from its answer


def test_customer_list_items_carry_their_number(services: Services) -> None:
    if services.seeded():
        services.sink.create_customer({"Name": "Lista AB", "OrganisationNumber": ORGNR})
    for page in services.sink.iter_customers(limit=100):
        assert all(item.get("CustomerNumber") for item in page)
        break


# --- Sink: writes (fakes and sandbox only) ---------------------------------------------------


def test_a_customer_created_is_found_read_and_updated(seeded: Services) -> None:
    sink = seeded.sink
    made = sink.create_customer({"Name": "Skapad AB", "OrganisationNumber": ORGNR})
    number = str(made["CustomerNumber"])
    assert sink.get_customer(number)["Name"] == "Skapad AB"  # type: ignore[index]
    found = sink.find_customers(organisationnumber=ORGNR)
    assert [str(c["CustomerNumber"]) for c in found] == [number]
    assert sink.find_customers(organisationnumber=OTHER_ORGNR) == []
    sink.update_customer(number, {"Phone1": "08-123 456"})
    after = sink.get_customer(number)
    assert after is not None and after["Phone1"] == "08-123 456" and after["Name"] == "Skapad AB"


def test_a_nameless_customer_is_refused(seeded: Services) -> None:
    with pytest.raises(ApiError):
        seeded.sink.create_customer({"Name": ""})


def _invoice(customer: str, ref: str, price: Any = 1200) -> dict[str, Any]:
    row = {"Description": "Licens", "Price": price, "DeliveredQuantity": 1}
    return {"CustomerNumber": customer, "ExternalInvoiceReference1": ref, "InvoiceRows": [row]}


def test_a_document_is_found_by_its_key_listed_and_updated(seeded: Services) -> None:
    sink = seeded.sink
    before = sink.server_now()
    number = str(sink.create_customer({"Name": "Faktura AB"})["CustomerNumber"])
    doc = sink.create_document("invoice", _invoice(number, "limego:deal:4711"))
    doc_no = str(doc["DocumentNumber"])
    found = sink.find_documents("invoice", "limego:deal:4711")
    assert [str(d["DocumentNumber"]) for d in found] == [doc_no]
    assert sink.find_documents("invoice", "limego:deal:471") == []  # exact, not a substring
    listed = [i for page in sink.iter_documents("invoice") for i in page]
    item = next(i for i in listed if str(i["DocumentNumber"]) == doc_no)
    assert item["ExternalInvoiceReference1"] == "limego:deal:4711"
    assert str(item["CustomerNumber"]) == number
    assert before is None or sink.server_now() >= before - timedelta(seconds=1)  # type: ignore[operator]
    sink.update_document("invoice", doc_no, {"YourReference": "Eva Köpare"})
    read = sink.get_document("invoice", doc_no)
    assert read is not None and read["YourReference"] == "Eva Köpare"


def test_a_document_for_no_customer_is_refused(seeded: Services) -> None:
    with pytest.raises(ApiError):
        seeded.sink.create_document("invoice", _invoice("424242", "limego:deal:1"))


def test_a_price_that_is_not_a_number_is_refused(seeded: Services) -> None:
    """Fortnox takes numbers, not strings of digits (code 2000108)."""
    number = str(seeded.sink.create_customer({"Name": "Pris AB"})["CustomerNumber"])
    with pytest.raises(ApiError) as refused:
        seeded.sink.create_document("invoice", _invoice(number, "limego:deal:2", price="1200"))
    assert refused.value.code == 2000108


def test_a_booked_invoice_is_not_updated(seeded: Services) -> None:
    sink = seeded.sink
    number = str(sink.create_customer({"Name": "Bokförd AB"})["CustomerNumber"])
    doc_no = str(
        sink.create_document("invoice", _invoice(number, "limego:deal:9"))["DocumentNumber"]
    )
    seeded.ledger.book_invoice(doc_no)
    with pytest.raises(ApiError):
        sink.update_document("invoice", doc_no, {"YourReference": "Någon"})


def test_inactive_customers_are_listed_apart(seeded: Services) -> None:
    sink = seeded.sink
    active = str(sink.create_customer({"Name": "Aktiv AB"})["CustomerNumber"])
    gone = str(sink.create_customer({"Name": "Vilande AB"})["CustomerNumber"])
    seeded.ledger.set_active(gone, False)

    def numbers(flag: str) -> set[str]:
        return {str(i["CustomerNumber"]) for page in sink.iter_customers(filter=flag) for i in page}

    assert active in numbers("active") and gone not in numbers("active")
    assert numbers("inactive") == {gone}


def test_the_token_is_made_fresh_on_request(seeded: Services) -> None:
    seeded.sink.fresh_token()  # a no-op when fresh; never a failure
    assert seeded.sink.round_trip >= 0.0
    seeded.sink.get_customer("1")
    assert seeded.sink.round_trip >= 0.0
