"""One exception tree.

`UserError` and its children are things the user can fix: the CLI prints their message as one
line (no traceback) and exits with `exit_code`. Everything else is a bug and shows its traceback
under `-v`. Service errors carry what the remote side said so quarantine reasons can quote it.
"""

from __future__ import annotations

from limefort.core.privacy import printable

EX_OK = 0
EX_PARTIAL = 1  # pass finished, some records quarantined, pending or failed
EX_USAGE = 2  # usage or configuration error
EX_AUTH = 3  # authentication rejected
EX_OTHER_WRITER = 4  # another installation writes to this Fortnox tenant: stopped before writing
EX_TEMPFAIL = 75  # another limefort holds the lock (sysexits.h EX_TEMPFAIL)


class LimefortError(Exception):
    """Base of everything limefort raises on purpose."""


class UserError(LimefortError):
    exit_code = EX_USAGE


class ConfigError(UserError):
    """A bad or missing configuration key. The message names the key first."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


class StateError(UserError):
    """The state file is missing, locked by SQLite, corrupt or from a newer limefort."""


class AuthError(UserError):
    """Credentials were rejected; the message says what to do."""

    exit_code = EX_AUTH


class LockHeld(UserError):
    exit_code = EX_TEMPFAIL


class ServiceError(LimefortError):
    """A remote service answered with an error, or could not be reached."""

    def __init__(
        self,
        service: str,
        message: str,
        *,
        status: int | None = None,
        code: str | int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.service = service
        self.status = status
        self.code = code
        # A service's own words, shown to a person: one printable line, whatever it sent.
        self.message = message = printable(message)
        self.request_id = request_id
        parts = [f"{service}"]
        if status is not None:
            parts.append(f"HTTP {status}")
        if code is not None:
            parts.append(f"code {code}")
        super().__init__(f"{' '.join(parts)}: {message}")


class TransientError(ServiceError):
    """429, 5xx, timeouts, connection errors: worth trying again later (retries exhausted)."""


class UnknownOutcome(ServiceError):
    """A write whose answer was lost (timeout, reset, 5xx): it may or may not have been applied.

    Never re-send blindly: reconcile by searching for the idempotency key first.
    """

    #: True when we stopped waiting (a timeout) rather than heard the server end the request:
    #: the write may still be applied after this was raised, so a search that finds nothing
    #: right away proves nothing yet.
    in_flight: bool = False


class ApiError(ServiceError):
    """A permanent rejection (4xx other than 401/429): the record itself is at fault."""


class NotFound(ApiError):
    pass
