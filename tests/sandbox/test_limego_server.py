"""The sandbox Lime Go server over HTTP: auth, paging, filters, includes, sparse fields,
the change feed, and the Python API that tests use to change the CRM."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from limefort_sandbox import Sandbox

from .conftest import jsonapi_code, limego_session, read_all


def api(sb: Sandbox, path: str) -> str:
    return f"{sb.limego_url}/api/v1/{path}"


# --- OAuth ------------------------------------------------------------------------------------


def test_client_credentials_grants_all_scopes_or_the_requested_subset(sb: Sandbox) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": sb.limego_client_id,
        "client_secret": sb.limego_client_secret,
    }
    r = requests.post(f"{sb.limego_url}/oauth/token", data=form, timeout=5)
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 1800
    assert body["scope"].split() == [
        "companies:read",
        "deals:read",
        "contacts:read",
        "reference:read",
        "changes:read",
    ]
    assert len(body["access_token"]) >= 32
    r = requests.post(
        f"{sb.limego_url}/oauth/token",
        data={**form, "scope": "deals:read companies:write"},
        timeout=5,
    )
    assert r.json()["scope"] == "deals:read"


def test_bad_credentials_and_grants(sb: Sandbox) -> None:
    url = f"{sb.limego_url}/oauth/token"
    good = {"client_id": sb.limego_client_id, "client_secret": sb.limego_client_secret}
    r = requests.post(url, data={**good, "grant_type": "client_credentials", "client_secret": "x"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = requests.post(url, data={**good, "grant_type": "password"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = requests.post(url, data=good)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = requests.post(url, json={**good, "grant_type": "client_credentials"})  # not a form
    assert r.status_code == 400


def test_api_needs_a_valid_bearer_token(sb: Sandbox) -> None:
    r = requests.get(api(sb, "companies"), timeout=5)
    assert r.status_code == 401 and jsonapi_code(r) == "unauthorized"
    assert r.headers["Content-Type"] == "application/vnd.api+json"
    assert r.headers["x-request-id"]
    r = requests.get(api(sb, "companies"), headers={"Authorization": "Bearer nope"}, timeout=5)
    assert r.status_code == 401
    err = r.json()["errors"][0]
    assert set(err) == {"status", "code", "title", "detail"} and err["status"] == "401"


def test_token_expires() -> None:
    with Sandbox(seed=1, companies=3, deals=2, limego_token_lifetime=1) as sb:
        s = limego_session(sb)
        assert s.get(api(sb, "companies")).status_code == 200
        time.sleep(1.1)
        r = s.get(api(sb, "companies"))
        assert r.status_code == 401 and "expired" in r.json()["errors"][0]["detail"]


def test_missing_scope_is_403(sb: Sandbox) -> None:
    s = limego_session(sb, scope="companies:read")
    assert s.get(api(sb, "companies")).status_code == 200
    for path in ("deals", "stages", "changes"):
        r = s.get(api(sb, path))
        assert r.status_code == 403 and jsonapi_code(r) == "insufficient_scope", path
    s = limego_session(sb, scope="deals:read")
    r = s.get(api(sb, "deals"), params={"include": "company"})
    assert r.status_code == 403  # an included type needs its own scope


def test_every_answer_has_a_request_id_and_the_jsonapi_type(
    sb: Sandbox, lg: requests.Session
) -> None:
    ids = set()
    for path in ("companies", "deals", "nope", "companies/does-not-exist"):
        r = lg.get(api(sb, path))
        ids.add(r.headers["x-request-id"])
        assert r.headers["Content-Type"] == "application/vnd.api+json"
    assert len(ids) == 4


def test_writes_are_refused(sb: Sandbox, lg: requests.Session) -> None:
    r = lg.post(api(sb, "companies"), json={"data": {}})
    assert r.status_code == 405


# --- paging -----------------------------------------------------------------------------------


def test_paging_follows_next_until_absent(sb: Sandbox, lg: requests.Session) -> None:
    got = read_all(lg, api(sb, "companies"), **{"page[size]": 7})
    ids = [c["id"] for c in got]
    assert ids == sorted(sb.limego.companies)  # all, once, in id order
    r = lg.get(api(sb, "companies"), params={"page[size]": 7})
    doc = r.json()
    assert doc["meta"]["count"] == 7 and len(doc["data"]) == 7
    assert doc["links"]["next"].startswith(f"{sb.limego_url}/api/v1/companies?")
    assert "page%5Bsize%5D=7" in doc["links"]["next"]
    # exactly one full last page: no next link, and no empty extra page
    r = lg.get(api(sb, "companies"), params={"page[size]": 30})
    assert len(r.json()["data"]) == 30 and "next" not in r.json()["links"]


def test_default_page_size_is_25(sb: Sandbox, lg: requests.Session) -> None:
    doc = lg.get(api(sb, "companies")).json()
    assert len(doc["data"]) == 25 and "next" in doc["links"]


@pytest.mark.parametrize("size", ["0", "101", "-1", "abc", ""])
def test_page_size_bounds(sb: Sandbox, lg: requests.Session, size: str) -> None:
    r = lg.get(api(sb, "companies"), params={"page[size]": size})
    assert r.status_code == 400 and jsonapi_code(r) == "invalid_query"
    assert "page[size]" in r.json()["errors"][0]["detail"]


def test_page_size_100_is_allowed(sb: Sandbox, lg: requests.Session) -> None:
    assert lg.get(api(sb, "deals"), params={"page[size]": 100}).status_code == 200


def test_sort_descending_pages_backwards(sb: Sandbox, lg: requests.Session) -> None:
    got = read_all(lg, api(sb, "deals"), **{"page[size]": 9, "sort": "-id"})
    assert [d["id"] for d in got] == sorted(sb.limego.deals, reverse=True)
    r = lg.get(api(sb, "deals"), params={"sort": "name"})
    assert r.status_code == 400 and jsonapi_code(r) == "invalid_query"


def test_a_bad_cursor_is_invalid_query(sb: Sandbox, lg: requests.Session) -> None:
    r = lg.get(api(sb, "companies"), params={"page[cursor]": "garbage"})
    assert r.status_code == 400 and jsonapi_code(r) == "invalid_query"


def test_new_records_show_up_while_paging(sb: Sandbox, lg: requests.Session) -> None:
    first = lg.get(api(sb, "companies"), params={"page[size]": 10}).json()
    new_id = sb.limego.add_company(name="Sent Tillagd AB")
    rest = read_all(lg, first["links"]["next"])
    seen = [c["id"] for c in first["data"] + rest]
    assert len(seen) == len(set(seen))
    # a record inserted behind the cursor is missed by this pass, ahead of it is found
    assert (new_id in seen) == (new_id > first["data"][-1]["id"])


def test_large_sandbox_pages_through_correctly() -> None:
    with Sandbox(seed=11, companies=20_000, deals=20_000, contacts=0) as sb:
        s = limego_session(sb)
        companies = read_all(s, api(sb, "companies"), **{"page[size]": 100})
        assert len(companies) == 20_000
        assert [c["id"] for c in companies] == sorted(sb.limego.companies)
        since = datetime.now(UTC) - timedelta(days=120)
        deals = read_all(
            s,
            api(sb, "deals"),
            **{"page[size]": 100, "filter[updated_since]": since.isoformat()},
        )
        bound = since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        expected = sorted(
            i for i, d in sb.limego.deals.items() if d["attributes"]["updated_at"] >= bound
        )
        assert [d["id"] for d in deals] == expected
        assert 0 < len(expected) < 20_000


# --- filters and query validation ---------------------------------------------------------------


def test_updated_since(sb: Sandbox, lg: requests.Session) -> None:
    all_ = sorted(sb.limego.companies.values(), key=lambda c: c["attributes"]["updated_at"])
    pivot = all_[len(all_) // 2]["attributes"]["updated_at"]
    got = read_all(lg, api(sb, "companies"), **{"filter[updated_since]": pivot, "page[size]": 100})
    assert {c["id"] for c in got} == {
        c["id"] for c in all_ if c["attributes"]["updated_at"] >= pivot
    }
    # any ISO 8601 form with a zone works; the instant is what counts
    dt = datetime.fromisoformat(pivot.replace("Z", "+00:00"))
    as_offset = dt.astimezone(datetime.now().astimezone().tzinfo).isoformat()
    got2 = read_all(
        lg, api(sb, "companies"), **{"filter[updated_since]": as_offset, "page[size]": 100}
    )
    assert [c["id"] for c in got2] == [c["id"] for c in got]


@pytest.mark.parametrize(
    "value",
    ["yesterday", "2026-13-01", "2026-01-01T10:00:00", "2026-01-01 10:00:00+00:00 x", ""],
)
def test_bad_updated_since_is_400(sb: Sandbox, lg: requests.Session, value: str) -> None:
    r = lg.get(api(sb, "companies"), params={"filter[updated_since]": value})
    assert r.status_code == 400 and jsonapi_code(r) == "invalid_query"


def test_unencoded_plus_in_a_timestamp_is_refused(sb: Sandbox, lg: requests.Session) -> None:
    """A client that builds the URL by hand and forgets to encode "+" sends a space."""
    r = lg.get(api(sb, "companies") + "?filter[updated_since]=2026-01-01T00:00:00+01:00")
    assert r.status_code == 400


def test_status_filter(sb: Sandbox, lg: requests.Session) -> None:
    got = read_all(lg, api(sb, "companies"), **{"filter[status]": "customer", "page[size]": 100})
    assert sorted(c["id"] for c in got) == sorted(sb.limego.customer_ids())
    assert all(c["attributes"]["status"] == "customer" for c in got)
    for bad in ("customer,lead", "Customer", "won"):
        r = lg.get(api(sb, "companies"), params={"filter[status]": bad})
        assert r.status_code == 400, bad


def test_name_filter_is_a_case_insensitive_substring(sb: Sandbox, lg: requests.Session) -> None:
    cid = sb.limego.add_company(name="Örjans Ölkällare AB", status="customer")
    for needle in ("ölkällare", "ÖLKÄLLARE", "jans öl"):
        got = read_all(lg, api(sb, "companies"), **{"filter[name]": needle})
        assert [c["id"] for c in got] == [cid]
    got = read_all(lg, api(sb, "stages"), **{"filter[name]": "VUNN"})
    assert [s["attributes"]["name"] for s in got] == ["Vunnen"]
    deal = next(iter(sb.limego.deals.values()))
    got = read_all(lg, api(sb, "deals"), **{"filter[name]": deal["attributes"]["name"].upper()})
    assert deal["id"] in {d["id"] for d in got}


def test_unknown_parameters_are_named_in_a_400(sb: Sandbox, lg: requests.Session) -> None:
    cases = {
        "companies": {"filter[updated_after]": "2026-01-01T00:00:00Z"},
        "deals": {"filter[status]": "won"},
        "stages": {"filter[status]": "won"},
        "contacts": {"filter[name]": "Åsa"},
        "owners": {"sort": "id"},
        "custom-field-definitions": {"filter[name]": "po"},
    }
    for path, params in cases.items():
        r = lg.get(api(sb, path), params=params)
        assert r.status_code == 400 and jsonapi_code(r) == "invalid_query", path
        assert next(iter(params)) in r.json()["errors"][0]["detail"]
    r = lg.get(api(sb, "companies") + "?filter[status]=customer&filter[status]=lead")
    assert r.status_code == 400 and "more than once" in r.json()["errors"][0]["detail"]


def test_include_company_and_stage_on_deals(sb: Sandbox, lg: requests.Session) -> None:
    doc = lg.get(api(sb, "deals"), params={"include": "company,stage", "page[size]": "50"}).json()
    included = {(r["type"], r["id"]) for r in doc["included"]}
    assert len(included) == len(doc["included"])  # deduplicated
    want = set()
    for d in doc["data"]:
        for rel in ("company", "stage"):
            ref = d["relationships"][rel]["data"]
            if ref:
                want.add((ref["type"], ref["id"]))
    assert included == want
    stage_names = {r["attributes"]["name"] for r in doc["included"] if r["type"] == "stages"}
    assert stage_names <= {"Kontakt", "Behov", "Offert", "Förhandling", "Vunnen", "Förlorad"}
    # no include, no "included"
    assert "included" not in lg.get(api(sb, "deals")).json()


@pytest.mark.parametrize(
    ("path", "include"),
    [
        ("deals", "contacts"),
        ("deals", "owners"),
        ("companies", "tags"),
        ("contacts", "tags"),
        ("deals", "company.owner"),
    ],
)
def test_other_includes_are_refused(
    sb: Sandbox, lg: requests.Session, path: str, include: str
) -> None:
    r = lg.get(api(sb, path), params={"include": include})
    assert r.status_code == 400 and jsonapi_code(r) == "invalid_query"


def test_sparse_fieldsets(sb: Sandbox, lg: requests.Session) -> None:
    doc = lg.get(api(sb, "companies"), params={"fields[companies]": "name,status"}).json()
    for c in doc["data"]:  # timestamps always come
        assert set(c["attributes"]) == {"name", "status", "created_at", "updated_at"}
        assert c["relationships"] == {}
        assert c["id"] and c["type"] == "companies"
    doc = lg.get(
        api(sb, "deals"),
        params={
            "include": "company",
            "fields[companies]": "business_id",
            "fields[deals]": "value,company",
        },
    ).json()
    stamps = {"created_at", "updated_at"}
    assert all(set(d["attributes"]) == {"value"} | stamps for d in doc["data"])
    assert all(set(d["relationships"]) == {"company"} for d in doc["data"])
    assert all(set(c["attributes"]) == {"business_id"} | stamps for c in doc["included"])
    for params in (
        {"fields[companies]": "name,colour"},
        {"fields[widgets]": "name"},
        {"fields[owners]": "email"},
    ):
        r = lg.get(api(sb, "companies"), params=params)
        assert r.status_code == 400 and jsonapi_code(r) == "invalid_query"


def test_get_one_and_404(sb: Sandbox, lg: requests.Session) -> None:
    deal_id = next(iter(sb.limego.deals))
    r = lg.get(api(sb, f"deals/{deal_id}"), params={"include": "stage"})
    doc = r.json()
    assert r.status_code == 200 and doc["data"] == sb.limego.deals[deal_id]
    assert doc["included"][0]["type"] == "stages"
    r = lg.get(api(sb, "deals/00000000-0000-4000-8000-000000000000"))
    assert r.status_code == 404 and jsonapi_code(r) == "not_found"
    r = lg.get(api(sb, "invoices"))
    assert r.status_code == 404 and jsonapi_code(r) == "not_found"


def test_resources_are_served_as_stored(sb: Sandbox, lg: requests.Session) -> None:
    served = {d["id"]: d for d in read_all(lg, api(sb, "deals"), **{"page[size]": 100})}
    assert served == sb.limego.deals
    d = next(iter(served.values()))
    assert set(d) == {"type", "id", "attributes", "relationships", "meta"}
    assert isinstance(d["attributes"]["value"], str) and d["attributes"]["value"].count(".") == 1
    assert set(d["relationships"]) == {"company", "stage", "contacts", "owners", "tags"}
    assert isinstance(d["meta"]["revision"], str) and d["meta"]["revision"].isdigit()
    for path in ("stages", "owners", "custom-field-definitions", "contacts"):
        assert read_all(lg, api(sb, path))
    assert all("meta" not in o for o in read_all(lg, api(sb, "owners")))  # no revision


def test_custom_field_definitions(sb: Sandbox, lg: requests.Session) -> None:
    defs = {
        d["attributes"]["key"]: d["attributes"]
        for d in read_all(lg, api(sb, "custom-field-definitions"))
    }
    assert defs["po_number"]["label"] == "Kundens ordernummer"
    assert defs["contract_length"]["label"] == "Avtalslängd"
    assert defs["po_number"]["entity_type"] == "deals"  # resource types, as Lime Go writes them
    for key in ("visiting_street", "visiting_postal_code", "visiting_city", "visiting_country"):
        assert defs[key]["entity_type"] == "companies"


# --- change feed --------------------------------------------------------------------------------


def test_change_feed(sb: Sandbox, lg: requests.Session) -> None:
    first = lg.get(api(sb, "changes")).json()
    assert first["data"] == []
    assert first["meta"]["checkpoint"] is True and first["meta"]["has_more"] is False
    cursor = first["meta"]["cursor"]

    empty = lg.get(api(sb, "changes"), params={"cursor": cursor}).json()
    assert empty["data"] == [] and empty["meta"]["checkpoint"] is False
    assert empty["meta"]["cursor"] == cursor

    cid = next(iter(sb.limego.companies))
    sb.limego.update_company(cid, phone="08-555 12 34")
    did = sb.limego.add_deal(company_id=cid, stage="won", value="100.00")
    doc = lg.get(api(sb, "changes"), params={"cursor": cursor}).json()
    items = [c["attributes"] for c in doc["data"]]
    assert [(i["resource_type"], i["resource_id"]) for i in items] == [
        ("companies", cid),
        ("deals", did),
    ]
    assert items[0]["revision"] == sb.limego.companies[cid]["meta"]["revision"]
    assert items[0]["deleted"] is False and items[0]["origin_integration_id"] is None
    assert doc["data"][0]["type"] == "changes"
    assert doc["meta"]["has_more"] is False

    for i in range(150):
        sb.limego.update_company(cid, phone=f"08-555 12 {i:02d}")
    page = lg.get(api(sb, "changes"), params={"cursor": doc["meta"]["cursor"]}).json()
    assert len(page["data"]) == 100 and page["meta"]["has_more"] is True
    page = lg.get(api(sb, "changes"), params={"cursor": page["meta"]["cursor"]}).json()
    assert len(page["data"]) == 50 and page["meta"]["has_more"] is False


def test_a_bad_or_expired_change_cursor_is_410(sb: Sandbox, lg: requests.Session) -> None:
    r = lg.get(api(sb, "changes"), params={"cursor": "not-a-cursor"})
    assert r.status_code == 410 and jsonapi_code(r) == "cursor_expired"
    cursor = lg.get(api(sb, "changes")).json()["meta"]["cursor"]
    sb.limego.update_company(next(iter(sb.limego.companies)), city="Lund")
    sb.limego.expire_changes()
    r = lg.get(api(sb, "changes"), params={"cursor": cursor})
    assert r.status_code == 410
    r = lg.get(api(sb, "changes"), params={"cursor": cursor, "limit": "5"})
    assert r.status_code == 400


def test_a_cursor_from_another_sandbox_is_410(sb: Sandbox) -> None:
    with Sandbox(seed=3, companies=2, deals=1) as other:
        cursor = limego_session(other).get(api(other, "changes")).json()["meta"]["cursor"]
    r = limego_session(sb).get(api(sb, "changes"), params={"cursor": cursor})
    assert r.status_code == 410


# --- the Python API -------------------------------------------------------------------------


def test_update_company_bumps_updated_at_and_merges_custom_fields(
    sb: Sandbox, lg: requests.Session
) -> None:
    cid = sb.limego.add_company(
        name="Åkesson & Söner AB", status="customer", custom_fields={"visiting_city": "Lund"}
    )
    before = sb.limego.companies[cid]["attributes"]["updated_at"]
    sb.limego.update_company(cid, custom_fields={"visiting_street": "Storgatan 1"}, phone="08-1")
    attrs = sb.limego.companies[cid]["attributes"]
    assert attrs["updated_at"] > before
    assert attrs["custom_fields"] == {"visiting_city": "Lund", "visiting_street": "Storgatan 1"}
    assert sb.limego.companies[cid]["meta"]["revision"] == "2"
    served = lg.get(api(sb, f"companies/{cid}")).json()["data"]
    assert served == sb.limego.companies[cid]
    with pytest.raises(TypeError):
        sb.limego.update_company(cid, colour="red")
    sb.limego.update_company(cid, updated_at="2025-01-01T00:00:00.000000Z")  # back-dated
    assert sb.limego.companies[cid]["attributes"]["updated_at"] == "2025-01-01T00:00:00.000000Z"


def test_add_win_lose_deals_and_won_ids(sb: Sandbox) -> None:
    cid = sb.limego.customer_ids()[0]
    start = datetime.now(UTC)
    did = sb.limego.add_deal(company_id=cid, name="Köksluckor", value="1234.50")
    assert did not in sb.limego.won_deal_ids()
    sb.limego.win_deal(did)
    assert sb.limego.won_deal_ids(since=start) == [did]
    stage = sb.limego.deals[did]["relationships"]["stage"]["data"]["id"]
    assert sb.limego.stages[stage]["attributes"]["name"] == "Vunnen"
    sb.limego.lose_deal(did)
    assert did not in sb.limego.won_deal_ids()
    did2 = sb.limego.add_deal(company_id=None, stage="won", value=99)
    assert sb.limego.deals[did2]["attributes"]["value"] == "99.00"
    assert sb.limego.deals[did2]["relationships"]["company"]["data"] is None
    won_seeded = sb.limego.won_deal_ids()
    assert did2 in won_seeded and len(won_seeded) > 1
