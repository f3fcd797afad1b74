"""Decide, then do (after vdirsyncer): every rule of the sync, as pure functions.

`plan_page` turns a `Snapshot` (the records of one page of Lime Go, what the store holds for
them, what Fortnox's own indexes hold for them, the people and field definitions the mapping
needs) and the pass's `Rules` into a list of actions. The executor runs them in order and only
executes; what a failure means is the pure table `after_failure`. A dry run prints the plan.

Nothing here does I/O or reads a clock: every fact comes in as data, so every rule has a table
test in tests/test_plan*.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from limefort.core.errors import ApiError, NotFound, ServiceError, TransientError, UnknownOutcome
from limefort.core.explain import explain
from limefort.core.keys import customer_ref, deal_id_of_ref, document_ref, parse_stamp
from limefort.core.models import (
    Company,
    CustomerLink,
    CustomFieldDef,
    Deal,
    DocumentIntent,
    DocumentKind,
    DriftEntry,
    LedgerDocument,
    Person,
    QuarantineEntry,
    Stage,
)
from limefort.mapping import (
    DealContext,
    Mapped,
    Rejected,
    changed_fields,
    from_json,
    map_company,
    map_deal,
    payload_hash,
    source_text,
)
from limefort.mapping.normalise import Invalid, normalise_orgnr, orgnr_key, quote
from limefort.plan.cursor import is_new_win

# --- actions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerOf:
    """The Fortnox customer that an earlier action of the same plan creates or links for this
    company: a document for a new company refers to its creation, not to a number."""

    company_id: str


CustomerRef = str | CustomerOf


@dataclass(frozen=True)
class CreateCustomer:
    company: Company
    payload: dict[str, Any]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdoptCustomer:
    """Fortnox already has this customer (same organisation number, or limefort's own
    ExternalReference): link it and send our fields, never create a second one."""

    company: Company
    customer: CustomerRef
    payload: dict[str, Any]
    warnings: tuple[str, ...] = ()
    by: str = "organisation number"
    notice: str = ""  # kept as a warning on the record in `status` (an inactive customer)


@dataclass(frozen=True)
class UpdateCustomer:
    company: Company
    customer_number: str
    payload: dict[str, Any]
    changes: dict[str, tuple[Any, Any]]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class CreateDocument:
    deal: Deal
    kind: DocumentKind
    payload: dict[str, Any]  # without CustomerNumber: the executor adds the resolved one
    company: Company
    customer: CustomerRef
    warnings: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()  # what fits nowhere in Fortnox: a warning on the record


@dataclass(frozen=True)
class LinkDocument:
    """Fortnox already holds a document with this deal's key (Fortnox is the ledger): link the
    deal to it instead of creating another. `others` are further documents with the same key."""

    deal: Deal
    kind: DocumentKind
    document: LedgerDocument
    others: tuple[str, ...] = ()


@dataclass(frozen=True)
class SkipHistorical:
    deal: Deal
    kind: DocumentKind


@dataclass(frozen=True)
class Quarantine:
    key: str
    name: str | None
    reason: str
    hint: str
    source_hash: str | None
    waits_for: str | None = None


@dataclass(frozen=True)
class Release:
    """A quarantined record that needs nothing more from Fortnox."""

    key: str
    why: str = "already in line with Fortnox"


@dataclass(frozen=True)
class Defer:
    """Not this pass: the record waits (its cursor is held) and is planned again next pass."""

    key: str
    why: str


Change = tuple[str | None, str | None]  # (as the document was made, as Lime Go has it now)


@dataclass(frozen=True)
class RecordDrift:
    """A deal changed after its document was made (rule 12): named until a person
    acknowledges it or the deal changes back. Never a second document. `why`: why
    `update-unbooked` did not update the document."""

    deal: Deal
    document: str  # invoice:<DocumentNumber> | order:<DocumentNumber>
    changes: Mapping[str, Change]
    why: str = ""


@dataclass(frozen=True)
class ClearDrift:
    key: str
    why: str = "changed back in Lime Go: in line with its document again"


@dataclass(frozen=True)
class UpdateDocument:
    """`[sync] on_deal_change = "update-unbooked"`: the document is neither booked, sent nor
    cancelled, so it follows its deal (the row's price and description, the customer)."""

    deal: Deal
    kind: DocumentKind
    document_number: str
    fields: dict[str, Any]  # the PUT body
    changes: Mapping[str, Change]
    customer_number: str | None  # the new customer, when the deal moved to another company

    @property
    def document(self) -> str:
        return f"{self.kind}:{self.document_number}"


@dataclass(frozen=True)
class ShareCustomer:
    """A second Lime Go company with the organisation number of a Fortnox customer another
    company owns (DESIGN rule 11): linked to it "shared", so its won deals are invoiced to that
    customer, but its own field changes are never sent (no blend of two CRM records)."""

    company: Company
    customer: CustomerRef
    owner_id: str
    owner_name: str
    orgnr: str
    payload: dict[str, Any]


Action = (
    CreateCustomer
    | AdoptCustomer
    | ShareCustomer
    | UpdateCustomer
    | CreateDocument
    | LinkDocument
    | SkipHistorical
    | Quarantine
    | Release
    | Defer
    | RecordDrift
    | ClearDrift
    | UpdateDocument
)


def key_of(a: Action) -> str:
    match a:
        case CreateCustomer(company=c) | AdoptCustomer(company=c) | UpdateCustomer(company=c):
            return c.key
        case ShareCustomer(company=c):
            return c.key
        case CreateDocument(deal=d) | LinkDocument(deal=d) | SkipHistorical(deal=d):
            return d.key
        case Quarantine(key=k) | Release(key=k) | Defer(key=k):
            return k
        case RecordDrift(deal=d) | UpdateDocument(deal=d):
            return d.key
        case ClearDrift(key=k):
            return k
    raise TypeError(a)


def writes(a: Action) -> bool:
    """Whether the action writes to Fortnox (the writer guard looks before the first)."""
    return isinstance(
        a, CreateCustomer | AdoptCustomer | UpdateCustomer | CreateDocument | UpdateDocument
    )


def creates(a: Action) -> bool:
    """Whether the action makes a new record in Fortnox: what could be made twice."""
    return isinstance(a, CreateCustomer | CreateDocument)


def count_name(a: Action) -> str:
    """The pass counter an action adds to when it is done (or, in a dry run, planned)."""
    match a:
        case CreateCustomer():
            return "customers_created"
        case AdoptCustomer():
            return "customers_adopted"
        case ShareCustomer():
            return "customers_shared"
        case UpdateCustomer():
            return "customers_updated"
        case CreateDocument(kind=k):
            return f"{k}s_created"
        case LinkDocument():
            return "documents_relinked"
        case SkipHistorical():
            return "skipped_historical"
        case Quarantine():
            return "quarantined"
        case Release():
            return "released"
        case Defer():
            return "deferred"
        case RecordDrift():
            return "drift_recorded"
        case ClearDrift():
            return "drift_cleared"
        case UpdateDocument():
            return "documents_updated"
    raise TypeError(a)


# --- what a pass knows ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """What holds for a whole pass: configuration, won stages, `sync.start`, a backfill's window."""

    customer_map: Mapping[str, str]
    document_map: Mapping[str, str]
    statuses: frozenset[str]
    kind: DocumentKind | None  # None: deal_target = "none"
    won: frozenset[str]
    start: datetime
    window: tuple[datetime, datetime] | None = None
    require_orgnr: bool = False
    require_positive_value: bool = True
    article_number: str = ""
    account_number: str = ""
    lost: frozenset[str] = frozenset()  # stages whose category is "lost" (drift: lost/reopened)
    on_deal_change: str = "warn"  # warn | update-unbooked
    countries: Mapping[str, str] = field(default_factory=dict)  # [mapping.countries]
    vat_types: Mapping[str, str] = field(default_factory=dict)  # [mapping.vat_type]


@dataclass(frozen=True)
class Snapshot:
    """Everything the planner may know about one page, gathered before it decides."""

    companies: Sequence[Company] = ()  # companies read for their own sake
    scoped: bool = True  # only customers by status (or already linked) are planned
    deals: Sequence[Deal] = ()
    related: Mapping[str, Company] = field(default_factory=dict)  # the deals' companies
    links: Mapping[str, CustomerLink] = field(default_factory=dict)  # by company id
    intents: Mapping[str, DocumentIntent] = field(default_factory=dict)  # by deal id
    quarantine: Mapping[str, QuarantineEntry] = field(default_factory=dict)  # by key
    by_orgnr: Mapping[str, Sequence[str]] = field(default_factory=dict)  # Fortnox customers
    by_ref: Mapping[str, Sequence[str]] = field(default_factory=dict)  # by ExternalReference
    ledger: Mapping[str, Sequence[LedgerDocument]] = field(default_factory=dict)  # by doc key
    contacts: Mapping[str, Person] = field(default_factory=dict)
    owners: Mapping[str, Person] = field(default_factory=dict)
    field_defs: Mapping[str, CustomFieldDef] = field(default_factory=dict)
    force: bool = False  # retry: plan quarantined records though Lime Go did not change them
    resend: frozenset[str] = frozenset()  # keys whose pending intent Fortnox certainly lacks
    planned: frozenset[str] = frozenset()  # company ids an earlier page already plans to link
    drift: Mapping[str, DriftEntry] = field(default_factory=dict)  # by deal key

    # Fortnox customer number -> (company id, name) of the company that owns it (linked).
    claimed: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    inactive: frozenset[str] = frozenset()  # Fortnox customers its list shows as inactive


def source_hash(*records: Company | Deal | None) -> str:
    """What a quarantined record is compared with: a change in Lime Go retries it."""
    return payload_hash(
        {str(i): dict(r.attributes) if r is not None else None for i, r in enumerate(records)}
    )


def won_stage_ids(
    stages: Mapping[str, Stage], categories: Iterable[str], names: Iterable[str]
) -> frozenset[str]:
    cats = {c.casefold() for c in categories}
    wanted = {n.casefold() for n in names}
    return frozenset(
        s.id
        for s in stages.values()
        if (s.category or "").casefold() in cats or s.name.casefold() in wanted
    )


# --- companies --------------------------------------------------------------------------------


def company_in_scope(company: Company, statuses: Iterable[str], link: CustomerLink | None) -> bool:
    """A customer by status, or one limefort already put in Fortnox (its changes still flow)."""
    return link is not None or (company.status or "") in set(statuses)


def map_one_company(company: Company, rules: Rules) -> Mapped | Rejected:
    return map_company(
        company,
        rules.customer_map,
        require_orgnr=rules.require_orgnr,
        countries=rules.countries,
        vat_types=rules.vat_types,
    )


def orgnr_of(result: Mapped | Rejected) -> str | None:
    return result.payload.get("OrganisationNumber") if isinstance(result, Mapped) else None


def orgnr_moved(link: CustomerLink, result: Mapped | Rejected) -> str | None:
    """The new organisation number of a linked company whose number changed in Lime Go
    (compared folded: a new format of the same number is no change of entity)."""
    new = orgnr_of(result)
    if not new or orgnr_key(new) == orgnr_key(link.orgnr):
        return None
    return new


def customer_lookups(
    companies: Iterable[Company],
    links: Mapping[str, CustomerLink],
    rules: Rules,
    quarantine: Mapping[str, QuarantineEntry],
    force: bool = False,
) -> tuple[set[str], dict[str, str]]:
    """What Fortnox's customer index must answer before these companies can be planned: the
    organisation numbers of unlinked companies, and the ExternalReference of those without one
    (they can be recognised only by limefort's own key), each with the name limefort sends
    (candidates are Fortnox customers with exactly that cleaned name). Not asked for companies
    that will not be sent: rejected by the mapping, or quarantined and unchanged since."""
    orgnrs: set[str] = set()
    refs: dict[str, str] = {}
    for c in companies:
        link = links.get(c.id)
        q = quarantine.get(c.key)
        if q is not None and not force and q.source_hash == source_hash(c):
            continue
        if link is not None and not link.shared_with:
            # Linked: asked only when its organisation number changes, to see whether
            # another customer holds the new one (one legal entity, one customer).
            moved = orgnr_moved(link, map_one_company(c, rules)) if link.done else None
            if moved:
                orgnrs.add(moved)
            continue
        result = map_one_company(c, rules)
        if isinstance(result, Rejected):
            continue
        orgnr = orgnr_of(result)
        if orgnr:
            orgnrs.add(orgnr)
        else:
            refs[customer_ref(c.id)] = str(result.payload.get("Name") or "")
    return orgnrs, refs


def plan_company(
    company: Company,
    result: Mapped | Rejected,
    *,
    link: CustomerLink | None,
    quarantined: QuarantineEntry | None,
    matches: Sequence[str] = (),
    force: bool = False,
    by: str = "organisation number",
) -> Action | None:
    """One company, already mapped. `matches`: Fortnox customers that are this company
    (same organisation number, or limefort's ExternalReference for it)."""
    if link is not None and link.state == "pending":
        return None  # an unknown outcome: reconciliation owns it, never a second POST
    # The source hash only matters for a quarantined or rejected company: not hashed otherwise
    # (a `--since` pass re-reads every company, nearly all of them in neither state).
    if quarantined is not None and not force and quarantined.source_hash == source_hash(company):
        return None  # nothing changed in Lime Go since it was quarantined
    if isinstance(result, Rejected):
        return Quarantine(
            company.key, company.name, result.reason, result.hint, source_hash(company)
        )
    payload = result.payload
    if link is None:
        if matches:
            return AdoptCustomer(company, matches[0], payload, result.warnings, by=by)
        return CreateCustomer(company, payload, result.warnings)
    if payload_hash(payload) == link.hash:
        return Release(company.key) if quarantined is not None else None
    assert link.customer_number is not None  # a done link has its number
    changes = changed_fields(from_json(link.payload) if link.payload else {}, payload)
    return UpdateCustomer(company, link.customer_number, payload, changes, result.warnings)


def plan_companies(snap: Snapshot, rules: Rules) -> list[Action]:
    """The companies of a page. Two companies of one page with one organisation number: the
    first is created, the second is linked to the customer that creation makes."""
    actions: list[Action] = []
    creating: dict[str, str] = {}  # organisation number -> company id created in this plan
    for c in snap.companies:
        if snap.scoped and not company_in_scope(c, rules.statuses, snap.links.get(c.id)):
            continue
        act = _plan_company_in(snap, c, rules, creating)
        if act is not None:
            actions.append(act)
    return actions


def _plan_company_in(
    snap: Snapshot, c: Company, rules: Rules, creating: dict[str, str]
) -> Action | None:
    result = map_one_company(c, rules)
    orgnr = orgnr_of(result)
    if orgnr:
        matches: Sequence[str] = snap.by_orgnr.get(orgnr, ())
        by = "organisation number"
    else:
        matches = snap.by_ref.get(customer_ref(c.id), ())
        by = "limefort's ExternalReference"
    link = _live_link(snap, c)
    if link is not None and link.shared_with:
        if not shared_link_moved(link, orgnr):
            return Release(c.key) if c.key in snap.quarantine else None  # nothing is sent
        link = None  # its organisation number changed: linked afresh by the new one
    act = plan_company(
        c,
        result,
        link=link,
        quarantined=snap.quarantine.get(c.key),
        matches=matches,
        force=snap.force,
        by=by,
    )
    if isinstance(act, CreateCustomer) and orgnr and orgnr in creating:
        owner = creating[orgnr]
        return ShareCustomer(
            c, CustomerOf(owner), owner, _company_name(snap, owner), orgnr, act.payload
        )
    act = real_world_rules(snap, c, rules, link, act)
    # Only a creation that survives the rules above makes a customer others can share: one
    # held back (a gutted name) creates nothing, so the next company is created itself.
    if isinstance(act, CreateCustomer) and orgnr:
        creating[orgnr] = c.id
    return act


# --- deals ------------------------------------------------------------------------------------


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


def _live_link(snap: Snapshot, company: Company) -> CustomerLink | None:
    """The company's link, unless it is a pending one Fortnox certainly never got."""
    link = snap.links.get(company.id)
    if link is not None and link.state == "pending" and company.key in snap.resend:
        return None
    return link


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


# --- what a failure means ---------------------------------------------------------------------

# Fortnox refusals caused by Fortnox's settings or limefort's configuration, not by the record:
# account not found, EasyVat needs an account, no licence, no scope, unknown field name.
ACCOUNT_NOT_FOUND = 2000423
CUSTOMER_NOT_FOUND = 2000433
SETTING_CODES = frozenset({ACCOUNT_NOT_FOUND, 2004167, 2001101, 2000663, 2001399})

# After this many Fortnox failures in a row that retries could not cure, the service is down:
# stop the pass instead of hammering it record by record (cursors stay where they were).
MAX_CONSECUTIVE_TRANSIENT = 3


@dataclass(frozen=True)
class KeepIntent:
    """The write may or may not have been applied: keep the intent, reconcile by its key."""

    in_flight: bool  # we stopped waiting (timeout): Fortnox may still be applying it


@dataclass(frozen=True)
class Refused:
    """Fortnox refused the record: drop any intent and quarantine it with reason and hint."""

    reason: str
    hint: str


@dataclass(frozen=True)
class NotSent:
    """Certainly not applied and worth trying again: next pass (cursor held)."""

    why: str
    stop_pass: bool = False  # Fortnox is down: stop the pass, nothing is lost


@dataclass(frozen=True)
class StaleLink:
    """The Fortnox customer behind a link no longer exists: forget the link so the company
    is created or adopted afresh."""

    customer_number: str


@dataclass(frozen=True)
class DriftInstead:
    """Fortnox refused to update a document to follow its deal: name the drift instead."""

    record: RecordDrift


Outcome = KeepIntent | Refused | NotSent | StaleLink | DriftInstead


def _int_code(code: object) -> int | None:
    try:
        return int(str(code))
    except ValueError:
        return None


def after_failure(
    action: Action, error: ServiceError, *, streak: int = 0, account_number: str = ""
) -> Outcome:
    """What a failed action means. `streak`: failures in a row before this one."""
    if isinstance(action, UpdateDocument):
        return after_update_failure(action, error, streak=streak)
    if isinstance(error, UnknownOutcome):
        return KeepIntent(in_flight=error.in_flight)
    if isinstance(error, TransientError):
        return NotSent(str(error), stop_pass=streak + 1 >= MAX_CONSECUTIVE_TRANSIENT)
    if isinstance(error, ApiError):
        gone = isinstance(error, NotFound) or _int_code(error.code) == CUSTOMER_NOT_FOUND
        if gone:
            match action:
                case UpdateCustomer(customer_number=n):
                    return StaleLink(n)
                case AdoptCustomer(customer=str(n)):
                    return StaleLink(n)
                case CreateDocument(customer=str(n)):
                    return StaleLink(n)
        key = key_of(action)
        return Refused(explain(error), refusal_hint(key, error, account_number))
    return NotSent(str(error), stop_pass=streak + 1 >= MAX_CONSECUTIVE_TRANSIENT)


def refusal_hint(key: str, exc: ApiError, account_number: str = "") -> str:
    """What to do about a Fortnox refusal. Some codes are about Fortnox's settings or the
    configuration, not the record: editing it in Lime Go would not help."""
    retry = f"then run `limefort retry {key}`"
    code = _int_code(exc.code)
    if code == ACCOUNT_NOT_FOUND:
        if account_number.strip():
            return (
                f"check that account {account_number.strip()} ([sync] "
                f"account_number) exists in Fortnox's chart of accounts, {retry}"
            )
        return (
            "the row has no sales account and the Fortnox company has no default one: set "
            f"[sync] account_number or article_number, or a default sales account in "
            f"Fortnox, {retry}"
        )
    if code in SETTING_CODES:
        return f"fix the Fortnox setting or limefort configuration the reason names, {retry}"
    return f"fix the record in Lime Go (the next pass retries it) or run `limefort retry {key}`"


# --- pending intents --------------------------------------------------------------------------


def settled(outcome: str | None, since: datetime | None, now: datetime, timeout: float) -> bool:
    """Could a POST behind an intent still be running at Fortnox? A lost answer (reset, 5xx)
    or a certain refusal means Fortnox finished; otherwise (a timeout, or our process died
    mid-request) wait until twice the request timeout has passed before believing a search
    that finds nothing."""
    if outcome in ("lost", "not_sent"):
        return True
    if since is None:
        return True
    return (now - since).total_seconds() >= 2 * timeout


# --- dry-run output ---------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None:
        return "(empty)"
    s = str(v)
    return repr(s) if len(s) < 70 else repr(s[:67] + "...")


def _customer_text(ref: CustomerRef) -> str:
    return f"Fortnox customer {ref}" if isinstance(ref, str) else "the customer linked above"


def describe(action: Action) -> list[str]:
    """A readable diff of one action, for `--dry-run`."""
    w: tuple[str, ...] = ()
    match action:
        case CreateCustomer(company=c, payload=p, warnings=w):
            lines = [f"+ create customer  {c.key}  {c.name!r}"]
            lines += [f"      {k}: {_fmt(v)}" for k, v in p.items()]
        case AdoptCustomer(company=c, customer=ref, payload=p, warnings=w, by=by):
            same = p.get("OrganisationNumber") if by == "organisation number" else None
            by = "customer as its deal's document in Fortnox" if by == "document" else by
            lines = [
                f"= adopt customer   {c.key}  {c.name!r} -> {_customer_text(ref)} (same {by}"
                + (f" {same})" if same else ")")
            ]
        case ShareCustomer(company=c, customer=ref, owner_id=oid, owner_name=oname, orgnr=o):
            return [
                f"= share customer   {c.key}  {c.name!r} -> {_customer_text(ref)} (same "
                f"organisation number {o} as company:{oid} {oname!r}; its fields are not sent)"
            ]
        case UpdateCustomer(company=c, customer_number=n, changes=ch, warnings=w):
            lines = [f"~ update customer  {c.key}  {c.name!r} (Fortnox customer {n})"]
            lines += [f"      {k}: {_fmt(old)} -> {_fmt(new)}" for k, (old, new) in ch.items()]
        case CreateDocument(deal=d, kind=k, payload=p, company=c, warnings=w):
            rows = p.get("InvoiceRows") or p.get("OrderRows") or [{}]
            price = rows[0].get("Price")
            cur = p.get("Currency", "")
            lines = [f"+ create {k:<8} {d.key}  {d.name!r} {price} {cur} for {c.key} {c.name!r}"]
            lines += [
                f"      {f}: {_fmt(v)}"
                for f, v in p.items()
                if f not in ("InvoiceRows", "OrderRows")
            ]
        case LinkDocument(deal=d, document=doc, others=others):
            extra = f" (and {', '.join(others)} with the same key)" if others else ""
            cancelled = " (cancelled in Fortnox)" if doc.cancelled else ""
            return [
                f"= link {doc.kind:<10} {d.key}  {d.name!r} -> Fortnox {doc.kind} "
                f"{doc.document_number}{cancelled}{extra}: Fortnox already has it"
            ]
        case SkipHistorical(deal=d):
            return [
                f"  skip            {d.key}  {d.name!r}: won before sync.start (backfill can add it)"
            ]
        case Quarantine(key=key, name=name, reason=reason, hint=hint):
            return [f"! quarantine      {key}  {name!r}: {reason} ({hint})"]
        case Release(key=key, why=why):
            return [f"  release         {key}: {why}"]
        case Defer(key=key, why=why):
            return [f"  wait            {key}: {why}"]
        case RecordDrift(deal=d, document=doc, changes=ch, why=why):
            tail = f" (not updated: {why})" if why else ""
            return [f"! drift           {d.key}  {d.name!r}: {doc} {drift_text(ch)}{tail}"]
        case ClearDrift(key=key, why=why):
            return [f"  clear drift     {key}: {why}"]
        case UpdateDocument(deal=d, kind=k, document_number=n, changes=ch):
            return [f"~ update {k:<8} {d.key}  {d.name!r} (Fortnox {k} {n}): {drift_text(ch)}"]
    if isinstance(action, AdoptCustomer) and action.notice:
        lines.append(f"      warning: {action.notice}")
    if isinstance(action, CreateDocument):
        lines += [f"      warning: {x}" for x in action.lost]
    return lines + [f"      warning: {x}" for x in w]


# --- drift (DESIGN rule 12) -------------------------------------------------------------------

DRIFT_KINDS = ("value", "currency", "company", "name", "lost", "reopened")
ON_DEAL_CHANGE = ("warn", "update-unbooked")
# What `update-unbooked` may change on a document: the row's price and description, the customer.
UPDATABLE = frozenset({"value", "name", "company"})


def deal_currency(deal: Deal) -> str | None:
    """The deal's currency as a document's baseline keeps it (ISO codes compare upper-case)."""
    raw = deal.attributes.get("currency")
    return str(raw).strip().upper() or None if raw is not None else None


def _amount_text(raw: Any) -> str | None:
    return None if raw is None or raw == "" else str(raw)


def _same_amount(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    try:
        return Decimal(a) == Decimal(b)
    except InvalidOperation:
        return a == b


def drift_of(
    deal: Deal, intent: DocumentIntent, *, won: frozenset[str], lost: frozenset[str]
) -> dict[str, Change]:
    """How a deal differs from what its document was made from (empty: in line). A baseline
    not recorded (a document made before limefort kept it) is not compared."""
    changes: dict[str, Change] = {}
    if deal.stage_id not in won:
        if deal.stage_id in lost:
            changes["lost"] = ("won", "lost")
        else:
            changes["reopened"] = ("won", "open")
    value = _amount_text(deal.attributes.get("value"))
    if intent.value is not None and not _same_amount(intent.value, value):
        changes["value"] = (intent.value, value)
    currency = deal_currency(deal)
    if intent.currency is not None and currency != intent.currency:
        changes["currency"] = (intent.currency, currency)
    if intent.company_id is not None and deal.company_id != intent.company_id:
        new = f"company:{deal.company_id}" if deal.company_id else None
        changes["company"] = (f"company:{intent.company_id}", new)
    if intent.name is not None and deal.name != intent.name:
        changes["name"] = (intent.name, deal.name)
    return changes


def drift_text(changes: Mapping[str, Change]) -> str:
    """`value 2000.00 -> 2500.00; lost (was won)`: a drift for a person."""
    parts = []
    for kind in sorted(changes, key=lambda k: DRIFT_KINDS.index(k) if k in DRIFT_KINDS else 99):
        old, new = changes[kind]
        if kind in ("lost", "reopened"):
            parts.append(f"{kind} (was won, now {new})")
        elif kind == "name":
            parts.append(f"{kind} {_fmt(old)} -> {_fmt(new)}")
        else:  # amounts, currency codes and keys read best bare
            parts.append(f"{kind} {old or '(empty)'} -> {new or '(empty)'}")
    return "; ".join(parts)


def why_not_update(
    changes: Mapping[str, Change],
    ledger_doc: LedgerDocument | None,
    new_customer: CustomerLink | None,
) -> str | None:
    """Why `update-unbooked` leaves this document as it is (None: it may be updated)."""
    if "lost" in changes or "reopened" in changes:
        return (
            "the deal is no longer won; crediting or cancelling the document is a person's decision"
        )
    if "currency" in changes:
        return "limefort never changes a document's currency"
    if ledger_doc is None:
        return "the document is not in Fortnox's document index"
    if ledger_doc.cancelled:
        return "the document is cancelled in Fortnox"
    if ledger_doc.booked:
        return "the document is booked in Fortnox"
    if ledger_doc.sent:
        return "the document has been sent"
    if "company" in changes and (new_customer is None or not new_customer.done):
        return "the deal's new company is not in Fortnox yet"
    return None


def drift_action(
    deal: Deal,
    intent: DocumentIntent,
    entry: DriftEntry | None,
    rules: Rules,
    *,
    ledger_doc: LedgerDocument | None = None,
    new_customer: CustomerLink | None = None,
    company: Company | None = None,
) -> Action | None:
    """One deal whose document exists (intent done), read again because it changed."""
    if intent.state != "done" or not intent.document_number:
        return None
    changes = drift_of(deal, intent, won=rules.won, lost=rules.lost)
    if not changes:
        return ClearDrift(deal.key) if entry is not None else None
    document = f"{intent.kind}:{intent.document_number}"
    why = ""
    if rules.on_deal_change == "update-unbooked":
        reason = why_not_update(changes, ledger_doc, new_customer)
        update: Action | str = (
            reason
            if reason is not None
            else _update_of(deal, intent, changes, rules, new_customer, company)
        )
        if not isinstance(update, str):
            return update
        why = update
    if entry is not None and dict(entry.changes) == changes:
        return None  # already named (and perhaps acknowledged): nothing new
    return RecordDrift(deal, document, changes, why)


def _update_of(
    deal: Deal,
    intent: DocumentIntent,
    changes: Mapping[str, Change],
    rules: Rules,
    new_customer: CustomerLink | None,
    company: Company | None,
) -> UpdateDocument | str:
    """The PUT that makes the document follow its deal, or why there is none. The row is made
    exactly as when the document was created (the mapping's row), so PUT replaces it whole."""
    kind: DocumentKind = "order" if intent.kind == "order" else "invoice"
    holder = company or Company(deal.company_id or "", {}, deal.updated_at)
    result = map_deal(
        DealContext(deal=deal, company=holder, contact=None, owner=None, field_defs={}),
        kind,
        {},
        article_number=rules.article_number,
        account_number=rules.account_number,
        require_positive_value=rules.require_positive_value,
    )
    if isinstance(result, Rejected):
        return result.reason
    rows = "OrderRows" if kind == "order" else "InvoiceRows"
    fields: dict[str, Any] = {rows: result.payload[rows]}
    number = None
    if "company" in changes:
        assert new_customer is not None and new_customer.customer_number is not None
        number = new_customer.customer_number
        fields["CustomerNumber"] = number
    return UpdateDocument(deal, kind, str(intent.document_number), fields, changes, number)


def plan_drift(snap: Snapshot, rules: Rules) -> list[Action]:
    """The deals of a page whose document exists: drift named, cleared, or (update-unbooked)
    the document updated. Deals are read again only when they changed (the cursor), which is
    exactly when drift can appear."""
    out: list[Action] = []
    for deal in snap.deals:
        intent = snap.intents.get(deal.id)
        if intent is None or intent.state != "done":
            continue
        docs = snap.ledger.get(document_ref(deal.id), ())
        mine = next((d for d in docs if d.document_number == intent.document_number), None)
        act = drift_action(
            deal,
            intent,
            snap.drift.get(deal.key),
            rules,
            ledger_doc=mine,
            new_customer=snap.links.get(deal.company_id or ""),
            company=snap.related.get(deal.company_id or ""),
        )
        if act is not None:
            out.append(act)
    return out


def update_refused(action: UpdateDocument, document: Mapping[str, Any] | None) -> str | None:
    """The check in Fortnox right before the PUT (its index may be minutes old): why the
    document must not be updated after all (None: go ahead)."""
    if document is None:
        return "the document no longer exists in Fortnox"
    if document.get("ExternalInvoiceReference1") != document_ref(action.deal.id):
        return "the document no longer carries the deal's key"
    for flag, why in (
        ("Cancelled", "the document is cancelled in Fortnox"),
        ("Booked", "the document is booked in Fortnox"),
        ("Sent", "the document has been sent"),
    ):
        if document.get(flag) in (True, "true", "True", 1):
            return why
    rows = document.get("OrderRows" if action.kind == "order" else "InvoiceRows")
    if isinstance(rows, list) and len(rows) != 1:
        return f"the document has {len(rows)} rows (changed in Fortnox): limefort replaces only its own one row"
    return None


def after_update_failure(
    action: UpdateDocument, error: ServiceError, *, streak: int = 0
) -> Outcome:
    """A PUT of the same fields is harmless to repeat: anything but a refusal is tried again
    next pass (the deal's cursor is held); a refusal names the drift instead."""
    if isinstance(error, ApiError) and not isinstance(error, UnknownOutcome):
        return DriftInstead(
            RecordDrift(
                action.deal, action.document, action.changes, f"Fortnox refused: {explain(error)}"
            )
        )
    return NotSent(str(error), stop_pass=streak + 1 >= MAX_CONSECUTIVE_TRANSIENT)


# --- real-world data (issue 13): rules for what a year of use throws at the sync --------------


def shared_link_moved(link: CustomerLink, orgnr: str | None) -> bool:
    """A shared link whose company now has another valid organisation number: it is no longer
    the same legal entity, so it is linked afresh by the new number."""
    return bool(link.shared_with and orgnr and orgnr != link.orgnr)


def _company_name(snap: Snapshot, company_id: str) -> str:
    for c in (*snap.companies, *snap.related.values()):
        if c.id == company_id:
            return c.name or ""
    return ""


def real_world_rules(
    snap: Snapshot, company: Company, rules: Rules, link: CustomerLink | None, act: Action | None
) -> Action | None:
    """What the planner's first answer for a company becomes once Fortnox's customers and the
    data's quality are taken into account (rules 4 and 11)."""
    if isinstance(act, AdoptCustomer) and act.by == "organisation number":
        orgnr = act.payload.get("OrganisationNumber") or ""
        matches = list(snap.by_orgnr.get(orgnr, ()))
        act = adopt_or_share(company, orgnr, act, matches, snap.inactive, snap.claimed)
    if isinstance(act, UpdateCustomer) and link is not None:
        collision = orgnr_collision(company, link, act, snap)
        if collision is not None:
            return collision
    if isinstance(act, CreateCustomer | AdoptCustomer | UpdateCustomer):
        held = held_back(company, act.payload, link, rules.customer_map)
        if held is not None:
            reason, hint = held
            return Quarantine(company.key, company.name, reason, hint, source_hash(company))
    return act


def orgnr_collision(
    company: Company, link: CustomerLink, act: UpdateCustomer, snap: Snapshot
) -> Quarantine | None:
    """A corrected organisation number that another Fortnox customer already holds (linked to
    another company, or there before limefort): sending it would give two customers one legal
    entity (rule 11). The change is held back, naming both companies and the customer."""
    new = orgnr_moved(link, Mapped(act.payload, ()))
    if not new:
        return None
    others = [n for n in snap.by_orgnr.get(new, ()) if n != link.customer_number]
    if not others:
        return None
    number = others[0]
    owner = snap.claimed.get(number)
    held_by = (
        f"company:{owner[0]} ({quote(owner[1])}), linked to Fortnox customer {number}"
        if owner is not None
        else f"Fortnox customer {number}, which no Lime Go company is linked to"
    )
    return Quarantine(
        company.key,
        company.name,
        f"organisation number changed to {new}, which {held_by} already holds; "
        f"{company.key} ({quote(company.name or '')}) is Fortnox customer "
        f"{link.customer_number}: sending it would make two customers of one legal entity",
        "check which company really has this organisation number in Lime Go and correct the "
        "other; if both are one legal entity, merge them in Lime Go. Nothing is sent until then",
        source_hash(company),
    )


def adopt_or_share(
    company: Company,
    orgnr: str,
    act: AdoptCustomer,
    matches: Sequence[str],
    inactive: Iterable[str],
    claimed: Mapping[str, tuple[str, str]],
) -> Action:
    """Which of Fortnox's customers with this organisation number the company becomes:
    - one another linked company owns: shared with it (one legal entity, one customer);
    - else the one active customer; several active ones: ambiguous, quarantined;
    - only inactive ones: the first, adopted, and the record says so."""
    if not matches:
        return act
    for number in matches:
        owner = claimed.get(number)
        if owner is not None and owner[0] != company.id:
            return ShareCustomer(company, number, owner[0], owner[1], orgnr, act.payload)
    off = set(inactive)
    active = [m for m in matches if m not in off]
    if len(active) > 1:
        return Quarantine(
            company.key,
            company.name,
            f"Fortnox has {len(active)} active customers with organisation number {orgnr} "
            f"(customer numbers {', '.join(active)}): limefort cannot tell which one it is",
            f"make all but one of them inactive in Fortnox, then run `limefort retry {company.key}`",
            source_hash(company),
        )
    if active:
        return replace(act, customer=active[0])
    number = matches[0]
    return replace(
        act,
        customer=number,
        notice=(
            f"linked to inactive Fortnox customer {number}: no active Fortnox customer has "
            f"organisation number {orgnr}"
        ),
    )


def letters(text: str) -> int:
    return sum(1 for ch in text if ch.isalpha())


def name_gutted(raw: str | None, cleaned: str | None) -> bool:
    """A cleaned name that keeps fewer than half of the original's letters is not a name
    (a Hebrew name cleaned to " AB")."""
    if not raw:
        return False
    before = letters(raw)
    return before > 0 and letters(cleaned or "") * 2 < before


def erased_identifier(raw: str | None, new: str | None, stored: str | None) -> str | None:
    """Why sending would erase a valid organisation number Fortnox holds (None: it would not):
    Lime Go has a value, cleaning refused it, and the customer has a valid one."""
    if new or not raw or not stored:
        return None
    checked = normalise_orgnr(raw)
    if not isinstance(checked, Invalid):
        return None  # cleaning accepts it: not an erasure (the mapping left it out otherwise)
    return f"{checked.reason}; Fortnox keeps {stored}"


def held_back(
    company: Company,
    payload: Mapping[str, Any],
    link: CustomerLink | None,
    customer_map: Mapping[str, str],
) -> tuple[str, str] | None:
    """Bad data never erases good data (DESIGN rule 11): (reason, hint) when this company's
    change must be held back instead of sent, naming both values."""
    raw_name = source_text(company, customer_map, "Name")
    name = payload.get("Name")
    if name_gutted(raw_name, name):
        return (
            f"company name {quote(raw_name or '')} would reach Fortnox as {quote(name or '')}: "
            "cleaning keeps fewer than half of its letters, which is not a name",
            "give the company a name Fortnox can store (Latin letters) in Lime Go; "
            "nothing is sent until then",
        )
    if link is not None and link.done and "OrganisationNumber" in customer_map:
        erased = erased_identifier(
            source_text(company, customer_map, "OrganisationNumber"),
            payload.get("OrganisationNumber"),
            link.orgnr,
        )
        if erased is not None:
            return (
                f"{erased} (Fortnox customer {link.customer_number})",
                "correct the organisation number (business_id) in Lime Go; nothing is sent "
                "until then",
            )
    return None


def won_at_note(first_pass: bool, start_is_now: bool, wins: Sequence[Deal]) -> list[str]:
    """What a first pass's dry run says about deals it would invoice when `sync.start` is a
    past date: Lime Go has no won-at time, so a deal won long ago but edited since counts."""
    if not first_pass or start_is_now or not wins:
        return []
    n = len(wins)
    lines = [
        f"{n} won deal{'s' if n != 1 else ''} last changed after start will become documents; "
        "Lime Go records no time of winning (review them before the first real pass):"
    ]
    lines += [
        f"  {d.key}  {d.name!r} last changed {d.updated_at.isoformat(timespec='seconds')}"
        for d in wins
    ]
    return lines


# --- one writer per tenant (DESIGN rule 14) ------------------------------------------------------

# After the first writes of a pass (as many as are in flight at once) and then every this many
# writes, the pass reads Fortnox's changes again to see whether another installation writes too.
WRITER_CHECK_EVERY = 50


def writer_check_due(written: int, first_group: int) -> bool:
    """Whether the write about to go (`written` went before it in this pass) needs a look at
    Fortnox first: before the first, after the first group (two installations started at one
    instant see each other's first documents there), then every WRITER_CHECK_EVERY."""
    if written in (0, first_group):
        return True
    return written > first_group and (written - first_group) % WRITER_CHECK_EVERY == 0


@dataclass(frozen=True)
class OtherWriter:
    installation: str
    last: datetime  # its latest stamp, on Fortnox's clock
    document: str  # e.g. "invoice 123"
    key: str  # the document's key, limego:deal:<id> (or "" when it has none)


def other_writers(
    stamps: Iterable[tuple[str, str, str, str]], me: str, since: datetime
) -> list[OtherWriter]:
    """Installations other than `me` whose stamps (kind, stamp, number, key) on Fortnox's
    documents are as recent as `since` (the lease window, or a hand-over, whichever is later),
    the latest stamp of each. Older stamps are history: a retired machine's invoices."""
    latest: dict[str, OtherWriter] = {}
    for kind, text, number, key in stamps:
        parsed = parse_stamp(text)
        if parsed is None:
            continue
        who, when = parsed
        if who == me or when < since:
            continue
        seen = latest.get(who)
        if seen is None or when > seen.last:
            latest[who] = OtherWriter(who, when, f"{kind} {number}", key)
    return sorted(latest.values(), key=lambda w: (w.last, w.installation), reverse=True)


def other_writer_text(w: OtherWriter, now: datetime, *, wrote: bool) -> str:
    """One line: who, when, what, and what to do."""
    minutes = max(0, int((now - w.last).total_seconds() // 60))
    ago = "less than a minute ago" if minutes == 0 else f"{minutes} min ago"
    where = f" ({w.document}" + (f", {w.key}" if w.key else "") + ")"
    return (
        f"another limefort installation ({w.installation}) wrote to this Fortnox tenant {ago}"
        f"{where}; this pass stopped before its {'next' if wrote else 'first'} write. Two "
        "installations on one tenant make invoices twice: stop the other one (its "
        "`limefort status` shows its installation id); if it is retired or this one replaces "
        "it on purpose, run `limefort sync --take-over`"
    )


@dataclass(frozen=True)
class Duplicate:
    key: str  # deal:<id> or company:<id>
    members: tuple[str, ...]  # "invoice 12", ... or customer numbers
    what: str  # "documents" | "customers"
    acknowledged: bool

    @property
    def text(self) -> str:
        if self.what == "documents":
            held = f"{len(self.members)} documents for it ({', '.join(self.members)})"
        else:
            held = (
                f"{len(self.members)} customers of its organisation number "
                f"({', '.join(self.members)})"
            )
        return (
            f"duplicate: Fortnox holds {held}; cancel the extra one in Fortnox, or run "
            f"`limefort ack {self.key}` once a person has dealt with it"
        )


def duplicates(
    documents: Mapping[str, Sequence[LedgerDocument]],
    customers: Mapping[str, Sequence[str]],
    acks: Mapping[str, str],
) -> list[Duplicate]:
    """Every duplicate Fortnox holds for limefort's records, each marked acknowledged when a
    person acknowledged exactly these members (a third document is named again)."""
    out: list[Duplicate] = []
    for ref, docs in sorted(documents.items()):
        did = deal_id_of_ref(ref)
        if did is None or len(docs) < 2:
            continue
        members = tuple(f"{d.kind} {d.document_number}" for d in docs)
        key = f"deal:{did}"
        out.append(Duplicate(key, members, "documents", acks.get(key) == ",".join(members)))
    for key, numbers in sorted(customers.items()):
        if len(numbers) < 2:
            continue
        members = tuple(numbers)
        out.append(Duplicate(key, members, "customers", acks.get(key) == ",".join(members)))
    return out


def own_duplicates(
    documents: Mapping[str, Sequence[LedgerDocument]],
    customers: Mapping[str, Sequence[str]],
    wrote: Iterable[str],
) -> list[tuple[str, str]]:
    """(key, text) for each duplicate Fortnox now holds among the records this pass wrote:
    two live documents for one of its deals, two customers for one of its companies. Made at
    the same instant as another writer's (nothing else makes them), so named whether or not a
    person acknowledged an earlier pair."""
    mine = set(wrote)
    return [(d.key, d.text) for d in duplicates(documents, customers, {}) if d.key in mine]
