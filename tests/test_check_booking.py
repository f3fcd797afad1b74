"""`limefort check` says whether the Fortnox company can book what limefort sends, before the
first document (issue 23): the preferred sales account, an account demanding a cost centre,
automatic currency rates, customers abroad without a VAT type. The rules run against an
in-memory fake of the registers and, end to end, against the sandbox, which models each."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import Lf

from limefort.bookkeeping import booking
from limefort.config import MappingConfig, SyncConfig
from limefort.core.errors import ApiError, NotFound
from limefort_sandbox import Sandbox


def lines(text: str, mark: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(mark)]


# --- the rules, on an in-memory fake ----------------------------------------------------------


class Registers:
    """Fortnox's registers as `booking` reads them: path -> body, NotFound, or refused."""

    def __init__(self, **bodies: Any) -> None:
        self.bodies = {"/" + k.replace("__", "/"): v for k, v in bodies.items()}
        self.read: list[str] = []

    def __call__(self, path: str) -> Any:
        self.read.append(path)
        got = self.bodies.get(path)
        if got is None:
            raise NotFound("Fortnox", "not found", status=404)
        if isinstance(got, Exception):
            raise got
        return got


def cfg(vat: dict[str, str] | None = None, **sync: Any) -> Any:
    """Just the parts of a Config the rules read."""
    return SimpleNamespace(sync=SyncConfig(**sync), mapping=MappingConfig(vat_type=vat or {}))


def account(n: int, cost: str = "ALLOWED", active: bool = True) -> dict[str, Any]:
    return {"Account": {"Number": n, "Description": "Försäljning", "Active": active,
                        "CostCenterSettings": cost, "ProjectSettings": "ALLOWED"}}  # fmt: skip


SALES = {"PreDefinedAccount": {"Name": "SALES", "Account": 3001}}
REFUSED = ApiError("Fortnox", "Har inte behörighet för scope", status=403, code=2000663)


@pytest.mark.parametrize(
    ("sync", "registers", "level", "words"),
    [
        ({}, {"predefinedaccounts__SALES": SALES, "accounts__3001": account(3001)}, "ok",
         "preferred sales account 3001"),
        ({}, {}, "fail", "no preferred sales account"),
        ({}, {"predefinedaccounts__SALES": {"PreDefinedAccount": {"Name": "SALES"}}}, "fail",
         "Fördefinierade konton"),
        ({}, {"predefinedaccounts__SALES": REFUSED}, "warn", "not verified"),
        ({}, {"predefinedaccounts__SALES": SALES, "accounts__3001": account(3001, "MANDATORY")},
         "fail", "demands a cost centre"),
        ({}, {"predefinedaccounts__SALES": SALES, "accounts__3001": account(3001, active=False)},
         "fail", "inactive"),
        ({"account_number": "3041"}, {"accounts__3041": account(3041)}, "ok",
         "sync.account_number 3041"),
        ({"account_number": "3999"}, {}, "fail", "not in the company's chart of accounts"),
        ({"article_number": "A1"}, {}, "ok", "article A1"),
    ],
)  # fmt: skip
def test_the_sales_account_rules(
    sync: dict[str, Any], registers: dict[str, Any], level: str, words: str
) -> None:
    got = booking.booking_lines(
        cfg(**sync), Registers(**registers), deal_currencies=(), countries=()
    )
    worst = {"ok": 0, "warn": 1, "fail": 2}
    assert max(worst[x.level] for x in got) == worst[level], got
    assert any(words in x.text for x in got), got


@pytest.mark.parametrize(
    ("currency", "level", "words"),
    [
        ({"IsAutomatic": True, "SellRate": 11.5}, "ok", "automatic rates"),
        ({"IsAutomatic": False, "SellRate": 11.2, "Date": "2026-01-02"}, "warn", "11.2"),
        ({"IsAutomatic": False, "SellRate": 0}, "fail", "no automatic rates and no rate"),
        (None, "fail", "not in the company's currency register"),
    ],
)
def test_currency_rules(currency: dict[str, Any] | None, level: str, words: str) -> None:
    regs = Registers(currencies__EUR={"Currency": currency} if currency else None)
    [line] = booking.currencies(["EUR", "SEK", "sek"], regs)
    assert (line.level, words in line.text) == (level, True), line
    assert regs.read == ["/currencies/EUR"]  # SEK is never asked about


def test_vat_rules() -> None:
    unset = booking.vat_abroad(cfg(), ["SE", "DE", "FR", "NO"])
    assert [x.level for x in unset] == ["warn", "warn"]
    assert "2 customers in the EU" in unset[0].text and "Swedish VAT" in unset[0].text
    assert "1 customer outside the EU" in unset[1].text
    chosen = booking.vat_abroad(cfg(vat={"eu": "EUREVERSEDVAT", "outside_eu": "EXPORT"}), ["DE"])
    assert [x.level for x in chosen] == ["ok", "ok"]
    assert all(x.level == "ok" for x in booking.vat_abroad(cfg(), ["SE"]))


# --- end to end, against the sandbox ------------------------------------------------------------


def fresh(make: Any, tmp_path: Path, **kw: Any) -> tuple[Sandbox, Lf]:
    sb: Sandbox = make(seed=81, companies=0, deals=0, **kw)
    return sb, Lf(sb, tmp_path)


def test_a_company_without_a_preferred_sales_account_is_told_before_any_document(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path, fortnox_default_account=False)
    r = lf.run("check")
    assert r.code == 1, r.out
    [fail] = lines(r.out, "✗")
    assert "no preferred sales account" in fail and "sync.account_number" in fail
    assert "Inställningar → Bokföring → Fördefinierade konton" in fail
    assert sb.fortnox.count(method="POST") == 0
    # what check said is what a pass meets
    cid = sb.limego.add_company(name="Kund AB", status="customer")
    sb.limego.add_deal(company_id=cid, stage="won", name="Affär", value="100")
    assert lf.run("sync").code == 1
    [held] = lf.status()["quarantined"]
    assert "Kunde inte hitta konto" in held["reason"]  # Fortnox's words, and the fix in ours:
    assert "no preferred sales account" in held["reason"] and "limefort check" in held["reason"]
    # the fix check names works
    lf.edit("sync", account_number="3041")
    ok = lf.run("check")
    assert ok.code == 0, ok.out
    assert "deal rows go to sync.account_number 3041" in ok.out


def test_a_company_with_the_account_is_fine(make_inprocess_sandbox: Any, tmp_path: Path) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    r = lf.run("check")
    assert r.code == 0, r.out
    assert "✓ booking: deal rows go to the preferred sales account 3001" in r.out
    assert "✓ booking: account 3001 (Försäljning inom Sverige, 25 % moms) needs no cost" in r.out


def test_an_account_demanding_a_cost_centre_and_a_currency_without_rates(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    sb.fortnox.accounts[3001]["CostCenterSettings"] = "MANDATORY"
    sb.fortnox.automatic_rates = False
    cid = sb.limego.add_company(name="Kund AB", status="customer", country="Tyskland")
    sb.limego.add_deal(company_id=cid, stage="won", name="Affär", value="100", currency="EUR")
    r = lf.run("check")
    assert r.code == 1, r.out
    fails = lines(r.out, "✗")
    assert any("account 3001" in f and "demands a cost centre" in f for f in fails), r.out
    assert any("currency EUR: no automatic rates and no rate" in f for f in fails), r.out
    [vat] = [w for w in lines(r.out, "!") if "VAT" in w]
    assert "1 customer in the EU" in vat and "Swedish VAT" in vat
    assert sb.fortnox.count(method="POST") == 0
    # the sandbox refuses what check warned of
    assert lf.run("sync").code == 1
    assert "Kostnadsställe måste anges" in str(lf.status()["quarantined"])
    # a typed rate is a warning, not a failure; automatic rates are fine
    sb.fortnox.accounts[3001]["CostCenterSettings"] = "ALLOWED"
    from decimal import Decimal

    sb.fortnox.manual_rates["EUR"] = Decimal("11.20")
    r = lf.run("check")
    assert any("currency EUR: no automatic rates" in w and "11.20" in w for w in lines(r.out, "!"))
    # the customer is in the state file now and on Lime Go's first page: counted once
    assert any("VAT: 1 customer in the EU" in w for w in lines(r.out, "!")), r.out
    sb.fortnox.automatic_rates, sb.fortnox.manual_rates = True, {}
    assert "✓ currency EUR: automatic rates" in lf.run("check").out


def test_without_the_bookkeeping_scope_it_is_said_not_verified(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    sb.fortnox.service_scopes.discard("bookkeeping")
    r = lf.run("check")
    [warn] = [w for w in lines(r.out, "!") if "booking" in w]
    assert "not verified" in warn and "bookkeeping" in warn
    assert not [x for x in lines(r.out, "✓") if "booking" in x]


def test_a_company_without_the_api_licence_is_told_so(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    sb.fortnox.api_licence = False
    r = lf.run("check")
    assert r.code == 1
    fails = lines(r.out, "✗")
    assert any("no licence to use the API" in f and "2001103" in f for f in fails), r.out
