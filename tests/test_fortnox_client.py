"""The Fortnox client and its token providers (responses; no network)."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
import urllib3.exceptions
from doubles import MemoryTokens

from limefort.clients.fortnox import FortnoxClient
from limefort.clients.fortnox_tokens import (
    RefreshTokenTokens,
    ServiceAccountTokens,
    consent_url,
    exchange_code,
    tenant_from_token,
)
from limefort.clients.limiter import SlidingWindowLimiter
from limefort.config import FortnoxConfig, HttpConfig
from limefort.core.errors import ApiError, AuthError, NotFound, TransientError, UnknownOutcome
from limefort.core.explain import explain
from limefort.core.models import TokenRecord

API = "https://api.fortnox.test/3"
TOKEN_URL = "https://apps.fortnox.test/oauth-v1/token"
AUTH_URL = "https://apps.fortnox.test/oauth-v1/auth"
NOW = 2_000_000_000.0


def jwt(claims: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def recording_cache(events: list[str], record: TokenRecord | None = None) -> MemoryTokens:
    """A token cache that writes every load and save into a shared event log."""
    return MemoryTokens({"fortnox": record} if record else None, events)


@pytest.fixture
def cfg() -> FortnoxConfig:
    return FortnoxConfig(
        client_id="fx-client",
        client_secret="fx-secret-123456",
        api_url="https://api.fortnox.test",
        token_url=TOKEN_URL,
        auth_url=AUTH_URL,
        tenant_id="987654",
    )


@pytest.fixture
def events() -> list[str]:
    return []


@pytest.fixture
def cache(events) -> MemoryTokens:
    return recording_cache(events)


@pytest.fixture
def tokens(cfg, cache, sleeps) -> ServiceAccountTokens:
    return ServiceAccountTokens(cfg, cache, sleep=sleeps.append, clock=lambda: NOW)


@pytest.fixture
def client(cfg, tokens, sleeps) -> FortnoxClient:
    return FortnoxClient(
        cfg,
        tokens,
        http=HttpConfig(attempts=3),
        sleep=sleeps.append,
        limiter=SlidingWindowLimiter(None),
    )


def add_token(rsps, token: str = "fx-access-1", **extra) -> None:
    rsps.post(
        TOKEN_URL, json={"access_token": token, "expires_in": 3600, "token_type": "bearer", **extra}
    )


def api_calls(rsps) -> list:
    return [c for c in rsps.calls if c.request.url.startswith(API)]


def token_calls(rsps) -> list:
    return [c for c in rsps.calls if c.request.url == TOKEN_URL]


def query(call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


# --- service account -------------------------------------------------------------------------


def test_service_account_token_request(rsps, client, cache):
    add_token(rsps)
    rsps.get(f"{API}/companyinformation", json={"CompanyInformation": {"DatabaseNumber": 987654}})
    assert client.company_information()["DatabaseNumber"] == 987654
    client.company_information()

    (tok,) = token_calls(rsps)
    basic = base64.b64encode(b"fx-client:fx-secret-123456").decode()
    assert tok.request.headers["Authorization"] == f"Basic {basic}"
    assert tok.request.headers["TenantId"] == "987654"
    assert parse_qs(tok.request.body) == {"grant_type": ["client_credentials"]}

    api = api_calls(rsps)
    assert len(api) == 2
    for call in api:
        assert call.request.headers["Authorization"] == "Bearer fx-access-1"
        assert call.request.headers["Accept"] == "application/json"
        assert call.request.headers["Content-Type"] == "application/json"
    ((_, saved),) = cache.saved
    assert saved.access_token == "fx-access-1" and saved.expires_at == NOW + 3600
    assert saved.tenant_id == "987654" and saved.refresh_token is None


def test_service_account_uses_a_cached_token_of_the_same_tenant(rsps, cfg, events):
    good = TokenRecord(access_token="cached", expires_at=NOW + 600, tenant_id="987654")
    t = ServiceAccountTokens(cfg, recording_cache(events, good), clock=lambda: NOW)
    assert t.access_token() == "cached"
    assert token_calls(rsps) == []

    other = TokenRecord(access_token="other-tenant", expires_at=NOW + 600, tenant_id="111")
    add_token(rsps, "mine")
    t2 = ServiceAccountTokens(cfg, recording_cache([], other), clock=lambda: NOW)
    assert t2.access_token() == "mine"


def test_service_account_rejected(rsps, client):
    rsps.post(TOKEN_URL, status=400, json={"error": "invalid_client"})
    with pytest.raises(AuthError, match="tenant_id") as exc:
        client.company_information()
    assert exc.value.exit_code == 3


def test_401_refreshes_once_and_retries(rsps, client):
    add_token(rsps, "fx-access-1")
    add_token(rsps, "fx-access-2")
    rsps.get(f"{API}/customers/7", status=401, json={"ErrorInformation": {"code": 2000311}})
    rsps.get(f"{API}/customers/7", json={"Customer": {"CustomerNumber": "7"}})
    assert client.get_customer("7") == {"CustomerNumber": "7"}
    assert [c.request.headers["Authorization"] for c in api_calls(rsps)] == [
        "Bearer fx-access-1",
        "Bearer fx-access-2",
    ]
    assert len(token_calls(rsps)) == 2


def test_second_401_says_what_to_do(rsps, client):
    add_token(rsps)
    rsps.get(f"{API}/customers/7", status=401)
    with pytest.raises(AuthError, match="limefort check") as exc:
        client.get_customer("7")
    assert exc.value.exit_code == 3
    assert len(api_calls(rsps)) == 2


# --- refresh tokens --------------------------------------------------------------------------


def refresh_cfg(cfg: FortnoxConfig) -> FortnoxConfig:
    return FortnoxConfig(**{**cfg.__dict__, "tenant_id": None})


def test_refresh_rotation_saves_the_new_refresh_token_before_the_api_call(
    rsps, cfg, events, sleeps
):
    cache = recording_cache(
        events, TokenRecord(refresh_token="rt-old", refresh_issued_at=NOW - 86400)
    )
    tokens = RefreshTokenTokens(refresh_cfg(cfg), cache, clock=lambda: NOW)
    client = FortnoxClient(refresh_cfg(cfg), tokens, sleep=sleeps.append)
    access = jwt({"tenantId": 4242})
    rsps.post(
        TOKEN_URL,
        json={
            "access_token": access,
            "refresh_token": "rt-new",
            "expires_in": 3600,
            "scope": "customer invoice",
        },
    )

    def api(request):
        events.append("api")
        return (200, {}, json.dumps({"Customer": {"CustomerNumber": "1"}}))

    rsps.add_callback(responses.GET, f"{API}/customers/1", callback=api)
    client.get_customer("1")

    assert events == ["load", "save:rt-new", "api"]
    form = parse_qs(token_calls(rsps)[0].request.body)
    assert form == {"grant_type": ["refresh_token"], "refresh_token": ["rt-old"]}
    _, saved = cache.saved[0]
    assert saved.access_token == access and saved.refresh_token == "rt-new"
    assert saved.refresh_issued_at == NOW and saved.tenant_id == "4242"
    assert saved.scope == "customer invoice"


def test_refresh_uses_the_stored_access_token_while_valid(rsps, cfg, events):
    rec = TokenRecord(access_token="still-good", expires_at=NOW + 1000, refresh_token="rt")
    tokens = RefreshTokenTokens(refresh_cfg(cfg), recording_cache(events, rec), clock=lambda: NOW)
    assert tokens.access_token() == "still-good"
    assert token_calls(rsps) == []


def test_refresh_forced_after_a_401_even_if_the_token_looks_valid(rsps, cfg, events, sleeps):
    rec = TokenRecord(access_token="looks-valid", expires_at=NOW + 1000, refresh_token="rt-1")
    cache = recording_cache(events, rec)
    tokens = RefreshTokenTokens(refresh_cfg(cfg), cache, clock=lambda: NOW)
    client = FortnoxClient(refresh_cfg(cfg), tokens, sleep=sleeps.append)
    rsps.post(
        TOKEN_URL, json={"access_token": "new-access", "refresh_token": "rt-2", "expires_in": 3600}
    )
    rsps.get(f"{API}/customers/1", status=401)
    rsps.get(f"{API}/customers/1", json={"Customer": {"CustomerNumber": "1"}})
    client.get_customer("1")
    assert parse_qs(token_calls(rsps)[0].request.body)["refresh_token"] == ["rt-1"]
    assert cache.records["fortnox"].refresh_token == "rt-2"
    assert api_calls(rsps)[1].request.headers["Authorization"] == "Bearer new-access"


@pytest.mark.parametrize(
    "status,body",
    [(400, {"error": "invalid_grant", "error_description": "Invalid refresh token"}), (401, {})],
)
def test_spent_refresh_token_is_auth_error(rsps, cfg, events, status, body):
    cache = recording_cache(events, TokenRecord(refresh_token="rt-spent"))
    tokens = RefreshTokenTokens(refresh_cfg(cfg), cache, clock=lambda: NOW)
    rsps.post(TOKEN_URL, status=status, json=body)
    with pytest.raises(AuthError) as exc:
        tokens.access_token()
    assert exc.value.exit_code == 3
    assert "limefort auth fortnox" in str(exc.value) and "spent or expired" in str(exc.value)
    assert cache.saved == []


def test_no_refresh_token_anywhere(cfg, events):
    tokens = RefreshTokenTokens(refresh_cfg(cfg), recording_cache(events, None), clock=lambda: NOW)
    with pytest.raises(AuthError, match="limefort auth fortnox"):
        tokens.access_token()


def test_exchange_code(rsps, cfg):
    access = jwt({"tenantId": "55"})
    rsps.post(TOKEN_URL, json={"access_token": access, "refresh_token": "rt-x", "expires_in": 3600})
    rec = exchange_code(cfg, "code-abc", "http://127.0.0.1:8765/callback", clock=lambda: NOW)
    assert parse_qs(rsps.calls[0].request.body) == {
        "grant_type": ["authorization_code"],
        "code": ["code-abc"],
        "redirect_uri": ["http://127.0.0.1:8765/callback"],
    }
    assert rsps.calls[0].request.headers["Authorization"].startswith("Basic ")
    assert (rec.access_token, rec.refresh_token, rec.tenant_id) == (access, "rt-x", "55")
    assert rec.expires_at == NOW + 3600


def test_exchange_code_rejected(rsps, cfg):
    rsps.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    with pytest.raises(AuthError, match="10 minutes"):
        exchange_code(cfg, "old", "http://127.0.0.1:8765/callback")


def test_consent_url(cfg):
    url = consent_url(cfg, "st4te", service_account=True)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == AUTH_URL
    assert "scope=customer%20invoice%20order%20companyinformation" in url
    assert parse_qs(parts.query) == {
        "client_id": ["fx-client"],
        "response_type": ["code"],
        "state": ["st4te"],
        "scope": ["customer invoice order companyinformation"],
        "redirect_uri": ["http://127.0.0.1:8765/callback"],
        "access_type": ["offline"],
        "account_type": ["service"],
    }
    assert "account_type" not in consent_url(cfg, "s")


def test_tenant_from_token():
    assert tenant_from_token(jwt({"tenantId": 1234})) == "1234"
    assert tenant_from_token(jwt({"sub": "x"})) is None
    assert tenant_from_token("not-a-jwt") is None
    assert tenant_from_token("a.!!!.c") is None


# --- paging and search -----------------------------------------------------------------------


def customers_page(page: int, total: int, numbers: list[str]) -> dict:
    return {
        "Customers": [{"CustomerNumber": n, "OrganisationNumber": f"55{n}"} for n in numbers],
        "MetaInformation": {"@CurrentPage": page, "@TotalPages": total, "@TotalResources": 1234},
    }


def test_customer_paging(rsps, client):
    add_token(rsps)
    for page, numbers in ((1, ["1", "2"]), (2, ["3"]), (3, ["4"])):
        rsps.get(
            f"{API}/customers",
            json=customers_page(page, 3, numbers),
            match=[
                responses.matchers.query_param_matcher(
                    {"limit": "500", "page": str(page), "lastmodified": "2026-01-15 11:30"}
                )
            ],
        )
    pages = list(client.iter_customers(lastmodified=datetime(2026, 1, 15, 10, 30, tzinfo=UTC)))
    assert [[c["CustomerNumber"] for c in p] for p in pages] == [["1", "2"], ["3"], ["4"]]
    assert len(api_calls(rsps)) == 3


def test_paging_without_meta_information_goes_on_while_pages_are_full(rsps, client):
    add_token(rsps)
    full = {"Customers": [{"CustomerNumber": str(n)} for n in range(2)]}
    rsps.get(f"{API}/customers", json=full)
    rsps.get(f"{API}/customers", json={"Customers": [{"CustomerNumber": "9"}]})
    pages = list(client.iter_customers(limit=2))
    assert [len(p) for p in pages] == [2, 1]
    assert [query(c)["page"] for c in api_calls(rsps)] == [["1"], ["2"]]


def test_lastmodified_is_swedish_summer_time(rsps, client):
    add_token(rsps)
    rsps.get(f"{API}/customers", json=customers_page(1, 1, []))
    list(client.iter_customers(lastmodified=datetime(2026, 7, 1, 10, 5, 59, tzinfo=UTC)))
    assert query(api_calls(rsps)[0])["lastmodified"] == ["2026-07-01 12:05"]


def test_find_customers_reads_every_page(rsps, client):
    add_token(rsps)
    rsps.get(f"{API}/customers", json=customers_page(1, 2, ["1"]))
    rsps.get(f"{API}/customers", json=customers_page(2, 2, ["2"]))
    found = client.find_customers(organisationnumber="5566778899")
    assert [c["CustomerNumber"] for c in found] == ["1", "2"]
    assert query(api_calls(rsps)[0])["organisationnumber"] == ["5566778899"]


def test_find_documents_keeps_only_exact_matches(rsps, client):
    add_token(rsps)
    rsps.get(
        f"{API}/invoices",
        json={
            "Invoices": [
                {"DocumentNumber": "101", "ExternalInvoiceReference1": "limego:deal:12"},
                {"DocumentNumber": "102", "ExternalInvoiceReference1": "limego:deal:1"},
            ],
            "MetaInformation": {"@CurrentPage": 1, "@TotalPages": 2},
        },
    )
    rsps.get(
        f"{API}/invoices",
        json={
            "Invoices": [{"DocumentNumber": "103", "ExternalInvoiceReference1": "xlimego:deal:1"}],
            "MetaInformation": {"@CurrentPage": 2, "@TotalPages": 2},
        },
    )
    found = client.find_documents("invoice", "limego:deal:1")
    assert [d["DocumentNumber"] for d in found] == ["102"]
    q = query(api_calls(rsps)[0])
    assert q["externalinvoicereference1"] == ["limego:deal:1"] and q["limit"] == ["500"]
    assert query(api_calls(rsps)[1])["page"] == ["2"]


def test_find_documents_reads_a_document_when_the_list_lacks_the_field(rsps, client):
    add_token(rsps)
    rsps.get(f"{API}/orders", json={"Orders": [{"DocumentNumber": "7"}, {"DocumentNumber": "8"}]})
    rsps.get(
        f"{API}/orders/7",
        json={"Order": {"DocumentNumber": "7", "ExternalInvoiceReference1": "limego:deal:1"}},
    )
    rsps.get(
        f"{API}/orders/8",
        json={"Order": {"DocumentNumber": "8", "ExternalInvoiceReference1": "limego:deal:10"}},
    )
    found = client.find_documents("order", "limego:deal:1")
    assert [d["DocumentNumber"] for d in found] == ["7"]


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "info",
    [
        {"ErrorInformation": {"error": 1, "message": "Ogiltiga tecken", "code": 2000359}},
        {"ErrorInformation": {"Error": 1, "Message": "Ogiltiga tecken", "Code": "2000359"}},
    ],
    ids=["lower", "Capitalised"],
)
def test_error_information_both_capitalisations(rsps, client, info):
    add_token(rsps)
    rsps.post(f"{API}/customers", status=400, json=info)
    with pytest.raises(ApiError) as exc:
        client.create_customer({"Name": "X\x07"})
    e = exc.value
    assert (e.status, e.code, e.service) == (400, 2000359, "Fortnox")
    assert "characters Fortnox does not accept" in e.message and "Ogiltiga tecken" in e.message


def test_error_that_is_not_json(rsps, client):
    add_token(rsps)
    rsps.put(f"{API}/customers/1", status=400, body="Bad Request")
    with pytest.raises(ApiError) as exc:
        client.update_customer("1", {"Name": "Y"})
    assert exc.value.code is None and "Bad Request" in exc.value.message


def test_missing_scope_and_licence_are_named(rsps, client):
    add_token(rsps)
    rsps.post(
        f"{API}/invoices",
        status=403,
        json={"ErrorInformation": {"message": "Saknar behörighet", "code": 2000663}},
    )
    rsps.post(
        f"{API}/orders",
        status=400,
        json={"ErrorInformation": {"message": "Ingen licens", "code": 2001101}},
    )
    with pytest.raises(ApiError, match="not authorised for the 'invoice' scope"):
        client.create_document("invoice", {"CustomerNumber": "1"})
    with pytest.raises(ApiError, match="no licence for the 'order' module"):
        client.create_document("order", {"CustomerNumber": "1"})


def test_explain():
    assert explain(2000637, "Kundnummer används redan").startswith(
        "the customer number is already used"
    )
    assert explain(None, "whatever") == "whatever"
    assert explain(2004167).startswith("a row with a custom VAT rate needs a sales account")
    err = ApiError("Fortnox", "Konto hittades inte", status=400, code=2000423)
    assert explain(err) == (
        "Fortnox HTTP 400 code 2000423: the bookkeeping account does not exist in Fortnox, or "
        "the company has no preferred sales account for a row without one (check [sync] "
        "account_number, or set one under Inställningar → Bokföring → Fördefinierade konton; "
        "`limefort check` says which) (Fortnox: Konto hittades inte)"
    )
    assert explain(2001103).startswith("the Fortnox company has no licence to use the API")


def test_get_customer_404_is_none(rsps, client):
    add_token(rsps)
    rsps.get(
        f"{API}/customers/9",
        status=404,
        json={"ErrorInformation": {"message": "Kunden hittades inte", "code": 2000433}},
    )
    rsps.get(
        f"{API}/customers/A%2FB",
        status=400,
        json={"ErrorInformation": {"message": "x", "code": 2000433}},
    )
    rsps.get(f"{API}/invoices/9", status=404, json={})
    assert client.get_customer("9") is None
    assert client.get_customer("A/B") is None  # quoted into one path segment
    assert client.get_document("invoice", "9") is None


def test_404_on_a_write_is_not_found(rsps, client):
    add_token(rsps)
    rsps.put(
        f"{API}/customers/9",
        status=404,
        json={"ErrorInformation": {"message": "no", "code": 2000433}},
    )
    with pytest.raises(NotFound):
        client.update_customer("9", {"Phone1": "1"})


# --- exactly once ----------------------------------------------------------------------------


def test_post_500_is_unknown_outcome_after_exactly_one_post(rsps, client, sleeps):
    add_token(rsps)
    rsps.post(
        f"{API}/invoices",
        status=500,
        json={"ErrorInformation": {"message": "System exception", "code": 1000003}},
    )
    with pytest.raises(UnknownOutcome):
        client.create_document("invoice", {"CustomerNumber": "1"})
    assert len([c for c in api_calls(rsps) if c.request.method == "POST"]) == 1
    assert sleeps == []


def test_post_connection_reset_is_unknown_outcome(rsps, client):
    add_token(rsps)
    err = requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
    )
    rsps.post(f"{API}/orders", body=err)
    with pytest.raises(UnknownOutcome):
        client.create_document("order", {"CustomerNumber": "1"})
    assert len(api_calls(rsps)) == 1


def test_post_read_timeout_is_unknown_outcome(rsps, client):
    add_token(rsps)
    rsps.post(f"{API}/customers", body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(UnknownOutcome):
        client.create_customer({"Name": "X"})
    assert len(api_calls(rsps)) == 1


def test_post_429_is_retried(rsps, client, sleeps):
    add_token(rsps)
    rsps.post(f"{API}/invoices", status=429, json={"message": "Too many requests"})
    rsps.post(f"{API}/invoices", json={"Invoice": {"DocumentNumber": "1001"}})
    assert client.create_document("invoice", {"CustomerNumber": "1"})["DocumentNumber"] == "1001"
    assert len(api_calls(rsps)) == 2 and len(sleeps) == 1
    assert client.stats["rate_limited"] == 1


def test_post_connection_refused_is_retried(rsps, client):
    add_token(rsps)
    refused = requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(
            None,  # type: ignore[arg-type]
            "/3/invoices",
            urllib3.exceptions.NewConnectionError(None, "Connection refused"),  # type: ignore[arg-type]
        )
    )
    rsps.post(f"{API}/invoices", body=refused)
    rsps.post(f"{API}/invoices", json={"Invoice": {"DocumentNumber": "1002"}})
    assert client.create_document("invoice", {"CustomerNumber": "1"})["DocumentNumber"] == "1002"
    assert len(api_calls(rsps)) == 2


def test_post_answer_without_the_document_is_unknown_outcome(rsps, client):
    add_token(rsps)
    rsps.post(f"{API}/invoices", json={"Something": {}})
    with pytest.raises(UnknownOutcome):
        client.create_document("invoice", {"CustomerNumber": "1"})


def test_get_500_is_retried(rsps, client, sleeps):
    add_token(rsps)
    rsps.get(f"{API}/invoices/5", status=500)
    rsps.get(f"{API}/invoices/5", json={"Invoice": {"DocumentNumber": "5"}})
    assert client.get_document("invoice", "5") == {"DocumentNumber": "5"}
    assert len(sleeps) == 1


def test_get_exhausted_is_transient(rsps, client):
    add_token(rsps)
    rsps.get(f"{API}/invoices/5", status=503)
    with pytest.raises(TransientError):
        client.get_document("invoice", "5")
    assert len(api_calls(rsps)) == 3


def test_decimal_price_goes_out_as_written(rsps, client):
    add_token(rsps)
    rsps.post(f"{API}/invoices", json={"Invoice": {"DocumentNumber": "1"}})
    payload = {
        "CustomerNumber": "1",
        "ExternalInvoiceReference1": "limego:deal:1",
        "InvoiceRows": [
            {"Description": "Licens", "DeliveredQuantity": "1", "Price": Decimal("1234.50")}
        ],
    }
    client.create_document("invoice", payload)
    body = api_calls(rsps)[0].request.body
    assert b'"Price": 1234.50' in body
    assert body.startswith(b'{"Invoice": {')


def test_update_customer_is_a_put_of_the_changed_fields(rsps, client):
    add_token(rsps)
    rsps.put(f"{API}/customers/12", json={"Customer": {"CustomerNumber": "12", "City": "Lund"}})
    assert client.update_customer("12", {"City": "Lund"})["City"] == "Lund"
    assert json.loads(api_calls(rsps)[0].request.body) == {"Customer": {"City": "Lund"}}


def test_every_api_attempt_goes_through_the_limiter(rsps, cfg, tokens, sleeps):
    t = [0.0]

    def fake_sleep(s: float) -> None:
        t[0] += s

    limiter = SlidingWindowLimiter(2, 5.0, margin=0.2, clock=lambda: t[0], sleep=fake_sleep)
    c = FortnoxClient(cfg, tokens, sleep=sleeps.append, limiter=limiter)
    add_token(rsps)
    rsps.get(f"{API}/invoices/5", status=503)
    rsps.get(f"{API}/invoices/5", json={"Invoice": {}})
    c.get_document("invoice", "5")  # two attempts
    rsps.get(f"{API}/companyinformation", json={"CompanyInformation": {}})
    c.company_information()  # the third request in the window waits
    assert t[0] == pytest.approx(5.2)
    stats = c.stats
    assert stats["requests"] == 3 and stats["limiter_waits"] == 1 and stats["token_requests"] == 1


def test_default_limiter_follows_the_config(cfg, tokens):
    c = FortnoxClient(cfg, tokens)
    assert c.limiter.limit == 25 and c.limiter.window == 5.0


# --- secrets ---------------------------------------------------------------------------------


def test_tokens_never_reach_the_logs(rsps, cfg, events, sleeps, caplog):
    cache = recording_cache(events, TokenRecord(refresh_token="rt-secret-old-1"))
    tokens = RefreshTokenTokens(refresh_cfg(cfg), cache, sleep=sleeps.append, clock=lambda: NOW)
    client = FortnoxClient(refresh_cfg(cfg), tokens, sleep=sleeps.append)
    access = jwt({"tenantId": 1, "n": "access-secret"})
    rsps.post(TOKEN_URL, status=503)
    rsps.post(
        TOKEN_URL,
        json={"access_token": access, "refresh_token": "rt-secret-new-2", "expires_in": 3600},
    )
    leaky = requests.exceptions.ConnectionError(f"reset; headers Authorization: Bearer {access}")
    rsps.get(f"{API}/customers/1", body=leaky)
    rsps.get(f"{API}/customers/1", status=429)
    rsps.get(f"{API}/customers/1", json={"Customer": {}})
    with caplog.at_level(logging.DEBUG):
        client.get_customer("1")
        logging.getLogger("limefort.fortnox").warning("debug dump %s %s", access, "rt-secret-new-2")
    assert len([r for r in caplog.records if "retrying in" in r.getMessage()]) == 3
    for secret in (access, "rt-secret-old-1", "rt-secret-new-2", "fx-secret-123456"):
        assert secret not in caplog.text
        assert all(secret not in r.getMessage() for r in caplog.records)


def test_a_listing_that_never_ends_stops_at_the_page_cap(rsps, client):
    """Full pages without MetaInformation mean "there may be another": a server that keeps
    answering so would keep a pass going for ever. The client follows at most max_pages."""
    add_token(rsps)
    full = {"Customers": [{"CustomerNumber": str(i)} for i in range(500)]}
    rsps.get(f"{API}/customers", json=full)
    client.max_pages = 3
    pages = []
    with pytest.raises(TransientError, match="more than 3 pages"):
        for page in client.iter_customers():
            pages.append(page)
    assert len(pages) == 3
