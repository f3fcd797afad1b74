"""The sandbox Fortnox server: API v3 customers, invoices, orders and company information,
the OAuth2 endpoints (consent stand-in, token endpoint with authorization code, rotating
single-use refresh tokens and service-account client credentials), the sliding-window rate
limit, scopes and licences.

Everything Fortnox refuses, this refuses too, with Fortnox's error shape
`{"ErrorInformation": {"error": 1, "message": ..., "code": ...}}`; see `rules.py` for the
codes. Amounts are parsed as Decimal and written back digit for digit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections import deque
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from limefort_sandbox import rules
from limefort_sandbox.http import App, Request, Response, dumps, json_response, loads_decimal
from limefort_sandbox.rules import FortnoxError

ALL_SCOPES = ("customer", "invoice", "order", "companyinformation", "bookkeeping", "currency")
MAX_LIMIT = 500
DEFAULT_LIMIT = 100
REFRESH_LIFETIME = 45 * 86400.0
CODE_LIFETIME = 600.0
DEFAULT_SALES_ACCOUNT = 3001  # the company's preferred sales account (SALES), when it has one
DEFAULT_SERVICES_ACCOUNT = 3041  # SALES2

try:
    from zoneinfo import ZoneInfo

    _STOCKHOLM: Any = ZoneInfo("Europe/Stockholm")
except Exception:  # pragma: no cover - no tz database: EU rules by hand
    _STOCKHOLM = None


def _eu_summer(dt_utc: datetime) -> bool:
    """Central European summer time: last Sunday of March 01:00 UTC to last Sunday of
    October 01:00 UTC."""

    def last_sunday(year: int, month: int) -> datetime:
        d = datetime(year, month + 1, 1, 1, tzinfo=UTC) - timedelta(days=1)
        return d - timedelta(days=(d.weekday() + 1) % 7)

    y = dt_utc.year
    return last_sunday(y, 3) <= dt_utc < last_sunday(y, 10)


def stockholm_wall(instant: datetime) -> datetime:
    """An instant as Fortnox stores `lastmodified`: Swedish local wall time, to the minute."""
    if _STOCKHOLM is not None:
        local = instant.astimezone(_STOCKHOLM)
    else:  # pragma: no cover
        local = instant + timedelta(hours=2 if _eu_summer(instant) else 1)
    return local.replace(tzinfo=None, second=0, microsecond=0)


def stockholm_today(now: datetime | None = None) -> date:
    now = now or datetime.now(UTC)
    if _STOCKHOLM is not None:
        return now.astimezone(_STOCKHOLM).date()
    return (now + timedelta(hours=2 if _eu_summer(now) else 1)).date()  # pragma: no cover


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _natural(value: str) -> tuple[int, int, str]:
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


# What a list item carries (fortpyx's list-item models, from Fortnox's OpenAPI spec): a
# summary, not the record. No Active or ExternalReference on customers.
LIST_KEYS = {
    "customer": (
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
    ),
    "invoice": (
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
    ),
    "order": (
        "@url",
        "DocumentNumber",
        "CustomerNumber",
        "CustomerName",
        "Currency",
        "Total",
        "ExternalInvoiceReference1",
        "ExternalInvoiceReference2",
        "OrderDate",
        "DeliveryDate",
        "Cancelled",
        "Sent",
    ),
}
# list filters: parameter -> field (case-insensitive substring match, as Fortnox's %value%)
TEXT_FILTERS = {
    "customer": {
        "organisationnumber": "OrganisationNumber",
        "name": "Name",
        "customernumber": "CustomerNumber",
        "email": "Email",
        "phone": "Phone1",
        "zipcode": "ZipCode",
        "city": "City",
    },
    "invoice": {
        "externalinvoicereference1": "ExternalInvoiceReference1",
        "externalinvoicereference2": "ExternalInvoiceReference2",
        "customernumber": "CustomerNumber",
        "customername": "CustomerName",
        "documentnumber": "DocumentNumber",
        "yourreference": "YourReference",
        "ourreference": "OurReference",
        "yourordernumber": "YourOrderNumber",
    },
}
TEXT_FILTERS["order"] = TEXT_FILTERS["invoice"]
STATUS_FILTERS = {
    "customer": ("active", "inactive"),
    "invoice": ("cancelled", "fullypaid", "unpaid", "unpaidoverdue", "unbooked"),
    "order": ("cancelled", "expired", "invoicecreated", "invoicenotcreated"),
}
SORT_FIELDS = {
    "customer": {
        "customernumber": "CustomerNumber",
        "name": "Name",
        "organisationnumber": "OrganisationNumber",
        "city": "City",
        "zipcode": "ZipCode",
    },
    "invoice": {
        "documentnumber": "DocumentNumber",
        "customernumber": "CustomerNumber",
        "customername": "CustomerName",
        "invoicedate": "InvoiceDate",
        "total": "Total",
    },
    "order": {
        "documentnumber": "DocumentNumber",
        "customernumber": "CustomerNumber",
        "customername": "CustomerName",
        "orderdate": "OrderDate",
        "total": "Total",
    },
}
ROUTES = {"customers": "customer", "invoices": "invoice", "orders": "order"}
# Read-only registers (one item by name or number) and the scope each needs.
REGISTERS = {
    "predefinedaccounts": "bookkeeping",
    "accounts": "bookkeeping",
    "currencies": "currency",
}
CURRENCY_NAMES = {
    "SEK": "Svenska kronor", "EUR": "Euro", "USD": "US-dollar", "NOK": "Norska kronor",
    "DKK": "Danska kronor", "GBP": "Brittiska pund",
}  # fmt: skip
# The "automatic" daily rates the sandbox hands out: fixed, so tests can compare them.
DAILY_RATES = {
    "EUR": Decimal("11.50"), "USD": Decimal("10.60"), "NOK": Decimal("0.98"),
    "DKK": Decimal("1.54"), "GBP": Decimal("13.40"),
}  # fmt: skip
WRAPPER = {"customer": "Customer", "invoice": "Invoice", "order": "Order"}
LIST_WRAPPER = {"customer": "Customers", "invoice": "Invoices", "order": "Orders"}


def _err(code: int, message: str, status: int = 400) -> FortnoxError:
    return FortnoxError(code, message, status)


class Fortnox(App):
    api_prefix = "/3/"

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        tenant_id: str,
        rate_limit: int | None = 25,
        rate_window: float = 5.0,
        token_lifetime: float = 3600,
        default_account: bool = True,
        fault_seed: int = 0,
        latency: float = 0.0,
    ) -> None:
        super().__init__(fault_seed=fault_seed, latency=latency)
        self.client_id = client_id
        self.client_secret = client_secret
        self.tenant_id = str(tenant_id)
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.token_lifetime = token_lifetime
        self.refresh_token_lifetime = REFRESH_LIFETIME
        self.code_lifetime = CODE_LIFETIME
        self.default_account = default_account
        #: modules the company holds a licence for; a scope without its licence -> 2001101
        self.licences: set[str] = set(ALL_SCOPES)
        #: whether the company holds the licence to use the API at all (2001103 otherwise)
        self.api_licence = True
        #: scopes of the (pre-consented) service account used by client credentials
        self.service_scopes: set[str] = set(ALL_SCOPES)
        #: reusing a spent refresh token also revokes the live one of its chain ("two
        #: parallel refreshes log the integration out")
        self.revoke_chain_on_reuse = True
        self.last_consent: dict[str, Any] | None = None
        #: answer errors as {"ErrorInformation": {"Error", "Message", "Code"}} (Fortnox does,
        #: sometimes; a client must read both spellings)
        self.capitalised_errors = False
        self.rate_limited = 0
        #: seconds Fortnox's clock is ahead of this machine's (negative: behind): every
        #: `lastmodified` it stamps and the `Date` header of every answer follow it. A test
        #: may instead set `clock` (a function returning an aware UTC datetime), e.g. to put
        #: Fortnox inside the October fall-back hour.
        self.clock_offset = 0.0
        self.clock: Any = None
        self.company = {
            "Address": "Sandlådevägen 1",
            "City": "Stockholm",
            "CountryCode": "SE",
            "DatabaseNumber": int(self.tenant_id) if self.tenant_id.isdigit() else 0,
            "CompanyName": "Sandlåda AB",
            "OrganizationNumber": "556677-8899",
            "VisitAddress": "Sandlådevägen 1",
            "VisitCity": "Stockholm",
            "VisitCountryCode": "SE",
            "VisitZipCode": "111 22",
            "ZipCode": "111 22",
        }
        self._secret = secrets.token_bytes(32)
        self._lock = threading.RLock()
        self._access: dict[str, dict[str, Any]] = {}
        self._refresh: dict[str, dict[str, Any]] = {}
        self._chains: dict[str, str] = {}  # chain id -> its live refresh token
        self._codes: dict[str, dict[str, Any]] = {}
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._store: dict[str, dict[str, dict[str, Any]]] = {
            "customer": {},
            "invoice": {},
            "order": {},
        }
        self._modified: dict[str, dict[str, datetime]] = {
            "customer": {},
            "invoice": {},
            "order": {},
        }
        self._next = {"customer": 1, "invoice": 1, "order": 1}
        #: numbers of deleted customers: Fortnox never hands them out again (2000637)
        self._deleted_customers: set[str] = set()
        #: invoice number -> what has been paid on it (`register_payment`)
        self._paid: dict[str, Decimal] = {}
        #: a few accounts of the BAS chart (`GET /3/accounts/{n}`, scope bookkeeping); a test
        #: may set one's CostCenterSettings to MANDATORY: rows on it then need a CostCenter
        self.accounts: dict[int, dict[str, Any]] = {
            n: {
                "Number": n, "Description": d, "Active": True,
                "CostCenterSettings": "ALLOWED", "ProjectSettings": "ALLOWED", "VATCode": "MP1",
            }
            for n, d in (
                (DEFAULT_SALES_ACCOUNT, "Försäljning inom Sverige, 25 % moms"),
                (DEFAULT_SERVICES_ACCOUNT, "Försäljning tjänster inom Sverige, 25 % moms"),
                (3010, "Försäljning varor"),
                (3105, "Försäljning varor till land utanför EU"),
                (3308, "Försäljning tjänster till annat EU-land"),
            )
        }  # fmt: skip
        #: whether foreign currencies get Fortnox's automatic daily rates (`GET /3/currencies`,
        #: scope currency); without, a currency has the rate someone typed, or none (0)
        self.automatic_rates = True
        self.manual_rates: dict[str, Decimal] = {}

    # -----------------------------------------------------------------------------------------
    # Python API
    # -----------------------------------------------------------------------------------------

    @property
    def customers(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._render("customer", c) for c in self._store["customer"].values()]

    @property
    def invoices(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._render("invoice", d) for d in self._store["invoice"].values()]

    @property
    def orders(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._render("order", d) for d in self._store["order"].values()]

    def customer(self, number: str) -> dict[str, Any] | None:
        with self._lock:
            c = self._store["customer"].get(str(number))
            return self._render("customer", c) if c else None

    def documents_by_ref(self, ref: str, kind: str = "invoice") -> list[dict[str, Any]]:
        with self._lock:
            return [
                self._render(kind, d)
                for d in self._store[kind].values()
                if d.get("ExternalInvoiceReference1") == ref
            ]

    def add_customer(self, fields: dict[str, Any], *, stored_orgnr: str | None = None) -> str:
        """A customer that was in Fortnox before limefort came (validated like a POST).
        `stored_orgnr`: the organisation number as hand entry, an SIE or spreadsheet import
        or an older integration left it (`5514637445`, `16553793-5974`, a trailing blank):
        Fortnox's API accepts only NNNNNN-NNNN, its other ways in do not check."""
        with self._lock:
            number: str = self._create_customer(fields)["CustomerNumber"]
            if stored_orgnr is not None:
                self._store["customer"][number]["OrganisationNumber"] = stored_orgnr
            return number

    def add_invoice(self, fields: dict[str, Any]) -> str:
        with self._lock:
            return self._create_document("invoice", fields)["DocumentNumber"]

    def add_order(self, fields: dict[str, Any]) -> str:
        with self._lock:
            return self._create_document("order", fields)["DocumentNumber"]

    def book_invoice(self, number: str) -> None:
        with self._lock:
            doc = self._store["invoice"][str(number)]
            doc["Booked"] = True
            self._touch("invoice", doc["DocumentNumber"])

    def register_payment(self, number: str, amount: Decimal | str, due: str | None = None) -> None:
        """As if a payment of `amount` was registered on the invoice in Fortnox (bank file or
        by hand): its `Balance` falls by it and the invoice counts as changed. `due`, when
        given, sets its DueDate first (to make it overdue without waiting a month)."""
        with self._lock:
            doc = self._get("invoice", str(number))
            if doc["Cancelled"]:
                raise _err(rules.DOCUMENT_CANCELLED, "Fakturan är makulerad.")
            if due is not None:
                doc["DueDate"] = due
            paid = self._paid.get(doc["DocumentNumber"], Decimal(0)) + Decimal(str(amount))
            self._paid[doc["DocumentNumber"]] = paid
            self._touch("invoice", doc["DocumentNumber"])

    def mark_sent(self, number: str, kind: str = "invoice") -> None:
        """As if someone sent the document from Fortnox (e-mail, print, e-invoice)."""
        with self._lock:
            doc = self._store[kind][str(number)]
            doc["Sent"] = True
            self._touch(kind, doc["DocumentNumber"])

    def cancel_document(self, number: str, kind: str = "invoice") -> None:
        """As if someone cancelled the document in Fortnox (refused like the API when booked)."""
        with self._lock:
            self._cancel(kind, str(number))

    def delete_document(self, number: str, kind: str = "invoice") -> None:
        """A test hook: the document is gone from Fortnox (404, lists leave it out), as if it
        had never been made. (Fortnox itself deletes no invoice; an audit must still notice
        a won deal whose document is missing, whatever removed it.)"""
        with self._lock:
            self._get(kind, str(number))
            del self._store[kind][str(number)]
            self._modified[kind].pop(str(number), None)

    def set_active(self, number: str, active: bool) -> None:
        """Mark a customer active or inactive, as a Fortnox user would."""
        with self._lock:
            customer = self._store["customer"][str(number)]
            customer["Active"] = bool(active)
            self._touch("customer", str(number))

    def delete_customer(self, number: str) -> None:
        """As `DELETE /3/customers/{number}`: gone (404 / 2000433), its number reserved."""
        with self._lock:
            self._delete_customer(str(number))

    def issue_refresh_token(self, scopes: Any = ALL_SCOPES) -> str:
        """A refresh token as if an administrator had just consented with these scopes."""
        with self._lock:
            return self._new_refresh(frozenset(scopes), chain=None)

    def issue_access_token(self, scopes: Any = ALL_SCOPES, lifetime: float | None = None) -> str:
        with self._lock:
            return self._new_access(frozenset(scopes), "OAUTH2", lifetime)

    def expire_access_tokens(self) -> None:
        with self._lock:
            for t in self._access.values():
                t["exp"] = 0.0

    # -----------------------------------------------------------------------------------------
    # HTTP
    # -----------------------------------------------------------------------------------------

    def now(self) -> datetime:
        """Fortnox's clock: `clock()` if set, else this machine's plus `clock_offset`."""
        if self.clock is not None:
            return self.clock()
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset)

    def decorate(self, resp: Response) -> None:
        resp.headers["Date"] = formatdate(self.now().timestamp(), usegmt=True)

    def fault_response(self, kind: str) -> Response:
        if kind == "429":
            e = _err(rules.RATE_LIMITED, "För många anrop, försök igen om en stund.", 429)
        elif kind == "503":
            e = _err(rules.UNAVAILABLE, "Tjänsten är inte tillgänglig just nu.", 503)
        else:
            e = _err(rules.SYSTEM_EXCEPTION, "System exception", 500)
        return json_response(e.status, e.body(self.capitalised_errors))

    def handle(self, req: Request) -> Response:
        try:
            if req.path == "/oauth-v1/token":
                return self._token(req)
            if req.path == "/oauth-v1/auth":
                return self._consent(req)
            if req.path.startswith("/3/"):
                return self._api(req)
            raise _err(rules.NO_SUCH_RESOURCE, "Ogiltig resurs.", 404)
        except FortnoxError as e:
            return json_response(e.status, e.body(self.capitalised_errors))

    # --- OAuth -----------------------------------------------------------------------------

    def _new_access(
        self, scopes: frozenset[str], source: str, lifetime: float | None = None
    ) -> str:
        now = time.time()
        life = self.token_lifetime if lifetime is None else lifetime
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = {
            "iss": "https://apps.fortnox.se/sandbox",
            "sub": f"{self.client_id}@{self.tenant_id}",
            "tenantId": int(self.tenant_id) if self.tenant_id.isdigit() else self.tenant_id,
            "clientId": self.client_id,
            "authSource": source,
            "scope": " ".join(s for s in ALL_SCOPES if s in scopes),
            "iat": int(now),
            "exp": int(now + life),
            "jti": str(uuid.uuid4()),
        }
        body = _b64url(json.dumps(payload, separators=(",", ":")).encode())
        sig = _b64url(hmac.new(self._secret, f"{header}.{body}".encode(), hashlib.sha256).digest())
        token = f"{header}.{body}.{sig}"
        self._access[token] = {"exp": now + life, "scopes": scopes, "client": self.client_id}
        return token

    def _new_refresh(self, scopes: frozenset[str], chain: str | None) -> str:
        token = secrets.token_urlsafe(32)
        chain = chain or secrets.token_hex(8)
        self._refresh[token] = {
            "scopes": scopes,
            "created": time.time(),
            "used": False,
            "chain": chain,
        }
        self._chains[chain] = token
        return token

    def _token_response(self, access: str, scopes: frozenset[str], refresh: str | None):
        body: dict[str, Any] = {
            "access_token": access,
            "scope": " ".join(s for s in ALL_SCOPES if s in scopes),
            "expires_in": int(self.token_lifetime),
            "token_type": "bearer",
        }
        if refresh is not None:
            body["refresh_token"] = refresh
        return Response(
            200, json.dumps(body).encode(), "application/json", {"Cache-Control": "no-store"}
        )

    def _token(self, req: Request) -> Response:
        if req.method != "POST":
            return _oauth_error(405, "invalid_request", "Use POST")
        scheme, _, creds = (req.header("Authorization") or "").partition(" ")
        cid = csecret = None
        if scheme.lower() == "basic":
            try:
                cid, _, csecret = (
                    base64.b64decode(creds.strip(), validate=True).decode().partition(":")
                )
            except (ValueError, UnicodeDecodeError):
                cid = None
        if cid != self.client_id or not secrets.compare_digest(csecret or "", self.client_secret):
            return _oauth_error(401, "invalid_client", "Client authentication failed")
        ctype = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return _oauth_error(400, "invalid_request", "Body must be form encoded")
        try:
            form = {
                k: v[-1] for k, v in parse_qs(req.body.decode(), keep_blank_values=True).items()
            }
        except UnicodeDecodeError:
            return _oauth_error(400, "invalid_request", "Body is not UTF-8")
        grant = form.get("grant_type", "")
        with self._lock:
            if grant == "authorization_code":
                return self._grant_code(form)
            if grant == "refresh_token":
                return self._grant_refresh(form)
            if grant == "client_credentials":
                return self._grant_service(req)
        if not grant:
            return _oauth_error(400, "invalid_request", "Missing grant_type")
        return _oauth_error(400, "unsupported_grant_type", f"Unsupported grant_type {grant!r}")

    def _grant_code(self, form: dict[str, str]) -> Response:
        code = self._codes.get(form.get("code", ""))
        if code is None or code["used"] or time.time() - code["created"] > self.code_lifetime:
            return _oauth_error(400, "invalid_grant", "Invalid authorization code")
        if form.get("redirect_uri") != code["redirect_uri"]:
            code["used"] = True  # a failed exchange spends the code too
            return _oauth_error(400, "invalid_grant", "redirect_uri does not match")
        code["used"] = True
        scopes = code["scopes"]
        refresh = self._new_refresh(scopes, chain=None)
        return self._token_response(self._new_access(scopes, "OAUTH2"), scopes, refresh)

    def _grant_refresh(self, form: dict[str, str]) -> Response:
        token = form.get("refresh_token", "")
        entry = self._refresh.get(token)
        if entry is None:
            return _oauth_error(400, "invalid_grant", "Invalid refresh token")
        if entry["used"]:
            if self.revoke_chain_on_reuse:
                live = self._chains.pop(entry["chain"], None)
                if live is not None and live in self._refresh:
                    self._refresh[live]["used"] = True
            return _oauth_error(400, "invalid_grant", "Invalid refresh token")
        if time.time() - entry["created"] > self.refresh_token_lifetime:
            return _oauth_error(400, "invalid_grant", "Invalid refresh token")
        entry["used"] = True
        scopes = entry["scopes"]
        new = self._new_refresh(scopes, chain=entry["chain"])
        return self._token_response(self._new_access(scopes, "OAUTH2"), scopes, new)

    def _grant_service(self, req: Request) -> Response:
        tenant = (req.header("TenantId") or "").strip()
        if not tenant:
            return _oauth_error(400, "invalid_request", "Missing TenantId header")
        if tenant != self.tenant_id:
            return _oauth_error(
                400, "invalid_grant", "The tenant has not consented to a service account"
            )
        scopes = frozenset(self.service_scopes)
        return self._token_response(self._new_access(scopes, "CLIENT_CREDENTIALS"), scopes, None)

    def _consent(self, req: Request) -> Response:
        if req.method != "GET":
            return _html(405, "Method not allowed")
        q = {k: v[-1] for k, v in req.query.items()}
        if q.get("client_id") != self.client_id:
            return _html(400, "Invalid client_id")
        redirect = q.get("redirect_uri", "")
        parts = urlsplit(redirect)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return _html(400, "Invalid redirect_uri")
        if q.get("response_type") != "code":
            return _html(400, "response_type must be code")
        if not q.get("state"):
            return _html(400, "state is required")
        scopes = q.get("scope", "").split()
        sep = "&" if parts.query else "?"
        if not scopes or any(s not in ALL_SCOPES for s in scopes):
            err = urlencode({"error": "invalid_scope", "state": q["state"]})
            return Response(302, b"", "text/plain", {"Location": f"{redirect}{sep}{err}"})
        account_type = q.get("account_type")
        if account_type not in (None, "service"):
            return _html(400, "account_type must be service when given")
        with self._lock:
            self.last_consent = {
                "client_id": q["client_id"],
                "scopes": tuple(scopes),
                "account_type": account_type,
                "access_type": q.get("access_type"),
                "redirect_uri": redirect,
                "state": q["state"],
                "at": time.time(),
            }
            if account_type == "service":
                self.service_scopes = set(scopes)
            code = secrets.token_urlsafe(24)
            self._codes[code] = {
                "created": time.time(),
                "redirect_uri": redirect,
                "scopes": frozenset(scopes),
                "used": False,
            }
        loc = f"{redirect}{sep}{urlencode({'code': code, 'state': q['state']})}"
        return Response(302, b"", "text/plain", {"Location": loc})

    # --- API -------------------------------------------------------------------------------

    def _authenticate(self, req: Request) -> dict[str, Any]:
        scheme, _, token = (req.header("Authorization") or "").partition(" ")
        entry = self._access.get(token.strip()) if scheme.lower() == "bearer" else None
        if entry is None:
            raise _err(
                rules.INVALID_LOGIN,
                "Ogiltig inloggning (access-token saknas eller är ogiltig).",
                401,
            )
        if entry["exp"] <= time.time():
            raise _err(rules.INVALID_LOGIN, "Ogiltig inloggning (access-token har gått ut).", 401)
        return entry

    def _rate(self, entry: dict[str, Any]) -> None:
        limit = self.rate_limit
        if not limit:
            return
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault((entry["client"], self.tenant_id), deque())
            edge = now - self.rate_window
            while window and window[0] <= edge:
                window.popleft()
            if len(window) >= limit:
                self.rate_limited += 1
                raise _err(rules.RATE_LIMITED, "För många anrop, försök igen om en stund.", 429)
            window.append(now)

    def _api(self, req: Request) -> Response:
        entry = self._authenticate(req)
        self._rate(entry)
        if not self.api_licence:  # the message is the sandbox's own; the code is Fortnox's
            raise _err(rules.NO_API_LICENCE, "Det finns ingen aktiv licens för API-integration.")
        parts = [unquote(p) for p in req.path[len("/3/") :].rstrip("/").split("/")]
        resource = parts[0]
        if resource == "companyinformation" and len(parts) == 1:
            self._allowed(entry, "companyinformation")
            if req.method != "GET":
                raise _err(rules.NO_SUCH_RESOURCE, "Ogiltig resurs.", 404)
            self._params(req, set())
            return json_response(200, {"CompanyInformation": dict(self.company)})
        if resource in REGISTERS:
            self._allowed(entry, REGISTERS[resource])
            if req.method != "GET" or len(parts) != 2:
                raise _err(rules.NO_SUCH_RESOURCE, "Ogiltig resurs.", 404)
            self._params(req, set())
            return self._register(resource, parts[1])
        kind = ROUTES.get(resource)
        if kind is None:
            raise _err(rules.NO_SUCH_RESOURCE, "Ogiltig resurs.", 404)
        self._allowed(entry, kind)
        m = req.method
        with self._lock:
            if len(parts) == 1 and m == "GET":
                return self._list(req, kind)
            if len(parts) == 1 and m == "POST":
                fields = self._body(req, kind)
                if kind == "customer":
                    created = self._create_customer(fields)
                else:
                    created = self._create_document(kind, fields)
                return self._one(kind, created, 201)
            if len(parts) == 2 and m == "GET":
                self._params(req, set())
                return self._one(kind, self._get(kind, parts[1]))
            if len(parts) == 2 and m == "DELETE" and kind == "customer":
                self._params(req, set())
                self._delete_customer(parts[1])
                return Response(204, b"", "application/json")
            if len(parts) == 2 and m == "PUT":
                fields = self._body(req, kind)
                if kind == "customer":
                    return self._one(kind, self._update_customer(parts[1], fields))
                return self._one(kind, self._update_document(kind, parts[1], fields))
            if len(parts) == 3 and m == "PUT" and kind != "customer" and parts[2] == "cancel":
                return self._one(kind, self._cancel(kind, parts[1]))
            if len(parts) == 3 and m == "PUT" and kind == "invoice" and parts[2] == "bookkeep":
                doc = self._get(kind, parts[1])
                if doc["Cancelled"]:
                    raise _err(rules.DOCUMENT_CANCELLED, "Fakturan är makulerad.")
                doc["Booked"] = True
                self._touch(kind, doc["DocumentNumber"])
                return self._one(kind, doc)
        raise _err(rules.NO_SUCH_RESOURCE, "Ogiltig resurs.", 404)

    def _register(self, resource: str, name: str) -> Response:
        """One item of a register limefort's `check` reads: the preferred sales account
        (SALES; SALES2 for services), an account of the chart, a currency."""
        with self._lock:
            if resource == "predefinedaccounts":
                account = self._predefined().get(name.upper())
                if account is None:
                    raise _err(
                        rules.PREDEFINED_NOT_SET, f"Fördefinierat konto saknas ({name}).", 404
                    )
                return json_response(
                    200,
                    {
                        "PreDefinedAccount": {
                            "@url": f"{self.base_url}/3/predefinedaccounts/{name.upper()}",
                            "Name": name.upper(),
                            "Account": account,
                        }
                    },
                )
            if resource == "accounts":
                found = self.accounts.get(int(name)) if name.isdigit() else None
                if found is None:
                    raise _err(rules.ACCOUNT_NOT_FOUND, f"Kunde inte hitta konto ({name}).", 404)
                return json_response(
                    200, {"Account": {"@url": self._url("account", name), **found}}
                )
            currency = self._currency(name.upper())
            if currency is None:
                raise _err(rules.CURRENCY_NOT_FOUND, f"Kunde inte hitta valuta ({name}).", 404)
            return json_response(200, {"Currency": currency})

    def _predefined(self) -> dict[str, int]:
        if not self.default_account:
            return {}
        return {"SALES": DEFAULT_SALES_ACCOUNT, "SALES2": DEFAULT_SERVICES_ACCOUNT}

    def _currency(self, code: str) -> dict[str, Any] | None:
        if code not in CURRENCY_NAMES:
            return None
        automatic = self.automatic_rates and code != "SEK"
        rate = Decimal(1) if code == "SEK" else DAILY_RATES[code] if automatic else None
        rate = self.manual_rates.get(code, rate or Decimal(0))
        return {
            "@url": f"{self.base_url}/3/currencies/{code}",
            "Code": code,
            "Description": CURRENCY_NAMES[code],
            "BuyRate": rate,
            "SellRate": rate,
            "IsAutomatic": automatic,
            "Unit": Decimal(1),
            "Date": stockholm_today(self.now()).isoformat(),
        }

    def _cost_centres(self, header: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """A row booked on an account that demands a cost centre needs one (on the row or the
        document): Fortnox refuses it otherwise ("Kostnadsställe måste anges")."""
        for i, row in enumerate(rows, start=1):
            if row.get("_text"):
                continue
            account = _row_account(row, text=False)
            settings = self.accounts.get(account, {}).get("CostCenterSettings")
            if settings == "MANDATORY" and not (row.get("CostCenter") or header.get("CostCenter")):
                raise _err(
                    rules.COST_CENTRE_REQUIRED,
                    f"Kostnadsställe måste anges (rad {i}, konto {account}).",
                )

    def _allowed(self, entry: dict[str, Any], scope: str) -> None:
        if scope not in entry["scopes"]:
            raise _err(rules.NO_SCOPE, f"Har inte behörighet för scope ({scope}).", 403)
        if scope not in self.licences:
            raise _err(
                rules.NO_LICENCE, f"Det finns ingen aktiv licens för önskat scope ({scope})."
            )

    def _body(self, req: Request, kind: str) -> dict[str, Any]:
        if not req.body.strip():
            raise _err(rules.EMPTY_BODY, "Ingen eller felaktig typ av data.")
        ctype = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise _err(rules.INVALID_CONTENT_TYPE, "Invalid content type")
        try:
            data = loads_decimal(req.body)
        except (ValueError, UnicodeDecodeError):
            raise _err(rules.JSON_SYNTAX, "Error deserializing JSON: JSON_ERROR_SYNTAX") from None
        wrapper = WRAPPER[kind]
        if (
            not isinstance(data, dict)
            or list(data) != [wrapper]
            or not isinstance(data[wrapper], dict)
        ):
            raise _err(rules.EMPTY_BODY, "Ingen eller felaktig typ av data.")
        return data[wrapper]

    @staticmethod
    def _params(req: Request, allowed: set[str]) -> dict[str, str]:
        out = {}
        for k, vs in req.query.items():
            if k not in allowed:
                raise _err(rules.INVALID_PARAMETER, f"Ogiltig parameter i anropet. ({k})")
            if len(vs) > 1:
                raise _err(rules.INVALID_PARAMETER, f"Ogiltig parameter i anropet. ({k} upprepad)")
            out[k] = vs[0]
        return out

    # --- storage helpers ---

    def _touch(self, kind: str, number: str) -> None:
        self._modified[kind][number] = self.now()

    def _url(self, kind: str, number: str) -> str:
        return f"{self.base_url}/3/{kind}s/{number}"

    def _get(self, kind: str, number: str) -> dict[str, Any]:
        doc = self._store[kind].get(number)
        if doc is None:
            if kind == "customer":
                raise _err(rules.CUSTOMER_NOT_FOUND, "Kan inte hitta kunden.", 404)
            what = "fakturan" if kind == "invoice" else "ordern"
            raise _err(rules.DOCUMENT_NOT_FOUND, f"Kan inte hitta {what}.", 404)
        return doc

    def _render(self, kind: str, stored: dict[str, Any]) -> dict[str, Any]:
        number = stored["CustomerNumber"] if kind == "customer" else stored["DocumentNumber"]
        out: dict[str, Any] = {"@url": self._url(kind, number)}
        for k in sorted(stored):
            v = stored[k]
            if k in ("InvoiceRows", "OrderRows"):
                v = [dict(r) for r in v]
            out[k] = v
        if kind == "invoice":
            out["Balance"] = self._balance(kind, stored)
        return out

    def _balance(self, kind: str, stored: dict[str, Any]) -> Decimal:
        """What is left to pay on an invoice (payments: `register_payment`)."""
        if kind != "invoice" or stored["Cancelled"]:
            return Decimal(0)
        total: Decimal = stored["Total"]
        return total - self._paid.get(stored["DocumentNumber"], Decimal(0))

    def _one(self, kind: str, stored: dict[str, Any], status: int = 200) -> Response:
        return json_response(status, {WRAPPER[kind]: self._render(kind, stored)})

    # --- customers ---

    def _create_customer(self, fields: dict[str, Any]) -> dict[str, Any]:
        checked = rules.validate_customer(fields, creating=True)
        store = self._store["customer"]
        number = checked.get("CustomerNumber")
        if number is not None:
            if number in store or number in self._deleted_customers:
                raise _err(
                    rules.CUSTOMER_NUMBER_USED,
                    f"Kundnummer {number} används redan. Kundnumret har redan använts men "
                    "blivit raderat.",
                )
        else:
            while (
                str(self._next["customer"]) in store
                or str(self._next["customer"]) in self._deleted_customers
            ):
                self._next["customer"] += 1
            number = str(self._next["customer"])
            self._next["customer"] += 1
        customer: dict[str, Any] = {}
        for name, spec in rules.CUSTOMER_FIELDS.items():
            if spec.kind in ("text", "multiline", "email", "orgnr", "country"):
                customer[name] = ""
        customer.update(Active=True, Type="COMPANY", Currency="SEK", VATType="SEVAT")
        customer.update(checked)
        customer["CustomerNumber"] = number
        customer.pop("@url", None)
        self._derive(customer)
        store[number] = customer
        self._touch("customer", number)
        return customer

    def _delete_customer(self, number: str) -> None:
        # Assumed: documents made out to the customer keep their copy of its name and address
        # and do not stop the deletion (Fortnox's rule for that is not published).
        self._get("customer", number)
        del self._store["customer"][number]
        self._modified["customer"].pop(number, None)
        self._deleted_customers.add(number)

    def _update_customer(self, number: str, fields: dict[str, Any]) -> dict[str, Any]:
        customer = self._get("customer", number)
        checked = rules.validate_customer(fields, creating=False)
        if "CustomerNumber" in checked and checked["CustomerNumber"] != number:
            raise _err(rules.CUSTOMER_NUMBER_CHANGE, "Kundnumret kan inte ändras (CustomerNumber).")
        customer.update(checked)
        self._derive(customer)
        self._touch("customer", number)
        return customer

    @staticmethod
    def _derive(customer: dict[str, Any]) -> None:
        for derived, code_field in rules.CUSTOMER_DERIVED.items():
            customer[derived] = rules.country_name(customer.get(code_field, ""))

    # --- invoices and orders ---

    def _check_document(
        self, kind: str, fields: dict[str, Any], creating: bool
    ) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
        specs = rules.INVOICE_FIELDS if kind == "invoice" else rules.ORDER_FIELDS
        if not isinstance(fields, dict):
            raise _err(rules.EMPTY_BODY, "Ingen eller felaktig typ av data.")
        checked = rules.check_fields(fields, specs)
        rows_field = "InvoiceRows" if kind == "invoice" else "OrderRows"
        rows = None
        if rows_field in checked:
            rows = rules.check_rows(kind, checked.pop(rows_field), self.default_account)
            self._cost_centres(checked, rows)
        if creating and "CustomerNumber" not in checked:
            raise _err(rules.REQUIRED, "Fältet CustomerNumber (kundnummer) måste anges.")
        if "CustomerNumber" in checked and checked["CustomerNumber"] not in self._store["customer"]:
            raise _err(
                rules.CUSTOMER_NOT_FOUND,
                f"Kunden med kundnummer {checked['CustomerNumber']} hittades inte.",
            )
        if kind == "order" and ((creating and not rows) or (rows is not None and not rows)):
            raise _err(rules.ORDER_WITHOUT_ROWS, "En order måste ha minst en rad (OrderRows).")
        return checked, rows

    def _render_rows(self, kind: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for r in rows:
            text = r.pop("_text", False)
            price = r.get("Price", Decimal(0))
            delivered = r.get("DeliveredQuantity", Decimal(0))
            row: dict[str, Any] = {
                "AccountNumber": _row_account(r, text=text),
                "ArticleNumber": r.get("ArticleNumber", ""),
                "DeliveredQuantity": f"{delivered:.2f}",
                "Description": r.get("Description", ""),
                "Discount": r.get("Discount", Decimal(0)),
                "DiscountType": r.get("DiscountType", "PERCENT"),
                "Price": price,
                "Unit": r.get("Unit", ""),
                "VAT": r.get("VAT", Decimal(0) if text else Decimal(25)),
            }
            qty = delivered
            if kind == "order":
                ordered = r.get("OrderedQuantity", Decimal(0))
                row["OrderedQuantity"] = f"{ordered:.2f}"
                qty = ordered
            total = price * qty
            discount = row["Discount"]
            if discount:
                if row["DiscountType"] == "PERCENT":
                    total = total * (100 - discount) / 100
                else:
                    total = total - discount
            row["Total"] = total
            out.append(row)
        return out

    def _apply_document(self, kind: str, doc: dict[str, Any], checked: dict[str, Any]) -> None:
        if "CustomerNumber" in checked and checked["CustomerNumber"] != doc.get("CustomerNumber"):
            customer = self._store["customer"][checked["CustomerNumber"]]
            doc.update(
                CustomerName=customer["Name"],
                OrganisationNumber=customer["OrganisationNumber"],
                Address1=customer["Address1"],
                Address2=customer["Address2"],
                ZipCode=customer["ZipCode"],
                City=customer["City"],
                Country=customer["Country"],
            )
            if "Currency" not in checked and "Currency" not in doc:
                doc["Currency"] = customer["Currency"] or "SEK"
        doc.update(checked)

    def _create_document(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        checked, rows = self._check_document(kind, fields, creating=True)
        number = str(self._next[kind])
        self._next[kind] += 1
        today = stockholm_today(self.now())
        doc: dict[str, Any] = {
            "DocumentNumber": number,
            "Booked": False,
            "Cancelled": False,
            "Sent": False,
            "Comments": "",
            "Remarks": "",
            "ExternalInvoiceReference1": "",
            "ExternalInvoiceReference2": "",
            "OurReference": "",
            "YourReference": "",
            "YourOrderNumber": "",
            "VATIncluded": False,
        }
        self._apply_document(kind, doc, checked)
        doc.setdefault("Currency", "SEK")
        if kind == "invoice":
            doc.setdefault("InvoiceDate", today.isoformat())
            if "DueDate" not in doc:
                invoice_date = date.fromisoformat(doc["InvoiceDate"])
                doc["DueDate"] = (invoice_date + timedelta(days=30)).isoformat()
        else:
            doc.setdefault("OrderDate", today.isoformat())
            doc.setdefault("DeliveryDate", doc["OrderDate"])
        self._set_rows(kind, doc, rows or [])
        self._store[kind][number] = doc
        self._touch(kind, number)
        return doc

    def _set_rows(self, kind: str, doc: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        rendered = self._render_rows(kind, rows)
        doc["InvoiceRows" if kind == "invoice" else "OrderRows"] = rendered
        doc["Total"] = sum((r["Total"] for r in rendered), Decimal(0))

    def _editable(self, kind: str, doc: dict[str, Any], verb: str) -> None:
        what = "Fakturan" if kind == "invoice" else "Ordern"
        if doc.get("Booked"):
            raise _err(rules.DOCUMENT_BOOKED, f"{what} är bokförd och kan inte {verb}.")
        if doc["Cancelled"]:
            raise _err(rules.DOCUMENT_CANCELLED, f"{what} är makulerad och kan inte {verb}.")

    def _update_document(self, kind: str, number: str, fields: dict[str, Any]) -> dict[str, Any]:
        doc = self._get(kind, number)
        self._editable(kind, doc, "ändras")
        checked, rows = self._check_document(kind, fields, creating=False)
        self._apply_document(kind, doc, checked)
        if rows is not None:
            self._set_rows(kind, doc, rows)
        self._touch(kind, number)
        return doc

    def _cancel(self, kind: str, number: str) -> dict[str, Any]:
        doc = self._get(kind, number)
        self._editable(kind, doc, "makuleras")
        doc["Cancelled"] = True
        self._touch(kind, number)
        return doc

    # --- lists ---

    def _list(self, req: Request, kind: str) -> Response:
        text_filters = TEXT_FILTERS[kind]
        allowed = set(text_filters) | {
            "filter",
            "lastmodified",
            "sortby",
            "sortorder",
            "page",
            "limit",
            "offset",
        }
        if kind != "customer":
            allowed |= {"fromdate", "todate"}
        p = self._params(req, allowed)

        def bad(name: str) -> FortnoxError:
            return _err(
                rules.INVALID_PARAMETER, f"Ogiltig parameter i anropet. ({name}={p[name]!r})"
            )

        def whole(name: str, default: int, lo: int, hi: int | None) -> int:
            if name not in p:
                return default
            raw = p[name].strip()
            if not raw.isdigit() or int(raw) < lo or (hi is not None and int(raw) > hi):
                raise bad(name)
            return int(raw)

        limit = whole("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        page = whole("page", 1, 1, None)
        offset = whole("offset", 0, 0, None)

        since = None
        if "lastmodified" in p:
            try:
                since = datetime.strptime(p["lastmodified"].strip(), "%Y-%m-%d %H:%M")
            except ValueError:
                raise bad("lastmodified") from None
        dates = {}
        for name in ("fromdate", "todate"):
            if name in p:
                try:
                    dates[name] = date.fromisoformat(p[name].strip()).isoformat()
                except ValueError:
                    raise bad(name) from None
        status = p.get("filter")
        if status is not None and status not in STATUS_FILTERS[kind]:
            raise bad("filter")
        sortby = p.get("sortby")
        if sortby is not None and sortby not in SORT_FIELDS[kind]:
            raise bad("sortby")
        sortorder = p.get("sortorder", "ascending")
        if sortorder not in ("ascending", "descending"):
            raise bad("sortorder")
        needles = [(f, p[k].casefold()) for k, f in text_filters.items() if k in p]

        items = list(self._store[kind].values())
        if needles or since or dates or status:
            modified = self._modified[kind]
            date_field = {"invoice": "InvoiceDate", "order": "OrderDate"}.get(kind)
            today = stockholm_today(self.now()).isoformat()
            kept = []
            for it in items:
                if any(n not in str(it.get(f, "")).casefold() for f, n in needles):
                    continue
                number = it["CustomerNumber" if kind == "customer" else "DocumentNumber"]
                # Fortnox compares Swedish wall-clock times (it stores them so): in the
                # October fall-back hour a later change can carry an earlier wall time.
                if since is not None and stockholm_wall(modified[number]) < since:
                    continue
                if date_field and "fromdate" in dates and it[date_field] < dates["fromdate"]:
                    continue
                if date_field and "todate" in dates and it[date_field] > dates["todate"]:
                    continue
                if status and not _status_ok(kind, status, it, today, self._balance(kind, it)):
                    continue
                kept.append(it)
            items = kept
        if sortby is not None or sortorder == "descending":
            field = SORT_FIELDS[kind][
                sortby or ("customernumber" if kind == "customer" else "documentnumber")
            ]
            if field in ("CustomerNumber", "DocumentNumber"):
                items.sort(key=lambda it: _natural(it[field]), reverse=sortorder == "descending")
            else:
                items.sort(key=lambda it: it.get(field) or "", reverse=sortorder == "descending")
        total = len(items)
        start = offset + (page - 1) * limit
        chunk = items[start : start + limit]
        keys = LIST_KEYS[kind]
        listed = []
        for it in chunk:
            rendered = self._render(kind, it)
            if kind == "customer":
                rendered["Phone"] = it.get("Phone1", "")
            listed.append({k: rendered.get(k) for k in keys})
        pages = max(1, -(-max(total - offset, 0) // limit))
        # MetaInformation first, as Fortnox sends it (some clients read the list as the
        # second key).
        body = {
            "MetaInformation": {
                "@TotalResources": total,
                "@TotalPages": pages,
                "@CurrentPage": page,
            },
            LIST_WRAPPER[kind]: listed,
        }
        return Response(200, dumps(body).encode("utf-8"), "application/json")


def _row_account(row: dict[str, Any], *, text: bool) -> int:
    """The account a row is booked on: its own, none (0) for a text or article row, else the
    preferred sales account (a company without one refused the row in `check_rows`)."""
    own = row.get("AccountNumber")
    if own is not None:
        return int(own)
    return 0 if text or row.get("ArticleNumber") else DEFAULT_SALES_ACCOUNT


def _status_ok(kind: str, status: str, it: dict[str, Any], today: str, balance: Decimal) -> bool:
    if kind == "customer":
        return it["Active"] == (status == "active")
    if status == "cancelled":
        return it["Cancelled"]
    if kind == "invoice":
        if status == "unbooked":
            return not it["Booked"] and not it["Cancelled"]
        if status == "fullypaid":
            return not it["Cancelled"] and balance <= 0
        if status == "unpaid":
            return not it["Cancelled"] and balance > 0
        if status == "unpaidoverdue":
            return not it["Cancelled"] and balance > 0 and it["DueDate"] < today
    if kind == "order":
        if status == "invoicecreated":
            return False
        if status == "invoicenotcreated":
            return not it["Cancelled"]
        if status == "expired":
            return False
    return True


def _oauth_error(status: int, error: str, description: str) -> Response:
    body = {"error": error, "error_description": description}
    return Response(
        status, json.dumps(body).encode(), "application/json", {"Cache-Control": "no-store"}
    )


def _html(status: int, message: str) -> Response:
    page = f"<!doctype html><title>Fortnox</title><h1>{status}</h1><p>{message}</p>"
    return Response(status, page.encode(), "text/html; charset=utf-8")
