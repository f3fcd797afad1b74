"""Decide, then do (after vdirsyncer): turn Lime Go records plus stored state into actions.

Everything here is pure: the caller passes in what the store and Fortnox's customer index
know, and gets back a list of actions. `sync` executes them; a dry run only prints them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from limefort.cursor import is_new_win
from limefort.mapping import Mapped, Rejected, changed_fields, from_json, payload_hash
from limefort.models import Company, Deal, DocumentKind, Stage


@dataclass(frozen=True)
class CreateCustomer:
    company: Company
    payload: dict[str, Any]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdoptCustomer:
    """Fortnox already has a customer with this organisation number: link it, send our fields."""

    company: Company
    customer_number: str
    payload: dict[str, Any]
    warnings: tuple[str, ...] = ()


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
    payload: dict[str, Any]  # without CustomerNumber: known only once the customer exists
    company: Company
    warnings: tuple[str, ...] = ()


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


@dataclass(frozen=True)
class Release:
    """A quarantined record that is now in line with Fortnox without a request."""

    key: str


Action = (
    CreateCustomer
    | AdoptCustomer
    | UpdateCustomer
    | CreateDocument
    | SkipHistorical
    | Quarantine
    | Release
)


def source_hash(*records: Company | Deal | None) -> str:
    """What a quarantined record is compared with: a change in Lime Go retries it."""
    return payload_hash(
        {str(i): dict(r.attributes) if r is not None else None for i, r in enumerate(records)}
    )


# --- companies --------------------------------------------------------------------------------


def company_in_scope(
    company: Company, statuses: Iterable[str], state: Mapping[str, Any] | None
) -> bool:
    """A customer by status, or one limefort already put in Fortnox (its changes still flow)."""
    return state is not None or (company.status or "") in set(statuses)


def plan_company(
    company: Company,
    result: Mapped | Rejected,
    *,
    state: Mapping[str, Any] | None,
    quarantined: Mapping[str, Any] | None,
    index_matches: Sequence[str] = (),
    force: bool = False,
) -> Action | None:
    """One company, already mapped. `state` is its `customers` row, `quarantined` its
    quarantine row, `index_matches` the Fortnox customers with its organisation number."""
    if state is not None and state["state"] == "pending":
        return None  # an unknown outcome: reconciliation owns it, never a second POST
    # The source hash only matters for a quarantined or rejected company: not hashed otherwise
    # (a `--since` pass re-reads every company, nearly all of them in neither state).
    if (
        quarantined is not None
        and not force
        and quarantined.get("source_hash") == source_hash(company)
    ):
        return None  # nothing changed in Lime Go since it was quarantined
    if isinstance(result, Rejected):
        return Quarantine(
            company.key, company.name, result.reason, result.hint, source_hash(company)
        )
    payload = result.payload
    if state is None:
        if index_matches:
            return AdoptCustomer(company, index_matches[0], payload, result.warnings)
        return CreateCustomer(company, payload, result.warnings)
    if payload_hash(payload) == state["hash"]:
        return Release(company.key) if quarantined is not None else None
    changes = changed_fields(from_json(state["payload"]) if state["payload"] else {}, payload)
    return UpdateCustomer(company, state["customer_number"], payload, changes, result.warnings)


# --- deals ------------------------------------------------------------------------------------


def won_stage_ids(
    stages: Mapping[str, Stage], categories: Iterable[str], names: Iterable[str]
) -> set[str]:
    cats = {c.casefold() for c in categories}
    wanted = {n.casefold() for n in names}
    return {
        s.id
        for s in stages.values()
        if (s.category or "").casefold() in cats or s.name.casefold() in wanted
    }


@dataclass
class DealTriage:
    """Which deals of a page need a document, and which were won before `sync.start`."""

    wins: list[Deal] = field(default_factory=list)
    historical: list[Deal] = field(default_factory=list)


def triage_deals(
    deals: Iterable[Deal],
    *,
    documents: Mapping[str, Mapping[str, Any]],
    won: set[str],
    start: datetime,
    quarantined: Mapping[str, Mapping[str, Any]],
    companies: Mapping[str, Company],
    force: bool = False,
    window: tuple[datetime, datetime] | None = None,
) -> DealTriage:
    """`window` is a backfill's [from, to]: historical (skipped) deals in it become wins."""
    out = DealTriage()
    for deal in deals:
        if deal.stage_id not in won:
            continue
        row = documents.get(deal.id)
        if window is not None:
            if (row is None or row["state"] == "skipped") and (
                window[0] <= deal.updated_at <= window[1]
            ):
                out.wins.append(deal)
            continue
        if row is not None:
            continue  # done, pending (reconciliation owns it) or skipped as historical
        q = quarantined.get(deal.key)
        company = companies.get(deal.company_id or "")
        if q is not None and not force and q.get("source_hash") == source_hash(deal, company):
            continue
        if is_new_win(deal.updated_at, start):
            out.wins.append(deal)
        else:
            out.historical.append(deal)
    return out


def plan_document(
    deal: Deal,
    result: Mapped | Rejected,
    *,
    kind: DocumentKind,
    company: Company | None,
) -> Action:
    if isinstance(result, Rejected):
        return Quarantine(
            deal.key, deal.name, result.reason, result.hint, source_hash(deal, company)
        )
    if company is None:  # mapping rejects deals without a company; this is the belt
        return Quarantine(
            deal.key,
            deal.name,
            "the deal's company could not be read from Lime Go",
            "check that the company still exists in Lime Go, then run `limefort retry`",
            source_hash(deal, company),
        )
    return CreateDocument(deal, kind, result.payload, company, result.warnings)


# --- dry-run output ---------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None:
        return "(empty)"
    s = str(v)
    return repr(s) if len(s) < 70 else repr(s[:67] + "...")


def describe(action: Action) -> list[str]:
    """A readable diff of one action, for `--dry-run`."""
    match action:
        case CreateCustomer(company=c, payload=p, warnings=w):
            lines = [f"+ create customer  {c.key}  {c.name!r}"]
            lines += [f"      {k}: {_fmt(v)}" for k, v in p.items()]
        case AdoptCustomer(company=c, customer_number=n, payload=p, warnings=w):
            lines = [
                f"= adopt customer   {c.key}  {c.name!r} -> Fortnox customer {n} "
                f"(same organisation number {p.get('OrganisationNumber')})"
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
        case SkipHistorical(deal=d):
            return [
                f"  skip            {d.key}  {d.name!r}: won before sync.start (backfill can add it)"
            ]
        case Quarantine(key=key, name=name, reason=reason, hint=hint):
            return [f"! quarantine      {key}  {name!r}: {reason} ({hint})"]
        case Release(key=key):
            return [f"  release         {key}: already in line with Fortnox"]
    return lines + [f"      warning: {x}" for x in w]
