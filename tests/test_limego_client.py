"""The Lime Go client against captured JSON:API answers (responses; no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from doubles import ManualClock, MemoryTokens

from limefort.clients.limego import LimeGoClient
from limefort.config import HttpConfig, LimeGoConfig
from limefort.core.errors import ApiError, AuthError, NotFound, TransientError
from limefort.core.models import TokenRecord

HOST = "https://limego.test"
API = f"{HOST}/api/v1"
TOKEN_URL = f"{HOST}/oauth/token"
SCOPE = "companies:read deals:read contacts:read reference:read"


def company(id: str, **attrs) -> dict:
    attrs.setdefault("name", f"Company {id}")
    attrs.setdefault("updated_at", "2026-11-23T10:00:00Z")
    return {"type": "companies", "id": id, "attributes": attrs, "relationships": {}}


def deal(id: str, company_id: str | None = "c1", **attrs) -> dict:
    attrs.setdefault("name", f"Deal {id}")
    attrs.setdefault("value", "1234.50")
    attrs.setdefault("currency", "SEK")
    attrs.setdefault("updated_at", "2026-11-23T11:00:00.123+01:00")
    rels = {
        "company": {"data": {"type": "companies", "id": company_id} if company_id else None},
        "stage": {"data": {"type": "stages", "id": "s-won"}},
        "contacts": {"data": [{"type": "contacts", "id": "p2"}, {"type": "contacts", "id": "p1"}]},
        "owners": {"data": [{"type": "owners", "id": "o1"}]},
    }
    return {"type": "deals", "id": id, "attributes": attrs, "relationships": rels}


def query(call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000_000.0)


@pytest.fixture
def cfg() -> LimeGoConfig:
    return LimeGoConfig(base_url=HOST, client_id="lg-client", client_secret="lg-secret-abcdef")


@pytest.fixture
def client(cfg, sleeps, clock) -> LimeGoClient:
    return LimeGoClient(cfg, http=HttpConfig(attempts=3), sleep=sleeps.append, clock=clock)


def add_token(rsps, token: str = "lg-token-1", **extra) -> None:
    body = {"access_token": token, "token_type": "Bearer", "expires_in": 1800, "scope": SCOPE}
    body.update(extra)
    rsps.post(TOKEN_URL, json=body)


def token_calls(rsps) -> list:
    return [c for c in rsps.calls if c.request.url == TOKEN_URL]


# --- tokens ----------------------------------------------------------------------------------


def test_token_is_fetched_with_client_credentials_and_cached(rsps, client, clock):
    add_token(rsps)
    rsps.get(f"{API}/companies/c1", json={"data": company("c1")})
    client.get_company("c1")
    client.get_company("c1")
    calls = token_calls(rsps)
    assert len(calls) == 1
    form = parse_qs(calls[0].request.body)
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": ["lg-client"],
        "client_secret": ["lg-secret-abcdef"],
        "scope": [SCOPE],
    }
    assert rsps.calls[1].request.headers["Authorization"] == "Bearer lg-token-1"
    assert client.granted_scopes == set(SCOPE.split())

    # 60 s before expiry a new one is fetched.
    clock.t += 1800 - 59
    add_token(rsps, "lg-token-2")
    client.get_company("c1")
    assert len(token_calls(rsps)) == 2
    assert rsps.calls[-1].request.headers["Authorization"] == "Bearer lg-token-2"


def test_token_goes_through_the_token_cache(rsps, cfg, clock):
    cache = MemoryTokens(
        {"limego": TokenRecord(access_token="cached-tok", expires_at=clock.t + 600)}
    )
    c = LimeGoClient(cfg, tokens=cache, clock=clock)
    rsps.get(f"{API}/companies/c1", json={"data": company("c1")})
    c.get_company("c1")
    assert token_calls(rsps) == []
    assert rsps.calls[0].request.headers["Authorization"] == "Bearer cached-tok"

    stale = MemoryTokens({"limego": TokenRecord(access_token="old", expires_at=clock.t + 30)})
    c2 = LimeGoClient(cfg, tokens=stale, clock=clock)
    add_token(rsps, "fresh-tok")
    c2.get_company("c1")
    assert [name for name, _ in stale.saved] == ["limego"]
    assert stale.records["limego"].access_token == "fresh-tok"
    assert stale.records["limego"].expires_at == clock.t + 1800


def test_a_401_fetches_a_new_token_once(rsps, client):
    add_token(rsps, "lg-token-1")
    add_token(rsps, "lg-token-2")
    rsps.get(f"{API}/companies/c1", status=401)
    rsps.get(f"{API}/companies/c1", json={"data": company("c1")})
    assert client.get_company("c1").id == "c1"
    api = [c for c in rsps.calls if c.request.url != TOKEN_URL]
    assert [c.request.headers["Authorization"] for c in api] == [
        "Bearer lg-token-1",
        "Bearer lg-token-2",
    ]


def test_two_401s_are_an_auth_error(rsps, client):
    add_token(rsps)
    rsps.get(f"{API}/companies/c1", status=401)
    with pytest.raises(AuthError) as exc:
        client.get_company("c1")
    assert exc.value.exit_code == 3


@pytest.mark.parametrize("status", [400, 401])
def test_bad_client_credentials(rsps, client, status):
    rsps.post(TOKEN_URL, status=status, json={"error": "invalid_client"})
    with pytest.raises(AuthError, match=r"client_id and client_secret") as exc:
        client.get_company("c1")
    assert exc.value.exit_code == 3


def test_bad_scope(rsps, client):
    rsps.post(TOKEN_URL, status=400, json={"error": "invalid_scope"})
    with pytest.raises(AuthError, match=r"\[limego\] scope"):
        _ = client.granted_scopes


def test_granted_scopes_without_scope_in_answer_is_what_was_asked(rsps, client):
    rsps.post(TOKEN_URL, json={"access_token": "t-noscope", "expires_in": 1800})
    assert client.granted_scopes == set(SCOPE.split())


def test_token_never_logged(rsps, client, caplog):
    add_token(rsps, "lg-token-secret-xyz")
    rsps.get(f"{API}/companies/c1", status=503)
    rsps.get(f"{API}/companies/c1", json={"data": company("c1")})
    with caplog.at_level("DEBUG"):
        client.get_company("c1")
    assert "lg-token-secret-xyz" not in caplog.text
    assert "lg-secret-abcdef" not in caplog.text


# --- listing ---------------------------------------------------------------------------------


def test_paging_follows_links_next_as_is(rsps, client):
    add_token(rsps)
    next1 = f"{API}/companies?page%5Bcursor%5D=abc&page%5Bsize%5D=100"
    next2 = f"{API}/companies?page%5Bcursor%5D=def&page%5Bsize%5D=100"
    rsps.get(
        f"{API}/companies", json={"data": [company("c1"), company("c2")], "links": {"next": next1}}
    )
    rsps.get(next1, json={"data": [company("c3")], "links": {"next": next2}})
    rsps.get(next2, json={"data": [company("c4")], "links": {"next": None}})
    since = datetime(2026, 11, 23, 11, 0, 0, 999, tzinfo=timezone(timedelta(hours=1)))
    pages = list(client.iter_companies(updated_since=since, status="customer"))
    assert [[c.id for c in p] for p in pages] == [["c1", "c2"], ["c3"], ["c4"]]

    api = [c for c in rsps.calls if c.request.url != TOKEN_URL]
    assert len(api) == 3
    assert query(api[0]) == {
        "page[size]": ["100"],
        "sort": ["id"],
        "filter[updated_since]": ["2026-11-23T10:00:00Z"],
        "filter[status]": ["customer"],
    }
    # The cursor URL is used exactly as given: no filters or sizes added again.
    assert api[1].request.url == next1
    assert api[2].request.url == next2


def test_company_parsing(rsps, client):
    add_token(rsps)
    rsps.get(
        f"{API}/companies",
        json={
            "data": [
                company(
                    "c1",
                    business_id="556677-8899",
                    status="customer",
                    custom_fields={"visiting_city": "Lund"},
                    updated_at="2026-11-23T12:30:00+02:00",
                ),
                {"type": "companies", "id": "c2", "attributes": {"name": "No dates"}},
            ]
        },
    )
    (page,) = list(client.iter_companies())
    c1, c2 = page
    assert c1.business_id == "556677-8899" and c1.status == "customer"
    assert c1.attributes["custom_fields"]["visiting_city"] == "Lund"
    assert c1.updated_at == datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
    assert c1.updated_at.tzinfo is not None
    assert c2.updated_at == datetime(1970, 1, 1, tzinfo=UTC)
    assert "filter[updated_since]" not in query(rsps.calls[-1])


def test_naive_updated_since_is_refused(client):
    with pytest.raises(ValueError):
        next(client.iter_companies(updated_since=datetime(2026, 1, 1)))


def test_deals_include_companies(rsps, client):
    add_token(rsps)
    rsps.get(
        f"{API}/deals",
        json={
            "data": [
                deal("d1", "c1", custom_fields={"po": "A-1"}),
                deal("d2", None),
                {"type": "deals", "id": "d3", "attributes": {"name": "bare", "value": None}},
            ],
            "included": [
                company("c1", business_id="5566778899"),
                {
                    "type": "stages",
                    "id": "s-won",
                    "attributes": {"name": "Vunnen", "category": "won"},
                },
            ],
        },
    )
    (page,) = list(client.iter_deals(updated_since=datetime(2026, 11, 1, tzinfo=UTC)))
    assert query(rsps.calls[-1])["include"] == ["company,stage"]
    assert "fields[deals]" not in query(rsps.calls[-1])
    d1, d2, d3 = page.deals
    assert d1.company_id == "c1" and d1.stage_id == "s-won"
    assert d1.contact_ids == ("p2", "p1") and d1.owner_ids == ("o1",)
    assert d1.value == Decimal("1234.50") and isinstance(d1.value, Decimal)
    assert d1.updated_at == datetime(2026, 11, 23, 10, 0, 0, 123000, tzinfo=UTC)
    assert d2.company_id is None
    assert (d3.company_id, d3.stage_id, d3.contact_ids, d3.owner_ids) == (None, None, (), ())
    assert d3.value is None
    assert set(page.companies) == {"c1"}
    assert page.companies["c1"].business_id == "5566778899"


def test_no_sparse_fieldsets_the_mapping_may_name_any_attribute(rsps, client):
    add_token(rsps)
    rsps.get(f"{API}/deals", json={"data": []})
    assert list(client.iter_deals()) == []
    assert not [k for k in query(rsps.calls[-1]) if k.startswith("fields[")]


def test_get_deal_with_its_company(rsps, client):
    add_token(rsps)
    rsps.get(
        f"{API}/deals/d1",
        json={"data": deal("d1", "c9"), "included": [company("c8"), company("c9")]},
    )
    got = client.get_deal("d1")
    assert got is not None
    d, c = got
    assert d.id == "d1" and c is not None and c.id == "c9"
    assert query(rsps.calls[-1])["include"] == ["company,stage"]


# --- errors ----------------------------------------------------------------------------------


def test_jsonapi_error_is_parsed(rsps, client):
    add_token(rsps)
    rsps.get(
        f"{API}/companies",
        status=400,
        json={
            "errors": [
                {
                    "status": "400",
                    "code": "invalid_query",
                    "title": "Invalid query",
                    "detail": "filter[updated_since] is not a date",
                }
            ]
        },
        headers={"x-request-id": "req-42"},
    )
    with pytest.raises(ApiError) as exc:
        list(client.iter_companies())
    e = exc.value
    assert not isinstance(e, NotFound)
    assert (e.status, e.code, e.request_id) == (400, "invalid_query", "req-42")
    assert e.message == "filter[updated_since] is not a date"
    assert "Lime Go HTTP 400 code invalid_query" in str(e)


def test_error_without_a_jsonapi_body(rsps, client):
    add_token(rsps)
    rsps.get(f"{API}/companies", status=403, body="<html>nope</html>")
    with pytest.raises(ApiError) as exc:
        list(client.iter_companies())
    assert exc.value.status == 403 and "scope" in exc.value.message


def test_404_is_none(rsps, client):
    add_token(rsps)
    err = {"errors": [{"status": "404", "code": "not_found", "title": "Not found"}]}
    rsps.get(f"{API}/companies/gone", status=404, json=err)
    rsps.get(f"{API}/deals/gone", status=404, json=err)
    assert client.get_company("gone") is None
    assert client.get_deal("gone") is None


def test_429_with_retry_after_is_retried(rsps, client, sleeps):
    add_token(rsps)
    rsps.get(f"{API}/companies/c1", status=429, headers={"Retry-After": "3"})
    rsps.get(f"{API}/companies/c1", json={"data": company("c1")})
    assert client.get_company("c1") is not None
    assert sleeps == [3.0]
    assert client.stats["rate_limited"] == 1


def test_503_is_retried_then_transient(rsps, client, sleeps):
    add_token(rsps)
    rsps.get(
        f"{API}/companies",
        status=503,
        json={"errors": [{"status": "503", "code": "unavailable"}]},
    )
    with pytest.raises(TransientError) as exc:
        list(client.iter_companies())
    assert exc.value.status == 503
    assert len([c for c in rsps.calls if c.request.url != TOKEN_URL]) == 3
    assert len(sleeps) == 2


def test_a_next_link_to_another_host_is_not_followed(rsps, client):
    add_token(rsps)
    rsps.get(
        f"{API}/companies", json={"data": [company("c1")], "links": {"next": "https://evil.test/x"}}
    )
    pages = client.iter_companies()
    next(pages)
    with pytest.raises(TransientError, match="another host"):
        next(pages)


# --- reference data --------------------------------------------------------------------------


def test_reference_data_is_read_once(rsps, client):
    add_token(rsps)
    rsps.get(
        f"{API}/stages",
        json={
            "data": [
                {"type": "stages", "id": "s1", "attributes": {"name": "Ny", "category": "open"}},
                {
                    "type": "stages",
                    "id": "s-won",
                    "attributes": {"name": "Vunnen", "category": "won"},
                },
            ]
        },
    )
    rsps.get(
        f"{API}/owners",
        json={
            "data": [
                {
                    "type": "owners",
                    "id": "o1",
                    "attributes": {"first_name": "Anna", "last_name": "Ek", "email": "a@x.se"},
                }
            ]
        },
    )
    rsps.get(
        f"{API}/custom-field-definitions",
        json={
            "data": [
                {
                    "type": "custom-field-definitions",
                    "id": "f1",
                    "attributes": {
                        "key": "po",
                        "label": "PO number",
                        "entity_type": "deal",
                        "field_type": "text",
                    },
                },
                {
                    "type": "custom-field-definitions",
                    "id": "f2",
                    "attributes": {
                        "key": "visiting_city",
                        "label": "Besöksort",
                        "entity_type": "company",
                    },
                },
                {  # Lime Go's documented form: the resource type
                    "type": "custom-field-definitions",
                    "id": "f3",
                    "attributes": {"key": "length", "label": "Avtalslängd", "entity_type": "deals"},
                },
                {
                    "type": "custom-field-definitions",
                    "id": "f4",
                    "attributes": {
                        "key": "industry",
                        "label": "Bransch",
                        "entity_type": "companies",
                    },
                },
            ]
        },
    )
    for _ in range(3):
        stages = client.stages()
        owners = client.owners()
        defs = client.deal_field_defs()
    assert stages["s-won"].category == "won" and stages["s1"].name == "Ny"
    assert owners["o1"].name == "Anna Ek" and owners["o1"].email == "a@x.se"
    assert set(defs) == {"po", "length"} and defs["po"].label == "PO number"
    urls = [urlsplit(c.request.url).path for c in rsps.calls if c.request.url != TOKEN_URL]
    assert sorted(urls) == ["/api/v1/custom-field-definitions", "/api/v1/owners", "/api/v1/stages"]


def test_contacts_are_cached_including_missing_ones(rsps, client):
    add_token(rsps)
    rsps.get(
        f"{API}/contacts/p1",
        json={
            "data": {
                "type": "contacts",
                "id": "p1",
                "attributes": {"first_name": "Per", "last_name": None},
            }
        },
    )
    rsps.get(f"{API}/contacts/p404", status=404, json={"errors": [{"code": "not_found"}]})
    assert client.contact("p1").name == "Per"
    assert client.contact("p1").name == "Per"
    assert client.contact("p404") is None
    assert client.contact("p404") is None
    assert len([c for c in rsps.calls if c.request.url != TOKEN_URL]) == 2


def test_api_calls_send_the_jsonapi_media_type(rsps, client):
    """Lime Go documents a 406 for any other Accept; the token endpoint answers plain JSON."""
    add_token(rsps)
    rsps.get(f"{API}/stages", json={"data": []})
    client.stages()
    accepts = {c.request.url.split("?")[0]: c.request.headers.get("Accept") for c in rsps.calls}
    assert accepts == {TOKEN_URL: "application/json", f"{API}/stages": "application/vnd.api+json"}


def test_a_listing_whose_cursors_never_end_stops_at_the_page_cap(rsps, client):
    add_token(rsps)
    for n in range(1, 6):
        rsps.get(
            f"{API}/companies",
            json={"data": [], "links": {"next": f"{API}/companies?page[cursor]=c{n}"}},
        )
    client.max_pages = 3
    with pytest.raises(TransientError, match="more than 3 pages"):
        list(client.iter_companies())
