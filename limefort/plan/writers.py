"""One writer per tenant (design rule 14): when to look for another installation, what counts as
one, and which documents and customers are duplicates in Fortnox."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from limefort.core.keys import deal_id_of_ref, parse_stamp
from limefort.core.models import LedgerDocument

# After the first writes of a pass (as many as are in flight at once) and then every this many
# writes, the pass reads Fortnox's changes again to see whether another installation writes too.
WRITER_CHECK_EVERY = 50


def writer_check_due(written: int, first_group: int) -> bool:
    """Whether the write about to go (`written` went before it in this pass) needs a look at
    Fortnox first: before the first, after the first group (two installations started at one
    instant see each other's first documents there), then every WRITER_CHECK_EVERY."""
    if written in (0, first_group):
        return True
    return written > first_group and (written - first_group) % WRITER_CHECK_EVERY == 0


@dataclass(frozen=True)
class OtherWriter:
    installation: str
    last: datetime  # its latest stamp, on Fortnox's clock
    document: str  # e.g. "invoice 123"
    key: str  # the document's key, limego:deal:<id> (or "" when it has none)


def other_writers(
    stamps: Iterable[tuple[str, str, str, str]], me: str, since: datetime
) -> list[OtherWriter]:
    """Installations other than `me` whose stamps (kind, stamp, number, key) on Fortnox's
    documents are as recent as `since` (the lease window, or a hand-over, whichever is later),
    the latest stamp of each. Older stamps are history: a retired machine's invoices."""
    latest: dict[str, OtherWriter] = {}
    for kind, text, number, key in stamps:
        parsed = parse_stamp(text)
        if parsed is None:
            continue
        who, when = parsed
        if who == me or when < since:
            continue
        seen = latest.get(who)
        if seen is None or when > seen.last:
            latest[who] = OtherWriter(who, when, f"{kind} {number}", key)
    return sorted(latest.values(), key=lambda w: (w.last, w.installation), reverse=True)


def other_writer_text(w: OtherWriter, now: datetime, *, wrote: bool) -> str:
    """One line: who, when, what, and what to do."""
    minutes = max(0, int((now - w.last).total_seconds() // 60))
    ago = "less than a minute ago" if minutes == 0 else f"{minutes} min ago"
    where = f" ({w.document}" + (f", {w.key}" if w.key else "") + ")"
    return (
        f"another limefort installation ({w.installation}) wrote to this Fortnox tenant {ago}"
        f"{where}; this pass stopped before its {'next' if wrote else 'first'} write. Two "
        "installations on one tenant make invoices twice: stop the other one (its "
        "`limefort status` shows its installation id); if it is retired or this one replaces "
        "it on purpose, run `limefort sync --take-over`"
    )


@dataclass(frozen=True)
class Duplicate:
    key: str  # deal:<id> or company:<id>
    members: tuple[str, ...]  # "invoice 12", ... or customer numbers
    what: str  # "documents" | "customers"
    acknowledged: bool

    @property
    def text(self) -> str:
        if self.what == "documents":
            held = f"{len(self.members)} documents for it ({', '.join(self.members)})"
        else:
            held = (
                f"{len(self.members)} customers of its organisation number "
                f"({', '.join(self.members)})"
            )
        return (
            f"duplicate: Fortnox holds {held}; cancel the extra one in Fortnox, or run "
            f"`limefort ack {self.key}` once a person has dealt with it"
        )


def duplicates(
    documents: Mapping[str, Sequence[LedgerDocument]],
    customers: Mapping[str, Sequence[str]],
    acks: Mapping[str, str],
) -> list[Duplicate]:
    """Every duplicate Fortnox holds for limefort's records, each marked acknowledged when a
    person acknowledged exactly these members (a third document is named again)."""
    out: list[Duplicate] = []
    for ref, docs in sorted(documents.items()):
        did = deal_id_of_ref(ref)
        if did is None or len(docs) < 2:
            continue
        members = tuple(f"{d.kind} {d.document_number}" for d in docs)
        key = f"deal:{did}"
        out.append(Duplicate(key, members, "documents", acks.get(key) == ",".join(members)))
    for key, numbers in sorted(customers.items()):
        if len(numbers) < 2:
            continue
        members = tuple(numbers)
        out.append(Duplicate(key, members, "customers", acks.get(key) == ",".join(members)))
    return out


def own_duplicates(
    documents: Mapping[str, Sequence[LedgerDocument]],
    customers: Mapping[str, Sequence[str]],
    wrote: Iterable[str],
) -> list[tuple[str, str]]:
    """(key, text) for each duplicate Fortnox now holds among the records this pass wrote:
    two live documents for one of its deals, two customers for one of its companies. Made at
    the same instant as another writer's (nothing else makes them), so named whether or not a
    person acknowledged an earlier pair."""
    mine = set(wrote)
    return [(d.key, d.text) for d in duplicates(documents, customers, {}) if d.key in mine]
