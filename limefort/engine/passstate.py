"""What one pass has done so far: counts, problems, and the few facts the pass's parts share.

It sits below gather, execute and reconcile so that none of them imports another upwards.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from limefort.core.errors import EX_OK, EX_OTHER_WRITER, EX_PARTIAL


class PassAborted(Exception):
    """Fortnox or Lime Go stayed unreachable: the pass stops, nothing is lost."""


class AnotherWriter(Exception):
    """Another installation writes to this Fortnox tenant (DESIGN rule 14): the pass stops
    before its next write, with everything done so far committed."""


class Stop(Exception):
    """A stop was requested (SIGTERM): the pass ends between two records."""


@dataclass
class PassResult:
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (key, what went wrong)
    warnings: list[tuple[str, str]] = field(
        default_factory=list
    )  # (key, what a person should know)
    aborted: str | None = None
    other_writer: str | None = None  # why the pass stopped: another installation writes
    stopped: bool = False  # a stop was requested (SIGTERM) and honoured between records
    # What still needs attention after the pass (quarantined, pending, drifted) and was not
    # already among `problems`: named on stderr every pass, never summed up as "in line".
    outstanding: list[tuple[str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.other_writer:
            return EX_OTHER_WRITER
        if self.aborted or self.problems or self.stopped:
            return EX_PARTIAL
        return EX_OK


@dataclass
class PassState:
    """Shared by the parts of one pass (never across passes)."""

    result: PassResult = field(default_factory=PassResult)
    stop_event: threading.Event = field(default_factory=threading.Event)
    # Something of the current phase is neither in Fortnox nor quarantined: hold its cursor.
    incomplete: bool = False
    # Keys whose intent this pass recorded (a POST was tried): checked again at the end.
    sent: set[str] = field(default_factory=set)
    # Fortnox failures in a row that retries could not cure.
    streak: int = 0

    def check_stop(self) -> None:
        if self.stop_event.is_set():
            raise Stop

    def problem(self, key: str, text: str) -> None:
        self.result.problems.append((key, text))

    def count(self, name: str, n: int = 1) -> None:
        self.result.counts[name] += n


class Progress(Protocol):
    """What the sync core calls while it works. Every method is cheap and never raises."""

    def total(self, n: int) -> None:
        """`n` more units of work are now known: backfill, deals to create documents for;
        sync, Fortnox writes a page's plan holds."""

    def read(self, n: int = 1) -> None:
        """`n` records were read from Lime Go."""

    def advance(self, n: int = 1, *, written: int = 0) -> None:
        """`n` units of work are done, `written` of them (or of other work) reached Fortnox."""


class NullProgress:
    """Where a pass reports when nobody watches."""

    def total(self, n: int) -> None:
        pass

    def read(self, n: int = 1) -> None:
        pass

    def advance(self, n: int = 1, *, written: int = 0) -> None:
        pass
