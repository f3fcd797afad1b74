"""Issue 16: the read-ahead generator. Pages come in order, at most one is read ahead of the
one in hand (memory stays flat however long the listing), a read error reaches the consumer
where that page would have come, and stopping early closes the listing on its own thread. And
a listing read from both ends at once gives every record exactly once."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from limefort.core.errors import TransientError
from limefort.engine.prefetch import both_ends, prefetch

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


# --- one listing read from both ends ------------------------------------------------------------


def pages_of(ids: list[str], size: int, *, down: bool = False) -> Iterator[list[str]]:
    seq = sorted(ids, reverse=down)
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def read_both(ids: list[str], size: int) -> list[str]:
    out: list[str] = []
    for page in both_ends(
        pages_of(ids, size),
        pages_of(ids, size, down=True),
        lambda p: p,
        lambda p, keep: [x for x in p if keep(x)],
    ):
        out.extend(page)
    return out


@pytest.mark.parametrize("n", [0, 1, 2, 7, 20, 21, 99, 100, 101, 257])
@pytest.mark.parametrize("size", [1, 3, 10, 100])
def test_both_ends_give_every_record_exactly_once(n: int, size: int) -> None:
    rng = random.Random(n * 1000 + size)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(n)]
    got = read_both(ids, size)
    assert sorted(got) == sorted(ids)  # none missing, none twice


def test_both_ends_read_about_half_of_each_end() -> None:
    ids = [str(uuid.UUID(int=i * 7919)) for i in range(1000)]
    asked = {"up": 0, "down": 0}

    def counted(name: str, pages: Iterator[list[str]]) -> Iterator[list[str]]:
        for page in pages:
            asked[name] += 1
            yield page

    got = list(
        both_ends(
            counted("up", pages_of(ids, 100)),
            counted("down", pages_of(ids, 100, down=True)),
            lambda p: p,
            lambda p, keep: [x for x in p if keep(x)],
        )
    )
    assert sorted(x for p in got for x in p) == sorted(ids)
    # 10 pages in all: each end reads its half, plus at most the page read ahead.
    assert asked["up"] <= 6 and asked["down"] <= 6


def test_ids_not_in_an_order_we_can_trust_fall_back_to_one_end() -> None:
    # Numbers sort differently as text ("10" < "9"): the ends could not tell where they meet.
    ids = [str(i) for i in range(1, 41)]

    def numeric(down: bool = False) -> Iterator[list[str]]:
        seq = sorted(ids, key=int, reverse=down)
        for i in range(0, len(seq), 5):
            yield seq[i : i + 5]

    got: list[str] = []
    for page in both_ends(
        numeric(), numeric(down=True), lambda p: p, lambda p, keep: [x for x in p if keep(x)]
    ):
        got.extend(page)
    assert set(got) == set(ids)  # none missing (some may come twice: harmless)
