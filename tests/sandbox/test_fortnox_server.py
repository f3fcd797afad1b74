"""The sandbox Fortnox server over HTTP: OAuth (consent, code, refresh rotation, service
account), API auth, scopes and licences, validation with Fortnox's error codes, customers,
invoices, orders, lists, and the sliding-window rate limit."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests

from limefort_sandbox import Sandbox

from .conftest import error_code, fortnox_session, fortnox_token

CUSTOMER = {
    "Name": "Åkesson & Söner AB",
    "OrganisationNumber": "556036-0793",
    "Address1": "Storgatan 1",
    "ZipCode": "111 22",
    "City": "Stockholm",
    "CountryCode": "SE",
    "Phone1": "08-123 45 67",
    "Email": "info@akesson.se",
}


def api(sb: Sandbox, path: str) -> str:
    return f"{sb.fortnox_url}/3/{path}"


def token_request(sb: Sandbox, auth: Any = None, headers: Any = None, **form: str):
    return requests.post(
        sb.fortnox_token_url,
        data=form,
        auth=auth if auth is not None else (sb.fortnox_client_id, sb.fortnox_client_secret),
        headers=headers or {},
        timeout=5,
    )


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def post_customer(fx: requests.Session, sb: Sandbox, **fields: Any) -> requests.Response:
    return fx.post(api(sb, "customers"), json={"Customer": {**CUSTOMER, **fields}})


def new_customer(fx: requests.Session, sb: Sandbox, **fields: Any) -> str:
    r = post_customer(fx, sb, **fields)
    assert r.status_code == 201, r.text
    return r.json()["Customer"]["CustomerNumber"]


def invoice(number: str, **fields: Any) -> dict[str, Any]:
    body = {
        "CustomerNumber": number,
        "ExternalInvoiceReference1": "limego:deal:1",
        "InvoiceRows": [{"Description": "Konsulttimmar", "Price": 1000, "DeliveredQuantity": "1"}],
    }
    body.update(fields)
    return {"Invoice": body}


# --- OAuth: token endpoint ---------------------------------------------------------------------


def test_token_endpoint_needs_basic_auth(sb: Sandbox) -> None:
    r = token_request(sb, auth=("wrong", "creds"), grant_type="client_credentials")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = requests.post(
        sb.fortnox_token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": sb.fortnox_client_id,
            "client_secret": sb.fortnox_client_secret,
        },
        headers={"TenantId": sb.fortnox_tenant_id},
        timeout=5,
    )
    assert r.status_code == 401  # credentials in the body are not enough
    r = token_request(sb, grant_type="password")
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


def test_client_credentials_with_tenant_id(sb: Sandbox) -> None:
    r = token_request(
        sb, headers={"TenantId": sb.fortnox_tenant_id}, grant_type="client_credentials"
    )
    body = r.json()
    assert r.status_code == 200 and "refresh_token" not in body
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    # the service account was consented with every scope the sandbox knows (check's registers:
    # bookkeeping for the sales account, currency for rates)
    assert set(body["scope"].split()) == {
        "customer", "invoice", "order", "companyinformation", "bookkeeping", "currency"
    }  # fmt: skip
    c = claims(body["access_token"])
    assert str(c["tenantId"]) == sb.fortnox_tenant_id and c["exp"] > time.time() + 3500
    assert c["scope"] == body["scope"]
    r = token_request(sb, headers={"TenantId": "42"}, grant_type="client_credentials")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = token_request(sb, grant_type="client_credentials")
    assert r.status_code == 400


def test_refresh_tokens_rotate_and_are_single_use(sb: Sandbox) -> None:
    first = sb.fortnox.issue_refresh_token()
    token = first
    for _ in range(3):  # a chain of rotations works
        r = token_request(sb, grant_type="refresh_token", refresh_token=token)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["refresh_token"] != token and body["access_token"]
        assert (
            fortnox_session(sb, body["access_token"]).get(api(sb, "customers")).status_code == 200
        )
        token = body["refresh_token"]
    r = token_request(sb, grant_type="refresh_token", refresh_token=first)  # spent
    assert r.status_code == 400
    assert r.json() == {"error": "invalid_grant", "error_description": "Invalid refresh token"}
    r = token_request(sb, grant_type="refresh_token", refresh_token="never-issued")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_reusing_a_spent_refresh_token_logs_the_chain_out(sb: Sandbox) -> None:
    """Fortnox: two parallel refreshes log the integration out."""
    old = sb.fortnox.issue_refresh_token()
    new = token_request(sb, grant_type="refresh_token", refresh_token=old).json()["refresh_token"]
    assert token_request(sb, grant_type="refresh_token", refresh_token=old).status_code == 400
    r = token_request(sb, grant_type="refresh_token", refresh_token=new)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_old_refresh_tokens_expire(sb: Sandbox) -> None:
    token = sb.fortnox.issue_refresh_token()
    sb.fortnox.refresh_token_lifetime = 0.2
    time.sleep(0.3)
    r = token_request(sb, grant_type="refresh_token", refresh_token=token)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def consent(sb: Sandbox, **params: str) -> requests.Response:
    base = {
        "client_id": sb.fortnox_client_id,
        "response_type": "code",
        "state": "xyz123",
        "scope": "customer invoice",
        "redirect_uri": "http://127.0.0.1:8765/callback",
        "access_type": "offline",
    }
    base.update(params)
    base = {k: v for k, v in base.items() if v is not None}
    return requests.get(sb.fortnox_auth_url, params=base, allow_redirects=False, timeout=5)


def test_authorization_code_flow(sb: Sandbox) -> None:
    r = consent(sb)
    assert r.status_code == 302
    loc = urlsplit(r.headers["Location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == "http://127.0.0.1:8765/callback"
    q = {k: v[0] for k, v in parse_qs(loc.query).items()}
    assert q["state"] == "xyz123"
    consent_ = sb.fortnox.last_consent
    assert consent_ is not None
    assert consent_["scopes"] == ("customer", "invoice") and consent_["account_type"] is None
    r = token_request(
        sb,
        grant_type="authorization_code",
        code=q["code"],
        redirect_uri="http://127.0.0.1:8765/callback",
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["refresh_token"] and body["scope"] == "customer invoice"
    fx = fortnox_session(sb, body["access_token"])
    assert fx.get(api(sb, "customers")).status_code == 200
    assert error_code(fx.get(api(sb, "orders"))) == 2000663  # not consented
    again = token_request(
        sb,
        grant_type="authorization_code",
        code=q["code"],
        redirect_uri="http://127.0.0.1:8765/callback",
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"  # single use
    # the refresh token from the code rotates like any other
    r = token_request(sb, grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert r.status_code == 200


def test_code_exchange_needs_the_same_redirect_uri(sb: Sandbox) -> None:
    code = parse_qs(urlsplit(consent(sb).headers["Location"]).query)["code"][0]
    r = token_request(
        sb, grant_type="authorization_code", code=code, redirect_uri="http://127.0.0.1:9/other"
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_service_account_consent_is_recorded(sb: Sandbox) -> None:
    r = consent(sb, account_type="service", scope="customer invoice order companyinformation")
    assert r.status_code == 302
    assert sb.fortnox.last_consent is not None
    assert sb.fortnox.last_consent["account_type"] == "service"


@pytest.mark.parametrize(
    "params",
    [
        {"state": None},
        {"client_id": "someone-else"},
        {"response_type": "token"},
        {"redirect_uri": None},
    ],
)
def test_bad_consent_requests_get_a_400_page(sb: Sandbox, params: dict[str, Any]) -> None:
    r = consent(sb, **params)
    assert r.status_code == 400 and "text/html" in r.headers["Content-Type"]


def test_consent_with_an_unknown_scope_redirects_with_an_error(sb: Sandbox) -> None:
    r = consent(sb, scope="customer salary")
    assert r.status_code == 302
    q = parse_qs(urlsplit(r.headers["Location"]).query)
    assert q["error"] == ["invalid_scope"] and q["state"] == ["xyz123"]


# --- API auth, scopes, licences -----------------------------------------------------------------


def test_api_needs_a_bearer_token(sb: Sandbox) -> None:
    r = requests.get(api(sb, "customers"), timeout=5)
    assert r.status_code == 401 and error_code(r) == 2000311
    assert r.json()["ErrorInformation"]["error"] == 1
    old_style = {"Access-Token": fortnox_token(sb), "Client-Secret": sb.fortnox_client_secret}
    r = requests.get(api(sb, "customers"), headers=old_style, timeout=5)
    assert r.status_code == 401 and error_code(r) == 2000311
    r = requests.get(api(sb, "customers"), headers={"Authorization": "Bearer x.y.z"}, timeout=5)
    assert r.status_code == 401


def test_access_tokens_expire() -> None:
    with Sandbox(
        seed=1, companies=2, deals=1, fortnox_token_lifetime=1, fortnox_rate_limit=None
    ) as sb:
        r = token_request(
            sb, headers={"TenantId": sb.fortnox_tenant_id}, grant_type="client_credentials"
        )
        assert r.json()["expires_in"] == 1
        fx = fortnox_session(sb, r.json()["access_token"])
        assert fx.get(api(sb, "customers")).status_code == 200
        time.sleep(1.1)
        r = fx.get(api(sb, "customers"))
        assert r.status_code == 401 and error_code(r) == 2000311


def test_error_keys_may_be_capitalised(sb: Sandbox, fx: requests.Session) -> None:
    sb.fortnox.capitalised_errors = True
    r = fx.get(api(sb, "customers/1"))
    assert r.status_code == 404
    assert r.json() == {
        "ErrorInformation": {"Error": 1, "Message": "Kan inte hitta kunden.", "Code": 2000433}
    }


def test_scopes_and_licences(sb: Sandbox) -> None:
    fx = fortnox_session(sb, sb.fortnox.issue_access_token(scopes=("customer",)))
    assert fx.get(api(sb, "customers")).status_code == 200
    r = fx.get(api(sb, "invoices"))
    assert r.status_code == 403 and error_code(r) == 2000663
    sb.fortnox.licences.discard("customer")
    r = fx.get(api(sb, "customers"))
    assert r.status_code == 400 and error_code(r) == 2001101
    sb.fortnox.service_scopes = {"invoice"}
    fx = fortnox_session(sb)
    assert error_code(fx.get(api(sb, "companyinformation"))) == 2000663


def test_company_information(sb: Sandbox, fx: requests.Session) -> None:
    r = fx.get(api(sb, "companyinformation"))
    info = r.json()["CompanyInformation"]
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert info["DatabaseNumber"] == int(sb.fortnox_tenant_id)
    assert info["CompanyName"] == "Sandlåda AB" and info["OrganizationNumber"]


def test_unknown_routes_are_404(sb: Sandbox, fx: requests.Session) -> None:
    for method, path in [("GET", "articles"), ("DELETE", "invoices/1"), ("POST", "customers/1")]:
        r = fx.request(method, api(sb, path))
        assert r.status_code == 404 and "ErrorInformation" in r.json(), path


# --- customers -------------------------------------------------------------------------------


def test_create_get_and_update_a_customer(sb: Sandbox, fx: requests.Session) -> None:
    r = post_customer(fx, sb, ExternalReference="limego:company:abc")
    assert r.status_code == 201
    c = r.json()["Customer"]
    assert c["CustomerNumber"] == "1" and c["Name"] == "Åkesson & Söner AB"
    assert c["Country"] == "Sverige" and c["Active"] is True and c["Type"] == "COMPANY"
    assert c["@url"] == f"{sb.fortnox_url}/3/customers/1"
    assert c["DeliveryAddress1"] == "" and c["VisitingAddress"] == ""
    assert new_customer(fx, sb) == "2"
    assert fx.get(api(sb, "customers/1")).json()["Customer"] == c
    assert sb.fortnox.customers[0] == c

    r = fx.put(
        api(sb, "customers/1"), json={"Customer": {"Phone1": "08-555 00 00", "City": "API_BLANK"}}
    )
    assert r.status_code == 200
    after = r.json()["Customer"]
    assert after["Phone1"] == "08-555 00 00" and after["City"] == ""
    changed = {k for k in c if c[k] != after[k]}
    assert changed == {"Phone1", "City"}

    r = fx.get(api(sb, "customers/99"))
    assert r.status_code == 404 and error_code(r) == 2000433
    r = fx.put(api(sb, "customers/99"), json={"Customer": {"Phone1": "1"}})
    assert r.status_code == 404 and error_code(r) == 2000433


def test_customer_numbers(sb: Sandbox, fx: requests.Session) -> None:
    assert new_customer(fx, sb, CustomerNumber="K-100/a_b+c") == "K-100/a_b+c"
    r = post_customer(fx, sb, CustomerNumber="K-100/a_b+c")
    assert r.status_code == 400 and error_code(r) == 2000637
    r = post_customer(fx, sb, CustomerNumber="K 1")
    assert r.status_code == 400 and error_code(r) == 2000106
    assert sb.fortnox.add_customer({"Name": "Förut AB", "CustomerNumber": "1"}) == "1"
    assert new_customer(fx, sb) == "2"  # the series skips numbers in use
    r = fx.put(api(sb, "customers/2"), json={"Customer": {"CustomerNumber": "3"}})
    assert r.status_code == 400 and error_code(r) == 2009019


@pytest.mark.parametrize(
    ("fields", "code", "needle"),
    [
        ({"Name": None}, 2009008, "Name"),
        ({"Name": ""}, 2009001, "Name"),
        ({"ZipCode": "12345678901"}, 2009002, "ZipCode"),
        ({"Name": "x" * 1025}, 2009002, "Name"),
        ({"YourReference": "y" * 51}, 2009002, "YourReference"),
        ({"VisitingAddress": "v" * 129}, 2009002, "VisitingAddress"),
        ({"CountryCode": "Sverige"}, 2009003, "CountryCode"),
        ({"CountryCode": "se"}, 2009003, "CountryCode"),
        ({"DeliveryCountryCode": "XX"}, 2009003, "DeliveryCountryCode"),
        ({"Country": "Sverige"}, 2001399, "Country"),
        ({"DeliveryCountry": "Sverige"}, 2001399, "DeliveryCountry"),
        ({"@url": "x"}, 2001399, "@url"),
        ({"Colour": "red"}, 2001399, "Colour"),
        ({"name": "lower case"}, 2001399, "name"),
        ({"Name": "Raket 🚀 AB"}, 2000359, "Name"),
        ({"Name": "Łukasz Bygg AB"}, 2000359, "Name"),
        ({"Name": "Två\nrader"}, 2000359, "Name"),
        ({"Address1": "Tab\there"}, 2000359, "Address1"),
        ({"Email": "info(at)x.se"}, 2009004, "Email"),
        ({"OrganisationNumber": "556036-0794"}, 2009005, "556036-0794"),
        ({"OrganisationNumber": "5560360793"}, 2009005, "5560360793"),
        ({"OrganisationNumber": "16556036-0793"}, 2009005, "16556036-0793"),
        ({"Active": "true"}, 2000134, "Active"),
        ({"Type": "company"}, 2009008, "Type"),
        ({"Currency": "kr"}, 2009007, "Currency"),
        ({"Phone1": 81234567}, 2009008, "Phone1"),
    ],
)
def test_customer_validation(
    sb: Sandbox, fx: requests.Session, fields: dict[str, Any], code: int, needle: str
) -> None:
    r = post_customer(fx, sb, **fields)
    assert r.status_code == 400, r.text
    assert error_code(r) == code
    assert needle in r.json()["ErrorInformation"]["message"]
    assert sb.fortnox.customers == []
    # PUT validates the same way
    number = new_customer(fx, sb)
    r = fx.put(api(sb, f"customers/{number}"), json={"Customer": fields})
    assert r.status_code == 400 and error_code(r) == code


def test_name_is_required_on_create(sb: Sandbox, fx: requests.Session) -> None:
    r = fx.post(api(sb, "customers"), json={"Customer": {"City": "Lund"}})
    assert r.status_code == 400 and error_code(r) == 2009001


def test_what_fortnox_accepts(sb: Sandbox, fx: requests.Session) -> None:
    number = new_customer(
        fx,
        sb,
        Name="Café Ångström & Ærø ™ “Citat” – AB",  # all in Windows-1252
        Comments="Två\nrader\tmed tab",  # multi-line field
        OrganisationNumber="",
        Email="",
        DeliveryCountryCode="NO",
        VisitingCountryCode="AX",
        Type="PRIVATE",
        Active=False,
    )
    c = sb.fortnox.customer(number)
    assert c is not None
    assert c["DeliveryCountry"] == "Norge" and c["VisitingCountry"] == "Åland"
    assert c["Active"] is False and c["Comments"] == "Två\nrader\tmed tab"
    assert new_customer(fx, sb, OrganisationNumber="640823-3234")  # a personal number


def test_body_errors(sb: Sandbox, fx: requests.Session) -> None:
    url = api(sb, "customers")
    json_ct = {"Content-Type": "application/json"}
    r = fx.post(url, data=b'{"Customer": {"Name": "x",}}', headers=json_ct)
    assert r.status_code == 400 and error_code(r) == 2002115
    r = fx.post(url, data=b'{"Customer": {"Name": NaN}}', headers=json_ct)
    assert error_code(r) == 2002115
    r = fx.post(url, data=b"", headers=json_ct)
    assert r.status_code == 400 and error_code(r) == 2001392
    for body in (
        {"customer": {"Name": "x"}},
        {"Name": "x"},
        {"Customer": "x"},
        [1],
        {"Customer": {}, "X": 1},
    ):
        r = fx.post(url, json=body)
        assert r.status_code == 400 and error_code(r) == 2001392, body
    r = fx.post(url, json={"Invoice": {"CustomerNumber": "1"}})
    assert error_code(r) == 2001392
    r = fx.post(
        url, data=json.dumps({"Customer": {"Name": "x"}}), headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 400 and error_code(r) == 1000031


# --- lists ---------------------------------------------------------------------------------------


def test_customer_list_paging_and_meta(sb: Sandbox, fx: requests.Session) -> None:
    for i in range(7):
        sb.fortnox.add_customer({"Name": f"Kund {i}", "OrganisationNumber": "556036-0793"})
    doc = fx.get(api(sb, "customers"), params={"limit": 3, "page": 2}).json()
    meta = doc["MetaInformation"]
    assert meta == {"@TotalResources": 7, "@TotalPages": 3, "@CurrentPage": 2}
    assert list(doc) == ["MetaInformation", "Customers"]  # Fortnox's order
    assert [c["CustomerNumber"] for c in doc["Customers"]] == ["4", "5", "6"]
    assert set(doc["Customers"][0]) == {
        "@url",
        "Address1",
        "Address2",
        "City",
        "CustomerNumber",
        "Email",
        "Name",
        "OrganisationNumber",
        "Phone",
        "ZipCode",
    }
    seen, page = [], 1
    while True:
        doc = fx.get(api(sb, "customers"), params={"limit": 2, "page": page}).json()
        seen += [c["CustomerNumber"] for c in doc["Customers"]]
        if page >= doc["MetaInformation"]["@TotalPages"]:
            break
        page += 1
    assert seen == [str(i) for i in range(1, 8)]
    doc = fx.get(api(sb, "customers"), params={"limit": 2, "offset": 5}).json()
    assert [c["CustomerNumber"] for c in doc["Customers"]] == ["6", "7"]
    doc = fx.get(api(sb, "customers")).json()
    assert len(doc["Customers"]) == 7 and doc["MetaInformation"]["@TotalPages"] == 1
    assert fx.get(api(sb, "customers"), params={"limit": 500}).status_code == 200


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "501"},
        {"limit": "0"},
        {"page": "0"},
        {"offset": "-1"},
        {"colour": "red"},
        {"filter": "deleted"},
        {"lastmodified": "2026-01-01"},
        {"lastmodified": "2026-01-01T10:00"},
        {"sortby": "phone"},
    ],
)
def test_bad_list_parameters(sb: Sandbox, fx: requests.Session, params: dict[str, str]) -> None:
    r = fx.get(api(sb, "customers"), params=params)
    assert r.status_code == 400 and error_code(r) == 2000588


def test_customer_filters_are_case_insensitive_substrings(
    sb: Sandbox, fx: requests.Session
) -> None:
    a = sb.fortnox.add_customer(
        {"Name": "Nordisk Trähandel AB", "OrganisationNumber": "556036-0793"}
    )
    b = sb.fortnox.add_customer({"Name": "Trähandel i Norr", "City": "Luleå", "Active": False})
    sb.fortnox.add_customer({"Name": "Annat AB", "Email": "x@tra.se"})

    def numbers(**params: str) -> list[str]:
        r = fx.get(api(sb, "customers"), params=params)
        assert r.status_code == 200, r.text
        return [c["CustomerNumber"] for c in r.json()["Customers"]]

    assert numbers(name="TRÄHANDEL") == [a, b]
    assert numbers(organisationnumber="036-07") == [a]
    assert numbers(city="luleå") == [b]
    assert numbers(filter="inactive") == [b]
    assert numbers(filter="active", name="trä") == [a]
    assert numbers(sortby="name") == ["3", a, b]
    assert numbers(sortby="name", sortorder="descending") == [b, a, "3"]


def test_lastmodified_is_swedish_local_time(sb: Sandbox, fx: requests.Session) -> None:
    old = sb.fortnox.add_customer({"Name": "Gammal AB"})
    sb.fortnox._modified["customer"][old] -= timedelta(minutes=30)
    new = sb.fortnox.add_customer({"Name": "Ny AB"})
    local = datetime.now(ZoneInfo("Europe/Stockholm")) - timedelta(minutes=1)
    r = fx.get(api(sb, "customers"), params={"lastmodified": local.strftime("%Y-%m-%d %H:%M")})
    assert [c["CustomerNumber"] for c in r.json()["Customers"]] == [new]
    later = local + timedelta(minutes=5)
    r = fx.get(api(sb, "customers"), params={"lastmodified": later.strftime("%Y-%m-%d %H:%M")})
    assert r.json()["Customers"] == []
    utc_clock = datetime.now(UTC).replace(tzinfo=None) - timedelta(
        minutes=1
    )  # the mistake: UTC read as local
    r = fx.get(api(sb, "customers"), params={"lastmodified": utc_clock.strftime("%Y-%m-%d %H:%M")})
    assert len(r.json()["Customers"]) == 2  # an hour or two too early: the old one comes too


# --- invoices and orders ----------------------------------------------------------------------


def test_create_an_invoice(sb: Sandbox, fx: requests.Session) -> None:
    number = new_customer(fx, sb)
    body = invoice(
        number,
        YourReference="Anna Andersson",
        OurReference="Lars Berg",
        Currency="EUR",
        Remarks="Kundens ordernummer: PO-1\nAvtalslängd: 24",
        InvoiceRows=[
            {"Description": "Köksluckor", "Price": Decimal("1234.50"), "DeliveredQuantity": "1"},
            {
                "Description": "Skruv",
                "Price": Decimal("0.1"),
                "DeliveredQuantity": 3,
                "AccountNumber": 3001,
            },
            {"Description": "Levereras i mars"},
        ],
    )
    r = fx.post(
        api(sb, "invoices"), data=_dumps(body), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 201, r.text
    assert '"Total":1234.8' in r.text.replace(" ", "")  # exact decimals, no float noise
    inv = r.json(parse_float=Decimal)["Invoice"]
    assert inv["DocumentNumber"] == "1" and inv["Total"] == Decimal("1234.80")
    assert inv["Booked"] is False and inv["Cancelled"] is False and inv["Sent"] is False
    assert inv["OrganisationNumber"] == "556036-0793" and inv["CustomerName"] == CUSTOMER["Name"]
    assert inv["InvoiceDate"] == datetime.now(ZoneInfo("Europe/Stockholm")).date().isoformat()
    assert inv["Currency"] == "EUR" and inv["Remarks"].count("\n") == 1
    assert inv["InvoiceRows"][0]["Price"] == Decimal("1234.50")
    assert inv["InvoiceRows"][0]["DeliveredQuantity"] == "1.00"
    assert inv["@url"] == f"{sb.fortnox_url}/3/invoices/1"
    assert sb.fortnox.invoices[0]["Total"] == Decimal("1234.80")
    got = fx.get(api(sb, "invoices/1")).json(parse_float=Decimal)["Invoice"]
    assert got == inv
    r2 = fx.post(api(sb, "invoices"), json=invoice(number))
    assert r2.json()["Invoice"]["DocumentNumber"] == "2"  # no idempotency: a second invoice


def _dumps(obj: Any) -> bytes:
    from limefort_sandbox.http import dumps

    # Bytes: http.client would encode a str body as ISO-8859-1, not the UTF-8 JSON must be.
    return dumps(obj).encode("utf-8")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"CustomerNumber": "404"}, 2000433),
        ({"DocumentNumber": "7"}, 2001399),
        ({"Total": 5}, 2001399),
        ({"Booked": True}, 2001399),
        ({"OrganisationNumber": "556036-0793"}, 2001399),
        ({"Currency": "sek"}, 2009007),
        ({"Currency": "SEKR"}, 2009007),
        ({"InvoiceDate": "2026-02-30"}, 2009006),
        ({"DueDate": "31/01/2026"}, 2009006),
        ({"YourOrderNumber": "x" * 76}, 2009002),
        ({"ExternalInvoiceReference1": "r" * 81}, 2009002),
        ({"Remarks": "r" * 1025}, 2009002),
        ({"OurReference": "Ø" * 51}, 2009002),
        ({"YourReference": "Anna ✓"}, 2000359),
        ({"VATIncluded": "false"}, 2000134),
        (
            {"InvoiceRows": [{"Description": "x", "Price": "1000.00", "DeliveredQuantity": 1}]},
            2000108,
        ),
        ({"InvoiceRows": [{"Description": "x", "Price": 1, "DeliveredQuantity": "ett"}]}, 2000108),
        ({"InvoiceRows": [{"Unit": "u" * 21, "Price": 1, "DeliveredQuantity": 1}]}, 2009002),
        ({"InvoiceRows": [{"Description": "a\nb", "Price": 1, "DeliveredQuantity": 1}]}, 2000359),
        ({"InvoiceRows": [{"Description": "x", "Price": 1, "AccountNumber": "30011"}]}, 2000423),
        ({"InvoiceRows": [{"Description": "x", "Price": 1, "VAT": 7}]}, 2009008),
        ({"InvoiceRows": [{"Description": "x", "Total": 1}]}, 2001399),
        ({"InvoiceRows": [{"Beskrivning": "x"}]}, 2001399),
        ({"InvoiceRows": {"Description": "x"}}, 2009008),
        ({"OrderRows": []}, 2001399),
    ],
)
def test_invoice_validation(
    sb: Sandbox, fx: requests.Session, fields: dict[str, Any], code: int
) -> None:
    number = new_customer(fx, sb)
    r = fx.post(api(sb, "invoices"), json=invoice(number, **fields))
    assert r.status_code == 400, r.text
    assert error_code(r) == code
    assert sb.fortnox.invoices == []


def test_invoice_needs_a_customer_number(sb: Sandbox, fx: requests.Session) -> None:
    r = fx.post(api(sb, "invoices"), json={"Invoice": {"InvoiceRows": []}})
    assert r.status_code == 400 and error_code(r) == 2009001
    r = fx.post(api(sb, "invoices"), json=invoice("404"))
    assert r.status_code == 400 and error_code(r) == 2000433
    assert "404" in r.json()["ErrorInformation"]["message"]


def test_rows_need_an_account_without_a_default_account(sb: Sandbox, fx: requests.Session) -> None:
    number = new_customer(fx, sb)
    sb.fortnox.default_account = False
    r = fx.post(api(sb, "invoices"), json=invoice(number))
    assert r.status_code == 400 and error_code(r) == 2000423
    assert "Kunde inte hitta konto" in r.json()["ErrorInformation"]["message"]
    rows = [
        {"Description": "Konto", "Price": 10, "DeliveredQuantity": 1, "AccountNumber": 3001},
        {"Description": "Artikel", "Price": 10, "DeliveredQuantity": 1, "ArticleNumber": "A-1"},
        {"Description": "Bara text"},
    ]
    r = fx.post(api(sb, "invoices"), json=invoice(number, InvoiceRows=rows))
    assert r.status_code == 201 and r.json()["Invoice"]["Total"] == 20
    sb.fortnox.default_account = True
    r = fx.post(api(sb, "invoices"), json=invoice(number))
    assert r.status_code == 201
    assert r.json()["Invoice"]["InvoiceRows"][0]["AccountNumber"] == 3001


def test_sandbox_constructor_sets_the_default_account() -> None:
    with Sandbox(seed=1, companies=1, deals=1, fortnox_default_account=False) as sb:
        assert sb.fortnox.default_account is False


def test_search_invoices_by_external_reference(sb: Sandbox, fx: requests.Session) -> None:
    number = new_customer(fx, sb)
    for ref in ("limego:deal:abc", "limego:deal:abcd", "limego:deal:x"):
        assert fx.post(api(sb, "invoices"), json=invoice(number, ExternalInvoiceReference1=ref)).ok
    r = fx.get(api(sb, "invoices"), params={"externalinvoicereference1": "LIMEGO:DEAL:ABC"})
    found = r.json()["Invoices"]
    assert [i["ExternalInvoiceReference1"] for i in found] == [
        "limego:deal:abc",
        "limego:deal:abcd",
    ]
    assert {
        "DocumentNumber",
        "CustomerNumber",
        "Total",
        "Cancelled",
        "Booked",
        "InvoiceDate",
    } <= set(found[0])
    assert [d["DocumentNumber"] for d in sb.fortnox.documents_by_ref("limego:deal:abc")] == ["1"]
    assert sb.fortnox.documents_by_ref("limego:deal:abc", kind="order") == []
    r = fx.get(api(sb, "invoices"), params={"customernumber": number, "fromdate": "2000-01-01"})
    assert r.json()["MetaInformation"]["@TotalResources"] == 3
    r = fx.get(api(sb, "invoices"), params={"todate": "2000-01-01"})
    assert r.json()["Invoices"] == []
    r = fx.get(api(sb, "invoices"), params={"externalinvoicereference": "x"})
    assert r.status_code == 400 and error_code(r) == 2000588  # a misspelt filter is not ignored


def test_cancel_invoices(sb: Sandbox, fx: requests.Session) -> None:
    number = new_customer(fx, sb)
    fx.post(api(sb, "invoices"), json=invoice(number))
    fx.post(api(sb, "invoices"), json=invoice(number))
    r = fx.put(api(sb, "invoices/1/cancel"))
    assert r.status_code == 200 and r.json()["Invoice"]["Cancelled"] is True
    r = fx.put(api(sb, "invoices/1/cancel"))
    assert r.status_code == 400 and error_code(r) == 2009013
    sb.fortnox.book_invoice("2")
    r = fx.put(api(sb, "invoices/2/cancel"))
    assert r.status_code == 400 and error_code(r) == 2009012
    r = fx.put(api(sb, "invoices/3/cancel"))
    assert r.status_code == 404 and error_code(r) == 2009010
    r = fx.get(api(sb, "invoices"), params={"filter": "cancelled"})
    assert [i["DocumentNumber"] for i in r.json()["Invoices"]] == ["1"]


def test_update_an_unbooked_invoice(sb: Sandbox, fx: requests.Session) -> None:
    number = new_customer(fx, sb)
    fx.post(api(sb, "invoices"), json=invoice(number))
    r = fx.put(api(sb, "invoices/1"), json={"Invoice": {"Remarks": "Ny text"}})
    assert r.status_code == 200 and r.json()["Invoice"]["Remarks"] == "Ny text"
    assert r.json()["Invoice"]["Total"] == 1000


def test_orders(sb: Sandbox, fx: requests.Session) -> None:
    number = new_customer(fx, sb)
    r = fx.post(api(sb, "orders"), json={"Order": {"CustomerNumber": number}})
    assert r.status_code == 400 and error_code(r) == 2009009
    r = fx.post(api(sb, "orders"), json={"Order": {"CustomerNumber": number, "OrderRows": []}})
    assert r.status_code == 400 and error_code(r) == 2009009
    row = {
        "Description": "Takomläggning",
        "Price": Decimal("99.95"),
        "OrderedQuantity": "2",
        "DeliveredQuantity": "0",
    }
    body = {
        "Order": {
            "CustomerNumber": number,
            "ExternalInvoiceReference1": "limego:deal:o",
            "OrderRows": [row],
        }
    }
    r = fx.post(api(sb, "orders"), data=_dumps(body), headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    order = r.json(parse_float=Decimal)["Order"]
    assert order["DocumentNumber"] == "1" and order["Total"] == Decimal("199.90")
    assert order["OrderDate"] and order["OrderRows"][0]["OrderedQuantity"] == "2.00"
    r = fx.post(api(sb, "orders"), json={"Order": {"CustomerNumber": number, "InvoiceRows": [row]}})
    assert error_code(r) == 2001399
    r = fx.get(api(sb, "orders"), params={"externalinvoicereference1": "deal:o"})
    assert [o["DocumentNumber"] for o in r.json()["Orders"]] == ["1"]
    assert fx.put(api(sb, "orders/1/cancel")).json()["Order"]["Cancelled"] is True
    assert sb.fortnox.orders[0]["Cancelled"] is True
    r = fx.get(api(sb, "orders/2"))
    assert r.status_code == 404


# --- rate limit ----------------------------------------------------------------------------------


def test_sliding_window_rate_limit_25_per_5_seconds() -> None:
    with Sandbox(seed=1, companies=1, deals=1) as sb:
        fx = fortnox_session(sb)
        url = api(sb, "companyinformation")
        first = time.monotonic()
        statuses = [fx.get(url).status_code for _ in range(25)]
        assert statuses == [200] * 25
        r = fx.get(url)
        assert r.status_code == 429 and error_code(r) == 2009014
        assert "Retry-After" not in r.headers
        assert sb.fortnox.rate_limited == 1
        # the token endpoint is outside the limit
        assert fortnox_token(sb)
        # once the first request leaves the window, one more fits
        time.sleep(max(0.0, first + 5.05 - time.monotonic()))
        assert fx.get(url).status_code == 200
        assert sb.fortnox.count(status=429) == 1 and sb.fortnox.count(status=200) == 26


def test_rejected_requests_do_not_count_toward_the_window() -> None:
    with Sandbox(seed=1, companies=1, deals=1, fortnox_rate_limit=3, fortnox_rate_window=0.6) as sb:
        fx = fortnox_session(sb)
        url = api(sb, "customers")
        t0 = time.monotonic()
        assert [fx.get(url).status_code for _ in range(3)] == [200] * 3
        rejected = 0
        while time.monotonic() < t0 + 0.4:  # hammering while full is all 429s...
            assert fx.get(url).status_code == 429
            rejected += 1
        time.sleep(max(0.0, t0 + 0.65 - time.monotonic()))
        assert fx.get(url).status_code == 200  # ...and does not push the window out
        assert sb.fortnox.rate_limited == rejected
        sb.fortnox.rate_limit = None  # limits are mutable
        assert all(fx.get(url).ok for _ in range(10))


def test_count_ignores_the_token_endpoint(sb: Sandbox, fx: requests.Session) -> None:
    sb.fortnox.reset_log()
    fx.get(api(sb, "customers"))
    fx.post(api(sb, "customers"), json={"Customer": {"Name": "X"}})
    fx.post(api(sb, "customers"), json={"Customer": {}})
    fortnox_token(sb)
    assert sb.fortnox.count() == 3
    assert sb.fortnox.count(method="POST") == 2
    assert sb.fortnox.count(method="POST", status=201) == 1
    assert sb.fortnox.count(path_prefix="/3/invoices") == 0
    assert len(sb.fortnox.requests) == 4
    rec = sb.fortnox.requests[1]
    assert rec.body == {"Customer": {"Name": "X"}} and rec.status == 201 and rec.fault is None
    assert sb.fortnox.requests[3].body == {"grant_type": "client_credentials"}
