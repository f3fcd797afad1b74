"""Exactly once, as a hypothesis state machine: wins, new companies, Fortnox faults (lost and
ghost writes included), crashes mid-POST, time passing, a lost state file, a second state file
of this installation and passes of another installation interleaved at random, with Fortnox's
clock up to 15 minutes off this machine's (or running through the October fall-back hour) and
existing Fortnox customers whose organisation number is stored in another format; after every
step no key has two documents in Fortnox and no legal entity two customers, and at the end
every won deal has exactly one (or is quarantined for a reason the pass names).

In-process: the sandbox apps behind a `requests` adapter (tests/fakes.py), the state on
`Store.memory()`, a clock the machine moves. A crash is an exception no layer of limefort
catches, raised in the middle of a Fortnox request, before or after Fortnox applied it.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from conftest import TEST_HTTP, add_keys
from fakes import inprocess
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from limefort import config as config_mod
from limefort.core.keys import parse_stamp
from limefort.engine.runner import build_clients
from limefort.engine.sync import Syncer
from limefort.mapping.normalise import orgnr_key
from limefort.state.store import Store
from limefort_sandbox import FaultRule, Sandbox
from limefort_sandbox.rules import valid_orgnr

START = "2000-01-01"
ME, OTHER = "00000000000a", "00000000000b"  # this installation (its id file), another one
STORED_FORMATS = ["{a}{b}", "{a} {b}", "16{a}{b}", "16{a}-{b}", "{a}-{b} "]


class Crash(BaseException):
    """The process dies: nothing in limefort catches it."""


class ExactlyOnce(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._routes: Iterator[Any] | None = None
        self.offset = timedelta(0)
        self.crashes = 0

    # --- set-up -------------------------------------------------------------------------------

    @initialize(
        seed=st.integers(0, 10_000),
        skew=st.integers(-15, 15),
        fall_back=st.booleans(),
        formats=st.lists(st.sampled_from(STORED_FORMATS), max_size=3),
    )
    def setup(self, seed: int, skew: int, fall_back: bool, formats: list[str]) -> None:
        self.sb = Sandbox(seed=seed, companies=6, deals=10, fortnox_rate_limit=None, serve=False)
        # Fortnox's own clock: `skew` minutes off this machine's, or starting at the first
        # 02:45 of 25 October 2026 and moving 10 minutes with every step of time.
        self.fall_back = fall_back
        self.fx_offset = timedelta(minutes=skew)
        if fall_back:
            self.fx_offset = datetime(2026, 10, 25, 0, 45, tzinfo=UTC) - datetime.now(UTC)
        self.sb.fortnox.clock = lambda: datetime.now(UTC) + self.fx_offset
        # Customers in Fortnox before limefort came, their numbers stored as typed.
        dashed = [
            c
            for c in sorted(self.sb.limego.customer_ids())
            if valid_orgnr(self.sb.limego.companies[c]["attributes"]["business_id"] or "")
        ]
        for cid, pattern in zip(dashed, formats, strict=False):
            attrs = self.sb.limego.companies[cid]["attributes"]
            a, b = attrs["business_id"].split("-")
            self.sb.fortnox.add_customer(
                # The name as a bookkeeper would type it in Fortnox (its character set).
                {"Name": f"Kund {a}", "OrganisationNumber": attrs["business_id"]},
                stored_orgnr=pattern.format(a=a, b=b),
            )
        self._routes = inprocess(self.sb)
        self._routes.__enter__()  # type: ignore[attr-defined]
        self.dir = Path(tempfile.mkdtemp(prefix="lf-machine-"))
        text = self.sb.config_toml(str(self.dir / "unused.db"), start=START)
        text = add_keys(text, "http", **{**TEST_HTTP, "timeout": '"1s"'})
        text = add_keys(text, "fortnox", rate_limit=0)  # the real limit has its own test
        (self.dir / "limefort.toml").write_text(text, encoding="utf-8")
        self.cfg = config_mod.load(self.dir / "limefort.toml", environ={}, explicit=True)
        self.new_state_file()

    def new_state_file(self) -> None:
        self.store, self.limego, self.fortnox = self.state_file()

    def state_file(self) -> tuple[Store, Any, Any]:
        store = Store.memory(clock=self.now)
        limego, fortnox = build_clients(self.cfg, store)
        # Retries wait no real time: the classification and the attempts are the real ones.
        for client in (limego, fortnox):
            client.http.settings = replace(client.http.settings, sleep=lambda _s: None)
        return store, limego, fortnox

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def teardown(self) -> None:
        try:
            if hasattr(self, "sb"):
                self.settle_and_check()
        finally:
            if self._routes is not None:
                self._routes.__exit__(None, None, None)  # type: ignore[attr-defined]

    # --- what happens in the world ------------------------------------------------------------

    @rule(data=st.data())
    def win_a_deal(self, data: st.DataObject) -> None:
        won = self.sb.limego.stage_id("won")
        open_ = sorted(set(self.sb.limego.deals) - set(self.sb.limego.won_deal_ids(None)))
        if open_:
            self.sb.limego.update_deal(data.draw(st.sampled_from(open_)), stage=won)

    @rule(orgnr=st.booleans())
    def a_new_customer_wins_a_deal(self, orgnr: bool) -> None:
        self.n = getattr(self, "n", 0) + 1
        attrs: dict[str, Any] = {"name": f"Nykund {self.n} AB", "status": "customer"}
        if orgnr:
            attrs["business_id"] = ("556036-0793", "212000-0142", "556016-0680")[self.n % 3]
        cid = self.sb.limego.add_company(**attrs)
        self.sb.limego.add_deal(
            company_id=cid,
            stage=self.sb.limego.stage_id("won"),
            name=f"Affär {self.n}",
            value="990.00",
        )

    @rule(
        kind=st.sampled_from(["503", "500", "429", "reset", "ghost500", "ghostdrop"]),
        path=st.sampled_from(["/3/invoices", "/3/customers"]),
        method=st.sampled_from(["POST", "GET"]),
        times=st.integers(1, 3),
    )
    def fortnox_fails(self, kind: str, path: str, method: str, times: int) -> None:
        self.sb.fortnox.faults.add(
            FaultRule(kind, methods=(method,), path_prefix=path, times=times)
        )

    @rule()
    def time_passes(self) -> None:
        step = timedelta(seconds=2 * self.cfg.http.timeout + 1)
        self.offset += step
        self.fx_offset += step + (timedelta(minutes=10) if self.fall_back else timedelta(0))

    @rule()
    def the_state_file_is_lost(self) -> None:
        self.new_state_file()

    # --- limefort -------------------------------------------------------------------------------

    def sync(self, take_over: bool = False) -> int:
        syncer = Syncer(
            self.cfg,
            self.store,
            self.limego,
            self.fortnox,
            echo=lambda _: None,
            clock=self.now,
            installation=ME,  # its id file outlives a lost state file
            take_over=take_over,
        )
        return syncer.run_pass().exit_code

    @rule()
    def a_pass(self) -> None:
        self.sync()

    @rule()
    def a_pass_of_a_second_state_file(self) -> None:
        """This installation with a second state file (a copy, an old backup) in between."""
        if not hasattr(self, "second"):
            self.second = self.state_file()
        store, limego, fortnox = self.second
        Syncer(
            self.cfg, store, limego, fortnox, echo=lambda _: None, clock=self.now, installation=ME
        ).run_pass()

    @rule()
    def another_installation_passes(self) -> None:
        """A second machine on the same tenant, with a state file of its own: once this one
        has made a document, it is stopped before its first write."""
        store, limego, fortnox = self.state_file()
        # This one's documents within the lease window, on Fortnox's clock (time passes
        # 10 minutes a step in the fall-back runs: older stamps are history and stop nothing).
        lease_start = self.sb.fortnox.now() - self.cfg.sync.writer_lease
        made = any(
            (got := parse_stamp(d.get("ExternalInvoiceReference2"))) is not None
            and got[0] == ME
            and got[1] >= lease_start + timedelta(minutes=1)  # the stamp's minute resolution
            for d in self.sb.fortnox.invoices
        )
        before = len(self.sb.fortnox.requests)
        code = Syncer(
            self.cfg,
            store,
            limego,
            fortnox,
            echo=lambda _: None,
            clock=self.now,
            installation=OTHER,
        ).run_pass()
        posts = [r for r in self.sb.fortnox.requests[before:] if r.method == "POST"]
        if made:
            # It may link what Fortnox holds (nothing is made twice by that), never create.
            assert posts == [], f"another installation created beside this one ({code})"

    @rule(nth=st.integers(1, 4), applied=st.booleans())
    def a_pass_dies_mid_post(self, nth: int, applied: bool) -> None:
        session = self.fortnox.http.session
        send = session.request
        seen = {"posts": 0}

        def dying(method: str, url: str, *args: Any, **kw: Any) -> requests.Response:
            if method == "POST":
                seen["posts"] += 1
                if seen["posts"] == nth:
                    if applied:
                        send(method, url, *args, **kw)
                    raise Crash
            return send(method, url, *args, **kw)

        session.request = dying  # type: ignore[method-assign]
        try:
            self.sync()
        except Crash:
            self.crashes += 1
        finally:
            session.request = send  # type: ignore[method-assign]

    # --- what must hold -------------------------------------------------------------------------

    @invariant()
    def no_key_twice(self) -> None:
        if not hasattr(self, "sb"):
            return
        docs = Counter(d.get("ExternalInvoiceReference1") for d in self.sb.fortnox.invoices)
        assert not {k: n for k, n in docs.items() if n > 1}, "a document was made twice"
        refs = Counter(c.get("ExternalReference") for c in self.sb.fortnox.customers)
        assert not {k: n for k, n in refs.items() if k and n > 1}, "a customer was made twice"
        keys = Counter(orgnr_key(c.get("OrganisationNumber")) for c in self.sb.fortnox.customers)
        assert not {k: n for k, n in keys.items() if k and n > 1}, "two customers, one entity"

    def settle_and_check(self) -> None:
        self.sb.fortnox.faults.clear()
        # Another installation may have written last: a person hands over to this one.
        take_over = True
        for _ in range(6):
            self.offset += timedelta(seconds=2 * self.cfg.http.timeout + 1)
            if self.sync(take_over) == 0:
                break
            take_over = False
        docs = Counter(d.get("ExternalInvoiceReference1") for d in self.sb.fortnox.invoices)
        quarantined = {q.key for q in self.store.all_quarantined()}
        assert self.store.pending_documents() == []
        for did in self.sb.limego.won_deal_ids(datetime(2000, 1, 1, tzinfo=UTC)):
            n = docs[f"limego:deal:{did}"]
            assert n == 1 or (n == 0 and f"deal:{did}" in quarantined), (did, n)


ExactlyOnce.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    # A developer's run explores new interleavings every time; CI replays a fixed 200, so
    # a landing is never decided by the luck of the draw (a failure found locally is kept in
    # hypothesis's example database and replayed first).
    derandomize=bool(os.environ.get("CI")),
)
TestExactlyOnceMachine = ExactlyOnce.TestCase
