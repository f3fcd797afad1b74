"""Records held back and records with notes: the quarantine (reason, hint, attempts, source
hash) and the warnings kept on a record until it changes (design rule 15)."""

from __future__ import annotations

from collections.abc import Iterable

from limefort.core.models import (
    QuarantineEntry,
    RecordWarning,
)
from limefort.state.rows import (
    Tables,
    _entry,
    _rows_where_in,
    _select,
    _upsert,
)


class HeldRecords(Tables):
    """The quarantine and the warnings kept on records."""

    def quarantined(self, keys: Iterable[str]) -> dict[str, QuarantineEntry]:
        return {r["key"]: _entry(r) for r in _rows_where_in(self.conn, "quarantine", "key", keys)}

    def quarantine(
        self,
        key: str,
        *,
        name: str | None,
        reason: str,
        hint: str,
        source_hash: str | None,
        waits_for: str | None = None,
    ) -> None:
        """`waits_for`: the key of the record that must reach Fortnox first (its company)."""
        existing = self.quarantined([key]).get(key)
        now = self.now_iso()
        _upsert(
            self.conn,
            "quarantine",
            {
                "key": key, "name": name, "reason": reason, "hint": hint,
                "attempts": (existing.attempts if existing else 0) + 1,
                "source_hash": source_hash,
                "first_seen": existing.first_seen if existing else now,
                "last_seen": now, "waits_for": waits_for,
            },
            pk="key",
        )  # fmt: skip

    def waiting_ready(self) -> list[str]:
        """Quarantined records whose company they waited for is now in Fortnox."""
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT q.key FROM quarantine q JOIN customers c "
                "ON q.waits_for = 'company:' || c.company_id "
                "WHERE c.state = 'done' ORDER BY q.first_seen, q.key"
            )
        ]

    def release(self, key: str) -> None:
        self.conn.execute("DELETE FROM quarantine WHERE key = ?", [key])

    def all_quarantined(self) -> list[QuarantineEntry]:
        return [_entry(r) for r in _select(self.conn, "quarantine", order_by="first_seen, key")]

    def set_warning(
        self,
        key: str,
        kind: str,
        text: str,
        *,
        field: str | None = None,
        held: str | None = None,
        sent: str | None = None,
    ) -> None:
        """Keeps `since` while the text stays the same."""
        row = self.conn.execute(
            "SELECT text, since FROM warnings WHERE key = ? AND kind = ?", [key, kind]
        ).fetchone()
        since = row[1] if row is not None and row[0] == text else self.now_iso()
        _upsert(
            self.conn,
            "warnings",
            {
                "key": key, "kind": kind, "text": text, "since": since,
                "field": field, "held": held, "sent": sent,
            },
            pk="key, kind",
        )  # fmt: skip

    def replace_field_warnings(
        self, key: str, notes: Iterable[tuple[str, str, str | None, str | None]]
    ) -> None:
        """The values the record's last write cut, cleaned away or left blank, as
        (field, text, held, sent), one row per field: those of an earlier write go (the record
        changed), those still true keep their `since`."""
        notes = list(notes)
        keep = [f"field:{field}" for field, *_ in notes]
        marks = ",".join("?" * len(keep))
        self.conn.execute(
            "DELETE FROM warnings WHERE key = ? AND kind LIKE 'field:%'"
            + (f" AND kind NOT IN ({marks})" if keep else ""),
            [key, *keep],
        )
        for field, text, held, sent in notes:
            self.set_warning(key, f"field:{field}", text, field=field, held=held, sent=sent)

    def records_with_warnings(self, kind: str = "") -> int:
        """Records with a warning (of kinds starting `kind`: "field:" for values cut)."""
        return int(
            self.conn.execute(
                "SELECT count(DISTINCT key) FROM warnings WHERE kind LIKE ?", [kind + "%"]
            ).fetchone()[0]
        )

    def clear_warning(self, key: str, kind: str | None = None) -> None:
        if kind is None:
            self.conn.execute("DELETE FROM warnings WHERE key = ?", [key])
        else:
            self.conn.execute("DELETE FROM warnings WHERE key = ? AND kind = ?", [key, kind])

    def all_warnings(self) -> list[RecordWarning]:
        return [
            RecordWarning(
                r["key"],
                r["kind"],
                r["text"],
                r["since"],
                r.get("field"),
                r.get("held"),
                r.get("sent"),
            )
            for r in _select(self.conn, "warnings", order_by="since, key, kind")
        ]
