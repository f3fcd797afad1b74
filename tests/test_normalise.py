from __future__ import annotations

from decimal import Decimal

import pytest

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
    parse_amount,
)

# --- organisation numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "5560360793",
        "556036-0793",
        "556036 0793",
        " 556036-0793 ",
        "165560360793",
        "16556036-0793",
        "SE556036079301",
    ],
)
def test_orgnr_forms_give_the_dashed_form(raw: str) -> None:
    assert normalise_orgnr(raw) == "556036-0793"


@pytest.mark.parametrize("raw", ["19811218-9876", "198112189876", "811218-9876", "8112189876"])
def test_personnummer_of_a_sole_trader_gives_ten_digits(raw: str) -> None:
    assert normalise_orgnr(raw) == "811218-9876"


@pytest.mark.parametrize(
    "raw, why",
    [
        ("5560360794", "check digit"),
        ("556036079", "10 digits"),
        ("55603607933", "10 digits"),
        ("abc", "10 digits"),
        ("", "10 digits"),
        ("19811318-9876", "12 digits"),  # month 13
        ("175560360793", "12 digits"),  # neither 16 nor a century
        ("５５６０３６０７９３", "10 digits"),  # full-width digits are not what Fortnox takes
    ],
)
def test_invalid_orgnr_gives_a_reason_quoting_the_value(raw: str, why: str) -> None:
    result = normalise_orgnr(raw)
    assert isinstance(result, Invalid)
    assert repr(raw.strip()) in result.reason
    assert why in result.reason


def test_coordination_number_with_century_is_accepted() -> None:
    # samordningsnummer: day + 60; check digit computed for 7010632391
    assert normalise_orgnr("197010632391") == "701063-2391"


# --- countries --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, code",
    [
        ("SE", "SE"),
        ("se", "SE"),
        ("SWE", "SE"),
        ("Sweden", "SE"),
        ("Kingdom of Sweden", "SE"),
        ("Sverige", "SE"),
        ("  sverige ", "SE"),
        ("Norge", "NO"),
        ("Danmark", "DK"),
        ("Finland", "FI"),
        ("Tyskland", "DE"),
        ("Germany", "DE"),
        ("Storbritannien", "GB"),
        ("United Kingdom", "GB"),
        ("Förenta staterna", "US"),
        ("USA", "US"),
        ("United States", "US"),
        ("Nederländerna", "NL"),
        ("Holland", "NL"),
        ("South Korea", "KR"),
        ("Österrike", "AT"),
        ("Georgia", "GE"),
    ],
)
def test_country_codes_and_names_in_english_and_swedish(raw: str, code: str) -> None:
    assert normalise_country(raw) == code


@pytest.mark.parametrize("raw", ["Atlantis", "Sverig", "Skandinavien", "", "XX"])
def test_unknown_country_is_not_guessed(raw: str) -> None:
    result = normalise_country(raw)
    assert isinstance(result, Invalid)
    assert "use an ISO code like SE" in result.reason


# --- currencies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, code", [("SEK", "SEK"), ("EUR", "EUR"), ("sek", "SEK"), (" usd ", "USD")]
)
def test_currency_codes(raw: str, code: str) -> None:
    assert normalise_currency(raw) == code


@pytest.mark.parametrize("raw", ["kr", "SEKK", "ABC", "XXX", "€", ""])
def test_unknown_currency(raw: str) -> None:
    result = normalise_currency(raw)
    assert isinstance(result, Invalid)
    assert "ISO 4217" in result.reason


# --- text -------------------------------------------------------------------------------------


def test_non_breaking_space_and_ligature_become_plain() -> None:
    assert clean_text("Acme\u00a0AB \ufb01ler") == "Acme AB filer"


def test_emoji_zero_width_and_control_characters_are_removed() -> None:
    text, dropped = clean_text_reporting("Hej\u200b 😀 d\x00är\x07\ufeff")
    assert text == "Hej där"
    assert dropped == ("😀",)  # the invisible ones are not worth a warning


def test_single_line_folds_line_breaks_and_tabs() -> None:
    assert clean_text("Storgatan 1\r\nBox 12\n\n  Vån 3\tA") == "Storgatan 1, Box 12, Vån 3 A"
    assert clean_text("Storgatan 1,\nBox 12") == "Storgatan 1, Box 12"
    assert clean_text("a\u2028b\u2029c\x85d") == "a, b, c, d"


def test_multiline_keeps_newlines_and_normalises_crlf() -> None:
    assert clean_text("rad 1\r\nrad 2\rrad 3\n\n\n\nrad 4\n", multiline=True) == (
        "rad 1\nrad 2\nrad 3\n\nrad 4"
    )


def test_typographic_characters_outside_cp1252_get_equivalents() -> None:
    # The en dash, curly quotes and ellipsis are in cp1252 and stay as they are.
    assert (
        clean_text("a\u2011b \u2212 5 \u2013 \u201cq\u201d \u2026")
        == "a-b - 5 \u2013 \u201cq\u201d \u2026"
    )
    assert clean_text("\u0141\u00f3d\u017a \u015f") == "Lódz s"
    assert clean_text("e\u0301") == "\u00e9"  # combining accent composed first


def test_text_outside_any_latin_script_vanishes() -> None:
    text, dropped = clean_text_reporting("Москва")
    assert text == ""
    assert len(dropped) == 6


def test_cut_leaves_no_dangling_separator() -> None:
    assert cut("abc, def", 4) == "abc"
    assert cut("abc def", 4) == "abc"
    assert cut("abcdef", 4) == "abcd"
    assert cut("abc", 10) == "abc"


def test_is_storable() -> None:
    assert is_storable("Åsa & Co – 5 €")
    assert not is_storable("a\nb")
    assert is_storable("a\nb", multiline=True)
    assert not is_storable("😀")
    assert not is_storable("a\u00a0b")


@pytest.mark.parametrize(
    "value, text",
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("x", "x"),
        (True, "Ja"),
        (False, "Nej"),
        (12, "12"),
        (Decimal("1.50"), "1.50"),
        (["a", "", None, "b"], "a, b"),
        ([], None),
        ({}, None),
        ({"id": 3, "label": "Stor"}, "Stor"),
    ],
)
def test_as_text(value: object, text: str | None) -> None:
    assert as_text(value) == text


# --- email, dates, amounts --------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, out",
    [
        ("anna@example.se", "anna@example.se"),
        (" Anna.Berg+crm@sub.example.co.uk ", "Anna.Berg+crm@sub.example.co.uk"),
        ("mailto:anna@example.se", "anna@example.se"),
        ("<anna@example.se>", "anna@example.se"),
    ],
)
def test_valid_email(raw: str, out: str) -> None:
    assert normalise_email(raw) == out


@pytest.mark.parametrize(
    "raw",
    [
        "anna",
        "anna@",
        "@example.se",
        "anna@example",
        "a b@example.se",
        "a@b.se; c@d.se",
        "ann😀@x.se",
    ],
)
def test_invalid_email(raw: str) -> None:
    assert isinstance(normalise_email(raw), Invalid)


def test_dates() -> None:
    assert normalise_date("2026-01-31") == "2026-01-31"
    assert normalise_date("2026-01-31T10:00:00Z") == "2026-01-31"
    assert isinstance(normalise_date("2026-02-30"), Invalid)
    assert isinstance(normalise_date("31/1 2026"), Invalid)


@pytest.mark.parametrize(
    "raw, value",
    [
        ("1234.50", Decimal("1234.50")),
        (" 99 ", Decimal("99")),
        ("-5.00", Decimal("-5.00")),
        (12, Decimal("12")),
        (0.1, Decimal("0.1")),
        (Decimal("7.25"), Decimal("7.25")),
    ],
)
def test_amounts_are_exact(raw: object, value: Decimal) -> None:
    got = parse_amount(raw)
    assert got == value
    assert str(got) == str(value)


@pytest.mark.parametrize("raw", ["abc", "1,5", "1e3", "NaN", "Infinity", True, float("nan"), [1]])
def test_bad_amounts(raw: object) -> None:
    assert isinstance(parse_amount(raw), Invalid)


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_missing_amount(raw: object) -> None:
    assert parse_amount(raw) is None


def test_as_text_never_raises_on_odd_numbers() -> None:
    assert as_text(10**5000) is None  # beyond Python's str() digit limit
    assert as_text(Decimal("sNaN")) == "sNaN"
    assert as_text(float("inf")) == "inf"


def test_huge_text_with_many_lines_is_folded() -> None:
    assert clean_text("a\n" * 100_000) == ", ".join(["a"] * 100_000)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("Deutschland", "DE"),
        ("Allemagne", "DE"),
        ("Tyskland", "DE"),
        ("Frankrike", "FR"),
        ("Suomi", "FI"),
        ("Storbritannien", "GB"),
        ("Nederländerna", "NL"),
        ("Norge", "NO"),
        ("USA", "US"),
        ("Sverige", "SE"),
        ("  deutschland ", "DE"),
        ("Alemania", "DE"),
        ("Danmark", "DK"),
    ],
)
def test_country_names_in_any_language_map_through_cldr(name: str, code: str) -> None:
    assert normalise_country(name) == code


def test_a_country_nobody_recognises_is_invalid_with_its_reason() -> None:
    got = normalise_country("Atlantis")
    assert isinstance(got, Invalid) and "'Atlantis' is not a country" in got.reason


def test_the_swedish_shortcut_agrees_with_the_country_table() -> None:
    """normalise_country answers Sweden's usual spellings before loading pycountry (an idle
    pass's cost): the shortcut says nothing the table would not."""
    from limefort.mapping.normalise import SWEDEN_SPELLINGS, _country_table

    for key, code in SWEDEN_SPELLINGS.items():
        assert _country_table()[key] == code, key
