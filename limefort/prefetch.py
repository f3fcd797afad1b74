"""Read-ahead: the next page of a listing is read while the current one is worked on.

A listing that follows `links.next` cannot be read out of order, but it can be read one page
ahead: while the sync plans and writes page n, one background thread reads page n+1. Memory
stays flat: the thread asks for the next page only once the consumer has taken the previous
one, so at most one page waits beside the one in hand, however long the listing.

Errors raised while reading (a `TransientError` when retries ran out, anything else) reach the
consumer at the point where it asks for that page, exactly as without read-ahead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


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


def prefetch(source: Iterable[T], *, name: str = "limefort-read-ahead") -> Iterator[T]:
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
