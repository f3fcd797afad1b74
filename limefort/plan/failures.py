"""What a failure means: the one table the executor asks after a Fortnox error (keep the intent,
refused, not sent, stale link, drift instead), and when a pending intent has settled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from limefort.core.errors import ApiError, NotFound, ServiceError, TransientError, UnknownOutcome
from limefort.core.explain import explain
from limefort.plan.actions import (
    Action,
    AdoptCustomer,
    CreateDocument,
    RecordDrift,
    UpdateCustomer,
    UpdateDocument,
    key_of,
)

# --- what a failure means ---------------------------------------------------------------------

# Fortnox refusals caused by Fortnox's settings or limefort's configuration, not by the record:
# account not found, EasyVat needs an account, no licence, no scope, unknown field name.
ACCOUNT_NOT_FOUND = 2000423
CUSTOMER_NOT_FOUND = 2000433
SETTING_CODES = frozenset({ACCOUNT_NOT_FOUND, 2004167, 2001101, 2000663, 2001399})

# After this many Fortnox failures in a row that retries could not cure, the service is down:
# stop the pass instead of hammering it record by record (cursors stay where they were).
MAX_CONSECUTIVE_TRANSIENT = 3


@dataclass(frozen=True)
class KeepIntent:
    """The write may or may not have been applied: keep the intent, reconcile by its key."""

    in_flight: bool  # we stopped waiting (timeout): Fortnox may still be applying it


@dataclass(frozen=True)
class Refused:
    """Fortnox refused the record: drop any intent and quarantine it with reason and hint."""

    reason: str
    hint: str


@dataclass(frozen=True)
class NotSent:
    """Certainly not applied and worth trying again: next pass (cursor held)."""

    why: str
    stop_pass: bool = False  # Fortnox is down: stop the pass, nothing is lost


@dataclass(frozen=True)
class StaleLink:
    """The Fortnox customer behind a link no longer exists: forget the link so the company
    is created or adopted afresh."""

    customer_number: str


@dataclass(frozen=True)
class DriftInstead:
    """Fortnox refused to update a document to follow its deal: name the drift instead."""

    record: RecordDrift


Outcome = KeepIntent | Refused | NotSent | StaleLink | DriftInstead


def _int_code(code: object) -> int | None:
    try:
        return int(str(code))
    except ValueError:
        return None


def after_failure(
    action: Action, error: ServiceError, *, streak: int = 0, account_number: str = ""
) -> Outcome:
    """What a failed action means. `streak`: failures in a row before this one."""
    if isinstance(action, UpdateDocument):
        return after_update_failure(action, error, streak=streak)
    if isinstance(error, UnknownOutcome):
        return KeepIntent(in_flight=error.in_flight)
    if isinstance(error, TransientError):
        return NotSent(str(error), stop_pass=streak + 1 >= MAX_CONSECUTIVE_TRANSIENT)
    if isinstance(error, ApiError):
        gone = isinstance(error, NotFound) or _int_code(error.code) == CUSTOMER_NOT_FOUND
        if gone:
            match action:
                case UpdateCustomer(customer_number=n):
                    return StaleLink(n)
                case AdoptCustomer(customer=str(n)):
                    return StaleLink(n)
                case CreateDocument(customer=str(n)):
                    return StaleLink(n)
        key = key_of(action)
        return Refused(explain(error), refusal_hint(key, error, account_number))
    return NotSent(str(error), stop_pass=streak + 1 >= MAX_CONSECUTIVE_TRANSIENT)


def refusal_hint(key: str, exc: ApiError, account_number: str = "") -> str:
    """What to do about a Fortnox refusal. Some codes are about Fortnox's settings or the
    configuration, not the record: editing it in Lime Go would not help."""
    retry = f"then run `limefort retry {key}`"
    code = _int_code(exc.code)
    if code == ACCOUNT_NOT_FOUND:
        if account_number.strip():
            return (
                f"check that account {account_number.strip()} ([sync] "
                f"account_number) exists in Fortnox's chart of accounts, {retry}"
            )
        return (
            "the row has no sales account and the Fortnox company has no default one: set "
            f"[sync] account_number or article_number, or a default sales account in "
            f"Fortnox, {retry}"
        )
    if code in SETTING_CODES:
        return f"fix the Fortnox setting or limefort configuration the reason names, {retry}"
    return f"fix the record in Lime Go (the next pass retries it) or run `limefort retry {key}`"


# --- pending intents --------------------------------------------------------------------------


def after_update_failure(
    action: UpdateDocument, error: ServiceError, *, streak: int = 0
) -> Outcome:
    """A PUT of the same fields is harmless to repeat: anything but a refusal is tried again
    next pass (the deal's cursor is held); a refusal names the drift instead."""
    if isinstance(error, ApiError) and not isinstance(error, UnknownOutcome):
        return DriftInstead(
            RecordDrift(
                action.deal, action.document, action.changes, f"Fortnox refused: {explain(error)}"
            )
        )
    return NotSent(str(error), stop_pass=streak + 1 >= MAX_CONSECUTIVE_TRANSIENT)


def settled(outcome: str | None, since: datetime | None, now: datetime, timeout: float) -> bool:
    """Could a POST behind an intent still be running at Fortnox? A lost answer (reset, 5xx)
    or a certain refusal means Fortnox finished; otherwise (a timeout, or our process died
    mid-request) wait until twice the request timeout has passed before believing a search
    that finds nothing."""
    if outcome in ("lost", "not_sent"):
        return True
    if since is None:
        return True
    return (now - since).total_seconds() >= 2 * timeout
