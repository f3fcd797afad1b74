"""Drift (design rule 12): each document's baseline as limefort made it, the changes found in
Fortnox since, and the operator's acknowledgements."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from limefort.core.models import DriftEntry
from limefort.state.rows import (
    Tables,
    _drift,
    _rows_where_in,
    _select,
    _upsert,
)


class DriftTables(Tables):
    """Document baselines, drift found in Fortnox, acknowledgements."""

    def document_baseline(self, deal_id: str, *, currency: str | None) -> None:
        """The deal's currency beside the value, name and company a document row keeps."""
        self.conn.execute(
            "UPDATE documents SET currency = ? WHERE deal_id = ?", [currency, deal_id]
        )

    def known_currencies(self) -> set[str]:
        """The currencies of the deals limefort made documents for (`check` asks Fortnox
        about each: automatic rates)."""
        return {
            r[0]
            for r in self.conn.execute(
                "SELECT DISTINCT currency FROM documents WHERE currency IS NOT NULL"
            )
        }

    def customer_countries(self) -> dict[str, str]:
        """Company id -> the CountryCode last sent for its customer."""
        return {
            r[0]: r[1]
            for r in self.conn.execute(
                "SELECT company_id, json_extract(payload, '$.CountryCode') FROM customers "
                "WHERE state = 'done' AND json_valid(payload)"
            )
            if r[1]
        }

    def document_revised(
        self,
        deal_id: str,
        *,
        value: str | None,
        name: str | None,
        company_id: str | None,
        customer_number: str | None,
    ) -> None:
        """limefort updated the document in Fortnox to follow its deal: the new baseline."""
        self.conn.execute(
            "UPDATE documents SET value = ?, name = ?, company_id = ?, "
            "customer_number = coalesce(?, customer_number), revised_at = ? WHERE deal_id = ?",
            [value, name, company_id, customer_number, self.now_iso(), deal_id],
        )

    def drift_entries(self, keys: Iterable[str]) -> dict[str, DriftEntry]:
        return {r["key"]: _drift(r) for r in _rows_where_in(self.conn, "drift", "key", keys)}

    def record_drift(
        self, key: str, *, document: str, changes: Mapping[str, tuple[str | None, str | None]]
    ) -> None:
        """Unacknowledged from now; `since` stays that of a drift not yet acknowledged."""
        now = self.now_iso()
        old = self.drift_entries([key]).get(key)
        since = old.since if old is not None and not old.acked else now
        _upsert(
            self.conn,
            "drift",
            {
                "key": key, "document": document,
                "changes": json.dumps({k: list(v) for k, v in changes.items()}),
                "since": since, "acked_at": None, "updated_at": now,
            },
            pk="key",
        )  # fmt: skip

    def clear_drift(self, key: str) -> None:
        self.conn.execute("DELETE FROM drift WHERE key = ?", [key])

    def unacked_drift(self) -> list[DriftEntry]:
        return [
            _drift(r)
            for r in _select(self.conn, "drift", "acked_at IS NULL", order_by="since, key")
        ]

    def ack_drift(self, keys: Iterable[str] | None) -> list[str]:
        """Acknowledge these keys' drift (None: all of it); the keys that had some, in order."""
        entries = (
            self.unacked_drift()
            if keys is None
            else [e for e in self.drift_entries(keys).values() if not e.acked]
        )
        now = self.now_iso()
        for e in entries:
            self.conn.execute(
                "UPDATE drift SET acked_at = ?, updated_at = ? WHERE key = ?", [now, now, e.key]
            )
        return [e.key for e in entries]
