"""What a pass knows when it plans a page (`Snapshot`) and the settings it plans with (`Rules`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

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
from limefort.mapping import payload_hash


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
