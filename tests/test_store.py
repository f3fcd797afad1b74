"""The state store on an in-memory database (and one on disk for modes and WAL)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from limefort.core.errors import LockHeld, StateError
from limefort.core.models import TokenRecord
from limefort.state.lock import RunLock
from limefort.state.store import MIGRATIONS, Store


def test_migrations_are_named_and_recorded() -> None:
    s = Store.memory()
    names = [r["name"] for r in s.db["_migrations"].rows]
    assert names == [n for n, _ in MIGRATIONS]
    assert s.migrate() == []  # idempotent
    assert {"cursors", "customers", "documents", "quarantine", "runs", "tokens"} <= set(
        s.db.table_names()
    )


def test_customer_intent_then_done_and_index() -> None:
    s = Store.memory()
    with s.transaction():
        s.customer_intent("c1", orgnr="556036-0793", name="A", payload="{}", hash="h")
    assert [r.company_id for r in s.pending_customers()] == ["c1"]
    with s.transaction():
        s.customer_done(
            "c1", customer_number="5", orgnr="556036-0793", name="A", payload="{}", hash="h"
        )
    assert s.pending_customers() == [] and s.count_customers() == 1
    assert s.index_by_orgnr("556036-0793") == ["5"]


def test_document_intent_lifecycle_and_counts() -> None:
    s = Store.memory()
    kw = dict(
        kind="invoice",
        idem_key="limego:deal:d1",
        company_id="c1",
        customer_number="5",
        name="x",
        value="1.00",
        won_at="t",
    )
    with s.transaction():
        s.document_intent("d1", **kw)  # type: ignore[arg-type]
    assert [r.deal_id for r in s.pending_documents()] == ["d1"]
    with s.transaction():
        s.document_done("d1", document_number="100")
    assert s.count_documents() == {"invoice": 1, "order": 0}
    with s.transaction():
        s.documents_skipped([("d2", "invoice", "old", "t"), ("d1", "invoice", "x", "t")])
    assert s.document("d1").state == "done"  # type: ignore[union-attr]  # a done row is never overwritten
    assert s.document("d2").state == "skipped"  # type: ignore[union-attr]


def test_quarantine_counts_attempts_and_keeps_first_seen() -> None:
    s = Store.memory()
    with s.transaction():
        s.quarantine("deal:1", name="n", reason="r1", hint="h", source_hash="a")
    first = s.all_quarantined()[0]
    with s.transaction():
        s.quarantine("deal:1", name="n", reason="r2", hint="h", source_hash="b")
    q = s.all_quarantined()[0]
    assert q.attempts == 2 and q.reason == "r2" and q.first_seen == first.first_seen
    with s.transaction():
        s.release("deal:1")
    assert s.all_quarantined() == []


def test_a_failed_transaction_leaves_nothing() -> None:
    s = Store.memory()
    with pytest.raises(RuntimeError), s.transaction():
        s.quarantine("deal:1", name="n", reason="r", hint="h", source_hash=None)
        raise RuntimeError("boom")
    assert s.all_quarantined() == []


def test_tokens_round_trip_and_refuse_to_hide_in_a_transaction() -> None:
    s = Store.memory()
    rec = TokenRecord(access_token="a", expires_at=5.0, refresh_token="r", refresh_issued_at=1.0)
    s.save("fortnox", rec)
    assert s.load("fortnox") == rec
    with pytest.raises(RuntimeError), s.transaction():
        s.save("fortnox", rec)


def test_file_store_is_wal_and_0600(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    s = Store.open(path)
    with s.transaction():
        s.set_meta("k", "v")
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert path.stat().st_mode & 0o777 == 0o600
    for extra in ("-wal", "-shm"):
        p = Path(str(path) + extra)
        if p.exists():
            assert p.stat().st_mode & 0o777 == 0o600
    s.close()


def test_corrupt_missing_and_newer_state_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="^state.path: .*not a readable limefort state file"):
        Store.open(bad)
    with pytest.raises(StateError, match="no state file"):
        Store.open(tmp_path / "none.db", create=False)
    with pytest.raises(StateError, match="does not exist"):
        Store.open(tmp_path / "nodir" / "x.db")
    newer = tmp_path / "newer.db"
    Store.open(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute("INSERT INTO _migrations VALUES ('999_future', 'x')")
    conn.commit()
    conn.close()
    with pytest.raises(StateError, match="newer limefort"):
        Store.open(newer)


def test_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    with RunLock(state), pytest.raises(LockHeld, match=r"pid \d+"):
        RunLock(state).acquire()
    with RunLock(state):  # released
        pass
