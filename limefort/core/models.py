"""Plain data passed between the layers. No I/O, no behaviour beyond small derived properties.

Lime Go records keep their JSON:API `attributes` as a dict so the mapping (which is data, and
overridable in the config) can address any attribute by name, including `custom_fields.<key>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from limefort.core.keys import company_key, deal_key

DocumentKind = Literal["invoice", "order"]


def _text(value: Any) -> str | None:
    """An attribute that should be text, as a label for messages and the store: what is not a
    string (a list, an object, a number sent for a name) is None here; the mapping turns the
    real value into text, or quarantines the record with its reason."""
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Company:
    id: str
    attributes: Mapping[str, Any]
    updated_at: datetime  # timezone-aware UTC

    @property
    def name(self) -> str | None:
        return _text(self.attributes.get("name"))

    @property
    def status(self) -> str | None:
        return _text(self.attributes.get("status"))

    @property
    def business_id(self) -> str | None:
        return _text(self.attributes.get("business_id"))

    @property
    def key(self) -> str:
        return company_key(self.id)


@dataclass(frozen=True)
class Deal:
    id: str
    attributes: Mapping[str, Any]
    updated_at: datetime
    company_id: str | None
    stage_id: str | None
    contact_ids: tuple[str, ...] = ()
    owner_ids: tuple[str, ...] = ()

    @property
    def name(self) -> str | None:
        return _text(self.attributes.get("name"))

    @property
    def value(self) -> Decimal | None:
        """Lime Go sends the value as a decimal string: parse to Decimal, never float."""
        raw = self.attributes.get("value")
        if raw is None or raw == "":
            return None
        return Decimal(str(raw))

    @property
    def key(self) -> str:
        return deal_key(self.id)


@dataclass(frozen=True)
class Stage:
    id: str
    name: str
    category: str | None


@dataclass(frozen=True)
class Person:
    """A Lime Go owner (user) or contact: all the mapping needs is a name and an email."""

    id: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p).strip()


@dataclass(frozen=True)
class CustomFieldDef:
    key: str
    label: str
    entity_type: str  # "company" | "deal" | ...
    field_type: str | None = None


@dataclass(frozen=True)
class DealPage:
    """One page of deals with the to-one relationships Lime Go included beside it."""

    deals: list[Deal]
    companies: dict[str, Company]  # included companies by id


@dataclass(frozen=True)
class TokenRecord:
    """OAuth tokens as the store keeps them. Times are epoch seconds."""

    access_token: str | None = None
    expires_at: float = 0.0
    refresh_token: str | None = None
    refresh_issued_at: float | None = None
    scope: str | None = None
    tenant_id: str | None = None
    # When this process obtained it (None for a token read from the store): with it, how long
    # the token lives is known, and the refresh margin can fit a short-lived one. Not stored.
    obtained_at: float | None = field(default=None, compare=False)

    def fresh(self, now: float, margin: float) -> bool:
        """An access token that is still good for `margin` seconds. A token that lives less
        than twice the margin (`expires_in: 30`) is refreshed halfway through its life, not
        at once: otherwise every request would fetch a new one."""
        if not self.access_token:
            return False
        if self.obtained_at is not None:
            margin = min(margin, (self.expires_at - self.obtained_at) / 2)
        return self.expires_at - margin > now


# --- what the store holds (typed rows: the store returns these, never dicts) --------------


@dataclass(frozen=True)
class CustomerLink:
    """A Lime Go company and its Fortnox customer. `pending`: a POST was (or is about to be)
    sent and its outcome is unknown; `done`: linked to `customer_number`."""

    company_id: str
    state: str
    customer_number: str | None
    orgnr: str | None
    name: str
    payload: str | None  # JSON of the payload last sent (Decimal-exact)
    hash: str | None
    intent_at: datetime | None
    outcome: str | None  # None while a POST may be in flight; "lost" | "not_sent" once known
    # A second Lime Go company with the organisation number of one already linked: the id of
    # the company that owns the Fortnox customer's fields (this one's are never sent).
    shared_with: str | None = None

    @property
    def done(self) -> bool:
        return self.state == "done"


@dataclass(frozen=True)
class DocumentIntent:
    """A won deal's document: `pending` (intent recorded, outcome unknown), `done` or
    `skipped` (won before sync.start; only `backfill` makes one)."""

    deal_id: str
    kind: str
    state: str
    idem_key: str | None
    document_number: str | None
    customer_number: str | None
    company_id: str | None
    name: str | None
    value: str | None
    won_at: str | None
    since: datetime | None
    outcome: str | None
    currency: str | None = None  # the deal's currency when the document was made (004_drift)


@dataclass(frozen=True)
class QuarantineEntry:
    key: str
    name: str | None
    reason: str
    hint: str
    attempts: int
    source_hash: str | None
    first_seen: str
    last_seen: str
    waits_for: str | None


@dataclass(frozen=True)
class LedgerDocument:
    """An invoice or order as Fortnox's list shows it."""

    kind: str
    document_number: str
    ext_ref: str | None
    customer_number: str | None
    cancelled: bool
    booked: bool
    sent: bool
    total: str | None


@dataclass(frozen=True)
class DriftEntry:
    """A deal that changed in Lime Go after its document was made (DESIGN rule 12).
    `changes`: field -> (as the document was made, as Lime Go has it now)."""

    key: str  # deal:<id>
    document: str  # invoice:<DocumentNumber>
    changes: Mapping[str, tuple[str | None, str | None]]
    since: str
    acked_at: str | None

    @property
    def acked(self) -> bool:
        return self.acked_at is not None


@dataclass(frozen=True)
class RecordWarning:
    """Something a person should know about a record that is in Fortnox (shown by `status`)."""

    key: str
    kind: str
    text: str
    since: str
    # A value Fortnox got other than Lime Go holds it (rule 15, kind "field:<Field>"): which
    # field, what Lime Go holds and what Fortnox got (None: nothing). None for other kinds.
    field: str | None = None
    held: str | None = None
    sent: str | None = None
