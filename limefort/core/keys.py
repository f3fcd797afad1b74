"""Record keys in one place.

Two families of keys, and nothing else spells them:
- the keys a person types and sees (`company:<id>`, `deal:<id>`): quarantine, status, retry, ack;
- the keys limefort writes into Fortnox (`limego:company:<id>` in a customer's
  ExternalReference, `limego:deal:<id>` in a document's ExternalInvoiceReference1), by which
  Fortnox itself, the ledger, recognises what limefort made.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

RecordKind = Literal["company", "deal"]

# Lime Go ids are UUIDs; the seeded sandbox uses shorter ids. Anything printable without
# spaces or colons is accepted, so a key can always be split again.
_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")


def company_key(company_id: str) -> str:
    return f"company:{company_id}"


def deal_key(deal_id: str) -> str:
    return f"deal:{deal_id}"


def parse_key(key: str) -> tuple[RecordKind, str]:
    """`company:<id>` or `deal:<id>`; anything else raises ValueError saying what is expected."""
    kind, sep, rid = key.partition(":")
    if not sep or kind not in ("company", "deal") or not _ID.fullmatch(rid):
        raise ValueError(f"{key} is not a company:<id> or deal:<id> key")
    return ("company" if kind == "company" else "deal"), rid


def customer_ref(company_id: str) -> str:
    """What limefort writes into a Fortnox customer's ExternalReference."""
    return f"limego:company:{company_id}"


def number_order(number: str) -> tuple[int, str]:
    """Fortnox's customer and document numbers in their numeric order (a number that is not
    all digits, which Fortnox allows for customers, after every one that is)."""
    return (int(number), number) if number.isdigit() else (1 << 62, number)


def document_ref(deal_id: str) -> str:
    """The idempotency key in a document's ExternalInvoiceReference1."""
    return f"limego:deal:{deal_id}"


def deal_id_of_ref(ref: str | None) -> str | None:
    """The deal id of a document key found in Fortnox, or None when it is not limefort's."""
    if ref and ref.startswith("limego:deal:"):
        return ref[len("limego:deal:") :] or None
    return None


# --- the installation stamp (DESIGN rule 14) ---------------------------------------------------

# `limefort <installation id> <time on Fortnox's clock>` in a document's
# ExternalInvoiceReference2 ("Extern referens 2" in Fortnox): which installation made it and
# when. List items carry the field, so every read of the ledger shows who else is writing.
_STAMP = re.compile(r"limefort ([0-9a-f]{12}) (\d{4}-\d\d-\d\dT\d\d:\d\dZ)")
INSTALLATION_ID = re.compile(r"[0-9a-f]{12}")


def stamp_text(installation: str, when: datetime) -> str:
    return f"limefort {installation} {when.astimezone(UTC).strftime('%Y-%m-%dT%H:%MZ')}"


def parse_stamp(text: str | None) -> tuple[str, datetime] | None:
    """(installation id, when) of a limefort stamp; None for anything else (a person's text,
    another tool's)."""
    m = _STAMP.fullmatch((text or "").strip())
    if m is None:
        return None
    return m.group(1), datetime.strptime(m.group(2), "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
