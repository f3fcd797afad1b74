"""What a year of use throws at the sync: two companies with one organisation number, names
gutted by cleaning, identifiers erased in Lime Go, numbers held by another customer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from limefort.core.models import (
    Company,
    CustomerLink,
    Deal,
)
from limefort.mapping import (
    Mapped,
    Rejected,
    source_text,
)
from limefort.mapping.normalise import Invalid, normalise_orgnr, orgnr_key, quote
from limefort.plan.actions import (
    Action,
    AdoptCustomer,
    CreateCustomer,
    Quarantine,
    ShareCustomer,
    UpdateCustomer,
)
from limefort.plan.snapshot import Rules, Snapshot, source_hash


def shared_link_moved(link: CustomerLink, orgnr: str | None) -> bool:
    """A shared link whose company now has another valid organisation number: it is no longer
    the same legal entity, so it is linked afresh by the new number."""
    return bool(link.shared_with and orgnr and orgnr != link.orgnr)


def _company_name(snap: Snapshot, company_id: str) -> str:
    for c in (*snap.companies, *snap.related.values()):
        if c.id == company_id:
            return c.name or ""
    return ""


def orgnr_of(result: Mapped | Rejected) -> str | None:
    return result.payload.get("OrganisationNumber") if isinstance(result, Mapped) else None


def orgnr_moved(link: CustomerLink, result: Mapped | Rejected) -> str | None:
    """The new organisation number of a linked company whose number changed in Lime Go
    (compared folded: a new format of the same number is no change of entity)."""
    new = orgnr_of(result)
    if not new or orgnr_key(new) == orgnr_key(link.orgnr):
        return None
    return new


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
