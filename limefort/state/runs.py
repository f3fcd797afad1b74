"""Passes and where they stopped: the run log, the cursors, and the small key/value meta table."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from limefort.core.models import TokenRecord
from limefort.state.rows import (
    Tables,
    _rows_where_in,
    _select,
    _upsert,
)


class RunLog(Tables):
    """Passes and where they stopped: the run log, the cursors, and the small key/value meta table."""

    def start_run(self, command: str) -> int:
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO runs (command, started_at) VALUES (?, ?)", [command, self.now_iso()]
            )
        return int(cur.lastrowid or 0)

    def finish_run(
        self, run_id: int, exit_code: int, counts: dict[str, int], reason: str | None = None
    ) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ?, counts = ?, reason = ? "
                "WHERE id = ?",
                [self.now_iso(), exit_code, json.dumps(counts), reason, run_id],
            )

    def runs(self, limit: int = 10) -> list[dict[str, Any]]:
        rows = list(_select(self.conn, "runs", order_by="id desc", limit=limit))
        for r in rows:
            r["counts"] = json.loads(r["counts"]) if r.get("counts") else {}
        return rows

    def last_success(self) -> str | None:
        row = self.conn.execute(
            "SELECT finished_at FROM runs WHERE exit_code = 0 ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return row[0] if row else None

    def cursors(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT name, value FROM cursors").fetchall())

    def get_cursor(self, name: str) -> datetime | None:
        row = self.conn.execute("SELECT value FROM cursors WHERE name = ?", [name]).fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    def set_cursor(self, name: str, value: datetime) -> None:
        _upsert(
            self.conn,
            "cursors",
            {"name": name, "value": value.isoformat(), "updated_at": self.now_iso()},
            pk="name",
        )

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        _upsert(self.conn, "meta", {"key": key, "value": value}, pk="key")

    def load(self, name: str) -> TokenRecord | None:
        row = next(_rows_where_in(self.conn, "tokens", "name", [name]), None)
        if not row:
            return None
        return TokenRecord(
            access_token=row["access_token"],
            expires_at=row["expires_at"] or 0.0,
            refresh_token=row["refresh_token"],
            refresh_issued_at=row["refresh_issued_at"],
            scope=row["scope"],
            tenant_id=row["tenant_id"],
        )

    def save(self, name: str, record: TokenRecord) -> None:
        """Committed when it returns: a rotated refresh token must be durable before use."""
        if self.conn.in_transaction:
            # Inside an open transaction this would only be a savepoint, lost on a crash.
            raise RuntimeError("tokens must be saved outside any store transaction")
        with self.transaction():
            _upsert(
                self.conn,
                "tokens",
                {
                    "name": name,
                    "access_token": record.access_token,
                    "expires_at": record.expires_at,
                    "refresh_token": record.refresh_token,
                    "refresh_issued_at": record.refresh_issued_at,
                    "scope": record.scope,
                    "tenant_id": record.tenant_id,
                    "updated_at": self.now_iso(),
                },
                pk="name",
            )
