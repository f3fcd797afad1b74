"""Drift (DESIGN rule 12), pure: each rule of `plan.drift_*` as a table row. No HTTP, no disk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_plan import rules as plan_rules

from limefort import plan as P
from limefort.core.errors import ApiError, TransientError, UnknownOutcome
from limefort.core.keys import document_ref
from limefort.core.models import (
    Company,
    CustomerLink,
    Deal,
    DocumentIntent,
    DriftEntry,
    LedgerDocument,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
WON, LOST, OPEN = "s-won", "s-lost", "s-open"


def deal(stage: str = WON, company_id: str | None = "c1", **attrs: Any) -> Deal:
    a = {"name": "Takomläggning", "value": "2000.00", "currency": "SEK", **attrs}
    return Deal("d1", a, T0 + timedelta(days=2), company_id, stage, (), ())


def intent(state: str = "done", currency: str | None = "SEK", **kw: Any) -> DocumentIntent:
    base: dict[str, Any] = dict(
        deal_id="d1",
        kind="invoice",
        state=state,
        idem_key=document_ref("d1"),
        document_number="3" if state == "done" else None,
        customer_number="7",
        company_id="c1",
        name="Takomläggning",
        value="2000.00",
        won_at=T0.isoformat(),
        since=T0,
        outcome=None,
    )
    return DocumentIntent(**{**base, **kw}, currency=currency)


def rules(**kw: Any) -> P.Rules:
    """test_plan's rules with this module's stage ids."""
    return plan_rules(**{"won": frozenset({WON}), "lost": frozenset({LOST}), **kw})


def ledger(**flags: bool) -> LedgerDocument:
    return LedgerDocument(
        "invoice",
        "3",
        document_ref("d1"),
        "7",
        flags.get("cancelled", False),
        flags.get("booked", False),
        flags.get("sent", False),
        "2000.00",
    )


def new_link(state: str = "done") -> CustomerLink:
    return CustomerLink(
        "c2", state, "9" if state == "done" else None, None, "Andra", None, None, None, None
    )


# --- what changed --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "baseline", "want"),
    [
        (deal(), intent(), {}),
        (deal(value="2000"), intent(), {}),  # the same amount, other digits
        (deal(value="2500.00"), intent(), {"value": ("2000.00", "2500.00")}),
        (deal(value=None), intent(), {"value": ("2000.00", None)}),
        (deal(currency="EUR"), intent(), {"currency": ("SEK", "EUR")}),
        (deal(currency="sek"), intent(), {}),  # codes compare upper-case
        (deal(currency="EUR"), intent(currency=None), {}),  # baseline not kept: not compared
        (deal(company_id="c2"), intent(), {"company": ("company:c1", "company:c2")}),
        (deal(company_id=None), intent(), {"company": ("company:c1", None)}),
        (deal(name="Tak"), intent(), {"name": ("Takomläggning", "Tak")}),
        (deal(stage=LOST), intent(), {"lost": ("won", "lost")}),
        (deal(stage=OPEN), intent(), {"reopened": ("won", "open")}),
        (
            deal(stage=LOST, value="0.00"),
            intent(),
            {"lost": ("won", "lost"), "value": ("2000.00", "0.00")},
        ),
    ],
)
def test_drift_of(now: Deal, baseline: DocumentIntent, want: dict[str, Any]) -> None:
    assert P.drift_of(now, baseline, won=frozenset({WON}), lost=frozenset({LOST})) == want


# --- what to do about it -------------------------------------------------------------------------


def entry(changes: dict[str, tuple[str | None, str | None]], acked: bool = False) -> DriftEntry:
    return DriftEntry(
        "deal:d1", "invoice:3", changes, T0.isoformat(), T0.isoformat() if acked else None
    )


VALUE = {"value": ("2000.00", "2500.00")}


@pytest.mark.parametrize(
    ("now", "baseline", "existing", "want"),
    [
        # in line, nothing recorded: nothing
        (deal(), intent(), None, None),
        # changed: named
        (deal(value="2500.00"), intent(), None, P.RecordDrift),
        # already named, the same change (acknowledged or not): nothing new
        (deal(value="2500.00"), intent(), entry(VALUE), None),
        (deal(value="2500.00"), intent(), entry(VALUE, acked=True), None),
        # acknowledged, then another change: named again
        (deal(value="3000.00"), intent(), entry(VALUE, acked=True), P.RecordDrift),
        # changed back: cleared, acknowledged or not
        (deal(), intent(), entry(VALUE), P.ClearDrift),
        (deal(), intent(), entry(VALUE, acked=True), P.ClearDrift),
        # no document yet (pending, skipped): not drift, reconciliation or backfill own it
        (deal(value="2500.00"), intent(state="pending"), None, None),
        (deal(value="2500.00"), intent(state="skipped"), None, None),
    ],
)
def test_drift_action_warn(
    now: Deal, baseline: DocumentIntent, existing: DriftEntry | None, want: type | None
) -> None:
    act = P.drift_action(now, baseline, existing, rules(), ledger_doc=ledger())
    assert (type(act) if act is not None else None) is want
    if isinstance(act, P.RecordDrift):
        assert act.document == "invoice:3" and act.deal.key == "deal:d1" and not act.why


@pytest.mark.parametrize(
    ("now", "doc", "customer", "want", "why"),
    [
        (deal(value="2500.00"), ledger(), None, P.UpdateDocument, ""),
        (deal(name="Tak"), ledger(), None, P.UpdateDocument, ""),
        (deal(company_id="c2"), ledger(), new_link(), P.UpdateDocument, ""),
        (deal(company_id="c2"), ledger(), None, P.RecordDrift, "new company"),
        (deal(company_id="c2"), ledger(), new_link("pending"), P.RecordDrift, "new company"),
        (deal(value="2500.00"), ledger(booked=True), None, P.RecordDrift, "booked"),
        (deal(value="2500.00"), ledger(sent=True), None, P.RecordDrift, "sent"),
        (deal(value="2500.00"), ledger(cancelled=True), None, P.RecordDrift, "cancelled"),
        (deal(value="2500.00"), None, None, P.RecordDrift, "index"),
        # never cancelled, never re-currencied automatically
        (deal(stage=LOST), ledger(), None, P.RecordDrift, "person's decision"),
        (deal(stage=OPEN), ledger(), None, P.RecordDrift, "person's decision"),
        (deal(currency="EUR"), ledger(), None, P.RecordDrift, "currency"),
        # a row the mapping would not make: named, not sent
        (deal(value="0.00"), ledger(), None, P.RecordDrift, "zero or negative"),
    ],
)
def test_drift_action_update_unbooked(
    now: Deal, doc: LedgerDocument | None, customer: CustomerLink | None, want: type, why: str
) -> None:
    act = P.drift_action(
        now,
        intent(),
        None,
        rules(on_deal_change="update-unbooked"),
        ledger_doc=doc,
        new_customer=customer,
    )
    assert type(act) is want
    if isinstance(act, P.RecordDrift):
        assert why in act.why
    if isinstance(act, P.UpdateDocument):
        [row] = act.fields["InvoiceRows"]
        assert str(row["Price"]) == now.attributes["value"]
        assert row["Description"] == now.name
        assert ("CustomerNumber" in act.fields) == ("company" in act.changes)
        if customer is not None:
            assert act.fields["CustomerNumber"] == act.customer_number == "9"


def test_plan_deals_adds_drift_and_never_a_document_for_a_done_deal() -> None:
    snap = P.Snapshot(
        deals=[deal(value="2500.00")],
        related={"c1": Company("c1", {"name": "Ett AB", "status": "customer"}, T0)},
        intents={"d1": intent()},
    )
    actions = P.plan_deals(snap, rules())
    assert [type(a) for a in actions] == [P.RecordDrift]
    assert P.key_of(actions[0]) == "deal:d1" and P.count_name(actions[0]) == "drift_recorded"
    assert "value 2000.00 -> 2500.00" in P.describe(actions[0])[0]


# --- the last check before a PUT, and what a failed PUT means -----------------------------------


def update(**kw: Any) -> P.UpdateDocument:
    base: dict[str, Any] = dict(
        deal=deal(value="2500.00"),
        kind="invoice",
        document_number="3",
        fields={"InvoiceRows": [{"Description": "x", "Price": "2500.00"}]},
        changes=VALUE,
        customer_number=None,
    )
    return P.UpdateDocument(**{**base, **kw})


def fortnox_doc(**kw: Any) -> dict[str, Any]:
    base = {
        "DocumentNumber": "3",
        "ExternalInvoiceReference1": document_ref("d1"),
        "Booked": False,
        "Sent": False,
        "Cancelled": False,
        "InvoiceRows": [{"Price": "2000.00"}],
    }
    return {**base, **kw}


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        (fortnox_doc(), None),
        (None, "no longer exists"),
        (fortnox_doc(ExternalInvoiceReference1="limego:deal:other"), "key"),
        (fortnox_doc(Booked=True), "booked"),
        (fortnox_doc(Sent=True), "sent"),
        (fortnox_doc(Cancelled=True), "cancelled"),
        (fortnox_doc(InvoiceRows=[{}, {}]), "2 rows"),
    ],
)
def test_update_refused(doc: dict[str, Any] | None, why: str | None) -> None:
    got = P.update_refused(update(), doc)
    assert (got is None) if why is None else (got is not None and why in got)


@pytest.mark.parametrize(
    ("error", "want"),
    [
        (ApiError("Fortnox", "Fakturan är bokförd", status=400, code=2000359), P.DriftInstead),
        (TransientError("Fortnox", "503"), P.NotSent),
        (UnknownOutcome("Fortnox", "reset"), P.NotSent),  # a PUT is safe to send again
    ],
)
def test_after_failure_of_an_update(error: Any, want: type) -> None:
    got = P.after_failure(update(), error)
    assert type(got) is want
    if isinstance(got, P.DriftInstead):
        assert got.record.changes == VALUE and "refused" in got.record.why


def test_drift_text() -> None:
    text = P.drift_text({"name": ("A", "B"), "lost": ("won", "lost"), "value": ("1.00", "2.00")})
    assert text == "value 1.00 -> 2.00; name 'A' -> 'B'; lost (was won, now lost)"
