"""Drift (design rule 12): what changed in Fortnox on a document limefort made, and whether
`on_deal_change` lets the pass update it or only records it."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from limefort.core.keys import document_ref
from limefort.core.models import (
    Company,
    CustomerLink,
    Deal,
    DocumentIntent,
    DocumentKind,
    DriftEntry,
    LedgerDocument,
)
from limefort.mapping import (
    DealContext,
    Rejected,
    map_deal,
)
from limefort.plan.actions import Action, Change, ClearDrift, RecordDrift, UpdateDocument
from limefort.plan.snapshot import Rules, Snapshot

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


def _fmt(v: Any) -> str:
    if v is None:
        return "(empty)"
    s = str(v)
    return repr(s) if len(s) < 70 else repr(s[:67] + "...")


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
