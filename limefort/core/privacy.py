"""What limefort shows a person: personal data masked, foreign text made harmless.

Two filters, applied where text leaves limefort for a terminal or a text log (the log
formatters, `say`, `App.echo`, `status`, `fleet`, `audit`'s table):

- `mask_personnummer`: a sole trader's organisation number is their personnummer, which is
  personal data (GDPR art. 4). It is shown as `640823-****`; the record key is enough to find
  the record. A company's organisation number (digits 3-4 are 20 or more, never a month) is not
  personal data and is shown whole. Fortnox still gets the whole number: this is for display.
- `printable`: text from a service or the CRM (an ErrorInformation message, a company name)
  must not drive the terminal. Control characters, escapes, line breaks and bidi overrides are
  shown as `\\x1b`, `\\n`, `\\u202e`, never obeyed, so a message cannot forge a line or move the
  cursor.

`shown` is both, for one line of foreign text; `lines_shown` keeps limefort's own line breaks
of a multi-line block and makes the rest of each line printable.
"""

from __future__ import annotations

import re
import unicodedata

# An organisation number as people and limefort write it: NNNNNN-NNNN, NNNNNN+NNNN (a
# personnummer of someone over 100), NNNNNNNNNN, or the 12-digit form with its century. Not
# part of a longer run of digits (a phone number, an invoice number).
_NUMBER = re.compile(r"(?<![\d])((?:18|19|20)?\d{6})([-+]?)(\d{4})(?![\d])")


def is_personnummer(digits10: str) -> bool:
    """Ten digits whose 3rd-4th are a month and 5th-6th a day (or a day + 60: a
    samordningsnummer): a person, not a legal entity. Legal entities have 20 or more in digits
    3-4, which no month has."""
    if len(digits10) != 10 or not digits10.isdigit():
        return False
    month, day = int(digits10[2:4]), int(digits10[4:6])
    return 1 <= month <= 12 and (1 <= day <= 31 or 61 <= day <= 91)


def _mask(match: re.Match[str]) -> str:
    head, sep, tail = match.group(1), match.group(2), match.group(3)
    ten = head[-6:] + tail
    if not is_personnummer(ten):
        return match.group(0)
    # A bare run of ten digits is masked only when it is a valid number (Luhn): a date-like
    # run of digits in a phone number or a reference is left alone. With a separator the
    # shape itself says "a personnummer", valid or not (an invalid one is echoed in reasons).
    if not sep:
        # Imported here: python-stdnum loads pydoc and pkgutil, most of a millisecond each,
        # and nearly every line limefort prints passes through here without a number in it.
        from stdnum import luhn

        if not luhn.is_valid(ten):
            return match.group(0)
    return f"{head}{sep or '-'}****"


def mask_personnummer(text: str) -> str:
    """`text` with every personnummer-shaped organisation number as `NNNNNN-****`."""
    if not any(ch.isdigit() for ch in text):
        return text
    return _NUMBER.sub(_mask, text)


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _unsafe(ch: str) -> bool:
    # Cc: C0/C1 controls and DEL (ESC, BEL, CR, LF ...); Cf: format characters, which include
    # the bidi overrides (U+202E) that make a terminal show text in another order; Cs/Co/Cn:
    # surrogates, private use and unassigned code points; Zl/Zp: the Unicode line and
    # paragraph separators, which some terminals break lines on.
    category = unicodedata.category(ch)
    return category.startswith("C") or category in ("Zl", "Zp")


def printable(text: str) -> str:
    """`text` with every control or format character shown as an escape, never obeyed."""
    if text.isprintable():
        return text
    return "".join(_escape(ch) if _unsafe(ch) else ch for ch in text)


def shown(text: str) -> str:
    """One line of text for a person: printable, and personnummer masked."""
    return mask_personnummer(printable(text))


def lines_shown(text: str) -> str:
    """A block limefort wrote (its own line breaks kept): each line printable, tabs kept,
    personnummer masked."""
    if text.isprintable() and not any(ch.isdigit() for ch in text):
        return text
    return "\n".join(
        mask_personnummer(printable(line).replace("\\t", "\t")) for line in text.split("\n")
    )
