"""Cursor discipline (DESIGN.md rule 1) as small pure functions, after singer-sdk.

A pass freezes `now` when it starts, reads records updated since `cursor - lookback` (the
overlap absorbs clock skew between us and Lime Go and records committed late), and moves the
cursor to the frozen `now` only when every record up to it is in Fortnox or quarantined.
"""

from __future__ import annotations

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


def advance(cursor: datetime | None, frozen_now: datetime, *, complete: bool) -> datetime | None:
    """The cursor after a pass: the frozen start time if the pass completed, never backwards."""
    if not complete:
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
