"""Issue 22's planner rules, pure: one legal entity stays one customer when an organisation
number is corrected, and which Fortnox customers a linked company's new number is looked up
for. No HTTP, no disk, no clock."""

from __future__ import annotations

from typing import Any

import pytest
from test_plan import company, kinds, link, rules

from limefort import plan as P

OTHER = "556677-8899"


@pytest.mark.parametrize(
    "what, by_orgnr, claimed, want",
    [
        ("nobody holds the new number", {}, {}, "UpdateCustomer"),
        ("only its own customer holds it", {OTHER: ["7"]}, {}, "UpdateCustomer"),
        ("another linked company's customer", {OTHER: ["9"]}, {"9": ("c2", "Beta AB")}, "Quarantine"),
        ("a customer there before limefort", {OTHER: ["12"]}, {}, "Quarantine"),
        ("stored without the dash: found folded", {"5566778899": ["12"]}, {}, "UpdateCustomer"),
    ],
)  # fmt: skip
def test_a_corrected_orgnr_that_another_customer_holds_is_held_back(
    what: str, by_orgnr: dict[str, list[str]], claimed: dict[str, Any], want: str
) -> None:
    # (The index answers by the number as asked: gather asks for the Lime Go form, the store
    # folds. A key in another form is therefore not an answer the planner ever gets.)
    linked = company()
    changed = company(business_id=OTHER)
    snap = P.Snapshot(
        companies=[changed], links={"c1": link(linked)}, by_orgnr=by_orgnr, claimed=claimed
    )
    assert kinds(P.plan_companies(snap, rules())) == [want]


def test_the_collision_names_both_companies_and_the_fortnox_customer() -> None:
    snap = P.Snapshot(
        companies=[company(business_id=OTHER)],
        links={"c1": link(company())},
        by_orgnr={OTHER: ["9"]},
        claimed={"9": ("c2", "Beta AB")},
    )
    [q] = P.plan_companies(snap, rules())
    assert isinstance(q, P.Quarantine) and q.key == "company:c1"
    for part in ("company:c2", "Beta AB", "Fortnox customer 9", "company:c1", "customer 7", OTHER):
        assert part in q.reason, part


@pytest.mark.parametrize(
    "what, business_id, asked",
    [
        ("unchanged", "556036-0793", set()),
        ("same number, no dash", "5560360793", set()),
        ("another number", OTHER, {OTHER}),
        ("emptied", None, set()),
    ],
)
def test_a_linked_company_is_looked_up_only_when_its_number_changes(
    what: str, business_id: str | None, asked: set[str]
) -> None:
    c = company(business_id=business_id)
    orgnrs, refs = P.customer_lookups([c], {"c1": link(company())}, rules(), {})
    assert orgnrs == asked and refs == {}


def test_a_company_held_back_creates_nothing_a_second_one_could_share() -> None:
    """The first of two companies with one organisation number is held back (its name is
    gutted): the second is created itself, not told to share a customer nobody creates."""
    gutted = company("c1", name="חברת הבדיקות בע״מ AB")
    second = company("c2", name="Åkesson Filial")
    actions = P.plan_companies(P.Snapshot(companies=[gutted, second]), rules())
    assert kinds(actions) == ["Quarantine", "CreateCustomer"]
