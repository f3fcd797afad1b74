"""One token record from a token endpoint's answer, for both clients.

Lime Go (client credentials) and Fortnox (client credentials, authorization code, refresh)
answer alike: `access_token`, `expires_in`, `scope`, and for Fortnox's refresh grant a new
single-use `refresh_token`. Every token is handed to the redactor the moment it is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from limefort.clients.redaction import REDACTOR
from limefort.core.errors import TransientError
from limefort.core.models import TokenRecord


def record_from_answer(
    service: str,
    body: Any,
    now: float,
    *,
    default_lifetime: float,
    previous: TokenRecord | None = None,
    tenant_id: str | None = None,
) -> TokenRecord:
    """`previous`: the record being replaced (its refresh token stays when no new one came)."""
    if not isinstance(body, Mapping) or not isinstance(body.get("access_token"), str):
        raise TransientError(service, "the token endpoint answered without an access_token")
    access = body["access_token"]
    if not access:
        raise TransientError(service, "the token endpoint answered without an access_token")
    REDACTOR.add(access)
    refresh = body.get("refresh_token")
    if refresh:
        REDACTOR.add(str(refresh))
    try:
        lifetime = float(body.get("expires_in") or default_lifetime)
    except (TypeError, ValueError):
        lifetime = default_lifetime
    scope = body.get("scope")
    return TokenRecord(
        access_token=access,
        expires_at=now + lifetime,
        refresh_token=str(refresh) if refresh else (previous.refresh_token if previous else None),
        refresh_issued_at=now if refresh else (previous.refresh_issued_at if previous else None),
        scope=str(scope) if scope else None,
        tenant_id=tenant_id or (previous.tenant_id if previous else None),
        obtained_at=now,
    )


class TokenCache(Protocol):
    """Where token providers keep tokens between runs (implemented by the store).

    Lives beside the token record, below both clients, so both import it without a cycle.
    """

    def load(self, name: str) -> TokenRecord | None: ...

    def save(self, name: str, record: TokenRecord) -> None:
        """Must be durable (committed) when it returns: a rotated refresh token depends on it."""
        ...
