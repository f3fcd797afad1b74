"""`limefort audit`: is what was won what was billed? Read-only on both sides.

`findings` is pure: the won deals of a window (Lime Go), the documents carrying limefort's key
(Fortnox's list, pages of 500) and what limefort recorded (the state file, read-only) in, five
lists out:
- missing: won deals with no document;
- duplicates: deals with more than one live document;
- mismatched: documents whose customer is not the deal's company's, or whose amount is not the
  deal's value (the value the document was made from, as recorded; `--deep` reads each
  document's rows from Fortnox instead);
- orphans: live documents whose deal no longer exists in Lime Go or is not won;
- cancelled: won deals whose only documents are cancelled in Fortnox.
Matching is by the exact key `limego:deal:<id>` in ExternalInvoiceReference1. The won-at time
is the one limefort recorded when it made the document, else the deal's `updated_at` (as for
`backfill`).

`run_audit` is the I/O around it; it writes nothing to Lime Go, Fortnox or the state file
(tokens aside: a rotated Fortnox refresh token must be kept, see the CLI).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from limefort.bookkeeping import payments as payments_mod
from limefort.bookkeeping.payments import Payment, payment_of
from limefort.commands.progress import NullProgress, Progress
from limefort.core.keys import deal_id_of_ref, deal_key
from limefort.core.models import Deal, DocumentKind
from limefort.state.readonly import Recorded

CATEGORIES = ("missing", "duplicates", "mismatched", "orphans", "cancelled", "unreadable")
# Documents are listed from this long before the window: an invoice date taken from the deal
# (a mapped date field) may precede the won-at proxy, which is the deal's last change.
DATE_MARGIN = timedelta(days=31)


@dataclass(frozen=True)
class Document:
    """A Fortnox document as its list shows it."""

    kind: str
    number: str
    ext_ref: str | None
    customer_number: str | None
    cancelled: bool
    date: str | None  # InvoiceDate / OrderDate, YYYY-MM-DD
    # What invoice list items say of payment (orders carry none): see limefort.bookkeeping.payments.
    booked: bool = False
    total: str | None = None
    balance: str | None = None
    due: str | None = None
    currency: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.number}"

    @property
    def deal_id(self) -> str | None:
        return deal_id_of_ref(self.ext_ref)


@dataclass(frozen=True)
class Window:
    start: datetime | None  # None: from the beginning
    end: datetime

    def holds(self, t: datetime) -> bool:
        return (self.start is None or self.start <= t) and t <= self.end


@dataclass
class Findings:
    window: Window
    won: int = 0
    documents: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    mismatched: list[dict[str, Any]] = field(default_factory=list)
    orphans: list[dict[str, Any]] = field(default_factory=list)
    cancelled: list[dict[str, Any]] = field(default_factory=list)
    # `--deep`: documents the index lists that Fortnox would not return one by one. Never part
    # of "in line": what was not read was not checked.
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    # Not findings: whether each won deal's live invoice is paid (never part of the exit code).
    payments: list[Payment] = field(default_factory=list)

    @property
    def found(self) -> int:
        return sum(len(getattr(self, c)) for c in CATEGORIES)

    def as_dict(self) -> dict[str, Any]:
        return {
            "window": {
                "from": self.window.start.isoformat() if self.window.start else None,
                "to": self.window.end.isoformat(),
            },
            "won": self.won,
            "documents": self.documents,
            **{c: getattr(self, c) for c in CATEGORIES},
        }


# --- pure -------------------------------------------------------------------------------------


def document_of(kind: str, item: Mapping[str, Any]) -> Document:
    return Document(
        kind,
        str(item.get("DocumentNumber")),
        item.get("ExternalInvoiceReference1") or None,
        str(item.get("CustomerNumber") or "") or None,
        item.get("Cancelled") in (True, "true", "True", 1),
        item.get("InvoiceDate") or item.get("OrderDate") or None,
        booked=item.get("Booked") in (True, "true", "True", 1),
        total=_text(item.get("Total")),
        balance=_text(item.get("Balance")),
        due=item.get("DueDate") or None,
        currency=item.get("Currency") or None,
    )


def won_at(deal: Deal, recorded: Recorded) -> datetime:
    row = recorded.documents.get(deal.id)
    if row is not None and row.won_at:
        try:
            return datetime.fromisoformat(row.won_at)
        except ValueError:
            pass
    return deal.updated_at


def to_look_up(
    documents: Iterable[Document],
    deals: Mapping[str, Deal],
    recorded: Recorded,
    window: Window,
) -> set[str]:
    """Deal ids behind live documents that the window's read did not return and that may
    still be in the window or gone: each is asked of Lime Go once. Without a start every deal
    was read, so none; a document dated before the window, or one limefort recorded as won
    before it, is out of the window."""
    if window.start is None:
        return set()
    first = window.start.date().isoformat()
    out: set[str] = set()
    for doc in documents:
        did = doc.deal_id
        if did is None or doc.cancelled or did in deals:
            continue
        if doc.date is not None and doc.date < first:
            continue
        row = recorded.documents.get(did)
        if row is not None and row.won_at and not _after(row.won_at, window.start):
            continue
        out.add(did)
    return out


def unknown_deals(documents: Iterable[Document], deals: Mapping[str, Deal]) -> set[str]:
    return {d.deal_id for d in documents if d.deal_id is not None and d.deal_id not in deals}


def _after(iso: str, t: datetime) -> bool:
    try:
        return datetime.fromisoformat(iso) >= t
    except ValueError:
        return True


def rows_total(document: Mapping[str, Any]) -> Decimal | None:
    """What a document's rows add up to before VAT (price × quantity, less discounts in
    percent), for `--deep`."""
    rows = document.get("InvoiceRows") or document.get("OrderRows")
    if not isinstance(rows, list):
        return None
    total = Decimal(0)
    for r in rows:
        price = payments_mod.amount(r.get("Price")) or Decimal(0)
        qty = payments_mod.amount(r.get("DeliveredQuantity")) or payments_mod.amount(
            r.get("OrderedQuantity")
        )
        line = price * (qty if qty is not None else Decimal(1))
        discount = payments_mod.amount(r.get("Discount")) or Decimal(0)
        if discount and r.get("DiscountType", "PERCENT") == "PERCENT":
            line = line * (100 - discount) / 100
        elif discount:
            line -= discount
        total += line
    return total


def findings(
    deals: Mapping[str, Deal],
    documents: Sequence[Document],
    recorded: Recorded,
    *,
    won_stages: frozenset[str],
    window: Window,
    gone: frozenset[str] = frozenset(),
    deep: Mapping[str, Mapping[str, Any]] | None = None,
    unreadable: Sequence[Document] = (),
    today: date | None = None,
) -> Findings:
    """`deals`: every deal read (the window's, and those looked up); `gone`: deal ids Lime Go
    no longer has; `deep`: the documents read one by one (by `invoice:<n>`), for `--deep`;
    `unreadable`: those `--deep` asked for and Fortnox did not return; `today`: the day in
    `sync.timezone` that decides what is overdue (default: the window's last day)."""
    day = today or window.end.date()
    out = Findings(window, documents=len(documents))
    out.unreadable = [
        {
            "key": deal_key(x.deal_id) if x.deal_id else "",
            "document": x.ref,
            "reason": "listed by Fortnox but not returned when read (404): not checked",
        }
        for x in unreadable
    ]
    by_deal: dict[str, list[Document]] = {}
    for doc in documents:
        if doc.deal_id is not None:
            by_deal.setdefault(doc.deal_id, []).append(doc)
    won = sorted(
        (
            d
            for d in deals.values()
            if d.stage_id in won_stages and window.holds(won_at(d, recorded))
        ),
        key=lambda d: (won_at(d, recorded), d.id),
    )
    out.won = len(won)
    for deal in won:
        docs = by_deal.get(deal.id, [])
        live = [x for x in docs if not x.cancelled]
        key = deal_key(deal.id)
        if not docs:
            out.missing.append(
                {"key": key, "name": deal.name, "value": _text(deal.attributes.get("value")),
                 "won_at": won_at(deal, recorded).isoformat()}
            )  # fmt: skip
            continue
        if not live:
            for x in docs:
                out.cancelled.append({"key": key, "document": x.ref})
            continue
        if len(live) > 1:
            out.duplicates.append({"key": key, "documents": [x.ref for x in live]})
        out.payments.extend(payment(key, x, day) for x in live if x.kind == "invoice")
        for x in live:
            diff = _differences(deal, x, recorded, deep)
            if diff:
                out.mismatched.append({"key": key, "document": x.ref, "differences": diff})
    for did in sorted(by_deal):
        reason = None
        current = deals.get(did)
        if did in gone:
            reason = "the deal no longer exists in Lime Go"
        elif current is not None and current.stage_id not in won_stages:
            reason = "the deal is not won in Lime Go"
        if reason is None:
            continue
        for x in by_deal[did]:
            if not x.cancelled:
                out.orphans.append({"key": deal_key(did), "document": x.ref, "reason": reason})
    return out


def payment(key: str, doc: Document, today: date) -> Payment:
    return payment_of(
        key, doc.number, cancelled=doc.cancelled, booked=doc.booked, balance=doc.balance,
        total=doc.total, due=doc.due, currency=doc.currency, today=today,
    )  # fmt: skip


def _text(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)


def _differences(
    deal: Deal,
    doc: Document,
    recorded: Recorded,
    deep: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, list[str | None]]:
    """field -> [Fortnox's, Lime Go's]."""
    diff: dict[str, list[str | None]] = {}
    customer = recorded.customers.get(deal.company_id or "")
    if customer is not None and doc.customer_number != customer:
        diff["customer"] = [doc.customer_number, customer]
    value = payments_mod.amount(deal.attributes.get("value"))
    if deep is not None:
        full = deep.get(doc.ref)
        amount = rows_total(full) if full is not None else None
        if amount is not None and amount != value:
            diff["amount"] = [str(amount), _text(deal.attributes.get("value"))]
        return diff
    row = recorded.documents.get(deal.id)
    made = row is not None and row.document_number == doc.number and row.value is not None
    if made and row is not None and payments_mod.amount(row.value) != value:
        diff["amount"] = [row.value, _text(deal.attributes.get("value"))]
    return diff


# --- output -----------------------------------------------------------------------------------


def _detail(category: str, e: Mapping[str, Any]) -> str:
    if category == "missing":
        return f"{e.get('name')!r} {e.get('value') or ''} won {e.get('won_at', '')[:10]}".strip()
    if category == "mismatched":
        return "; ".join(
            f"{k} {fx} in Fortnox, {lg} in Lime Go" for k, (fx, lg) in e["differences"].items()
        )
    if category == "orphans":
        return str(e["reason"])
    if category == "duplicates":
        return f"{len(e['documents'])} documents with the same key"
    if category == "unreadable":
        return str(e["reason"])
    return "cancelled in Fortnox"


# What a spreadsheet reads as the start of a formula (OWASP, CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(cell: str) -> str:
    """A cell a spreadsheet shows as text: one that could start a formula gets a leading
    apostrophe (OWASP's advice); CRM and Fortnox text reach these cells."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def rows(f: Findings) -> list[tuple[str, str, str, str]]:
    """(finding, key, documents, detail): one per finding."""
    out = []
    for c in CATEGORIES:
        for e in getattr(f, c):
            docs = ", ".join(e.get("documents") or [e.get("document") or ""])
            out.append((c, e["key"], docs, _detail(c, e)))
    return out


def listed_payments(f: Findings, *, unpaid: bool) -> list[Payment]:
    """The payments `--payments` lists (every won deal's invoice), or `--unpaid` (the owed)."""
    return [p for p in f.payments if p.owed] if unpaid else list(f.payments)


def to_json(f: Findings, *, payments: bool = False, unpaid: bool = False) -> str:
    """The findings; with `payments` (or `unpaid`) also a "payments" list (the plain
    audit's JSON keeps the keys it always had)."""
    out = f.as_dict()
    if payments or unpaid:
        out["payments"] = [p.as_dict() for p in listed_payments(f, unpaid=unpaid)]
    return json.dumps(out, indent=2, ensure_ascii=False)


def _csv(header: Sequence[str], body: Iterable[Sequence[str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows([spreadsheet_text(c) for c in r] for r in body)
    return buf.getvalue()


def to_csv(f: Findings) -> str:
    return _csv(["finding", "key", "documents", "detail"], rows(f))


def payments_csv(f: Findings, *, unpaid: bool) -> str:
    """`--payments` / `--unpaid` with `--csv`: one row per invoice instead of per finding."""
    return _csv(payments_mod.HEADER, payments_mod.rows(listed_payments(f, unpaid=unpaid)))


def _columns(table: Sequence[Sequence[str]], fixed: int) -> list[str]:
    """Rows as aligned text: the first `fixed` columns padded, the rest as they are."""
    widths = [max(len(r[i]) for r in table) for i in range(fixed)]
    return [
        "  ".join([*(r[i].ljust(widths[i]) for i in range(fixed)), *r[fixed:]]).rstrip()
        for r in table
    ]


def _found(f: Findings) -> str:
    """How many of each finding: `2 missing, 1 cancelled`."""
    return ", ".join(f"{len(getattr(f, c))} {c}" for c in CATEGORIES if getattr(f, c))


def _head(f: Findings, kind: str) -> str:
    start = f.window.start.date().isoformat() if f.window.start else "the beginning"
    return (
        f"Audit of deals won from {start} to {f.window.end.date().isoformat()}: "
        f"{f.won} won deals, {f.documents} {kind}s read from Fortnox"
    )


def to_table(f: Findings, kind: str) -> str:
    head = _head(f, kind)
    paid = [payments_mod.summary(f.payments)] if kind == "invoice" else []
    if not f.found:
        return "\n".join(
            [head, "Nothing found: every won deal has exactly one document, in line.", *paid]
        )
    lines = [head, "", *_columns([("finding", "key", "documents", "detail"), *rows(f)], 3)]
    return "\n".join([*lines, "", _found(f), *paid])


def payments_table(f: Findings, *, unpaid: bool) -> str:
    """`--payments` / `--unpaid`: one line per invoice, then the summary; findings are only
    counted here (the plain `audit` names them)."""
    listed = listed_payments(f, unpaid=unpaid)
    head = _head(f, "invoice")
    what = "owed" if unpaid else "invoices of won deals"
    lines = [head, ""]
    if listed:
        lines += _columns([payments_mod.HEADER, *payments_mod.rows(listed)], 7)
    else:
        lines.append(f"No {what}.")
    lines += ["", payments_mod.summary(f.payments)]
    if f.found:
        lines.append(f"Also found: {_found(f)} (run `limefort audit` without --unpaid/--payments).")
    return "\n".join(lines)


# --- I/O --------------------------------------------------------------------------------------


def run_audit(
    limego: Any,
    fortnox: Any,
    recorded: Recorded,
    *,
    kind: DocumentKind,
    won_stages: frozenset[str],
    window: Window,
    deep: bool = False,
    progress: Progress | None = None,
    today: date | None = None,
) -> Findings:
    """Read the window's deals and the documents, look up the deals the read did not return,
    and (`deep`) each live document of a won deal; then `findings` (`today`: the day in
    `sync.timezone` that decides what is overdue)."""
    p = progress or NullProgress()
    deals: dict[str, Deal] = {}
    for page in limego.iter_deals(updated_since=window.start):
        p.read(len(page.deals))
        for d in page.deals:
            deals[d.id] = d
    documents: list[Document] = []
    first = (window.start - DATE_MARGIN).date() if window.start else None
    for page in fortnox.iter_documents(kind, limit=500, fromdate=first, on_pages=p.total):
        documents.extend(document_of(kind, item) for item in page)
        p.advance(1)
    # Without a start every deal Lime Go has was read: a key whose deal was not is gone.
    gone = unknown_deals(documents, deals) if window.start is None else set()
    for did in sorted(to_look_up(documents, deals, recorded, window)):
        got = limego.get_deal(did)
        if got is None:
            gone.add(did)
        else:
            deals[did] = got[0]
    full: dict[str, Mapping[str, Any]] | None = None
    unreadable: list[Document] = []
    if deep:
        todo = _deep_targets(deals, documents, recorded, won_stages, window)
        p.total(len(todo))
        full = {}
        for doc in todo:
            got = fortnox.get_document(kind, doc.number)
            if got is not None:
                full[doc.ref] = got
            else:
                unreadable.append(doc)
            p.advance(1)
    return findings(
        deals, documents, recorded, won_stages=won_stages, window=window, gone=frozenset(gone),
        deep=full, unreadable=unreadable, today=today,
    )  # fmt: skip


def _deep_targets(
    deals: Mapping[str, Deal],
    documents: Sequence[Document],
    recorded: Recorded,
    won_stages: frozenset[str],
    window: Window,
) -> list[Document]:
    won = {
        d.id
        for d in deals.values()
        if d.stage_id in won_stages and window.holds(won_at(d, recorded))
    }
    return [x for x in documents if not x.cancelled and x.deal_id in won]
