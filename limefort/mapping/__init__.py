"""Lime Go records -> Fortnox payloads, as data plus pure functions.

The mapping itself is two tables (Fortnox field -> Lime Go source path) that the config may
override line by line. Field rules (length limit and kind) say what Fortnox accepts; every
value passes through them, so a payload that leaves here is one Fortnox can store. What does
not fit is cut or left out with a warning, and only what makes the record meaningless
(no name, no amount, a bad currency) rejects it.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import re
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal, ParamSpec

import simplejson

from limefort.core import limits
from limefort.core.errors import ConfigError
from limefort.core.keys import customer_ref, document_ref
from limefort.core.models import Company, CustomFieldDef, Deal, DocumentKind, Person
from limefort.mapping.normalise import (
    EU,
    Invalid,
    TooDeep,
    as_text,
    clean_text,
    clean_text_reporting,
    cut,
    is_storable,
    normalise_country,
    normalise_currency,
    normalise_date,
    normalise_email,
    normalise_orgnr,
    parse_amount,
    quote,
)

_P = ParamSpec("_P")

# --- the mapping as data ----------------------------------------------------------------------

DEFAULT_CUSTOMER_MAPPING: dict[str, str] = {
    "Name": "name",
    "OrganisationNumber": "business_id",
    "Phone1": "phone",
    "Address1": "street",
    "ZipCode": "postal_code",
    "City": "city",
    "CountryCode": "country",
    # Lime Go's own integration puts the visiting address in Fortnox's delivery address.
    "DeliveryAddress1": "custom_fields.visiting_street",
    "DeliveryZipCode": "custom_fields.visiting_postal_code",
    "DeliveryCity": "custom_fields.visiting_city",
    "DeliveryCountryCode": "custom_fields.visiting_country",
}

DEFAULT_DOCUMENT_MAPPING: dict[str, str] = {
    "YourReference": "contact.name",
    "OurReference": "owner.name",
    "Currency": "currency",
    "Remarks": "custom_fields",
}

# --- what Fortnox accepts ---------------------------------------------------------------------

FieldKind = Literal[
    "text", "multiline", "zip", "country", "orgnr", "email", "phone", "currency", "date"
]


@dataclass(frozen=True)
class FieldRule:
    limit: int
    kind: FieldKind = "text"


def _limit(table: dict[str, limits.Limit], name: str) -> int:
    cut = table[name].cut
    assert cut is not None, f"{name}: limefort writes it, so it needs a limit"
    return cut


def _rule(table: dict[str, limits.Limit], name: str, kind: FieldKind = "text") -> FieldRule:
    """A field's rule with its length from the one limit table (`limefort.core.limits`)."""
    return FieldRule(_limit(table, name), kind)


# Customer fields limefort may write (lengths and their sources: limefort.core.limits).
CUSTOMER_FIELDS: dict[str, FieldRule] = {
    "Name": _rule(limits.CUSTOMER, "Name"),
    "OrganisationNumber": _rule(limits.CUSTOMER, "OrganisationNumber", "orgnr"),
    "Phone1": _rule(limits.CUSTOMER, "Phone1", "phone"),
    "Phone2": _rule(limits.CUSTOMER, "Phone2", "phone"),
    "Fax": _rule(limits.CUSTOMER, "Fax", "phone"),
    "Email": _rule(limits.CUSTOMER, "Email", "email"),
    "EmailInvoice": _rule(limits.CUSTOMER, "EmailInvoice", "email"),
    "EmailOrder": _rule(limits.CUSTOMER, "EmailOrder", "email"),
    "EmailOffer": _rule(limits.CUSTOMER, "EmailOffer", "email"),
    "Address1": _rule(limits.CUSTOMER, "Address1"),
    "Address2": _rule(limits.CUSTOMER, "Address2"),
    "City": _rule(limits.CUSTOMER, "City"),
    "ZipCode": _rule(limits.CUSTOMER, "ZipCode", "zip"),
    "CountryCode": _rule(limits.CUSTOMER, "CountryCode", "country"),
    "DeliveryName": _rule(limits.CUSTOMER, "DeliveryName"),
    "DeliveryAddress1": _rule(limits.CUSTOMER, "DeliveryAddress1"),
    "DeliveryAddress2": _rule(limits.CUSTOMER, "DeliveryAddress2"),
    "DeliveryCity": _rule(limits.CUSTOMER, "DeliveryCity"),
    "DeliveryZipCode": _rule(limits.CUSTOMER, "DeliveryZipCode", "zip"),
    "DeliveryCountryCode": _rule(limits.CUSTOMER, "DeliveryCountryCode", "country"),
    "DeliveryPhone1": _rule(limits.CUSTOMER, "DeliveryPhone1", "phone"),
    "DeliveryPhone2": _rule(limits.CUSTOMER, "DeliveryPhone2", "phone"),
    "DeliveryFax": _rule(limits.CUSTOMER, "DeliveryFax", "phone"),
    "VisitingAddress": _rule(limits.CUSTOMER, "VisitingAddress"),
    "VisitingZipCode": _rule(limits.CUSTOMER, "VisitingZipCode", "zip"),
    "VisitingCity": _rule(limits.CUSTOMER, "VisitingCity"),
    "VisitingCountryCode": _rule(limits.CUSTOMER, "VisitingCountryCode", "country"),
    "YourReference": _rule(limits.CUSTOMER, "YourReference"),
    "OurReference": _rule(limits.CUSTOMER, "OurReference"),
    "Comments": _rule(limits.CUSTOMER, "Comments", "multiline"),
    "InvoiceRemark": _rule(limits.CUSTOMER, "InvoiceRemark", "multiline"),
    "WWW": _rule(limits.CUSTOMER, "WWW"),
    "Currency": _rule(limits.CUSTOMER, "Currency", "currency"),
}

# Invoice and order header fields limefort may write.
DOCUMENT_FIELDS: dict[str, FieldRule] = {
    "YourReference": _rule(limits.DOCUMENT, "YourReference"),
    "OurReference": _rule(limits.DOCUMENT, "OurReference"),
    "Currency": _rule(limits.DOCUMENT, "Currency", "currency"),
    "Remarks": _rule(limits.DOCUMENT, "Remarks", "multiline"),
    "Comments": _rule(limits.DOCUMENT, "Comments", "multiline"),
    "YourOrderNumber": _rule(limits.DOCUMENT, "YourOrderNumber"),
    "DeliveryDate": FieldRule(10, "date"),
}

# Fields limefort fills itself; a mapping line for them would break what they are for.
CUSTOMER_KEY_FIELD = "ExternalReference"  # limego:company:<id>, finds our customers again
DOCUMENT_KEY_FIELD = "ExternalInvoiceReference1"  # limego:deal:<id>, the idempotency key
KEY_LIMITS = {
    CUSTOMER_KEY_FIELD: _limit(limits.CUSTOMER, CUSTOMER_KEY_FIELD),
    DOCUMENT_KEY_FIELD: _limit(limits.DOCUMENT, DOCUMENT_KEY_FIELD),
}
_RESERVED = {
    CUSTOMER_KEY_FIELD: "limefort's own key for the customer (limego:company:<id>)",
    DOCUMENT_KEY_FIELD: "limefort's idempotency key for the document (limego:deal:<id>)",
    "ExternalInvoiceReference2": "the installation stamp limefort puts on every document it "
    "makes (`limefort <installation id> <time>`), by which two installations writing to one "
    "tenant find each other",
    "CustomerNumber": "assigned by Fortnox and linked by limefort",
    "InvoiceRows": "limefort writes the one row from the deal's name and value",
    "OrderRows": "limefort writes the one row from the deal's name and value",
}

# The one document row (its Description limit: see limits.ROW).
ROW_FIELDS: dict[str, FieldRule] = {
    "Description": _rule(limits.ROW, "Description"),
    "ArticleNumber": _rule(limits.ROW, "ArticleNumber"),
    "AccountNumber": _rule(limits.ROW, "AccountNumber"),
}
# Fortnox documents a row price as at most 12 digits.
MAX_PRICE = Decimal(10) ** 12

# --- source paths -----------------------------------------------------------------------------

Scope = Literal["", "deal", "company", "contact", "owner"]
_DOCUMENT_SCOPES: tuple[Scope, ...] = ("deal", "company", "contact", "owner")
_ATTR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ALL_CUSTOM_FIELDS = "custom_fields"


@dataclass(frozen=True)
class SourcePath:
    scope: Scope  # "" is the record itself: the company, or the deal
    attr: str  # an attribute name, or "custom_fields"
    key: str | None = None  # the custom field key; None with attr "custom_fields" means all


@lru_cache(maxsize=256)
def parse_source(path: str, *, document: bool) -> SourcePath | None:
    """`phone`, `custom_fields.<key>`; for documents also `contact.`, `owner.`, `company.`,
    `deal.` before either, and the bare `custom_fields` (all the deal's custom fields)."""
    text = path.strip()
    scope: Scope = ""
    head, _, rest = text.partition(".")
    scopes: tuple[Scope, ...] = _DOCUMENT_SCOPES if document else ("company",)
    for s in scopes:
        if head == s and rest:
            scope, text = s, rest
            break
    attr, dot, key = text.partition(".")
    if not _ATTR.fullmatch(attr):
        return None
    if dot:
        if attr != ALL_CUSTOM_FIELDS or not key or any(c.isspace() for c in key):
            return None
        return SourcePath(scope, attr, key)
    if attr == ALL_CUSTOM_FIELDS and not (document and scope in ("", "deal")):
        return None  # only the deal's custom fields come with labels to write them out
    return SourcePath(scope, attr)


def _source_error(path: str, document: bool) -> str:
    if document:
        return (
            f'malformed source path {path!r}: expected a deal attribute like "currency", '
            '"custom_fields.<key>", "custom_fields" (all of them), or one prefixed with '
            '"contact.", "owner.", "company." or "deal."'
        )
    return (
        f"malformed source path {path!r}: expected a Lime Go company attribute like "
        '"phone" or "custom_fields.<key>"'
    )


def _check_line(
    section: str, name: str, src: Any, fields: Mapping[str, FieldRule], *, document: bool
) -> str | None:
    """One `[mapping.*]` line, checked: the source path to use, or None to remove the field."""
    key = f"mapping.{section}.{name}"
    if name in _RESERVED:
        raise ConfigError(key, f"cannot be mapped: it is {_RESERVED[name]}")
    if name not in fields:
        casefolded = [f for f in fields if f.casefold() == str(name).casefold()]
        guess = casefolded or sorted(difflib.get_close_matches(str(name), list(fields), n=2))
        did_you_mean = f"; did you mean {' or '.join(guess)}?" if guess else ""
        raise ConfigError(
            key,
            f"not a Fortnox {section} field limefort can write{did_you_mean} "
            f"(writable: {', '.join(fields)})",
        )
    if not isinstance(src, str):
        raise ConfigError(key, f"expected a string source path, got {src!r}")
    if not src.strip():
        if name == "Name" and not document:
            raise ConfigError(key, "Fortnox requires a customer name; it cannot be removed")
        return None
    if parse_source(src, document=document) is None:
        raise ConfigError(key, _source_error(src, document))
    return src.strip()


def _merge(
    section: str,
    defaults: Mapping[str, str],
    overrides: Mapping[str, Any] | None,
    fields: Mapping[str, FieldRule],
    *,
    document: bool,
) -> dict[str, str]:
    merged = dict(defaults)
    for name, src in (overrides or {}).items():
        path = _check_line(section, name, src, fields, document=document)
        if path is None:
            merged.pop(name, None)
        else:
            merged[name] = path
    return merged


def build_mappings(
    customer_overrides: Mapping[str, Any] | None = None,
    document_overrides: Mapping[str, Any] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """The defaults with the config's `[mapping.*]` lines over them ("" removes a field)."""
    return (
        _merge(
            "customer",
            DEFAULT_CUSTOMER_MAPPING,
            customer_overrides,
            CUSTOMER_FIELDS,
            document=False,
        ),
        _merge(
            "document",
            DEFAULT_DOCUMENT_MAPPING,
            document_overrides,
            DOCUMENT_FIELDS,
            document=True,
        ),
    )


# A price Fortnox is sent has at most this many decimals (see map_deal).
PRICE_DECIMALS = 2


def _decimals(value: Decimal) -> int:
    """Significant decimals: 100.500 has 1, 1E+3 none."""
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def account_problem(account: str) -> str | None:
    """What is wrong with a row's account number ("" is none at all), or None."""
    if account and not re.fullmatch(r"[0-9]{4}", account):
        return f"a Fortnox account number has 4 digits, got {quote(account)}"
    return None


def article_problem(article: str) -> str | None:
    """What is wrong with a row's article number ("" is none at all), or None."""
    limit = ROW_FIELDS["ArticleNumber"].limit
    if len(article) > limit:
        return f"a Fortnox article number has at most {limit} characters"
    if article and not is_storable(article):
        return f"{quote(article)} holds characters Fortnox cannot store"
    return None


# --- results ----------------------------------------------------------------------------------


class FieldNote(str):
    """A value Fortnox got other than Lime Go holds it (DESIGN rule 15): shortened, cleaned
    away, dropped or left blank. It is its text (`Field: what happened`), so logs and the
    planner's tables read it as any warning; `field`, `held` (what Lime Go holds) and `sent`
    (what Fortnox got, None for nothing) let the executor keep it on the record, shown by
    `status`, until the record is written again. A plain str warning is only logged: it says
    where something went (Remarks overflowing into text rows), not that it was lost."""

    field: str
    held: str | None
    sent: str | None

    def __new__(cls, field: str, text: str, *, held: str | None, sent: str | None) -> FieldNote:
        note = super().__new__(cls, f"{field}: {text}")
        note.field, note.held, note.sent = field, held, sent
        return note


SHOWN = 200  # characters of a held or sent value kept with a warning


def _shown(value: str | None) -> str | None:
    if value is None or len(value) <= SHOWN:
        return value
    return f"{value[:SHOWN]}… ({len(value)} characters)"


def note_rows(warnings: tuple[str, ...]) -> list[tuple[str, str, str | None, str | None]]:
    """The FieldNotes among `warnings` as (field, text, held, sent), one per field (two notes
    on one field are joined: held from the first, sent from the last), values shortened for
    showing."""
    rows: dict[str, tuple[str, str, str | None, str | None]] = {}
    for n in warnings:
        if not isinstance(n, FieldNote):
            continue
        if n.field in rows:
            _, text, held, _ = rows[n.field]
            rows[n.field] = (n.field, f"{text}; {n}", held, _shown(n.sent))
        else:
            rows[n.field] = (n.field, str(n), _shown(n.held), _shown(n.sent))
    return list(rows.values())


@dataclass(frozen=True)
class Mapped:
    payload: dict[str, Any]
    warnings: tuple[str, ...] = ()
    # What could not be put anywhere in Fortnox: kept as a warning on the record in `status`.
    lost: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rejected:
    reason: str
    hint: str


@dataclass(frozen=True)
class DealContext:
    deal: Deal
    company: Company | None
    contact: Person | None  # the deal's first contact that exists
    owner: Person | None  # the deal's first owner that exists
    field_defs: Mapping[str, CustomFieldDef]  # deal custom-field definitions by key
    # ("contact" | "owner", id) of people the deal names that Lime Go no longer has: the
    # fields they fill take the next one that exists, or stay blank, and it is said.
    gone: tuple[tuple[str, str], ...] = ()


# --- reading sources --------------------------------------------------------------------------


def _custom(attributes: Mapping[str, Any], key: str) -> Any:
    fields = attributes.get(ALL_CUSTOM_FIELDS)
    return fields.get(key) if isinstance(fields, Mapping) else None


def _from_attributes(attributes: Mapping[str, Any], src: SourcePath) -> Any:
    if src.key is not None:
        return _custom(attributes, src.key)
    return attributes.get(src.attr)


def _from_person(person: Person, src: SourcePath) -> Any:
    if src.key is not None:
        return _custom(person.attributes, src.key)
    if src.attr == "name":
        return person.name or person.attributes.get("name")
    if src.attr in ("first_name", "last_name", "email"):
        own = getattr(person, src.attr)
        return own if own else person.attributes.get(src.attr)
    return person.attributes.get(src.attr)


def custom_field_lines(values: Any, defs: Mapping[str, CustomFieldDef]) -> str | None:
    """The filled-in custom fields as `Label: value` lines, in definition order then by key."""
    if not isinstance(values, Mapping):
        return None
    ordered = [k for k in defs if k in values]
    known = set(ordered)
    ordered += sorted((k for k in values if k not in known), key=str)
    lines: list[str] = []
    for k in ordered:
        text = as_text(values[k])  # None for None, "", [], {} and blank text alike
        value = clean_text(text) if text is not None else ""
        if not value:
            continue
        d = defs.get(k)
        label = clean_text(d.label) if d is not None and isinstance(d.label, str) else ""
        label = label or clean_text(str(k))
        lines.append(f"{label}: {value}" if label else value)
    return "\n".join(lines) or None


def _resolve_company(company: Company, src: SourcePath) -> Any:
    return _from_attributes(company.attributes, src)


def _resolve_deal(ctx: DealContext, src: SourcePath) -> Any:
    if src.scope in ("", "deal"):
        if src.attr == ALL_CUSTOM_FIELDS and src.key is None:
            return custom_field_lines(ctx.deal.attributes.get(ALL_CUSTOM_FIELDS), ctx.field_defs)
        return _from_attributes(ctx.deal.attributes, src)
    if src.scope == "company":
        return _from_attributes(ctx.company.attributes, src) if ctx.company else None
    person = ctx.contact if src.scope == "contact" else ctx.owner
    return _from_person(person, src) if person is not None else None


# --- applying field rules ---------------------------------------------------------------------


@dataclass
class _Field:
    """One field's outcome: a value, or nothing; `invalid` says why a value was refused."""

    value: str | None
    warnings: list[str]
    invalid: Invalid | None = None


def apply_rule(
    name: str, rule: FieldRule, raw: Any, *, countries: Mapping[str, str] | None = None
) -> _Field:
    """Clean one source value for one Fortnox field (`countries`: the config's house
    spellings of country names)."""
    text = as_text(raw)
    if text is None:
        return _Field(None, [])
    warnings: list[str] = []
    if rule.kind in ("orgnr", "country", "currency", "email", "date"):
        checker = {
            "orgnr": normalise_orgnr,
            "country": lambda s: normalise_country(s, countries),
            "currency": normalise_currency,
            "email": lambda s: normalise_email(s, rule.limit),
            "date": normalise_date,
        }[rule.kind]
        result = checker(text)
        if isinstance(result, Invalid):
            note = FieldNote(name, f"{result.reason}; left out", held=text, sent=None)
            return _Field(None, [note], result)
        return _Field(result, [])
    cleaned, dropped = clean_text_reporting(text, multiline=rule.kind == "multiline")
    sent = cut(cleaned, rule.limit) if len(cleaned) > rule.limit else cleaned
    if dropped:
        shown = ", ".join(repr(c) for c in dict.fromkeys(dropped[:50]))
        warnings.append(
            FieldNote(
                name,
                f"left out {len(dropped)} character(s) Fortnox cannot store ({shown})",
                held=text,
                sent=sent or None,
            )
        )
    if not cleaned:
        return _Field(None, warnings)
    if len(cleaned) > rule.limit:
        warnings.append(
            FieldNote(
                name,
                f"cut to {rule.limit} characters (was {len(cleaned)})",
                held=text,
                sent=sent,
            )
        )
    return _Field(sent, warnings)


def _checked_source(
    section: str, name: str, path: str, fields: Mapping[str, FieldRule], *, document: bool
) -> SourcePath | None:
    # A mapping that did not come through build_mappings fails the same way it would there.
    checked = _check_line(section, name, path, fields, document=document)
    return None if checked is None else parse_source(checked, document=document)


def _key_value(field: str, value: str) -> str | None:
    """The idempotency key as given, or None when Fortnox could not store it unchanged."""
    ok = len(value) <= KEY_LIMITS[field] and is_storable(value)
    return value if ok else None


# --- customers --------------------------------------------------------------------------------


def _no_deeper(mapper: Callable[_P, Mapped | Rejected]) -> Callable[_P, Mapped | Rejected]:
    """A record with a value nested past normalise.MAX_DEPTH is Rejected (quarantined with
    its reason), not a RecursionError that stops every pass at the same record."""

    @functools.wraps(mapper)
    def mapped(*args: _P.args, **kwargs: _P.kwargs) -> Mapped | Rejected:
        try:
            return mapper(*args, **kwargs)
        except TooDeep as exc:
            return Rejected(str(exc), "correct the field's value in Lime Go (or its integration)")

    return mapped


@_no_deeper
def map_company(
    company: Company,
    mapping: Mapping[str, str] = DEFAULT_CUSTOMER_MAPPING,
    *,
    require_orgnr: bool = False,
    countries: Mapping[str, str] | None = None,
    vat_types: Mapping[str, str] | None = None,
) -> Mapped | Rejected:
    """The Fortnox customer payload for a Lime Go company (no wrapper, no CustomerNumber).
    `countries`: house spellings of country names (`[mapping.countries]`); `vat_types`: the
    VAT type of customers abroad (`[mapping.vat_type]`, keys "eu" and "outside_eu")."""
    payload: dict[str, Any] = {}
    warnings: list[str] = []
    for name, path in mapping.items():
        src = _checked_source("customer", name, path, CUSTOMER_FIELDS, document=False)
        if src is None:
            continue
        rule = CUSTOMER_FIELDS[name]
        raw = _resolve_company(company, src)
        got = apply_rule(name, rule, raw, countries=countries)
        if name == "Name" and got.value is None:
            return _no_name(as_text(raw))
        if rule.kind == "country" and got.invalid is not None:
            # A foreign customer without a country is a VAT risk: Fortnox treats it as Swedish.
            return Rejected(
                f"{name}: {got.invalid.reason}",
                f"correct the country in Lime Go, or map this spelling to its code under "
                f'[mapping.countries] in the config, e.g. "{as_text(raw)}" = "DE"',
            )
        if name == "OrganisationNumber" and require_orgnr and got.invalid is not None:
            return Rejected(
                got.invalid.reason,
                "correct the organisation number (business_id) in Lime Go, e.g. 556036-0793, "
                "or set sync.require_orgnr = false",
            )
        warnings += got.warnings
        if got.value is not None:
            payload[name] = got.value
    if "Name" not in payload:
        return _no_name(None)
    if require_orgnr and "OrganisationNumber" not in payload:
        return Rejected(
            "company has no organisation number",
            "fill in the organisation number (business_id) in Lime Go, "
            "or set sync.require_orgnr = false",
        )
    key = _key_value(CUSTOMER_KEY_FIELD, customer_ref(company.id))
    if key is None:
        return Rejected(
            f"company id {quote(company.id)} cannot be stored in Fortnox's ExternalReference",
            "report this to limefort's maintainers: Lime Go ids are expected to be UUIDs",
        )
    payload[CUSTOMER_KEY_FIELD] = key
    vat = vat_type_of(payload.get("CountryCode"), vat_types or {})
    if isinstance(vat, FieldNote):
        warnings.append(vat)
    elif vat is not None:
        payload["VATType"] = vat
    return Mapped(payload, tuple(warnings))


# Fortnox's VATType values a customer abroad may take, per zone (`[mapping.vat_type]`):
# EUREVERSEDVAT needs the customer's VIES-valid VAT number in Fortnox; SEVAT keeps Swedish VAT.
VAT_TYPES = {
    "eu": ("EUREVERSEDVAT", "EUVAT", "SEVAT"),
    "outside_eu": ("EXPORT", "SEVAT"),
}


def vat_zone(country: str | None) -> str | None:
    """ "eu" or "outside_eu" for a customer abroad, None for one in Sweden or of no country."""
    if not country or country == "SE":
        return None
    return "eu" if country in EU else "outside_eu"


def vat_type_of(country: str | None, vat_types: Mapping[str, str]) -> str | FieldNote | None:
    """The VATType a customer in `country` is sent; a FieldNote when it is abroad and the
    user has not said (Fortnox then applies Swedish VAT: DESIGN rule 15, said, not assumed)."""
    zone = vat_zone(country)
    if zone is None:
        return None
    chosen = vat_types.get(zone)
    if chosen:
        return chosen
    return FieldNote(
        "VATType",
        f"the customer is in {country} ({'EU' if zone == 'eu' else 'outside the EU'}) and "
        f"[mapping.vat_type] {zone} is not set: Fortnox applies Swedish VAT "
        f"(choose one of {', '.join(VAT_TYPES[zone])})",
        held=country,
        sent=None,
    )


def source_text(company: Company, mapping: Mapping[str, str], field: str) -> str | None:
    """The text the mapping reads from Lime Go for one customer field, before cleaning
    (None: the field is not mapped, or Lime Go has nothing there)."""
    path = mapping.get(field)
    if path is None:
        return None
    src = _checked_source("customer", field, path, CUSTOMER_FIELDS, document=False)
    return None if src is None else as_text(_resolve_company(company, src))


def _no_name(raw: str | None) -> Rejected:
    if raw is None:
        return Rejected("company has no name", "give the company a name in Lime Go")
    return Rejected(
        f"company name {quote(raw)} has no characters Fortnox can store",
        "give the company a name in Latin letters in Lime Go",
    )


# --- deals ------------------------------------------------------------------------------------


@_no_deeper
def map_deal(
    ctx: DealContext,
    kind: DocumentKind,
    mapping: Mapping[str, str] = DEFAULT_DOCUMENT_MAPPING,
    *,
    article_number: str = "",
    account_number: str = "",
    require_positive_value: bool = True,
) -> Mapped | Rejected:
    """The Fortnox invoice or order payload for a won deal: header fields from the mapping, the
    idempotency key, and one row. No wrapper and no CustomerNumber: the caller adds that once
    the customer exists."""
    if kind not in ("invoice", "order"):
        raise ValueError(f"kind must be 'invoice' or 'order', not {kind!r}")
    deal = ctx.deal
    noun = f"{kind}s"
    if ctx.company is None:
        return Rejected("deal has no company", "link the deal to a company in Lime Go")

    raw_name = as_text(deal.attributes.get("name"))
    if raw_name is None:
        return Rejected("deal has no name", "give the deal a name in Lime Go")
    description, dropped = clean_text_reporting(raw_name)
    if not description:
        return Rejected(
            f"deal name {quote(raw_name)} has no characters Fortnox can store",
            "give the deal a name in Latin letters in Lime Go",
        )

    value = parse_amount(deal.attributes.get("value"))
    if value is None:
        return Rejected("deal has no value", "set the deal's value in Lime Go")
    if isinstance(value, Invalid):
        return Rejected(f"deal value {value.reason}", "set the deal's value to a number in Lime Go")
    if _decimals(value) > PRICE_DECIMALS:
        # Fortnox shows and books prices in öre (2 decimals); no source says how it rounds
        # a third decimal, so limefort does not let it guess with someone's money.
        return Rejected(
            f"deal value {value} has more than 2 decimals; Fortnox would round it",
            "round the deal's value to öre (2 decimals) in Lime Go",
        )
    if require_positive_value and value <= 0:
        return Rejected(
            f"deal value is {value}; {noun} for zero or negative amounts are not created",
            "set a positive value in Lime Go, or set sync.require_positive_value = false",
        )
    if abs(value) >= MAX_PRICE:
        return Rejected(
            f"deal value {value} is larger than Fortnox accepts on a row (12 digits)",
            "check the deal's value in Lime Go",
        )

    article, account = article_number.strip(), account_number.strip()
    for name, problem in (
        ("article_number", article_problem(article)),
        ("account_number", account_problem(account)),
    ):
        if problem:
            return Rejected(f"sync.{name}: {problem}", f"fix sync.{name} in the configuration")

    payload: dict[str, Any] = {}
    warnings: list[str] = []
    text_rows: list[str] = []
    lost: list[str] = []
    for name, path in mapping.items():
        src = _checked_source("document", name, path, DOCUMENT_FIELDS, document=True)
        if src is None:
            continue
        rule = DOCUMENT_FIELDS[name]
        if name == "Remarks":
            # Nothing silently dropped (issue 13): what Remarks cannot hold goes on in rows.
            got, text_rows, lost = _remarks_with_rows(rule, _resolve_deal(ctx, src))
            warnings += got.warnings
            if got.value is not None:
                payload[name] = got.value
            continue
        got = apply_rule(name, rule, _resolve_deal(ctx, src))
        if rule.kind == "currency" and got.invalid is not None:
            # Money in the wrong currency is worse than no document: stop here.
            return Rejected(
                f"deal {got.invalid.reason}",
                "set the deal's currency in Lime Go to one Fortnox knows, like SEK or EUR",
            )
        warnings += got.warnings
        if got.value is not None:
            payload[name] = got.value

    key = _key_value(DOCUMENT_KEY_FIELD, document_ref(deal.id))
    if key is None:
        return Rejected(
            f"deal id {quote(deal.id)} does not fit Fortnox's ExternalInvoiceReference1",
            "report this to limefort's maintainers: Lime Go ids are expected to be UUIDs",
        )
    payload[DOCUMENT_KEY_FIELD] = key
    for role, person_id in ctx.gone:
        person = ctx.contact if role == "contact" else ctx.owner
        instead = f"used {person.name or person.id} instead" if person else "left blank"
        fed = [n for n, path in mapping.items() if path.split(".")[0] == role]
        lost.append(
            FieldNote(
                ", ".join(fed) or f"{role}.*",
                f"the deal's {role} {person_id} no longer exists in Lime Go; "
                f"the fields from the {role} (Er/Vår referens) {instead}",
                held=f"{role} {person_id}",
                sent=(person.name or person.id) if person else None,
            )
        )

    limit = ROW_FIELDS["Description"].limit
    sent = cut(description, limit) if len(description) > limit else description
    if dropped:
        shown = ", ".join(repr(c) for c in dict.fromkeys(dropped[:50]))
        warnings.append(
            FieldNote(
                "row Description",
                f"left out {len(dropped)} character(s) Fortnox cannot store ({shown})",
                held=raw_name,
                sent=sent,
            )
        )
    if len(description) > limit:
        warnings.append(
            FieldNote(
                "row Description",
                f"deal name cut to {limit} characters (was {len(description)})",
                held=raw_name,
                sent=sent,
            )
        )
        description = sent
    row: dict[str, Any] = {"Description": description, "Price": value}
    if kind == "order":
        row["OrderedQuantity"] = "1"
    row["DeliveredQuantity"] = "1"
    if article:
        row["ArticleNumber"] = article
    if account:
        row["AccountNumber"] = int(account)  # Fortnox's spec types the row account as integer
    payload["OrderRows" if kind == "order" else "InvoiceRows"] = [
        row,
        *({"Description": text} for text in text_rows),
    ]
    return Mapped(payload, tuple(warnings), tuple(lost))


def split_overflow(
    text: str, limit: int, row_limit: int, max_rows: int
) -> tuple[str, list[str], int]:
    """Text longer than a field's `limit`: (what the field holds, the rest as text rows of at
    most `row_limit` characters each, at most `max_rows` of them, and how many characters are
    left over after those). The field is cut at a line break where there is one, rows at
    spaces where they can be; blank lines are not rows."""
    if len(text) <= limit:
        return text, [], 0
    head = text[:limit]
    brk = head.rfind("\n")
    head = head[:brk] if brk > 0 else cut(head, limit)
    rest = text[len(head) :]
    chunks: list[str] = []
    for line in rest.split("\n"):
        chunks += textwrap.wrap(
            line, width=row_limit, break_long_words=True, break_on_hyphens=False
        )
    lost = sum(len(c) for c in chunks[max_rows:])
    return head.rstrip(), chunks[:max_rows], lost


def _remarks_with_rows(rule: FieldRule, raw: Any) -> tuple[_Field, list[str], list[str]]:
    got = apply_rule("Remarks", FieldRule(sys.maxsize, rule.kind), raw)
    if got.value is None or len(got.value) <= rule.limit:
        return got, [], []
    head, rows, lost = split_overflow(
        got.value, rule.limit, ROW_FIELDS["Description"].limit, limits.MAX_TEXT_ROWS
    )
    warnings = [
        *got.warnings,
        f"Remarks: cut to {rule.limit} characters (was {len(got.value)}); the rest goes on in "
        f"{len(rows)} text row{'s' if len(rows) != 1 else ''}",
    ]
    gone = (
        [
            f"Remarks: {lost} characters did not fit in Remarks and {limits.MAX_TEXT_ROWS} text "
            "rows and are not in Fortnox"
        ]
        if lost
        else []
    )
    return _Field(head, warnings), rows, gone


# --- diffing and storage ----------------------------------------------------------------------


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _canonical(value: Any) -> str:
    # Decimals are written as their exact digits, so 1234.50 and 1234.5 differ: what Fortnox
    # got is what is compared.
    return simplejson.dumps(
        value,
        use_decimal=True,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        default=_json_default,
    )


def payload_hash(payload: Mapping[str, Any]) -> str:
    """sha256 of canonical JSON: the same payload hashes the same in every run."""
    return hashlib.sha256(_canonical(payload).encode("ascii")).hexdigest()


def changed_fields(
    old: Mapping[str, Any] | None, new: Mapping[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """Field -> (old, new) for what differs; a field gone from `new` appears with new None."""
    old = old or {}
    changes: dict[str, tuple[Any, Any]] = {}
    for name, value in new.items():
        if name not in old or _canonical(old[name]) != _canonical(value):
            changes[name] = (old.get(name), value)
    for name, value in old.items():
        if name not in new:
            changes[name] = (value, None)
    return changes


API_BLANK = "API_BLANK"  # what Fortnox takes to empty a field (a PUT leaves out what is absent)


def update_body(changes: Mapping[str, tuple[Any, Any]]) -> dict[str, Any]:
    return {name: API_BLANK if new is None else new for name, (_, new) in changes.items()}


def to_json(payload: Mapping[str, Any]) -> str:
    return simplejson.dumps(payload, use_decimal=True, ensure_ascii=False, default=_json_default)


def from_json(s: str) -> dict[str, Any]:
    value = simplejson.loads(s, use_decimal=True)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value
