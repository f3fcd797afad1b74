"""Issue 13 end to end: what a company running limefort for a year meets, against the sandbox.

One test (or a few) per item of the issue, each through the real CLI (`Lf.run`) against the
in-process sandbox: clocks that disagree, bad identifiers, two companies with one organisation
number, inactive and deleted Fortnox customers, records deleted in Lime Go, the won-at proxy,
honest summaries, `retry`, and custom fields longer than Remarks. The planner's rows for the
same rules are in tests/test_plan_realworld.py.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Lf, Result, empty_sandbox, valid_orgnrs

from limefort.state.store import Store
from limefort_sandbox import Sandbox
from limefort_sandbox.seed import iso

ORGNR = valid_orgnrs(700)


def fresh(make: Any, tmp_path: Path, **sync: Any) -> tuple[Sandbox, Lf]:
    return empty_sandbox(make, tmp_path, 31, **sync)


def add_customer(sb: Sandbox, name: str = "Åkesson AB", **attrs: Any) -> str:
    attrs.setdefault("business_id", next(ORGNR))
    return sb.limego.add_company(name=name, status="customer", **attrs)


def customer_of(sb: Sandbox, company_id: str) -> dict[str, Any] | None:
    ref = f"limego:company:{company_id}"
    found = [c for c in sb.fortnox.customers if c.get("ExternalReference") == ref]
    assert len(found) <= 1
    return found[0] if found else None


def writes(sb: Sandbox) -> list[str]:
    return [
        f"{r.method} {r.path}"
        for r in sb.fortnox.requests
        if r.path.startswith("/3/") and r.method in ("POST", "PUT", "DELETE")
    ]


def warnings(lf: Lf) -> dict[str, str]:
    return {w["key"]: w["text"] for w in lf.status()["warnings"]}


def quarantined(lf: Lf) -> dict[str, dict[str, Any]]:
    return {q["key"]: q for q in lf.status()["quarantined"]}


def ok(r: Result, code: int = 0) -> Result:
    assert r.code == code, (r.out, r.err)
    return r


# --- 1. clocks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("offset_min", [-15, 15])
def test_lime_go_15_minutes_off_loses_nothing_and_sends_nothing_twice(
    make_inprocess_sandbox: Any, tmp_path: Path, offset_min: int
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path, start="now")
    sb.limego.clock_offset = offset_min * 60.0  # more than sync.lookback (10 minutes)
    cid = add_customer(sb, phone="08-1")
    ok(lf.run("sync"))
    assert customer_of(sb, cid) is not None
    # The cursor is a time on Lime Go's clock, not this machine's.
    cursor = datetime.fromisoformat(lf.status()["cursors"]["companies"])
    assert abs((cursor - sb.limego.now()).total_seconds()) < 60

    sb.limego.update_company(cid, phone="08-765 43 21")
    did = sb.limego.add_deal(company_id=cid, stage="won", name="Nytt avtal", value="5000.00")
    ok(lf.run("sync"))
    customer = customer_of(sb, cid)
    assert customer is not None and customer["Phone1"] == "08-765 43 21"
    assert len(sb.fortnox.documents_by_ref(f"limego:deal:{did}")) == 1

    sb.fortnox.reset_log()
    r = ok(lf.run("sync"))
    assert writes(sb) == [] and "in line" in r.out
    assert len(sb.fortnox.invoices) == 1


def test_check_reports_the_skew_it_measures(make_inprocess_sandbox: Any, tmp_path: Path) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    sb.limego.clock_offset = -15 * 60.0
    r = lf.run("check")
    assert "Lime Go's clock is 15 min behind this machine's" in r.out, r.out
    sb.limego.clock_offset = 0.0
    r = lf.run("check")
    assert re.search(r"Lime Go's clock is \d s (ahead of|behind) this machine's", r.out), r.out


# --- 2. identifiers are never erased ---------------------------------------------------------


def test_an_orgnr_turned_invalid_is_held_back_and_fortnox_keeps_the_valid_one(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    good = next(ORGNR)
    cid = add_customer(sb, business_id=good, phone="08-1")
    ok(lf.run("sync"))
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)  # a wrong check digit
    sb.limego.update_company(cid, business_id=bad, phone="08-2")
    sb.fortnox.reset_log()
    r = ok(lf.run("sync"), 1)
    assert writes(sb) == []
    customer = customer_of(sb, cid)
    assert customer is not None
    assert customer["OrganisationNumber"] == good and customer["Phone1"] == "08-1"
    q = quarantined(lf)[f"company:{cid}"]
    assert bad in q["reason"] and good in q["reason"]
    assert f"company:{cid}" in r.err

    sb.limego.update_company(cid, business_id=good)  # corrected in Lime Go
    ok(lf.run("sync"))
    customer = customer_of(sb, cid)
    assert customer is not None and customer["Phone1"] == "08-2"
    assert customer["OrganisationNumber"] == good
    assert quarantined(lf) == {}


def test_a_name_cleaning_would_gut_is_quarantined(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    cid = add_customer(sb, name="חברת הבדיקות בע״מ AB")
    ok(lf.run("sync"), 1)
    assert customer_of(sb, cid) is None and sb.fortnox.customers == []
    reason = quarantined(lf)[f"company:{cid}"]["reason"]
    assert "חברת" in reason and "'AB'" in reason


# --- 3. two Lime Go companies with one organisation number ---------------------------------


def test_a_second_company_with_the_number_shares_the_customer_and_never_blends(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    orgnr = next(ORGNR)
    first = add_customer(sb, "Åkesson AB", business_id=orgnr, phone="08-1", city="Lund")
    ok(lf.run("sync"))
    number = customer_of(sb, first)["CustomerNumber"]  # type: ignore[index]

    second = add_customer(sb, "Åkesson Filial", business_id=orgnr, phone="08-9", city="Malmö")
    ok(lf.run("sync"))
    assert len(sb.fortnox.customers) == 1
    c = sb.fortnox.customer(number)
    assert c is not None and (c["Name"], c["Phone1"], c["City"]) == ("Åkesson AB", "08-1", "Lund")
    text = warnings(lf)[f"company:{second}"]
    assert f"shares {orgnr} with company:{first} Åkesson AB, Fortnox customer {number}" in text
    status_text = ok(lf.run("status")).out
    assert "Warnings:" in status_text and f"company:{second}" in status_text

    # Its field changes are never sent; its won deals go to the shared customer.
    sb.limego.update_company(second, phone="08-99")
    did = sb.limego.add_deal(company_id=second, stage="won", name="Filialens affär", value="900")
    sb.fortnox.reset_log()
    ok(lf.run("sync"))
    assert [w for w in writes(sb) if w.startswith("PUT /3/customers")] == []
    [invoice] = sb.fortnox.documents_by_ref(f"limego:deal:{did}")
    assert invoice["CustomerNumber"] == number
    assert sb.fortnox.customer(number)["Phone1"] == "08-1"  # type: ignore[index]


def test_two_new_companies_with_one_number_in_one_pass_make_one_customer(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    orgnr = next(ORGNR)
    a = add_customer(sb, "Bolaget AB", business_id=orgnr, phone="08-1")
    b = add_customer(sb, "Bolaget Filial", business_id=orgnr, phone="08-2")
    ok(lf.run("sync"))
    [customer] = sb.fortnox.customers
    shared = warnings(lf)
    assert len(shared) == 1
    [(key, text)] = shared.items()
    owner = a if key == f"company:{b}" else b
    assert f"with company:{owner}" in text and customer["CustomerNumber"] in text
    assert customer["Phone1"] == ("08-1" if owner == a else "08-2")


# --- 4. inactive customers ---------------------------------------------------------------------


def test_the_active_customer_is_preferred_over_an_inactive_one(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    orgnr = next(ORGNR)
    old = sb.fortnox.add_customer({"Name": "Gamla Bolaget AB", "OrganisationNumber": orgnr})
    new = sb.fortnox.add_customer({"Name": "Bolaget AB", "OrganisationNumber": orgnr})
    sb.fortnox.set_active(old, False)
    cid = add_customer(sb, "Bolaget AB", business_id=orgnr)
    did = sb.limego.add_deal(company_id=cid, stage="won", name="Affär", value="100")
    ok(lf.run("sync"))
    assert sb.fortnox.customer(old)["Name"] == "Gamla Bolaget AB"  # type: ignore[index]
    [invoice] = sb.fortnox.documents_by_ref(f"limego:deal:{did}")
    assert invoice["CustomerNumber"] == new
    assert warnings(lf) == {}
    calls = [r for r in sb.fortnox.requests if r.method == "GET" and r.path == "/3/customers"]
    assert {r.query.get("filter") for r in calls} == {"active", "inactive"}


def test_only_an_inactive_customer_is_adopted_and_status_says_so(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    orgnr = next(ORGNR)
    old = sb.fortnox.add_customer({"Name": "Vilande AB", "OrganisationNumber": orgnr})
    sb.fortnox.set_active(old, False)
    cid = add_customer(sb, "Vilande AB", business_id=orgnr)
    ok(lf.run("sync"))
    assert len(sb.fortnox.customers) == 1
    text = warnings(lf)[f"company:{cid}"]
    assert f"inactive Fortnox customer {old}" in text and orgnr in text
    assert f"inactive Fortnox customer {old}" in ok(lf.run("status")).out


def test_several_active_customers_with_the_number_are_ambiguous(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    orgnr = next(ORGNR)
    one = sb.fortnox.add_customer({"Name": "Dubbel AB", "OrganisationNumber": orgnr})
    two = sb.fortnox.add_customer({"Name": "Dubbel AB", "OrganisationNumber": orgnr})
    cid = add_customer(sb, "Dubbel AB", business_id=orgnr)
    sb.fortnox.reset_log()
    ok(lf.run("sync"), 1)
    assert writes(sb) == []
    reason = quarantined(lf)[f"company:{cid}"]["reason"]
    assert f"{one}, {two}" in reason and orgnr in reason

    sb.fortnox.set_active(two, False)  # the user settles it in Fortnox, then retries
    ok(lf.run("retry", f"company:{cid}"))
    assert customer_of(sb, cid)["CustomerNumber"] == one  # type: ignore[index]


# --- 5. a customer deleted in Fortnox --------------------------------------------------------


def test_a_won_deal_of_a_company_whose_customer_was_deleted_goes_to_a_new_customer(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    cid = add_customer(sb, "Raderad AB")
    ok(lf.run("sync"))
    old = customer_of(sb, cid)["CustomerNumber"]  # type: ignore[index]
    sb.fortnox.delete_customer(old)

    did = sb.limego.add_deal(company_id=cid, stage="won", name="Affär", value="100")
    r = ok(lf.run("sync"))  # within the pass, no manual step
    new = customer_of(sb, cid)
    assert new is not None and new["CustomerNumber"] != old
    [invoice] = sb.fortnox.documents_by_ref(f"limego:deal:{did}")
    assert invoice["CustomerNumber"] == new["CustomerNumber"]
    assert quarantined(lf) == {}
    text = warnings(lf)[f"company:{cid}"]
    assert f"Fortnox customer {old} was deleted in Fortnox" in text
    assert f"Fortnox customer {new['CustomerNumber']}" in text
    assert "in line" not in r.err

    r = ok(lf.run("retry", f"company:{cid}"))
    assert "is not quarantined" in r.out and "in line" not in r.out


def test_a_change_to_a_company_whose_customer_was_deleted_recreates_it(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    cid = add_customer(sb, "Ändrad AB", phone="08-1")
    ok(lf.run("sync"))
    old = customer_of(sb, cid)["CustomerNumber"]  # type: ignore[index]
    sb.fortnox.delete_customer(old)
    sb.limego.update_company(cid, phone="08-2")
    ok(lf.run("sync"))
    new = customer_of(sb, cid)
    assert new is not None and new["CustomerNumber"] != old and new["Phone1"] == "08-2"
    assert f"Fortnox customer {old} was deleted" in warnings(lf)[f"company:{cid}"]


# --- 6. records deleted in Lime Go ------------------------------------------------------------


def test_quarantined_records_deleted_in_lime_go_leave_quarantine_with_a_line(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    sb.fortnox.default_account = True
    nameless = sb.limego.add_company(name="   ", business_id=next(ORGNR), status="customer")
    good = add_customer(sb, "Bra AB")
    worthless = sb.limego.add_deal(company_id=good, stage="won", name="Gratis", value="0")
    ok(lf.run("sync"), 1)
    assert set(quarantined(lf)) == {f"company:{nameless}", f"deal:{worthless}"}

    sb.limego.delete_company(nameless)
    sb.limego.delete_deal(worthless)
    r = ok(lf.run("sync"))
    assert quarantined(lf) == {}
    for key in (f"company:{nameless}", f"deal:{worthless}"):
        assert re.search(rf"{key}: the \w+ no longer exists in Lime Go; released", r.err), r.err


# --- 7. won-at ----------------------------------------------------------------------------------


def test_a_first_dry_run_says_which_won_deals_will_become_documents(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)  # start: 30 days ago
    cid = add_customer(sb, "Gammal Kund AB")
    # Won years ago, edited yesterday: Lime Go keeps no time of winning.
    old_win = sb.limego.add_deal(company_id=cid, stage="won", name="Avtal 2019", value="100")
    yesterday = iso(datetime.now(UTC) - timedelta(days=1))
    sb.limego.deals[old_win]["attributes"]["updated_at"] = yesterday
    long_ago = sb.limego.add_deal(company_id=cid, stage="won", name="Avtal 2018", value="100")
    sb.limego.deals[long_ago]["attributes"]["updated_at"] = "2018-05-01T10:00:00Z"

    r = ok(lf.run("sync", "--dry-run"))
    assert (
        "1 won deal last changed after start will become documents; "
        "Lime Go records no time of winning"
    ) in r.out
    listed = r.out.split("Lime Go records no time of winning", 1)[1]
    assert f"deal:{old_win}" in listed and "'Avtal 2019'" in listed
    assert f"deal:{long_ago}" not in listed
    assert sb.fortnox.invoices == []

    ok(lf.run("sync"))
    r = ok(lf.run("sync", "--dry-run"))  # not a first pass any more: no such note
    assert "no time of winning" not in r.out


# --- 8. honest summaries ----------------------------------------------------------------------


def test_a_pass_never_says_in_line_while_a_record_is_quarantined(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    nameless = sb.limego.add_company(name="   ", business_id=next(ORGNR), status="customer")
    ok(lf.run("sync"), 1)
    for _ in range(2):  # every later pass, not just the one it happened in
        r = ok(lf.run("sync"), 1)
        assert "in line" not in r.out
        assert "1 record still needs attention" in r.out
        assert f"limefort: company:{nameless} still quarantined: company has no name" in r.err
    status = ok(lf.run("status")).out
    assert "in line" not in status


def test_status_shows_a_killed_pass_as_interrupted(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    ok(lf.run("sync"))
    store = Store.open(lf.state)
    try:
        store.start_run("sync")  # a pass that never finished (killed), no lock held
    finally:
        store.close()
    data = lf.status()
    assert data["last_run"]["state"] == "interrupted"
    out = ok(lf.run("status")).out
    assert "interrupted" in out and "Last run:    sync interrupted" in out


# --- 9. retry -----------------------------------------------------------------------------------


def test_retry_of_a_malformed_key_is_a_usage_error_and_touches_nothing(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    r = lf.run("retry", "foo")
    assert r.code == 2 and "foo is not a company:<id> or deal:<id> key" in r.err
    assert sb.limego.requests == [] and sb.fortnox.requests == []
    assert not lf.state.exists()


def test_retry_of_a_record_not_quarantined_says_so_without_a_pass(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    ok(lf.run("sync"))
    runs = len(lf.status()["runs"])
    sb.limego.reset_log()
    sb.fortnox.reset_log()
    r = ok(lf.run("retry", "deal:0b0c6f1e-0000-4000-8000-000000000000"))
    assert "deal:0b0c6f1e-0000-4000-8000-000000000000 is not quarantined" in r.out
    assert "released from quarantine" not in r.out + r.err
    assert sb.limego.requests == [] and sb.fortnox.requests == []
    assert len(lf.status()["runs"]) == runs


# --- 10. nothing silently dropped from a document ----------------------------------------------


def test_custom_fields_beyond_remarks_go_into_text_rows(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    cid = add_customer(sb, "Långa Fält AB")
    fields = {f"falt{i:02d}": f"värde {i} " + "x" * 80 for i in range(30)}  # ~2.8k characters
    did = sb.limego.add_deal(
        company_id=cid, stage="won", name="Affär", value="100", custom_fields=fields
    )
    ok(lf.run("sync"))
    [invoice] = sb.fortnox.documents_by_ref(f"limego:deal:{did}")
    rows = invoice["InvoiceRows"]
    assert len(invoice["Remarks"]) <= 1024 and len(rows) > 1
    text = invoice["Remarks"] + " ".join(r["Description"] for r in rows[1:])
    for i in range(30):
        assert f"värde {i} " + "x" * 80 in text  # nothing lost
    assert f"deal:{did}" not in warnings(lf)


def test_what_still_cannot_fit_is_a_warning_on_the_deal(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    cid = add_customer(sb, "Mycket Text AB")
    fields = {f"falt{i:03d}": "y" * 200 for i in range(100)}  # ~21k characters
    did = sb.limego.add_deal(
        company_id=cid, stage="won", name="Affär", value="100", custom_fields=fields
    )
    ok(lf.run("sync"))
    [invoice] = sb.fortnox.documents_by_ref(f"limego:deal:{did}")
    assert len(invoice["InvoiceRows"]) == 21  # the row and 20 text rows
    text = warnings(lf)[f"deal:{did}"]
    assert "did not fit in Remarks and 20 text rows" in text and invoice["DocumentNumber"] in text
    data = json.loads(ok(lf.run("status", "--json")).out)
    assert any(w["key"] == f"deal:{did}" and w["since"] for w in data["warnings"])


# --- issue 23: Er referens when the first contact was deleted --------------------------------


def test_er_referens_falls_back_to_the_next_contact_and_the_gap_stays_in_status(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_inprocess_sandbox, tmp_path)
    cid = add_customer(sb, "Referens AB")
    gone = sb.limego.add_contact(cid, first_name="Greta", last_name="Borttagen")
    kept = sb.limego.add_contact(cid, first_name="Karl", last_name="Kvar")
    did = sb.limego.add_deal(
        company_id=cid, stage="won", name="Två kontakter", value="500", contact_ids=[gone, kept]
    )
    lonely = sb.limego.add_deal(
        company_id=cid, stage="won", name="Ingen kvar", value="600", contact_ids=[gone]
    )
    sb.limego.delete_contact(gone)
    ok(lf.run("sync"))
    [invoice] = sb.fortnox.documents_by_ref(f"limego:deal:{did}")
    assert invoice["YourReference"] == "Karl Kvar"
    [blank] = sb.fortnox.documents_by_ref(f"limego:deal:{lonely}")
    assert not blank.get("YourReference")
    said = warnings(lf)
    assert f"contact {gone} no longer exists" in said[f"deal:{did}"]
    assert "used Karl Kvar instead" in said[f"deal:{did}"]
    assert "left blank" in said[f"deal:{lonely}"]
