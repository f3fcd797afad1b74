"""Whatever Lime Go holds, the mapping returns a rejection or a payload Fortnox accepts.

`assert_valid_for_fortnox` is written from fortnox.md on purpose, not from the mapping's own
tables, so a wrong limit or a leaky cleaner in the mapping shows up here.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pycountry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from limefort.core.limits import MAX_TEXT_ROWS
from limefort.core.models import Company, CustomFieldDef, Deal, Person
from limefort.mapping import (
    DEFAULT_CUSTOMER_MAPPING,
    DealContext,
    Mapped,
    Rejected,
    build_mappings,
    from_json,
    map_company,
    map_deal,
    payload_hash,
    to_json,
)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# (limit, multiline) per Fortnox field, from fortnox.md.
CUSTOMER_LIMITS: dict[str, tuple[int, bool]] = {
    "Name": (1024, False),
    "OrganisationNumber": (30, False),
    "Phone1": (1024, False),
    "Phone2": (1024, False),
    "Email": (1024, False),
    "Address1": (1024, False),
    "Address2": (1024, False),
    "City": (1024, False),
    "ZipCode": (10, False),
    "CountryCode": (2, False),
    "DeliveryAddress1": (1024, False),
    "DeliveryCity": (1024, False),
    "DeliveryZipCode": (10, False),
    "DeliveryCountryCode": (2, False),
    "VisitingAddress": (128, False),
    "VisitingZipCode": (10, False),
    "VisitingCity": (128, False),
    "VisitingCountryCode": (2, False),
    "YourReference": (50, False),
    "OurReference": (50, False),
    "Comments": (1024, True),
    "Currency": (3, False),
    "ExternalReference": (1024, False),
}
DOCUMENT_LIMITS: dict[str, tuple[int, bool]] = {
    "YourReference": (50, False),
    "OurReference": (50, False),
    "Currency": (3, False),
    "Remarks": (1024, True),
    "Comments": (1024, True),
    "YourOrderNumber": (30, False),  # the lower of two sources (fortnox_limits)
    "ExternalInvoiceReference1": (80, False),
    "ExternalInvoiceReference2": (80, False),
    "DeliveryDate": (10, False),
}
ROW_DESCRIPTION_LIMIT = 255  # limefort.core.limits.ROW (the read model's length)


def assert_storable_text(field: str, value: Any, limit: int, multiline: bool) -> None:
    assert isinstance(value, str), (field, value)
    assert value, f"{field} is empty: absent fields must be left out"
    assert len(value) <= limit, (field, len(value), limit)
    assert value == value.strip(), (field, value)
    for ch in value:
        if ch == "\n":
            assert multiline, f"newline in single-line field {field}: {value!r}"
            continue
        ch.encode("cp1252")  # raises on a character outside Windows-1252
        assert unicodedata.category(ch)[0] != "C", (field, ch)
        assert ch == " " or not ch.isspace(), (field, ch)


def assert_field(field: str, value: Any, limits: dict[str, tuple[int, bool]]) -> None:
    assert field in limits, f"unexpected field {field}"
    limit, multiline = limits[field]
    assert_storable_text(field, value, limit, multiline)
    if field.endswith("CountryCode"):
        assert re.fullmatch(r"[A-Z]{2}", value)
        assert pycountry.countries.get(alpha_2=value) is not None
    if field == "OrganisationNumber":
        assert re.fullmatch(r"\d{6}-\d{4}", value)
    if field == "Currency":
        assert re.fullmatch(r"[A-Z]{3}", value)
        assert pycountry.currencies.get(alpha_3=value) is not None
    if field == "Email":
        assert value.isascii() and value.count("@") == 1
    if field == "DeliveryDate":
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)


def assert_valid_for_fortnox(payload: dict[str, Any], kind: str) -> None:
    """`kind` is "customer", "invoice" or "order"."""
    if kind == "customer":
        assert payload.get("Name")
        for field, value in payload.items():
            assert_field(field, value, CUSTOMER_LIMITS)
        return
    rows_key = "InvoiceRows" if kind == "invoice" else "OrderRows"
    assert "CustomerNumber" not in payload
    assert ("OrderRows" if kind == "invoice" else "InvoiceRows") not in payload
    for field, value in payload.items():
        if field != rows_key:
            assert_field(field, value, DOCUMENT_LIMITS)
    rows = payload[rows_key]
    # One priced row, then text rows (only a Description) for what Remarks cannot hold.
    assert isinstance(rows, list) and 1 <= len(rows) <= 1 + MAX_TEXT_ROWS
    for text_row in rows[1:]:
        assert set(text_row) == {"Description"}
        assert_storable_text("Description", text_row["Description"], ROW_DESCRIPTION_LIMIT, False)
    row = rows[0]
    assert_storable_text("Description", row["Description"], ROW_DESCRIPTION_LIMIT, False)
    assert isinstance(row["Price"], Decimal) and row["Price"].is_finite()
    assert abs(row["Price"]) < Decimal(10) ** 12
    assert row["DeliveredQuantity"] == "1"
    if kind == "order":
        assert row["OrderedQuantity"] == "1"
    expected = {
        "Description",
        "Price",
        "DeliveredQuantity",
        "OrderedQuantity",
        "ArticleNumber",
        "AccountNumber",
    }
    assert set(row) <= expected
    if "ArticleNumber" in row:
        assert_storable_text("ArticleNumber", row["ArticleNumber"], 50, False)
    if "AccountNumber" in row:
        assert 1000 <= row["AccountNumber"] <= 9999


# --- strategies -------------------------------------------------------------------------------

TRICKY = "\n\r\t\x00\x07\x1f\x7f\x85\u00a0\u00ad\u200b\u200d\u2028\u2029\ufeff\ufb01😀🇸🇪é\u0301ÅÄÖ,;:-–—“”…€ ŁşМ"
tricky_text = st.text(alphabet=st.sampled_from(list(TRICKY)) | st.characters(), max_size=40)
long_text = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=6), st.integers(1, 700))
any_text = st.one_of(st.text(), tricky_text, long_text)
orgnr_like = st.from_regex(r"\A(16|19|20)?\d{6}[- ]?\d{4}\Z") | st.sampled_from(
    ["556036-0793", "5560360793", "165560360793", "19811218-9876", "SE556036079301"]
)
country_like = st.sampled_from(
    ["SE", "Sverige", "Norge", "swe", "Atlantis", "gb", "Förenta staterna"]
)
decimal_text = st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str)
positive_text = st.decimals(min_value=Decimal("0.01"), max_value=10**9, places=2).map(str)
scalar = st.one_of(
    st.none(), any_text, st.booleans(), st.integers(), st.decimals(), st.floats(), decimal_text
)
value = st.recursive(
    scalar,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


def attr(extra: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Any]:
    return value if extra is None else st.one_of(value, extra)


custom_fields = st.one_of(
    st.dictionaries(
        st.sampled_from(
            [
                "visiting_street",
                "visiting_postal_code",
                "visiting_city",
                "visiting_country",
                "mobile",
                "notes",
            ]
        )
        | st.text(max_size=10),
        attr(country_like),
        max_size=8,
    ),
    value,
)

# Mostly real text where a missing value only leads to the one rejection already tested.
likely_text = st.one_of(st.text(min_size=1), tricky_text, long_text, long_text, value)

companies = st.builds(
    lambda a, id_: Company(id_, a, datetime(2026, 1, 1, tzinfo=UTC)),
    st.fixed_dictionaries(
        {"name": likely_text},
        optional={
            "business_id": attr(orgnr_like),
            "phone": attr(),
            "email": attr(st.just("info@acme.se")),
            "street": attr(),
            "postal_code": attr(),
            "city": attr(),
            "country": attr(country_like),
            "currency": attr(st.sampled_from(["SEK", "eur", "XYZ"])),
            "custom_fields": custom_fields,
        },
    ),
    st.uuids().map(str),
)

WIDE_CUSTOMER, _ = build_mappings(
    {
        "Phone2": "custom_fields.mobile",
        "Email": "email",
        "Address2": "custom_fields.notes",
        "VisitingAddress": "street",
        "VisitingZipCode": "postal_code",
        "VisitingCity": "city",
        "VisitingCountryCode": "country",
        "YourReference": "name",
        "OurReference": "phone",
        "Comments": "custom_fields.notes",
        "Currency": "currency",
    },
    None,
)
_, WIDE_DOCUMENT = build_mappings(
    None,
    {
        "Comments": "company.custom_fields.notes",
        "YourOrderNumber": "custom_fields.po",
        "DeliveryDate": "expected_close_date",
        "YourReference": "contact.email",
    },
)

people = st.builds(
    Person,
    st.uuids().map(str),
    st.none() | any_text,
    st.none() | any_text,
    st.none() | any_text,
    st.dictionaries(st.sampled_from(["name", "job_title", "custom_fields"]), value, max_size=3),
)
field_defs = st.dictionaries(
    st.text(max_size=8),
    st.builds(CustomFieldDef, st.text(max_size=8), any_text, st.just("deal")),
    max_size=5,
).map(lambda d: {k: CustomFieldDef(k, v.label, v.entity_type) for k, v in d.items()})

deals = st.builds(
    lambda a, id_: Deal(id_, a, datetime(2026, 1, 1, tzinfo=UTC), "c", "s"),
    st.fixed_dictionaries(
        {
            "name": likely_text,
            "value": st.one_of(positive_text, positive_text, decimal_text, value),
        },
        optional={
            "currency": attr(st.sampled_from(["SEK", "eur", "NOK", "XYZ", ""])),
            "expected_close_date": attr(
                st.sampled_from(["2026-05-01", "2026-05-01T10:00:00Z", "x"])
            ),
            "custom_fields": st.one_of(
                st.dictionaries(st.text(max_size=8), value, max_size=6), value
            ),
        },
    ),
    st.uuids().map(str),
)
contexts = st.builds(
    DealContext,
    deal=deals,
    company=st.one_of(companies, companies, companies, st.none()),
    contact=st.none() | people,
    owner=st.none() | people,
    field_defs=field_defs,
)


# --- properties -------------------------------------------------------------------------------


def assert_rejection_is_explained(result: Rejected) -> None:
    assert isinstance(result.reason, str) and result.reason
    assert isinstance(result.hint, str) and result.hint


@FAST
@given(companies, st.booleans(), st.sampled_from(["default", "wide"]))
def test_any_company_maps_to_a_valid_customer_or_a_rejection(
    company: Company, require_orgnr: bool, which: str
) -> None:
    mapping = WIDE_CUSTOMER if which == "wide" else DEFAULT_CUSTOMER_MAPPING
    result = map_company(company, mapping, require_orgnr=require_orgnr)
    if isinstance(result, Rejected):
        assert_rejection_is_explained(result)
        return
    assert isinstance(result, Mapped)
    assert_valid_for_fortnox(result.payload, "customer")
    assert result.payload["ExternalReference"] == f"limego:company:{company.id}"
    if require_orgnr:
        assert "OrganisationNumber" in result.payload
    assert all(isinstance(w, str) and w for w in result.warnings)


@FAST
@given(
    contexts,
    st.sampled_from(["invoice", "order"]),
    st.sampled_from(["default", "wide"]),
    st.booleans(),
    st.sampled_from(["", "ART-1"]),
    st.sampled_from(["", "3001"]),
)
def test_any_deal_maps_to_a_valid_document_or_a_rejection(
    ctx: DealContext, kind: Any, which: str, require_positive: bool, article: str, account: str
) -> None:
    mapping = WIDE_DOCUMENT if which == "wide" else build_mappings(None, None)[1]
    result = map_deal(
        ctx,
        kind,
        mapping,
        article_number=article,
        account_number=account,
        require_positive_value=require_positive,
    )
    if isinstance(result, Rejected):
        assert_rejection_is_explained(result)
        return
    assert ctx.company is not None
    assert_valid_for_fortnox(result.payload, kind)
    assert result.payload["ExternalInvoiceReference1"] == f"limego:deal:{ctx.deal.id}"
    row = result.payload["InvoiceRows" if kind == "invoice" else "OrderRows"][0]
    if require_positive:
        assert row["Price"] > 0
    assert row["Price"] == Decimal(str(ctx.deal.attributes["value"]).strip())
    assert (row.get("ArticleNumber") or "") == article
    assert str(row.get("AccountNumber") or "") == account


@FAST
@given(contexts)
def test_payloads_survive_storage_exactly(ctx: DealContext) -> None:
    result = map_deal(ctx, "invoice", require_positive_value=False)
    if isinstance(result, Mapped):
        back = from_json(to_json(result.payload))
        assert back == result.payload
        assert payload_hash(back) == payload_hash(result.payload)
