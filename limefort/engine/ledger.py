"""Fortnox is the ledger: its own indexes of customers and documents, kept in the store.

The state file is a cache of links. What stops a second customer or a second invoice is what
Fortnox itself holds, read from its list endpoints in pages of 500 the first time and then
only what changed (`lastmodified`), at most once per pass that may create something:
- customers by organisation number (list items carry it) and, for those without one, by
  limefort's ExternalReference (list items do not carry it: candidates with the same name are
  read one by one, only before creating such a customer);
- documents by their key in ExternalInvoiceReference1 (list items carry it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from limefort.clients.fortnox import STOCKHOLM
from limefort.core.models import DocumentKind
from limefort.core.services import Sink
from limefort.plan import cursor
from limefort.state.store import LedgerDocument, Store

log = logging.getLogger("limefort.ledger")

T = TypeVar("T")
R = TypeVar("R")

# Which list (filter=active or filter=inactive) an item came from: list items lack Active.
ACTIVE_TAG = "_limefort_active"


class Ledger:
    def __init__(
        self,
        store: Store,
        fortnox: Sink,
        *,
        guard: Callable[[Iterable[Any]], Iterator[Any]] = iter,
        persist: bool = True,
    ) -> None:
        """`guard` wraps page iterators (a read retries could not cure stops the pass);
        `persist=False` (a dry run) reads Fortnox the same way but keeps what it read in a
        scratch index instead of the state file, which a dry run never writes."""
        self.store = store
        self.fortnox = fortnox
        self.guard = guard
        self._fresh: set[str] = set()
        # Where what is read of Fortnox is written: the state file, or in a dry run (which
        # writes no state) a scratch index in memory with the same tables and the same
        # queries, read beside the state file's. One index, one set of rules, either way.
        self.index = store if persist else Store.memory(clock=lambda: store.clock())

    # --- customers ---------------------------------------------------------------------------

    def customers_by_orgnr(self, orgnrs: Iterable[str]) -> dict[str, list[str]]:
        orgnrs = [o for o in orgnrs if o]
        if not orgnrs:
            return {}
        self._refresh_customers()
        out: dict[str, list[str]] = {}
        for o in orgnrs:
            found = self._both(Store.index_by_orgnr, o)
            if found:
                out[o] = list(dict.fromkeys(found))
        return out

    def customers_by_ref(self, refs: dict[str, str]) -> dict[str, list[str]]:
        """Customers carrying limefort's ExternalReference. `refs`: ref -> the company's name
        (candidates are Fortnox customers with exactly that name, each read once)."""
        if not refs:
            return {}
        self._refresh_customers()
        out: dict[str, list[str]] = {}
        for ref, name in refs.items():
            found = self._both(Store.index_by_ext_ref, ref)
            if not found and name:
                found = self._read_candidates(ref, name)
            if found:
                out[ref] = found
        return out

    def _read_candidates(self, ref: str, name: str) -> list[str]:
        found: list[str] = []
        for number, known in self._both(Store.index_by_name, name):
            if known is not None:
                continue  # its ExternalReference is known already, and it is another one
            full = self.fortnox.get_customer(number)
            if full is None:
                continue
            ext = full.get("ExternalReference") or ""
            with self.index.transaction():
                self.index.index_remember(
                    number, orgnr=full.get("OrganisationNumber") or None, name=name, ext_ref=ext
                )
            if ext == ref:
                found.append(number)
        return found

    def _both(self, read: Callable[[Store, T], Iterable[R]], arg: T) -> list[R]:
        """What the state file's index says, and in a dry run what the scratch index adds."""
        found = list(read(self.store, arg))
        if self.index is not self.store:
            found = list(dict.fromkeys([*found, *read(self.index, arg)]))
        return found

    def forget_customer(self, number: str) -> None:
        with self.store.transaction():
            self.store.index_forget(number)

    def _refresh_customers(self) -> None:
        self.refresh_customers()

    def _customer_pages(self, since: datetime | None) -> Iterator[list[dict[str, Any]]]:
        """Active and inactive customers read apart (list items carry no Active flag), each
        item tagged with which it is, so the planner can prefer the active one. The inactive
        listing is read beside the active one (a round trip saved at the start of a pass);
        the token is made fresh on this thread first, since renewing it writes the store."""
        self.fortnox.fresh_token()
        with ThreadPoolExecutor(1, thread_name_prefix="limefort-index") as pool:
            # Few customers are inactive: their pages are held until the active ones are done.
            inactive = pool.submit(lambda: list(self._flagged(since, "inactive")))
            try:
                yield from self._flagged(since, "active")
            finally:
                pages = inactive.result()  # raised here, as a read on this thread would be
            yield from pages

    def _flagged(self, since: datetime | None, flag: str) -> Iterator[list[dict[str, Any]]]:
        for page in self.fortnox.iter_customers(lastmodified=since, limit=500, filter=flag):
            yield [{**item, ACTIVE_TAG: flag == "active"} for item in page]

    def _save_customers(self, page: list[dict[str, Any]]) -> None:
        active = [str(i["CustomerNumber"]) for i in page if i.get(ACTIVE_TAG)]
        inactive = [str(i["CustomerNumber"]) for i in page if i.get(ACTIVE_TAG) is False]
        with self.index.transaction():
            self.index.index_save(page)
            self.index.index_set_active(active, True)
            self.index.index_set_active(inactive, False)

    def inactive(self, numbers: Iterable[str]) -> set[str]:
        """Those of `numbers` that Fortnox's list shows as inactive."""
        numbers = list(numbers)
        if not numbers:
            return set()
        return set(self._both(Store.index_inactive, numbers))

    # --- documents ---------------------------------------------------------------------------

    def documents_by_ref(
        self, kind: DocumentKind, refs: Iterable[str]
    ) -> dict[str, list[LedgerDocument]]:
        refs = list(refs)
        if not refs:
            return {}
        self.refresh_documents(kind)
        out = self.store.ledger_by_ref(refs)
        if self.index is not self.store:
            for ref, docs in self.index.ledger_by_ref(refs).items():
                out.setdefault(ref, []).extend(docs)
        return out

    def refresh_documents(self, kind: DocumentKind, *, again: bool = False) -> None:
        """Fortnox's documents of `kind` into the index: once per pass, or `again` (what
        changed since this pass's last read: the guard against a second writer and the check
        after writing read it anew)."""
        self._refresh(
            f"{kind}s",
            lambda since: self.fortnox.iter_documents(kind, lastmodified=since, limit=500),
            lambda page: self._save_documents(kind, page),
            again=again,
        )

    def refresh_customers(self, *, again: bool = False) -> None:
        self._refresh("customers", self._customer_pages, self._save_customers, again=again)

    def stamps(self, kind: DocumentKind) -> list[tuple[str, str, str]]:
        """(stamp, document number, key) of the documents of `kind` the index holds with a
        limefort stamp in ExternalInvoiceReference2 (read by `refresh_documents`)."""
        return self._both(Store.ledger_stamps, kind)

    def _save_documents(self, kind: DocumentKind, page: list[dict[str, Any]]) -> None:
        with self.index.transaction():
            self.index.ledger_save(kind, page)

    def remember_document(self, kind: DocumentKind, item: dict[str, Any]) -> None:
        """A document limefort just created or found: known to the ledger at once."""
        with self.store.transaction():
            self.store.ledger_save(kind, [item])

    # --- refresh -----------------------------------------------------------------------------

    def _refresh(
        self,
        name: str,
        pages: Callable[[datetime | None], Iterable[list[dict[str, Any]]]],
        save: Callable[[list[dict[str, Any]]], None],
        *,
        again: bool = False,
    ) -> None:
        """Everything the first time, then what changed since the last read, once per pass
        (or `again`). The mark is Fortnox's own clock: the `Date` of the read's first answer,
        so a machine whose clock is minutes off Fortnox's misses nothing (DESIGN rule 13)."""
        if name in self._fresh and not again:
            return
        self._fresh.add(name)
        meta = "fortnox_index_at" if name == "customers" else f"fortnox_{name}_at"
        last = self.index.get_meta(meta) or self.store.get_meta(meta)
        since = cursor.fortnox_since(datetime.fromisoformat(last) if last else None, STOCKHOLM)
        n = 0
        mark: datetime | None = None
        for page in self.guard(pages(since)):
            if mark is None:
                mark = self.fortnox.date_here()
            n += len(page)
            save(page)
        if mark is None:  # an empty answer yields no page: its Date is still the latest here
            mark = self.fortnox.date_here()
        stamp = cursor.fortnox_mark(mark, self.store.clock()).isoformat()
        with self.index.transaction():
            self.index.set_meta(meta, stamp)
        log.info("Fortnox %s index: %d read (%s)", name, n, "changes" if last else "full")
