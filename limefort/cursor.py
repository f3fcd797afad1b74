"""Cursor discipline (DESIGN.md rules 1 and 10) as small pure functions, after singer-sdk.

A pass reads records updated since `cursor - lookback` (the overlap absorbs records committed
late) and moves the cursor only when every record up to it is in Fortnox or quarantined. The
cursor is a time on Lime Go's own clock, never this machine's: the high-water mark of the
`updated_at` values the phase read, held at Lime Go's `Date` when the phase began reading
(`source_mark`). A machine whose clock is 15 minutes off then loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta


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
