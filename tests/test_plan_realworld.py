"""Issue 13's rules, pure: what a year of real data throws at the sync, as table rows.

No HTTP, no disk, no clock: each row builds a Snapshot (or calls one pure helper) and checks
what the planner, the cursor rules, the mapping or the summary make of it. The end-to-end
counterparts against the sandbox are in tests/test_realworld.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import click
import pytest
from test_plan import PEOPLE, T0, company, deal, kinds, link, rules

from limefort import plan as P
from limefort.commands.retry import retry_todo
from limefort.core.errors import ApiError
from limefort.core.limits import MAX_TEXT_ROWS
from limefort.core.models import Company, CustomerLink
from limefort.engine.runner import summarise
from limefort.mapping import DealContext, Mapped, map_deal, split_overflow
from limefort.plan import cursor

H = timedelta(hours=1)

# --- 1. clocks: cursors follow Lime Go's clock --------------------------------------------------


@pytest.mark.parametrize(
    "current, seen, want",
    [
        (None, [], None),
        (None, [T0, T0 + H], T0 + H),
        (T0 + 2 * H, [T0, T0 + H], T0 + 2 * H),  # a later page never lowers it
        (T0, [T0 - H], T0),
    ],
)
def test_high_water_is_the_latest_updated_at_read(
    current: datetime | None, seen: list[datetime], want: datetime | None
) -> None:
    assert cursor.high_water(current, seen) == want


@pytest.mark.parametrize(
    "high, date, want",
    [
        (None, None, None),  # nothing known of Lime Go's clock: the cursor stays
        (None, T0, T0),  # nothing read: Lime Go's Date
        (T0, None, T0),  # no Date header: the high-water mark
        (T0, T0 + H, T0),  # the earlier of the two
        (T0 + H, T0, T0),  # a record changed while the phase paged: the phase's start
    ],
)
def test_source_mark(high: datetime | None, date: datetime | None, want: datetime | None) -> None:
    assert cursor.source_mark(high, date) == want


@pytest.mark.parametrize(
    "cur, mark, complete, want",
    [
        (T0, T0 + H, True, T0 + H),
        (T0, None, True, T0),  # no mark: unchanged, never this machine's clock
        (T0, T0 + H, False, T0),
        (T0 + H, T0, True, T0 + H),  # never backwards (Lime Go's clock stepped back)
        (None, None, True, None),
    ],
)
def test_advance_to_lime_gos_mark(
    cur: datetime | None, mark: datetime | None, complete: bool, want: datetime | None
) -> None:
    assert cursor.advance(cur, mark, complete=complete) == want


def test_skew_is_lime_gos_clock_minus_ours() -> None:
    assert cursor.skew(T0 - 15 * timedelta(minutes=1), T0) == -900
    assert cursor.skew(T0 + timedelta(minutes=15), T0) == 900
    assert cursor.skew(None, T0) is None


# --- 2. identifiers are never erased by bad data -------------------------------------------------

BAD_ORGNR = "556036-0794"  # 556036-0793 with a wrong check digit
HEBREW = "חברת הבדיקות בע״מ AB"


def test_an_invalid_orgnr_on_a_linked_company_is_held_back_naming_both() -> None:
    c = company()
    changed = company(business_id=BAD_ORGNR, phone="08-2")
    [a] = P.plan_companies(P.Snapshot(companies=[changed], links={"c1": link(c)}), rules())
    assert isinstance(a, P.Quarantine) and a.key == "company:c1"
    assert BAD_ORGNR in a.reason and "556036-0793" in a.reason and "check digit" in a.reason
    assert "Fortnox customer 7" in a.reason


@pytest.mark.parametrize(
    "what, attrs, linked, want",
    [
        ("valid orgnr changed", {"business_id": "556677-8899"}, True, "UpdateCustomer"),
        ("orgnr emptied on purpose", {"business_id": None}, True, "UpdateCustomer"),
        ("invalid orgnr, not linked", {"business_id": BAD_ORGNR}, False, "CreateCustomer"),
        ("invalid orgnr, linked", {"business_id": BAD_ORGNR}, True, "Quarantine"),
        ("gutted name, linked", {"name": HEBREW}, True, "Quarantine"),
        ("gutted name, new", {"name": HEBREW}, False, "Quarantine"),
        ("a few emoji dropped", {"name": "Åkesson AB 🚀"}, False, "CreateCustomer"),
    ],
)
def test_held_back_rows(what: str, attrs: dict[str, Any], linked: bool, want: str) -> None:
    c = company(**attrs)
    links = {"c1": link(company())} if linked else {}
    assert kinds(P.plan_companies(P.Snapshot(companies=[c], links=links), rules())) == [want]


@pytest.mark.parametrize(
    "raw, cleaned, gutted",
    [
        (HEBREW, "AB", True),
        ("Åkesson AB", "Åkesson AB", False),
        ("ÅÄÖ 🚀🚀🚀🚀", "ÅÄÖ", False),  # emoji are not letters
        ("株式会社 ABC", "ABC", True),
        ("AB", "AB", False),
        (None, None, False),
        ("1234", "1234", False),  # no letters to keep
    ],
)
def test_name_gutted(raw: str | None, cleaned: str | None, gutted: bool) -> None:
    assert P.name_gutted(raw, cleaned) is gutted


def test_a_gutted_name_names_both_values() -> None:
    [a] = P.plan_companies(P.Snapshot(companies=[company(name=HEBREW)]), rules())
    assert isinstance(a, P.Quarantine)
    assert "חברת" in a.reason and "'AB'" in a.reason


# --- 3. two Lime Go companies with one organisation number -----------------------------------


def test_a_second_company_on_a_claimed_customer_shares_it() -> None:
    b = company("c2", name="Åkesson Filial", phone="08-9")
    snap = P.Snapshot(
        companies=[b], by_orgnr={"556036-0793": ["7"]}, claimed={"7": ("c1", "Åkesson AB")}
    )
    [a] = P.plan_companies(snap, rules())
    assert isinstance(a, P.ShareCustomer)
    assert (a.customer, a.owner_id, a.owner_name, a.orgnr) == (
        "7",
        "c1",
        "Åkesson AB",
        "556036-0793",
    )
    assert "share customer" in P.describe(a)[0]


def shared(c: Company, number: str = "7", owner: str = "c1") -> CustomerLink:
    return replace(link(c, number), shared_with=owner)


@pytest.mark.parametrize(
    "what, attrs, want",
    [
        ("its phone changes: nothing is sent", {"phone": "08-999"}, []),
        ("its name changes: nothing is sent", {"name": "Nytt Namn AB"}, []),
        ("its orgnr becomes another: linked afresh", {"business_id": "556677-8899"}, ["CreateCustomer"]),
        ("its orgnr becomes invalid: still nothing sent", {"business_id": BAD_ORGNR}, []),
    ],
)  # fmt: skip
def test_a_shared_company_sends_no_field_changes(
    what: str, attrs: dict[str, Any], want: list[str]
) -> None:
    b = company("c2", name="Åkesson Filial")
    changed = company("c2", **{"name": "Åkesson Filial", **attrs})
    snap = P.Snapshot(companies=[changed], links={"c2": shared(b)})
    assert kinds(P.plan_companies(snap, rules())) == want


def test_a_shared_company_s_won_deal_is_invoiced_to_the_shared_customer() -> None:
    b = company("c2", name="Åkesson Filial")
    snap = P.Snapshot(
        deals=[deal(company_id="c2")], related={"c2": b}, links={"c2": shared(b)}, **PEOPLE
    )
    [a] = P.plan_deals(snap, rules())
    assert isinstance(a, P.CreateDocument) and a.customer == "7"


def test_a_shared_lookup_still_asks_for_its_orgnr() -> None:
    b = company("c2", business_id="556677-8899")
    orgnrs, _ = P.customer_lookups([b], {"c2": shared(company("c2"))}, rules(), {})
    assert orgnrs == {"556677-8899"}


# --- 4. inactive customers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "matches, inactive, claimed, want",
    [
        (["3", "9"], {"3"}, {}, ("AdoptCustomer", "9", "")),  # the active one, not the lowest
        (["3"], {"3"}, {}, ("AdoptCustomer", "3", "inactive Fortnox customer 3")),
        (["3", "9"], {"3", "9"}, {}, ("AdoptCustomer", "3", "inactive Fortnox customer 3")),
        (["3", "9"], set(), {}, ("Quarantine", None, "3, 9")),
        (["3", "5", "9"], {"5"}, {}, ("Quarantine", None, "3, 9")),
        (["3", "9"], set(), {"9": ("cX", "Annan AB")}, ("ShareCustomer", "9", "")),
    ],
)
def test_which_customer_with_the_number(
    matches: list[str],
    inactive: set[str],
    claimed: dict[str, tuple[str, str]],
    want: tuple[str, str | None, str],
) -> None:
    snap = P.Snapshot(
        companies=[company()],
        by_orgnr={"556036-0793": matches},
        inactive=frozenset(inactive),
        claimed=claimed,
    )
    [a] = P.plan_companies(snap, rules())
    kind, number, text = want
    assert type(a).__name__ == kind
    if isinstance(a, P.AdoptCustomer):
        assert a.customer == number and text in a.notice and (a.notice == "") == (text == "")
    if isinstance(a, P.Quarantine):
        assert "active customers" in a.reason and text in a.reason and "556036-0793" in a.reason
        assert "retry company:c1" in a.hint
    if isinstance(a, P.ShareCustomer):
        assert a.customer == number


# --- 5. a customer deleted in Fortnox (after_failure) ---------------------------------------


def test_a_deleted_customer_on_a_document_post_forgets_the_link() -> None:
    doc = P.CreateDocument(deal(), "invoice", {}, company(), "7")
    update = P.UpdateCustomer(company(), "7", {}, {})
    for code in (2000433, "2000433"):
        gone = ApiError("Fortnox", "Kan inte hitta kunden.", status=404, code=code)
        assert P.after_failure(doc, gone) == P.StaleLink("7")
        assert P.after_failure(update, gone) == P.StaleLink("7")


# --- 7. won-at --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first, start_now, n, lines",
    [(True, False, 2, 3), (False, False, 2, 0), (True, True, 2, 0), (True, False, 0, 0)],
)
def test_won_at_note(first: bool, start_now: bool, n: int, lines: int) -> None:
    wins = [deal(f"d{i}", name=f"Affär {i}") for i in range(n)]
    out = P.won_at_note(first, start_now, wins)
    assert len(out) == lines
    if out:
        assert out[0].startswith(
            "2 won deals last changed after start will become documents; "
            "Lime Go records no time of winning"
        )
        assert "deal:d0" in out[1] and "'Affär 0'" in out[1]


# --- 8. honest summaries -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "counts, outstanding, clean, has, lacks",
    [
        ({}, 0, True, "in line", "attention"),
        ({}, 2, True, "2 records still need attention", "in line"),
        ({}, 1, True, "1 record still needs attention", "in line"),
        ({}, 0, False, "nothing sent", "in line"),
        ({"customers_created": 1}, 3, True, "1 customer created; 3 records", "in line"),
    ],
)
def test_summaries_never_claim_in_line_with_work_left(
    counts: dict[str, int], outstanding: int, clean: bool, has: str, lacks: str
) -> None:
    line = summarise(counts, outstanding=outstanding, clean=clean)
    assert has in line and lacks not in line


# --- 9. retry ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keys, quarantined, todo, said",
    [
        (("company:a",), {"company:a"}, ["company:a"], []),
        (("deal:x",), set(), [], ["deal:x"]),
        (("company:a", "deal:x"), {"company:a"}, ["company:a"], ["deal:x"]),
    ],
)
def test_retry_todo(
    keys: tuple[str, ...], quarantined: set[str], todo: list[str], said: list[str]
) -> None:
    assert retry_todo(keys, quarantined) == (todo, said)


@pytest.mark.parametrize("bad", ["foo", "invoice:42", "company:", "deal:a b"])
def test_retry_of_a_malformed_key_is_a_usage_error(bad: str) -> None:
    with pytest.raises(click.UsageError):
        retry_todo(("company:a", bad), {"company:a"})


# --- 10. nothing silently dropped from a document -----------------------------------------------


@pytest.mark.parametrize(
    "text, limit, row_limit, max_rows, head, rows, lost",
    [
        ("short", 10, 5, 2, "short", [], 0),
        ("line one\nline two", 10, 20, 2, "line one", ["line two"], 0),
        ("aaaa bbbb cccc", 9, 4, 5, "aaaa bbbb", ["cccc"], 0),
        ("x" * 30, 10, 5, 2, "x" * 10, ["x" * 5, "x" * 5], 10),
        ("a\n\n\nb" + "c" * 8, 2, 10, 3, "a", ["bcccccccc"], 0),  # blank lines are no rows
    ],
)
def test_split_overflow(
    text: str, limit: int, row_limit: int, max_rows: int, head: str, rows: list[str], lost: int
) -> None:
    assert split_overflow(text, limit, row_limit, max_rows) == (head, rows, lost)


def _long_remarks_deal(size: int) -> Mapped:
    fields = {f"f{i:03d}": "v" * 90 for i in range(size)}
    d = deal(custom_fields=fields)
    result = map_deal(DealContext(d, company(), None, None, {}), "invoice")
    assert isinstance(result, Mapped)
    return result


def test_remarks_beyond_1024_go_on_in_text_rows() -> None:
    result = _long_remarks_deal(20)  # 20 lines of ~96 characters: ~1.9k
    rows = result.payload["InvoiceRows"]
    assert len(result.payload["Remarks"]) <= 1024 and rows[0]["Price"]
    text_rows = rows[1:]
    assert text_rows and all(set(r) == {"Description"} for r in text_rows)
    assert all(len(r["Description"]) <= 255 for r in text_rows)
    everything = result.payload["Remarks"] + "".join(r["Description"] for r in text_rows)
    for i in range(20):
        assert f"f{i:03d}: " + "v" * 90 in everything  # nothing lost
    assert result.lost == ()


def test_what_does_not_fit_even_in_rows_is_named() -> None:
    result = _long_remarks_deal(200)  # ~19k characters
    assert len(result.payload["InvoiceRows"]) == 1 + MAX_TEXT_ROWS
    [lost] = result.lost
    assert "did not fit in Remarks and" in lost and "not in Fortnox" in lost
