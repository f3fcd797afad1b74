"""One pass of the sync: gather, plan, execute, reconcile, and the pass's outcome.

The entry points (`run_pass`, `retry`, `backfill`) only put the parts together:
- `gather.py` reads Lime Go, the store and Fortnox's indexes into a Snapshot per page;
- `plan.py` decides every action (pure);
- `execute.py` runs the actions and records what happened;
- `reconcile.py` settles intents whose outcome is unknown;
- cursors move here, by `cursor.py`'s pure rules, only after every record up to them is in
  Fortnox or quarantined (DESIGN rule 1).
A dry run gathers and plans the same way and prints the plan: nothing executes.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from limefort import plan
from limefort.config import Config, resolve_start
from limefort.core.keys import parse_key
from limefort.core.models import Company, Deal
from limefort.core.services import Sink, Source
from limefort.engine.execute import Executor
from limefort.engine.gather import Gatherer
from limefort.engine.ledger import Ledger
from limefort.engine.passstate import (
    AnotherWriter,
    PassAborted,
    PassResult,
    PassState,
    Progress,
    Stop,
)
from limefort.engine.reconcile import Reconciler
from limefort.engine.writers import WriterGuard
from limefort.plan import cursor as cursors
from limefort.state.store import Store

# Deals planned and written together: about one window of Fortnox's limit, so the Lime Go
# reads of the next batch (read while this one is written) are never far behind.
BATCH_WINS = 25

__all__ = ["PassAborted", "PassResult", "Syncer", "eta_seconds"]

log = logging.getLogger("limefort.sync")

DealBatch = tuple[list[Deal], dict[str, Company]]


class Syncer:
    def __init__(
        self,
        cfg: Config,
        store: Store,
        limego: Source,
        fortnox: Sink,
        *,
        dry_run: bool = False,
        echo: Callable[[str], None] = print,
        stop_event: threading.Event | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        installation: str | None = None,
        take_over: bool = False,
    ) -> None:
        """`installation`: this installation's id (default: `installation.resolve`, from the
        id file beside the state file); `take_over`: documents other installations made up to
        now no longer stop a pass (`limefort sync --take-over`)."""
        self.cfg = cfg
        self.store = store
        self.limego = limego
        self.fortnox = fortnox
        self.dry_run = dry_run
        self.echo = echo
        self.clock = clock
        store.clock = clock
        self.state = PassState(stop_event=stop_event or threading.Event())
        self.result = self.state.result
        self.ledger = Ledger(store, fortnox, guard=self._guard, persist=not dry_run)
        self.gather = Gatherer(cfg, store, limego, self.ledger, self.state)
        self.executor = Executor(
            store,
            fortnox,
            self.ledger,
            self.state,
            account_number=cfg.sync.account_number,
            replan=lambda key: self.replan(key),
        )
        self.guard = self.executor.guard = WriterGuard.for_pass(
            cfg, store, self.ledger, fortnox, self.state, installation, clock=clock,
            take_over=take_over, dry_run=dry_run,
        )  # fmt: skip
        self._looked = False  # a dry run's one look for another writer
        self.reconciler = Reconciler(
            store,
            fortnox,
            self.state,
            lambda key, resend: self.replan(key, resend=resend),
            timeout=cfg.http.timeout,
            clock=clock,
        )
        self._window: tuple[datetime, datetime] | None = None
        self._planned: set[str] = set()  # a dry run's companies already shown as linked
        self._quarantined_keys: set[str] | None = None
        self._exists: set[str] = set()  # quarantined keys this pass read from Lime Go

    @property
    def progress(self) -> Progress:
        """Where the pass reports records read and Fortnox writes (`limefort.commands.progress`'s
        `Progress` protocol); nothing by default."""
        return self.executor.progress

    @progress.setter
    def progress(self, value: Progress) -> None:
        self.executor.progress = value

    @property
    def stop_event(self) -> threading.Event:
        return self.state.stop_event

    def _guard(self, pages: Iterable[Any]) -> Iterator[Any]:
        return self.gather.guard(pages)

    # --- entry points ---------------------------------------------------------------------------

    def _guarded(self, work: Callable[[], None]) -> PassResult:
        """Run one entry point's work: an unreachable service or a stop request ends it
        between two records, with everything done so far committed."""
        try:
            try:
                work()
                self.guard.after_pass()
            finally:
                self.gather.close()
                self.executor.close()
        except AnotherWriter as exc:
            self.result.other_writer = str(exc)
            self.result.counts["other_writer"] = 1
            log.error("pass stopped: %s", exc)
        except PassAborted as exc:
            self.result.aborted = str(exc)
            log.error("pass stopped: %s", exc)
        except Stop:
            self.result.stopped = True
            log.warning("stop requested: the pass ended between two records; nothing is lost")
        note_standing(self.store, self.state)
        self._collect_stats()
        return self.result

    def run_pass(self, *, since: datetime | None = None, only: str | None = None) -> PassResult:
        now = self.clock()

        def work() -> None:
            self.reconcile()
            deals = only in (None, "deals") and self.cfg.sync.deal_target != "none"
            # The deals' first page is read, and its wins' contacts started, before the
            # companies are written: over a long round trip those reads then overlap the
            # customer writes instead of leaving Fortnox's window empty between the phases.
            head = self._deals_head(now, since) if deals else None
            if only in (None, "customers"):
                self._companies_phase(now, since)
            if head is not None:
                self._deals_phase(head)
                self._follow_companies()
            if only is None:
                self.release_deleted()
            # Answers lost during this pass: check now rather than leave them for the next.
            self.reconcile(only=set(self.state.sent))

        return self._guarded(work)

    def retry(self, keys: Iterable[str]) -> PassResult:
        """Re-attempt quarantined records now, whether or not Lime Go changed them."""

        def work() -> None:
            self.reconcile()
            for key in keys:
                self.state.check_stop()
                self.replan(key, force=True)
            if self.cfg.sync.deal_target != "none":
                self._follow_companies()

        return self._guarded(work)

    def backfill(
        self,
        candidates: Iterable[str],
        *,
        start: datetime,
        end: datetime,
        progress: Callable[[Deal], None] | None = None,
    ) -> PassResult:
        """Documents for the confirmed `candidates` (deal ids), read again from Lime Go one
        page at a time so that memory stays flat however many there are."""
        self._window = (start, end)
        wanted = set(candidates)

        def work() -> None:
            self.reconcile()
            if not wanted:
                return
            rules = self.gather.rules(start, (start, end))
            # Documents, not the progress's units, are the writes here: deals are.
            self.executor.writes_are_work = False
            pages = counted(self.gather.deal_pages(start), self.state, self.progress, seen=False)
            for (deals, related), ahead in batches(pages, rules, wanted):
                self.state.check_stop()
                snap = self.gather.deals_snapshot(deals, related, rules)
                if ahead is not None:
                    self.gather.warm(*ahead, rules)
                self._do(snap, plan.plan_deals, rules)
                for deal in deals:
                    wanted.discard(deal.id)
                    if progress:
                        progress(deal)

        return self._guarded(work)

    # --- phases ---------------------------------------------------------------------------------

    def _companies_phase(self, now: datetime, widen: datetime | None) -> None:
        cur = self.store.get_cursor("companies")
        since = cursors.read_since(cur, self.cfg.sync.lookback, widen)
        rules = self.gather.rules(now, deals=False)
        self.state.incomplete = False
        began = self.limego.last_date
        high: datetime | None = None
        for page in self.gather.company_pages(since, first=cur is None):
            self.state.count("companies_seen", len(page))
            high = cursors.high_water(high, (c.updated_at for c in page))
            self._seen_quarantined(c.key for c in page)
            self.progress.read(len(page))
            self._do(self.gather.companies_snapshot(page, rules), plan.plan_companies, rules)
        self._advance("companies", cur, self._source_mark(high, began))

    def _deals_head(self, now: datetime, widen: datetime | None) -> _DealsHead:
        """The deals phase up to its first batch: the cursor, the rules, the first page read
        and the Lime Go reads its wins need started in the background (`warm`)."""
        cur = self.store.get_cursor("deals")
        since = cursors.read_since(cur, self.cfg.sync.lookback, widen)
        try:
            self.gather.won()  # reads Lime Go's stages, and so learns Lime Go's clock
            rules = self.gather.rules(self._start(self.source_now(now)))
            began = self.limego.last_date
            # A first pass reads every deal once so that deals already won before
            # `sync.start` are recorded as such and never invoiced later when edited.
            pages = counted(self.gather.deal_pages(since), self.state, self.progress)
            it = batches(pages, rules)
            first = next(it, None)
            if first is not None and any(d.stage_id in rules.won for d in first[0][0]):
                self.gather.owners(), self.gather.field_defs()  # read once a pass, kept
                self.gather.warm(*first[0], rules, ledger=False)
        except Exception as exc:  # the deals phase raises it, after the companies as before
            return _DealsHead(cur, None, None, None, iter(()), exc)
        return _DealsHead(cur, rules, began, first, it)

    def _deals_phase(self, head: _DealsHead) -> None:
        if head.failed is not None:
            raise head.failed
        assert head.rules is not None
        cur, rules, began = head.cur, head.rules, head.began
        self.state.incomplete = False
        high: datetime | None = None
        wins: list[Deal] = []  # a first dry run's new wins (Lime Go has no won-at time)
        todo = itertools.chain([head.first] if head.first is not None else [], head.rest)
        for (deals, related), ahead in todo:
            high = cursors.high_water(high, (d.updated_at for d in deals))
            self._seen_quarantined(d.key for d in deals)
            snap = self.gather.deals_snapshot(
                deals, related, rules, planned=frozenset(self._planned)
            )
            if ahead is not None:
                self.gather.warm(*ahead, rules)
            actions = self._do(snap, plan.plan_deals, rules)
            if self.dry_run and cur is None:
                wins += [a.deal for a in actions if isinstance(a, plan.CreateDocument)]
        for line in plan.won_at_note(cur is None, self.cfg.sync.start == "now", wins):
            self.echo(line)
        self._advance("deals", cur, self._source_mark(high, began))

    # --- batches: the next one's Lime Go reads while this one is written ------------------------

    def _do(
        self,
        snap: plan.Snapshot,
        planner: Callable[[plan.Snapshot, plan.Rules], list[plan.Action]],
        rules: plan.Rules,
    ) -> list[plan.Action]:
        actions = planner(snap, rules)
        if not self.dry_run:
            self.executor.run(actions)
            return actions
        if not self._looked and any(plan.writes(a) for a in actions):
            self._looked = True
            self.guard.look()  # a dry run says whether the real pass would be stopped
        for a in actions:
            self.state.count(plan.count_name(a))
            if isinstance(a, plan.CreateCustomer | plan.AdoptCustomer):
                self._planned.add(a.company.id)
            for line in plan.describe(a):
                self.echo(line)
        return actions

    def _advance(self, name: str, cur: datetime | None, now: datetime | None) -> None:
        # A pending intent is neither confirmed in Fortnox nor quarantined (rule 1). If
        # reconciliation later finds Fortnox never got it, it drops the intent to send again;
        # should that fail (or the process die) the record must still be ahead of the cursor.
        pending = (
            self.store.pending_documents() if name == "deals" else self.store.pending_customers()
        )
        new = cursors.advance(cur, now, complete=not self.state.incomplete and not pending)
        if self.dry_run or new == cur or new is None:
            return
        with self.store.transaction():
            self.store.set_cursor(name, new)

    def _start(self, now: datetime) -> datetime:
        """`sync.start`, with "now" frozen at the start of the first pass that looked at deals,
        whether or not that pass found any: a deal won after it is a new win."""
        start = self.cfg.sync.start
        if start != "now":
            return resolve_start(start, now)
        stored = self.store.get_meta("start")
        if stored:
            return datetime.fromisoformat(stored)
        if not self.dry_run:
            with self.store.transaction():
                self.store.set_meta("start", now.isoformat())
        return now

    # --- Lime Go's clock (design rule 10) and records deleted there ----------------------------

    def source_now(self, local_now: datetime) -> datetime:
        """Now on Lime Go's clock (its latest `Date` header); this machine's clock only when
        Lime Go has not answered yet or sends no `Date`."""
        return self.limego.last_date or local_now

    def _source_mark(self, high: datetime | None, began: datetime | None) -> datetime | None:
        """Where a phase may move its cursor: `began` is Lime Go's `Date` before the phase read
        anything (None: this client had no answer before, so its first answer, in the phase)."""
        return cursors.source_mark(high, began if began is not None else self.limego.first_date)

    def _seen_quarantined(self, keys: Iterable[str]) -> None:
        """Quarantined records this pass read from Lime Go exist: no need to ask again."""
        if self._quarantined_keys is None:
            self._quarantined_keys = {q.key for q in self.store.all_quarantined()}
        if self._quarantined_keys:
            self._exists.update(k for k in keys if k in self._quarantined_keys)

    def release_deleted(self) -> None:
        """Quarantined records deleted in Lime Go leave quarantine, with a line saying so. Each
        is read by id (quarantine is short); those this pass read already are not asked."""
        for entry in self.store.all_quarantined():
            if entry.key in self._exists:
                continue
            self.state.check_stop()
            try:
                kind, rid = parse_key(entry.key)
            except ValueError:
                continue
            if self.gather.read_record(kind, rid) is None:
                self._gone(entry.key, f"the {kind} no longer exists in Lime Go")
                self.state.count("released")

    def _follow_companies(self) -> None:
        """Deals quarantined only because their company was not in Fortnox, whose company now
        is (fixed in Lime Go, or retried): send them, though the deal itself did not change and
        so is not among what this pass read."""
        for key in self.store.waiting_ready():
            self.state.check_stop()
            self.replan(key, force=True, follow=True)

    # --- one record again: retry, reconciliation's resend, a forgotten stale link ---------------

    def replan(
        self, key: str, *, force: bool = False, resend: bool = False, follow: bool = False
    ) -> None:
        try:
            kind, rid = parse_key(key)
        except ValueError as exc:
            self.state.problem(key, str(exc))
            return
        got = self.gather.read_record(kind, rid)
        if got is None:
            self._gone(key, f"the {kind} no longer exists in Lime Go")
            return
        record, company = got
        window = self._window
        if kind == "deal" and window is None:
            self.gather.won()  # Lime Go's stages, and its clock for a `start = "now"`
        now = self.source_now(self.clock())
        rules = self.gather.rules(
            window[0] if window else self._start(now), window, deals=kind == "deal"
        )
        resent = frozenset({key}) if resend else frozenset()
        if isinstance(record, Company):
            snap = self.gather.companies_snapshot(
                [record], rules, scoped=False, force=force, resend=resent
            )
            actions = plan.plan_companies(snap, rules)
        else:
            related = {company.id: company} if company is not None else {}
            snap = self.gather.deals_snapshot([record], related, rules, force=force, resend=resent)
            actions = plan.plan_deals(snap, rules)
            if follow and not any(
                isinstance(a, plan.CreateDocument | plan.Quarantine | plan.LinkDocument)
                for a in actions
            ):
                self.executor.run(actions)  # one won before sync.start is recorded as skipped
                self._gone(key, "the deal is no longer a new win in Lime Go")
                return
        if self.dry_run:
            for a in actions:
                for line in plan.describe(a):
                    self.echo(line)
            return
        self.executor.run(actions)

    def _gone(self, key: str, why: str) -> None:
        was = key in self.store.quarantined([key])
        if self.dry_run:
            if was:
                self.echo(f"  release         {key}: {why}")
            return
        if not was:
            log.warning("%s: %s; nothing to do", key, why, extra={"key": key})
            return
        with self.store.transaction():
            self.store.release(key)
        log.warning("%s: %s; released from quarantine", key, why, extra={"key": key})

    def reconcile(self, *, only: set[str] | None = None) -> None:
        if self.dry_run:
            for link in self.store.pending_customers():
                self.echo(
                    f"? pending customer  company:{link.company_id}: outcome unknown, would check Fortnox"
                )
            for intent in self.store.pending_documents():
                self.echo(
                    f"? pending {intent.kind:<8}  deal:{intent.deal_id}: outcome unknown, would check Fortnox"
                )
            return
        self.reconciler.run(only)

    def _collect_stats(self) -> None:
        for name, client in (("fortnox", self.fortnox), ("limego", self.limego)):
            stats = getattr(client, "stats", None) or {}
            self.result.counts[f"{name}_requests"] = int(stats.get("requests", 0))
            self.result.counts[f"{name}_rate_limited"] = int(stats.get("rate_limited", 0))


def note_standing(store: Store, state: PassState) -> None:
    """What every pass says, whatever it did: unacknowledged drift and duplicates (named,
    exit 1), and the records Fortnox holds with a value cut or left blank (counted: never
    "in line" while there are any, rule 15)."""
    note_drift(store, state)
    note_duplicates(store, state)
    state.result.counts["field_warnings"] = store.records_with_warnings("field:")


def note_drift(store: Store, state: PassState) -> None:
    """Every pass names each unacknowledged drift (rule 12), counts it for the metrics,
    and so exits 1 until a person acknowledges it (`limefort ack`) or the deal changes
    back."""
    entries = store.unacked_drift()
    state.result.counts["drift"] = len(entries)
    for e in entries:
        state.problem(
            e.key,
            f"drift: changed in Lime Go after {e.document} was made: "
            f"{plan.drift_text(e.changes)} (a person checks the document, then runs "
            f"`limefort ack {e.key}`)",
        )


def duplicates(store: Store) -> list[plan.Duplicate]:
    """Every duplicate the ledger's index shows for limefort's records (rule 14)."""
    return plan.duplicates(
        store.ledger_duplicates(), store.customer_duplicates(), store.duplicate_acks()
    )


def note_duplicates(store: Store, state: PassState) -> None:
    """Every pass names each duplicate Fortnox holds that nobody acknowledged (rule 14): it
    exits 1 and never says "in line" until the extra one is cancelled in Fortnox or a person
    runs `limefort ack KEY`."""
    found = [d for d in duplicates(store) if not d.acknowledged]
    state.result.counts["duplicates"] = len(found)
    named = {key for key, _ in state.result.problems}
    for d in found:
        if d.key not in named:
            state.problem(d.key, d.text)


@dataclass
class _DealsHead:
    """What `_deals_head` read before the companies were written, for `_deals_phase`."""

    cur: datetime | None
    rules: plan.Rules | None
    began: datetime | None
    first: tuple[DealBatch, DealBatch | None] | None
    rest: Iterator[tuple[DealBatch, DealBatch | None]]
    failed: Exception | None = None  # a read that failed: raised where the phase begins


def counted(
    pages: Iterable[DealBatch], state: PassState, progress: Progress, *, seen: bool = True
) -> Iterator[DealBatch]:
    """The pages, each counted as read (and as deals seen, unless a backfill's re-read)."""
    for deals, related in pages:
        if seen:
            state.count("deals_seen", len(deals))
        progress.read(len(deals))
        yield deals, related


def eta_seconds(remaining_requests: int, observed_rate: float, limit: int, window: float) -> float:
    """Fortnox's limit is the floor of any estimate: never promise more than limit/window."""
    ceiling = limit / window if limit else float("inf")
    rate = min(observed_rate, ceiling) if observed_rate > 0 else ceiling
    return remaining_requests / rate if rate and rate != float("inf") else 0.0


def batches(
    pages: Iterable[DealBatch], rules: plan.Rules, wanted: set[str] | None = None
) -> Iterator[tuple[DealBatch, DealBatch | None]]:
    """Each batch of deals with the batch after it (None for the last), so that the next
    batch's contacts and companies are read while this one is written. A page is cut after
    every `BATCH_WINS` deals in a won stage (a page with none stays whole); `wanted`: only
    these deal ids (backfill)."""

    def cut() -> Iterator[DealBatch]:
        for deals, related in pages:
            if wanted is not None:
                deals = [d for d in deals if d.id in wanted]
                if not deals:
                    continue
            batch: list[Deal] = []
            won = 0
            for d in deals:
                batch.append(d)
                won += d.stage_id in rules.won
                if won >= BATCH_WINS:
                    yield batch, related
                    batch, won = [], 0
            if batch:
                yield batch, related

    it = cut()
    current = next(it, None)
    while current is not None:
        ahead = next(it, None)
        yield current, ahead
        current = ahead
