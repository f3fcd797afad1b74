"""Issue 4, exactly once: no duplicate and no lost customer or document under SIGKILL, lost
answers, transient faults and overlapping runs (docs/design.md rules 1, 3, 6 and 7).

Everything runs against the sandbox servers on 127.0.0.1. The oracle is Fortnox itself: one
document per won deal (by ExternalInvoiceReference1), one customer per company (by
ExternalReference) and per organisation number, none missing, nothing left pending.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Lf

from limefort.clients.http import HttpClient
from limefort.clients.retries import RetrySettings
from limefort.core.errors import UnknownOutcome
from limefort_sandbox import FaultRule, Sandbox

# The workload of the crash and fault tests: seed 2 at these sizes gives 72 deals won after
# `sync.start` (days ago, so only cursor discipline brings them back after a crash), 44
# companies with status customer and 51 Fortnox customers in all, 11 of them without an
# organisation number (reconciled by name and ExternalReference) and two sharing a name.
BIG = {
    "seed": 2,
    "companies": 64,
    "deals": 230,
    "won_ratio": 0.9,
    "customer_ratio": 0.7,
    "recent_days": 30,
}


# ---------------------------------------------------------------------------------------------
# The oracle
# ---------------------------------------------------------------------------------------------


def start_of(lf: Lf) -> datetime:
    text = lf.config.read_text()
    value = text.split("start = ")[1].split("\n")[0].strip('"')
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def expected(sb: Sandbox, lf: Lf) -> tuple[set[str], set[str]]:
    """(deal ids that must have one document, company ids that must have one customer)."""
    deals = set(sb.limego.won_deal_ids(start_of(lf)))
    companies = set(sb.limego.customer_ids())
    for did in deals:
        ref = sb.limego.deals[did]["relationships"]["company"]["data"]
        if ref:
            companies.add(ref["id"])
    return deals, companies


@dataclass
class Tally:
    documents: int
    customers: int
    duplicate_documents: dict[str, int]
    duplicate_customers: dict[str, int]
    duplicate_orgnrs: dict[str, int]


def assert_exactly_once(sb: Sandbox, lf: Lf, deals: set[str], companies: set[str]) -> Tally:
    docs = Counter(d.get("ExternalInvoiceReference1") for d in sb.fortnox.invoices)
    ours = [c for c in sb.fortnox.customers if c.get("ExternalReference", "").startswith("limego:")]
    custs = Counter(c["ExternalReference"] for c in ours)
    orgnrs = Counter(
        c["OrganisationNumber"] for c in sb.fortnox.customers if c.get("OrganisationNumber")
    )
    tally = Tally(
        documents=sum(docs.values()),
        customers=sum(custs.values()),
        duplicate_documents={k: n for k, n in docs.items() if n > 1},
        duplicate_customers={k: n for k, n in custs.items() if n > 1},
        duplicate_orgnrs={k: n for k, n in orgnrs.items() if n > 1},
    )
    assert tally.duplicate_documents == {}
    assert tally.duplicate_customers == {}
    assert tally.duplicate_orgnrs == {}
    want_docs = {f"limego:deal:{d}" for d in deals}
    want_custs = {f"limego:company:{c}" for c in companies}
    assert sorted(want_docs - set(docs)) == [], "documents missing"
    assert sorted(set(docs) - want_docs) == [], "documents for deals that were not won"
    assert sorted(want_custs - set(custs)) == [], "customers missing"
    assert sorted(set(custs) - want_custs) == [], "customers nobody asked for"
    assert sb.fortnox.orders == []
    # Each document is for its deal's company's customer.
    number_of = {c["ExternalReference"]: c["CustomerNumber"] for c in ours}
    for inv in sb.fortnox.invoices:
        did = inv["ExternalInvoiceReference1"].removeprefix("limego:deal:")
        cid = sb.limego.deals[did]["relationships"]["company"]["data"]["id"]
        assert inv["CustomerNumber"] == number_of[f"limego:company:{cid}"], did
    # And limefort's state links each company to that customer, each deal to that document.
    with sqlite3.connect(f"file:{lf.state}?mode=ro", uri=True) as db:
        linked = dict(db.execute("SELECT company_id, customer_number FROM customers"))
        numbered = dict(
            db.execute("SELECT deal_id, document_number FROM documents WHERE state = 'done'")
        )
    assert linked == {ref.removeprefix("limego:company:"): n for ref, n in number_of.items()}
    assert numbered == {
        d["ExternalInvoiceReference1"].removeprefix("limego:deal:"): d["DocumentNumber"]
        for d in sb.fortnox.invoices
    }
    status = lf.status()
    assert status["pending"] == []
    assert status["quarantined"] == []
    assert status["documents"]["invoice"] == len(deals)
    assert status["customers"] == len(companies)
    return tally


def posts_per_document(sb: Sandbox) -> Counter[str]:
    """Invoice POSTs that reached the sandbox, per idempotency key."""
    return Counter(
        (r.body or {}).get("Invoice", {}).get("ExternalInvoiceReference1")
        for r in list(sb.fortnox.requests)
        if r.method == "POST" and r.path == "/3/invoices"
    )


def sync_until_clean(lf: Lf, *, deadline: float = 30.0, spawn: bool = False) -> list[int]:
    """Passes until one exits 0: a POST whose answer may still be on its way is only re-sent
    after 2 x http.timeout (4 s here), so this can take a few passes. Returns the exit codes."""
    codes: list[int] = []
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if spawn:
            p = lf.spawn("sync")
            _, err = p.communicate(timeout=max(end - time.monotonic(), 1.0))
            code = p.returncode
        else:
            r = lf.run("sync")
            code, err = r.code, r.err
        codes.append(code)
        if code == 0:
            return codes
        assert code == 1, err
        time.sleep(0.5)
    raise AssertionError(f"no clean pass within {deadline}s: exit codes {codes}")


def wall_times(procs: list[subprocess.Popen[str]], limit: float = 60.0) -> dict[int, float]:
    """Seconds from now until each process exited (poll every 2 ms)."""
    t0 = time.monotonic()
    ended: dict[int, float] = {}
    while len(ended) < len(procs) and time.monotonic() - t0 < limit:
        for p in procs:
            if p.pid not in ended and p.poll() is not None:
                ended[p.pid] = time.monotonic() - t0
        time.sleep(0.002)
    for p in procs:
        if p.pid not in ended:
            p.kill()
    return ended


# ---------------------------------------------------------------------------------------------
# Lost answers: the write happened, the answer did not come back
# ---------------------------------------------------------------------------------------------


def test_ghost_writes_are_adopted_not_repeated(make_sandbox: Any, tmp_path: Path) -> None:
    sb = make_sandbox(**BIG)
    lf = Lf(sb, tmp_path)
    deals, companies = expected(sb, lf)
    # 20 % of customer and invoice POSTs are applied and then answered 500 (10 %) or never
    # answered (1/9 of the other 90 %: another 10 %).
    for kind, rate in (("ghost500", 0.1), ("ghostdrop", 1 / 9)):
        for prefix in ("/3/customers", "/3/invoices"):
            sb.fortnox.faults.add(FaultRule(kind, rate=rate, methods=("POST",), path_prefix=prefix))
    first = lf.run("sync")
    assert first.code in (0, 1), first.err
    second = lf.run("sync")
    ghosts = Counter(
        (r.path, r.fault) for r in sb.fortnox.requests if r.fault and r.method == "POST"
    )
    posts = sum(1 for r in sb.fortnox.requests if r.method == "POST")
    assert sum(ghosts.values()) >= 10, ghosts
    assert second.code == 0, second.err
    tally = assert_exactly_once(sb, lf, deals, companies)
    # Nothing was sent twice: one POST per document, retried only when it never applied.
    assert max(posts_per_document(sb).values()) == 1
    print(f"\nghost writes: {dict(ghosts)} of {posts} POSTs; {tally}")


def test_lost_answers_for_customers_without_organisation_number_find_their_own(
    make_sandbox: Any, tmp_path: Path
) -> None:
    """Without an organisation number a lost customer POST is found by name, then told apart
    by ExternalReference: two Lime Go companies share a name, and Fortnox already holds a
    third customer of that name that is not limefort's."""
    sb = make_sandbox(seed=11, companies=24, deals=30)
    lf = Lf(sb, tmp_path)
    name = "Bygg & Måleri i Kiruna"
    stranger = sb.fortnox.add_customer({"Name": name})
    twins = [sb.limego.add_company(name=name, status="customer", city="Kiruna") for _ in "ab"]
    sb.limego.add_deal(company_id=twins[1], stage="won", name="Fasad", value="99000.00")
    deals, companies = expected(sb, lf)
    sb.fortnox.faults.add(FaultRule("ghost500", methods=("POST",), path_prefix="/3/customers"))
    first = lf.run("sync")
    assert first.code == 1, first.err  # the deals of unconfirmed customers waited
    sb.fortnox.faults.clear()
    codes = sync_until_clean(lf)
    ghosts = sum(1 for r in sb.fortnox.requests if r.fault == "ghost500")
    assert ghosts == len(companies)  # every customer POST of the first pass
    assert_exactly_once(sb, lf, deals, companies)
    same = [c for c in sb.fortnox.customers if c["Name"] == name]
    assert len(same) == 3 and stranger in {c["CustomerNumber"] for c in same}
    print(f"\nghost500 on all {ghosts} customer POSTs: exit codes {[first.code, *codes]}")


@pytest.mark.http
def test_a_post_that_timed_out_is_not_resent_while_it_may_still_be_running(
    make_sandbox: Any, tmp_path: Path
) -> None:
    """The client gives up after http.timeout (2 s) but Fortnox applies the POST 2.2 s in:
    a timeout is not a settled outcome, so the search that finds nothing right after it must
    not lead to a second POST."""
    sb = make_sandbox(seed=11, companies=24, deals=30)
    lf = Lf(sb, tmp_path)
    deals, companies = expected(sb, lf)
    sb.fortnox.faults.add(
        FaultRule("slow", delay=2.2, methods=("POST",), path_prefix="/3/invoices", times=1)
    )
    first = lf.run("sync")
    assert first.code == 1, first.err
    slow = next(r for r in sb.fortnox.requests if r.fault == "slow")
    key = slow.body["Invoice"]["ExternalInvoiceReference1"]
    assert [p["key"] for p in lf.status()["pending"]] == [key.removeprefix("limego:")]
    codes = sync_until_clean(lf)
    assert posts_per_document(sb)[key] == 1
    assert_exactly_once(sb, lf, deals, companies)
    print(f"\nslow POST: exit codes {[first.code, *codes]}")


@pytest.mark.parametrize(
    ("kind", "in_flight"), [("slow", True), ("ghostdrop", False), ("ghost500", False)]
)
def test_only_a_timeout_leaves_a_post_in_flight(
    make_sandbox: Any, kind: str, in_flight: bool
) -> None:
    """The classification behind the test above, at the HTTP edge: a 5xx or a dropped
    connection means the server finished with the request; a timeout means we stopped
    waiting."""
    sb = make_sandbox(seed=11, companies=1, deals=0)
    sb.fortnox.faults.add(FaultRule(kind, delay=0.5, methods=("POST",), times=1))
    client = HttpClient(sb.fortnox_url, "Fortnox", settings=RetrySettings(timeout=0.2))
    with pytest.raises(UnknownOutcome) as caught:
        client.request("POST", "/3/invoices", json={"Invoice": {"CustomerNumber": "1"}})
    assert caught.value.in_flight is in_flight
    assert sb.fortnox.count("POST") == 1  # never re-sent


def test_an_intent_dropped_by_reconciliation_is_not_lost_if_its_resend_fails(
    make_sandbox: Any, tmp_path: Path
) -> None:
    """A POST answered 500 (not applied): reconciliation finds nothing and drops the intent to
    send it again, but Lime Go does not answer the re-read of the deal. The deal was won days
    ago, so only a cursor that waited for it brings it back."""
    sb = make_sandbox(seed=11, companies=24, deals=30)
    lf = Lf(sb, tmp_path)
    deals, companies = expected(sb, lf)
    sb.fortnox.faults.add(FaultRule("500", methods=("POST",), path_prefix="/3/invoices", times=1))
    sb.limego.faults.add(FaultRule("503", methods=("GET",), path_prefix="/api/v1/deals/"))
    first = lf.run("sync")
    assert first.code == 1, first.err
    sb.limego.faults.clear()
    codes = sync_until_clean(lf)
    assert_exactly_once(sb, lf, deals, companies)
    print(f"\ndropped intent: exit codes {[first.code, *codes]}")


def test_a_customer_intent_dropped_by_reconciliation_is_not_lost(
    make_sandbox: Any, tmp_path: Path
) -> None:
    """The same for a customer: its POST answered 500, the re-read of the company fails. The
    company has no deal to bring it back; only the companies cursor can."""
    sb = make_sandbox(seed=11, companies=24, deals=30)
    lf = Lf(sb, tmp_path)
    deals, companies = expected(sb, lf)
    sb.fortnox.faults.add(FaultRule("500", methods=("POST",), path_prefix="/3/customers", times=1))
    sb.limego.faults.add(FaultRule("503", methods=("GET",), path_prefix="/api/v1/companies/"))
    first = lf.run("sync", "--only", "customers")
    assert first.code == 1, first.err
    failed = next(r for r in sb.fortnox.requests if r.fault == "500")
    cid = failed.body["Customer"]["ExternalReference"].removeprefix("limego:company:")
    assert not any(
        d["relationships"]["company"]["data"]["id"] == cid for d in map(sb.limego.deals.get, deals)
    ), "the test needs a company without a deal won after start"
    sb.limego.faults.clear()
    codes = sync_until_clean(lf)
    assert_exactly_once(sb, lf, deals, companies)
    print(f"\ndropped customer intent: exit codes {[first.code, *codes]}")


def test_a_pending_intent_fortnox_cannot_confirm_stays_pending_and_is_never_resent(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb = make_sandbox(seed=11, companies=24, deals=30)
    lf = Lf(sb, tmp_path)
    deals, companies = expected(sb, lf)
    # The customers first, so that the invoices are the pass's first writes.
    assert lf.run("sync", "--only", "customers").code in (0, 1)
    # The invoice is created but its answer never arrives, and the search that would find it
    # cannot get through either (the one read of Fortnox's invoice index before the first
    # POST gets through: without it nothing would be sent at all).
    sb.fortnox.faults.add(
        FaultRule("ghostdrop", methods=("POST",), path_prefix="/3/invoices", times=1)
    )
    sb.fortnox.faults.add(FaultRule("reset", methods=("GET",), path_prefix="/3/invoices", after=1))
    runs = [lf.run("sync")]
    ghost = next(r for r in sb.fortnox.requests if r.fault == "ghostdrop")
    ref = ghost.body["Invoice"]["ExternalInvoiceReference1"]
    key = ref.removeprefix("limego:")
    assert len(sb.fortnox.documents_by_ref(ref)) == 1  # Fortnox has it; limefort cannot know
    for _ in range(2):
        time.sleep(0.2)
        runs.append(lf.run("sync"))
    for r in runs:
        assert r.code == 1, r.err
        assert key in r.err and "pending" in r.err
        assert r.err.count(f"limefort: {key} pending:") == 1, r.err  # named once per pass
    status = lf.status()
    assert [p["key"] for p in status["pending"]] == [key]
    assert status["pending"][0]["since"]
    assert status["last_run"]["exit_code"] == 1
    searches = sum(1 for r in sb.fortnox.requests if r.fault == "reset")
    assert searches >= 3 * 4  # each pass looked (4 attempts) and could not see
    assert posts_per_document(sb)[ref] == 1  # never re-sent blind

    sb.fortnox.faults.clear()
    last = lf.run("sync")
    assert last.code == 0, last.err
    assert "1 lost answer reconciled" in last.out
    assert posts_per_document(sb)[ref] == 1
    assert_exactly_once(sb, lf, deals, companies)


# ---------------------------------------------------------------------------------------------
# Transient faults everywhere
# ---------------------------------------------------------------------------------------------


def test_transient_faults_on_both_sides_end_synced_without_duplicates(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb = make_sandbox(**BIG)
    lf = Lf(sb, tmp_path)
    deals, companies = expected(sb, lf)
    # 15 % of Fortnox answers (every method, the token endpoint too) and 5 % of Lime Go's
    # fail. Rules are tried in order, so each takes its share of what the earlier ones left.
    for kind in ("429", "500", "503", "reset"):
        sb.fortnox.faults.add(FaultRule(kind, rate=1 - 0.85**0.25, path_prefix="/"))
    for kind in ("500", "reset", "503"):
        sb.limego.faults.add(FaultRule(kind, rate=1 - 0.95 ** (1 / 3), path_prefix="/"))
    t0 = time.monotonic()
    codes = sync_until_clean(lf, deadline=90)
    took = time.monotonic() - t0
    fx = Counter(f"{r.method} {r.fault}" for r in sb.fortnox.requests if r.fault)
    lg = Counter(r.fault for r in sb.limego.requests if r.fault)
    n_fx, n_lg = len(sb.fortnox.requests), len(sb.limego.requests)
    assert 0.10 < sum(fx.values()) / n_fx < 0.20, fx
    # About 5 % of under a hundred requests, drawn in an order read-ahead threads vary.
    assert 0.02 < sum(lg.values()) / n_lg < 0.10, lg
    assert fx["POST 500"] + fx["POST reset"] > 0  # lost answers among them
    assert len(codes) <= 6
    tally = assert_exactly_once(sb, lf, deals, companies)
    print(
        f"\nfaults: Fortnox {dict(fx)} of {n_fx} requests, Lime Go {dict(lg)} of {n_lg}; "
        f"exit codes {codes} in {took:.1f}s; {tally}"
    )


# ---------------------------------------------------------------------------------------------
# Overlapping runs (rule 7)
# ---------------------------------------------------------------------------------------------


@pytest.mark.http
def test_four_overlapping_runs_one_works_the_others_exit_75_at_once(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb = make_sandbox(seed=11, companies=24, deals=30, latency=0.05)  # a pass of some seconds
    lf = Lf(sb, tmp_path)
    deals, companies = expected(sb, lf)
    # What four interpreters starting at once on this machine cost before limefort can say
    # anything at all (`--version` imports the whole command): the yardstick for "at once".
    versions = [lf.spawn("--version") for _ in range(4)]
    startup = max(wall_times(versions).values())
    assert all(p.communicate(timeout=10)[0].startswith("limefort") for p in versions)
    procs = [lf.spawn("sync") for _ in range(4)]
    ended = wall_times(procs)
    outs = {p.pid: p.communicate(timeout=10) for p in procs}
    codes = {p.pid: p.returncode for p in procs}
    workers = [pid for pid, code in codes.items() if code != 75]
    assert len(workers) == 1, codes
    holder = workers[0]
    assert codes[holder] in (0, 1), outs[holder][1]
    others = [pid for pid in codes if pid != holder]
    for pid in others:
        out, err = outs[pid]
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert f"pid {holder}" in lines[0] and "another limefort" in lines[0], lines[0]
        assert out == ""
        assert ended[pid] - startup < 1.0, f"exit 75 took {ended[pid]:.2f}s ({startup=:.2f}s)"
    assert ended[holder] > max(ended[pid] for pid in others)
    status = lf.status()
    assert len(status["runs"]) == 1  # the three that gave up left no trace in the state
    sync_until_clean(lf)
    assert_exactly_once(sb, lf, deals, companies)
    print(
        "\noverlap: exit 75 after "
        + ", ".join(f"{ended[pid]:.2f}s" for pid in others)
        + f" (4 x --version at once: {startup:.2f}s); the worker (pid {holder}) took "
        + f"{ended[holder]:.2f}s"
    )


# ---------------------------------------------------------------------------------------------
# The real rate limit (rule 6)
# ---------------------------------------------------------------------------------------------


def test_the_client_limiter_keeps_a_pass_under_fortnox_limit(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb = make_sandbox(seed=12, companies=44, deals=100, won_ratio=0.6, fortnox_rate_limit=25)
    lf = Lf(sb, tmp_path, rate_limit=25)
    deals, companies = expected(sb, lf)
    t0 = time.monotonic()
    r = lf.run("sync")
    took = time.monotonic() - t0
    assert r.code == 0, r.err
    calls = [x for x in sb.fortnox.requests if x.path.startswith("/3/")]
    n = len(calls)
    assert 40 <= n <= 60, n
    assert sb.fortnox.rate_limited == 0
    assert all(x.status != 429 for x in calls)
    assert took >= (n - 25) / 5
    # No 25 requests in any 5-second window at the server's end either.
    at = sorted(x.at for x in calls)
    assert all(at[i + 25] - at[i] >= 5.0 for i in range(n - 25))
    assert_exactly_once(sb, lf, deals, companies)
    print(f"\nrate limit: {n} Fortnox requests in {took:.1f}s, 0 answered 429")


# ---------------------------------------------------------------------------------------------
# SIGKILL at random moments
# ---------------------------------------------------------------------------------------------


def pending_rows(state: Path) -> int:
    """Intents the killed process left behind (read straight from the state file)."""
    with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as db:
        return sum(
            db.execute(f"SELECT count(*) FROM {t} WHERE state = 'pending'").fetchone()[0]
            for t in ("customers", "documents")
        )


@pytest.mark.http
def test_sigkill_at_random_moments_neither_loses_nor_duplicates(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb = make_sandbox(**BIG, latency=0.04)
    lf = Lf(sb, tmp_path)
    deals, companies = expected(sb, lf)
    assert len(deals) >= 60 and len(companies) >= 40
    rng = random.Random(20261123)
    kills: list[dict[str, Any]] = []
    t0 = time.monotonic()
    while len(kills) < 12:
        posts = sb.fortnox.count("POST")

        # The clock starts at the pass's first request to either server, or, every other
        # time, at its first POST: a pass reads Lime Go for a second or so before it writes,
        # and the kills should land among the writes too, not only among the reads.
        def started() -> int:
            if len(kills) % 2:
                return sb.fortnox.count("POST")
            return len(sb.fortnox.requests) + len(sb.limego.requests)

        seen = started()
        p = lf.spawn("sync")
        waited = time.monotonic()
        while started() == seen and p.poll() is None and time.monotonic() - waited < 5:
            time.sleep(0.001)
        delay = rng.uniform(0.005, 1.0)
        time.sleep(delay)
        if p.poll() is not None:
            p.communicate()
            break  # it finished before the kill: everything is in
        os.kill(p.pid, signal.SIGKILL)
        p.communicate(timeout=10)
        assert p.returncode == -signal.SIGKILL
        kills.append(
            {
                "after": round(delay, 3),
                "posts": sb.fortnox.count("POST") - posts,
                "pending": pending_rows(lf.state),
            }
        )
    killed_for = time.monotonic() - t0
    assert len(kills) >= 10, f"the pass finished after {len(kills)} kills: make it longer"
    assert sum(k["posts"] for k in kills) > 0
    codes = sync_until_clean(lf, deadline=45, spawn=True)
    tally = assert_exactly_once(sb, lf, deals, companies)
    # No fault here answers a POST without applying it: every document was POSTed once.
    resent = {ref: n for ref, n in posts_per_document(sb).items() if ref and n > 1}
    assert resent == {}
    # And a pass after that has nothing left to write.
    sb.fortnox.reset_log()
    assert lf.run("sync").code == 0
    assert sb.fortnox.count("POST") == 0 and sb.fortnox.count("PUT") == 0
    print(
        f"\ncrash: {len(kills)} SIGKILLs in {killed_for:.1f}s "
        f"(POSTs sent by each killed pass {[k['posts'] for k in kills]}, "
        f"intents left pending {[k['pending'] for k in kills]}); then exit codes {codes}; "
        f"documents POSTed more than once: {len(resent)}; {tally}"
    )


def test_a_customer_post_that_fails_transiently_defers_its_deal_not_quarantines_it(
    make_sandbox: Any, tmp_path: Path
) -> None:
    """A won deal of a company that is not a customer yet: the company is created on the
    deal's behalf, and that POST runs out of retries (503 four times). Fortnox never got it,
    so the deal waits for the next pass; it is not the deal's fault (rule 5 is for records
    Fortnox refuses)."""
    sb = make_sandbox(seed=11, companies=24, deals=30)
    lf = Lf(sb, tmp_path)
    assert lf.run("sync", "--only", "customers").code in (0, 1)
    cid = sb.limego.add_company(name="Ödmans Snickeri AB", business_id="556036-0793")
    sb.limego.add_deal(company_id=cid, stage="won", name="Köksluckor", value="1234.50")
    deals, companies = expected(sb, lf)
    sb.fortnox.faults.add(FaultRule("503", methods=("POST",), path_prefix="/3/customers", times=4))
    first = lf.run("sync")
    assert first.code == 1, first.err
    assert lf.status()["quarantined"] == []
    codes = sync_until_clean(lf)
    assert_exactly_once(sb, lf, deals, companies)
    print(f"\ntransient customer POST: exit codes {[first.code, *codes]}")


def test_a_resend_that_fails_keeps_its_intent_until_fortnox_has_the_invoice(
    make_sandbox: Any, tmp_path: Path
) -> None:
    """Reconciliation finds that Fortnox never got a POST and sends it again, but Fortnox
    refuses that resend with 503s until the retries run out. The deal was won two days ago,
    outside every later read window: only the intent, kept pending, brings it to Fortnox."""
    sb = make_sandbox(seed=5, companies=4, deals=0)
    lf = Lf(sb, tmp_path)
    cid = sb.limego.add_company(name="Bortglömda AB", business_id="556036-0793", status="customer")
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    did = sb.limego.add_deal(
        company_id=cid, stage="won", name="Gammal affär", value="500.00", updated_at=two_days_ago
    )
    key = f"deal:{did}"
    # The first POST is lost (500); every resend after it is refused (503) until cleared.
    sb.fortnox.faults.add(FaultRule("500", methods=("POST",), path_prefix="/3/invoices", times=1))
    sb.fortnox.faults.add(FaultRule("503", methods=("POST",), path_prefix="/3/invoices"))
    assert lf.run("sync").code == 1
    assert [p["key"] for p in lf.status()["pending"]] == [key], "the failed resend lost its intent"
    second = lf.run("sync")
    assert second.code == 1, second.err
    assert [p["key"] for p in lf.status()["pending"]] == [key], "the failed resend lost its intent"
    assert sb.fortnox.documents_by_ref(f"limego:{key}") == []

    sb.fortnox.faults.clear()
    third = lf.run("sync")
    assert third.code == 0, third.err
    assert len(sb.fortnox.documents_by_ref(f"limego:{key}")) == 1
    assert lf.status()["pending"] == []
