"""Fortnox's error codes in plain words: pure, shared by the client, the planner's failure
table and `check`."""

from __future__ import annotations

from typing import Any

from limefort.core.errors import ServiceError

SERVICE = "Fortnox"


_PLAIN: dict[int, str] = {
    2000433: "the customer does not exist in Fortnox",
    2000637: "the customer number is already used by another Fortnox customer",
    2000359: "a field holds characters Fortnox does not accept",
    2000106: "a field that must be alphanumeric holds other characters",
    2000108: "a field that must be numeric holds other characters",
    2000310: "Fortnox rejected the login (invalid credentials)",
    2000311: "Fortnox rejected the login (invalid credentials)",
    2001399: "a field name Fortnox does not know (check the [mapping] tables)",
    2002115: "the request body was not valid JSON",
    2001392: "the request body was empty or had the wrong shape",
    2000423: (
        "the bookkeeping account does not exist in Fortnox, or the company has no preferred "
        "sales account for a row without one (check [sync] account_number, or set one under "
        "Inställningar → Bokföring → Fördefinierade konton; `limefort check` says which)"
    ),
    2001103: (
        "the Fortnox company has no licence to use the API (integrations): its administrator "
        "activates it in Fortnox, then run `limefort check` again"
    ),
    2004167: (
        "a row with a custom VAT rate needs a sales account (EasyVat): set [sync] "
        "account_number or article_number"
    ),
    1000003: "Fortnox had an internal error (system exception); try again later",
}


def _plain(code: int | None, scope: str | None = None) -> str:
    scope_name = f"'{scope}'" if scope else "the needed"
    if code == 2001101:
        return (
            f"the Fortnox company has no licence for the {scope_name} module: buy or activate "
            "it in Fortnox, or set [sync] deal_target to something the company has"
        )
    if code == 2000663:
        return (
            f"the integration is not authorised for the {scope_name} scope: add it to "
            "[fortnox] scopes and to the app, then consent again (`limefort auth fortnox`)"
        )
    return _PLAIN.get(code or 0, "")


def explain(
    code: int | str | ServiceError | None,
    message: str | None = None,
    *,
    scope: str | None = None,
) -> str:
    """Fortnox's error code in plain English, with Fortnox's own words after it.

    Also takes a whole ServiceError (as the sync does for quarantine reasons): then the answer
    is the error's one-line form, with the plain words added if they are not there yet.
    """
    if isinstance(code, ServiceError):
        exc = code
        text = exc.message
        if exc.service == SERVICE:
            plain = _plain(int_code(exc.code), scope)
            if plain and plain not in text:
                text = f"{plain} (Fortnox: {text})"
        head = [exc.service]
        if exc.status is not None:
            head.append(f"HTTP {exc.status}")
        if exc.code is not None:
            head.append(f"code {exc.code}")
        return f"{' '.join(head)}: {text}"
    plain = _plain(int_code(code), scope)
    message = (message or "").strip()
    if plain and message:
        return f"{plain} (Fortnox: {message})"
    return plain or message or "Fortnox gave no reason"


def int_code(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
