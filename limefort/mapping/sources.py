"""Reading a source path off a record (company, deal, contact, owner, custom fields) and
applying a field's rule to what it gives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from limefort.core.models import Company, CustomFieldDef, Person
from limefort.mapping.fields import (
    ALL_CUSTOM_FIELDS,
    KEY_LIMITS,
    FieldRule,
    SourcePath,
    _check_line,
    parse_source,
)
from limefort.mapping.normalise import (
    Invalid,
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
)
from limefort.mapping.results import DealContext, FieldNote

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
