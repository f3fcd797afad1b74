"""A Lime Go company as a Fortnox customer payload, with its VAT type by country."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec

from limefort.core.keys import customer_ref
from limefort.core.models import Company
from limefort.mapping.fields import CUSTOMER_FIELDS, CUSTOMER_KEY_FIELD, DEFAULT_CUSTOMER_MAPPING
from limefort.mapping.normalise import (
    EU,
    TooDeep,
    as_text,
    quote,
)
from limefort.mapping.results import FieldNote, Mapped, Rejected
from limefort.mapping.sources import _checked_source, _key_value, _resolve_company, apply_rule

_P = ParamSpec("_P")

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
