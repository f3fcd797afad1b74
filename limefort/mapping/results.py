"""What mapping a record gives: `Mapped` (a payload and its warnings) or `Rejected` (why), and
`FieldNote`, the warning that names the field and the value held and sent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from limefort.core.models import Company, CustomFieldDef, Deal, Person


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
