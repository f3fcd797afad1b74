"""The engine on the in-memory fakes (tests/memory.py): a whole pass with no HTTP, no threads
and no file, in milliseconds. What the fakes promise is checked by the contract suite
(tests/contract/test_services.py), so what passes here passes for the reason it says."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from memory import Clock, MemoryFortnox, MemoryLimeGo

from limefort.config import Config, FortnoxConfig, LimeGoConfig, SyncConfig
from limefort.engine.sync import Syncer
from limefort.state.store import Store

CFG = Config(
    limego=LimeGoConfig(base_url="https://fake.lime-go.test", client_id="x", client_secret="y"),
    fortnox=FortnoxConfig(client_id="x", client_secret="y", tenant_id="1"),
    sync=replace(SyncConfig(), start="2026-01-01T00:00:00+01:00"),  # as the loader resolves it
)


def _pass(store: Store, crm: MemoryLimeGo, fx: MemoryFortnox, clock: Clock) -> int:
    syncer = Syncer(
        CFG, store, crm, fx, echo=lambda _: None, clock=lambda: clock.now, installation="i-1"
    )
    return syncer.run_pass().exit_code


def test_a_pass_on_the_fakes_creates_once_and_updates_what_changed() -> None:
    clock = Clock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    crm, fx = MemoryLimeGo(clock=clock), MemoryFortnox(clock=clock)
    store = Store.memory(clock=lambda: clock.now)
    company = crm.add_company(name="Fake AB", status="customer", phone="08-1")
    contact = crm.add_contact(company, first_name="Eva", last_name="Köpare")
    deal = crm.add_deal(company, name="Licens", value="1200.00", contact_ids=[contact])
    crm.win_deal(deal)

    assert _pass(store, crm, fx, clock) == 0
    assert [c["Name"] for c in fx.customers.values()] == ["Fake AB"]
    (invoice,) = fx.documents["invoice"].values()
    assert invoice["ExternalInvoiceReference1"] == f"limego:deal:{deal}"
    assert invoice["YourReference"] == "Eva Köpare"
    assert invoice["InvoiceRows"][0]["Price"] == 1200

    clock.now += timedelta(minutes=5)
    assert _pass(store, crm, fx, clock) == 0  # nothing changed: nothing made twice
    assert len(fx.customers) == 1 and len(fx.documents["invoice"]) == 1

    crm.update_company(company, phone="08-2")
    clock.now += timedelta(minutes=5)
    assert _pass(store, crm, fx, clock) == 0
    (customer,) = fx.customers.values()
    assert customer["Phone1"] == "08-2" and len(fx.documents["invoice"]) == 1
