"""The planner, pure: every rule of the sync as a table row. No HTTP, no disk, no clock.

Each test builds a Snapshot (what gather would hand over) and checks the actions, or calls
one of the planner's pure tables (`after_failure`, `customer_not_ready`, `settled`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from limefort import plan as P
from limefort.core.errors import ApiError, NotFound, TransientError, UnknownOutcome
from limefort.core.keys import customer_ref, document_ref, parse_key
from limefort.core.models import (
    Company,
    CustomerLink,
    Deal,
    DocumentIntent,
    LedgerDocument,
    Person,
    QuarantineEntry,
    Stage,
)
from limefort.mapping import (
    DEFAULT_CUSTOMER_MAPPING,
    DEFAULT_DOCUMENT_MAPPING,
    Mapped,
    map_company,
    payload_hash,
    to_json,
)
from limefort.plan import cursor

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
    did: str = "d1",
    stage: str = "won",
    updated: datetime = T0 + timedelta(days=1),
    company_id: str | None = "c1",
    **attrs: Any,
) -> Deal:
    a = {"name": "Affär", "value": "100.00", "currency": "SEK", **attrs}
    return Deal(did, a, updated, company_id, stage, ("p1",), ("o1",))


def rules(**kw: Any) -> P.Rules:
    base: dict[str, Any] = dict(
        customer_map=DEFAULT_CUSTOMER_MAPPING,
        document_map=DEFAULT_DOCUMENT_MAPPING,
        statuses=frozenset({"customer"}),
        kind="invoice",
        won=frozenset({"won"}),
        start=T0,
    )
    return P.Rules(**{**base, **kw})


def link(
    c: Company, number: str = "7", state: str = "done", outcome: str | None = None
) -> CustomerLink:
    r = map_company(c)
    assert isinstance(r, Mapped)
    return CustomerLink(
        c.id, state, number if state == "done" else None, r.payload.get("OrganisationNumber"),
        c.name or "", to_json(r.payload), payload_hash(r.payload), T0, outcome,
    )  # fmt: skip


def intent(did: str, state: str = "done", number: str | None = "100") -> DocumentIntent:
    return DocumentIntent(
        did, "invoice", state, document_ref(did), number, "7", "c1", "Affär", "100.00", "", T0, None
    )


def quarantined(
    key: str, *records: Company | Deal | None, waits_for: str | None = None
) -> QuarantineEntry:
    return QuarantineEntry(key, "n", "r", "h", 1, P.source_hash(*records), "", "", waits_for)


def ledger_doc(did: str, number: str = "55", **kw: Any) -> LedgerDocument:
    base: dict[str, Any] = dict(cancelled=False, booked=False, sent=False, total="100")
    return LedgerDocument("invoice", number, document_ref(did), "7", **{**base, **kw})


PEOPLE = dict(
    contacts={"p1": Person("p1", "Anna", "Berg")}, owners={"o1": Person("o1", "Olle", "Säljare")}
)


def kinds(actions: list[P.Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


# --- companies: one row per rule ---------------------------------------------------------------

C = company()
COMPANY_TABLE: list[tuple[str, dict[str, Any], list[str]]] = [
    ("new customer is created", {}, ["CreateCustomer"]),
    ("same organisation number in Fortnox is adopted", {"by_orgnr": {"556036-0793": ["42"]}}, ["AdoptCustomer"]),
    ("unchanged linked company plans nothing", {"links": {"c1": link(C)}}, []),
    ("pending customer is left to reconciliation", {"links": {"c1": link(C, state="pending")}}, []),
    ("pending customer Fortnox never got is planned afresh",
     {"links": {"c1": link(C, state="pending")}, "resend": frozenset({"company:c1"})}, ["CreateCustomer"]),
    ("quarantined and unchanged waits for a change", {"quarantine": {"company:c1": quarantined("company:c1", company(name=""))}}, ["CreateCustomer"]),
    ("quarantined, in line already, is released",
     {"links": {"c1": link(C)}, "quarantine": {"company:c1": quarantined("company:c1", company(phone="x"))}}, ["Release"]),
]  # fmt: skip


@pytest.mark.parametrize("why,snap,expected", COMPANY_TABLE, ids=[r[0] for r in COMPANY_TABLE])
def test_company_rules(why: str, snap: dict[str, Any], expected: list[str]) -> None:
    actions = P.plan_companies(P.Snapshot(companies=[C], **snap), rules())
    assert kinds(actions) == expected, why


def test_quarantined_company_is_not_retried_until_it_changes_or_is_forced() -> None:
    bad = company(name="")
    q = {"company:c1": quarantined("company:c1", bad)}
    assert P.plan_companies(P.Snapshot(companies=[bad], quarantine=q), rules()) == []
    forced = P.plan_companies(P.Snapshot(companies=[bad], quarantine=q, force=True), rules())
    assert kinds(forced) == ["Quarantine"]


def test_a_bad_company_is_quarantined_with_reason_and_hint() -> None:
    [q] = P.plan_companies(P.Snapshot(companies=[company(name="")]), rules())
    assert (
        isinstance(q, P.Quarantine) and q.key == "company:c1" and "no name" in q.reason and q.hint
    )


def test_a_change_sends_only_its_fields() -> None:
    changed = company(phone="08-2")
    [a] = P.plan_companies(P.Snapshot(companies=[changed], links={"c1": link(C)}), rules())
    assert isinstance(a, P.UpdateCustomer)
    assert a.changes == {"Phone1": ("08-1", "08-2")} and a.customer_number == "7"


def test_scope_is_status_or_already_linked() -> None:
    lead = company(status="lead")
    assert P.plan_companies(P.Snapshot(companies=[lead]), rules()) == []
    assert kinds(P.plan_companies(P.Snapshot(companies=[lead], scoped=False), rules())) == [
        "CreateCustomer"
    ]
    churned = company(status="churned", phone="x")
    linked = P.Snapshot(companies=[churned], links={"c1": link(C)})
    assert kinds(P.plan_companies(linked, rules())) == ["UpdateCustomer"]


def test_two_companies_with_one_orgnr_in_a_page_make_one_customer() -> None:
    a, b = company("c1"), company("c2", name="Åkesson Filial")
    actions = P.plan_companies(P.Snapshot(companies=[a, b]), rules())
    # The second shares the first's customer, never blends into it (issue 13).
    assert kinds(actions) == ["CreateCustomer", "ShareCustomer"]
    assert actions[1].customer == P.CustomerOf("c1")  # type: ignore[union-attr]


def test_a_company_without_orgnr_is_adopted_by_limeforts_external_reference() -> None:
    orgless = company(business_id=None)
    snap = P.Snapshot(companies=[orgless], by_ref={customer_ref("c1"): ["9"]})
    [a] = P.plan_companies(snap, rules())
    assert isinstance(a, P.AdoptCustomer) and a.customer == "9" and "ExternalReference" in a.by


def test_customer_lookups_skip_linked_rejected_and_unchanged_quarantined() -> None:
    linked, bad, orgless, fresh = (
        company("l"),
        company("b", name=""),
        company("o", business_id=None),
        company("f", business_id="556036-0793"),
    )
    qd = company("q", business_id="212000-0142")
    q = {"company:q": quarantined("company:q", qd)}
    orgnrs, refs = P.customer_lookups(
        [linked, bad, orgless, fresh, qd], {"l": link(linked)}, rules(), q
    )
    assert orgnrs == {"556036-0793"} and refs == {customer_ref("o"): "Åkesson AB"}


def test_an_orgless_company_is_looked_up_under_the_name_limefort_sends() -> None:
    """Fortnox holds the cleaned name (a star left out), so that is the name to search."""
    starred = company("s", business_id=None, name="Stjärnfall ★ Event AB")
    _, refs = P.customer_lookups([starred], {}, rules(), {})
    assert refs == {customer_ref("s"): "Stjärnfall Event AB"}


# --- deals --------------------------------------------------------------------------------------

D = deal()
LINKED = {"c1": link(C)}
DEAL_TABLE: list[tuple[str, dict[str, Any], list[str]]] = [
    ("won deal of a linked company: one document", {"links": LINKED}, ["CreateDocument"]),
    ("won deal of a new company: create it, then the document", {}, ["CreateCustomer", "CreateDocument"]),
    ("won deal of a company Fortnox has: adopt it, then the document",
     {"by_orgnr": {"556036-0793": ["42"]}}, ["AdoptCustomer", "CreateDocument"]),
    ("won before sync.start: skipped", {"deals": [deal(updated=T0 - timedelta(days=1))], "links": LINKED}, ["SkipHistorical"]),
    ("not won: nothing", {"deals": [deal(stage="open")], "links": LINKED}, []),
    ("not won any more and quarantined: released",
     {"deals": [deal(stage="open")], "quarantine": {"deal:d1": quarantined("deal:d1", D, C)}}, ["Release"]),
    ("done already: nothing", {"links": LINKED, "intents": {"d1": intent("d1")}}, []),
    ("pending intent: reconciliation owns it", {"links": LINKED, "intents": {"d1": intent("d1", "pending", None)}}, []),
    ("pending intent Fortnox certainly lacks: planned afresh",
     {"links": LINKED, "intents": {"d1": intent("d1", "pending", None)}, "resend": frozenset({"deal:d1"})}, ["CreateDocument"]),
    ("skipped historical: nothing", {"links": LINKED, "intents": {"d1": intent("d1", "skipped", None)}}, []),
    ("Fortnox already holds its key: linked, never created",
     {"links": LINKED, "ledger": {document_ref("d1"): [ledger_doc("d1")]}}, ["LinkDocument"]),
    ("lost state file: key found in the ledger, company adopted, nothing created",
     {"by_orgnr": {"556036-0793": ["7"]}, "ledger": {document_ref("d1"): [ledger_doc("d1")]}}, ["AdoptCustomer", "LinkDocument"]),
    ("lost state file, company unknown by orgnr: linked to its document's customer",
     {"ledger": {document_ref("d1"): [ledger_doc("d1")]}}, ["AdoptCustomer", "LinkDocument"]),
    ("customer's POST pending: the deal waits", {"links": {"c1": link(C, state="pending")}}, ["Defer"]),
    ("quarantined deal, unchanged: waits", {"links": LINKED, "quarantine": {"deal:d1": quarantined("deal:d1", D, C)}}, []),
    ("quarantined deal whose company changed: tried again",
     {"links": LINKED, "quarantine": {"deal:d1": quarantined("deal:d1", D, company(name="old"))}}, ["CreateDocument"]),
    ("company quarantined: the deal waits for it",
     {"quarantine": {"company:c1": quarantined("company:c1", C)}}, ["Quarantine"]),
    ("company rejected by the mapping: both quarantined",
     {"related": {"c1": company(name="")}}, ["Quarantine", "Quarantine"]),
    ("deal without a value: quarantined", {"deals": [deal(value=None)], "links": LINKED}, ["Quarantine"]),
    ("deal without a company: quarantined", {"deals": [deal(company_id=None)], "related": {}}, ["Quarantine"]),
    ("company planned by an earlier page: refers to that", {"planned": frozenset({"c1"})}, ["CreateDocument"]),
]  # fmt: skip


@pytest.mark.parametrize("why,snap,expected", DEAL_TABLE, ids=[r[0] for r in DEAL_TABLE])
def test_deal_rules(why: str, snap: dict[str, Any], expected: list[str]) -> None:
    base: dict[str, Any] = {"deals": [D], "related": {"c1": C}, **PEOPLE}
    actions = P.plan_deals(P.Snapshot(**{**base, **snap}), rules())
    assert kinds(actions) == expected, why


def test_two_won_deals_of_one_new_company_create_it_once() -> None:
    snap = P.Snapshot(deals=[deal("d1"), deal("d2")], related={"c1": C}, **PEOPLE)
    actions = P.plan_deals(snap, rules())
    assert kinds(actions) == ["CreateCustomer", "CreateDocument", "CreateDocument"]
    assert all(a.customer == P.CustomerOf("c1") for a in actions[1:])  # type: ignore[union-attr]


def test_document_payload_has_key_references_and_value() -> None:
    [a] = P.plan_deals(P.Snapshot(deals=[D], related={"c1": C}, links=LINKED, **PEOPLE), rules())
    assert isinstance(a, P.CreateDocument) and a.customer == "7"
    assert a.payload["ExternalInvoiceReference1"] == "limego:deal:d1"
    assert a.payload["YourReference"] == "Anna Berg" and a.payload["OurReference"] == "Olle Säljare"
    assert a.payload["InvoiceRows"][0]["Price"] == 100 and "CustomerNumber" not in a.payload


def test_order_target_and_none_target() -> None:
    [a] = P.plan_deals(
        P.Snapshot(deals=[D], related={"c1": C}, links=LINKED, **PEOPLE), rules(kind="order")
    )
    assert isinstance(a, P.CreateDocument) and a.kind == "order" and "OrderRows" in a.payload
    assert (
        P.plan_deals(P.Snapshot(deals=[D], related={"c1": C}, links=LINKED), rules(kind=None)) == []
    )


def test_ledger_prefers_an_uncancelled_document_and_names_the_others() -> None:
    docs = [ledger_doc("d1", "55", cancelled=True), ledger_doc("d1", "56")]
    snap = P.Snapshot(deals=[D], related={"c1": C}, links=LINKED, ledger={document_ref("d1"): docs})
    [a] = P.plan_deals(snap, rules())
    assert (
        isinstance(a, P.LinkDocument) and a.document.document_number == "56" and a.others == ("55",)
    )


def test_a_cancelled_document_is_never_recreated() -> None:
    docs = [ledger_doc("d1", "55", cancelled=True)]
    snap = P.Snapshot(deals=[D], related={"c1": C}, links=LINKED, ledger={document_ref("d1"): docs})
    [a] = P.plan_deals(snap, rules())
    assert isinstance(a, P.LinkDocument) and a.document.cancelled
    assert "cancelled" in P.describe(a)[0]


def test_backfill_window_turns_historical_and_skipped_into_wins_never_done_ones() -> None:
    old = deal("old", updated=T0 - timedelta(days=3))
    skipped = deal("skipped", updated=T0 - timedelta(days=2))
    done = deal("done", updated=T0 - timedelta(days=1))
    outside = deal("outside", updated=T0 - timedelta(days=30))
    snap = P.Snapshot(
        deals=[old, skipped, done, outside],
        related={"c1": C},
        intents={"skipped": intent("skipped", "skipped", None), "done": intent("done")},
    )
    window = (T0 - timedelta(days=5), T0)
    assert [d.id for d in P.triage(snap, rules(window=window)).wins] == ["old", "skipped"]
    assert [d.id for d in P.triage(snap, rules()).historical] == ["old", "outside"]


def test_deal_lookups_name_missing_companies_and_first_contacts() -> None:
    snap = P.Snapshot(deals=[deal("a", company_id="x"), deal("b")], related={"c1": C})
    assert P.deal_lookups(snap.deals, snap) == ({"x"}, {"p1"})


def test_no_contact_is_read_for_a_deal_fortnox_already_has_a_document_for() -> None:
    """A rebuilt state file: 20 000 deals Fortnox has documents for cost no Lime Go reads."""
    held = deal("held")
    snap = P.Snapshot(deals=[held], related={"c1": C})
    ledger = {document_ref("held"): [ledger_doc("held")]}
    assert P.deal_lookups(snap.deals, snap, ledger) == (set(), set())


# --- at execution time: the customer a document needs is not there ------------------------------

NOT_READY: list[tuple[str, CustomerLink | None, QuarantineEntry | None, str]] = [
    ("its POST is pending: wait to be confirmed", link(C, state="pending"), None, "Defer"),
    ("its POST failed and is retried: wait", None, None, "Defer"),
    ("the company is quarantined: the deal waits for it", None, quarantined("company:c1", C), "Quarantine"),
]  # fmt: skip


@pytest.mark.parametrize("why,lk,q,expected", NOT_READY, ids=[r[0] for r in NOT_READY])
def test_customer_not_ready(
    why: str, lk: CustomerLink | None, q: QuarantineEntry | None, expected: str
) -> None:
    a = P.customer_not_ready(D, C, lk, q)
    assert type(a).__name__ == expected, why
    if isinstance(a, P.Quarantine):
        assert a.waits_for == "company:c1" and "Åkesson AB" in a.reason and "next pass" in a.hint


# --- what a failure means -----------------------------------------------------------------------

CREATE_DOC = P.CreateDocument(D, "invoice", {}, C, "7")
CREATE_NEW = P.CreateDocument(D, "invoice", {}, C, P.CustomerOf("c1"))
UPDATE = P.UpdateCustomer(C, "7", {}, {})
ADOPT = P.AdoptCustomer(C, "7", {})
CREATE_C = P.CreateCustomer(C, {})


def lost(in_flight: bool) -> UnknownOutcome:
    e = UnknownOutcome("Fortnox", "lost")
    e.in_flight = in_flight
    return e


FAILURES: list[tuple[str, P.Action, Exception, int, P.Outcome]] = [
    ("a lost answer keeps the intent", CREATE_DOC, lost(False), 0, P.KeepIntent(False)),
    ("a timeout keeps the intent, maybe in flight", CREATE_C, lost(True), 0, P.KeepIntent(True)),
    ("a transient failure: not sent, next pass", CREATE_DOC, TransientError("Fortnox", "503"), 0, P.NotSent("Fortnox: 503")),
    ("the third in a row stops the pass", CREATE_DOC, TransientError("Fortnox", "503"), 2, P.NotSent("Fortnox: 503", stop_pass=True)),
    ("a deleted customer on update: stale link", UPDATE, NotFound("Fortnox", "gone", status=404, code=2000433), 0, P.StaleLink("7")),
    ("a deleted customer on adopt: stale link", ADOPT, NotFound("Fortnox", "gone", status=404), 0, P.StaleLink("7")),
    ("a deleted customer on a document: stale link", CREATE_DOC, ApiError("Fortnox", "x", status=400, code=2000433), 0, P.StaleLink("7")),
]  # fmt: skip


@pytest.mark.parametrize("why,action,error,streak,expected", FAILURES, ids=[r[0] for r in FAILURES])
def test_after_failure(
    why: str, action: P.Action, error: Any, streak: int, expected: P.Outcome
) -> None:
    assert P.after_failure(action, error, streak=streak) == expected, why


REFUSALS: list[tuple[str, P.Action, int | None, str, str]] = [
    ("a bad record: fix it in Lime Go", CREATE_C, 2000359, "characters", "fix the record in Lime Go"),
    ("no sales account, none configured", CREATE_DOC, 2000423, "bookkeeping account", "set [sync] account_number"),
    ("no licence: a Fortnox setting", CREATE_NEW, 2001101, "licence", "fix the Fortnox setting"),
]  # fmt: skip


@pytest.mark.parametrize("why,action,code,reason,hint", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_quarantine_with_reason_and_hint(
    why: str, action: P.Action, code: int | None, reason: str, hint: str
) -> None:
    out = P.after_failure(action, ApiError("Fortnox", "nope", status=400, code=code))
    assert isinstance(out, P.Refused), why
    assert (
        reason in out.reason
        and hint in out.hint
        and f"limefort retry {P.key_of(action)}" in out.hint
    )


def test_account_hint_names_the_configured_account() -> None:
    out = P.after_failure(
        CREATE_DOC, ApiError("Fortnox", "x", status=400, code=2000423), account_number="3001"
    )
    assert isinstance(out, P.Refused) and "account 3001" in out.hint


SETTLED: list[tuple[str, str | None, float, bool]] = [
    ("answer lost: Fortnox finished", "lost", 0, True),
    ("certainly not sent", "not_sent", 0, True),
    ("timeout, too recent to trust a search", None, 3, False),
    ("timeout, twice the request timeout ago", None, 61, True),
]


@pytest.mark.parametrize("why,outcome,ago,expected", SETTLED, ids=[r[0] for r in SETTLED])
def test_in_flight_timing_rule(why: str, outcome: str | None, ago: float, expected: bool) -> None:
    assert P.settled(outcome, T0 - timedelta(seconds=ago), T0, timeout=30) is expected, why


# --- small pure pieces --------------------------------------------------------------------------


def test_won_stages_by_category_or_name() -> None:
    stages = {
        "a": Stage("a", "Vunnen", "won"),
        "b": Stage("b", "Klar", "open"),
        "c": Stage("c", "Offert", None),
    }
    assert P.won_stage_ids(stages, ["won"], []) == {"a"}
    assert P.won_stage_ids(stages, [], ["klar"]) == {"b"}


@pytest.mark.parametrize(
    "key,ok",
    [
        ("company:abc-1", True),
        ("deal:1", True),
        ("invoice:42", False),
        ("deal:", False),
        ("foo", False),
        ("deal:a b", False),
    ],
)
def test_record_keys(key: str, ok: bool) -> None:
    if ok:
        assert parse_key(key)[1] == key.partition(":")[2]
    else:
        with pytest.raises(ValueError, match="company:<id> or deal:<id>"):
            parse_key(key)


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


def test_describe_every_action() -> None:
    lines = {
        type(a).__name__: P.describe(a)[0]
        for a in [
            CREATE_C, ADOPT, UPDATE, CREATE_DOC, P.LinkDocument(D, "invoice", ledger_doc("d1"), ("9",)),
            P.SkipHistorical(D, "invoice"), P.Quarantine("deal:d1", "n", "why", "hint", None),
            P.Release("deal:d1"), P.Defer("deal:d1", "waiting"),
        ]
    }  # fmt: skip
    assert lines["CreateCustomer"].startswith("+ create customer")
    assert "Fortnox customer 7" in lines["AdoptCustomer"]
    assert "and 9 with the same key" in lines["LinkDocument"]
    assert lines["Quarantine"].startswith("! quarantine") and "why" in lines["Quarantine"]
    assert lines["Defer"].startswith("  wait")
    assert len(lines) == 9


def test_summary_lines_for_a_pass_and_a_dry_run() -> None:
    from limefort.engine.runner import summarise

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


def test_rules_are_frozen() -> None:
    r = rules()
    assert replace(r, kind="order").kind == "order" and r.kind == "invoice"


def test_relinking_after_a_lost_state_file_adopts_the_documents_customer() -> None:
    snap = P.Snapshot(
        deals=[D], related={"c1": C}, ledger={document_ref("d1"): [ledger_doc("d1")]}, **PEOPLE
    )
    adopt, linkdoc = P.plan_deals(snap, rules())
    assert isinstance(adopt, P.AdoptCustomer) and adopt.customer == "7" and adopt.by == "document"
    assert isinstance(linkdoc, P.LinkDocument) and linkdoc.document.document_number == "55"


@pytest.mark.parametrize(
    ("ids", "present", "chosen", "gone"),
    [
        (("a", "b"), {"a", "b"}, "a", ()),
        (("a", "b"), {"b"}, "b", (("contact", "a"),)),
        (("a", "b", "c", "d"), {"d"}, None, (("contact", "a"), ("contact", "b"), ("contact", "c"))),
        (("a",), set(), None, (("contact", "a"),)),
        ((), set(), None, ()),
    ],
)
def test_er_referens_takes_the_first_contact_that_exists(
    ids: tuple[str, ...], present: set[str], chosen: str | None, gone: tuple[Any, ...]
) -> None:
    from limefort.core.models import Person
    from limefort.plan import CONTACTS_TRIED, first_existing

    people = {i: Person(id=i, first_name=i.upper(), last_name=None) for i in present}
    person, missing = first_existing("contact", ids, people, CONTACTS_TRIED)
    assert (person.id if person else None) == chosen
    assert missing == gone
