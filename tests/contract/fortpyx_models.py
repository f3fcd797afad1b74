"""Fortnox's OpenAPI spec as fortpyx's pydantic models, for checking what limefort writes and
what the sandbox answers.

    from contract.fortpyx_models import assert_fortnox_write_valid
    for r in sb.fortnox.requests:
        if r.method in ("POST", "PUT"):
            assert_fortnox_write_valid(r.path, r.method, r.body)

`assert_fortnox_write_valid` checks a request body against the write model of its endpoint:
every field must be one the model names (unknown fields are forbidden, at every depth), and
every value must validate (types, enums, lengths). A PUT changes only the fields it sends, so
a partial body may leave out fields the model requires. `API_BLANK` (Fortnox's way to empty a
field, see docs/api/fortnox.md) is accepted for any field; the spec's models do not know it.

fortpyx 0.0.1a1 is generated from the spec and has faults of its own; they are named where
they matter (`READ_MODEL_FAULTS`) rather than copied into limefort or the sandbox.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import simplejson
from fortpyx.model import model as fx
from pydantic import BaseModel, ValidationError

API_BLANK = "API_BLANK"

#: (method, path pattern under /3) -> the wrapped write model of that endpoint
WRITE_MODELS: list[tuple[str, re.Pattern[str], type[BaseModel]]] = [
    ("POST", re.compile(r"^/customers$"), fx.FortnoxCustomerWrap),
    ("PUT", re.compile(r"^/customers/[^/]+$"), fx.FortnoxCustomerWrap),
    ("POST", re.compile(r"^/invoices$"), fx.FortnoxInvoicePayloadWrap),
    ("PUT", re.compile(r"^/invoices/[^/]+$"), fx.FortnoxInvoicePayloadWrap),
    ("POST", re.compile(r"^/orders$"), fx.FortnoxOrderWrap),
    ("PUT", re.compile(r"^/orders/[^/]+$"), fx.FortnoxOrderWrap),
]
#: actions that take no body
BODILESS = re.compile(r"^/(invoices|orders)/[^/]+/(cancel|bookkeep|credit)$")

#: (method, path pattern) -> the model of the answer, for the sandbox's Fortnox answers
READ_MODELS: list[tuple[str, re.Pattern[str], type[BaseModel]]] = [
    ("GET", re.compile(r"^/customers$"), fx.FortnoxCustomerListItemList),
    ("GET", re.compile(r"^/invoices$"), fx.FortnoxInvoiceListItemWrap),
    ("GET", re.compile(r"^/orders$"), fx.FortnoxOrderListItemList),
    ("*", re.compile(r"^/customers(/[^/]+)?$"), fx.FortnoxCustomerWrap),
    ("*", re.compile(r"^/invoices(/[^/]+(/\w+)?)?$"), fx.FortnoxInvoiceWrap),
    ("*", re.compile(r"^/orders(/[^/]+(/\w+)?)?$"), fx.FortnoxOrderWrap),
    ("GET", re.compile(r"^/companyinformation$"), fx.FortnoxCompanyInfoWrap),
]

#: Where fortpyx's read models disagree with what Fortnox documents or really returns: (field
#: aliases, pydantic error type, the input Fortnox sends, why it is fortpyx's fault). A read
#: check drops exactly these errors and nothing else.
READ_MODEL_FAULTS: list[tuple[frozenset[str], str, Any, str]] = [
    (
        frozenset({"CountryCode", "DeliveryCountryCode", "VisitingCountryCode", "Address1"}),
        "string_too_short",
        "",
        "fortpyx 0.0.1a1's FortnoxCustomer puts min_length on country codes (2) and Address1 "
        "(1), but Fortnox returns an empty string for a field that is not set (fortpyx's own "
        "ModelBase says so: 'Fortnox unfortunately returns empty strings instead of null')",
    ),
]


def api_path(path: str) -> str:
    """`/3/customers/12`, `https://host/3/customers/12` or `/customers/12` -> `/customers/12`."""
    p = urlsplit(path).path if "://" in path else path
    return p[2:] if p.startswith("/3/") else p


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model inside Optional[Model] / Optional[Sequence[Model]], and whether it is a list."""
    args = [annotation]
    is_list = False
    while args:
        a = args.pop()
        origin = typing.get_origin(a)
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a, is_list
        if origin in (typing.Union, types.UnionType):
            args += [x for x in typing.get_args(a) if x is not type(None)]
        elif origin is not None and isinstance(origin, type) and issubclass(origin, Sequence):
            is_list = True
            args += list(typing.get_args(a))
        elif origin is typing.Annotated:
            args.append(typing.get_args(a)[0])
    return None, is_list


def unknown_fields(model: type[BaseModel], data: Any, where: str = "") -> list[str]:
    """Keys in `data` that `model` (and its nested models) do not name."""
    if not isinstance(data, Mapping):
        return []
    by_alias = {(f.alias or name): f for name, f in model.model_fields.items()}
    out: list[str] = []
    for key, value in data.items():
        field = by_alias.get(key)
        if field is None:
            out.append(f"{where}{key}")
            continue
        inner, is_list = _model_of(field.annotation)
        if inner is None:
            continue
        items = value if is_list and isinstance(value, list) else [value]
        for i, item in enumerate(items):
            at = f"{where}{key}[{i}]." if is_list else f"{where}{key}."
            out += unknown_fields(inner, item, at)
    return out


def _strip_blanks(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _strip_blanks(v) for k, v in data.items() if v != API_BLANK}
    if isinstance(data, list):
        return [_strip_blanks(v) for v in data]
    return data


def _wire(body: Any) -> str:
    """The JSON text as limefort puts it on the wire (exact decimals as JSON numbers)."""
    return simplejson.dumps(body, use_decimal=True, ensure_ascii=False)


def write_problems(path: str, method: str, body: Any) -> list[str]:
    """Why `body` is not a valid `method path` body for Fortnox's spec ([] when it is)."""
    method = method.upper()
    p = api_path(path)
    if BODILESS.match(p):
        return [] if not body else [f"{method} {p} takes no body"]
    models = [m for verb, pattern, m in WRITE_MODELS if verb == method and pattern.match(p)]
    if not models:
        return [f"no write model for {method} {p}"]
    model = models[0]
    problems = [f"unknown field {name}" for name in unknown_fields(model, body)]
    try:
        model.model_validate_json(_wire(_strip_blanks(body)))
    except ValidationError as exc:
        for err in exc.errors():
            if err["type"] == "missing" and method == "PUT":
                continue  # a partial update leaves out what it does not change
            loc = ".".join(str(x) for x in err["loc"])
            problems.append(f"{loc}: {err['msg']} ({err.get('input')!r})"[:300])
    if isinstance(body, Mapping) and len(body) != 1:
        problems.append(f"the body must hold exactly one wrapper key, not {sorted(body)}")
    return problems


def assert_fortnox_write_valid(path: str, method: str, body: Any) -> None:
    """Fail with every problem when `body` does not fit Fortnox's write model for the call."""
    problems = write_problems(path, method, body)
    assert not problems, f"{method} {api_path(path)}: " + "; ".join(problems)


def read_model(method: str, path: str) -> type[BaseModel] | None:
    p = api_path(path)
    for verb, pattern, model in READ_MODELS:
        if verb in (method.upper(), "*") and pattern.match(p):
            return model
    return None


def read_problems(model: type[BaseModel], raw: bytes | str) -> tuple[list[str], list[str]]:
    """(incompatibilities, SDK faults met) when parsing an answer with a read model."""
    try:
        model.model_validate_json(raw)
    except ValidationError as exc:
        problems: list[str] = []
        faults: list[str] = []
        for err in exc.errors():
            field = str(err["loc"][-1]) if err["loc"] else ""
            known = [
                why
                for fields, kind, value, why in READ_MODEL_FAULTS
                if field in fields and err["type"] == kind and err.get("input") == value
            ]
            loc = ".".join(str(x) for x in err["loc"])
            if known:
                faults.append(f"{loc}: {known[0]}")
            else:
                problems.append(f"{loc}: {err['msg']} ({err.get('input')!r})"[:300])
        return problems, faults
    return [], []
