"""Read-ahead: the next page of a listing is read while the current one is worked on.

A listing that follows `links.next` cannot be read out of order, but it can be read one page
ahead: while the sync plans and writes page n, one background thread reads page n+1. Memory
stays flat: the thread asks for the next page only once the consumer has taken the previous
one, so at most one page waits beside the one in hand, however long the listing.

Errors raised while reading (a `TransientError` when retries ran out, anything else) reach the
consumer at the point where it asks for that page, exactly as without read-ahead.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
P = TypeVar("P")

# Lime Go's ids: UUIDs, in the canonical lowercase form. For these, the server's `sort=id` and
# Python's string order agree whatever the server's collation (same length, hyphens in the same
# places, digits before letters): only then is reading from both ends relied on.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class _End:
    pass


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Box(Generic[T]):
    """A one-item hand-over between the reading thread and the consumer."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: list[T | _End | _Failed] = []
        self._allowed = 0  # pages the reader may read before the consumer takes one more
        self.closed = False

    def allow(self) -> None:
        with self._cond:
            self._allowed += 1
            self._cond.notify_all()

    def wait_allowed(self) -> bool:
        """For the reader: True when it may read one more, False when the consumer is gone."""
        with self._cond:
            while not self._allowed and not self.closed:
                self._cond.wait()
            if self.closed:
                return False
            self._allowed -= 1
            return True

    def put(self, item: T | _End | _Failed) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def take(self) -> T | _End | _Failed:
        with self._cond:
            while not self._items:
                self._cond.wait()
            return self._items.pop(0)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._items.clear()
            self._cond.notify_all()


def prefetch(source: Iterable[T], *, name: str = "limefort-read-ahead") -> Generator[T, None, None]:
    """The items of `source`, each read on a background thread while the consumer works on the
    one before it. At most one item is read ahead of the one the consumer holds.

    Closing this generator (or dropping it) stops the reader after the read it is doing; the
    source is closed on the reader's own thread (a generator cannot be closed from another
    thread while it runs)."""
    box: _Box[T] = _Box()

    def read() -> None:
        it = iter(source)
        try:
            while box.wait_allowed():
                try:
                    item = next(it)
                except StopIteration:
                    box.put(_End())
                    return
                except BaseException as exc:  # handed to the consumer, raised there
                    box.put(_Failed(exc))
                    return
                box.put(item)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=read, name=name, daemon=True)
    box.allow()  # the first item
    thread.start()
    try:
        while True:
            got = box.take()
            if isinstance(got, _End):
                return
            if isinstance(got, _Failed):
                raise got.exc
            box.allow()  # read the next one while the consumer works on this one
            yield got
    finally:
        box.close()


def _ordered(ids: Sequence[str], *, up: bool, past: str | None) -> bool:
    """Canonical UUIDs, strictly in the given direction, and beyond `past` (the last id this
    end gave before)."""
    if not all(_UUID.fullmatch(x) for x in ids):
        return False
    seq = ([past] if past is not None else []) + list(ids)
    return all((a < b) if up else (a > b) for a, b in zip(seq, seq[1:], strict=False))


def _below(bound: str) -> Callable[[str], bool]:
    return lambda x: x < bound


def _above(bound: str) -> Callable[[str], bool]:
    return lambda x: x > bound


def both_ends(
    ascending: Iterable[P],
    descending: Iterable[P],
    ids: Callable[[P], Sequence[str]],
    only: Callable[[P, Callable[[str], bool]], P],
) -> Iterator[P]:
    """One listing sorted by id, read from both ends at once until they meet: two chains of
    `links.next`, each read one page ahead on its own thread, so two round trips overlap and
    a long listing over a slow network takes about half the time. Memory stays flat (a page
    ahead on each end).

    `ids`: a page's record ids, in order; `only`: the page with only the records whose id
    passes. Pages alternate between the ends; the page where the ends meet is cut so that no
    record comes twice. Should the ids not be canonical UUIDs in the order Python sorts them
    (then the server's order might differ from ours, and the meeting point could not be
    trusted), the ascending read goes on alone to the end: the records the other end already
    gave come again, which costs a little and changes nothing (a pass plans an unchanged
    record as nothing to do)."""
    up = prefetch(ascending, name="limefort-read-ahead-up")
    down = prefetch(descending, name="limefort-read-ahead-down")
    lo: str | None = None  # the highest id the ascending end gave
    hi: str | None = None  # the lowest id the descending end gave
    try:
        while True:
            page = next(up, None)
            if page is None:
                return  # the ascending end read to the end: everything is in
            got = ids(page)
            if not _ordered(got, up=True, past=lo):
                yield page
                yield from up
                return
            if hi is not None and got and got[-1] >= hi:
                yield only(page, _below(hi))
                return
            yield page
            lo = got[-1] if got else lo
            page = next(down, None)
            if page is None:
                return  # the descending end read to the start: everything is in
            got = ids(page)
            if not _ordered(got, up=False, past=hi):
                yield from up  # this page's records come from the ascending end instead
                return
            if lo is not None and got and got[-1] <= lo:
                yield only(page, _above(lo))
                return
            yield page
            hi = got[-1] if got else hi
    finally:
        up.close()
        down.close()
