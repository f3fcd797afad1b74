"""Cleaners that turn whatever Lime Go holds into values Fortnox accepts.

Every function here is pure and total over its input type: a bad value comes back as
`Invalid(reason)` (or an empty string), never as an exception, so one odd record cannot stop
a pass. The reasons are written for the person who will fix the record in Lime Go.
"""

from __future__ import annotations

import gettext
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from typing import Any

# pycountry and python-stdnum are imported where they are used: a pass that maps nothing (an
# idle one, every few minutes per tenant) never loads their tables.


@dataclass(frozen=True)
class Invalid:
    reason: str


def quote(value: str, limit: int = 60) -> str:
    """`repr` of a value for a message, shortened: reasons end up in logs and in `status`."""
    if len(value) > limit:
        return repr(value[:limit]) + "..."
    return repr(value)


# --- source values as text --------------------------------------------------------------------

# Lime Go's select-like custom fields may arrive as objects; these keys carry the visible text.
_OBJECT_TEXT_KEYS = ("label", "name", "text", "value", "key")


# Past this many lists or objects inside one another a value is not data anyone typed: a CRM
# field holds a select's object or a list of them, two or three levels. Without a cap a name
# nested 350 lists deep recurses past Python's limit, and the pass dies on it every time.
MAX_DEPTH = 16


class TooDeep(ValueError):
    """A value nested deeper than MAX_DEPTH: the record is quarantined with this reason."""

    def __init__(self) -> None:
        super().__init__(
            f"a value is nested more than {MAX_DEPTH} lists or objects deep; "
            "limefort cannot turn it into text"
        )


def as_text(value: Any, _depth: int = 0) -> str | None:
    """A Lime Go attribute value as one piece of text; None when there is nothing to show.

    Booleans read as Swedish because the text lands on Swedish documents. Raises TooDeep past
    MAX_DEPTH levels."""
    if _depth > MAX_DEPTH:
        raise TooDeep()
    if value is None:
        return None
    if isinstance(value, bool):
        return "Ja" if value else "Nej"
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int | float | Decimal):
        try:
            return str(value)
        except ValueError:  # an int beyond Python's digit limit for str(): not a real value
            return None
    if isinstance(value, list | tuple):
        parts = [p for p in (as_text(v, _depth + 1) for v in value) if p is not None]
        return ", ".join(parts) or None
    if isinstance(value, Mapping):
        for key in _OBJECT_TEXT_KEYS:
            text = as_text(value.get(key), _depth + 1)
            if text is not None:
                return text
        return None
    return str(value) or None


# --- text -------------------------------------------------------------------------------------

# Characters Fortnox refuses give error 2000359. We model the accepted set as what Windows-1252
# can encode, minus control and format characters, and with a plain space as the only blank.

# Replacements for characters that neither NFKC nor stripping accents bring into Windows-1252.
_FALLBACK = {
    "\u2010": "-",  # hyphen
    "\u2011": "-",  # non-breaking hyphen
    "\u2012": "-",  # figure dash
    "\u2043": "-",  # hyphen bullet
    "\u2212": "-",  # minus sign
    "\u2032": "'",  # prime
    "\u2033": '"',  # double prime
    "\u2035": "'",
    "\u2044": "/",  # fraction slash
    "\u2215": "/",  # division slash
    "\u2217": "*",
    "\u2027": "-",  # hyphenation point
    "\u201b": "'",
    "\u201f": '"',
    "\u2024": ".",
    "\u2039": "<",
    "\u203a": ">",
    "\u0131": "i",  # dotless i
    "\u0141": "L",
    "\u0142": "l",
    "\u0110": "D",
    "\u0111": "d",
    "\u0126": "H",
    "\u0127": "h",
    "\u0166": "T",
    "\u0167": "t",
    "\u0138": "q",
    "\u014a": "N",
    "\u014b": "n",
    "\u0189": "D",
    "\u01e4": "G",
    "\u01e5": "g",
}


@lru_cache(maxsize=8192)
def _storable(ch: str) -> bool:
    if ch == " ":
        return True
    if ch.isspace() or unicodedata.category(ch)[0] == "C":
        return False
    try:
        ch.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


@lru_cache(maxsize=8192)
def _storable_form(ch: str) -> str:
    """What one character becomes: itself, an equivalent, a space, or nothing."""
    if _storable(ch):
        return ch
    if ch.isspace():
        return " "
    candidates = (
        unicodedata.normalize("NFKC", ch),
        _FALLBACK.get(ch, ""),
        "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)),
    )
    for cand in candidates:
        if cand and all(_storable(c) for c in cand):
            return cand
        if cand and all(_storable(c) or c in _FALLBACK for c in cand):
            return "".join(c if _storable(c) else _FALLBACK[c] for c in cand)
    return ""


def _visible(ch: str) -> bool:
    # Leaving out an emoji is worth a warning; a zero-width joiner or a stray accent is not.
    return unicodedata.category(ch)[0] not in "CMZ"


_SPACES = re.compile(r" {2,}")
# Where a line already ends in punctuation, a joining comma would only double it.
_ENDS_WITH_PUNCT = (",", ";", ":")


def _clean_line(line: str, dropped: list[str]) -> str:
    out: list[str] = []
    for ch in line:
        form = _storable_form(ch)
        if not form and _visible(ch):
            dropped.append(ch)
        out.append(form)
    return _SPACES.sub(" ", "".join(out)).strip()


def clean_text_reporting(raw: str, *, multiline: bool = False) -> tuple[str, tuple[str, ...]]:
    """`clean_text`, plus the visible characters it had to leave out (for a warning)."""
    dropped: list[str] = []
    # NFC first so a letter typed as base + combining accent becomes the precomposed letter
    # Windows-1252 has, instead of losing its accent.
    lines = [_clean_line(line, dropped) for line in unicodedata.normalize("NFC", raw).splitlines()]
    if multiline:
        kept: list[str] = []
        for line in lines:
            if line or (kept and kept[-1]):
                kept.append(line)
        text = "\n".join(kept).strip("\n")
    else:
        parts: list[str] = []
        for line in lines:
            if line:
                if parts:
                    parts.append(" " if parts[-1].endswith(_ENDS_WITH_PUNCT) else ", ")
                parts.append(line)
        text = "".join(parts)
    return text, tuple(dropped)


def clean_text(raw: str, *, multiline: bool = False) -> str:
    """Text Fortnox stores as given: only storable characters, one space between words.

    Single-line fields get their line breaks folded into ", "; multiline fields keep `\\n`."""
    return clean_text_reporting(raw, multiline=multiline)[0]


def is_storable(text: str, *, multiline: bool = False) -> bool:
    return all(_storable(c) or (multiline and c == "\n") for c in text)


def cut(text: str, limit: int) -> str:
    """At most `limit` characters, without a dangling separator where the cut fell."""
    if len(text) <= limit:
        return text
    head = text[:limit].rstrip()
    if len(head) > 1 and head.endswith((",", ";")):
        head = head[:-1].rstrip()
    return head or text[:limit]


# --- organisation numbers ---------------------------------------------------------------------

_ORGNR_SEPARATORS = re.compile(r"[\s\-+.]")
_ORGNR_HINT = "expected 10 digits like 556036-0793"


def normalise_orgnr(raw: str) -> str | Invalid:
    """A Swedish organisation number (or a sole trader's personnummer) as NNNNNN-NNNN."""
    from stdnum.se import orgnr as se_orgnr

    text = raw.strip()
    digits = _ORGNR_SEPARATORS.sub("", text)
    vat = re.fullmatch(r"(?i)SE(\d{10})01", digits)
    if vat:
        digits = vat.group(1)
    if not digits.isascii() or not digits.isdigit():
        return Invalid(f"organisation number {quote(text)} is not valid: {_ORGNR_HINT}")
    if len(digits) == 12:
        # "16" + an organisation number (as some registers write it), or a personnummer with
        # its century.
        if not (digits.startswith("16") or _valid_12_digit_personnummer(digits)):
            return Invalid(
                f"organisation number {quote(text)} is not valid: 12 digits must be 16 + an "
                "organisation number, or a personnummer with century"
            )
        digits = digits[2:]
    if len(digits) != 10:
        return Invalid(f"organisation number {quote(text)} is not valid: {_ORGNR_HINT}")
    # A 10-digit personnummer is also Luhn-checked the same way, and stdnum's own check of its
    # date would need today's date, which this module does not read.
    if not se_orgnr.is_valid(digits):
        return Invalid(f"organisation number {quote(text)} is not valid: the check digit is wrong")
    return f"{digits[:6]}-{digits[6:]}"


def orgnr_key(raw: str | None) -> str | None:
    """One form for an organisation number as either side stores it, for comparing only:
    the 10 digits. Fortnox keeps what was typed or imported (`5514637445`, `558172 7822`,
    `55 15 26-7804`, `165581625000`, `16553793-5974`, a trailing blank); Lime Go's side is
    cleaned to `NNNNNN-NNNN` before it gets here. A 12-digit form with a century prefix
    (`16`, `18`, `19`, `20`) is its last 10 digits. None when no 10 digits remain: nothing
    to match on (never a match on a fragment)."""
    if not raw:
        return None
    digits = re.sub(r"\D", "", raw)
    if not digits.isascii():
        return None
    vat = re.fullmatch(r"(\d{10})01", digits) if raw.strip().upper().startswith("SE") else None
    if vat:
        digits = vat.group(1)
    if len(digits) == 12 and digits[:2] in ("16", "18", "19", "20"):
        digits = digits[2:]
    return digits if len(digits) == 10 else None


def _valid_12_digit_personnummer(digits: str) -> bool:
    from stdnum import luhn
    from stdnum.se import personnummer

    if digits[:2] not in ("18", "19", "20"):
        return False
    if personnummer.is_valid(f"{digits[:8]}-{digits[8:]}"):
        return True
    # A samordningsnummer (coordination number) adds 60 to the day; stdnum rejects its date.
    day = int(digits[6:8])
    if 61 <= day <= 91:
        as_birth = f"{digits[:6]}{day - 60:02d}"
        try:
            date(int(as_birth[:4]), int(as_birth[4:6]), int(as_birth[6:8]))
        except ValueError:
            return False
        return luhn.is_valid(digits[2:])
    return False


# --- countries --------------------------------------------------------------------------------

# Names people type that neither pycountry nor its Swedish translation spell this way.
_COUNTRY_ALIASES = {
    "usa": "US",
    "u.s.a.": "US",
    "u.s.": "US",
    "us": "US",
    "united states of america": "US",
    "förenta staterna": "US",
    "amerikas förenta stater": "US",
    "uk": "GB",
    "u.k.": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "storbritannien": "GB",
    "skottland": "GB",
    "nordirland": "GB",
    "holland": "NL",
    "the netherlands": "NL",
    "russia": "RU",
    "ryssland": "RU",
    "turkey": "TR",
    "turkiet": "TR",
    "ivory coast": "CI",
    "elfenbenskusten": "CI",
    "czech republic": "CZ",
    "swaziland": "SZ",
    "cape verde": "CV",
    "burma": "MM",
    "vatican": "VA",
    "vatican city": "VA",
    "macedonia": "MK",
    "makedonien": "MK",
    "sydkorea": "KR",
    "nordkorea": "KP",
    "bosnien och hercegovina": "BA",
    "åland islands": "AX",
}


SWEDEN_SPELLINGS = {"se": "SE", "swe": "SE", "sverige": "SE", "sweden": "SE"}


def _country_key(name: str) -> str:
    return " ".join(name.casefold().split())


@cache
def _country_table() -> dict[str, str]:
    import pycountry

    table: dict[str, str] = {}
    clashes: set[str] = set()

    def add(name: str | None, code: str) -> None:
        if not name:
            return
        key = _country_key(name)
        if table.get(key, code) != code:
            clashes.add(key)  # two countries share the name: refuse to guess between them
        table[key] = code

    try:
        swedish = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["sv"]).gettext
    except OSError:
        swedish = None
    for c in pycountry.countries:
        code = c.alpha_2
        for attr in ("name", "common_name", "official_name"):
            name = getattr(c, attr, None)
            add(name, code)
            if swedish is not None and name:
                add(swedish(name), code)
    for key in clashes:
        del table[key]
    for c in pycountry.countries:  # codes win over any name that happens to look like one
        table[_country_key(c.alpha_2)] = c.alpha_2
        table[_country_key(c.alpha_3)] = c.alpha_2
    for alias, code in _COUNTRY_ALIASES.items():
        table.setdefault(_country_key(alias), code)
    return table


# The EU's member states (ISO alpha-2), for the VAT type of customers abroad: Sweden's own
# customers take SEVAT, the others `[mapping.vat_type] eu` or `outside_eu`. Source: europa.eu,
# "Country profiles" (27 members since 2020-02-01).
EU = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
    ]
)


def normalise_country(raw: str, house: Mapping[str, str] | None = None) -> str | Invalid:
    """ISO 3166-1 alpha-2 from a code (SE, SWE), a name in English or Swedish (Sverige), a
    name in any language CLDR has (Deutschland, Allemagne, Suomi), via Babel, or a house
    spelling the config maps (`[mapping.countries]`, "Tyskl." = "DE"), which comes first."""
    text = raw.strip()
    key = _country_key(text)
    if house:
        mine = {_country_key(k): v for k, v in house.items()}.get(key)
        if mine is not None:
            return mine
    # Most customers are Swedish: their usual spellings are answered without loading the
    # tables (pycountry's database is most of an idle pass's mapping time). A test holds this
    # shortcut to what the table says.
    code = SWEDEN_SPELLINGS.get(key) or _country_table().get(key) or _cldr_table().get(key)
    if code is None:
        return Invalid(
            f"country {quote(text)} is not a country Fortnox knows; use an ISO code like SE"
        )
    return code


@cache
def _cldr_table() -> dict[str, str]:
    """Territory names of every base language in CLDR (Babel's locale data), casefolded, to
    their alpha-2 code: "Deutschland", "Allemagne", "Suomi", "Nederländerna". Built once a
    process, and only when a name is not in the English/Swedish table (about a second).
    A name two languages give to different countries ("Kongo") is left out: no guessing."""
    import pycountry
    from babel import Locale, UnknownLocaleError
    from babel.localedata import locale_identifiers

    table: dict[str, str] = {}
    clashes: set[str] = set()
    for ident in locale_identifiers():
        if "_" in ident:
            continue  # regional variants repeat their language's names
        try:
            territories = Locale.parse(ident).territories
        except (UnknownLocaleError, ValueError):
            continue
        for code, name in territories.items():
            if (
                len(code) != 2
                or not code.isalpha()
                or pycountry.countries.get(alpha_2=code) is None
            ):
                continue  # regions ("150") and CLDR's pseudo-territories ("ZZ")
            key = _country_key(name)
            if table.get(key, code) != code:
                clashes.add(key)
            table[key] = code
    for key in clashes:
        del table[key]
    return table


# --- currencies -------------------------------------------------------------------------------

# In ISO 4217 but not money anyone invoices in.
_NOT_CURRENCIES = frozenset({"XXX", "XTS"})


def normalise_currency(raw: str) -> str | Invalid:
    import pycountry

    code = raw.strip().upper()
    if (
        len(code) == 3
        and code.isascii()
        and code.isalpha()
        and code not in _NOT_CURRENCIES
        and pycountry.currencies.get(alpha_3=code) is not None
    ):
        return code
    return Invalid(
        f"currency {quote(raw.strip())} is not an ISO 4217 code; use a code like SEK or EUR"
    )


# --- email, dates, amounts --------------------------------------------------------------------

# Deliberately plain ASCII: an address Fortnox might refuse is better left out than sent.
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def normalise_email(raw: str, limit: int = 1024) -> str | Invalid:
    text = raw.strip()
    if text.lower().startswith("mailto:"):
        text = text[len("mailto:") :].strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if len(text) <= limit and _EMAIL.fullmatch(text):
        return text
    return Invalid(f"{quote(raw.strip())} is not a valid email address")


def normalise_date(raw: str) -> str | Invalid:
    """An ISO date (YYYY-MM-DD); a datetime gives its date as written."""
    text = raw.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text).isoformat()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ].+", text):
            return datetime.fromisoformat(text.replace("Z", "+00:00")).date().isoformat()
    except ValueError:
        pass
    return Invalid(f"{quote(text)} is not a date like 2026-01-31")


_AMOUNT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d{1,2}")


def parse_amount(raw: Any) -> Decimal | Invalid | None:
    """A money amount, exactly: Lime Go sends decimal strings and they must never pass a float.

    None when there is no amount at all."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, str) and _DECIMAL_COMMA.fullmatch(raw.strip()):
        # "12,50" is a number to a Swede: say what is wrong with it, not that it is none.
        return Invalid(
            f"{quote(raw.strip())} has a decimal comma; write the value with a point, like 12.50"
        )
    bad = Invalid(f"{quote(str(raw))} is not a plain number like 1234.50")
    if isinstance(raw, bool):
        return bad
    try:
        if isinstance(raw, Decimal):
            value = raw
        elif isinstance(raw, int):
            value = Decimal(raw)
        elif isinstance(raw, float):
            value = Decimal(repr(raw))  # the shortest repr, not the binary expansion
        elif isinstance(raw, str) and _AMOUNT.fullmatch(raw.strip()):
            value = Decimal(raw.strip())
        else:
            return bad
    except (InvalidOperation, ValueError):
        return bad
    if not value.is_finite():
        return bad
    return value
