"""Payments, read-only: what Fortnox's invoice list says about the invoices limefort made.

limefort stays one way and never writes to Lime Go. What it can give an operator is what the
invoice list items it reads anyway already carry: `Balance` (what is left to pay), `DueDate`,
`Booked` and `Cancelled`. No request per invoice is made for this.

A pure module: list items (or the index rows kept from them) and "today" in, states out.
- paid: not cancelled, nothing left (a credit balance counts as paid);
- overdue: not cancelled, something left, its due date before today (in `sync.timezone`:
  an invoice due today is not overdue until tomorrow, Swedish time);
- unpaid: not cancelled, something left, not overdue;
- cancelled: cancelled in Fortnox, nothing is owed on it.
"Owed" is unpaid and overdue together; overdue is the part of it past its due date. A draft
(not booked) invoice that is owed is listed as owed and shown as not booked: Fortnox's list
gives it a balance, and whether a draft counts is the bookkeeper's call, not limefort's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

STATES = ("paid", "unpaid", "overdue", "cancelled")
OWED = ("unpaid", "overdue")


@dataclass(frozen=True)
class Payment:
    key: str  # deal:<id>
    document: str  # invoice:<n>
    state: str  # one of STATES
    booked: bool
    total: Decimal | None
    left: Decimal
    due: str | None  # YYYY-MM-DD
    currency: str

    @property
    def owed(self) -> bool:
        return self.state in OWED

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "document": self.document,
            "state": self.state,
            "booked": self.booked,
            "total": None if self.total is None else str(self.total),
            "left": str(self.left),
            "due": self.due,
            "currency": self.currency,
        }


def amount(raw: Any) -> Decimal | None:
    """Fortnox's numbers arrive as JSON numbers or text: exact decimals either way."""
    if raw is None or raw == "" or isinstance(raw, bool):
        return None
    try:
        return Decimal(str(raw))
    except InvalidOperation:
        return None


def state_of(*, cancelled: bool, left: Decimal, due: str | None, today: date) -> str:
    if cancelled:
        return "cancelled"
    if left <= 0:
        return "paid"
    if due and due < today.isoformat():
        return "overdue"
    return "unpaid"


def payment_of(
    key: str,
    number: str,
    *,
    cancelled: bool,
    booked: bool,
    balance: Any,
    total: Any,
    due: str | None,
    currency: str | None,
    today: date,
) -> Payment:
    """One invoice. A list item without a balance (an older index row) counts its total as
    left: never "paid" without Fortnox having said so."""
    tot = amount(total)
    left = amount(balance)
    if left is None:
        left = tot if tot is not None else Decimal(0)
    if cancelled:
        left = Decimal(0)
    return Payment(
        key,
        f"invoice:{number}",
        state_of(cancelled=cancelled, left=left, due=due or None, today=today),
        booked,
        tot,
        left,
        due or None,
        (currency or "SEK").upper(),
    )


def owed_by_currency(payments: Iterable[Payment]) -> dict[str, dict[str, Decimal]]:
    """currency -> {"unpaid_count", "unpaid_amount", "overdue_count", "overdue_amount"}: every
    currency of an owed invoice; amounts in different currencies are never added up."""
    out: dict[str, dict[str, Decimal]] = {}
    for p in payments:
        if not p.owed:
            continue
        row = out.setdefault(
            p.currency,
            {
                k: Decimal(0)
                for k in ("unpaid_count", "unpaid_amount", "overdue_count", "overdue_amount")
            },
        )
        row["unpaid_count"] += 1
        row["unpaid_amount"] += p.left
        if p.state == "overdue":
            row["overdue_count"] += 1
            row["overdue_amount"] += p.left
    return out


def summary(payments: Iterable[Payment]) -> str:
    """One line: how many invoices are in each state, and what is owed per currency."""
    payments = list(payments)
    if not payments:
        return "Payments: no invoices in the window."
    counts = {s: sum(1 for p in payments if p.state == s) for s in STATES}
    parts = [f"{counts[s]} {s}" for s in STATES if counts[s]]
    owed = owed_by_currency(payments)
    money = "; ".join(
        f"{_money(v['unpaid_amount'])} {cur} owed"
        + (f", {_money(v['overdue_amount'])} of it overdue" if v["overdue_count"] else "")
        for cur, v in sorted(owed.items())
    )
    return f"Payments: {', '.join(parts)}" + (f" ({money})" if money else "") + "."


def _money(d: Decimal) -> str:
    return f"{d:.2f}"


def rows(payments: Iterable[Payment]) -> list[tuple[str, ...]]:
    """(key, document, state, booked, due, total, left, currency): one per invoice."""
    return [
        (
            p.key,
            p.document,
            p.state,
            "yes" if p.booked else "no",
            p.due or "",
            "" if p.total is None else _money(p.total),
            _money(p.left),
            p.currency,
        )
        for p in payments
    ]


HEADER = ("key", "document", "state", "booked", "due", "total", "left", "currency")
