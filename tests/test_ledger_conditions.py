"""Fortnox is the ledger under real conditions (issue 22): Fortnox's own clock, its daylight
saving time, and organisation numbers in the formats Fortnox really holds. Against the
sandbox, through the CLI in-process."""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from limefort.mapping.normalise import orgnr_key
from limefort.plan.cursor import fortnox_since
from limefort_sandbox import Sandbox
from tests.conftest import DEADLINE, Lf, valid_orgnrs
from tests.test_exactly_once import assert_exactly_once, expected

STHLM = ZoneInfo("Europe/Stockholm")


def posts(sb: Sandbox) -> Counter[str]:
    return Counter(
        r.path for r in sb.fortnox.requests if r.method == "POST" and r.path.startswith("/3/")
    )


def use_state(lf: Lf, path: Path) -> None:
    """Point the same config at another state file (in the same directory: one installation)."""
    lf.write(lf.config.read_text(encoding="utf-8").replace(str(lf.state), str(path)))
    lf.state = path


def win_open_deals(sb: Sandbox, n: int) -> list[str]:
    won = set(sb.limego.won_deal_ids(None))
    open_ = [d for d in sorted(sb.limego.deals) if d not in won]
    for did in open_[:n]:
        sb.limego.win_deal(did)
    return open_[:n]


# --- one normal form for organisation numbers ------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "key"),
    [
        ("5514637445", "5514637445"),
        ("558172 7822", "5581727822"),
        ("55 15 26-7804", "5515267804"),
        ("165581625000", "5581625000"),
        ("16553793-5974", "5537935974"),
        ("554341-3552 ", "5543413552"),
        ("556036-0793", "5560360793"),
        ("19640823-3234", "6408233234"),  # a personnummer with its century
        ("SE556036079301", "5560360793"),  # a VAT number
        ("12345", None),  # a fragment never matches anything
        ("", None),
        (None, None),
    ],
)
def test_orgnr_key_folds_every_stored_format_to_ten_digits(stored: str | None, key: str) -> None:
    assert orgnr_key(stored) == key


FORMATS = ["{d}", "{a} {b}", "{a0} {a1} {a2}-{b}", "16{d}", "16{a}-{b}", "{a}-{b} "]


def _formatted(orgnr: str, pattern: str) -> str:
    a, b = orgnr.split("-")
    return pattern.format(d=a + b, a=a, b=b, a0=a[:2], a1=a[2:4], a2=a[4:])


def test_existing_customers_in_every_format_are_adopted_not_created_again(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb = make_sandbox(seed=31, companies=40, deals=30)
    lf = Lf(sb, tmp_path, start="2000-01-01")
    companies = sorted(sb.limego.customer_ids())
    with_orgnr = [
        c
        for c in companies
        if re.fullmatch(r"\d{6}-\d{4}", sb.limego.companies[c]["attributes"]["business_id"] or "")
    ]
    assert len(with_orgnr) >= len(FORMATS) + 2
    existing: dict[str, str] = {}
    for cid, pattern in zip(with_orgnr, FORMATS, strict=False):
        attrs = sb.limego.companies[cid]["attributes"]
        orgnr = attrs["business_id"]
        existing[cid] = sb.fortnox.add_customer(
            {"Name": attrs["name"], "OrganisationNumber": orgnr},
            stored_orgnr=_formatted(orgnr, pattern),
        )
    # Lime Go holds the no-dash and the 12-digit forms for two more, also already in Fortnox.
    for cid, lime_form in zip(with_orgnr[len(FORMATS) :], ("{d}", "16{d}"), strict=False):
        attrs = sb.limego.companies[cid]["attributes"]
        orgnr = attrs["business_id"]
        existing[cid] = sb.fortnox.add_customer(
            {"Name": attrs["name"], "OrganisationNumber": orgnr}
        )
        sb.limego.update_company(cid, business_id=_formatted(orgnr, lime_form))
    before = {c["CustomerNumber"] for c in sb.fortnox.customers}

    r = lf.run("sync")
    assert r.code == 0, r.err
    links = {c["company_id"]: c["customer_number"] for c in lf.store_rows("customers")}
    for cid, number in existing.items():
        assert links[cid] == number, f"company:{cid} was not adopted as customer {number}"
    created = {c["CustomerNumber"] for c in sb.fortnox.customers} - before
    assert len(created) == len(set(companies) | _deal_companies(sb)) - len(existing)
    # Invoices for these companies' deals went to the existing customers.
    for inv in sb.fortnox.invoices:
        did = inv["ExternalInvoiceReference1"].removeprefix("limego:deal:")
        cid = sb.limego.deals[did]["relationships"]["company"]["data"]["id"]
        if cid in existing:
            assert inv["CustomerNumber"] == existing[cid]
    # Adopting sends limefort's fields: the stored number is rewritten as NNNNNN-NNNN.
    for cid, number in existing.items():
        want = sb.limego.companies[cid]["attributes"]["business_id"]
        assert sb.fortnox.customer(number)["OrganisationNumber"] == _dashed(want)


def _dashed(raw: str) -> str:
    key = orgnr_key(raw)
    assert key is not None
    return f"{key[:6]}-{key[6:]}"


def _deal_companies(sb: Sandbox) -> set[str]:
    out = set()
    for did in sb.limego.won_deal_ids(None):
        ref = sb.limego.deals[did]["relationships"]["company"]["data"]
        if ref:
            out.add(ref["id"])
    return out


# --- Fortnox's clock for Fortnox's data --------------------------------------------------------


def test_fortnox_since_steps_back_over_the_fall_back_hour() -> None:
    def at(iso: str) -> str:
        got = fortnox_since(datetime.fromisoformat(iso), STHLM)
        assert got is not None
        return got.strftime("%Y-%m-%d %H:%M")

    # An ordinary day: the mark less five minutes, in Swedish time.
    assert at("2026-12-03T12:00:00+00:00") == "2026-12-03 12:55"
    # 2026-10-25: 00:40Z is the first 02:40 (CEST), 01:10Z the second 02:10 (CET).
    assert at("2026-10-25T00:45:00+00:00") == "2026-10-25 01:40"
    assert at("2026-10-25T01:10:00+00:00") == "2026-10-25 01:05"
    # Just outside the repeated hour: no extra step.
    assert at("2026-10-25T00:04:00+00:00") == "2026-10-25 01:59"
    assert at("2026-10-25T02:10:00+00:00") == "2026-10-25 03:05"
    # Spring forward (02:00-03:00 does not exist): nothing to step over.
    assert at("2026-03-29T01:02:00+00:00") == "2026-03-29 01:57"
    assert fortnox_since(None, STHLM) is None


@pytest.mark.parametrize("offset", [-600, 600])
def test_fortnox_clock_ten_minutes_off_second_state_file_and_older_backup(
    make_sandbox: Any, tmp_path: Path, offset: int
) -> None:
    sb = make_sandbox(seed=32, companies=14, deals=24)
    sb.fortnox.clock_offset = offset
    lf = Lf(sb, tmp_path, start="2000-01-01")
    assert lf.run("sync").code == 0
    first = lf.state
    backup = tmp_path / "backup.db"
    shutil.copy(first, backup)

    # A second state file, used after the first: it makes the next wins' invoices.
    win_open_deals(sb, 3)
    use_state(lf, tmp_path / "second.db")
    r = lf.run("sync")
    assert r.code == 0, r.err
    # Back to the first, minutes later by this machine's clock: it must find them in Fortnox.
    use_state(lf, first)
    sb.fortnox.reset_log()
    r = lf.run("sync")
    assert r.code == 0, r.err
    assert posts(sb) == Counter(), "invoices made by the second state file are made again"

    # An older backup restored after new wins (invoiced by the first state file meanwhile).
    win_open_deals(sb, 2)
    assert lf.run("sync").code == 0
    first.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(first) + suffix).unlink(missing_ok=True)
    shutil.copy(backup, first)
    sb.fortnox.reset_log()
    r = lf.run("sync")
    assert r.code == 0, r.err
    assert posts(sb) == Counter()
    deals, companies = expected(sb, lf)
    tally = assert_exactly_once(sb, lf, deals, companies)
    assert not tally.duplicate_documents and not tally.duplicate_customers


def test_a_change_in_the_second_fall_back_hour_is_seen_by_the_next_read(
    make_sandbox: Any, tmp_path: Path
) -> None:
    """Fortnox's wall clock runs 02:00-03:00 twice on 25 October 2026. A read marked in the
    first 02:40 must still see an invoice stamped in the second 02:10."""
    sb = make_sandbox(seed=33, companies=12, deals=20)
    now = {"t": datetime(2026, 10, 25, 0, 40, tzinfo=UTC)}  # 02:40 CEST
    sb.fortnox.clock = lambda: now["t"]
    lf = Lf(sb, tmp_path, start="2000-01-01")
    assert lf.run("sync").code == 0
    first = lf.state

    now["t"] = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 02:10 CET, later by 30 minutes
    win_open_deals(sb, 3)
    use_state(lf, tmp_path / "second.db")
    assert lf.run("sync").code == 0

    now["t"] += timedelta(minutes=5)
    use_state(lf, first)
    sb.fortnox.reset_log()
    r = lf.run("sync")
    assert r.code == 0, r.err
    assert posts(sb) == Counter(), "the fall-back hour hid the second state file's invoices"
    deals, companies = expected(sb, lf)
    assert_exactly_once(sb, lf, deals, companies)


# --- one legal entity, one customer, also on change -------------------------------------------


def test_a_corrected_orgnr_that_collides_is_held_back_exit_1_named_in_status(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb = make_sandbox(seed=34, companies=12, deals=10)
    lf = Lf(sb, tmp_path, start="2000-01-01")
    assert lf.run("sync").code == 0
    links = {c["company_id"]: c for c in lf.store_rows("customers")}
    a, b = [cid for cid, row in sorted(links.items()) if row["orgnr"]][:2]
    b_orgnr = links[b]["orgnr"]
    sb.limego.update_company(a, business_id=b_orgnr.replace("-", ""))  # typed without a dash

    r = lf.run("sync")
    assert r.code == 1, r.out + r.err
    assert f"company:{a}" in r.err
    status = lf.status()
    # Why the run ended 1, in one line (issue 24).
    assert f"company:{a}" in status["last_run"]["reason"], status["last_run"]
    assert "why: records needed attention" in lf.run("status").out
    [q] = [q for q in status["quarantined"] if q["key"] == f"company:{a}"]
    assert f"company:{b}" in q["reason"] and links[b]["customer_number"] in q["reason"]
    keys = Counter(orgnr_key(c.get("OrganisationNumber")) for c in sb.fortnox.customers)
    assert keys[orgnr_key(b_orgnr)] == 1, "two Fortnox customers hold one organisation number"


# --- two installations on one tenant ------------------------------------------------------------


def _tenant_with_new_work(make_sandbox: Any, customers: int = 8, wins: int = 30) -> Sandbox:
    sb = make_sandbox(
        seed=35, companies=0, deals=0, limego_latency=0.02, fortnox_latency=0.02
    )  # 40 ms round trips
    orgnrs = valid_orgnrs(35_000)
    ids = [
        sb.limego.add_company(name=f"Nykund {i} AB", business_id=next(orgnrs), status="customer")
        for i in range(customers)
    ]
    for i in range(wins):
        sb.limego.add_deal(
            company_id=ids[i % customers], stage="won", name=f"Affär {i}", value="100"
        )
    return sb


def _installation(sb: Sandbox, root: Path, name: str) -> Lf:
    d = root / name
    d.mkdir()
    return Lf(sb, d, start="2000-01-01")


def _tally(sb: Sandbox) -> tuple[dict[str, int], dict[str | None, int]]:
    docs = Counter(
        d["ExternalInvoiceReference1"] for d in sb.fortnox.invoices if not d["Cancelled"]
    )
    custs = Counter(orgnr_key(c.get("OrganisationNumber")) for c in sb.fortnox.customers)
    return {k: n for k, n in docs.items() if n > 1}, {k: n for k, n in custs.items() if n > 1}


@pytest.mark.http
def test_a_second_installation_started_later_is_stopped_and_says_why(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb = _tenant_with_new_work(make_sandbox)
    first, second = _installation(sb, tmp_path, "a"), _installation(sb, tmp_path, "b")
    a = first.spawn("sync")
    time.sleep(1.5)
    b = second.spawn("sync")
    out_b, err_b = b.communicate(timeout=DEADLINE)
    out_a, err_a = a.communicate(timeout=DEADLINE)
    assert a.returncode == 0, err_a
    assert b.returncode == 4, out_b + err_b
    assert "another limefort installation" in err_b and "--take-over" in err_b
    assert first.status()["installation"] in err_b  # named by the id its status shows
    assert "another limefort installation" in second.status()["last_run"]["reason"]
    assert "exit 4" in (text := second.run("status").out) and "why: another limefort" in text
    assert _tally(sb) == ({}, {})
    assert len(sb.fortnox.invoices) == 30 and len(sb.fortnox.customers) == 8
    # Stopped every pass while the other keeps writing within the lease.
    assert second.run("sync").code == 4
    # A hand-over on purpose: the second links what Fortnox holds and makes nothing twice.
    r = second.run("sync", "--take-over")
    assert r.code == 0, r.err
    assert _tally(sb) == ({}, {}) and len(sb.fortnox.invoices) == 30
    # ... and now the first is the stranger: it is stopped once the second writes.
    sb.limego.add_deal(
        company_id=sorted(sb.limego.companies)[0], stage="won", name="Efter", value="5"
    )
    assert second.run("sync").code == 0
    sb.limego.add_deal(
        company_id=sorted(sb.limego.companies)[1], stage="won", name="Sedan", value="7"
    )
    again = first.run("sync")
    assert again.code == 4, again.err
    assert second.status()["installation"] in again.err
    assert _tally(sb) == ({}, {})


@pytest.mark.http
def test_two_installations_started_at_one_instant_duplicate_at_most_what_is_in_flight(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb = _tenant_with_new_work(make_sandbox)
    lfs = [_installation(sb, tmp_path, n) for n in ("a", "b")]
    procs = [lf.spawn("sync") for lf in lfs]
    codes = []
    for p in procs:
        p.communicate(timeout=DEADLINE)
        codes.append(p.returncode)
    docs, custs = _tally(sb)
    assert sum(n - 1 for n in docs.values()) <= 3, docs
    assert sum(n - 1 for n in custs.values()) <= 3, custs
    print(f"\nat one instant: exit codes {codes}, duplicates {docs} {custs}")
    if not docs and not custs:
        # One saw the other's first documents before writing anything: stopped, exit 4.
        assert 4 in codes, codes
        return
    assert 0 not in codes, codes  # a pass that made or saw a duplicate never says all clear
    # Every later pass of both names the duplicates and exits non-zero (1, or 4 while the
    # other's documents are inside the lease) until a person acknowledges them.
    for lf in lfs:
        r = lf.run("sync")
        assert r.code in (1, 4), r.err
        assert "duplicate" in r.err, r.err
        assert lf.status()["duplicates"], "status lists them"
    keys = [d["key"] for d in lfs[0].status()["duplicates"]]
    r = lfs[0].run("ack", *keys)
    assert r.code == 0, r.err
    assert "duplicate" not in lfs[0].run("sync").err


# --- what cannot be prevented is named --------------------------------------------------------


def _copy_by_hand(sb: Sandbox, doc: dict[str, Any]) -> str:
    copy = {k: doc[k] for k in ("CustomerNumber", "ExternalInvoiceReference1") if k in doc}
    copy["InvoiceRows"] = [
        {k: v for k, v in row.items() if k in ("Description", "Price", "DeliveredQuantity")}
        for row in doc["InvoiceRows"]
    ]
    return sb.fortnox.add_invoice(copy)


@pytest.mark.parametrize("resolve", ["ack", "cancel"])
def test_a_duplicate_made_by_hand_is_named_every_pass_until_acked_or_cancelled(
    make_sandbox: Any, tmp_path: Path, resolve: str
) -> None:
    sb = make_sandbox(seed=36, companies=10, deals=14)
    lf = Lf(sb, tmp_path, start="2000-01-01")
    assert lf.run("sync").code == 0
    doc = sorted(sb.fortnox.invoices, key=lambda d: int(d["DocumentNumber"]))[0]
    key = "deal:" + doc["ExternalInvoiceReference1"].removeprefix("limego:deal:")
    extra = _copy_by_hand(sb, doc)

    for _ in range(2):  # the next pass, and every one after it
        r = lf.run("sync")
        assert r.code == 1, r.out + r.err
        assert f"{key} duplicate" in r.err and "in line" not in r.out
        assert "1 duplicate in Fortnox" in r.out
    [dup] = lf.status()["duplicates"]
    assert dup == {
        "key": key,
        "documents": [f"invoice:{doc['DocumentNumber']}", f"invoice:{extra}"],
        "acknowledged": False,
    }
    if resolve == "ack":
        assert lf.run("ack", key).code == 0
        assert lf.status()["duplicates"][0]["acknowledged"] is True
    else:
        sb.fortnox.cancel_document(extra, "invoice")
    r = lf.run("sync")
    assert r.code == 0, r.err
    assert "in line" in r.out
    # A third one is named again, acknowledged or not.
    _copy_by_hand(sb, doc)
    assert lf.run("sync").code == 1


def test_the_installation_id_outlives_a_lost_state_file_and_a_backup_carries_its_own(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb = make_sandbox(seed=37, companies=8, deals=10)
    lf = Lf(sb, tmp_path, start="2000-01-01")
    assert lf.run("sync").code == 0
    me = lf.status()["installation"]
    assert (tmp_path / "limefort.id").read_text().strip() == me
    stamps = {d["ExternalInvoiceReference2"].split()[1] for d in sb.fortnox.invoices}
    assert stamps == {me}
    backup = tmp_path / "backup.db"
    shutil.copy(lf.state, backup)
    # Lost state file: the id file stays, so its own invoices stop nothing.
    lf.state.unlink()
    win_open_deals(sb, 1)
    r = lf.run("sync")
    assert r.code == 0, r.err
    # A backup restored where the id file is gone (a new machine): the state carries the id.
    (tmp_path / "limefort.id").unlink()
    lf.state.unlink()
    shutil.copy(backup, lf.state)
    win_open_deals(sb, 1)
    r = lf.run("sync")
    assert r.code == 0, r.err
    assert lf.status()["installation"] == me
    assert (tmp_path / "limefort.id").read_text().strip() == me
