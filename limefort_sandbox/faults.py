"""Seeded fault injection for the sandbox servers.

A `FaultRule` says what goes wrong, how often and for which requests; `Faults` holds the rules
of one server and decides, request by request, whether one applies. The decision is drawn
from a seeded `random.Random`, so a test that injects 30 % 503s sees the same requests fail
on every run (given the same order of requests).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

#: What each kind does (the server plumbing in `http.py` carries it out):
#: "429" / "500" / "503": answer that status with the server's own error body, request not applied.
#: "reset": close the socket without answering; the request is not applied.
#: "slow": sleep `delay` seconds, then answer normally (a client with a shorter timeout
#:   gives up while the server still applies the request).
#: "ghost500": apply the request, then answer 500 (the write happened; the client can't know).
#: "ghostdrop": apply the request, then close the connection without answering.
KINDS = ("429", "500", "503", "reset", "slow", "ghost500", "ghostdrop")


@dataclass
class FaultRule:
    kind: str
    rate: float = 1.0
    methods: tuple[str, ...] = ("GET", "POST", "PUT")
    path_prefix: str = "/"
    times: int | None = None  # only the next `times` requests that get the fault, then gone
    delay: float = 1.0  # seconds, for kind "slow"
    after: int = 0  # let this many matching requests through untouched first

    def __post_init__(self) -> None:
        self.kind = str(self.kind)
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (known: {', '.join(KINDS)})")
        if not 0.0 <= float(self.rate) <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, got {self.rate!r}")
        if isinstance(self.methods, str):
            self.methods = (self.methods,)
        self.methods = tuple(m.upper() for m in self.methods)
        if self.times is not None and self.times < 0:
            raise ValueError(f"times must be >= 0, got {self.times!r}")
        if self.delay < 0:
            raise ValueError(f"delay must be >= 0, got {self.delay!r}")

    def matches(self, method: str, path: str) -> bool:
        return method.upper() in self.methods and path.startswith(self.path_prefix)


class Faults:
    """The fault rules of one server. Rules are tried in the order they were added; the first
    one that matches the request and wins its dice roll applies."""

    def __init__(self, seed: int = 0) -> None:
        self._rules: list[FaultRule] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.injected = 0  # faults applied so far

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def seed(self, n: int) -> None:
        with self._lock:
            self._rng.seed(n)

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def pick(self, method: str, path: str) -> FaultRule | None:
        """The rule to apply to this request, or None. Counts the rule's `times` down."""
        with self._lock:
            for rule in self._rules:
                if rule.times == 0 or not rule.matches(method, path):
                    continue
                if rule.after > 0:
                    rule.after -= 1
                    continue
                if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                    continue
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                self.injected += 1
                return rule
        return None
