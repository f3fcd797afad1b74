"""Companies: which are in scope, how each maps, and whether it is created, adopted, updated,
shared or held back."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from limefort.core.keys import customer_ref
from limefort.core.models import (
    Company,
    CustomerLink,
    QuarantineEntry,
)
from limefort.mapping import (
    Mapped,
    Rejected,
    changed_fields,
    from_json,
    map_company,
    payload_hash,
)
from limefort.plan.actions import (
    Action,
    AdoptCustomer,
    CreateCustomer,
    CustomerOf,
    Quarantine,
    Release,
    ShareCustomer,
    UpdateCustomer,
)
from limefort.plan.realworld import (
    _company_name,
    orgnr_moved,
    orgnr_of,
    real_world_rules,
    shared_link_moved,
)
from limefort.plan.snapshot import Rules, Snapshot, source_hash


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


def _live_link(snap: Snapshot, company: Company) -> CustomerLink | None:
    """The company's link, unless it is a pending one Fortnox certainly never got."""
    link = snap.links.get(company.id)
    if link is not None and link.state == "pending" and company.key in snap.resend:
        return None
    return link


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
