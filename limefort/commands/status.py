"""`limefort status`: the state file read only (no migration, no lock taken), shown as lines or
JSON."""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from limefort import plan
from limefort.commands.common import App
from limefort.core.errors import (
    EX_OK,
    StateError,
)
from limefort.core.keys import company_key, deal_id_of_ref, deal_key
from limefort.core.privacy import mask_personnummer, shown
from limefort.engine.runner import summarise
from limefort.engine.sync import duplicates as sync_duplicates
from limefort.state import installation
from limefort.state.lock import lock_path
from limefort.state.store import Store


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def lock_held(state_path: Path) -> bool:
    """Is a limefort working on this state file right now? A shared, non-blocking flock on the
    lock file, let go at once: it fails only while a pass holds the exclusive one."""
    try:
        fd = os.open(lock_path(state_path), os.O_RDONLY)
    except OSError:  # no lock file: no pass ever ran here
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def local_time(iso: str | None) -> str:
    """A stored UTC time as this machine's local time with its zone: `2026-11-27 14:05:03 CET`."""
    if not iso:
        return "-"
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def run_state(run: dict[str, Any], *, newest_unfinished: bool, lock_held: bool) -> str:
    """finished, running (the newest unfinished run while the lock is held) or interrupted."""
    if run.get("finished_at"):
        return "finished"
    return "running" if newest_unfinished and lock_held else "interrupted"


def _run_line(r: dict[str, Any]) -> str:
    state = r.get("state")
    if state == "running":
        return f"running since {local_time(r['started_at'])}"
    if state == "interrupted":
        return (
            f"interrupted: started {local_time(r['started_at'])}, never finished "
            "(killed or crashed; the next pass goes on from there)"
        )
    clean = r.get("exit_code") in (0, None)
    counts = f": {summarise(r['counts'], clean=clean)}" if r.get("counts") else ""
    why = ""
    if r.get("reason") and r.get("exit_code"):
        # Exit 1's records are listed below (quarantined, pending, drift, duplicates).
        why = (
            "; why: records needed attention (listed below, or in the log)"
            if r["exit_code"] == 1
            else f"; why: {r['reason']}"
        )
    return (
        f"{local_time(r['started_at'])} -> {local_time(r['finished_at'])}, "
        f"exit {r['exit_code']}{counts}{why}"
    )


def status_lines(data: dict[str, Any]) -> list[str]:
    out = [f"State file:  {data.get('state_path', '')}"]
    for name, value in data["cursors"].items():
        out.append(f"Cursor {name + ':':<10} {local_time(value)}")
    docs = data["documents"]
    out.append(
        f"In Fortnox:  {data['customers']} customers, {docs['invoice']} invoices, "
        f"{docs['order']} orders ({data['skipped_historical']} deals won before sync.start skipped)"
    )
    lr = data["last_run"]
    if lr:
        out.append(f"Last run:    {lr['command']} {_run_line(lr)}")
    else:
        out.append("Last run:    none yet")
    out.append(f"Quarantined: {len(data['quarantined'])}")
    for q in data["quarantined"]:
        name = repr(q["name"]) if q["name"] is not None else "(no name)"
        out.append(
            f"  {q['key']}  {name}: {q['reason']}\n      hint: {q['hint']}"
            f"  (attempts {q['attempts']}, since {local_time(q['since'])})"
        )
    if data["duplicates"]:
        out.append(f"Duplicates:  {len(data['duplicates'])} records are in Fortnox more than once")
        for d in data["duplicates"]:
            held = ", ".join(d.get("documents") or d.get("customers") or [])
            what = "documents" if "documents" in d else "customers"
            todo = (
                "acknowledged"
                if d["acknowledged"]
                else f"cancel the extra ones in Fortnox, or `limefort ack {d['key']}`"
            )
            out.append(f"  {d['key']}  {what} {held}: {todo}")
    if data["cancelled"]:
        out.append(
            f"Cancelled:   {len(data['cancelled'])} documents of won deals are cancelled in Fortnox"
        )
        for d in data["cancelled"]:
            out.append(f"  {d['key']}  {d['document']} (cancelled in Fortnox; never re-created)")
    drift = data.get("drift", [])
    if drift:
        out.append(
            f"Drift:       {len(drift)} deals changed in Lime Go after their document was made"
        )
        for d in drift:
            out.append(
                f"  {d['key']}  {d['document']}: {plan.drift_text(d['changes'])} "
                f"(since {local_time(d['since'])}); check it, then `limefort ack {d['key']}`"
            )
    out += warning_lines(data.get("warnings", []))
    out.append(f"Pending:     {len(data['pending'])}")
    for p in data["pending"]:
        out.append(
            f"  {p['key']}  {p['kind']} outcome unknown since {local_time(p['since'])}; "
            "checked each pass"
        )
    if data["runs"]:
        out.append("Recent runs:")
        for r in data["runs"]:
            out.append(f"  #{r['id']} {r['command']:<8} {_run_line(r)}")
    return out


def duplicate_data(d: plan.Duplicate) -> dict[str, Any]:
    members = (
        {"documents": [m.replace(" ", ":", 1) for m in d.members]}
        if d.what == "documents"
        else {"customers": list(d.members)}
    )
    return {"key": d.key, **members, "acknowledged": d.acknowledged}


def installation_of(store: Store) -> str | None:
    """This installation's id as its stamps carry it (read only: nothing is made up)."""
    if store.path is not None:
        found = installation.read_id_file(installation.id_path(store.path))
        if found:
            return found
    return store.get_meta(installation.META_KEY)


def status_data(store: Store, *, lock_held: bool = False) -> dict[str, Any]:
    """`lock_held`: whether a pass holds the lock now (tells running from interrupted)."""
    runs = store.runs(10)
    newest_unfinished = next((r["id"] for r in runs if not r.get("finished_at")), None)
    for r in runs:
        r["state"] = run_state(
            r, newest_unfinished=r["id"] == newest_unfinished, lock_held=lock_held
        )
    last = runs[0] if runs else None
    skipped = store.count_skipped()
    return {
        "cursors": store.cursors(),
        "customers": store.count_customers(),
        "documents": store.count_documents(),
        "skipped_historical": skipped,
        "quarantined": [
            {
                "key": q.key,
                "name": q.name,
                "reason": q.reason,
                "hint": q.hint,
                "attempts": q.attempts,
                "since": q.first_seen,
                "last_seen": q.last_seen,
            }
            for q in store.all_quarantined()
        ],
        "pending": [
            {"key": company_key(p.company_id), "kind": "customer", "since": _iso(p.intent_at)}
            for p in store.pending_customers()
        ]
        + [
            {"key": deal_key(p.deal_id), "kind": p.kind, "since": _iso(p.since)}
            for p in store.pending_documents()
        ],
        # Fortnox is the ledger: what its document index shows that a person should know.
        # Rule 14: two documents for one deal, two customers for one company; every pass
        # names those not acknowledged (`limefort ack KEY`) and exits 1.
        "duplicates": [duplicate_data(d) for d in sync_duplicates(store)],
        "installation": installation_of(store),
        "cancelled": [
            {
                "key": deal_key(deal_id_of_ref(d.ext_ref) or ""),
                "document": f"{d.kind}:{d.document_number}",
            }
            for d in store.ledger_cancelled()
        ],
        # Rule 12: deals changed after their document was made, until a person acknowledges.
        "drift": [
            {
                "key": e.key,
                "document": e.document,
                "changes": {k: list(v) for k, v in e.changes.items()},
                "since": e.since,
            }
            for e in store.unacked_drift()
        ],
        "warnings": warnings_data(store),
        "last_run": (
            {
                "started_at": last["started_at"],
                "finished_at": last["finished_at"],
                "exit_code": last["exit_code"],
                "counts": last["counts"],
                "command": last["command"],
                "state": last["state"],
                "reason": last.get("reason"),
            }
            if last
            else None
        ),
        "runs": [
            {
                k: r[k]
                for k in (
                    "id",
                    "command",
                    "started_at",
                    "finished_at",
                    "exit_code",
                    "counts",
                    "state",
                    "reason",
                )
            }
            for r in runs
        ],
    }


def warnings_data(store: Store) -> list[dict[str, str | None]]:
    """Persistent warnings on records (design rule 15): what a person should know about a record
    that is in Fortnox, e.g. a customer it shares with another company."""
    out: list[dict[str, str | None]] = []
    for w in store.all_warnings():
        row: dict[str, str | None] = {"key": w.key, "text": w.text, "since": w.since}
        if w.field:  # a value Fortnox got other than Lime Go holds it (rule 15)
            row |= {"field": w.field, "held": w.held, "sent": w.sent}
        out.append(row)
    return out


def warning_lines(warnings: list[dict[str, str | None]]) -> list[str]:
    if not warnings:
        return []
    out = [f"Warnings:    {len(warnings)}"]
    for w in warnings:
        out.append(f"  {w['key']}  {w['text']} (since {local_time(w['since'])})")
    return out


def status(app: App, as_json: bool) -> int:
    # Status reads the state file only: the template's example credentials are no obstacle.
    cfg = app.config(allow_placeholders=("limego", "fortnox"))
    path = cfg.state.path
    where = f"state.path in {cfg.source}" if cfg.source else "state.path"
    if not path.parent.is_dir():
        raise StateError(f"state.path: directory {path.parent} does not exist ({where})")
    if not path.exists():
        raise StateError(
            f"state.path: no state file at {path} ({where}): no pass has run with this "
            "configuration yet; `limefort sync` creates it there"
        )
    # Read-only: no migration, no WAL switch, nothing created (a read-only mount works).
    store = Store.open_read_only(path, busy_timeout=cfg.state.busy_timeout)
    try:
        data = status_data(store, lock_held=lock_held(path))
    finally:
        store.close()
    data["state_path"] = str(path)
    if as_json:
        # JSON escapes control characters itself; personnummer are masked as everywhere.
        click.echo(mask_personnummer(json.dumps(data, indent=2, ensure_ascii=False)))
        return EX_OK
    for line in status_lines(data):
        click.echo(shown(line))
    return EX_OK
