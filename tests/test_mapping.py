from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from limefort.core.errors import ConfigError
from limefort.core.models import Company, CustomFieldDef, Deal, DocumentKind, Person
from limefort.mapping import (
    CUSTOMER_FIELDS,
    DEFAULT_CUSTOMER_MAPPING,
    DEFAULT_DOCUMENT_MAPPING,
    DOCUMENT_FIELDS,
    DealContext,
    Mapped,
    Rejected,
    build_mappings,
    changed_fields,
    custom_field_lines,
    from_json,
    map_company,
    map_deal,
    parse_source,
    payload_hash,
    to_json,
    update_body,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
COMPANY_ID = "0d9c6c3e-3c1e-4d6b-9b7e-5a1f2b3c4d5e"
DEAL_ID = "7f3a9b10-1111-4c2d-8e9f-0a1b2c3d4e5f"


def company(**attributes: Any) -> Company:
    return Company(COMPANY_ID, attributes, T0)


def full_company() -> Company:
    return company(
        name="Acme AB",
        business_id="556036-0793",
        phone="+46 8 123 456",
        street="Storgatan 1",
        postal_code="123 45",
        city="Stockholm",
        country="Sverige",
        custom_fields={
            "visiting_street": "Besöksvägen 2",
            "visiting_postal_code": "543 21",
            "visiting_city": "Göteborg",
            "visiting_country": "SE",
        },
    )


def mapped(result: Mapped | Rejected) -> Mapped:
    assert isinstance(result, Mapped), result
    return result


def rejected(result: Mapped | Rejected) -> Rejected:
    assert isinstance(result, Rejected), result
    return result


DEFS = {
    "po": CustomFieldDef("po", "Inköpsorder", "deal"),
    "signed": CustomFieldDef("signed", "Avtal signerat", "deal"),
    "products": CustomFieldDef("products", "Produkter", "deal"),
    "empty": CustomFieldDef("empty", "Tom", "deal"),
}


def deal(**attributes: Any) -> Deal:
    base: dict[str, Any] = {"name": "Licenser 2026", "value": "1234.50", "currency": "SEK"}
    base.update(attributes)
    return Deal(
        DEAL_ID,
        base,
        T0,
        company_id=COMPANY_ID,
        stage_id="won",
        contact_ids=("c1",),
        owner_ids=("o1",),
    )


def ctx(
    d: Deal | None = None,
    *,
    company_: Company | None = None,
    contact: Person | None = None,
    owner: Person | None = None,
    no_company: bool = False,
) -> DealContext:
    return DealContext(
        deal=d or deal(),
        company=None if no_company else (company_ or full_company()),
        contact=contact if contact is not None else Person("c1", "Karin", "Kund", "karin@kund.se"),
        owner=owner if owner is not None else Person("o1", "Sven", "Säljare", "sven@oss.se"),
        field_defs=DEFS,
    )


# --- the customer table -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("Name", "Acme AB"),
        ("OrganisationNumber", "556036-0793"),
        ("Phone1", "+46 8 123 456"),
        ("Address1", "Storgatan 1"),
        ("ZipCode", "123 45"),
        ("City", "Stockholm"),
        ("CountryCode", "SE"),
        ("DeliveryAddress1", "Besöksvägen 2"),
        ("DeliveryZipCode", "543 21"),
        ("DeliveryCity", "Göteborg"),
        ("DeliveryCountryCode", "SE"),
    ],
)
def test_every_customer_row_comes_from_its_lime_go_source(field: str, value: str) -> None:
    result = mapped(map_company(full_company()))
    assert result.payload[field] == value
    assert result.warnings == ()


def test_customer_payload_has_exactly_the_mapped_fields_and_the_key() -> None:
    payload = mapped(map_company(full_company())).payload
    assert set(payload) == set(DEFAULT_CUSTOMER_MAPPING) | {"ExternalReference"}
    assert payload["ExternalReference"] == f"limego:company:{COMPANY_ID}"


def test_missing_sources_leave_fields_out() -> None:
    result = mapped(
        map_company(company(name="Bara Namn AB", phone="", city=None, custom_fields={}))
    )
    assert result.payload == {
        "Name": "Bara Namn AB",
        "ExternalReference": f"limego:company:{COMPANY_ID}",
    }


def test_custom_fields_that_is_not_an_object_is_ignored() -> None:
    result = mapped(map_company(company(name="X", custom_fields="oops")))
    assert "DeliveryCity" not in result.payload


@pytest.mark.parametrize("name", [None, "", "   ", "\n\t"])
def test_company_without_a_name_is_rejected(name: Any) -> None:
    r = rejected(map_company(company(name=name, business_id="5560360793")))
    assert r.reason == "company has no name"
    assert r.hint == "give the company a name in Lime Go"


def test_company_name_of_only_unstorable_characters_is_rejected_with_the_value() -> None:
    r = rejected(map_company(company(name="😀😀")))
    assert "'😀😀'" in r.reason


def test_invalid_orgnr_is_dropped_with_a_warning_by_default() -> None:
    result = mapped(map_company(company(name="Acme", business_id="556036-0794")))
    assert "OrganisationNumber" not in result.payload
    assert any("OrganisationNumber" in w and "'556036-0794'" in w for w in result.warnings)


def test_invalid_orgnr_is_rejected_when_required() -> None:
    r = rejected(map_company(company(name="Acme", business_id="556036-0794"), require_orgnr=True))
    assert "'556036-0794'" in r.reason
    assert "Lime Go" in r.hint


def test_missing_orgnr_is_rejected_when_required() -> None:
    r = rejected(map_company(company(name="Acme"), require_orgnr=True))
    assert r.reason == "company has no organisation number"
    assert "sync.require_orgnr" in r.hint


@pytest.mark.parametrize(
    "raw, out",
    [
        ("165560360793", "556036-0793"),
        ("19811218-9876", "811218-9876"),
        (5560360793, "556036-0793"),
    ],
)
def test_orgnr_forms_in_the_payload(raw: Any, out: str) -> None:
    payload = mapped(map_company(company(name="Acme", business_id=raw), require_orgnr=True)).payload
    assert payload["OrganisationNumber"] == out


@pytest.mark.parametrize(
    "raw, code", [("Sverige", "SE"), ("Sweden", "SE"), ("Norge", "NO"), ("gbr", "GB")]
)
def test_country_names_in_the_payload(raw: str, code: str) -> None:
    assert mapped(map_company(company(name="A", country=raw))).payload["CountryCode"] == code


def test_unknown_country_is_held_back_with_its_reason_and_a_house_spelling_maps() -> None:
    result = map_company(company(name="A", country="Atlantis"))
    assert isinstance(result, Rejected)
    assert result.reason == (
        "CountryCode: country 'Atlantis' is not a country Fortnox knows; use an ISO code like SE"
    )
    assert "[mapping.countries]" in result.hint and '"Atlantis" = "DE"' in result.hint
    house = {"Tyskl.": "DE", "atlantis": "GR"}
    assert (
        mapped(map_company(company(name="A", country="tyskl."), countries=house)).payload[
            "CountryCode"
        ]
        == "DE"
    )
    assert (
        mapped(map_company(company(name="A", country="Atlantis"), countries=house)).payload[
            "CountryCode"
        ]
        == "GR"
    )
    # the house table comes first, but CLDR's names still work beside it
    assert (
        mapped(map_company(company(name="A", country="Suomi"), countries=house)).payload[
            "CountryCode"
        ]
        == "FI"
    )


def test_line_breaks_are_folded_and_emoji_removed_with_a_warning() -> None:
    result = mapped(map_company(company(name="Acme 🚀 AB", street="Storgatan 1\nBox 4")))
    assert result.payload["Name"] == "Acme AB"
    assert result.payload["Address1"] == "Storgatan 1, Box 4"
    assert any(w.startswith("Name: left out 1 character") and "🚀" in w for w in result.warnings)


def test_over_long_values_are_cut_with_a_warning() -> None:
    result = mapped(map_company(company(name="N" * 2000, postal_code="123 45 6789 0")))
    assert result.payload["Name"] == "N" * 1024
    assert result.payload["ZipCode"] == "123 45 678"
    assert "Name: cut to 1024 characters (was 2000)" in result.warnings
    assert "ZipCode: cut to 10 characters (was 13)" in result.warnings


# --- overrides --------------------------------------------------------------------------------


def test_override_replaces_a_source() -> None:
    customer_map, _ = build_mappings({"Phone1": "custom_fields.mobile"}, {})
    assert customer_map["Phone1"] == "custom_fields.mobile"
    c = company(name="A", phone="111", custom_fields={"mobile": "070-1234567"})
    assert mapped(map_company(c, customer_map)).payload["Phone1"] == "070-1234567"


def test_override_with_empty_string_removes_a_field() -> None:
    customer_map, document_map = build_mappings({"Phone1": ""}, {"Remarks": ""})
    assert "Phone1" not in customer_map
    assert "Remarks" not in document_map
    assert "Phone1" not in mapped(map_company(full_company(), customer_map)).payload
    assert (
        "Remarks"
        not in mapped(
            map_deal(ctx(deal(custom_fields={"po": "1"})), "invoice", document_map)
        ).payload
    )


def test_override_adds_fields_and_points_visiting_address_elsewhere() -> None:
    customer_map, _ = build_mappings(
        {
            "Email": "email",
            "DeliveryAddress1": "",
            "VisitingAddress": "custom_fields.visiting_street",
            "Comments": "custom_fields.notes",
        },
        None,
    )
    c = company(
        name="A",
        email="info@acme.se",
        custom_fields={"visiting_street": "Besöksvägen 2", "notes": "rad 1\nrad 2"},
    )
    payload = mapped(map_company(c, customer_map)).payload
    assert payload["Email"] == "info@acme.se"
    assert payload["VisitingAddress"] == "Besöksvägen 2"
    assert payload["Comments"] == "rad 1\nrad 2"  # multiline keeps the break
    assert "DeliveryAddress1" not in payload


def test_invalid_email_is_dropped_with_a_warning() -> None:
    customer_map, _ = build_mappings({"Email": "email"}, None)
    result = mapped(map_company(company(name="A", email="info at acme"), customer_map))
    assert "Email" not in result.payload
    assert result.warnings == ("Email: 'info at acme' is not a valid email address; left out",)


def test_defaults_are_not_modified_by_overrides() -> None:
    build_mappings({"Phone1": ""}, {"Currency": ""})
    assert DEFAULT_CUSTOMER_MAPPING["Phone1"] == "phone"
    assert DEFAULT_DOCUMENT_MAPPING["Currency"] == "currency"


@pytest.mark.parametrize(
    "section, field, src, key, words",
    [
        ("customer", "Phone", "phone", "mapping.customer.Phone", "did you mean Phone1 or Phone2"),
        ("customer", "phone1", "phone", "mapping.customer.phone1", "did you mean Phone1"),
        (
            "customer",
            "Country",
            "country",
            "mapping.customer.Country",
            "not a Fortnox customer field",
        ),
        (
            "customer",
            "ExternalReference",
            "name",
            "mapping.customer.ExternalReference",
            "cannot be mapped",
        ),
        ("customer", "Name", "", "mapping.customer.Name", "requires a customer name"),
        (
            "customer",
            "Phone1",
            "custom_fields.",
            "mapping.customer.Phone1",
            "malformed source path",
        ),
        ("customer", "Phone1", "contact.name", "mapping.customer.Phone1", "malformed source path"),
        (
            "customer",
            "Comments",
            "custom_fields",
            "mapping.customer.Comments",
            "malformed source path",
        ),
        ("customer", "Phone1", "phone number", "mapping.customer.Phone1", "malformed source path"),
        ("customer", "Phone1", 5, "mapping.customer.Phone1", "expected a string"),
        (
            "document",
            "ExternalInvoiceReference1",
            "name",
            "mapping.document.ExternalInvoiceReference1",
            "idempotency key",
        ),
        ("document", "InvoiceRows", "name", "mapping.document.InvoiceRows", "cannot be mapped"),
        ("document", "Name", "name", "mapping.document.Name", "not a Fortnox document field"),
        ("document", "YourReference", "contact.", "mapping.document.YourReference", "malformed"),
        ("document", "YourReference", "buyer.name", "mapping.document.YourReference", "malformed"),
        ("document", "Remarks", "owner.custom_fields", "mapping.document.Remarks", "malformed"),
        ("document", "Remarks", "a.b.c", "mapping.document.Remarks", "malformed"),
    ],
)
def test_bad_mapping_lines_name_the_key(
    section: str, field: str, src: Any, key: str, words: str
) -> None:
    overrides = {field: src}
    with pytest.raises(ConfigError) as exc:
        build_mappings(
            overrides if section == "customer" else {}, overrides if section == "document" else {}
        )
    assert exc.value.key == key
    assert words in str(exc.value)


@pytest.mark.parametrize(
    "src",
    [
        "name",
        "custom_fields.po_number",
        "custom_fields",
        "deal.name",
        "deal.custom_fields",
        "deal.custom_fields.po",
        "contact.email",
        "contact.first_name",
        "owner.name",
        "company.business_id",
        "company.custom_fields.x-1",
    ],
)
def test_document_source_paths_accepted(src: str) -> None:
    assert parse_source(src, document=True) is not None
    _, document_map = build_mappings({}, {"Comments": src})
    assert document_map["Comments"] == src


def test_unchecked_mapping_fails_like_build_mappings() -> None:
    with pytest.raises(ConfigError) as exc:
        map_company(full_company(), {"Name": "name", "Bogus": "x"})
    assert exc.value.key == "mapping.customer.Bogus"


def test_writable_tables_cover_the_defaults() -> None:
    assert set(DEFAULT_CUSTOMER_MAPPING) <= set(CUSTOMER_FIELDS)
    assert set(DEFAULT_DOCUMENT_MAPPING) <= set(DOCUMENT_FIELDS)


# --- the document table -----------------------------------------------------------------------


def test_every_document_row_comes_from_its_source() -> None:
    result = mapped(map_deal(ctx(deal(custom_fields={"po": "PO-77"})), "invoice"))
    p = result.payload
    assert p["YourReference"] == "Karin Kund"
    assert p["OurReference"] == "Sven Säljare"
    assert p["Currency"] == "SEK"
    assert p["Remarks"] == "Inköpsorder: PO-77"
    assert p["ExternalInvoiceReference1"] == f"limego:deal:{DEAL_ID}"
    assert p["InvoiceRows"] == [
        {"Description": "Licenser 2026", "Price": Decimal("1234.50"), "DeliveredQuantity": "1"}
    ]
    assert "CustomerNumber" not in p
    assert "Invoice" not in p
    assert result.warnings == ()


def test_references_are_cut_to_50_with_a_warning() -> None:
    long_contact = Person("c1", "K" * 40, "L" * 40)
    result = mapped(map_deal(ctx(contact=long_contact), "invoice"))
    assert result.payload["YourReference"] == "K" * 40 + " " + "L" * 9
    assert "YourReference: cut to 50 characters (was 81)" in result.warnings


def test_missing_contact_and_owner_leave_references_out() -> None:
    d = ctx()
    d = DealContext(deal=d.deal, company=d.company, contact=None, owner=None, field_defs=DEFS)
    p = mapped(map_deal(d, "invoice")).payload
    assert "YourReference" not in p
    assert "OurReference" not in p


def test_person_attributes_and_custom_fields_are_reachable() -> None:
    contact = Person(
        "c1",
        "Karin",
        "Kund",
        "karin@kund.se",
        {"job_title": "Inköpare", "custom_fields": {"ref": "R1"}},
    )
    _, document_map = build_mappings(
        {},
        {
            "YourReference": "contact.email",
            "Comments": "contact.job_title",
            "YourOrderNumber": "contact.custom_fields.ref",
            "DeliveryDate": "deal.expected_close_date",
        },
    )
    p = mapped(
        map_deal(
            ctx(deal(expected_close_date="2026-04-01T00:00:00Z"), contact=contact),
            "invoice",
            document_map,
        )
    ).payload
    assert p["YourReference"] == "karin@kund.se"
    assert p["Comments"] == "Inköpare"
    assert p["YourOrderNumber"] == "R1"
    assert p["DeliveryDate"] == "2026-04-01"


def test_external_invoice_reference_2_is_the_installation_stamp_not_mappable() -> None:
    with pytest.raises(ConfigError, match="installation stamp"):
        build_mappings({}, {"ExternalInvoiceReference2": "company.business_id"})


def test_remarks_list_filled_in_custom_fields_with_labels_in_definition_order() -> None:
    values = {
        "zeta": "sist",  # no definition: after the defined ones, label is the key
        "products": ["Licens", "Support"],
        "empty": "",
        "signed": True,
        "po": "PO-1\nrad två",
        "alpha": False,
        "none": None,
        "list": [],
        "obj": {},
    }
    p = mapped(map_deal(ctx(deal(custom_fields=values)), "invoice")).payload
    assert p["Remarks"] == (
        "Inköpsorder: PO-1, rad två\nAvtal signerat: Ja\nProdukter: Licens, Support\nalpha: Nej\nzeta: sist"
    )


def test_custom_field_lines_are_stable_whatever_the_input_order() -> None:
    a = custom_field_lines({"b": 1, "po": 2, "a": 3}, DEFS)
    b = custom_field_lines({"a": 3, "po": 2, "b": 1}, DEFS)
    assert a == b == "Inköpsorder: 2\na: 3\nb: 1"
    assert custom_field_lines({}, DEFS) is None
    assert custom_field_lines("x", DEFS) is None


def test_long_remarks_are_cut_with_a_warning() -> None:
    result = mapped(map_deal(ctx(deal(custom_fields={"po": "x" * 2000})), "invoice"))
    assert len(result.payload["Remarks"]) == 1024
    assert any(w.startswith("Remarks: cut to 1024 characters") for w in result.warnings)


@pytest.mark.parametrize(
    "raw, code", [("SEK", "SEK"), ("EUR", "EUR"), ("eur", "EUR"), (" nok ", "NOK")]
)
def test_currencies(raw: str, code: str) -> None:
    assert mapped(map_deal(ctx(deal(currency=raw)), "invoice")).payload["Currency"] == code


@pytest.mark.parametrize("raw", [None, ""])
def test_missing_currency_is_left_out(raw: Any) -> None:
    assert "Currency" not in mapped(map_deal(ctx(deal(currency=raw)), "invoice")).payload


def test_unknown_currency_rejects_the_deal() -> None:
    r = rejected(map_deal(ctx(deal(currency="Kronor")), "invoice"))
    assert "'Kronor'" in r.reason
    assert "SEK" in r.hint


def test_decimal_value_stays_exact_through_json() -> None:
    p = mapped(map_deal(ctx(deal(value="1234.50")), "invoice")).payload
    price = p["InvoiceRows"][0]["Price"]
    assert isinstance(price, Decimal)
    assert str(price) == "1234.50"
    text = to_json(p)
    assert '"Price": 1234.50' in text
    back = from_json(text)
    assert back["InvoiceRows"][0]["Price"] == Decimal("1234.50")
    assert str(back["InvoiceRows"][0]["Price"]) == "1234.50"
    assert payload_hash(back) == payload_hash(p)


def test_order_rows_carry_ordered_and_delivered_quantity() -> None:
    p = mapped(map_deal(ctx(), "order")).payload
    assert "InvoiceRows" not in p
    assert p["OrderRows"] == [
        {
            "Description": "Licenser 2026",
            "Price": Decimal("1234.50"),
            "OrderedQuantity": "1",
            "DeliveredQuantity": "1",
        }
    ]


@pytest.mark.parametrize("kind", ["invoice", "order"])
def test_article_and_account_go_on_the_row(kind: DocumentKind) -> None:
    p = mapped(map_deal(ctx(), kind, article_number="LIC-1", account_number="3001")).payload
    row = p["InvoiceRows" if kind == "invoice" else "OrderRows"][0]
    assert row["ArticleNumber"] == "LIC-1"
    assert row["AccountNumber"] == 3001


def test_bad_account_number_is_rejected() -> None:
    r = rejected(map_deal(ctx(), "invoice", account_number="30010"))
    assert "sync.account_number" in r.reason


def test_long_deal_name_is_cut_on_the_row_with_a_warning() -> None:
    result = mapped(map_deal(ctx(deal(name="Licenser\n" + "x" * 300)), "invoice"))
    desc = result.payload["InvoiceRows"][0]["Description"]
    assert len(desc) == 255
    assert desc.startswith("Licenser, xxx")
    assert any("row Description: deal name cut to 255 characters" in w for w in result.warnings)


def test_deal_without_company_is_rejected() -> None:
    r = rejected(map_deal(ctx(no_company=True), "invoice"))
    assert r.reason == "deal has no company"


@pytest.mark.parametrize("name", [None, "", "  "])
def test_deal_without_name_is_rejected(name: Any) -> None:
    assert rejected(map_deal(ctx(deal(name=name)), "invoice")).reason == "deal has no name"


@pytest.mark.parametrize("value", [None, ""])
def test_deal_without_value_is_rejected(value: Any) -> None:
    assert rejected(map_deal(ctx(deal(value=value)), "invoice")).reason == "deal has no value"


def test_deal_with_unparseable_value_is_rejected() -> None:
    r = rejected(map_deal(ctx(deal(value="12 tkr")), "invoice"))
    assert "'12 tkr'" in r.reason


@pytest.mark.parametrize("value, shown", [("-5.00", "-5.00"), ("0", "0"), ("0.00", "0.00")])
def test_non_positive_value_is_rejected(value: str, shown: str) -> None:
    r = rejected(map_deal(ctx(deal(value=value)), "invoice"))
    assert (
        r.reason == f"deal value is {shown}; invoices for zero or negative amounts are not created"
    )
    assert r.hint == "set a positive value in Lime Go, or set sync.require_positive_value = false"


def test_non_positive_value_allowed_when_configured() -> None:
    p = mapped(map_deal(ctx(deal(value="-5.00")), "order", require_positive_value=False)).payload
    assert p["OrderRows"][0]["Price"] == Decimal("-5.00")


def test_absurdly_large_value_is_rejected() -> None:
    assert "12 digits" in rejected(map_deal(ctx(deal(value="1000000000000")), "invoice")).reason


# --- diffing ----------------------------------------------------------------------------------


def test_payload_hash_is_stable_and_order_independent() -> None:
    a = {"Name": "A", "Phone1": "1", "Rows": [{"Price": Decimal("1.50")}]}
    b = {"Rows": [{"Price": Decimal("1.50")}], "Phone1": "1", "Name": "A"}
    assert payload_hash(a) == payload_hash(b)
    assert len(payload_hash(a)) == 64
    # Pinned: a change in canonicalisation would make every stored record look changed.
    canonical = b'{"Name":"\\u00c5","Price":1.50}'
    assert (
        payload_hash({"Price": Decimal("1.50"), "Name": "Å"})
        == hashlib.sha256(canonical).hexdigest()
    )


def test_payload_hash_sees_decimal_digits_and_values() -> None:
    assert payload_hash({"P": Decimal("1.5")}) != payload_hash({"P": Decimal("1.50")})
    assert payload_hash({"Name": "A"}) != payload_hash({"Name": "B"})


def test_changed_fields_reports_changes_additions_and_removals() -> None:
    old = {"Name": "A", "Phone1": "1", "City": "Sthlm", "ExternalReference": "k"}
    new = {"Name": "A", "Phone1": "2", "ZipCode": "12345", "ExternalReference": "k"}
    assert changed_fields(old, new) == {
        "Phone1": ("1", "2"),
        "ZipCode": (None, "12345"),
        "City": ("Sthlm", None),
    }
    assert changed_fields(None, {"Name": "A"}) == {"Name": (None, "A")}
    assert changed_fields(new, new) == {}


def test_update_body_blanks_removed_fields() -> None:
    changes = {"Phone1": ("1", "2"), "City": ("Sthlm", None)}
    assert update_body(changes) == {"Phone1": "2", "City": "API_BLANK"}


def test_from_json_refuses_a_non_object() -> None:
    with pytest.raises(ValueError):
        from_json("[1]")


def test_stored_payload_compares_equal_after_a_round_trip() -> None:
    p = mapped(map_company(full_company())).payload
    assert changed_fields(from_json(to_json(p)), p) == {}
