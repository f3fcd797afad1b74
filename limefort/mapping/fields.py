"""The mapping as data: the default tables (Fortnox field -> Lime Go source path), the rule of
each Fortnox field (length, kind), source paths and the config's mapping lines checked."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal

from limefort.core import limits
from limefort.core.errors import ConfigError
from limefort.mapping.normalise import (
    is_storable,
    quote,
)

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
        import difflib  # only for a name that matches nothing: a pass never needs it

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
