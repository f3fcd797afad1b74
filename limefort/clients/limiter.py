"""Fortnox's rate limit on our side: a sliding window of 25 requests in any 5 seconds, each slot
held from when a request can reach Fortnox (`tests/test_limiter_margin.py`)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from limefort.core.urls import is_loopback as is_loopback  # re-exported: the one loopback check
from limefort.core.urls import refuse_plain_http as refuse_plain_http

if TYPE_CHECKING:  # config may import this module (refuse_plain_http): no import cycle
    pass


# The limiter's safety margin past Fortnox's window, in seconds. Each request is counted from
# the latest moment Fortnox may have counted it (its answer's arrival) until `window + MARGIN`
# later, and the next request is counted by Fortnox no earlier than it is sent: so the two are
# always at least `window + MARGIN` apart on our clock. The margin only has to cover what our
# clock cannot see: a window that counts both ends (25 in any 5.000 s, inclusive), Fortnox
# stamping requests to the millisecond, and the rate difference of two clocks over 5 s (well
# under 1 ms for NTP-kept ones). 5 ms covers all three with room, and costs 0.1 % of the rate
# where the old 0.2 s cost 4 % (tests/test_limiter_margin.py).
MARGIN = 0.005


@dataclass(order=True, slots=True)
class _Slot:
    """One request the limiter let go: `at` is its send time until its answer arrives (`done`),
    then the answer's arrival time."""

    at: float
    done: bool = False


class SlidingWindowLimiter:
    """At most `limit` requests that Fortnox may count in any `window + margin` seconds.

    Fortnox counts 25 requests in a sliding 5-second window, at some moment between our send
    and its answer. So a request occupies a slot here from the moment it is sent (`reserve`)
    until `window + margin` after its answer arrived (`release`): while it is in flight, Fortnox
    may count it at any moment, so it holds its slot for as long as it takes. A new request goes
    when fewer than `limit` slots are held, and otherwise waits for the earliest one to expire
    (or, when too many are still in flight, for an answer). With several requests in flight
    (the executor's small pool) this still never lets Fortnox see more than `limit` in a window.
    """

    def __init__(
        self,
        limit: int | None = 25,
        window: float = 5.0,
        margin: float = MARGIN,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit or 0
        self.window = window
        self.margin = margin
        self._clock = clock
        self._sleep = sleep
        # Slots that may still be inside Fortnox's window: in flight, or answered less than
        # `window + margin` ago. Never more than `limit` of them.
        self._sent: list[_Slot] = []
        # One reserver at a time, held while it sleeps on purpose: the others would have to
        # wait just as long. The slots have their own lock, so answers are recorded meanwhile.
        self._turn = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        # The round trips of the last answers (seconds), for `credit`.
        self._trips: deque[float] = deque(maxlen=25)
        self.waits = 0
        self.waited = 0.0

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def acquire(self) -> float:
        """Block until a send is allowed, record it as sent and answered now, and return the
        seconds waited (for a caller that does not report the answer)."""
        slot, waited = self.reserve()
        self.release(slot)
        return waited

    def reserve(self) -> tuple[_Slot, float]:
        """Block until a send is allowed; the slot to `release` when the answer is in (or the
        attempt failed), and the seconds waited."""
        if not self.enabled:
            return _Slot(0.0, True), 0.0
        span = self.window + self.margin
        waited = 0.0
        with self._turn:
            while True:
                with self._cond:
                    now = self._clock()
                    self._sent = [s for s in self._sent if not (s.done and s.at + span <= now)]
                    if len(self._sent) < self.limit:
                        slot = _Slot(now)
                        self._sent.append(slot)
                        break
                    if waited == 0.0:
                        self.waits += 1
                    need = len(self._sent) - self.limit + 1
                    answered = sorted(s.at for s in self._sent if s.done)
                    if len(answered) < need:
                        # Too many still in flight: only an answer frees a slot (or starts
                        # its countdown). Re-checked at least once a window.
                        self._cond.wait(timeout=span)
                        after = self._clock()
                        waited += max(after - now, 0.0)
                        continue
                    delay = answered[need - 1] + span - now
                self._sleep(delay)
                waited += delay
        with self._cond:
            self.waited += waited
        return slot, waited

    def release(self, slot: _Slot, round_trip: float | None = None) -> None:
        """The attempt ended: Fortnox counted the request by now. With the `round_trip` of an
        answer that arrived, it counted it earlier still: the answer spent at least part of
        that trip on its way back, and the slot is dated back by half of the fastest recent
        round trip (see `credit`), so each window no longer loses a whole round trip."""
        with self._cond:
            now = self._clock()
            if round_trip is not None:
                self._trips.append(round_trip)
            back = self.credit() if round_trip is not None else 0.0
            slot.at = max(slot.at, now - back)
            slot.done = True
            self._cond.notify_all()

    def credit(self) -> float:
        """How much earlier than its answer an answered request is taken to have been counted:
        half the fastest of the last round trips. Safe as long as Fortnox spends no more than
        half of its fastest round trip working on a request (the rest is the network, which a
        request crosses before Fortnox counts it and an answer after): over a 150 ms network
        that is 75 ms a window regained; on loopback (a trip of a millisecond or two) it is
        below the 5 ms margin."""
        return min(self._trips) / 2 if self._trips else 0.0
