"""Small test doubles several test modules share, written once: a token cache in memory and
a clock that moves only when told to (and records the sleeps it was asked for)."""

from __future__ import annotations

from limefort.core.models import TokenRecord


class MemoryTokens:
    """A TokenCache in memory. `events`, when given, logs every load and save in order (the
    refresh-token tests check that a rotated token is saved before it is used); `saved` keeps
    every (name, record) saved."""

    def __init__(
        self, records: dict[str, TokenRecord] | None = None, events: list[str] | None = None
    ) -> None:
        self.records = dict(records or {})
        self.events = events
        self.saved: list[tuple[str, TokenRecord]] = []

    def load(self, name: str) -> TokenRecord | None:
        if self.events is not None:
            self.events.append("load")
        return self.records.get(name)

    def save(self, name: str, record: TokenRecord) -> None:
        if self.events is not None:
            self.events.append(f"save:{record.refresh_token}")
        self.records[name] = record
        self.saved.append((name, record))


class ManualClock:
    """Monotonic seconds that move only by `sleep` (which records each wait) or by hand."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
