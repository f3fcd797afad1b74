"""What the planner decides: one small frozen dataclass per action, and what each writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from limefort.core.models import (
    Company,
    Deal,
    DocumentKind,
    LedgerDocument,
)


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
    """Whether the action writes to Fortnox: the writer guard looks before the first, the
    executor lands what is in flight before it, and it is the unit of a pass's progress."""
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
