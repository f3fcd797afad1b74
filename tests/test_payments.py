"""Payments at a glance, read-only (issue 24): which invoices are paid, unpaid, overdue or
cancelled, from the invoice list items limefort reads anyway; `audit --payments/--unpaid`
and the owed/overdue metrics."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import Lf
from prometheus_client.parser import text_string_to_metric_families

from limefort.bookkeeping import payments as P
from limefort.core.keys import document_ref
from limefort_sandbox import Sandbox

TODAY = date(2026, 12, 7)


# --- the pure rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cancelled", "balance", "total", "due", "state", "left"),
    [
        (False, "0", "1250.00", "2026-12-01", "paid", "0"),
        (False, "-10.00", "1250.00", "2026-12-01", "paid", "-10.00"),  # paid too much: not owed
        (False, "1250.00", "1250.00", "2026-12-31", "unpaid", "1250.00"),
        (False, "250.00", "1250.00", "2026-12-31", "unpaid", "250.00"),  # part-paid
        (False, "250.00", "1250.00", "2026-12-06", "overdue", "250.00"),  # due yesterday
        (False, "250.00", "1250.00", "2026-12-07", "unpaid", "250.00"),  # due today: not yet
        (True, "1250.00", "1250.00", "2026-11-01", "cancelled", "0"),  # nothing owed
        (False, None, "1250.00", "2026-12-31", "unpaid", "1250.00"),  # no balance: never "paid"
        (False, 1250.5, 1250.5, None, "unpaid", "1250.5"),  # JSON numbers, no due date
    ],
)
def test_payment_state_table(
    cancelled: bool, balance: Any, total: Any, due: str | None, state: str, left: str
) -> None:
    p = P.payment_of(
        "deal:1", "7", cancelled=cancelled, booked=True, balance=balance, total=total,
        due=due, currency="sek", today=TODAY,
    )  # fmt: skip
    assert (p.state, p.left) == (state, Decimal(left))
    assert p.currency == "SEK" and p.document == "invoice:7"
    assert p.owed == (state in ("unpaid", "overdue"))


def test_owed_is_summed_per_currency_never_across() -> None:
    def pay(balance: str, due: str, cur: str) -> P.Payment:
        return P.payment_of(
            "deal:1", "1", cancelled=False, booked=True, balance=balance, total="100",
            due=due, currency=cur, today=TODAY,
        )  # fmt: skip

    owed = P.owed_by_currency(
        [
            pay("100", "2026-12-31", "SEK"),
            pay("40", "2026-12-01", "SEK"),
            pay("0", "2026-12-01", "SEK"),
            pay("75", "2026-11-01", "EUR"),
        ]
    )
    assert owed == {
        "SEK": {
            "unpaid_count": 2, "unpaid_amount": Decimal(140),
            "overdue_count": 1, "overdue_amount": Decimal(40),
        },
        "EUR": {
            "unpaid_count": 1, "unpaid_amount": Decimal(75),
            "overdue_count": 1, "overdue_amount": Decimal(75),
        },
    }  # fmt: skip


# --- against the sandbox ----------------------------------------------------------------------


def four_kinds(make: Any, tmp_path: Path, **sync: Any) -> tuple[Lf, Sandbox, dict[str, str]]:
    """Five won deals invoiced by one pass; then one paid in full, one part-paid, one overdue
    (part-paid too), one cancelled and one untouched."""
    sb: Sandbox = make(seed=61, companies=0, deals=0)
    company = sb.limego.add_company(name="Betalande Kund AB", status="customer")
    values = {"paid": "1000.00", "part": "2000.00", "overdue": "3000.00", "cancelled": "4000.00"}
    values["open"] = "5000.00"
    deals = {
        what: sb.limego.add_deal(company_id=company, stage="won", name=f"Uppdrag {what}", value=v)
        for what, v in values.items()
    }
    lf = Lf(sb, tmp_path, **sync)
    r = lf.run("sync")
    assert r.code == 0, r.err
    numbers = {
        what: str(sb.fortnox.documents_by_ref(document_ref(did))[0]["DocumentNumber"])
        for what, did in deals.items()
    }
    for what in ("paid", "part", "overdue", "open"):
        sb.fortnox.book_invoice(numbers[what])
    sb.fortnox.register_payment(numbers["paid"], "1000.00")
    sb.fortnox.register_payment(numbers["part"], "500.00")
    sb.fortnox.register_payment(numbers["overdue"], "1000.00", due="2020-01-31")
    sb.fortnox.cancel_document(numbers["cancelled"])
    return lf, sb, numbers


def test_audit_unpaid_lists_exactly_what_is_owed(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    lf, sb, numbers = four_kinds(make_inprocess_sandbox, tmp_path)
    r = lf.run("audit", "--unpaid", "--json")
    got = json.loads(r.out)
    owed = {p["document"]: (p["state"], p["left"], p["due"]) for p in got["payments"]}
    assert set(owed) == {f"invoice:{numbers[w]}" for w in ("part", "overdue", "open")}
    assert owed[f"invoice:{numbers['part']}"][:2] == ("unpaid", "1500.00")
    assert owed[f"invoice:{numbers['overdue']}"] == ("overdue", "2000.00", "2020-01-31")
    assert owed[f"invoice:{numbers['open']}"][:2] == ("unpaid", "5000.00")
    # the cancelled deal is a finding of its own (its only invoice is cancelled): exit 1
    assert r.code == 1 and [c["key"] for c in got["cancelled"]]

    table = lf.run("audit", "--unpaid")
    lines = table.out.splitlines()
    for w in ("part", "overdue", "open"):
        assert any(f"invoice:{numbers[w]}" in ln for ln in lines), table.out
    for w in ("paid", "cancelled"):
        assert not any(f"invoice:{numbers[w]} " in ln for ln in lines), table.out
    assert "8500.00 SEK owed, 2000.00 of it overdue" in table.out
    assert "Also found: 1 cancelled" in table.out

    every = json.loads(lf.run("audit", "--payments", "--json").out)["payments"]
    states = {p["document"]: p["state"] for p in every}
    assert states[f"invoice:{numbers['paid']}"] == "paid"
    assert len(every) == 4  # the cancelled invoice's deal has no live invoice to list

    out = tmp_path / "owed.csv"
    assert lf.run("audit", "--unpaid", "--csv", str(out)).code == 1
    body = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert body[0] == list(P.HEADER)
    assert sorted(row[6] for row in body[1:]) == ["1500.00", "2000.00", "5000.00"]


def test_the_plain_audit_says_what_is_owed_in_one_line(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    lf, sb, numbers = four_kinds(make_inprocess_sandbox, tmp_path)
    r = lf.run("audit")
    assert "Payments: 1 paid, 2 unpaid, 1 overdue" in r.out, r.out


def test_unpaid_is_refused_for_orders(make_inprocess_sandbox: Any, tmp_path: Path) -> None:
    sb: Sandbox = make_inprocess_sandbox(seed=62, companies=0, deals=0)
    lf = Lf(sb, tmp_path, deal_target="order")
    r = lf.run("audit", "--unpaid")
    assert r.code == 2 and "payments are registered on invoices" in r.err


def sample(text: str, name: str, **labels: str) -> float:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"{name} {labels} not in the textfile")


def test_each_pass_writes_what_is_owed_and_overdue(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    prom = tmp_path / "limefort.prom"
    lf, sb, numbers = four_kinds(make_inprocess_sandbox, tmp_path)
    lf.edit("metrics", textfile=str(prom), tenant="acme")
    r = lf.run("sync")  # nothing changed in Lime Go: the pass reads what changed in Fortnox
    assert r.code == 0, r.err
    text = prom.read_text(encoding="utf-8")
    assert sample(text, "limefort_unpaid_invoices", tenant="acme", currency="SEK") == 3
    assert sample(text, "limefort_unpaid_amount", tenant="acme", currency="SEK") == 8500
    assert sample(text, "limefort_overdue_invoices", tenant="acme", currency="SEK") == 1
    assert sample(text, "limefort_overdue_amount", tenant="acme", currency="SEK") == 2000

    sb.fortnox.register_payment(numbers["overdue"], "2000.00")
    assert lf.run("sync").code == 0
    text = prom.read_text(encoding="utf-8")
    assert sample(text, "limefort_unpaid_amount", tenant="acme", currency="SEK") == 6500
    assert sample(text, "limefort_overdue_invoices", tenant="acme", currency="SEK") == 0
