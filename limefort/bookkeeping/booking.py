"""Can this Fortnox company book what limefort sends? Said by `limefort check`, before the
first document, instead of learnt from the first failure.

Each finding is a line (`ok`, `warn` or `fail`) that says what to set and where in Fortnox:
- the sales account a deal's row is booked on: `sync.account_number`, else the company's
  preferred sales account (Fortnox refuses a row with neither article nor account without
  one: "Kunde inte hitta konto"); `sync.article_number` leaves the account to the article;
- whether that account demands a cost centre or a project on every row ("Kostnadsställe måste
  anges"): limefort sends neither;
- for each currency other than SEK that deals use: automatic currency rates, or a rate;
- customers abroad and `[mapping.vat_type]`: without it Fortnox applies Swedish VAT to them.

The reads go through `read(path)` (a GET under /3 that returns the body or raises ApiError),
so the rules are tested against an in-memory fake as well as the sandbox. Licences and scopes
for customers and documents are `check`'s own probes; a register this needs and the consent
does not cover (the bookkeeping or currency scope) is a warning that says so, never an ok.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from limefort.bookkeeping.payments import amount
from limefort.core.errors import ApiError, NotFound
from limefort.core.explain import explain
from limefort.mapping import VAT_TYPES, vat_zone

if TYPE_CHECKING:
    from limefort.config import Config

Level = Literal["ok", "warn", "fail"]
Read = Callable[[str], Any]

WHERE_ACCOUNTS = "Inställningar → Bokföring → Fördefinierade konton (Försäljning)"
WHERE_CHART = "Inställningar → Bokföring → Kontoplan"
WHERE_CURRENCIES = "Inställningar → Bokföring → Valutor"


@dataclass(frozen=True)
class Line:
    level: Level
    text: str


def _refused(what: str, exc: ApiError, scope: str, instead: str) -> Line:
    return Line(
        "warn",
        f"{what}: not verified, Fortnox refused the read: {explain(exc, scope=scope)}; {instead}",
    )


def sales_account(cfg: Config, read: Read) -> tuple[list[Line], int | None]:
    """Which account the deal row is booked on, and whether Fortnox will find one."""
    s = cfg.sync
    if s.account_number:
        return [
            Line("ok", f"booking: deal rows go to sync.account_number {s.account_number}")
        ], int(s.account_number)
    if s.article_number:
        return [
            Line(
                "ok",
                f"booking: deal rows use article {s.article_number} (sync.article_number); its "
                "sales account is the article's, set in Fortnox",
            )
        ], None
    try:
        body = read("/predefinedaccounts/SALES")
    except NotFound:
        body = {}
    except ApiError as exc:
        return [
            _refused(
                "booking: the preferred sales account",
                exc,
                "bookkeeping",
                "add the bookkeeping scope, or set sync.account_number",
            )
        ], None
    account = _int((body or {}).get("PreDefinedAccount", {}).get("Account"))
    if account is None or account < 1000:
        return [
            Line(
                "fail",
                "booking: the Fortnox company has no preferred sales account, so Fortnox "
                'refuses every deal row limefort sends without an account ("Kunde inte hitta '
                f'konto"): set one in Fortnox under {WHERE_ACCOUNTS}, or set '
                "sync.account_number (or sync.article_number) in the config",
            )
        ], None
    return [Line("ok", f"booking: deal rows go to the preferred sales account {account}")], account


def account_demands(account: int, read: Read, source: str) -> list[Line]:
    """Does the account exist, is it active, does it demand what limefort never sends?"""
    try:
        body = read(f"/accounts/{account}")
    except NotFound:
        return [
            Line(
                "fail",
                f"booking: account {account} ({source}) is not in the company's chart of "
                f"accounts: add it in Fortnox under {WHERE_CHART}, or choose another",
            )
        ]
    except ApiError as exc:
        return [
            _refused(
                f"booking: account {account}",
                exc,
                "bookkeeping",
                f"check in Fortnox ({WHERE_CHART}) that it needs no cost centre",
            )
        ]
    acc = (body or {}).get("Account") or {}
    name = acc.get("Description") or ""
    label = f"account {account}" + (f" ({name})" if name else "")
    if acc.get("Active") is False:
        return [Line("fail", f"booking: {label} is inactive: activate it under {WHERE_CHART}")]
    demanded = [
        what
        for what, key in (("a cost centre", "CostCenterSettings"), ("a project", "ProjectSettings"))
        if str(acc.get(key) or "").upper() == "MANDATORY"
    ]
    if demanded:
        return [
            Line(
                "fail",
                f"booking: {label} demands {' and '.join(demanded)} on every row "
                '("Kostnadsställe måste anges") and limefort sends none: make it optional '
                f"under {WHERE_CHART}, or set sync.account_number to an account that does not",
            )
        ]
    return [Line("ok", f"booking: {label} needs no cost centre or project")]


def currencies(codes: Iterable[str], read: Read) -> list[Line]:
    """Each foreign currency deals use: automatic rates, or at least a rate."""
    out = []
    for code in sorted({c.upper() for c in codes if c} - {"SEK"}):
        try:
            body = read(f"/currencies/{code}")
        except NotFound:
            out.append(
                Line(
                    "fail",
                    f"currency {code}: not in the company's currency register: add it under "
                    f"{WHERE_CURRENCIES}",
                )
            )
            continue
        except ApiError as exc:
            out.append(
                _refused(
                    f"currency {code}",
                    exc,
                    "currency",
                    f"check automatic currency rates under {WHERE_CURRENCIES}",
                )
            )
            continue
        cur = (body or {}).get("Currency") or {}
        rate = amount(cur.get("SellRate"))
        if cur.get("IsAutomatic"):
            out.append(Line("ok", f"currency {code}: automatic rates (today {rate})"))
        elif rate:
            out.append(
                Line(
                    "warn",
                    f"currency {code}: no automatic rates; documents get the rate {rate} typed "
                    f"in on {cur.get('Date') or 'an unknown day'}: turn on automatic currency "
                    f"rates under {WHERE_CURRENCIES}, or keep the rate current",
                )
            )
        else:
            out.append(
                Line(
                    "fail",
                    f"currency {code}: no automatic rates and no rate, so documents in {code} "
                    f"get none: turn on automatic currency rates under {WHERE_CURRENCIES}",
                )
            )
    return out


def vat_abroad(cfg: Config, countries: Iterable[str]) -> list[Line]:
    """Customers abroad (the countries known so far) against `[mapping.vat_type]`."""
    chosen = cfg.mapping.vat_type
    counts = {"eu": 0, "outside_eu": 0}
    for c in countries:
        zone = vat_zone(c)
        if zone is not None:
            counts[zone] += 1
    out = []
    for zone, n in counts.items():
        where = "in the EU" if zone == "eu" else "outside the EU"
        if chosen.get(zone):
            out.append(Line("ok", f"VAT: customers {where} get VATType {chosen[zone]}"))
        elif n:
            out.append(
                Line(
                    "warn",
                    f"VAT: {n} customer{'s' if n != 1 else ''} {where} and [mapping.vat_type] "
                    f"{zone} is not set: Fortnox applies Swedish VAT to "
                    f"{'them' if n != 1 else 'it'}; set {zone} to one of "
                    f"{', '.join(VAT_TYPES[zone])}",
                )
            )
        else:
            out.append(
                Line(
                    "ok",
                    f"VAT: no customer {where} so far; [mapping.vat_type] {zone} is not set, "
                    "so one would get Swedish VAT",
                )
            )
    return out


def booking_lines(
    cfg: Config, read: Read, *, deal_currencies: Iterable[str], countries: Iterable[str]
) -> list[Line]:
    """Everything above, in the order a person fixes it."""
    lines: list[Line] = []
    if cfg.sync.document_kind is not None:
        found, account = sales_account(cfg, read)
        lines += found
        if account is not None:
            source = "sync.account_number" if cfg.sync.account_number else "preferred"
            lines += account_demands(account, read, source)
        lines += currencies(deal_currencies, read)
    return lines + vat_abroad(cfg, countries)


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None
