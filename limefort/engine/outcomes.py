"""What comes of an action, carried out: the failure table's verdicts, drift, shared links and
warnings kept on records. The base of `execute.Executor`, which runs the actions."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from limefort import plan
from limefort.core.models import Company
from limefort.core.services import Sink
from limefort.engine.ledger import Ledger
from limefort.engine.passstate import PassAborted, PassState
from limefort.mapping import payload_hash, to_json
from limefort.state.store import Store

log = logging.getLogger("limefort.sync")

Replan = Callable[[str], None]


class Outcomes:
    """The executor's second half: once an action's outcome is known, carry it out. A failure
    becomes what the planner's `after_failure` table says (quarantine, a kept intent, a stale
    link forgotten, drift recorded instead); drift, shared links and warnings on records are
    kept in the store. The running half (`Executor`) supplies the four hooks below."""

    store: Store
    fortnox: Sink
    ledger: Ledger
    state: PassState
    replan: Replan | None

    def _execute(self, a: plan.Action) -> None:
        raise NotImplementedError

    def _done(self, a: plan.Action, what: str) -> None:
        raise NotImplementedError

    def _note_quarantine(self, key: str, reason: str, hint: str) -> None:
        raise NotImplementedError

    def _resolve(self, ref: plan.CustomerRef) -> str | None:
        raise NotImplementedError

    def _linked(self, company: Company, number: str, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    # --- outcomes of failures ------------------------------------------------------------------

    def _carry_out(self, a: plan.Action, outcome: plan.Outcome) -> None:
        key = plan.key_of(a)
        kind, _, rid = key.partition(":")
        match outcome:
            case plan.KeepIntent(in_flight=in_flight):
                if not in_flight:
                    with self.store.transaction():
                        self.store.mark_outcome(kind, rid, "lost")
                how = "no answer from Fortnox in time" if in_flight else "Fortnox's answer was lost"
                log.warning(
                    "%s: %s; will check Fortnox before anything else", key, how, extra={"key": key}
                )
            case plan.Refused(reason=reason, hint=hint):
                name, shash = _identity(a)
                with self.store.transaction():
                    self._drop_intent(a)
                    self.store.quarantine(
                        key, name=name, reason=reason, hint=hint, source_hash=shash
                    )
                self._note_quarantine(key, reason, hint)
            case plan.NotSent(why=why, stop_pass=stop):
                # Certainly not applied. An intent stays (marked), so the next pass checks
                # Fortnox and sends it again: dropping it here would lose a record that is
                # already behind the cursor (a resend from reconciliation).
                with self.store.transaction():
                    self.store.mark_outcome(kind, rid, "not_sent")
                self.state.streak += 1
                self.state.incomplete = True
                self.state.count("failed")
                self.state.problem(key, f"not synced, will be retried: {why}")
                log.warning(
                    "%s: not synced, will be retried next pass: %s", key, why, extra={"key": key}
                )
                if stop:
                    raise PassAborted(f"Fortnox is not answering: {why}")
            case plan.StaleLink(customer_number=number):
                self._stale_link(a, number)
            case plan.DriftInstead(record=record):
                self._record_drift(record)

    # --- drift (rule 12) ---------------------------------------------------------------------

    def _record_drift(self, a: plan.RecordDrift) -> None:
        with self.store.transaction():
            self.store.record_drift(a.deal.key, document=a.document, changes=a.changes)
        tail = f" (not updated: {a.why})" if a.why else ""
        # Named as a warning at the end of every pass while unacknowledged (Syncer).
        self._done(a, f"drift: {a.document} {plan.drift_text(a.changes)}{tail}")

    def _update_document(self, a: plan.UpdateDocument) -> None:
        """Fortnox's own answer is the last check before the PUT: its index may be minutes
        old, and a document booked or sent since is left as it is (the drift is named)."""
        deal = a.deal
        current = self.fortnox.get_document(a.kind, a.document_number)
        why = plan.update_refused(a, current)
        if why is not None:
            self._record_drift(plan.RecordDrift(deal, a.document, a.changes, why))
            return
        updated = self.fortnox.update_document(a.kind, a.document_number, a.fields)
        with self.store.transaction():
            self.store.document_revised(
                deal.id,
                value=str(deal.value) if deal.value is not None else None,
                name=deal.name,
                company_id=deal.company_id,
                customer_number=a.customer_number,
            )
            self.store.clear_drift(deal.key)
            self.store.ledger_save(a.kind, [updated])
        self._done(
            a,
            f"updated {a.kind} {a.document_number} in Fortnox to follow the deal: "
            f"{plan.drift_text(a.changes)}",
        )

    def _drop_intent(self, a: plan.Action) -> None:
        if isinstance(a, plan.CreateCustomer):
            self.store.drop_customer_intent(a.company.id)
        elif isinstance(a, plan.CreateDocument):
            self.store.drop_document_intent(a.deal.id)

    def _stale_link(self, a: plan.Action, number: str) -> None:
        """The Fortnox customer behind a link was deleted: forget it, warn naming it, and plan
        the record again, which creates or adopts the customer anew (then sends the document)."""
        if not isinstance(a, plan.UpdateCustomer | plan.AdoptCustomer | plan.CreateDocument):
            raise TypeError(f"no link to forget for {a!r}")  # after_failure never says so
        company = a.company
        link = self.store.link(company.id)
        with self.store.transaction():
            self._drop_intent(a)
            # Unless a document sent beside this one already found it stale and linked anew.
            if link is None or link.customer_number == number:
                self.store.forget_link(company.id)
            self.store.index_forget(number)
        text = f"Fortnox customer {number} no longer exists; linking {company.key} afresh"
        key = plan.key_of(a)
        self.state.result.warnings.append((key, text))
        log.warning("%s: %s", key, text, extra={"key": key})
        self._stale_link_warning(company, number, key)  # kept even if the pass stops here
        if self.replan is not None:
            self.replan(key)
            self._stale_link_warning(company, number, key)  # now naming the new customer
        else:
            self.state.incomplete = True

    # --- shared customers and warnings kept on records -------------------------------------

    def _share_customer(self, a: plan.ShareCustomer) -> None:
        number = self._resolve(a.customer)
        if number is None:
            self._execute(plan.Defer(a.company.key, "waiting for the customer it shares"))
            return
        company, payload = a.company, a.payload
        text = _shared_text(a, number)
        with self.store.transaction():
            self.store.customer_shared(
                company.id,
                customer_number=number,
                orgnr=a.orgnr,
                name=payload.get("Name") or "",
                payload=to_json(payload),
                hash=payload_hash(payload),
                shared_with=a.owner_id,
            )
            self.store.release(company.key)
            self.store.set_warning(company.key, "shared", text)
        log.warning("%s: %s", company.key, text, extra={"key": company.key})
        self._done(a, f"linked to Fortnox customer {number}, shared with company:{a.owner_id}")

    def _record_warning(self, key: str, kind: str, text: str) -> None:
        with self.store.transaction():
            self.store.set_warning(key, kind, text)
        log.warning("%s: %s", key, text, extra={"key": key})

    def _stale_link_warning(self, company: Company, number: str, key: str) -> None:
        """Kept on the company in `status`: its Fortnox customer was deleted, and what it is
        linked to now (the record was planned again within this pass, or waits for the next)."""
        link = self.store.link(company.id)
        now = (
            f"linked afresh to Fortnox customer {link.customer_number}"
            if link is not None and link.done and link.customer_number != number
            else "it is linked afresh on the next pass"
        )
        via = f" (found when sending {key})" if key != company.key else ""
        text = f"Fortnox customer {number} was deleted in Fortnox{via}; {now}"
        with self.store.transaction():
            self.store.set_warning(company.key, "deleted_customer", text)


def _identity(a: plan.Action) -> tuple[str | None, str | None]:
    """The name and source hash a quarantine entry for this action's record carries."""
    match a:
        case (
            plan.CreateCustomer(company=c)
            | plan.AdoptCustomer(company=c)
            | plan.UpdateCustomer(company=c)
        ):
            return c.name, plan.source_hash(c)
        case plan.CreateDocument(deal=d, company=c):
            return d.name, plan.source_hash(d, c)
    return None, None


def _shared_text(a: plan.ShareCustomer, number: str) -> str:
    owner = f"company:{a.owner_id}" + (f" {a.owner_name}" if a.owner_name else "")
    return (
        f"shares {a.orgnr} with {owner}, Fortnox customer {number}: its deals are invoiced to "
        "that customer and its own field changes are not sent"
    )
