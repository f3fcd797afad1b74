"""Issue 5: what happens to a quarantined record afterwards, and what `status` says about it.

A record leaves quarantine when its source changes in Lime Go (the next pass retries it) or on
`limefort retry` (after a fix on Fortnox's side, which Lime Go never sees). An unchanged
quarantined record is not sent again on a normal pass. State-file trouble is one line, exit 2.
"""

from __future__ import annotations

import re
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Lf, beyond_ledger_read, empty_sandbox, fortnox_calls, valid_orgnrs

from limefort.commands.status import local_time
from limefort_sandbox import Sandbox
from limefort_sandbox import rules as sandbox_rules
from limefort_sandbox.seed import iso

ORGNR = valid_orgnrs(200)


def fresh(make_sandbox: Any, tmp_path: Path, **sync: Any) -> tuple[Sandbox, Lf]:
    return empty_sandbox(make_sandbox, tmp_path, 21, **sync)


def customer_of(sb: Sandbox, company_id: str) -> dict[str, Any] | None:
    ref = f"limego:company:{company_id}"
    found = [c for c in sb.fortnox.customers if c.get("ExternalReference") == ref]
    assert len(found) <= 1
    return found[0] if found else None


def quarantined(lf: Lf) -> dict[str, dict[str, Any]]:
    return {q["key"]: q for q in lf.status()["quarantined"]}


def add_customer(sb: Sandbox, name: str | None, **attrs: Any) -> str:
    return sb.limego.add_company(name=name, business_id=next(ORGNR), status="customer", **attrs)


def won_hours_ago(sb: Sandbox, deal_id: str, hours: int = 3) -> None:
    """Back-date a deal (still after sync.start): the next pass's read window, cursor minus
    lookback, no longer covers it, as when a company is fixed a day after its deal was won."""
    sb.limego.deals[deal_id]["attributes"]["updated_at"] = iso(
        datetime.now(UTC) - timedelta(hours=hours)
    )


def set_state_path(lf: Lf, path: Path) -> None:
    text = lf.config.read_text(encoding="utf-8")
    lf.write(re.sub(r"(?m)^path = .*$", f"path = {str(path)!r}".replace("'", '"'), text))


# --- a fix in Lime Go ---------------------------------------------------------------------------


def test_fixing_a_company_in_lime_go_syncs_it_and_its_deal_on_the_next_pass(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_sandbox, tmp_path)
    cid = add_customer(sb, None, city="Umeå")
    did = sb.limego.add_deal(company_id=cid, stage="won", name="Takbyte", value="48000.00")
    won_hours_ago(sb, did)

    r = lf.run("sync")
    assert r.code == 1, r.err
    q = quarantined(lf)
    assert set(q) == {f"company:{cid}", f"deal:{did}"}
    assert f"company:{cid}" in q[f"deal:{did}"]["reason"]

    sb.limego.update_company(cid, name="Takläggarna i Umeå AB")  # the deal itself is unchanged
    sb.fortnox.reset_log()
    r = lf.run("sync")

    assert r.code == 0, r.err
    customer = customer_of(sb, cid)
    assert customer is not None and customer["Name"] == "Takläggarna i Umeå AB"
    docs = sb.fortnox.documents_by_ref(f"limego:deal:{did}")
    assert len(docs) == 1 and docs[0]["CustomerNumber"] == customer["CustomerNumber"]
    assert [c for c in fortnox_calls(sb) if c.startswith("POST")] == [
        "POST /3/customers",
        "POST /3/invoices",
    ]
    assert quarantined(lf) == {}


def test_editing_a_quarantined_deal_in_lime_go_retries_it(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_sandbox, tmp_path)
    cid = add_customer(sb, "Värdelös AB")
    did = sb.limego.add_deal(company_id=cid, stage="won", name="Fel värde", value="12,50")
    assert lf.run("sync").code == 1
    assert "'12,50' has a decimal comma" in quarantined(lf)[f"deal:{did}"]["reason"]

    sb.limego.update_deal(did, value="12.50")
    r = lf.run("sync")

    assert r.code == 0, r.err
    (doc,) = sb.fortnox.documents_by_ref(f"limego:deal:{did}")
    assert str(doc["InvoiceRows"][0]["Price"]) == "12.50"
    assert quarantined(lf) == {}


def test_a_quarantined_deal_that_is_lost_leaves_quarantine(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_sandbox, tmp_path)
    cid = add_customer(sb, "Förlorat AB")
    did = sb.limego.add_deal(company_id=cid, stage="won", name="Noll", value="0.00")
    assert lf.run("sync").code == 1
    assert set(quarantined(lf)) == {f"deal:{did}"}

    sb.limego.lose_deal(did)  # no document will ever be wanted for it
    r = lf.run("sync")

    assert r.code == 0, r.err
    assert quarantined(lf) == {}
    assert sb.fortnox.invoices == []


def test_a_deal_waiting_for_its_company_is_released_when_lost(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_sandbox, tmp_path)
    cid = add_customer(sb, None)
    did = sb.limego.add_deal(company_id=cid, stage="won", name="Väntar", value="100.00")
    won_hours_ago(sb, did)
    assert lf.run("sync").code == 1
    sb.limego.deals[did]["relationships"]["stage"]["data"]["id"] = sb.limego.stage_id("lost")
    sb.limego.update_company(cid, name="Namn Till Slut AB")

    r = lf.run("sync")

    assert r.code == 0, r.err
    assert customer_of(sb, cid) is not None
    assert sb.fortnox.invoices == [] and quarantined(lf) == {}


# --- a fix on Fortnox's side: `limefort retry` ------------------------------------------------


def test_retry_key_after_a_fortnox_side_fix(make_sandbox: Any, tmp_path: Path) -> None:
    sb, lf = fresh(make_sandbox, tmp_path)
    sb.fortnox.default_account = False  # no default sales account, none configured
    cid = add_customer(sb, "Kontolösa AB")
    did = sb.limego.add_deal(company_id=cid, stage="won", name="Rådgivning", value="5000.00")
    key = f"deal:{did}"

    r = lf.run("sync")
    assert r.code == 1, r.err
    assert f"limefort: {key} quarantined: " in r.err
    entry = quarantined(lf)[key]
    # Fortnox's code in plain words, Fortnox's own words after it, and what to do.
    assert "code 2000423" in entry["reason"]
    assert "the bookkeeping account does not exist in Fortnox" in entry["reason"]
    assert "Kunde inte hitta konto" in entry["reason"]
    assert "account_number" in entry["hint"] and f"limefort retry {key}" in entry["hint"]
    assert entry["attempts"] == 1
    assert customer_of(sb, cid) is not None  # the customer went; only the invoice was refused

    # Nothing changed in Lime Go: a normal pass does not send it again (or anything at all).
    sb.fortnox.reset_log()
    r = lf.run("sync")
    assert r.code == 1, r.err
    assert beyond_ledger_read(sb) == []
    assert quarantined(lf)[key]["attempts"] == 1

    # retry before the fix: tried again, still refused, counted.
    r = lf.run("retry", key)
    assert r.code == 1, r.err
    assert [c for c in fortnox_calls(sb) if c.startswith("POST")] == ["POST /3/invoices"]
    again = quarantined(lf)[key]
    assert again["attempts"] == 2 and again["since"] == entry["since"]

    sb.fortnox.default_account = True  # the fix, in Fortnox: Lime Go does not change
    sb.fortnox.reset_log()
    r = lf.run("retry", key)

    assert r.code == 0, r.err
    assert len(sb.fortnox.documents_by_ref(f"limego:deal:{did}")) == 1
    assert [c for c in fortnox_calls(sb) if c.startswith("POST")] == ["POST /3/invoices"]
    assert quarantined(lf) == {}
    assert lf.status()["documents"]["invoice"] == 1
    # Synced now: the next pass has nothing to do.
    sb.fortnox.reset_log()
    assert lf.run("sync").code == 0
    assert beyond_ledger_read(sb) == []


def test_retrying_a_company_fortnox_refused_brings_its_waiting_deal(
    make_sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fortnox refuses the customer (a currency newer than its list); its deal waits. Once
    Fortnox knows the currency, `retry company:<id>` sends the customer and then the deal."""
    sb, lf = fresh(make_sandbox, tmp_path)
    lf.edit("mapping.customer", Currency="custom_fields.valuta")
    cid = add_customer(sb, "Harare Trading", custom_fields={"valuta": "ZWG"})
    did = sb.limego.add_deal(company_id=cid, stage="won", name="Guld", value="100.00")
    assert lf.run("sync").code == 1
    q = quarantined(lf)
    assert "code 2009007" in q[f"company:{cid}"]["reason"]
    assert f"limefort retry company:{cid}" in q[f"company:{cid}"]["hint"]
    assert f"company:{cid}" in q[f"deal:{did}"]["reason"]

    monkeypatch.setattr(sandbox_rules, "CURRENCIES", sandbox_rules.CURRENCIES | {"ZWG"})
    r = lf.run("retry", f"company:{cid}")

    assert r.code == 0, r.err
    customer = customer_of(sb, cid)
    assert customer is not None and customer["Currency"] == "ZWG"
    (doc,) = sb.fortnox.documents_by_ref(f"limego:deal:{did}")
    assert doc["CustomerNumber"] == customer["CustomerNumber"]
    assert quarantined(lf) == {}


def test_retry_all(make_sandbox: Any, tmp_path: Path) -> None:
    sb, lf = fresh(make_sandbox, tmp_path)
    sb.fortnox.default_account = False
    good = add_customer(sb, "Goda Grannar AB")
    nameless = add_customer(sb, "   ")
    deals = [
        sb.limego.add_deal(company_id=good, stage="won", name=f"Etapp {i}", value=f"{i}000.00")
        for i in (1, 2)
    ]
    assert lf.run("sync").code == 1
    assert set(quarantined(lf)) == {f"company:{nameless}", *(f"deal:{d}" for d in deals)}

    # Retrying with nothing fixed changes nothing but the attempts.
    r = lf.run("retry", "--all")
    assert r.code == 1, r.err
    assert {k: q["attempts"] for k, q in quarantined(lf).items()} == {
        f"company:{nameless}": 2,
        **{f"deal:{d}": 2 for d in deals},
    }

    # Fortnox fixed: the deals go; the company without a name stays, and says so.
    sb.fortnox.default_account = True
    r = lf.run("retry", "--all")
    assert r.code == 1, r.err
    assert f"limefort: company:{nameless} quarantined: company has no name" in r.err
    for d in deals:
        assert len(sb.fortnox.documents_by_ref(f"limego:deal:{d}")) == 1
    left = quarantined(lf)
    assert set(left) == {f"company:{nameless}"} and left[f"company:{nameless}"]["attempts"] == 3

    # A retry naming a key that is not a record is a usage error: nothing goes (issue 13).
    sb.limego.update_company(nameless, name="Namngivna AB")
    r = lf.run("retry", f"company:{nameless}", "invoice:42")
    assert r.code == 2
    assert "invoice:42" in r.err and "not a company:<id> or deal:<id> key" in r.err
    assert customer_of(sb, nameless) is None
    assert lf.run("retry", f"company:{nameless}").code == 0
    assert customer_of(sb, nameless) is not None

    r = lf.run("retry", "--all")
    assert r.code == 0, r.err
    assert "Nothing is quarantined." in r.out
    assert quarantined(lf) == {}


def test_retry_without_keys_is_a_usage_error(make_sandbox: Any, tmp_path: Path) -> None:
    _, lf = fresh(make_sandbox, tmp_path)
    r = lf.run("retry")
    assert r.code == 2
    assert "--all" in r.err and "Traceback" not in r.err


# --- status -------------------------------------------------------------------------------------


def test_status_lists_quarantined_records_with_everything_needed_to_act(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_sandbox, tmp_path)
    cid = add_customer(sb, "Emojibolaget AB")
    bad_company = add_customer(sb, "🚀🚀")
    did = sb.limego.add_deal(
        company_id=cid, stage="won", name="Dyr affär", value="100.00", currency="XYZ"
    )
    assert lf.run("sync").code == 1
    lf.run("retry", f"deal:{did}")

    data = lf.status()
    entries = {q["key"]: q for q in data["quarantined"]}
    assert set(entries) == {f"company:{bad_company}", f"deal:{did}"}
    deal = entries[f"deal:{did}"]
    assert deal["name"] == "Dyr affär"
    assert "currency 'XYZ' is not an ISO 4217 code" in deal["reason"]
    assert "SEK or EUR" in deal["hint"]
    assert deal["attempts"] == 2
    company = entries[f"company:{bad_company}"]
    assert company["name"] == "🚀🚀" and company["attempts"] == 1
    assert "Latin letters" in company["hint"]
    for q in entries.values():
        assert {"key", "name", "reason", "hint", "attempts", "since"} <= set(q)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", q["since"])
    assert data["last_run"]["exit_code"] == 1

    r = lf.run("status")
    assert r.code == 0, r.err
    assert "Quarantined: 2" in r.out
    for key, q in entries.items():
        block = r.out[r.out.index(key) :]
        block = block[: block.index("since")] + q["since"]
        assert repr(q["name"]) in block
        assert q["reason"] in block
        assert f"hint: {q['hint']}" in block
        assert f"attempts {q['attempts']}, since {local_time(q['since'])}" in r.out


def test_status_of_a_company_without_a_name_does_not_say_none(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = fresh(make_sandbox, tmp_path)
    cid = add_customer(sb, None)
    assert lf.run("sync").code == 1
    assert lf.status()["quarantined"][0]["name"] is None
    r = lf.run("status")
    line = next(x for x in r.out.splitlines() if f"company:{cid}" in x)
    assert "None" not in line and "(no name)" in line


# --- the state file ---------------------------------------------------------------------------


def one_line_naming_state_path(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err
    assert lines[0].startswith("limefort: state.path"), err
    return lines[0]


@pytest.mark.parametrize(
    "command", [["sync"], ["status"], ["status", "--json"], ["retry", "--all"]]
)
def test_state_path_in_a_missing_directory(
    make_sandbox: Any, tmp_path: Path, command: list[str]
) -> None:
    _, lf = fresh(make_sandbox, tmp_path)
    missing = tmp_path / "no" / "such" / "dir" / "limefort.db"
    set_state_path(lf, missing)
    r = lf.run(*command)
    assert r.code == 2
    line = one_line_naming_state_path(r.err)
    assert str(missing.parent) in line and "does not exist" in line
    assert not missing.parent.exists()


@pytest.mark.parametrize("command", [["sync"], ["status"], ["retry", "--all"]])
def test_corrupt_state_file(make_sandbox: Any, tmp_path: Path, command: list[str]) -> None:
    _, lf = fresh(make_sandbox, tmp_path)
    garbage = bytes(range(256)) * 64
    lf.state.write_bytes(garbage)
    r = lf.run(*command)
    assert r.code == 2
    line = one_line_naming_state_path(r.err)
    assert str(lf.state) in line and "not a readable limefort state file" in line
    assert lf.state.read_bytes() == garbage  # left as it was, for the user to look at


def test_status_before_any_pass(make_sandbox: Any, tmp_path: Path) -> None:
    _, lf = fresh(make_sandbox, tmp_path)
    for args in (["status"], ["status", "--json"]):
        r = lf.run(*args)
        assert r.code == 2
        line = one_line_naming_state_path(r.err)
        assert str(lf.state) in line and "limefort sync" in line
        assert r.out == ""
    assert not lf.state.exists()  # status never creates it


@pytest.mark.parametrize("readers_too", [False, True], ids=["writer", "exclusive-locking-mode"])
@pytest.mark.http
def test_state_file_locked_by_another_sqlite_writer(
    make_sandbox: Any, tmp_path: Path, readers_too: bool
) -> None:
    """Another program holds `BEGIN EXCLUSIVE` on the state file. In WAL mode that blocks
    writers only: `status` still reads, `sync` waits `[state] busy_timeout` (10 s by default;
    1 s here) and then says so in one line. With `locking_mode=EXCLUSIVE` readers are blocked
    too."""
    sb, lf = fresh(make_sandbox, tmp_path)
    lf.edit("state", busy_timeout="1s")
    add_customer(sb, "Låst AB")
    assert lf.run("sync").code == 0
    runs_before = lf.status()["runs"]

    holder = sqlite3.connect(lf.state, isolation_level=None)
    try:
        if readers_too:
            holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE meta SET value = value")
        started = time.monotonic()
        procs = {name: lf.spawn(name) for name in ("sync", "status")}
        results = {name: (p.wait(timeout=60), *p.communicate()) for name, p in procs.items()}
        elapsed = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    blocked = ["sync", "status"] if readers_too else ["sync"]
    for name, (code, out, err) in results.items():
        if name in blocked:
            assert code == 2, (name, out, err)
            line = one_line_naming_state_path(err)
            assert str(lf.state) in line and "locked by another program" in line, name
        else:
            assert code == 0, (name, err)
            assert "Quarantined: 0" in out
    assert 1 <= elapsed < 30  # waited the busy timeout, then gave up
    # Nothing was half-written, and once released everything works again.
    assert lf.status()["runs"] == runs_before
    assert lf.run("sync").code == 0
