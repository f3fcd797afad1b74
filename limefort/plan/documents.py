"""Won deals: triage of a page, and per deal a document created, linked, skipped as historical,
deferred for its customer or held back."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from limefort.core.keys import document_ref
from limefort.core.models import (
    Company,
    CustomerLink,
    Deal,
    DocumentKind,
    LedgerDocument,
    Person,
    QuarantineEntry,
)
from limefort.mapping import (
    DealContext,
    Mapped,
    Rejected,
    map_deal,
)
from limefort.mapping.normalise import quote
from limefort.plan.actions import (
    Action,
    AdoptCustomer,
    CreateCustomer,
    CreateDocument,
    CustomerOf,
    CustomerRef,
    Defer,
    LinkDocument,
    Quarantine,
    Release,
    ShareCustomer,
    SkipHistorical,
)
from limefort.plan.cursor import is_new_win
from limefort.plan.customers import _live_link, _plan_company_in, plan_companies
from limefort.plan.drift import plan_drift
from limefort.plan.realworld import orgnr_of
from limefort.plan.snapshot import Rules, Snapshot, source_hash


@dataclass
class Triage:
    """Which deals of a page need a document, which were won before `sync.start`, and which
    quarantined ones need nothing any more."""

    wins: list[Deal] = field(default_factory=list)
    historical: list[Deal] = field(default_factory=list)
    released: list[Deal] = field(default_factory=list)


def triage(snap: Snapshot, rules: Rules) -> Triage:
    out = Triage()
    for deal in snap.deals:
        if deal.stage_id not in rules.won:
            if deal.key in snap.quarantine:
                out.released.append(deal)  # no longer won: it needs no document
            continue
        row = snap.intents.get(deal.id)
        if row is not None and row.state == "pending" and deal.key in snap.resend:
            row = None  # Fortnox certainly never got it: plan it afresh
        if rules.window is not None:
            lo, hi = rules.window
            if (row is None or row.state == "skipped") and lo <= deal.updated_at <= hi:
                out.wins.append(deal)
            continue
        if row is not None:
            continue  # done, pending (reconciliation owns it) or skipped as historical
        q = snap.quarantine.get(deal.key)
        company = snap.related.get(deal.company_id or "")
        if q is not None and not snap.force and q.source_hash == source_hash(deal, company):
            continue
        if is_new_win(deal.updated_at, rules.start):
            out.wins.append(deal)
        else:
            out.historical.append(deal)
    return out


def deal_lookups(
    wins: Iterable[Deal],
    snap: Snapshot,
    ledger: Mapping[str, Sequence[LedgerDocument]] | None = None,
) -> tuple[set[str], set[str]]:
    """What must be read before these wins can be planned: companies Lime Go did not include,
    and the first contact of each (Er referens) whose document Fortnox does not hold already
    (`ledger`: a deal Fortnox has a document for is linked, its contact never needed)."""
    wins = list(wins)
    held = ledger or {}
    companies = {d.company_id for d in wins if d.company_id and d.company_id not in snap.related}
    # The first few contacts, not only the first: when it was deleted, Er referens takes
    # the next one that exists (`first_existing`).
    contacts = {
        c for d in wins if document_ref(d.id) not in held for c in d.contact_ids[:CONTACTS_TRIED]
    }
    return companies, contacts


# How many of a deal's contacts are read to find one that still exists.
CONTACTS_TRIED = 3


def first_existing(
    role: str, ids: Sequence[str], people: Mapping[str, Person], tried: int
) -> tuple[Person | None, tuple[tuple[str, str], ...]]:
    """The first person of `ids` Lime Go still has, and (role, id) of those before it (and,
    when none exists, of all tried) that it no longer has."""
    gone: list[tuple[str, str]] = []
    for person_id in ids[:tried]:
        person = people.get(person_id)
        if person is not None:
            return person, tuple(gone)
        gone.append((role, person_id))
    return None, tuple(gone)


def plan_deals(snap: Snapshot, rules: Rules) -> list[Action]:
    if rules.kind is None:
        return []
    kind = rules.kind
    tri = triage(snap, rules)
    actions: list[Action] = [SkipHistorical(d, kind) for d in tri.historical]
    actions += [Release(d.key, "no longer won in Lime Go") for d in tri.released]
    linking: dict[str, Action] = {}  # company id -> the action that links it in this plan
    creating: dict[str, str] = {}
    for d in tri.wins:
        actions += _plan_win(snap, rules, d, kind, linking, creating)
    return actions + plan_drift(snap, rules)


def _plan_win(
    snap: Snapshot,
    rules: Rules,
    deal: Deal,
    kind: DocumentKind,
    linking: dict[str, Action],
    creating: dict[str, str],
) -> list[Action]:
    existing = list(snap.ledger.get(document_ref(deal.id), ()))
    if existing:
        # Fortnox is the ledger: whatever the state file says, this deal has a document.
        mine = [x for x in existing if x.kind == kind] or existing
        first = next((x for x in mine if not x.cancelled), mine[0])
        others = tuple(x.document_number for x in existing if x is not first)
        return [*_relink_company(snap, rules, deal, first, linking, creating),
                LinkDocument(deal, kind, first, others)]  # fmt: skip
    company = snap.related.get(deal.company_id or "")
    contact, contacts_gone = first_existing(
        "contact", deal.contact_ids, snap.contacts, CONTACTS_TRIED
    )
    owner, owners_gone = first_existing("owner", deal.owner_ids, snap.owners, len(deal.owner_ids))
    ctx = DealContext(
        deal=deal,
        company=company,
        contact=contact,
        owner=owner,
        field_defs=snap.field_defs,
        gone=contacts_gone + owners_gone,
    )
    result = map_deal(
        ctx,
        kind,
        rules.document_map,
        article_number=rules.article_number,
        account_number=rules.account_number,
        require_positive_value=rules.require_positive_value,
    )
    if isinstance(result, Rejected):
        return [
            Quarantine(deal.key, deal.name, result.reason, result.hint, source_hash(deal, company))
        ]
    if company is None:  # mapping rejects deals without a company; this is the belt
        return [
            Quarantine(
                deal.key,
                deal.name,
                "the deal's company could not be read from Lime Go",
                "check that the company still exists in Lime Go, then run `limefort retry`",
                source_hash(deal, company),
            )
        ]
    out: list[Action] = []
    link = _live_link(snap, company)
    customer: CustomerRef
    if link is not None and link.done:
        assert link.customer_number is not None
        customer = link.customer_number
    elif link is not None and link.state == "pending":
        return [Defer(deal.key, f"waiting for its customer ({company.key}) to be confirmed")]
    elif company.id in linking or company.id in snap.planned:
        customer = CustomerOf(company.id)
    else:
        act = _plan_company_in(snap, company, rules, creating)
        if isinstance(act, CreateCustomer | AdoptCustomer | ShareCustomer):
            linking[company.id] = act
            out.append(act)
            customer = CustomerOf(company.id)
        elif act is None and company.key in snap.quarantine:
            return [customer_not_ready(deal, company, None, snap.quarantine[company.key])]
        elif isinstance(act, Quarantine):
            out.append(act)
            return [*out, customer_not_ready(deal, company, None, _as_entry(act))]
        else:
            return [Defer(deal.key, f"waiting for its customer ({company.key})")]
    out.append(
        CreateDocument(
            deal, kind, result.payload, company, customer, result.warnings, lost=result.lost
        )
    )
    return out


def _relink_company(
    snap: Snapshot,
    rules: Rules,
    deal: Deal,
    doc: LedgerDocument,
    linking: dict[str, Action],
    creating: dict[str, str],
) -> list[Action]:
    """A deal whose document Fortnox already holds, of a company the state file does not link
    (a lost or old state file): link the company too, to the customer Fortnox knows as it, or
    else to the document's customer. Never a new customer for a deal already invoiced."""
    company = snap.related.get(deal.company_id or "")
    if company is None or _live_link(snap, company) is not None:
        return []
    if company.id in linking or company.id in snap.planned:
        return []
    act = _plan_company_in(snap, company, rules, creating)
    if isinstance(act, CreateCustomer) and doc.customer_number:
        creating.pop(orgnr_of(Mapped(act.payload)) or "", None)
        act = AdoptCustomer(company, doc.customer_number, act.payload, act.warnings, by="document")
    if isinstance(act, CreateCustomer | AdoptCustomer | ShareCustomer):
        linking[company.id] = act
        return [act]
    return []


def _as_entry(q: Quarantine) -> QuarantineEntry:
    return QuarantineEntry(q.key, q.name, q.reason, q.hint, 1, q.source_hash, "", "", None)


def customer_not_ready(
    deal: Deal,
    company: Company,
    link: CustomerLink | None,
    company_quarantine: QuarantineEntry | None,
) -> Action:
    """A document's customer is not in Fortnox when it is to be sent. If the company is at
    fault (quarantined), so is the deal, waiting for it; otherwise (its POST is pending or
    failed in a way that is retried) the deal is not at fault: it waits, cursor held."""
    if link is not None or company_quarantine is None:
        wait = "confirmed" if link is not None else "created on the next pass"
        return Defer(deal.key, f"waiting for its customer ({company.key}) to be {wait}")
    named = f"{quote(company.name)} ({company.key})" if company.name else company.key
    return Quarantine(
        deal.key,
        deal.name,
        f"its company {named} is not in Fortnox: {company_quarantine.reason}",
        "fix the company in Lime Go; the deal follows on the next pass",
        source_hash(deal, company),
        waits_for=company.key,
    )


def plan_page(snap: Snapshot, rules: Rules) -> list[Action]:
    return plan_companies(snap, rules) + plan_deals(snap, rules)
