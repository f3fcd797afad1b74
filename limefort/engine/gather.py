"""Gather: read what the planner needs for one page, in batches, and hand it over as a Snapshot.

Reads Lime Go (pages of companies and deals, the companies and contacts a page's wins need,
reference data once per pass), the store (links, intents, quarantine) and Fortnox's own
indexes (`ledger.py`). It decides nothing: which records need which lookups is asked of the
planner's pure helpers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from limefort import plan
from limefort.config import Config
from limefort.core.errors import TransientError
from limefort.core.keys import company_key, document_ref
from limefort.core.models import (
    Company,
    CustomFieldDef,
    Deal,
    DealPage,
    LedgerDocument,
    Person,
)
from limefort.core.services import Source
from limefort.engine.ledger import Ledger
from limefort.engine.passstate import PassAborted, PassState
from limefort.engine.prefetch import both_ends, prefetch
from limefort.mapping import build_mappings
from limefort.state.store import QuarantineEntry, Store

T = TypeVar("T")

# Lime Go reads a page's wins need (contacts, companies not included), in flight at once: the
# round trip, not Lime Go, sets the pace of reading them one after another.
LOOKUP_WORKERS = 4
# Reads started ahead that no snapshot took (the writes before changed what was needed) are
# dropped past this many, so a long pass keeps no trail of them.
AHEAD_CAP = 200


class Gatherer:
    def __init__(
        self, cfg: Config, store: Store, limego: Source, ledger: Ledger, state: PassState
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.limego = limego
        self.ledger = ledger
        self.state = state
        self.customer_map, self.document_map = build_mappings(
            cfg.mapping.customer, cfg.mapping.document
        )
        self._won: frozenset[str] | None = None
        self._lost: frozenset[str] | None = None
        self._pool: ThreadPoolExecutor | None = None
        # Lookups started ahead (`warm`), by ("company" | "contact", id), until a snapshot
        # takes them.
        self._ahead: dict[tuple[str, str], Future[Any]] = {}

    # --- reads that stop the pass cleanly -------------------------------------------------------

    def guard(self, pages: Iterable[T]) -> Iterator[T]:
        """Pages from a client; a read that retries could not cure stops the pass cleanly."""
        it = iter(pages)
        while True:
            self.state.check_stop()
            try:
                page = next(it)
            except StopIteration:
                return
            except TransientError as exc:
                raise PassAborted(f"{exc.service} is not answering: {exc}") from exc
            yield page

    # --- rules of the pass ----------------------------------------------------------------------

    def won(self) -> frozenset[str]:
        if self._won is None:
            lg = self.cfg.limego
            self._won = plan.won_stage_ids(
                self.limego.stages(), lg.won_stage_categories, lg.won_stage_names
            )
        return self._won

    def rules(
        self,
        start: datetime,
        window: tuple[datetime, datetime] | None = None,
        *,
        deals: bool = True,
    ) -> plan.Rules:
        """`deals=False`: for planning companies only (the won stages are not read)."""
        s = self.cfg.sync
        kind = s.document_kind
        return plan.Rules(
            customer_map=self.customer_map,
            document_map=self.document_map,
            statuses=frozenset(self.cfg.limego.customer_statuses),
            kind=kind,
            won=self.won() if kind is not None and deals else frozenset(),
            start=start,
            window=window,
            require_orgnr=s.require_orgnr,
            require_positive_value=s.require_positive_value,
            article_number=s.article_number,
            account_number=s.account_number,
            lost=self.lost() if kind is not None and deals else frozenset(),
            on_deal_change=s.on_deal_change,
            countries=self.cfg.mapping.countries,
            vat_types=self.cfg.mapping.vat_type,
        )

    # --- Lime Go pages --------------------------------------------------------------------------

    def company_pages(self, since: datetime | None, *, first: bool) -> Iterator[list[Company]]:
        if first:
            # First pass: every current customer, whenever it last changed.
            for status in self.cfg.limego.customer_statuses:
                yield from self.guard(prefetch(self.limego.iter_companies(status=status)))
            return
        yield from self.guard(
            both_ends(
                self.limego.iter_companies(updated_since=since),
                self.limego.iter_companies(updated_since=since, descending=True),
                lambda page: [c.id for c in page],
                lambda page, keep: [c for c in page if keep(c.id)],
            )
        )

    def deal_pages(self, since: datetime | None) -> Iterator[tuple[list[Deal], dict[str, Company]]]:
        pages = both_ends(
            self.limego.iter_deals(updated_since=since),
            self.limego.iter_deals(updated_since=since, descending=True),
            lambda page: [d.id for d in page.deals],
            lambda page, keep: DealPage([d for d in page.deals if keep(d.id)], page.companies),
        )
        for page in self.guard(pages):
            yield page.deals, dict(page.companies)

    def read_record(self, key_kind: str, rid: str) -> tuple[Company | Deal, Company | None] | None:
        """One company, or one deal and its company, as Lime Go has it now (None: deleted)."""
        if key_kind == "company":
            company = self.limego.get_company(rid)
            return None if company is None else (company, company)
        got = self.limego.get_deal(rid)
        return None if got is None else got

    # --- snapshots ------------------------------------------------------------------------------

    def companies_snapshot(
        self,
        companies: Sequence[Company],
        rules: plan.Rules,
        *,
        scoped: bool = True,
        force: bool = False,
        resend: frozenset[str] = frozenset(),
    ) -> plan.Snapshot:
        links = self.store.links(c.id for c in companies)
        live = {k: v for k, v in links.items() if not _resent(v, resend)}
        todo = [
            c
            for c in companies
            if not scoped or plan.company_in_scope(c, rules.statuses, links.get(c.id))
        ]
        quarantine = self.store.quarantined(c.key for c in companies)
        by_orgnr, by_ref = self._customer_indexes(todo, live, rules, quarantine, force)
        claimed, inactive = self.customer_facts(by_orgnr)
        return plan.Snapshot(
            companies=companies,
            scoped=scoped,
            links=links,
            quarantine=quarantine,
            by_orgnr=by_orgnr,
            by_ref=by_ref,
            force=force,
            resend=resend,
            claimed=claimed,
            inactive=inactive,
        )

    def deals_snapshot(
        self,
        deals: Sequence[Deal],
        related: dict[str, Company],
        rules: plan.Rules,
        *,
        force: bool = False,
        resend: frozenset[str] = frozenset(),
        planned: frozenset[str] = frozenset(),
    ) -> plan.Snapshot:
        first, wins = self._triaged(deals, related, rules, force=force, resend=resend)
        if not wins:
            return self._with_drift(first, rules)
        intents, quarantine = first.intents, first.quarantine
        ledger = self._ledger_for(wins, rules)
        need_companies, need_contacts = plan.deal_lookups(wins, first, ledger)
        # All of them at once, the contacts read while Fortnox's indexes are asked below.
        companies_ahead = self._start("company", need_companies)
        contacts_ahead = self._start("contact", need_contacts)
        for got in self._results("company", companies_ahead).values():
            if got is not None:
                related[got.id] = got
        companies = [related[d.company_id] for d in wins if d.company_id in related]
        links = self.store.links(c.id for c in companies)
        live = {k: v for k, v in links.items() if not _resent(v, resend)}
        unlinked = [c for c in companies if c.id not in planned]
        quarantine = {**quarantine, **self.store.quarantined(c.key for c in companies)}
        by_orgnr, by_ref = self._customer_indexes(unlinked, live, rules, quarantine, force)
        claimed, inactive = self.customer_facts(by_orgnr)
        snap = plan.Snapshot(
            deals=deals,
            related=related,
            links=links,
            intents=intents,
            quarantine=quarantine,
            by_orgnr=by_orgnr,
            by_ref=by_ref,
            ledger=ledger,
            contacts={
                k: v for k, v in self._results("contact", contacts_ahead).items() if v is not None
            },
            owners=self.owners(),
            field_defs=self.field_defs(),
            force=force,
            resend=resend,
            planned=planned,
            claimed=claimed,
            inactive=inactive,
        )
        return self._with_drift(snap, rules)

    def _triaged(
        self,
        deals: Sequence[Deal],
        related: dict[str, Company],
        rules: plan.Rules,
        *,
        force: bool,
        resend: frozenset[str],
    ) -> tuple[plan.Snapshot, list[Deal]]:
        """The deals with what the store holds for them, and which of them are wins that
        need a document: what every later read of a batch depends on."""
        first = plan.Snapshot(
            deals=deals,
            related=related,
            intents=self.store.intents(d.id for d in deals),
            quarantine=self.store.quarantined(
                [d.key for d in deals] + [c.key for c in related.values()]
            ),
            force=force,
            resend=resend,
        )
        return first, plan.triage(first, rules).wins

    def _ledger_for(
        self, wins: Sequence[Deal], rules: plan.Rules
    ) -> dict[str, list[LedgerDocument]]:
        """Fortnox's documents for these wins' keys (its index, refreshed once per pass)."""
        if rules.kind is None:
            return {}
        return self.ledger.documents_by_ref(rules.kind, [document_ref(d.id) for d in wins])

    # --- drift (rule 12) -----------------------------------------------------------------------

    def lost(self) -> frozenset[str]:
        """Stages whose category is "lost": a deal leaving "won" for one was lost, for any
        other stage it was reopened."""
        if self._lost is None:
            self._lost = plan.won_stage_ids(self.limego.stages(), ["lost"], [])
        return self._lost

    def _with_drift(self, snap: plan.Snapshot, rules: plan.Rules) -> plan.Snapshot:
        """What drift needs of the deals whose document exists: their drift entries and, for
        `update-unbooked`, the documents' rows in Fortnox's index and the new companies'
        links (no Lime Go reads)."""
        done = [
            d for d in snap.deals if (i := snap.intents.get(d.id)) is not None and i.state == "done"
        ]
        if not done:
            return snap
        drift = self.store.drift_entries(d.key for d in done)
        if rules.on_deal_change != "update-unbooked":
            return replace(snap, drift=drift)
        changed = [
            d for d in done if plan.drift_of(d, snap.intents[d.id], won=rules.won, lost=rules.lost)
        ]
        ledger = dict(snap.ledger)
        for kind in ("invoice", "order"):
            refs = [document_ref(d.id) for d in changed if snap.intents[d.id].kind == kind]
            if refs:
                ledger.update(self.ledger.documents_by_ref(kind, refs))
        links = {**self.store.links(d.company_id for d in changed if d.company_id), **snap.links}
        return replace(snap, drift=drift, ledger=ledger, links=links)

    def _customer_indexes(
        self,
        companies: Sequence[Company],
        links: dict[str, Any],
        rules: plan.Rules,
        quarantine: dict[str, QuarantineEntry],
        force: bool,
    ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        orgnrs, refs = plan.customer_lookups(companies, links, rules, quarantine, force)
        by_orgnr = self.ledger.customers_by_orgnr(sorted(orgnrs)) if orgnrs else {}
        by_ref = self.ledger.customers_by_ref(dict(sorted(refs.items())))
        return by_orgnr, by_ref

    def customer_facts(
        self, by_orgnr: dict[str, list[str]]
    ) -> tuple[dict[str, tuple[str, str]], frozenset[str]]:
        """Of the Fortnox customers matched by organisation number: which a linked company
        owns already, and which Fortnox's list shows as inactive."""
        numbers = sorted({n for found in by_orgnr.values() for n in found})
        if not numbers:
            return {}, frozenset()
        return self.store.owners_of(numbers), frozenset(self.ledger.inactive(numbers))

    def _contacts(self, ids: Iterable[str]) -> dict[str, Person]:
        out: dict[str, Person] = {}
        for cid in sorted(ids):
            person = self.limego.contact(cid)
            if person is not None:
                out[cid] = person
        return out

    def owners(self) -> dict[str, Person]:
        return self.limego.owners()

    def field_defs(self) -> dict[str, CustomFieldDef]:
        return self.limego.deal_field_defs()

    def backfill_candidates(self, start: datetime, end: datetime) -> list[str]:
        """The ids of deals won in [start, end] that Fortnox has no document for yet (writes
        nothing), for `backfill` to count and confirm before it writes. Ids, not deals: a
        backfill may span years of deals, and `backfill` reads them again page by page."""
        rules = self.rules(start, (start, end))
        out: list[str] = []
        for deals, related in self.deal_pages(start):
            snap = plan.Snapshot(
                deals=deals, related=related, intents=self.store.intents(d.id for d in deals)
            )
            out.extend(d.id for d in plan.triage(snap, rules).wins)
        return out

    # --- reading ahead: the Lime Go reads of the next batch, while this one is written ------------

    def warm(
        self,
        deals: Sequence[Deal],
        related: dict[str, Company],
        rules: plan.Rules,
        *,
        force: bool = False,
        resend: frozenset[str] = frozenset(),
        ledger: bool = True,
    ) -> None:
        """Start reading, in the background, what `deals_snapshot` will need for these deals:
        the first contact of each win and the companies Lime Go did not include. Which deals
        are wins is asked of the store now; should the writes before them change that, the
        snapshot reads what is still missing and leaves the rest unused. `ledger=False`: not
        asking Fortnox's index which wins it already holds (the reads before the pass writes
        anything must not open Fortnox's window early), at the cost of a contact perhaps read
        for a deal whose document is found there."""
        if not any(d.stage_id in rules.won for d in deals):
            return
        first, wins = self._triaged(deals, related, rules, force=force, resend=resend)
        if wins:
            held = self._ledger_for(wins, rules) if ledger else {}
            need_companies, need_contacts = plan.deal_lookups(wins, first, held)
            self._start("company", need_companies)
            self._start("contact", need_contacts)

    def _reader(self, kind: str) -> Callable[[str], Any]:
        return self.limego.get_company if kind == "company" else self.limego.contact

    def _start(self, kind: str, ids: Iterable[str]) -> dict[str, Future[Any]]:
        """Futures of these reads, started now unless `warm` already started them."""
        out: dict[str, Future[Any]] = {}
        for rid in sorted(ids):
            fut = self._ahead.get((kind, rid))
            if fut is None:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        LOOKUP_WORKERS, thread_name_prefix="limefort-lookup"
                    )
                fut = self._pool.submit(self._reader(kind), rid)
                self._ahead[(kind, rid)] = fut
            out[rid] = fut
        return out

    def _results(self, kind: str, futures: dict[str, Future[Any]]) -> dict[str, Any]:
        """Wait for them all (an error reaches the pass as it would have read by read), then
        forget them, and anything read ahead that no snapshot asked for."""
        try:
            return {rid: fut.result() for rid, fut in futures.items()}
        finally:
            for rid in futures:
                self._ahead.pop((kind, rid), None)
            if len(self._ahead) > AHEAD_CAP:
                for k in [k for k, f in self._ahead.items() if f.done()]:
                    del self._ahead[k]

    def close(self) -> None:
        """End the lookup threads (after the reads in flight)."""
        self._ahead.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _resent(link: Any, resend: frozenset[str]) -> bool:
    return bool(link.state == "pending" and company_key(link.company_id) in resend)
