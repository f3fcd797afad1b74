"""Execute: run the planner's actions in order against Fortnox and record what happened.

It decides nothing. A `CustomerOf` reference is resolved from the store (the action before it
linked the company); when that did not happen, the planner's `customer_not_ready` says what
the document becomes. What a failure means is the planner's `after_failure` table; this module
only carries the outcome out. The intent-then-POST protocol (DESIGN rule 3) is written once,
in `_intend`, for customers and documents alike: the intent is committed before the POST.

Over a long round trip a few new customers and documents are in flight at once
(`inflight.Flights`): each one's intent is committed here before its POST goes to the pool,
and outcomes are recorded here in plan order, so every store write stays on this thread. A
document whose customer is still in flight waits for it to land; any other write (an update,
an adoption) and anything that records state goes after everything in flight has landed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from limefort import mapping, plan
from limefort.core.errors import ServiceError
from limefort.core.keys import customer_ref
from limefort.core.models import Company
from limefort.core.services import Sink
from limefort.engine.inflight import MAX_IN_FLIGHT, Flights, width_for
from limefort.engine.ledger import Ledger
from limefort.engine.outcomes import Outcomes, Replan
from limefort.engine.passstate import NullProgress, PassState, Progress
from limefort.engine.writers import WriterGuard
from limefort.mapping import payload_hash, to_json, update_body
from limefort.state.store import Store

log = logging.getLogger("limefort.sync")


class Executor(Outcomes):
    """Runs a plan's actions in order, a few writes in flight; outcomes go to `Outcomes`."""

    def __init__(
        self,
        store: Store,
        fortnox: Sink,
        ledger: Ledger,
        state: PassState,
        *,
        account_number: str = "",
        replan: Replan | None = None,
    ) -> None:
        self.store = store
        self.fortnox = fortnox
        self.ledger = ledger
        self.state = state
        self.account_number = account_number
        # Re-read a record from Lime Go and plan it again (a stale link was forgotten).
        self.replan = replan
        # Set by the Syncer: where writes are reported, and whether each is a unit of the
        # progress's work (sync) or a side figure (backfill, whose units are deals).
        self.progress: Progress = NullProgress()
        self.writes_are_work = True
        self.in_flight = MAX_IN_FLIGHT  # the most documents in flight over a long round trip
        # Set by the Syncer: the look at who else writes to the tenant, and the stamp every
        # document carries (None: library use without one, nothing stamped).
        self.guard: WriterGuard | None = None
        self._pool: ThreadPoolExecutor | None = None

    def run(self, actions: list[plan.Action]) -> None:
        historical = [a for a in actions if isinstance(a, plan.SkipHistorical)]
        if historical:
            with self.store.transaction():
                self.store.documents_skipped(
                    (a.deal.id, a.kind, a.deal.name, a.deal.updated_at.isoformat())
                    for a in historical
                )
            self.state.count("skipped_historical", len(historical))
        writes = sum(1 for a in actions if plan.writes(a))
        if writes and self.writes_are_work:
            self.progress.total(writes)
        with Flights(self._write_pool, self._width, self._land) as flights:
            for a in actions:
                if isinstance(a, plan.SkipHistorical):
                    continue
                self.state.check_stop()
                if isinstance(a, plan.CreateDocument):
                    if self._waits_for_flight(a, flights):
                        flights.drain()  # its customer is being created: that lands first
                    self._before_write(a, flights)
                    self._start_document(a, flights)
                    continue
                if isinstance(a, plan.CreateCustomer):
                    # New customers go in flight like documents: nothing before them needs
                    # their numbers (a document for one waits for it above).
                    self._before_write(a, flights)
                    self._start_customer(a, flights)
                    continue
                # Any other write lands after those in flight, and so does anything at all
                # while customers are in flight (it may read or change a company's link).
                if plan.writes(a) or self._customers_in(flights):
                    flights.drain()
                if plan.writes(a):
                    self._before_write(a, flights)
                self._attempt(a, lambda a=a: self._execute(a))  # type: ignore[misc]
                self._wrote(a)

    def _before_write(self, a: plan.Action, flights: Flights[plan.Action]) -> None:
        """The writer guard's turn (rule 14): a look at Fortnox, when due, sees every write
        before it landed."""
        if self.guard is not None:
            self.guard.before(a, flights.drain)

    def _attempt(self, a: plan.Action, do: Callable[[], None]) -> None:
        """Do it; a failure is what the planner's `after_failure` table says it is."""
        try:
            do()
        except ServiceError as exc:
            outcome = plan.after_failure(
                a, exc, streak=self.state.streak, account_number=self.account_number
            )
            self._carry_out(a, outcome)
        else:
            self.state.streak = 0

    # --- one action ---------------------------------------------------------------------------

    def _execute(self, a: plan.Action) -> None:
        if isinstance(a, plan.CreateCustomer | plan.AdoptCustomer | plan.UpdateCustomer):
            self._warn(a.company.key, a.warnings)
        match a:
            case plan.CreateCustomer():
                self._create_customer(a)
            case plan.AdoptCustomer():
                self._adopt_customer(a)
            case plan.ShareCustomer():
                self._share_customer(a)
            case plan.UpdateCustomer():
                self.fortnox.update_customer(a.customer_number, update_body(a.changes))
                self._linked(a.company, a.customer_number, a.payload)
                self._done(
                    a, f"updated Fortnox customer {a.customer_number} ({', '.join(a.changes)})"
                )
            case plan.CreateDocument():
                self._create_document(a)
            case plan.LinkDocument():
                self._link_document(a)
            case plan.Quarantine():
                with self.store.transaction():
                    self.store.quarantine(
                        a.key,
                        name=a.name,
                        reason=a.reason,
                        hint=a.hint,
                        source_hash=a.source_hash,
                        waits_for=a.waits_for,
                    )
                self._note_quarantine(a.key, a.reason, a.hint)
            case plan.Release():
                with self.store.transaction():
                    self.store.release(a.key)
                self.state.count("released")
            case plan.Defer():
                self.state.incomplete = True
                self.state.count("deferred")
                self.state.problem(a.key, a.why)
            case plan.RecordDrift():
                self._record_drift(a)
            case plan.ClearDrift():
                with self.store.transaction():
                    self.store.clear_drift(a.key)
                self._done(a, f"drift cleared: {a.why}")
            case plan.UpdateDocument():
                self._update_document(a)

    def _warn(self, key: str, warnings: tuple[str, ...], *, keep: bool = True) -> None:
        for w in warnings:
            # What was cut or left out to fit Fortnox: the record goes, but a person should
            # know that Fortnox holds something other than what Lime Go says.
            log.warning("%s: %s", key, w, extra={"key": key})
        if keep:
            self._keep_notes(key, warnings)

    def _keep_notes(self, key: str, notes: tuple[str, ...]) -> None:
        """The record's FieldNotes on it in the state file (rule 15), replacing those of its
        last write: `status` shows them until the record is written again."""
        with self.store.transaction():
            self.store.replace_field_warnings(key, mapping.note_rows(notes))

    def _done(self, a: plan.Action, what: str) -> None:
        key = plan.key_of(a)
        self.state.count(plan.count_name(a))
        if plan.writes(a):
            self.progress.advance(0, written=1)
        log.info("%s: %s", key, what, extra={"key": key})

    def _note_quarantine(self, key: str, reason: str, hint: str) -> None:
        self.state.count("quarantined")
        self.state.problem(key, f"quarantined: {reason} ({hint})")
        log.warning("%s quarantined: %s (%s)", key, reason, hint, extra={"key": key})

    def _resolve(self, ref: plan.CustomerRef) -> str | None:
        if isinstance(ref, str):
            return ref
        link = self.store.link(ref.company_id)
        return link.customer_number if link is not None and link.done else None

    # --- the intent-then-POST protocol, once ---------------------------------------------------

    def _intend(self, key: str, record_intent: Callable[[], None]) -> None:
        """Commit the intent before the POST is sent (here, or on the write pool for one in
        flight). A lost answer then leaves it pending, reconciled by its key and never re-sent
        blind; so does anything else that is not an answer (a bug, Ctrl-C in library use)."""
        self.state.sent.add(key)
        with self.store.transaction():
            record_intent()

    def _create_customer(self, a: plan.CreateCustomer) -> None:
        self._intend(a.company.key, lambda: self._customer_intent(a))
        self._customer_created(a, self.fortnox.create_customer(a.payload))

    def _customer_intent(self, a: plan.CreateCustomer) -> None:
        company, payload = a.company, a.payload
        self.store.customer_intent(
            company.id,
            orgnr=payload.get("OrganisationNumber"),
            name=payload.get("Name") or "",
            payload=to_json(payload),
            hash=payload_hash(payload),
        )

    def _customer_created(self, a: plan.CreateCustomer, created: dict[str, Any]) -> None:
        number = str(created["CustomerNumber"])
        self._linked(a.company, number, a.payload)
        self._done(a, f"created Fortnox customer {number}")

    def _adopt_customer(self, a: plan.AdoptCustomer) -> None:
        number = self._resolve(a.customer)
        if number is None:
            self._execute(plan.Defer(a.company.key, "waiting for the customer it shares"))
            return
        self.fortnox.update_customer(number, a.payload)
        self._linked(a.company, number, a.payload)
        if a.notice:
            self._record_warning(a.company.key, "inactive", a.notice)
        how = "its deal's document is for it" if a.by == "document" else f"same {a.by}"
        self._done(a, f"linked to existing Fortnox customer {number} ({how})")

    def _linked(self, company: Company, number: str, payload: dict[str, Any]) -> None:
        with self.store.transaction():
            self.store.customer_done(
                company.id,
                customer_number=number,
                orgnr=payload.get("OrganisationNumber"),
                name=payload.get("Name") or "",
                payload=to_json(payload),
                hash=payload_hash(payload),
                ext_ref=payload.get("ExternalReference") or customer_ref(company.id),
            )
            self.store.release(company.key)
            self.store.clear_warning(company.key, "shared")

    def _create_document(self, a: plan.CreateDocument) -> None:
        payload = self._document_intent(a)
        if payload is not None:
            self._document_created(a, self.fortnox.create_document(a.kind, payload))

    def _document_intent(self, a: plan.CreateDocument) -> dict[str, Any] | None:
        """Resolve the customer and commit the document's intent: the payload to POST, or
        None when the customer is not ready (the planner's `customer_not_ready` was done)."""
        deal, company = a.deal, a.company
        number = self._resolve(a.customer)
        if number is None:
            q = self.store.quarantined([company.key]).get(company.key)
            self._execute(plan.customer_not_ready(deal, company, self.store.link(company.id), q))
            return None
        self._warn(deal.key, a.warnings, keep=False)  # kept once the document exists
        payload = {"CustomerNumber": number, **a.payload}
        if self.guard is not None:
            payload["ExternalInvoiceReference2"] = self.guard.stamp()

        def record_intent() -> None:
            self.store.document_intent(
                deal.id,
                kind=a.kind,
                idem_key=payload["ExternalInvoiceReference1"],
                company_id=company.id,
                customer_number=number,
                name=deal.name,
                value=str(deal.value) if deal.value is not None else None,
                won_at=deal.updated_at.isoformat(),
            )
            # What the document is made from, for drift (rule 12).
            self.store.document_baseline(deal.id, currency=plan.deal_currency(deal))

        self._intend(deal.key, record_intent)
        return payload

    def _document_created(self, a: plan.CreateDocument, doc: dict[str, Any]) -> None:
        with self.store.transaction():
            self.store.document_done(a.deal.id, document_number=str(doc["DocumentNumber"]))
            self.store.ledger_save(a.kind, [doc])
            self.store.release(a.deal.key)
        self._done(a, f"created {a.kind} {doc['DocumentNumber']}")
        notes = tuple(n for n in a.lost if isinstance(n, mapping.FieldNote))
        self._keep_notes(a.deal.key, (*a.warnings, *notes))
        for n in notes:
            log.warning("%s: %s", a.deal.key, n, extra={"key": a.deal.key})
        rest = [n for n in a.lost if not isinstance(n, mapping.FieldNote)]
        if rest:
            what = f"{a.kind} {doc['DocumentNumber']}: " + "; ".join(rest)
            self._record_warning(a.deal.key, "lost_text", what)

    # --- documents in flight --------------------------------------------------------------------

    def _start_document(self, a: plan.CreateDocument, flights: Flights[plan.Action]) -> None:
        flights.make_room()  # no more intents pending than POSTs in flight
        payload = self._document_intent(a)
        if payload is None:
            self._wrote(a)
            return
        self._fresh_token()
        kind = a.kind
        flights.start(a, lambda: self.fortnox.create_document(kind, payload))

    def _start_customer(self, a: plan.CreateCustomer, flights: Flights[plan.Action]) -> None:
        flights.make_room()  # no more intents pending than POSTs in flight
        self._warn(a.company.key, a.warnings)
        self._intend(a.company.key, lambda: self._customer_intent(a))
        self._fresh_token()
        payload = a.payload
        flights.start(a, lambda: self.fortnox.create_customer(payload))

    def _waits_for_flight(self, a: plan.CreateDocument, flights: Flights[plan.Action]) -> bool:
        """Whether the document's customer is one being created in flight."""
        ref = a.customer
        return not isinstance(ref, str) and ref.company_id in self._customers_in(flights)

    @staticmethod
    def _customers_in(flights: Flights[plan.Action]) -> set[str]:
        """The companies whose customers are being created in flight."""
        return {x.company.id for x in flights.items() if isinstance(x, plan.CreateCustomer)}

    def _land(self, a: plan.Action, result: Callable[[], Any]) -> None:
        """Record a write's outcome (on this thread, in plan order)."""
        if isinstance(a, plan.CreateCustomer):
            self._attempt(a, lambda: self._customer_created(a, result()))
        else:
            assert isinstance(a, plan.CreateDocument)
            self._attempt(a, lambda: self._document_created(a, result()))
        self._wrote(a)

    def _fresh_token(self) -> None:
        if self._width() > 1:
            # A token that would expire soon is renewed here, on this thread (the token cache
            # is the store), not by the first POST on the pool that finds it stale.
            self.fortnox.fresh_token()

    def _width(self) -> int:
        return width_for(self.fortnox.round_trip, most=self.in_flight)

    def _write_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix="limefort-write")
        return self._pool

    def _wrote(self, a: plan.Action) -> None:
        """One write of the plan is behind us, whatever came of it (the progress's unit)."""
        if plan.writes(a) and self.writes_are_work:
            self.progress.advance(1)

    def close(self) -> None:
        """End the write pool (nothing is in flight between two `run`s)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _link_document(self, a: plan.LinkDocument) -> None:
        deal, doc = a.deal, a.document
        with self.store.transaction():
            self.store.document_linked(
                deal.id,
                kind=doc.kind,
                idem_key=doc.ext_ref or "",
                document_number=doc.document_number,
                customer_number=doc.customer_number,
                company_id=deal.company_id,
                name=deal.name,
                value=str(deal.value) if deal.value is not None else None,
                won_at=deal.updated_at.isoformat(),
            )
            self.store.document_baseline(deal.id, currency=plan.deal_currency(deal))
            self.store.release(deal.key)
        what = f"Fortnox already holds {doc.kind} {doc.document_number} for it: linked, not created"
        if doc.cancelled:
            what += " (it is cancelled in Fortnox; limefort never re-creates it)"
        self._done(a, what)
        if a.others:
            text = (
                f"Fortnox holds {1 + len(a.others)} documents for this deal: "
                f"{', '.join([doc.document_number, *a.others])}"
            )
            self.state.result.warnings.append((deal.key, text))
            log.warning("%s: %s", deal.key, text, extra={"key": deal.key})
