"""One writer per tenant (DESIGN rule 14): the pass's look at who else writes to Fortnox.

Fortnox has no lock and no idempotency key, so limefort makes its own guarantee from what
Fortnox does offer: every document it makes carries its installation's stamp in
ExternalInvoiceReference2, which list items carry, and the ledger's index reads them anyway.
- Before the first write of a pass, after the first group of writes, then every
  `plan.WRITER_CHECK_EVERY` writes, the index is read again (what changed since its last read:
  one request when nothing did); a stamp of another installation within the lease window
  stops the pass (exit 4) before its next write, naming the other installation.
- What cannot be prevented, two installations started at one instant, is seen at the first
  group's check: two documents for one of this pass's deals, or two customers for one of its
  companies, stop it too; the duplicates are named by every later pass until acknowledged.
Which stamps count and what the line says are the planner's pure functions; this module reads
Fortnox through the ledger and raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from limefort import plan
from limefort.config import Config
from limefort.core.keys import stamp_text
from limefort.core.models import DocumentKind
from limefort.core.services import Sink
from limefort.engine.inflight import MAX_IN_FLIGHT
from limefort.engine.ledger import Ledger
from limefort.engine.passstate import AnotherWriter, PassState
from limefort.state.installation import resolve
from limefort.state.store import Store

log = logging.getLogger("limefort.sync")

TAKEOVER_KEY = "takeover_at"


class WriterGuard:
    def __init__(
        self,
        store: Store,
        ledger: Ledger,
        fortnox: Sink,
        state: PassState,
        *,
        kind: DocumentKind | None,
        installation: str,
        lease: timedelta,
        clock: Callable[[], datetime],
        take_over: bool = False,
        persist: bool = True,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.fortnox = fortnox
        self.state = state
        self.kind = kind
        self.installation = installation
        self.lease = lease
        self.clock = clock
        self.take_over = take_over
        self.persist = persist
        self.written = 0  # writes of this pass so far
        self.wrote: set[str] = set()  # their record keys
        self._unchecked = False  # documents created since the last look
        self._customers_unchecked = False  # customers created since the last look
        self._taken: datetime | None = None  # this pass's hand-over (`--take-over`)
        self._first_looked = False

    @classmethod
    def for_pass(
        cls,
        cfg: Config,
        store: Store,
        ledger: Ledger,
        fortnox: Sink,
        state: PassState,
        installation: str | None,
        *,
        clock: Callable[[], datetime],
        take_over: bool,
        dry_run: bool,
    ) -> WriterGuard:
        """The guard of one pass: the configured document kind and lease; `installation`
        None: this installation's id from its id file (a dry run writes none)."""
        return cls(
            store,
            ledger,
            fortnox,
            state,
            kind=cfg.sync.document_kind,
            installation=installation or resolve(store, store.path, write=not dry_run),
            lease=cfg.sync.writer_lease,
            clock=clock,
            take_over=take_over,
            persist=not dry_run,
        )

    def now(self) -> datetime:
        """Now on Fortnox's clock (this machine's only before Fortnox has answered)."""
        return self.fortnox.server_now() or self.clock()

    def stamp(self) -> str:
        return stamp_text(self.installation, self.now())

    # --- before each write ------------------------------------------------------------------

    def before(self, action: plan.Action, land: Callable[[], None]) -> None:
        """Called by the executor before each write: before the first write of the pass, and
        before a creation when a look is due, what is in flight lands (`land`) and Fortnox is
        read. Later updates are not looked before: sending the same fields twice makes
        nothing twice."""
        if not self._first_looked:
            self._first_looked = True
            land()
            self.look()
        if not plan.creates(action):
            return
        if self.written and plan.writer_check_due(self.written, MAX_IN_FLIGHT):
            land()
            self.look()
        self.written += 1
        self.wrote.add(plan.key_of(action))
        if isinstance(action, plan.CreateCustomer):
            self._customers_unchecked = True
        else:
            self._unchecked = True

    def look(self) -> None:
        """Read what changed in Fortnox and stop the pass if another installation writes."""
        again = self.written > 0
        if self.kind is not None:
            self.ledger.refresh_documents(self.kind, again=again)
        if again and self._customers_unchecked:
            self.ledger.refresh_customers(again=True)
        self._unchecked = self._customers_unchecked = False
        now = self.now()
        others = plan.other_writers(self._stamps(), self.installation, self._since(now))
        if others:
            raise AnotherWriter(plan.other_writer_text(others[0], now, wrote=again))
        if again:
            found = self.own_duplicates()
            if found:
                for key, text in found:
                    self.state.problem(key, text)
                raise AnotherWriter(
                    f"{len(found)} of the records this pass wrote are now in Fortnox twice "
                    "(another program wrote them at the same instant); this pass stopped before "
                    "its next write: stop the other installation, then check the duplicates "
                    "(`limefort status`) and cancel or acknowledge them (`limefort ack KEY`)"
                )

    def after_pass(self) -> None:
        """After a pass: what it wrote, read back once more (the check after), or, with
        nothing written, the documents index's changes once (a duplicate made by hand is
        named by the next pass)."""
        if self.kind is not None:
            self.ledger.refresh_documents(self.kind, again=self._unchecked)
        if self._customers_unchecked:
            self.ledger.refresh_customers(again=True)
        self._unchecked = self._customers_unchecked = False

    def own_duplicates(self) -> list[tuple[str, str]]:
        return plan.own_duplicates(
            self.store.ledger_duplicates(), self.store.customer_duplicates(), self.wrote
        )

    # --- the lease window ---------------------------------------------------------------------

    def _stamps(self) -> list[tuple[str, str, str, str]]:
        if self.kind is None:
            return []
        return [(self.kind, *s) for s in self.ledger.stamps(self.kind)]

    def _since(self, now: datetime) -> datetime:
        """Stamps older than this are history: the lease window, or a hand-over (`--take-over`:
        every stamp up to now is accepted; a later one of another installation still stops)."""
        since = now - self.lease
        if self.take_over and self._taken is None:
            self._taken = now
            if self.persist:
                with self.store.transaction():
                    self.store.set_meta(TAKEOVER_KEY, now.isoformat())
            log.warning(
                "taking over this Fortnox tenant: documents other installations made up to now "
                "no longer stop a pass; one they make from now on does"
            )
        taken = self._taken
        if taken is None:
            stored = self.store.get_meta(TAKEOVER_KEY)
            taken = datetime.fromisoformat(stored) if stored else None
        return since if taken is None else max(since, taken)
