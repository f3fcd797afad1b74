"""A few Fortnox writes in flight at once, their outcomes recorded in plan order.

Over a real network each write waits a round trip (150-400 ms), so one write at a time runs
Fortnox's 25 requests per 5 s far below its ceiling. `Flights` sends up to `width()` of them
at once on a small pool; every request still goes through the client's one sliding-window
limiter, which counts a request in flight as possibly counted by Fortnox at any moment.

What stays on the caller's thread: everything but the sends. The caller commits each write's
intent before `start` (so a crash mid-flight leaves pending intents, which reconciliation
settles by their keys), and `land` (the caller's function) records each outcome, oldest first,
on the caller's thread: the store's one SQLite connection is never used from the pool.

This module decides nothing about failures: `land` receives a function that returns the
answer or raises what the send raised, and the caller's table says what that means.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("limefort.sync")

# Enough to keep 5 requests/s going over round trips of 150-400 ms; more would only queue at
# the limiter.
MAX_IN_FLIGHT = 3
# Below this round trip (seconds) one write at a time keeps up with 5 requests/s by itself, and
# writes then go strictly one after another.
PARALLEL_ROUND_TRIP = 0.05


def width_for(round_trip: float, *, most: int = MAX_IN_FLIGHT) -> int:
    """How many writes to keep in flight for this round trip."""
    return most if round_trip >= PARALLEL_ROUND_TRIP else 1


class _Done(Generic[T]):
    """An outcome already known (a send run on the caller's thread)."""

    def __init__(self, value: T | None = None, exc: BaseException | None = None) -> None:
        self.value, self.exc = value, exc

    def result(self) -> T:
        if self.exc is not None:
            raise self.exc
        return self.value  # type: ignore[return-value]


Landing = Callable[[T, Callable[[], Any]], None]


class Flights(Generic[T]):
    """Sends started in order, landed in the same order.

    with Flights(pool, width, land) as flights:
        flights.start(item, send)   # lands the oldest first while `width()` are in flight
        flights.drain()             # before anything that must follow them
    """

    def __init__(
        self, pool: Callable[[], ThreadPoolExecutor], width: Callable[[], int], land: Landing[T]
    ) -> None:
        self._pool = pool
        self._width = width
        self._land = land
        self._queue: deque[tuple[T, Future[Any] | _Done[Any]]] = deque()
        self.most = 0  # the most in flight at once (for tests and stats)

    def __len__(self) -> int:
        return len(self._queue)

    def items(self) -> list[T]:
        """What is in flight now, oldest first."""
        return [item for item, _ in self._queue]

    def make_room(self) -> None:
        """Land the oldest while `width()` are in flight: call it before committing the next
        write's intent, so no more intents are pending than writes are in flight."""
        width = max(self._width(), 1)
        while len(self._queue) >= width:
            self._land_oldest()

    def start(self, item: T, send: Callable[[], Any]) -> None:
        self.make_room()
        width = max(self._width(), 1)
        if width == 1:
            # One at a time: sent on this thread, strictly in order, as without this class.
            try:
                done: _Done[Any] = _Done(send())
            except BaseException as exc:  # handed to `land`, which says what it means
                done = _Done(exc=exc)
            self._queue.append((item, done))
            self.most = max(self.most, 1)
            self._land_oldest()
            return
        self._queue.append((item, self._pool().submit(send)))
        self.most = max(self.most, len(self._queue))

    def _land_oldest(self) -> None:
        item, fut = self._queue.popleft()
        self._land(item, fut.result)

    def drain(self) -> None:
        """Land every write in flight, oldest first. Should one landing raise, the others are
        still landed (they were sent: their outcomes must be recorded), then the first error
        is raised."""
        first: BaseException | None = None
        while self._queue:
            try:
                self._land_oldest()
            except BaseException as exc:  # recorded below; the rest must land first
                if first is None:
                    first = exc
        if first is not None:
            raise first

    def __enter__(self) -> Flights[T]:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if e is None:
            self.drain()
            return
        # Already failing (a stop, an aborted pass, a bug): land what was sent, keep that error.
        try:
            self.drain()
        except BaseException as later:  # the error that stopped the loop is the one raised
            if later is not e:
                log.warning("while the pass stopped, recording a write's outcome failed: %r", later)
