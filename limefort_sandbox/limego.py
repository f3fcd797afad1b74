"""The sandbox Lime Go server: the public CRM API v1 (JSON:API), read-only, OAuth2 client
credentials, with a change feed.

Strict where the real service is (or may be) strict: unknown query parameters, bad filter
values, page sizes outside 1..100, unknown sparse fields and includes are all 400
`invalid_query`; a missing scope is 403 `insufficient_scope`. Paging is by opaque cursor in
`links.next`, absent on the last page.

Records are kept in id order (a sorted list of ids beside a dict), and a cursor holds the
last id served, so a page scans forward from where the previous one stopped: reading all of
100 000 records is O(N) in total, whatever the filter.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import secrets
import threading
import time
import uuid
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, urlencode

from limefort_sandbox.http import App, Request, Response
from limefort_sandbox.seed import SeedData, iso

JSONAPI = "application/vnd.api+json"
ALL_SCOPES = ("companies:read", "deals:read", "contacts:read", "reference:read", "changes:read")
COMPANY_STATUSES = ("lead", "prospect", "customer", "churned", "inactive", "unknown")
MAX_PAGE = 100
DEFAULT_PAGE = 25
CHANGES_PAGE = 100

CONTACT_STATUSES = ("active", "inactive", "lead", "unknown")
STATUSES = {"companies": COMPANY_STATUSES, "contacts": CONTACT_STATUSES}
#: attributes a sparse fieldset cannot leave out ("timestamps always come")
ALWAYS = ("created_at", "updated_at")

# type -> what it has and what may be asked of it. Attribute names, filters and includes are
# those of Lime's OpenAPI v1.0.0 as the qls-lime-go-agentic SDK models them (docs/api/limego.md).
TYPES: dict[str, dict[str, Any]] = {
    "companies": {
        "attributes": (
            "name",
            "business_id",
            "status",
            "description",
            "domain",
            "email",
            "phone",
            "industry",
            "street",
            "postal_code",
            "city",
            "state",
            "country",
            "custom_fields",
            "created_at",
            "updated_at",
        ),
        "relationships": ("owner", "tags"),
        "filters": ("updated_since", "status", "name"),
        "scope": "companies:read",
        "include": {"owner": "owners"},
        "sort": True,
    },
    "deals": {
        "attributes": (
            "name",
            "description",
            "value",
            "currency",
            "probability",
            "expected_close_date",
            "custom_fields",
            "created_at",
            "updated_at",
        ),
        "relationships": ("company", "stage", "contacts", "owners", "tags"),
        "filters": ("updated_since", "name"),
        "scope": "deals:read",
        "include": {"company": "companies", "stage": "stages"},
        "sort": True,
    },
    "contacts": {
        "attributes": (
            "first_name",
            "last_name",
            "email",
            "phone",
            "mobile_phone",
            "job_title",
            "department",
            "notes",
            "status",
            "custom_fields",
            "created_at",
            "updated_at",
        ),
        "relationships": ("company", "tags"),
        "filters": ("updated_since", "status"),
        "scope": "contacts:read",
        "include": {"company": "companies"},
        "sort": True,
    },
    "stages": {
        "attributes": ("name", "category", "position", "probability", "created_at", "updated_at"),
        "relationships": (),
        "filters": ("name", "updated_since"),
        "scope": "reference:read",
        "include": {},
        "sort": True,
    },
    "owners": {  # paging only: no filter, sort or sparse fieldset; no revision
        "attributes": ("first_name", "last_name", "email"),
        "relationships": (),
        "filters": (),
        "scope": "reference:read",
        "include": {},
        "sort": False,
    },
    "custom-field-definitions": {
        "attributes": (
            "key",
            "label",
            "entity_type",
            "field_type",
            "options",
            "required",
            "archived_at",
            "created_at",
            "updated_at",
        ),
        "relationships": (),
        "filters": ("updated_since",),
        "scope": "reference:read",
        "include": {},
        "sort": True,
    },
}
_UUIDISH = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class _QueryError(Exception):
    def __init__(self, detail: str, status: int = 400, code: str = "invalid_query") -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.code = code


def _b64e(s: str) -> str:
    return base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")


def _b64d(s: str) -> str:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)).decode()


def parse_since(value: str) -> str:
    """`filter[updated_since]`: an ISO 8601 date or date-time with a time zone, returned in
    the fixed-width UTC form the records use (so string comparison orders by time)."""
    s = value.strip()
    if not s:
        raise _QueryError("filter[updated_since] must not be empty")
    if _DATE.match(s):
        try:
            d = date.fromisoformat(s)
        except ValueError:
            raise _QueryError(f"filter[updated_since]: not a date: {value!r}") from None
        return iso(datetime(d.year, d.month, d.day, tzinfo=UTC))
    if "T" not in s and "t" not in s:
        raise _QueryError(
            f"filter[updated_since]: expected ISO 8601 like 2026-01-31T12:00:00Z, got {value!r}"
        )
    try:
        dt = datetime.fromisoformat(s[:-1] + "+00:00" if s[-1] in "Zz" else s)
    except ValueError:
        raise _QueryError(
            f"filter[updated_since]: expected ISO 8601 like 2026-01-31T12:00:00Z, got {value!r}"
        ) from None
    if dt.tzinfo is None:
        raise _QueryError(
            f"filter[updated_since]: a date-time needs a time zone (Z or +01:00), got {value!r}"
        )
    return iso(dt)


class _Collection:
    """Resources of one type, in id order."""

    def __init__(self, type_: str, resources: Iterable[dict[str, Any]]) -> None:
        self.type = type_
        self.by_id: dict[str, dict[str, Any]] = {r["id"]: r for r in resources}
        self.ids: list[str] = sorted(self.by_id)

    def add(self, resource: dict[str, Any]) -> None:
        if resource["id"] not in self.by_id:
            insort(self.ids, resource["id"])
        self.by_id[resource["id"]] = resource


class LimeGo(App):
    api_prefix = "/api/v1/"

    def __init__(
        self,
        data: SeedData,
        client_id: str,
        client_secret: str,
        token_lifetime: float = 1800,
        fault_seed: int = 0,
        latency: float = 0.0,
        id_seed: int = 0,
    ) -> None:
        super().__init__(fault_seed=fault_seed, latency=latency)
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        #: scopes this client may be granted (remove one to test a 403)
        self.allowed_scopes: set[str] = set(ALL_SCOPES)
        self._tokens: dict[str, tuple[float, frozenset[str]]] = {}
        self._cols: dict[str, _Collection] = {
            "companies": _Collection("companies", data.companies),
            "deals": _Collection("deals", data.deals),
            "contacts": _Collection("contacts", data.contacts),
            "stages": _Collection("stages", data.stages),
            "owners": _Collection("owners", data.owners),
            "custom-field-definitions": _Collection("custom-field-definitions", data.definitions),
        }
        self._ids = random.Random(id_seed)
        self._last_ts = ""
        # change feed: entry i has sequence number self._floor + i + 1
        self._changes: list[dict[str, Any]] = []
        self._floor = 0
        self._epoch = secrets.token_hex(4)
        self._lock = threading.RLock()
        #: seconds Lime Go's clock is ahead of this machine's (negative: behind). The
        #: timestamps the sandbox stamps and the `Date` header of every answer follow it.
        self.clock_offset = 0.0

    # -----------------------------------------------------------------------------------------
    # Python API (tests and the demo)
    # -----------------------------------------------------------------------------------------

    @property
    def companies(self) -> dict[str, dict[str, Any]]:
        return self._cols["companies"].by_id

    @property
    def deals(self) -> dict[str, dict[str, Any]]:
        return self._cols["deals"].by_id

    @property
    def contacts(self) -> dict[str, dict[str, Any]]:
        return self._cols["contacts"].by_id

    @property
    def owners(self) -> dict[str, dict[str, Any]]:
        return self._cols["owners"].by_id

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        return self._cols["stages"].by_id

    @property
    def custom_field_definitions(self) -> dict[str, dict[str, Any]]:
        return self._cols["custom-field-definitions"].by_id

    def stage_id(self, stage: str) -> str:
        """ "open" (the first open stage), "won", "lost", a stage name, or a stage id."""
        stages = sorted(self.stages.values(), key=lambda s: s["attributes"]["position"])
        if stage in self.stages:
            return stage
        for s in stages:
            if stage in (s["attributes"]["category"], s["attributes"]["name"]):
                return s["id"]
        raise KeyError(f"no stage {stage!r}")

    def customer_ids(self) -> list[str]:
        with self._lock:
            return [i for i, c in self.companies.items() if c["attributes"]["status"] == "customer"]

    def won_deal_ids(self, since: datetime | None = None) -> list[str]:
        won = {i for i, s in self.stages.items() if s["attributes"]["category"] == "won"}
        bound = iso(since if since.tzinfo else since.replace(tzinfo=UTC)) if since else ""
        with self._lock:
            return [
                i
                for i in self._cols["deals"].ids
                if self.deals[i]["relationships"]["stage"]["data"]["id"] in won
                and self.deals[i]["attributes"]["updated_at"] >= bound
            ]

    def add_company(self, owner_id: str | None = None, **attributes: Any) -> str:
        self._check_attrs("companies", attributes)
        attrs: dict[str, Any] = dict.fromkeys(TYPES["companies"]["attributes"])
        attrs.update(status="lead", custom_fields={})
        attrs.update(attributes)
        if attrs["status"] not in COMPANY_STATUSES:
            raise ValueError(f"status must be one of {COMPANY_STATUSES}")
        if owner_id is None:
            owner_id = next(iter(self.owners))
        rels = {"owner": {"data": {"type": "owners", "id": owner_id}}, "tags": {"data": []}}
        return self._add("companies", attrs, rels)

    def update_company(self, id_: str, **attributes: Any) -> None:
        self._update("companies", id_, attributes)

    def add_contact(self, company_id: str | None = None, **attributes: Any) -> str:
        self._check_attrs("contacts", attributes)
        attrs: dict[str, Any] = dict.fromkeys(TYPES["contacts"]["attributes"])
        attrs.update(status="active", custom_fields={})
        attrs.update(attributes)
        if attrs["status"] not in CONTACT_STATUSES:
            raise ValueError(f"status must be one of {CONTACT_STATUSES}")
        ref = {"type": "companies", "id": company_id} if company_id else None
        return self._add("contacts", attrs, {"company": {"data": ref}, "tags": {"data": []}})

    def update_contact(self, id_: str, **attributes: Any) -> None:
        self._update("contacts", id_, attributes)

    def add_deal(
        self,
        company_id: str | None = None,
        stage: str = "open",
        contact_ids: Iterable[str] = (),
        owner_ids: Iterable[str] | None = None,
        **attributes: Any,
    ) -> str:
        self._check_attrs("deals", attributes)
        stage_id = self.stage_id(stage)
        attrs: dict[str, Any] = dict.fromkeys(TYPES["deals"]["attributes"])
        attrs.update(
            name="Affär",
            value="0.00",
            currency="SEK",
            custom_fields={},
            probability=self.stages[stage_id]["attributes"]["probability"],
        )
        attrs.update(attributes)
        attrs["value"] = self._value(attrs["value"])
        if owner_ids is None:
            owner_ids = [next(iter(self.owners))]
        if company_id is not None and company_id not in self.companies:
            raise KeyError(f"no company {company_id!r}")
        rels = {
            "company": {"data": {"type": "companies", "id": company_id} if company_id else None},
            "stage": {"data": {"type": "stages", "id": stage_id}},
            "contacts": {"data": [{"type": "contacts", "id": c} for c in contact_ids]},
            "owners": {"data": [{"type": "owners", "id": o} for o in owner_ids]},
            "tags": {"data": []},
        }
        return self._add("deals", attrs, rels)

    def update_deal(self, id_: str, **attributes: Any) -> None:
        """Attributes, and also `stage=`, `company_id=`, `contact_ids=`, `owner_ids=`."""
        rels: dict[str, Any] = {}
        if "stage" in attributes:
            rels["stage"] = {
                "data": {"type": "stages", "id": self.stage_id(attributes.pop("stage"))}
            }
        if "company_id" in attributes:
            cid = attributes.pop("company_id")
            rels["company"] = {"data": {"type": "companies", "id": cid} if cid else None}
        if "contact_ids" in attributes:
            rels["contacts"] = {
                "data": [{"type": "contacts", "id": c} for c in attributes.pop("contact_ids")]
            }
        if "owner_ids" in attributes:
            rels["owners"] = {
                "data": [{"type": "owners", "id": o} for o in attributes.pop("owner_ids")]
            }
        if "value" in attributes:
            attributes["value"] = self._value(attributes["value"])
        self._update("deals", id_, attributes, rels)

    def win_deal(self, id_: str) -> None:
        self.update_deal(id_, stage="won")

    def lose_deal(self, id_: str) -> None:
        self.update_deal(id_, stage="lost")

    def delete_company(self, id_: str) -> None:
        """Delete a company as a user would in Lime Go: GET answers 404, lists leave it out,
        the change feed says `deleted`. Deals and contacts keep pointing at it (an include
        of it is simply missing)."""
        self._delete("companies", id_)

    def delete_deal(self, id_: str) -> None:
        self._delete("deals", id_)

    def delete_contact(self, id_: str) -> None:
        self._delete("contacts", id_)

    def now(self) -> datetime:
        """Lime Go's clock: this machine's plus `clock_offset` seconds."""
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset)

    def expire_changes(self) -> None:
        """Forget the change history: every cursor issued so far answers 410."""
        with self._lock:
            self._floor += len(self._changes)
            self._changes.clear()

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    @property
    def change_cursor(self) -> str:
        return self._cursor(self._floor + len(self._changes))

    # --- internals of the Python API ---

    @staticmethod
    def _value(v: Any) -> str:
        if isinstance(v, str):
            return v
        from decimal import Decimal

        return f"{Decimal(str(v)):.2f}"

    @staticmethod
    def _check_attrs(type_: str, attributes: dict[str, Any]) -> None:
        unknown = set(attributes) - set(TYPES[type_]["attributes"])
        if unknown:
            raise TypeError(f"unknown {type_} attributes: {', '.join(sorted(unknown))}")

    def _now(self) -> str:
        """Now, strictly later than any timestamp handed out before (updates in the same
        microsecond still order)."""
        ts = iso(self.now())
        if ts <= self._last_ts:
            last = datetime.fromisoformat(self._last_ts[:-1])
            ts = (last + timedelta(microseconds=1)).isoformat(timespec="microseconds") + "Z"
        self._last_ts = ts
        return ts

    def _add(self, type_: str, attrs: dict[str, Any], rels: dict[str, Any]) -> str:
        with self._lock:
            id_ = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
            now = self._now()
            if "created_at" in attrs:  # explicit timestamps win (back-dated test records)
                attrs["created_at"] = attrs.get("created_at") or now
                attrs["updated_at"] = attrs.get("updated_at") or now
            res = {
                "type": type_,
                "id": id_,
                "attributes": attrs,
                "relationships": rels,
                "meta": {"revision": "1"},
            }
            self._cols[type_].add(res)
            self._record_change(type_, id_, "1")
            return id_

    def _update(
        self,
        type_: str,
        id_: str,
        attributes: dict[str, Any],
        rels: dict[str, Any] | None = None,
    ) -> None:
        self._check_attrs(type_, attributes)
        with self._lock:
            res = self._cols[type_].by_id[id_]
            attrs = res["attributes"]
            for k, v in attributes.items():
                if k == "custom_fields" and isinstance(v, dict):
                    attrs["custom_fields"] = {**(attrs.get("custom_fields") or {}), **v}
                else:
                    attrs[k] = v
            if type_ == "companies" and attrs["status"] not in COMPANY_STATUSES:
                raise ValueError(f"status must be one of {COMPANY_STATUSES}")
            if rels:
                res["relationships"].update(rels)
                if "stage" in rels and "probability" not in attributes:
                    stage = self.stages[rels["stage"]["data"]["id"]]
                    attrs["probability"] = stage["attributes"]["probability"]
            if "updated_at" not in attributes:
                attrs["updated_at"] = self._now()
            res["meta"]["revision"] = str(int(res["meta"]["revision"]) + 1)
            self._record_change(type_, id_, res["meta"]["revision"])

    def _delete(self, type_: str, id_: str) -> None:
        with self._lock:
            col = self._cols[type_]
            res = col.by_id.pop(id_)
            col.ids.remove(id_)
            self._record_change(type_, id_, str(int(res["meta"]["revision"]) + 1), deleted=True)

    def _record_change(self, type_: str, id_: str, revision: str, deleted: bool = False) -> None:
        self._changes.append(
            {
                "resource_type": type_,
                "resource_id": id_,
                "revision": revision,
                "deleted": deleted,
                "origin_integration_id": None,
            }
        )

    def _cursor(self, seq: int) -> str:
        return _b64e(f"chg:{self._epoch}:{seq}")

    # -----------------------------------------------------------------------------------------
    # HTTP
    # -----------------------------------------------------------------------------------------

    def decorate(self, resp: Response) -> None:
        resp.headers.setdefault("x-request-id", str(uuid.uuid4()))
        resp.headers["Date"] = formatdate(time.time() + self.clock_offset, usegmt=True)

    def fault_response(self, kind: str) -> Response:
        if kind == "429":
            return _error(429, "rate_limited", "Too many requests", "Retry later.", retry=1)
        if kind == "503":
            return _error(503, "unavailable", "Service unavailable", "Try again shortly.", retry=1)
        return _error(500, "internal_error", "Internal server error", "Something went wrong.")

    def handle(self, req: Request) -> Response:
        if req.path == "/oauth/token":
            if req.method != "POST":
                return _oauth_error(405, "invalid_request", "use POST")
            return self._token(req)
        if not req.path.startswith("/api/v1/"):
            return _error(404, "not_found", "Not found", f"no route {req.path}")
        if req.method != "GET":
            if req.method in ("POST", "PATCH", "PUT", "DELETE"):
                return _error(
                    405, "method_not_allowed", "Method not allowed", "this sandbox is read-only"
                )
            return _error(405, "method_not_allowed", "Method not allowed", req.method)
        scopes = self._auth(req)
        if isinstance(scopes, Response):
            return scopes
        if not _accepts_jsonapi(req.header("Accept")):
            return _error(
                406,
                "not_acceptable",
                "Not acceptable",
                f"send Accept: {JSONAPI} (got {req.header('Accept')!r})",
            )
        parts = req.path[len("/api/v1/") :].rstrip("/").split("/")
        try:
            if parts == ["changes"]:
                self._need(scopes, "changes:read")
                return self._changes_page(req)
            if parts[0] in TYPES and len(parts) <= 2:
                self._need(scopes, TYPES[parts[0]]["scope"])
                with self._lock:
                    if len(parts) == 1:
                        return self._list(req, parts[0], scopes)
                    return self._one(req, parts[0], parts[1], scopes)
        except _QueryError as e:
            titles = {400: "Invalid query", 403: "Forbidden", 404: "Not found", 410: "Gone"}
            return _error(e.status, e.code, titles.get(e.status, "Error"), e.detail)
        return _error(404, "not_found", "Not found", f"no route {req.path}")

    # --- auth ---

    def _token(self, req: Request) -> Response:
        ctype = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return _oauth_error(
                400, "invalid_request", "the body must be application/x-www-form-urlencoded"
            )
        try:
            form = parse_qs(req.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return _oauth_error(400, "invalid_request", "the body is not UTF-8")
        if any(len(v) > 1 for v in form.values()):
            return _oauth_error(400, "invalid_request", "a parameter is repeated")
        f = {k: v[0] for k, v in form.items()}
        grant = f.get("grant_type")
        if not grant:
            return _oauth_error(400, "invalid_request", "grant_type is missing")
        if f.get("client_id") != self.client_id or not secrets.compare_digest(
            f.get("client_secret", ""), self.client_secret
        ):
            return _oauth_error(401, "invalid_client", "client authentication failed")
        if grant != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", f"{grant!r} is not supported")
        requested = f.get("scope")
        allowed = [s for s in ALL_SCOPES if s in self.allowed_scopes]
        if requested is None or not requested.strip():
            granted = allowed
        else:
            asked = requested.split()
            granted = [s for s in asked if s in self.allowed_scopes]
            if not granted:
                return _oauth_error(400, "invalid_scope", "none of the requested scopes")
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (time.time() + self.token_lifetime, frozenset(granted))
        body = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(self.token_lifetime),
            "scope": " ".join(granted),
        }
        return Response(
            200,
            json.dumps(body).encode(),
            "application/json",
            {"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    def _auth(self, req: Request) -> frozenset[str] | Response:
        header = req.header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(
                401,
                "unauthorized",
                "Unauthorized",
                "missing bearer token",
                headers={"WWW-Authenticate": 'Bearer realm="lime-go"'},
            )
        entry = self._tokens.get(token.strip())
        if entry is None or entry[0] <= time.time():
            detail = "the access token is invalid" if entry is None else "the access token expired"
            return _error(
                401,
                "unauthorized",
                "Unauthorized",
                detail,
                headers={"WWW-Authenticate": 'Bearer realm="lime-go", error="invalid_token"'},
            )
        return entry[1]

    @staticmethod
    def _need(scopes: frozenset[str], scope: str) -> None:
        if scope not in scopes:
            raise _QueryError(f"this needs the scope {scope}", 403, "insufficient_scope")

    # --- query parsing ---

    @staticmethod
    def _params(req: Request) -> dict[str, str]:
        out = {}
        for k, vs in req.query.items():
            if len(vs) > 1:
                raise _QueryError(f"parameter {k} is given more than once")
            out[k] = vs[0]
        return out

    def _fields(self, params: dict[str, str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for k, v in params.items():
            if not (k.startswith("fields[") and k.endswith("]")):
                continue
            t = k[len("fields[") : -1]
            if t not in TYPES:
                raise _QueryError(f"{k}: unknown resource type {t!r}")
            if not TYPES[t]["sort"]:  # owners: paging only
                raise _QueryError(f"{k}: {t} take no sparse fieldset")
            names = [n.strip() for n in v.split(",")]
            known = set(TYPES[t]["attributes"]) | set(TYPES[t]["relationships"])
            for n in names:
                if n not in known:
                    raise _QueryError(f"{k}: {t} have no field {n!r}")
            out[t] = set(names) | set(ALWAYS)
        return out

    def _includes(self, params: dict[str, str], type_: str, scopes: frozenset[str]) -> list[str]:
        if "include" not in params:
            return []
        allowed = TYPES[type_]["include"]
        names = [n.strip() for n in params["include"].split(",")]
        for n in names:
            if n not in allowed:
                ok = ", ".join(allowed) or "nothing"
                raise _QueryError(f"include: {type_} cannot include {n!r} (can include: {ok})")
        for n in names:
            self._need(scopes, TYPES[allowed[n]]["scope"])
        return list(dict.fromkeys(names))

    @staticmethod
    def _check_known(params: dict[str, str], type_: str, allowed: set[str]) -> None:
        for k in params:
            if k.startswith("fields[") and k.endswith("]"):
                continue
            if k not in allowed:
                if k.startswith("filter["):
                    ok = ", ".join(f"filter[{f}]" for f in TYPES[type_]["filters"]) or "none"
                    raise _QueryError(f"unknown filter {k} for {type_} (known: {ok})")
                raise _QueryError(f"unknown query parameter {k}")

    # --- rendering ---

    @staticmethod
    def _project(res: dict[str, Any], fields: set[str] | None) -> dict[str, Any]:
        if fields is None:
            return res
        out = {
            "type": res["type"],
            "id": res["id"],
            "attributes": {k: v for k, v in res["attributes"].items() if k in fields},
        }
        if "relationships" in res:
            out["relationships"] = {k: v for k, v in res["relationships"].items() if k in fields}
        if "meta" in res:
            out["meta"] = res["meta"]
        return out

    def _included(
        self, resources: list[dict[str, Any]], includes: list[str], fields: dict[str, set[str]]
    ) -> list[dict[str, Any]]:
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for res in resources:
            for rel in includes:
                ref = res["relationships"].get(rel, {}).get("data")
                if not ref:
                    continue
                key = (ref["type"], ref["id"])
                if key in seen:
                    continue
                target = self._cols[ref["type"]].by_id.get(ref["id"])
                if target is not None:
                    seen[key] = self._project(target, fields.get(ref["type"]))
        return list(seen.values())

    def _self_link(self, req: Request) -> str:
        return f"{self.base_url}{req.path}" + (f"?{req.raw_query}" if req.raw_query else "")

    # --- endpoints ---

    def _list(self, req: Request, type_: str, scopes: frozenset[str]) -> Response:
        spec = TYPES[type_]
        params = self._params(req)
        allowed = {"page[size]", "page[cursor]"} | {f"filter[{f}]" for f in spec["filters"]}
        if spec["sort"]:
            allowed.add("sort")
        if spec["include"]:
            allowed.add("include")
        self._check_known(params, type_, allowed)
        fields = self._fields(params)
        includes = self._includes(params, type_, scopes)

        size = DEFAULT_PAGE
        if "page[size]" in params:
            raw = params["page[size]"].strip()
            if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
                raise _QueryError(f"page[size] must be a whole number from 1 to {MAX_PAGE}")
            size = int(raw)
        sort = params.get("sort", "id")
        if sort not in ("id", "-id"):
            raise _QueryError(f"sort: only id and -id are supported, got {sort!r}")
        desc = sort == "-id"
        after = None
        if "page[cursor]" in params:
            after = self._decode_page_cursor(params["page[cursor]"], sort)

        since = (
            parse_since(params["filter[updated_since]"])
            if "filter[updated_since]" in params
            else None
        )
        status = params.get("filter[status]")
        if status is not None and status not in STATUSES[type_]:
            raise _QueryError(
                f"filter[status] must be one of {', '.join(STATUSES[type_])}, got {status!r}"
            )
        name = params.get("filter[name]")
        if name is not None:
            if not name.strip():
                raise _QueryError("filter[name] must not be empty")
            name = name.casefold()

        col = self._cols[type_]
        ids, by_id = col.ids, col.by_id
        n = len(ids)
        if desc:
            i = (bisect_left(ids, after) - 1) if after is not None else n - 1
            step = -1
        else:
            i = bisect_right(ids, after) if after is not None else 0
            step = 1
        found: list[dict[str, Any]] = []
        want = size + 1  # one more than a page tells whether there is a next page
        if since is None and status is None and name is None:
            if desc:
                lo = max(i - want + 1, 0)
                found = [by_id[x] for x in reversed(ids[lo : i + 1])] if i >= 0 else []
            else:
                found = [by_id[x] for x in ids[i : i + want]]
        else:
            while 0 <= i < n and len(found) < want:
                res = by_id[ids[i]]
                i += step
                a = res["attributes"]
                if since is not None and a["updated_at"] < since:
                    continue
                if status is not None and a["status"] != status:
                    continue
                if name is not None and name not in _name_of(type_, a).casefold():
                    continue
                found.append(res)
        page = found[:size]
        doc: dict[str, Any] = {"data": [self._project(r, fields.get(type_)) for r in page]}
        if includes:
            doc["included"] = self._included(page, includes, fields)
        links = {"self": self._self_link(req)}
        if len(found) > size:
            nxt = {k: v for k, v in params.items() if k != "page[cursor]"}
            nxt["page[cursor]"] = _b64e(f"pg:{sort}:{page[-1]['id']}")
            links["next"] = f"{self.base_url}{req.path}?{urlencode(nxt)}"
        doc["links"] = links
        doc["meta"] = {"count": len(page)}
        return _ok(doc)

    @staticmethod
    def _decode_page_cursor(cursor: str, sort: str) -> str:
        try:
            kind, csort, last = _b64d(cursor).split(":", 2)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise _QueryError("page[cursor] is not a cursor this server issued") from None
        if kind != "pg" or not _UUIDISH.match(last):
            raise _QueryError("page[cursor] is not a cursor this server issued")
        if csort != sort:
            raise _QueryError("page[cursor] was issued for a different sort order")
        return last

    def _one(self, req: Request, type_: str, id_: str, scopes: frozenset[str]) -> Response:
        params = self._params(req)
        allowed = {"include"} if TYPES[type_]["include"] else set()
        self._check_known(params, type_, allowed)
        fields = self._fields(params)
        includes = self._includes(params, type_, scopes)
        res = self._cols[type_].by_id.get(id_)
        if res is None:
            raise _QueryError(f"no {type_} with id {id_}", 404, "not_found")
        doc: dict[str, Any] = {"data": self._project(res, fields.get(type_))}
        if includes:
            doc["included"] = self._included([res], includes, fields)
        doc["links"] = {"self": self._self_link(req)}
        resp = _ok(doc)
        if "meta" in res:
            resp.headers["ETag"] = f'"{res["id"]}:{res["meta"]["revision"]}"'
        return resp

    def _changes_page(self, req: Request) -> Response:
        params = self._params(req)
        for k in params:
            if k != "cursor":
                raise _QueryError(f"unknown query parameter {k}")
        with self._lock:
            head = self._floor + len(self._changes)
            if "cursor" not in params:
                return _ok(
                    {
                        "data": [],
                        "meta": {
                            "cursor": self._cursor(head),
                            "has_more": False,
                            "checkpoint": True,
                        },
                    }
                )
            seq = self._decode_change_cursor(params["cursor"])
            if seq is None or not self._floor <= seq <= head:
                raise _QueryError(
                    "the cursor is unknown or expired; start again without a cursor",
                    410,
                    "cursor_expired",
                )
            start = seq - self._floor
            chunk = self._changes[start : start + CHANGES_PAGE]
            data = [
                {"type": "changes", "id": str(seq + k + 1), "attributes": dict(c)}
                for k, c in enumerate(chunk)
            ]
            new_seq = seq + len(chunk)
            meta = {
                "cursor": self._cursor(new_seq),
                "has_more": new_seq < head,
                "checkpoint": False,
            }
        return _ok({"data": data, "meta": meta})

    def _decode_change_cursor(self, cursor: str) -> int | None:
        try:
            kind, epoch, seq = _b64d(cursor).split(":")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        if kind != "chg" or epoch != self._epoch or not seq.isdigit():
            return None
        return int(seq)


def _accepts_jsonapi(accept: str | None) -> bool:
    """True when the Accept header lists the JSON:API media type without parameters (JSON:API
    1.0: a server answers 406 when every instance of it carries media type parameters)."""
    for part in (accept or "").split(","):
        media, _, params = part.partition(";")
        if media.strip().lower() == JSONAPI and not params.strip():
            return True
    return False


def _name_of(type_: str, attrs: dict[str, Any]) -> str:
    if type_ == "contacts":
        return f"{attrs.get('first_name') or ''} {attrs.get('last_name') or ''}"
    return attrs.get("name") or ""


def _ok(doc: dict[str, Any]) -> Response:
    return Response(
        200, json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), JSONAPI
    )


def _error(
    status: int,
    code: str,
    title: str,
    detail: str,
    retry: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"errors": [{"status": str(status), "code": code, "title": title, "detail": detail}]}
    headers = dict(headers or {})
    if retry is not None:
        headers["Retry-After"] = str(retry)
    return Response(status, json.dumps(body, ensure_ascii=False).encode("utf-8"), JSONAPI, headers)


def _oauth_error(status: int, error: str, description: str) -> Response:
    body = {"error": error, "error_description": description}
    return Response(
        status, json.dumps(body).encode(), "application/json", {"Cache-Control": "no-store"}
    )
