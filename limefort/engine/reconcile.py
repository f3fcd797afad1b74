"""Reconcile: settle intents whose outcome is unknown (DESIGN rule 3).

A pending intent means a POST may or may not have reached Fortnox. Fortnox is searched for the
record's own key (the document's ExternalInvoiceReference1; the customer's organisation number,
or its ExternalReference when it has none), compared exactly: a match is adopted. When Fortnox
certainly has none, the record is read again from Lime Go and planned afresh under its
still-recorded intent (one path with retry and a forgotten stale link: `replan`); the intent is
dropped only if nothing was sent for it. Never a blind second POST.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from limefort import plan
from limefort.core.errors import ServiceError, UnknownOutcome
from limefort.core.keys import company_key, customer_ref, deal_key, number_order
from limefort.core.models import DocumentKind
from limefort.core.services import Sink
from limefort.engine.passstate import PassState
from limefort.mapping import from_json, payload_hash, to_json
from limefort.mapping.normalise import orgnr_key
from limefort.state.store import CustomerLink, DocumentIntent, Store

log = logging.getLogger("limefort.sync")

# (key, resend): plan the record again; `resend` says Fortnox certainly lacks its pending POST.
Replan = Callable[[str, bool], None]


class Reconciler:
    def __init__(
        self,
        store: Store,
        fortnox: Sink,
        state: PassState,
        replan: Replan,
        *,
        timeout: float,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.fortnox = fortnox
        self.state = state
        self.replan = replan
        self.timeout = timeout
        self.clock = clock

    def run(self, only: set[str] | None = None) -> None:
        """Settle pending intents; `only` limits it to these keys (those sent this pass)."""
        if only is not None and not only:
            return
        for link in self.store.pending_customers():
            if only is None or company_key(link.company_id) in only:
                self._customer(link)
        for intent in self.store.pending_documents():
            if only is None or deal_key(intent.deal_id) in only:
                self._document(intent)

    def _document(self, row: DocumentIntent) -> None:
        key = deal_key(row.deal_id)
        kind: DocumentKind = "order" if row.kind == "order" else "invoice"
        try:
            found = self.fortnox.find_documents(kind, row.idem_key or "")
        except (ServiceError, UnknownOutcome) as exc:
            self._still_pending(key, f"could not check Fortnox: {exc}")
            return
        if found:
            numbers = sorted((str(d["DocumentNumber"]) for d in found), key=number_order)
            with self.store.transaction():
                self.store.document_done(row.deal_id, document_number=numbers[0])
                self.store.ledger_save(kind, found)
                self.store.release(key)
            self.state.count("reconciled")
            if len(numbers) > 1:
                self.state.problem(
                    key, f"Fortnox holds {len(numbers)} {kind}s for this deal: {numbers}"
                )
            log.info(
                "%s: the lost POST had been applied: adopted %s %s",
                key,
                kind,
                numbers[0],
                extra={"key": key},
            )
            return
        if not plan.settled(row.outcome, row.since, self.clock(), self.timeout):
            self._still_pending(key, "no document found yet; the POST may still be in flight")
            return
        log.info("%s: Fortnox has no %s for it; sending it again", key, kind, extra={"key": key})
        self._resend(key, lambda: self.store.drop_document_intent(row.deal_id))

    def _customer(self, row: CustomerLink) -> None:
        key = company_key(row.company_id)
        ext = customer_ref(row.company_id)
        try:
            if row.orgnr:
                hits = [
                    str(c["CustomerNumber"])
                    for c in self.fortnox.find_customers(organisationnumber=row.orgnr)
                    if orgnr_key(c.get("OrganisationNumber")) == orgnr_key(row.orgnr)
                ]
            else:
                hits = []
                for c in self.fortnox.find_customers(name=row.name):
                    if c.get("Name") != row.name:
                        continue
                    full = self.fortnox.get_customer(str(c["CustomerNumber"]))
                    if full and full.get("ExternalReference") == ext:
                        hits.append(str(c["CustomerNumber"]))
        except (ServiceError, UnknownOutcome) as exc:
            self._still_pending(key, f"could not check Fortnox: {exc}")
            return
        if hits:
            number = sorted(hits, key=number_order)[0]
            payload = from_json(row.payload) if row.payload else {}
            with self.store.transaction():
                self.store.customer_done(
                    row.company_id,
                    customer_number=number,
                    orgnr=row.orgnr,
                    name=row.name,
                    payload=to_json(payload),
                    hash=payload_hash(payload),
                    ext_ref=ext,
                )
                self.store.release(key)
            self.state.count("reconciled")
            log.info(
                "%s: the lost POST had been applied: adopted customer %s",
                key,
                number,
                extra={"key": key},
            )
            return
        if not plan.settled(row.outcome, row.intent_at, self.clock(), self.timeout):
            self._still_pending(key, "no customer found yet; the POST may still be in flight")
            return
        self._resend(key, lambda: self.store.drop_customer_intent(row.company_id))

    def _resend(self, key: str, drop_intent: Callable[[], None]) -> None:
        """Fortnox certainly has none of this record: plan it again under its still-recorded
        intent, which is dropped only if nothing is sent for it (gone, no longer won,
        quarantined). Dropping it first would lose the record if the pass died or failed in
        between: it may be older than the cursor's window, never read again."""
        self.state.sent.discard(key)
        try:
            self.replan(key, True)
        except ServiceError as exc:
            self._still_pending(key, f"Fortnox has none; could not re-read it from Lime Go: {exc}")
            return
        if key not in self.state.sent:
            with self.store.transaction():
                drop_intent()

    def _still_pending(self, key: str, why: str) -> None:
        self.state.count("pending")
        self.state.problem(key, f"pending: {why}")
        log.warning("%s pending: %s", key, why, extra={"key": key})
