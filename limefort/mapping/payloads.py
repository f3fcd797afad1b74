"""Payloads compared and stored: the canonical JSON, its hash, the changed fields and the body of
an update."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import simplejson


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _canonical(value: Any) -> str:
    # Decimals are written as their exact digits, so 1234.50 and 1234.5 differ: what Fortnox
    # got is what is compared.
    return simplejson.dumps(
        value,
        use_decimal=True,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        default=_json_default,
    )


def payload_hash(payload: Mapping[str, Any]) -> str:
    """sha256 of canonical JSON: the same payload hashes the same in every run."""
    return hashlib.sha256(_canonical(payload).encode("ascii")).hexdigest()


def changed_fields(
    old: Mapping[str, Any] | None, new: Mapping[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """Field -> (old, new) for what differs; a field gone from `new` appears with new None."""
    old = old or {}
    changes: dict[str, tuple[Any, Any]] = {}
    for name, value in new.items():
        if name not in old or _canonical(old[name]) != _canonical(value):
            changes[name] = (old.get(name), value)
    for name, value in old.items():
        if name not in new:
            changes[name] = (value, None)
    return changes


API_BLANK = "API_BLANK"  # what Fortnox takes to empty a field (a PUT leaves out what is absent)


def update_body(changes: Mapping[str, tuple[Any, Any]]) -> dict[str, Any]:
    return {name: API_BLANK if new is None else new for name, (_, new) in changes.items()}


def to_json(payload: Mapping[str, Any]) -> str:
    return simplejson.dumps(payload, use_decimal=True, ensure_ascii=False, default=_json_default)


def from_json(s: str) -> dict[str, Any]:
    value = simplejson.loads(s, use_decimal=True)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value
