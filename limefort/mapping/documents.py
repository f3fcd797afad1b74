"""A won deal as a Fortnox invoice or order payload: references, remarks, the one row."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Mapping
from typing import Any

from limefort.core import limits
from limefort.core.keys import document_ref
from limefort.core.models import DocumentKind
from limefort.mapping.customers import _no_deeper
from limefort.mapping.fields import (
    DEFAULT_DOCUMENT_MAPPING,
    DOCUMENT_FIELDS,
    DOCUMENT_KEY_FIELD,
    MAX_PRICE,
    PRICE_DECIMALS,
    ROW_FIELDS,
    FieldRule,
    _decimals,
    account_problem,
    article_problem,
)
from limefort.mapping.normalise import (
    Invalid,
    as_text,
    clean_text_reporting,
    cut,
    parse_amount,
    quote,
)
from limefort.mapping.results import DealContext, FieldNote, Mapped, Rejected
from limefort.mapping.sources import _checked_source, _Field, _key_value, _resolve_deal, apply_rule


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
            # Nothing silently dropped (design rule 15): what Remarks cannot hold goes on in rows.
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
