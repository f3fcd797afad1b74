"""The sandbox as the published APIs describe them (issue 15), and the test API the other
issues need: 406 without the JSON:API media type, string revisions, documented includes and
filters, Fortnox's list items and envelope, customer deletion, document states, clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
import requests

from limefort_sandbox import Sandbox

from .conftest import error_code, jsonapi_code, limego_session, read_all
from .test_fortnox_server import CUSTOMER, api, invoice, new_customer


def lime(sb: Sandbox, path: str) -> str:
    return f"{sb.limego_url}/api/v1/{path}"


# --- Lime Go ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "*/*",
        "application/json",
        'application/vnd.api+json; ext="https://example.org/ext"',  # only with parameters
    ],
)
def test_limego_answers_406_without_the_jsonapi_media_type(sb: Sandbox, accept) -> None:
    s = limego_session(sb)
    if accept is None:
        del s.headers["Accept"]
        s.headers["Accept"] = None  # requests would otherwise send its default */*
    else:
        s.headers["Accept"] = accept
    r = s.get(lime(sb, "companies"))
    assert r.status_code == 406 and jsonapi_code(r) == "not_acceptable"
    s.headers["Accept"] = "text/html, application/vnd.api+json"
    assert s.get(lime(sb, "companies")).status_code == 200


def test_revisions_are_numeric_strings_and_a_get_has_an_etag(sb: Sandbox, lg) -> None:
    for c in read_all(lg, lime(sb, "companies")):
        assert isinstance(c["meta"]["revision"], str) and c["meta"]["revision"].isdigit()
    cid = next(iter(sb.limego.companies))
    r = lg.get(lime(sb, f"companies/{cid}"))
    assert r.headers["ETag"] == f'"{cid}:{sb.limego.companies[cid]["meta"]["revision"]}"'
    owner = next(iter(sb.limego.owners))
    r = lg.get(lime(sb, f"owners/{owner}"))
    assert "meta" not in r.json()["data"] and "ETag" not in r.headers


def test_documented_includes_and_filters(sb: Sandbox, lg) -> None:
    doc = lg.get(lime(sb, "companies"), params={"include": "owner", "page[size]": 100}).json()
    assert {r["type"] for r in doc["included"]} == {"owners"}
    doc = lg.get(lime(sb, "contacts"), params={"include": "company", "page[size]": 5}).json()
    assert doc["included"] and {r["type"] for r in doc["included"]} == {"companies"}
    cid = sb.limego.add_contact(first_name="Åsa", last_name="Öberg", status="lead")
    got = read_all(lg, lime(sb, "contacts"), **{"filter[status]": "lead"})
    assert [c["id"] for c in got] == [cid]
    r = lg.get(lime(sb, "contacts"), params={"filter[status]": "customer"})
    assert r.status_code == 400
    assert read_all(lg, lime(sb, "stages"), **{"filter[updated_since]": "2000-01-01"})
    assert read_all(
        lg, lime(sb, "custom-field-definitions"), **{"filter[updated_since]": "2000-01-01"}
    )
    future = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert read_all(lg, lime(sb, "stages"), **{"filter[updated_since]": future}) == []


def test_the_documented_attributes_are_served(sb: Sandbox, lg) -> None:
    company = read_all(lg, lime(sb, "companies"))[0]["attributes"]
    assert {"description", "domain", "industry"} <= set(company)
    contact = read_all(lg, lime(sb, "contacts"))[0]
    assert {"department", "notes", "status", "custom_fields"} <= set(contact["attributes"])
    assert set(contact["relationships"]) == {"company", "tags"}
    stage = read_all(lg, lime(sb, "stages"))[0]["attributes"]
    assert stage["created_at"] and stage["updated_at"]


def test_a_deleted_record_is_gone_and_in_the_change_feed(sb: Sandbox, lg) -> None:
    cursor = lg.get(lime(sb, "changes")).json()["meta"]["cursor"]
    deal = next(iter(sb.limego.deals))
    company = next(iter(sb.limego.companies))
    sb.limego.delete_deal(deal)
    sb.limego.delete_company(company)
    assert lg.get(lime(sb, f"deals/{deal}")).status_code == 404
    assert lg.get(lime(sb, f"companies/{company}")).status_code == 404
    assert deal not in {d["id"] for d in read_all(lg, lime(sb, "deals"), **{"page[size]": 100})}
    changes = lg.get(lime(sb, "changes"), params={"cursor": cursor}).json()["data"]
    assert [(c["attributes"]["resource_id"], c["attributes"]["deleted"]) for c in changes] == [
        (deal, True),
        (company, True),
    ]


def test_a_clock_offset_moves_timestamps_and_the_date_header(sb: Sandbox, lg) -> None:
    sb.limego.clock_offset = -15 * 60
    cid = sb.limego.add_company(name="Klocka AB")
    stamped = datetime.fromisoformat(sb.limego.companies[cid]["attributes"]["updated_at"][:-1])
    behind = datetime.now(UTC).replace(tzinfo=None) - stamped
    assert timedelta(minutes=14) < behind < timedelta(minutes=16)
    r = lg.get(lime(sb, "stages"))
    header_behind = datetime.now(UTC) - parsedate_to_datetime(r.headers["Date"])
    assert timedelta(minutes=14) < header_behind < timedelta(minutes=16)
    # the token endpoint's answers are Lime Go's too
    r = requests.post(f"{sb.limego_url}/oauth/token", data={"grant_type": "x"}, timeout=5)
    assert datetime.now(UTC) - parsedate_to_datetime(r.headers["Date"]) > timedelta(minutes=14)


# --- Fortnox ------------------------------------------------------------------------------------


def test_fortnox_list_items_carry_only_the_list_fields(sb: Sandbox, fx) -> None:
    number = new_customer(fx, sb, ExternalReference="limego:company:1")
    r = fx.post(api(sb, "invoices"), json=invoice(number))
    assert r.status_code == 201, r.text
    r = fx.post(
        api(sb, "orders"),
        json={
            "Order": {
                "CustomerNumber": number,
                "OrderRows": [{"Description": "x", "Price": 1, "OrderedQuantity": "1"}],
            }
        },
    )
    assert r.status_code == 201, r.text
    customers = fx.get(api(sb, "customers")).json()
    assert list(customers) == ["MetaInformation", "Customers"]
    assert set(customers["Customers"][0]) == {
        "@url",
        "CustomerNumber",
        "Name",
        "OrganisationNumber",
        "Address1",
        "Address2",
        "City",
        "ZipCode",
        "Email",
        "Phone",
    }
    invoices = fx.get(api(sb, "invoices")).json()
    assert list(invoices) == ["MetaInformation", "Invoices"]
    item = invoices["Invoices"][0]
    assert set(item) == {
        "@url",
        "Balance",
        "DocumentNumber",
        "CustomerNumber",
        "CustomerName",
        "Currency",
        "Total",
        "ExternalInvoiceReference1",
        "ExternalInvoiceReference2",
        "InvoiceDate",
        "DueDate",
        "Cancelled",
        "Booked",
        "Sent",
    }
    assert str(item["Balance"]) == str(item["Total"]) == "1000"
    orders = fx.get(api(sb, "orders")).json()
    assert list(orders) == ["MetaInformation", "Orders"]
    assert "Booked" not in orders["Orders"][0] and "DeliveryDate" in orders["Orders"][0]


def test_fields_the_api_has(sb: Sandbox, fx) -> None:
    number = new_customer(fx, sb, EmailOrder="order@akesson.se", EmailOffer="offert@akesson.se")
    assert sb.fortnox.customer(number)["EmailOffer"] == "offert@akesson.se"
    r = fx.post(api(sb, "invoices"), json=invoice(number, DeliveryDate="2026-03-01"))
    assert r.status_code == 201 and r.json()["Invoice"]["DeliveryDate"] == "2026-03-01"
    long_row = {"Description": "d" * 400, "Price": 1, "DeliveredQuantity": "1"}
    r = fx.post(
        api(sb, "invoices"), json=invoice(number, InvoiceRows=[long_row], YourOrderNumber="o" * 75)
    )
    assert r.status_code == 201, r.text  # no write limit on a row's Description; 75 for the PO
    r = fx.post(api(sb, "invoices"), json=invoice(number, YourOrderNumber="o" * 76))
    assert r.status_code == 400 and error_code(r) == 2009002


def test_active_flag_and_filter(sb: Sandbox, fx) -> None:
    a = new_customer(fx, sb)
    b = new_customer(fx, sb)
    sb.fortnox.set_active(b, False)
    assert sb.fortnox.customer(b)["Active"] is False
    active = fx.get(api(sb, "customers"), params={"filter": "active"}).json()["Customers"]
    inactive = fx.get(api(sb, "customers"), params={"filter": "inactive"}).json()["Customers"]
    assert [c["CustomerNumber"] for c in active] == [a]
    assert [c["CustomerNumber"] for c in inactive] == [b]
    r = fx.put(api(sb, f"customers/{b}"), json={"Customer": {"Active": True}})
    assert r.status_code == 200 and r.json()["Customer"]["Active"] is True


def test_delete_a_customer_and_its_number_stays_reserved(sb: Sandbox, fx) -> None:
    number = new_customer(fx, sb, CustomerNumber="K1")
    r = fx.delete(api(sb, "customers/K1"))
    assert r.status_code == 204 and not r.content
    assert fx.get(api(sb, "customers/K1")).status_code == 404
    r = fx.put(api(sb, "customers/K1"), json={"Customer": {"Name": "x"}})
    assert r.status_code == 404 and error_code(r) == 2000433
    r = fx.post(api(sb, "invoices"), json=invoice(number))
    assert r.status_code == 400 and error_code(r) == 2000433
    r = fx.post(api(sb, "customers"), json={"Customer": {**CUSTOMER, "CustomerNumber": "K1"}})
    assert r.status_code == 400 and error_code(r) == 2000637
    auto = new_customer(fx, sb)
    sb.fortnox.delete_customer(auto)
    assert new_customer(fx, sb) != auto  # an assigned number is never handed out again
    assert fx.delete(api(sb, "customers/K1")).status_code == 404


def test_document_states_and_updates(sb: Sandbox, fx) -> None:
    number = new_customer(fx, sb)
    doc = sb.fortnox.add_invoice(
        {
            "CustomerNumber": number,
            "ExternalInvoiceReference1": "limego:deal:by-hand",
            "InvoiceRows": [{"Description": "x", "Price": 5, "DeliveredQuantity": "1"}],
        }
    )
    assert sb.fortnox.documents_by_ref("limego:deal:by-hand")[0]["DocumentNumber"] == doc
    r = fx.put(
        api(sb, f"invoices/{doc}"),
        json={
            "Invoice": {"InvoiceRows": [{"Description": "y", "Price": 7, "DeliveredQuantity": "1"}]}
        },
    )
    assert r.status_code == 200 and str(r.json()["Invoice"]["Total"]) == "7"
    sb.fortnox.mark_sent(doc)
    assert fx.get(api(sb, f"invoices/{doc}")).json()["Invoice"]["Sent"] is True
    sb.fortnox.book_invoice(doc)
    r = fx.put(api(sb, f"invoices/{doc}"), json={"Invoice": {"YourReference": "z"}})
    assert r.status_code == 400 and error_code(r) == 2009012
    other = sb.fortnox.add_invoice({"CustomerNumber": number})
    sb.fortnox.cancel_document(other)
    listed = fx.get(api(sb, "invoices"), params={"filter": "cancelled"}).json()["Invoices"]
    assert [i["DocumentNumber"] for i in listed] == [other] and str(listed[0]["Balance"]) == "0"
    order = sb.fortnox.add_order(
        {
            "CustomerNumber": number,
            "OrderRows": [{"Description": "x", "Price": 1, "OrderedQuantity": "1"}],
        }
    )
    r = fx.put(api(sb, f"orders/{order}"), json={"Order": {"YourReference": "Anna"}})
    assert r.status_code == 200 and r.json()["Order"]["YourReference"] == "Anna"


def test_lastmodified_on_invoice_and_order_lists(sb: Sandbox, fx) -> None:
    number = new_customer(fx, sb)
    sb.fortnox.add_invoice({"CustomerNumber": number})
    sb.fortnox.add_order(
        {
            "CustomerNumber": number,
            "OrderRows": [{"Description": "x", "Price": 1, "OrderedQuantity": "1"}],
        }
    )
    from zoneinfo import ZoneInfo

    stockholm = ZoneInfo("Europe/Stockholm")
    past = (datetime.now(stockholm) - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M")
    future = (datetime.now(stockholm) + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M")
    for path, key in (("invoices", "Invoices"), ("orders", "Orders")):
        assert len(fx.get(api(sb, path), params={"lastmodified": past}).json()[key]) == 1
        assert fx.get(api(sb, path), params={"lastmodified": future}).json()[key] == []


def test_per_service_latency() -> None:
    sb = Sandbox(seed=1, companies=1, deals=1, limego_latency=0.5, fortnox_latency=0.0, serve=False)
    assert (sb.limego.latency, sb.fortnox.latency) == (0.5, 0.0)
    sb.latency = 0.1
    assert (sb.limego.latency, sb.fortnox.latency) == (0.1, 0.1)
    sb.stop()
