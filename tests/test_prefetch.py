"""Issue 16: the read-ahead generator. Pages come in order, at most one is read ahead of the
one in hand (memory stays flat however long the listing), a read error reaches the consumer
where that page would have come, and stopping early closes the listing on its own thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from limefort.errors import TransientError
from limefort.prefetch import prefetch

WAIT = 5.0  # the most any positive event below may take (a bound, not a timing)


def test_every_page_in_order() -> None:
    assert list(prefetch(iter(range(50)))) == list(range(50))
    assert list(prefetch(iter([]))) == []


def test_the_next_page_is_read_while_the_consumer_holds_this_one() -> None:
    asked = threading.Event()
    release = threading.Event()

    def pages() -> Iterator[int]:
        yield 1
        asked.set()  # the reader went on to page 2 while the consumer held page 1
        release.wait(WAIT)
        yield 2

    it = prefetch(pages())
    assert next(it) == 1
    assert asked.wait(WAIT)
    release.set()
    assert list(it) == [2]


def test_never_more_than_one_page_ahead_of_the_consumer() -> None:
    taken = [0]
    lock = threading.Lock()
    overreach: list[tuple[int, int]] = []
    asked = [threading.Event() for _ in range(12)]

    def pages() -> Iterator[int]:
        for n in range(1, 11):
            with lock:
                if n > taken[0] + 1:
                    overreach.append((n, taken[0]))
            asked[n].set()
            yield n

    for page in prefetch(pages()):
        with lock:
            taken[0] = page
        # Page n+1 is read while page n is in hand; give the reader every chance to go on
        # to page n+2 (it must not) before taking the next.
        if page < 10:
            assert asked[page + 1].wait(WAIT)
        time.sleep(0.02)
    assert overreach == []
    assert taken[0] == 10


def test_a_read_error_reaches_the_consumer_at_that_page() -> None:
    def pages() -> Iterator[int]:
        yield 1
        yield 2
        raise TransientError("Lime Go", "GET /api/v1/deals: connection refused")

    got: list[int] = []
    with pytest.raises(TransientError, match="connection refused"):
        for page in prefetch(pages()):
            got.append(page)
    assert got == [1, 2]


def test_stopping_early_closes_the_listing_on_the_reader_thread() -> None:
    closed_on: list[str] = []
    closed = threading.Event()

    def pages() -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            closed_on.append(threading.current_thread().name)
            closed.set()

    it = prefetch(pages(), name="reader-under-test")
    assert next(it) == 0
    it.close()
    assert closed.wait(WAIT)
    assert closed_on == ["reader-under-test"]
