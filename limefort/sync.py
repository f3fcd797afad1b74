"""One pass of the sync: read what changed in Lime Go, plan, execute against Fortnox, record.

This is the only module that does both I/O and decisions, and it keeps the decisions in
`plan` and `mapping`. The rules it enforces are DESIGN.md's:

- cursors move only after every record up to the frozen `now` is in Fortnox or quarantined;
- a document's intent is committed before its POST and completed after; a POST whose answer
  was lost stays `pending` and is reconciled by searching Fortnox, never re-sent blind;
- a bad record is quarantined with its reason and the pass goes on.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from limefort import cursor as cursors
from limefort.config import Config, resolve_start
from limefort.errors import (
    EX_OK,
    EX_PARTIAL,
    ApiError,
    NotFound,
    ServiceError,
    TransientError,
    UnknownOutcome,
)
from limefort.fortnox import FortnoxClient, explain
from limefort.limego import LimeGoClient
from limefort.mapping import (
    DealContext,
    build_mappings,
    from_json,
    map_company,
    map_deal,
    payload_hash,
    to_json,
    update_body,
)
from limefort.models import Company, Deal, DocumentKind
from limefort.normalise import quote
from limefort.plan import (
    Action,
    AdoptCustomer,
    CreateCustomer,
    CreateDocument,
    Quarantine,
    Release,
    SkipHistorical,
    UpdateCustomer,
    company_in_scope,
    describe,
    plan_company,
    plan_document,
    source_hash,
    triage_deals,
    won_stage_ids,
)
from limefort.store import Store

log = logging.getLogger("limefort.sync")

# Fortnox refusals caused by Fortnox's settings or limefort's configuration, not by the record:
# account not found, EasyVat needs an account, no licence, no scope, unknown field name.
ACCOUNT_NOT_FOUND = 2000423
SETTING_CODES = frozenset({ACCOUNT_NOT_FOUND, 2004167, 2001101, 2000663, 2001399})

# After this many Fortnox failures in a row that retries could not cure, the service is down:
# stop the pass instead of hammering it record by record (cursors stay where they were).
MAX_CONSECUTIVE_TRANSIENT = 3


class PassAborted(Exception):
    """Fortnox or Lime Go stayed unreachable: the pass stops, nothing is lost."""


@dataclass
class PassResult:
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (key, what went wrong)
    aborted: str | None = None
    stopped: bool = False  # a stop was requested (SIGTERM) and honoured between records

    @property
    def exit_code(self) -> int:
        if self.aborted or self.problems or self.stopped:
            return EX_PARTIAL
        return EX_OK


class Syncer:
    def __init__(
        self,
        cfg: Config,
        store: Store,
        limego: LimeGoClient,
        fortnox: FortnoxClient,
        *,
        dry_run: bool = False,
        echo: Callable[[str], None] = print,
        stop_event: threading.Event | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.limego = limego
        self.fortnox = fortnox
        self.dry_run = dry_run
        self.echo = echo
        self.stop_event = stop_event or threading.Event()
        self.clock = clock
        self.customer_map, self.document_map = build_mappings(
            cfg.mapping.customer, cfg.mapping.document
        )
        self.result = PassResult()
        self._incomplete = False  # something neither in Fortnox nor quarantined: hold cursors
        self._sent: set[str] = set()  # keys whose intent this pass recorded (a POST was tried)
        self._transient_streak = 0
        self._index_fresh = False
        # A backfill's [from, to]: an intent it finds Fortnox never got is sent again under the
        # backfill's rule, not marked skipped by sync.start's (which would end "done", a deal short).
        self._window: tuple[datetime, datetime] | None = None
        self._dry_index: dict[str, list[str]] = {}
        self._dry_customers: set[str] = set()  # companies a dry run would create

    # ------------------------------------------------------------------------------------------
    # Entry points
    # ------------------------------------------------------------------------------------------

    def _guarded(self, work: Callable[[], None]) -> PassResult:
        """Run one entry point's work: an unreachable service or a stop request ends it
        between two records, with everything done so far committed."""
        try:
            work()
        except PassAborted as exc:
            self.result.aborted = str(exc)
            log.error("pass stopped: %s", exc)
        except _Stop:
            self.result.stopped = True
            log.warning("stop requested: the pass ended between two records; nothing is lost")
        self._collect_stats()
        return self.result

    def run_pass(self, *, since: datetime | None = None, only: str | None = None) -> PassResult:
        now = self.clock()

        def work() -> None:
            self.reconcile()
            if only in (None, "customers"):
                self._companies_phase(now, since)
            if only in (None, "deals") and self.cfg.sync.deal_target != "none":
                self._deals_phase(now, since)
                self._follow_companies()
            # Answers lost during this pass: check now rather than leave them for the next.
            self.reconcile(only=set(self._sent))

        return self._guarded(work)

    def retry(self, keys: Iterable[str]) -> PassResult:
        """Re-attempt quarantined records now, whether or not Lime Go changed them."""

        def work() -> None:
            self.reconcile()
            for key in keys:
                self._check_stop()
                kind, _, rid = key.partition(":")
                if kind == "company":
                    company = self.limego.get_company(rid)
                    if company is None:
                        self._gone(key, "the company no longer exists in Lime Go")
                        continue
                    self._run_actions(self._plan_companies([company], force=True, scoped=False))
                elif kind == "deal":
                    got = self.limego.get_deal(rid)
                    if got is None:
                        self._gone(key, "the deal no longer exists in Lime Go")
                        continue
                    deal, company = got
                    comps = {company.id: company} if company else {}
                    self._run_actions(self._plan_deals([deal], comps, force=True))
                else:
                    self.result.problems.append((key, "not a company:<id> or deal:<id> key"))
            if self.cfg.sync.deal_target != "none":
                self._follow_companies()

        return self._guarded(work)

    def backfill_candidates(self, start: datetime, end: datetime) -> list[str]:
        """The ids of deals won in [start, end] that Fortnox has no document for yet (writes
        nothing), for `backfill` to count and confirm before it writes. Ids, not deals: a
        backfill may span years of deals, and `backfill` reads them again page by page."""
        won = self._won_stages()
        out: list[str] = []
        for page in self.limego.iter_deals(updated_since=start):
            docs = self.store.documents_for(d.id for d in page.deals)
            tri = triage_deals(
                page.deals,
                documents=docs,
                won=won,
                start=start,
                quarantined={},
                companies=page.companies,
                window=(start, end),
            )
            out.extend(d.id for d in tri.wins)
        return out

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
            pages = self.limego.iter_deals(updated_since=start) if wanted else iter(())
            for page in self._guard_reads(pages):
                for deal in page.deals:
                    if deal.id not in wanted:
                        continue
                    wanted.discard(deal.id)
                    self._check_stop()
                    self._run_actions(self._plan_deals([deal], page.companies, window=(start, end)))
                    if progress:
                        progress(deal)

        return self._guarded(work)

    # ------------------------------------------------------------------------------------------
    # Phases
    # ------------------------------------------------------------------------------------------

    def _companies_phase(self, now: datetime, widen: datetime | None) -> None:
        cur = self.store.get_cursor("companies")
        since = cursors.read_since(cur, self.cfg.sync.lookback, widen)
        if cur is None:
            # First pass: every current customer, whenever it last changed.
            pages: Iterator[list[Company]] = (
                page
                for status in self.cfg.limego.customer_statuses
                for page in self.limego.iter_companies(status=status)
            )
        else:
            pages = self.limego.iter_companies(updated_since=since)
        self._incomplete = False
        for page in self._guard_reads(pages):
            self.result.counts["companies_seen"] += len(page)
            self._run_actions(self._plan_companies(page, scoped=True))
        self._advance("companies", cur, now)

    def _deals_phase(self, now: datetime, widen: datetime | None) -> None:
        cur = self.store.get_cursor("deals")
        since = cursors.read_since(cur, self.cfg.sync.lookback, widen)
        self._incomplete = False
        self._start(now)
        # A first pass reads every deal once so that deals already won before `sync.start`
        # are recorded as such and never invoiced later when someone edits them.
        for page in self._guard_reads(self.limego.iter_deals(updated_since=since)):
            self.result.counts["deals_seen"] += len(page.deals)
            self._run_actions(self._plan_deals(page.deals, page.companies))
        self._advance("deals", cur, now)

    def _advance(self, name: str, cur: datetime | None, now: datetime) -> None:
        # A pending intent is neither confirmed in Fortnox nor quarantined (rule 1). If
        # reconciliation later finds Fortnox never got it, it drops the intent to send again;
        # should that fail (or the process die) the record must still be ahead of the cursor.
        pending = (
            self.store.pending_documents() if name == "deals" else self.store.pending_customers()
        )
        new = cursors.advance(cur, now, complete=not self._incomplete and not pending)
        if self.dry_run or new == cur or new is None:
            return
        with self.store.transaction():
            self.store.set_cursor(name, new)

    def _start(self, now: datetime | None = None) -> datetime:
        """`sync.start`, with "now" frozen at the start of the first pass that looked at deals,
        whether or not that pass found any: a deal won after it is a new win."""
        start = self.cfg.sync.start
        if start != "now":
            return resolve_start(start, self.clock())
        stored = self.store.get_meta("start")
        if stored:
            return datetime.fromisoformat(stored)
        frozen = now or self.clock()
        if not self.dry_run:
            with self.store.transaction():
                self.store.set_meta("start", frozen.isoformat())
        return frozen

    _won_cache: set[str] | None = None

    def _won_stages(self) -> set[str]:
        if self._won_cache is None:
            lg = self.cfg.limego
            self._won_cache = won_stage_ids(
                self.limego.stages(), lg.won_stage_categories, lg.won_stage_names
            )
        return self._won_cache

    # ------------------------------------------------------------------------------------------
    # Planning glue: gather what the pure planner needs, in batches per page
    # ------------------------------------------------------------------------------------------

    def _plan_companies(
        self, companies: list[Company], *, scoped: bool, force: bool = False, resend: bool = False
    ) -> list[Action]:
        states = self.store.customers_for(c.id for c in companies)
        if resend:  # reconciliation found that Fortnox never got these: plan them afresh
            states = {k: v for k, v in states.items() if v["state"] != "pending"}
        quarantined = self.store.quarantined(c.key for c in companies)
        todo = [
            c
            for c in companies
            if not scoped
            or company_in_scope(c, self.cfg.limego.customer_statuses, states.get(c.id))
        ]
        mapped = {c.id: self._map_company(c) for c in todo}
        new_orgnrs = [
            r.payload.get("OrganisationNumber")
            for c in todo
            if states.get(c.id) is None and hasattr(r := mapped[c.id], "payload")
        ]
        index = self._index_lookup([o for o in new_orgnrs if o]) if new_orgnrs else {}
        actions: list[Action] = []
        for c in todo:
            r = mapped[c.id]
            orgnr = r.payload.get("OrganisationNumber") if hasattr(r, "payload") else None
            act = plan_company(
                c,
                r,
                state=states.get(c.id),
                quarantined=quarantined.get(c.key),
                index_matches=index.get(orgnr, []) if orgnr else [],
                force=force,
            )
            if act is not None:
                actions.append(act)
            else:
                self.result.counts["unchanged"] += 1
        return actions

    def _map_company(self, c: Company) -> Any:
        return map_company(c, self.customer_map, require_orgnr=self.cfg.sync.require_orgnr)

    def _plan_deals(
        self,
        deals: list[Deal],
        companies: dict[str, Company],
        *,
        force: bool = False,
        window: tuple[datetime, datetime] | None = None,
        resend: bool = False,
    ) -> list[Action]:
        kind: DocumentKind = "order" if self.cfg.sync.deal_target == "order" else "invoice"
        won = self._won_stages()
        docs = self.store.documents_for(d.id for d in deals)
        if resend:  # reconciliation found that Fortnox never got these: plan them afresh
            docs = {k: v for k, v in docs.items() if v["state"] != "pending"}
        quarantined = self.store.quarantined(d.key for d in deals)
        tri = triage_deals(
            deals,
            documents=docs,
            won=won,
            start=self._start() if window is None else window[0],
            quarantined=quarantined,
            companies=companies,
            force=force,
            window=window,
        )
        actions: list[Action] = [SkipHistorical(d, kind) for d in tri.historical]
        # A quarantined deal that is no longer won needs no document: it leaves quarantine.
        actions += [Release(d.key) for d in deals if d.stage_id not in won and d.key in quarantined]
        if not tri.wins:
            return actions
        # The companies these deals are for: included by Lime Go, else read one by one.
        for d in tri.wins:
            if d.company_id and d.company_id not in companies:
                got = self.limego.get_company(d.company_id)
                if got is not None:
                    companies[got.id] = got
        states = self.store.customers_for(d.company_id for d in tri.wins if d.company_id)
        needing = {
            c.id: c
            for d in tri.wins
            if d.company_id
            and (c := companies.get(d.company_id)) is not None
            and states.get(c.id) is None
            and c.id not in self._dry_customers
        }
        if needing:
            actions += self._plan_companies(list(needing.values()), scoped=False, force=force)
        owners = self.limego.owners()
        field_defs = self.limego.deal_field_defs()
        for d in tri.wins:
            company = companies.get(d.company_id or "")
            contact = self.limego.contact(d.contact_ids[0]) if d.contact_ids else None
            owner = owners.get(d.owner_ids[0]) if d.owner_ids else None
            ctx = DealContext(
                deal=d, company=company, contact=contact, owner=owner, field_defs=field_defs
            )
            result = map_deal(
                ctx,
                kind,
                self.document_map,
                article_number=self.cfg.sync.article_number,
                account_number=self.cfg.sync.account_number,
                require_positive_value=self.cfg.sync.require_positive_value,
            )
            actions.append(plan_document(d, result, kind=kind, company=company))
        return actions

    # --- Fortnox customer index (rule 4) ----------------------------------------------------

    def _index_lookup(self, orgnrs: list[str]) -> dict[str, list[str]]:
        """Fortnox customers by organisation number. The index is refreshed once per pass,
        and only in a pass that may create a customer: fully from pages of 500 the first
        time, then only what changed since (`lastmodified`)."""
        if not self._index_fresh:
            self._refresh_index()
            self._index_fresh = True
        out: dict[str, list[str]] = {}
        for o in orgnrs:
            found = self.store.index_by_orgnr(o) + self._dry_index.get(o, [])
            if found:
                out[o] = list(dict.fromkeys(found))
        return out

    def _refresh_index(self) -> None:
        started = self.clock()
        last = self.store.get_meta("fortnox_index_at")
        # Fortnox's lastmodified has minute resolution in Swedish local time: overlap a little.
        since = datetime.fromisoformat(last) - timedelta(minutes=5) if last else None
        n = 0
        for page in self._guard_reads(self.fortnox.iter_customers(lastmodified=since, limit=500)):
            n += len(page)
            if self.dry_run:
                for item in page:
                    if item.get("OrganisationNumber"):
                        self._dry_index.setdefault(item["OrganisationNumber"], []).append(
                            str(item["CustomerNumber"])
                        )
                continue
            with self.store.transaction():
                self.store.index_save(page)
        if not self.dry_run:
            with self.store.transaction():
                self.store.set_meta("fortnox_index_at", started.isoformat())
        log.info(
            "Fortnox customer index: %d customers read (%s)", n, "full" if not last else "changes"
        )

    # ------------------------------------------------------------------------------------------
    # Executing actions
    # ------------------------------------------------------------------------------------------

    def _run_actions(self, actions: list[Action]) -> None:
        if self.dry_run:
            for a in actions:
                self.result.counts[_count_name(a)] += 1
                if isinstance(a, CreateCustomer | AdoptCustomer):
                    self._dry_customers.add(a.company.id)
                for line in describe(a):
                    self.echo(line)
            return
        historical = [a for a in actions if isinstance(a, SkipHistorical)]
        if historical:
            with self.store.transaction():
                self.store.documents_skipped(
                    (a.deal.id, a.kind, a.deal.name, a.deal.updated_at.isoformat())
                    for a in historical
                )
            self.result.counts["skipped_historical"] += len(historical)
        for a in actions:
            if isinstance(a, SkipHistorical):
                continue
            self._check_stop()
            try:
                self._execute(a)
                self._transient_streak = 0
            except TransientError as exc:
                self._transient_streak += 1
                key = _key_of(a)
                self._incomplete = True
                self.result.counts["failed"] += 1
                self.result.problems.append((key, f"not synced, will be retried: {exc}"))
                log.warning(
                    "%s: not synced, will be retried next pass: %s", key, exc, extra={"key": key}
                )
                if self._transient_streak >= MAX_CONSECUTIVE_TRANSIENT:
                    raise PassAborted(f"Fortnox is not answering: {exc}") from exc

    def _execute(self, a: Action) -> None:
        if isinstance(a, CreateCustomer | AdoptCustomer | UpdateCustomer | CreateDocument):
            key = _key_of(a)
            for w in a.warnings:
                # What was cut or left out to fit Fortnox: the record goes, but a person should
                # know that Fortnox holds something other than what Lime Go says.
                log.warning("%s: %s", key, w, extra={"key": key})
        match a:
            case CreateCustomer():
                self._create_customer(a)
            case AdoptCustomer():
                self._adopt_customer(a.company, a.customer_number, a.payload)
            case UpdateCustomer():
                self._update_customer(a)
            case CreateDocument():
                self._create_document(a)
            case Quarantine():
                with self.store.transaction():
                    self.store.quarantine(
                        a.key, name=a.name, reason=a.reason, hint=a.hint, source_hash=a.source_hash
                    )
                self._note_quarantine(a.key, a.reason, a.hint)
            case Release():
                with self.store.transaction():
                    self.store.release(a.key)
                self.result.counts["released"] += 1

    def _note_quarantine(self, key: str, reason: str, hint: str) -> None:
        self.result.counts["quarantined"] += 1
        self.result.problems.append((key, f"quarantined: {reason} ({hint})"))
        log.warning("%s quarantined: %s (%s)", key, reason, hint, extra={"key": key})

    def _quarantine_api_error(self, key: str, name: str | None, exc: ApiError, shash: str) -> None:
        reason = explain(exc)
        hint = self._api_error_hint(key, exc)
        with self.store.transaction():
            self.store.quarantine(key, name=name, reason=reason, hint=hint, source_hash=shash)
        self._note_quarantine(key, reason, hint)

    def _api_error_hint(self, key: str, exc: ApiError) -> str:
        """What to do about a Fortnox refusal. Some codes are about Fortnox's settings or the
        configuration, not the record: editing it in Lime Go would not help."""
        retry = f"then run `limefort retry {key}`"
        code = _int_code(exc.code)
        if code == ACCOUNT_NOT_FOUND:
            if self.cfg.sync.account_number.strip():
                return (
                    f"check that account {self.cfg.sync.account_number.strip()} ([sync] "
                    f"account_number) exists in Fortnox's chart of accounts, {retry}"
                )
            return (
                "the row has no sales account and the Fortnox company has no default one: set "
                f"[sync] account_number or article_number, or a default sales account in "
                f"Fortnox, {retry}"
            )
        if code in SETTING_CODES:
            return f"fix the Fortnox setting or limefort configuration the reason names, {retry}"
        return f"fix the record in Lime Go (the next pass retries it) or run `limefort retry {key}`"

    def _done_customer(self, company: Company, number: str, payload: dict[str, Any]) -> None:
        with self.store.transaction():
            self.store.customer_done(
                company.id,
                customer_number=str(number),
                orgnr=payload.get("OrganisationNumber"),
                name=payload.get("Name") or "",
                payload=to_json(payload),
                hash=payload_hash(payload),
            )
            self.store.release(company.key)

    def _create_customer(self, a: CreateCustomer) -> None:
        company, payload = a.company, a.payload
        orgnr = payload.get("OrganisationNumber")
        # Another company of this pass may have created the same organisation number already.
        if orgnr and (same := self.store.index_by_orgnr(orgnr)):
            self._adopt_customer(company, same[0], payload)
            return
        self._sent.add(company.key)
        with self.store.transaction():
            self.store.customer_intent(
                company.id,
                orgnr=orgnr,
                name=payload.get("Name") or "",
                payload=to_json(payload),
                hash=payload_hash(payload),
            )
        try:
            created = self.fortnox.create_customer(payload)
        except UnknownOutcome as exc:
            self._lost_answer(company.key, "customers", company.id, exc)
            return
        except ApiError as exc:
            with self.store.transaction():
                self.store.drop_customer_intent(company.id)
            self._quarantine_api_error(company.key, company.name, exc, source_hash(company))
            return
        except TransientError:
            # Certainly not applied (429/503/refused until retries ran out). The intent stays,
            # so the next pass checks Fortnox and sends it again: dropping it here would lose
            # a record that is already behind the cursor (a resend from reconciliation).
            self._mark_outcome("customers", company.id, "not_sent")
            raise
        self._done_customer(company, created["CustomerNumber"], payload)
        self.result.counts["customers_created"] += 1
        log.info(
            "%s: created Fortnox customer %s",
            company.key,
            created["CustomerNumber"],
            extra={"key": company.key},
        )

    def _adopt_customer(self, company: Company, number: str, payload: dict[str, Any]) -> None:
        try:
            self.fortnox.update_customer(number, payload)
        except NotFound:
            # Deleted in Fortnox since it was indexed: forget it there and create anew.
            with self.store.transaction():
                self.store.db.execute(
                    "DELETE FROM fortnox_customers WHERE customer_number = ?", [number]
                )
            self._create_customer(CreateCustomer(company, payload))
            return
        except ApiError as exc:
            self._quarantine_api_error(company.key, company.name, exc, source_hash(company))
            return
        self._done_customer(company, number, payload)
        self.result.counts["customers_adopted"] += 1
        log.info(
            "%s: linked to existing Fortnox customer %s",
            company.key,
            number,
            extra={"key": company.key},
        )

    def _update_customer(self, a: UpdateCustomer) -> None:
        try:
            self.fortnox.update_customer(a.customer_number, update_body(a.changes))
        except NotFound:
            with self.store.transaction():
                self.store.db.execute("DELETE FROM customers WHERE company_id = ?", [a.company.id])
            reason = f"Fortnox customer {a.customer_number} no longer exists"
            hint = "run `limefort retry " + a.company.key + "` to create it again"
            with self.store.transaction():
                self.store.quarantine(
                    a.company.key, name=a.company.name, reason=reason, hint=hint, source_hash=None
                )
            self._note_quarantine(a.company.key, reason, hint)
            return
        except ApiError as exc:
            self._quarantine_api_error(a.company.key, a.company.name, exc, source_hash(a.company))
            return
        self._done_customer(a.company, a.customer_number, a.payload)
        self.result.counts["customers_updated"] += 1
        log.info(
            "%s: updated Fortnox customer %s (%s)",
            a.company.key,
            a.customer_number,
            ", ".join(a.changes),
            extra={"key": a.company.key},
        )

    def _create_document(self, a: CreateDocument) -> None:
        deal, company = a.deal, a.company
        cust = self.store.customer(company.id)
        if cust is None or cust["state"] != "done":
            q = self.store.quarantined([company.key]).get(company.key)
            if cust is not None or q is None:
                # Its customer's POST is pending reconciliation, or failed in a way that is
                # retried (Fortnox never got it): the deal is not at fault, it waits.
                self._incomplete = True
                self.result.counts["deferred"] += 1
                wait = "confirmed" if cust is not None else "created on the next pass"
                self.result.problems.append(
                    (deal.key, f"waiting for its customer ({company.key}) to be {wait}")
                )
                return
            why = q["reason"]
            named = f"{quote(company.name)} ({company.key})" if company.name else company.key
            reason = f"its company {named} is not in Fortnox: {why}"
            hint = "fix the company in Lime Go; the deal follows on the next pass"
            with self.store.transaction():
                self.store.quarantine(
                    deal.key,
                    name=deal.name,
                    reason=reason,
                    hint=hint,
                    source_hash=source_hash(deal, company),
                    waits_for=company.key,
                )
            self._note_quarantine(deal.key, reason, hint)
            return
        payload = {"CustomerNumber": cust["customer_number"], **a.payload}
        self._sent.add(deal.key)
        with self.store.transaction():
            self.store.document_intent(
                deal.id,
                kind=a.kind,
                idem_key=payload["ExternalInvoiceReference1"],
                company_id=company.id,
                customer_number=cust["customer_number"],
                name=deal.name,
                value=str(deal.value) if deal.value is not None else None,
                won_at=deal.updated_at.isoformat(),
            )
        try:
            doc = self.fortnox.create_document(a.kind, payload)
        except UnknownOutcome as exc:
            self._lost_answer(deal.key, "documents", deal.id, exc)
            return
        except ApiError as exc:
            with self.store.transaction():
                self.store.drop_document_intent(deal.id)
            self._quarantine_api_error(deal.key, deal.name, exc, source_hash(deal, company))
            return
        except TransientError:
            self._mark_outcome("documents", deal.id, "not_sent")
            raise
        # Anything else (a bug, Ctrl-C in library use) leaves the intent as it is: pending, in
        # flight, reconciled by a search once 2 x http.timeout has passed. Never a blind POST.
        with self.store.transaction():
            self.store.document_done(deal.id, document_number=str(doc["DocumentNumber"]))
            self.store.release(deal.key)
        self.result.counts[f"{a.kind}s_created"] += 1
        log.info(
            "%s: created %s %s", deal.key, a.kind, doc["DocumentNumber"], extra={"key": deal.key}
        )

    def _lost_answer(self, key: str, table: str, rid: str, exc: UnknownOutcome) -> None:
        """The POST may or may not have been applied: keep the intent, mark how it ended.
        Only an answer that Fortnox ended (5xx, reset) is `lost`; after a timeout it may still
        be applying the POST, so `_settled` waits before believing a search that finds none."""
        if exc.in_flight:
            log.warning(
                "%s: no answer from Fortnox in time (%s); will check Fortnox before anything else",
                key,
                exc,
                extra={"key": key},
            )
            return
        self._mark_outcome(table, rid, "lost")
        log.warning(
            "%s: Fortnox's answer was lost (%s); will check Fortnox before anything else",
            key,
            exc,
            extra={"key": key},
        )

    def _mark_outcome(self, table: str, rid: str, outcome: str) -> None:
        pk = "company_id" if table == "customers" else "deal_id"
        with self.store.transaction():
            self.store.db.execute(
                f"UPDATE {table} SET outcome = ? WHERE {pk} = ? AND state = 'pending'",
                [outcome, rid],
            )

    def _follow_companies(self) -> None:
        """Deals quarantined only because their company was not in Fortnox, whose company now
        is (fixed in Lime Go, or retried): send them, though the deal itself did not change and
        so is not among what this pass read."""
        for key in self.store.waiting_ready():
            self._check_stop()
            got = self.limego.get_deal(key.partition(":")[2])
            if got is None:
                self._gone(key, "the deal no longer exists in Lime Go")
                continue
            deal, company = got
            actions = self._plan_deals([deal], {company.id: company} if company else {}, force=True)
            if not any(isinstance(a, CreateDocument | Quarantine) for a in actions):
                self._run_actions(actions)  # one won before sync.start is recorded as skipped
                self._gone(key, "the deal is no longer a new win in Lime Go")
                continue
            self._run_actions(actions)

    def _gone(self, key: str, why: str) -> None:
        with self.store.transaction():
            self.store.release(key)
        log.warning("%s: %s; released from quarantine", key, why, extra={"key": key})

    # ------------------------------------------------------------------------------------------
    # Reconciliation of unknown outcomes (rule 3)
    # ------------------------------------------------------------------------------------------

    def _settled(self, row: dict[str, Any], at_field: str) -> bool:
        """Could a POST behind this intent still be running at Fortnox? A lost answer (reset,
        5xx) means Fortnox finished; otherwise (timeout, or our process died mid-request) wait
        until twice the request timeout has passed before believing a search that finds none."""
        if row.get("outcome") in ("lost", "not_sent"):
            return True
        at = datetime.fromisoformat(row[at_field])
        return (self.clock() - at).total_seconds() >= 2 * self.cfg.http.timeout

    def reconcile(self, *, only: set[str] | None = None) -> None:
        """Settle pending intents; `only` limits it to these keys (those sent this pass)."""
        if only is not None and not only:
            return
        if self.dry_run:
            for row in self.store.pending_customers():
                self.echo(
                    f"? pending customer  company:{row['company_id']}: outcome unknown, would check Fortnox"
                )
            for row in self.store.pending_documents():
                self.echo(
                    f"? pending {row['kind']:<8}  deal:{row['deal_id']}: outcome unknown, would check Fortnox"
                )
            return
        for row in self.store.pending_customers():
            if only is None or f"company:{row['company_id']}" in only:
                self._reconcile_customer(row)
        for row in self.store.pending_documents():
            if only is None or f"deal:{row['deal_id']}" in only:
                self._reconcile_document(row)

    def _reconcile_document(self, row: dict[str, Any]) -> None:
        key = f"deal:{row['deal_id']}"
        try:
            found = self.fortnox.find_documents(row["kind"], row["idem_key"])
        except (ServiceError, UnknownOutcome) as exc:
            self._still_pending(key, f"could not check Fortnox: {exc}")
            return
        if found:
            numbers = sorted((str(d["DocumentNumber"]) for d in found), key=_numkey)
            with self.store.transaction():
                self.store.document_done(row["deal_id"], document_number=numbers[0])
                self.store.release(key)
            self.result.counts["reconciled"] += 1
            if len(numbers) > 1:
                self.result.problems.append(
                    (key, f"Fortnox holds {len(numbers)} {row['kind']}s for this deal: {numbers}")
                )
            log.info(
                "%s: the lost POST had been applied: adopted %s %s",
                key,
                row["kind"],
                numbers[0],
                extra={"key": key},
            )
            return
        if not self._settled(row, "since"):
            self._still_pending(key, "no document found yet; the POST may still be in flight")
            return
        log.info(
            "%s: Fortnox has no %s for it; sending it again", key, row["kind"], extra={"key": key}
        )

        def plan(got: tuple[Deal, Company | None]) -> list[Action]:
            deal, company = got
            comps = {company.id: company} if company else {}
            return self._plan_deals([deal], comps, window=self._window, resend=True)

        self._resend(
            key,
            lambda: self.limego.get_deal(row["deal_id"]),
            plan,
            lambda: self.store.drop_document_intent(row["deal_id"]),
        )

    def _reconcile_customer(self, row: dict[str, Any]) -> None:
        key = f"company:{row['company_id']}"
        ext = f"limego:company:{row['company_id']}"
        try:
            if row["orgnr"]:
                hits = [
                    c
                    for c in self.fortnox.find_customers(organisationnumber=row["orgnr"])
                    if c.get("OrganisationNumber") == row["orgnr"]
                ]
            else:
                hits = []
                for c in self.fortnox.find_customers(name=row["name"]):
                    if c.get("Name") != row["name"]:
                        continue
                    full = self.fortnox.get_customer(str(c["CustomerNumber"]))
                    if full and full.get("ExternalReference") == ext:
                        hits.append(c)
        except (ServiceError, UnknownOutcome) as exc:
            self._still_pending(key, f"could not check Fortnox: {exc}")
            return
        if hits:
            number = sorted((str(c["CustomerNumber"]) for c in hits), key=_numkey)[0]
            payload = from_json(row["payload"])
            company = Company(row["company_id"], {"name": row["name"]}, self.clock())
            self._done_customer(company, number, payload)
            self.result.counts["reconciled"] += 1
            log.info(
                "%s: the lost POST had been applied: adopted customer %s",
                key,
                number,
                extra={"key": key},
            )
            return
        if not self._settled(row, "intent_at"):
            self._still_pending(key, "no customer found yet; the POST may still be in flight")
            return
        self._resend(
            key,
            lambda: self.limego.get_company(row["company_id"]),
            lambda company: self._plan_companies([company], scoped=False, resend=True),
            lambda: self.store.drop_customer_intent(row["company_id"]),
        )

    def _resend(
        self,
        key: str,
        fetch: Callable[[], Any],
        plan: Callable[[Any], list[Action]],
        drop_intent: Callable[[], None],
    ) -> None:
        """Fortnox certainly has none of this record: read it again from Lime Go and plan it
        under its still-recorded intent, which is dropped only if nothing is sent for it (gone,
        no longer won, quarantined). Dropping it first would lose the record if the pass died
        or failed in between: it may be older than the cursor's window, never read again."""
        try:
            record = fetch()
        except ServiceError as exc:
            self._still_pending(key, f"Fortnox has none; could not re-read it from Lime Go: {exc}")
            return
        self._sent.discard(key)
        if record is not None:
            self._run_actions(plan(record))
        if key not in self._sent:
            with self.store.transaction():
                drop_intent()

    def _still_pending(self, key: str, why: str) -> None:
        self.result.counts["pending"] += 1
        self.result.problems.append((key, f"pending: {why}"))
        log.warning("%s pending: %s", key, why, extra={"key": key})

    # ------------------------------------------------------------------------------------------

    def _guard_reads(self, pages: Iterable[Any]) -> Iterator[Any]:
        """Pages from a client; a read that retries could not cure stops the pass cleanly."""
        it = iter(pages)
        while True:
            self._check_stop()
            try:
                page = next(it)
            except StopIteration:
                return
            except TransientError as exc:
                raise PassAborted(f"{exc.service} is not answering: {exc}") from exc
            yield page

    def _check_stop(self) -> None:
        if self.stop_event.is_set():
            raise _Stop

    def _collect_stats(self) -> None:
        for name, client in (("fortnox", self.fortnox), ("limego", self.limego)):
            stats = getattr(client, "stats", None) or {}
            self.result.counts[f"{name}_requests"] = int(stats.get("requests", 0))
            self.result.counts[f"{name}_rate_limited"] = int(stats.get("rate_limited", 0))


class _Stop(Exception):
    pass


def _count_name(a: Action) -> str:
    match a:
        case CreateCustomer():
            return "customers_created"
        case AdoptCustomer():
            return "customers_adopted"
        case UpdateCustomer():
            return "customers_updated"
        case CreateDocument(kind=k):
            return f"{k}s_created"
        case SkipHistorical():
            return "skipped_historical"
        case Quarantine():
            return "quarantined"
        case Release():
            return "released"
    return "other"


def _key_of(a: Action) -> str:
    match a:
        case CreateCustomer(company=c) | AdoptCustomer(company=c) | UpdateCustomer(company=c):
            return c.key
        case CreateDocument(deal=d) | SkipHistorical(deal=d):
            return d.key
        case Quarantine(key=k) | Release(key=k):
            return k
    return "?"


def _int_code(code: object) -> int | None:
    try:
        return int(str(code))
    except ValueError:
        return None


def _numkey(n: str) -> tuple[int, str]:
    return (int(n), n) if n.isdigit() else (1 << 62, n)


def eta_seconds(remaining_requests: int, observed_rate: float, limit: int, window: float) -> float:
    """Fortnox's limit is the floor of any estimate: never promise more than limit/window."""
    ceiling = limit / window if limit else float("inf")
    rate = min(observed_rate, ceiling) if observed_rate > 0 else ceiling
    return remaining_requests / rate if rate and rate != float("inf") else 0.0
