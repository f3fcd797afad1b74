"""Cursor discipline (docs/design.md rules 1 and 10) as small pure functions, after singer-sdk.

A pass reads records updated since `cursor - lookback` (the overlap absorbs records committed
late) and moves the cursor only when every record up to it is in Fortnox or quarantined. The
cursor is a time on Lime Go's own clock, never this machine's: the high-water mark of the
`updated_at` values the phase read, held at Lime Go's `Date` when the phase began reading
(`source_mark`). A machine whose clock is 15 minutes off then loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, tzinfo


def read_since(
    cursor: datetime | None, lookback: timedelta, widen_to: datetime | None = None
) -> datetime | None:
    """Where this pass starts reading. `None` means from the beginning (a first pass).

    `--since` only ever widens the window: it can make a pass look further back, never skip
    what the cursor has not covered yet.
    """
    if cursor is None:
        return None
    since = cursor - lookback
    if widen_to is not None and widen_to < since:
        return widen_to
    return since


def advance(
    cursor: datetime | None, frozen_now: datetime | None, *, complete: bool
) -> datetime | None:
    """The cursor after a pass: the mark (Lime Go's clock, see `source_mark`) if the pass
    completed, never backwards; no mark (nothing known of Lime Go's clock) leaves it."""
    if not complete or frozen_now is None:
        return cursor
    if cursor is not None and cursor >= frozen_now:
        return cursor
    return frozen_now


def is_new_win(updated_at: datetime, start: datetime) -> bool:
    """A won deal with no document yet counts only if it was won at or after `sync.start`.

    Lime Go has no won-at timestamp; the deal's `updated_at` moves when its stage changes, so
    it is the closest public proxy. Deals won earlier are recorded as skipped, never invoiced
    by `sync` (only by an explicit `backfill`)."""
    return updated_at >= start


def high_water(current: datetime | None, seen: Iterable[datetime]) -> datetime | None:
    """The latest `updated_at` read so far in a phase (Lime Go's clock)."""
    top = max(seen, default=None)
    if top is None:
        return current
    return top if current is None or top > current else current


def source_mark(high: datetime | None, server_date: datetime | None) -> datetime | None:
    """Where a completed phase may move its cursor, on Lime Go's clock.

    - `high`: the high-water mark of `updated_at` values read; every record up to it was read.
    - `server_date`: Lime Go's `Date` header when the phase began reading; anything changed
      later carries a later `updated_at`, so the next pass reads it.
    Both known: the earlier (a record changed while the phase paged past it may carry an
    `updated_at` below the high-water mark but after the phase began). Nothing read: the
    `Date`. Neither known: None, and the cursor stays where it is."""
    if high is None:
        return server_date
    if server_date is None:
        return high
    return min(high, server_date)


def skew(server_date: datetime | None, local_now: datetime) -> float | None:
    """Seconds Lime Go's clock is ahead of this machine's (negative: behind). `Date` has
    whole seconds, so anything under a second or two is noise."""
    if server_date is None:
        return None
    return (server_date - local_now).total_seconds()


# --- Fortnox's clock for Fortnox's data (DESIGN rule 13) ----------------------------------------

# Fortnox's `lastmodified` has minute resolution and Fortnox may commit a write a moment after
# stamping it: every incremental read starts this far before its mark.
FORTNOX_OVERLAP = timedelta(minutes=5)


def fortnox_since(mark: datetime | None, tz: tzinfo) -> datetime | None:
    """Where the next incremental read of a Fortnox list starts, as a wall-clock time in
    Fortnox's zone (Europe/Stockholm), for its `lastmodified` filter.

    `mark` is a time on Fortnox's clock (the `Date` of the answer that began the last read),
    never this machine's. Fortnox compares local wall-clock times: in the October fall-back
    hour the wall clock runs 02:00-03:00 twice, so a record changed in the second 02:10 would
    look older than a mark at the first 02:40. A start whose wall time falls in that repeated
    hour therefore steps back one more hour (a re-read, never a miss)."""
    if mark is None:
        return None
    start = (mark - FORTNOX_OVERLAP).astimezone(tz)
    wall = start.replace(tzinfo=None)
    # Ambiguous: this wall time exists twice (both folds give different offsets).
    if wall.replace(tzinfo=tz, fold=0).utcoffset() != wall.replace(tzinfo=tz, fold=1).utcoffset():
        wall -= timedelta(hours=1)
    return wall.replace(tzinfo=tz, fold=0)


def fortnox_mark(server_date: datetime | None, local_now: datetime) -> datetime:
    """The mark of a read that began now: Fortnox's `Date` of its first answer; this machine's
    clock only when Fortnox sent none (the overlap is then all that covers a skew)."""
    return server_date if server_date is not None else local_now
