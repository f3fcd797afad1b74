"""The dry run's words: each action as the lines `sync --dry-run` prints."""

from __future__ import annotations

from limefort.plan.actions import (
    Action,
    AdoptCustomer,
    ClearDrift,
    CreateCustomer,
    CreateDocument,
    CustomerRef,
    Defer,
    LinkDocument,
    Quarantine,
    RecordDrift,
    Release,
    ShareCustomer,
    SkipHistorical,
    UpdateCustomer,
    UpdateDocument,
)
from limefort.plan.drift import _fmt, drift_text


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
