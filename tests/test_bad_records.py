"""Issue 5 end to end: bad input never stops the line.

One table of bad Lime Go companies and deals goes through the sandbox in ONE pass beside good
records. Each row says what must come of it: synced with an exactly known cleaned value, or
quarantined with a reason a person understands and a hint saying what to do. The unit-level
rules (every cleaner, every rejection) are in test_normalise.py and test_mapping*.py; this file
shows that they hold together against a strict Fortnox, and that nothing stops the pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest
from conftest import Lf, beyond_ledger_read
from stdnum import luhn

from limefort_sandbox import Sandbox


@dataclass(frozen=True)
class Synced:
    """In Fortnox with `field` == `value` exactly. For a deal, `field` is an invoice header
    field or `row.<field>` of its one row. `warning` is a substring of the warning logged."""

    field: str
    value: Any
    warning: str | None = None


@dataclass(frozen=True)
class Quarantined:
    """In quarantine; every `reason` substring in its reason (`{company}` stands for the key of
    the deal's company), `hint` in its hint."""

    reason: tuple[str, ...]
    hint: str


Outcome = Synced | Quarantined
GOOD = "good-company"  # the deal belongs to the good customer of the table


@dataclass(frozen=True)
class Row:
    id: str
    kind: Literal["company", "deal"]
    attrs: dict[str, Any]
    expect: Outcome
    strict: Outcome | None = None  # the outcome with sync.require_orgnr = true, if different
    company: str | None = GOOD  # deals: GOOD, None, or the id of a company row
    contact: tuple[str, str] | None = None  # deals: the first contact's first and last name
    no_sales_account: bool = False  # deals: Fortnox has no default account for this one


def q(*reason: str, hint: str) -> Quarantined:
    return Quarantined(reason, hint)


NAME_1500 = "Ab" * 750
ZIP_2000 = "123 45" + "6" * 1994
CONTACT_60 = ("Anna-Karin Margareta", "Elisabeth von Essen-Bergström Lindqvist")
DEAL_NAME_200 = ("Installation av laddstolpar, etapp 2, inklusive markarbete och el; " * 4)[:200]
NO_NAME = q("company has no name", hint="give the company a name in Lime Go")
NO_ORGNR = q("company has no organisation number", hint="fill in the organisation number")
NOT_A_NUMBER = "is not a plain number like 1234.50"
VALUE_HINT = "set the deal's value to a number in Lime Go"
COMPANY_HINT = "fix the company in Lime Go; the deal follows on the next pass"

ROWS: list[Row] = [
    # --- companies ---------------------------------------------------------------------------
    Row(
        "orgnr missing",
        "company",
        {"name": "Utan Orgnr AB", "business_id": None},
        Synced("OrganisationNumber", ""),
        strict=NO_ORGNR,
    ),
    Row(
        "orgnr bad check digit",
        "company",
        {"name": "Fel Siffra AB", "business_id": "556036-0794"},
        Synced("OrganisationNumber", "", warning="the check digit is wrong; left out"),
        strict=q("'556036-0794' is not valid: the check digit is wrong", hint="556036-0793"),
    ),
    Row(
        "orgnr garbage",
        "company",
        {"name": "Skräp Orgnr AB", "business_id": "vet ej"},
        Synced("OrganisationNumber", "", warning="expected 10 digits"),
        strict=q("'vet ej' is not valid: expected 10 digits", hint="business_id"),
    ),
    Row(
        "orgnr as VAT number",
        "company",
        {"name": "Momsnummer AB", "business_id": "SE556677889901"},
        Synced("OrganisationNumber", "556677-8899"),
    ),
    Row(
        "orgnr without dash and with spaces",
        "company",
        {"name": "Mellanslag AB", "business_id": " 559 1234 561 "},
        Synced("OrganisationNumber", "559123-4561"),
    ),
    Row(
        "street with line breaks",
        "company",
        {"name": "Radbrytning AB", "street": "Storgatan 1\nLgh 1102\r\nc/o Berg"},
        Synced("Address1", "Storgatan 1, Lgh 1102, c/o Berg"),
    ),
    Row(
        "2000 characters in ZipCode (10)",
        "company",
        {"name": "Långt Postnummer AB", "postal_code": ZIP_2000},
        Synced("ZipCode", "123 456666", warning="ZipCode: cut to 10 characters (was 2000)"),
    ),
    Row(
        "country Sverige",
        "company",
        {"name": "Svensk Adress AB", "country": "Sverige"},
        Synced("CountryCode", "SE"),
    ),
    Row(
        "country Sweden",
        "company",
        {"name": "English Address AB", "country": "Sweden"},
        Synced("CountryCode", "SE"),
    ),
    Row(
        "country 'sverige '",
        "company",
        {"name": "Gemener AB", "country": "sverige "},
        Synced("CountryCode", "SE"),
    ),
    Row(
        "country Norge (Swedish name)",
        "company",
        {"name": "Norsk Filial AS", "country": "Norge"},
        Synced("CountryCode", "NO"),
    ),
    Row(
        "unknown country",
        "company",
        {"name": "Atlantis Handel AB", "country": "Atlantis"},
        # A foreign customer without a country is a VAT risk (Fortnox treats it as Swedish):
        # held back with its reason, not created without one (issue 23).
        Quarantined(
            ("CountryCode: country 'Atlantis' is not a country Fortnox knows",),
            "[mapping.countries]",
        ),
    ),
    Row(
        "emoji and control characters in name",
        "company",
        {"name": "Café 😀 Ångström\x00\x07 AB"},
        Synced("Name", "Café Ångström AB", warning="Name: left out 1 character(s)"),
    ),
    Row(
        "no-break and zero-width spaces in name",
        "company",
        {"name": "Nordic\u00a0Tech\u200b AB"},
        Synced("Name", "Nordic Tech AB"),
    ),
    Row(
        "name only emoji",
        "company",
        {"name": "😀🎉🚀"},
        q("company name '😀🎉🚀' has no characters Fortnox can store", hint="Latin letters"),
    ),
    Row(
        "name only Cyrillic",
        "company",
        {"name": "Газпром"},
        q("'Газпром' has no characters Fortnox can store", hint="Latin letters"),
    ),
    Row(
        "name of 1500 characters",
        "company",
        {"name": NAME_1500},
        Synced("Name", "Ab" * 512, warning="Name: cut to 1024 characters (was 1500)"),
    ),
    Row(
        "phone with tabs",
        "company",
        {"name": "Tabbig Telefon AB", "phone": "08\t123\t45 67"},
        Synced("Phone1", "08 123 45 67"),
    ),
    Row(
        "control character in city",
        "company",
        {"name": "Styrtecken AB", "city": "Göte\x1bborg"},
        Synced("City", "Göteborg"),
    ),
    Row(
        "visiting street (custom field) with a line break",
        "company",
        {
            "name": "Besök AB",
            "custom_fields": {
                "visiting_street": "Besöksgatan 2\nPlan 3",
                "visiting_country": "Sverige",
            },
        },
        Synced("DeliveryAddress1", "Besöksgatan 2, Plan 3"),
    ),
    Row("no name", "company", {"name": None}, NO_NAME),
    Row("blank name", "company", {"name": " \t\n "}, NO_NAME),
    # --- deals -------------------------------------------------------------------------------
    Row(
        "deal without company",
        "deal",
        {"name": "Föräldralös affär", "value": "5000.00"},
        q("deal has no company", hint="link the deal to a company in Lime Go"),
        company=None,
    ),
    Row(
        "negative value",
        "deal",
        {"name": "Kreditering", "value": "-100.00"},
        q("deal value is -100.00; invoices for zero or negative amounts", hint="positive value"),
    ),
    Row(
        "zero value",
        "deal",
        {"name": "Gratis", "value": "0"},
        q("deal value is 0;", hint="sync.require_positive_value"),
    ),
    Row(
        "value 1e3",
        "deal",
        {"name": "Exponent", "value": "1e3"},
        q("'1e3' " + NOT_A_NUMBER, hint=VALUE_HINT),
    ),
    Row(
        "value with decimal comma",
        "deal",
        {"name": "Decimalkomma", "value": "12,50"},
        q("deal value '12,50' has a decimal comma; write the value with a point", hint=VALUE_HINT),
    ),
    Row(
        "value abc",
        "deal",
        {"name": "Bokstäver", "value": "abc"},
        q("'abc' " + NOT_A_NUMBER, hint=VALUE_HINT),
    ),
    Row(
        "value missing",
        "deal",
        {"name": "Utan värde", "value": ""},
        q("deal has no value", hint="set the deal's value"),
    ),
    Row(
        "value over 12 digits",
        "deal",
        {"name": "Orimlig", "value": "1000000000000.00"},
        q("larger than Fortnox accepts", hint="check the deal's value"),
    ),
    Row(
        "value with spaces around it",
        "deal",
        {"name": "Mellanslag", "value": " 1500.50 "},
        Synced("row.Price", Decimal("1500.50")),
    ),
    Row(
        "unknown currency XYZ",
        "deal",
        {"name": "Okänd valuta", "value": "100.00", "currency": "XYZ"},
        q("currency 'XYZ' is not an ISO 4217 code", hint="SEK or EUR"),
    ),
    Row(
        "lowercase currency sek",
        "deal",
        {"name": "Gemen valuta", "value": "100.00", "currency": "sek"},
        Synced("Currency", "SEK"),
    ),
    Row(
        "deal name only emoji",
        "deal",
        {"name": "✅🚀", "value": "100.00"},
        q("deal name '✅🚀' has no characters Fortnox can store", hint="Latin letters"),
    ),
    Row(
        "deal without name",
        "deal",
        {"name": None, "value": "100.00"},
        q("deal has no name", hint="give the deal a name"),
    ),
    Row(
        "deal name with tab and control character",
        "deal",
        {"name": "Licens\t2026\x00", "value": "100.00"},
        Synced("row.Description", "Licens 2026"),
    ),
    Row(
        "deal of a company without a name",
        "deal",
        {"name": "Affär med namnlöst bolag", "value": "100.00"},
        q("its company {company} is not in Fortnox: company has no name", hint=COMPANY_HINT),
        company="no name",
    ),
    Row(
        "deal of a company whose name is only emoji",
        "deal",
        {"name": "Affär med emojibolag", "value": "100.00"},
        q("{company}", "'😀🎉🚀' has no characters Fortnox can store", hint=COMPANY_HINT),
        company="name only emoji",
    ),
    Row(
        "60-character contact name",
        "deal",
        {"name": "Lång kontakt", "value": "100.00"},
        Synced(
            "YourReference",
            "Anna-Karin Margareta Elisabeth von Essen-Bergström",
            warning="YourReference: cut to 50 characters (was 60)",
        ),
        contact=CONTACT_60,
    ),
    Row(
        "deal name of 200 characters",
        "deal",
        {"name": DEAL_NAME_200, "value": "100.00"},
        # Fortnox's write model has no limit on a row's Description and its read model 255
        # (limefort/fortnox_limits.py): 200 characters go whole.
        Synced("row.Description", DEAL_NAME_200),
    ),
    Row(
        "custom fields with newlines go to Remarks",
        "deal",
        {
            "name": "Med egna fält",
            "value": "100.00",
            # Blank fields are left out; a value's own line breaks fold into one line.
            "custom_fields": {"contract_length": None, "po_number": "PO-77\nrad två\r\n"},
        },
        Synced("Remarks", "Kundens ordernummer: PO-77, rad två"),
    ),
    Row(
        "Fortnox refuses the currency (ZWG, newer than Fortnox's list)",
        "deal",
        {"name": "Zimbabwe", "value": "100.00", "currency": "ZWG"},
        q("Fortnox HTTP 400 code 2009007", "Ogiltig valuta", hint="retry"),
    ),
    Row(
        "Fortnox has no sales account for the row",
        "deal",
        {"name": "Utan konto", "value": "100.00"},
        q(
            "code 2000423",
            "the bookkeeping account does not exist in Fortnox",
            "Kunde inte hitta konto",
            hint="account_number",
        ),
        no_sales_account=True,
    ),
]


def orgnrs() -> Iterator[str]:
    """Distinct valid organisation numbers, none equal to the ones written in ROWS."""
    n = 100
    while True:
        body = f"55{n:07d}"
        digits = body + luhn.calc_check_digit(body)
        yield f"{digits[:6]}-{digits[6:]}"
        n += 1


@dataclass
class Built:
    ids: dict[str, str]  # row id -> Lime Go id
    company_of: dict[str, str | None]  # deal row id -> its company's Lime Go id
    good_companies: dict[str, str]  # name -> Lime Go id
    good_deals: dict[str, tuple[str, str]]  # name -> (deal id, company id)


def refuse_rows_without_account(
    sb: Sandbox, refs: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fortnox without a default sales account, for these documents only: the rest of the
    pass must go on against a Fortnox that accepts rows without an account."""
    original = sb.fortnox._check_document

    def check(kind: str, fields: Any, creating: bool) -> Any:
        if isinstance(fields, dict) and fields.get("ExternalInvoiceReference1") in refs:
            sb.fortnox.default_account = False
            try:
                return original(kind, fields, creating)
            finally:
                sb.fortnox.default_account = True
        return original(kind, fields, creating)

    monkeypatch.setattr(sb.fortnox, "_check_document", check)


def build(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Built:
    numbers = orgnrs()
    lg = sb.limego
    good_companies = {
        "Bra Kund AB": lg.add_company(
            name="Bra Kund AB",
            business_id=next(numbers),
            status="customer",
            street="Kungsgatan 5",
            postal_code="111 43",
            city="Stockholm",
            country="SE",
        ),
        "Andra Bolaget AB": lg.add_company(
            name="Andra Bolaget AB", business_id=next(numbers), status="customer", phone="08-123 45"
        ),
        # A prospect: it becomes a Fortnox customer because its deal is won.
        "Nykund AB": lg.add_company(name="Nykund AB", business_id=next(numbers), status="prospect"),
    }
    good = good_companies["Bra Kund AB"]
    good_deals = {
        "Konsulttimmar mars": (
            lg.add_deal(company_id=good, stage="won", name="Konsulttimmar mars", value="1234.50"),
            good,
        ),
        "Första order": (
            lg.add_deal(
                company_id=good_companies["Nykund AB"],
                stage="won",
                name="Första order",
                value="999.00",
                currency="EUR",
            ),
            good_companies["Nykund AB"],
        ),
    }
    ids: dict[str, str] = {}
    for row in ROWS:
        if row.kind == "company":
            attrs = {"status": "customer", **row.attrs}
            attrs.setdefault("business_id", next(numbers))
            ids[row.id] = lg.add_company(**attrs)
    company_of: dict[str, str | None] = {}
    no_account: set[str] = set()
    for row in ROWS:
        if row.kind != "deal":
            continue
        cid = good if row.company == GOOD else (ids[row.company] if row.company else None)
        contacts = []
        if row.contact:
            first, last = row.contact
            contacts.append(lg.add_contact(company_id=cid, first_name=first, last_name=last))
        did = lg.add_deal(company_id=cid, stage="won", contact_ids=contacts, **row.attrs)
        ids[row.id] = did
        company_of[row.id] = cid
        if row.no_sales_account:
            no_account.add(f"limego:deal:{did}")
    refuse_rows_without_account(sb, no_account, monkeypatch)
    return Built(ids, company_of, good_companies, good_deals)


def fortnox_customer(sb: Sandbox, company_id: str) -> dict[str, Any] | None:
    found = [
        c
        for c in sb.fortnox.customers
        if c.get("ExternalReference") == f"limego:company:{company_id}"
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


def fortnox_value(sb: Sandbox, row: Row, lime_id: str, field: str) -> Any:
    if row.kind == "company":
        customer = fortnox_customer(sb, lime_id)
        assert customer is not None, f"{row.id}: not in Fortnox"
        return customer[field]
    docs = sb.fortnox.documents_by_ref(f"limego:deal:{lime_id}")
    assert len(docs) == 1, f"{row.id}: {len(docs)} invoices"
    if field.startswith("row."):
        rows = docs[0]["InvoiceRows"]
        assert len(rows) == 1
        return rows[0][field[len("row.") :]]
    return docs[0][field]


def test_table_has_what_the_issue_asks_for() -> None:
    assert len(ROWS) >= 30
    assert {r.kind for r in ROWS} == {"company", "deal"}
    assert len({r.id for r in ROWS}) == len(ROWS)
    assert len(NAME_1500) == 1500 and len(ZIP_2000) == 2000 and len(DEAL_NAME_200) == 200
    assert len(" ".join(CONTACT_60)) == 60


@pytest.mark.parametrize("require_orgnr", [False, True], ids=["orgnr-optional", "orgnr-required"])
def test_bad_records_in_one_pass_beside_good_ones(
    make_sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, require_orgnr: bool
) -> None:
    sb = make_sandbox(seed=5, companies=0, deals=0)
    built = build(sb, monkeypatch)
    lf = Lf(sb, tmp_path, require_orgnr=require_orgnr)

    r = lf.run("sync")

    assert r.code == 1, r.err
    assert "Traceback" not in r.err
    status = lf.status()
    quarantine = {x["key"]: x for x in status["quarantined"]}
    expected_keys = set()
    for row in ROWS:
        expect = row.strict if require_orgnr and row.strict else row.expect
        lime_id = built.ids[row.id]
        key = f"{row.kind}:{lime_id}"
        if isinstance(expect, Synced):
            assert key not in quarantine, f"{row.id}: {quarantine.get(key)}"
            assert fortnox_value(sb, row, lime_id, expect.field) == expect.value, row.id
            if expect.warning:
                assert any(key in line and expect.warning in line for line in r.err.splitlines()), (
                    f"{row.id}: no warning {expect.warning!r} for {key} in:\n{r.err}"
                )
            continue
        expected_keys.add(key)
        assert key in quarantine, f"{row.id}: not quarantined"
        entry = quarantine[key]
        company = built.company_of.get(row.id)
        for part in expect.reason:
            wanted = part.format(company=f"company:{company}")
            assert wanted in entry["reason"], f"{row.id}: {wanted!r} not in {entry['reason']!r}"
        assert entry["hint"] and expect.hint in entry["hint"], f"{row.id}: hint {entry['hint']!r}"
        assert entry["name"] == row.attrs.get("name")
        assert entry["attempts"] == 1 and entry["since"]
        assert f"limefort: {key} quarantined: " in r.err, f"{row.id}: {key} not named on stderr"
        # Nothing of a quarantined record reached Fortnox.
        if row.kind == "company":
            assert fortnox_customer(sb, lime_id) is None, row.id
        else:
            assert sb.fortnox.documents_by_ref(f"limego:deal:{lime_id}") == [], row.id

    # Only the bad rows are quarantined, and every good record of the same pass is in Fortnox.
    assert set(quarantine) == expected_keys
    for name, cid in built.good_companies.items():
        customer = fortnox_customer(sb, cid)
        assert customer is not None and customer["Name"] == name
    for name, (did, cid) in built.good_deals.items():
        docs = sb.fortnox.documents_by_ref(f"limego:deal:{did}")
        assert len(docs) == 1 and docs[0]["InvoiceRows"][0]["Description"] == name
        assert docs[0]["CustomerNumber"] == fortnox_customer(sb, cid)["CustomerNumber"]  # type: ignore[index]
    # Neither a good record nor a bad one was sent twice.
    refs = [c.get("ExternalReference") for c in sb.fortnox.customers]
    assert len(refs) == len(set(refs))
    invoice_refs = [d["ExternalInvoiceReference1"] for d in sb.fortnox.invoices]
    assert len(invoice_refs) == len(set(invoice_refs))
    # Cursors moved: every record up to now is in Fortnox or quarantined.
    assert set(status["cursors"]) == {"companies", "deals"}
    assert status["last_run"]["exit_code"] == 1
    json.dumps(status)  # the reasons (emoji, Cyrillic, control characters) survive JSON

    # Nothing changed in Lime Go: the next pass reads it all again (lookback) and sends nothing.
    sb.fortnox.reset_log()
    again = lf.run("sync")
    assert again.code == 1, again.err
    assert beyond_ledger_read(sb) == []
    assert {q["key"]: q["attempts"] for q in lf.status()["quarantined"]} == dict.fromkeys(
        expected_keys, 1
    )
