"""`limefort fleet status`: one row per tenant config in a directory, for an operator who runs
the same sync for many Fortnox companies (one tenant = one config = one state file = one lock).

It only reads. Each state file is opened through SQLite's read-only URI (`mode=ro`): no lock
file is touched, no migration runs, and a pass running at the same moment is neither blocked
nor disturbed (WAL lets a reader see the last committed state). Reading the state file needs
no credentials either, so the configs are loaded without the tenants' secrets.

Layout: `read_tenant` and the store's `read_state` do the I/O; `build_row`, `row_ok`, `exit_code` and `render_table`
are pure and take what the readers found.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from limefort import config as config_mod
from limefort.commands import fleet as fleet_mod
from limefort.core.errors import EX_OK, EX_PARTIAL, LimefortError, UserError
from limefort.core.privacy import lines_shown, mask_personnummer
from limefort.state.readonly import Run, StateFacts, read_state

DEFAULT_DIR = Path("/etc/limefort")

# The tenants' secrets usually live outside their config files (a systemd EnvironmentFile, a
# Kubernetes Secret), so they are not in this process's environment, and fleet status has no
# use for them. The two required ones get a stand-in so such a config still loads; the rest of
# this process's LIMEFORT_* environment belongs to no tenant in particular (a
# LIMEFORT_STATE_PATH would point every tenant at one file) and is not applied at all.
_NO_SECRETS: Mapping[str, str] = {
    "LIMEFORT_LIMEGO_CLIENT_SECRET": "(not read by fleet status)",
    "LIMEFORT_FORTNOX_CLIENT_SECRET": "(not read by fleet status)",
}


@dataclass(frozen=True)
class Tenant:
    """A config file found in the directory, loaded or not."""

    name: str
    config: Path
    state: Path | None  # None when the config did not load
    error: str | None = None


# ---------------------------------------------------------------------------------------------
# Pure: paths, rows, verdicts, rendering
# ---------------------------------------------------------------------------------------------


def resolve_state_path(config_path: Path, state_path: Path) -> Path:
    """A relative `state.path` is relative to the config file's directory, never to the working
    directory of whoever runs fleet status."""
    if state_path.is_absolute():
        return state_path
    return config_path.parent / state_path


def split_runs(runs: Sequence[Run]) -> tuple[Run | None, str | None]:
    """(the last run that is over, `started_at` of a run still going or None).

    Runs are newest first. A run with no end recorded is either still going or was killed
    (SIGKILL, OOM, power cut). Only the newest can still be going: every pass holds the
    tenant's lock, so one that started after it means it is over. An older run without an end
    is therefore a killed one, and it is the last run that is over."""
    if not runs:
        return None, None
    newest = runs[0]
    if newest.finished_at is None:
        return (runs[1] if len(runs) > 1 else None), newest.started_at
    return newest, None


def build_row(tenant: Tenant, facts: StateFacts | None, error: str | None = None) -> dict[str, Any]:
    """One tenant's row, the `--json` object. `facts` is None when the state file does not
    exist (the tenant never ran); `error` is a problem met while reading it."""
    problem = tenant.error or error
    last, running = split_runs(facts.runs) if facts else (None, None)
    row: dict[str, Any] = {
        "tenant": tenant.name,
        "config": str(tenant.config),
        "state": str(tenant.state) if tenant.state else None,
        "last_run": (
            {
                "started_at": last.started_at,
                "finished_at": last.finished_at,
                "exit_code": last.exit_code,
                "command": last.command,
            }
            if last
            else None
        ),
        "running_since": running,
        "last_success": facts.last_success if facts else None,
        "quarantined": facts.quarantined if facts else 0,
        "pending": facts.pending if facts else 0,
        "drift": facts.drift if facts else 0,
        "error": problem,
    }
    row["ok"] = row_ok(row)
    return row


def row_ok(row: Mapping[str, Any]) -> bool:
    """The tenant's last pass exited 0 and nothing waits for a person.

    Quarantined records and unacknowledged drift wait for a person. Pending records do not:
    their outcome is checked by the next pass on its own, and a pass that is running right now
    has pending intents that are not a problem at all (a pass that ends with one exits 1)."""
    last = row["last_run"]
    return (
        row["error"] is None
        and last is not None
        and last["exit_code"] == 0
        and row["quarantined"] == 0
        and row["drift"] == 0
    )


def mark_shared_state(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two tenants on one state file would mix their records and take turns at one lock: a
    copied config whose [state] path was not changed. Both rows get an error naming the other."""
    by_state: dict[str, list[str]] = {}
    for row in rows:
        if row["state"]:
            by_state.setdefault(row["state"], []).append(row["tenant"])
    out = []
    for row in rows:
        others = [t for t in by_state.get(row["state"], []) if t != row["tenant"]]
        if others and row["error"] is None:
            row = {
                **row,
                "error": f"state.path: {row['state']} is also the state file of "
                + ", ".join(others)
                + "; every tenant needs its own",
            }
            row["ok"] = row_ok(row)
        out.append(row)
    return out


def exit_code(rows: Sequence[Mapping[str, Any]]) -> int:
    """0 when every tenant is fine, 1 otherwise (a tenant that never ran is not fine)."""
    return EX_OK if rows and all(r["ok"] for r in rows) else EX_PARTIAL


def _short_time(ts: str | None) -> str:
    if not ts:
        return "-"
    try:
        dt = datetime.fromisoformat(ts)
    except ValueError:
        return ts
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _note(row: Mapping[str, Any]) -> str:
    if row["error"]:
        return f"error: {row['error']}"
    notes = []
    last = row["last_run"]
    if last is None:
        notes.append("never ran")
    elif last["finished_at"] is None:
        notes.append("last run was killed (no end recorded)")
    if row["running_since"]:
        notes.append(f"running since {_short_time(row['running_since'])}")
    return "; ".join(notes)


HEADERS = ("TENANT", "LAST RUN", "EXIT", "LAST SUCCESS", "QUARANTINED", "PENDING", "DRIFT", "")


def table_cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    last = row["last_run"]
    when = (last["finished_at"] or last["started_at"]) if last else None
    code = "-" if last is None or last["exit_code"] is None else str(last["exit_code"])
    return (
        row["tenant"],
        _short_time(when) if last else "never",
        code,
        _short_time(row["last_success"]),
        str(row["quarantined"]),
        str(row["pending"]),
        str(row["drift"]),
        _note(row),
    )


def render_table(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = [HEADERS, *(table_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADERS) - 1)]
    out = []
    for cells in lines:
        text = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False))
        out.append((text + "  " + cells[-1]).rstrip())
    bad = sum(1 for r in rows if not r["ok"])
    out.append("")
    out.append(
        f"{len(rows)} tenant{'s' if len(rows) != 1 else ''}: "
        + ("all fine" if not bad else f"{bad} need{'s' if bad == 1 else ''} attention")
    )
    return "\n".join(out)


def to_json(rows: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(list(rows), indent=2, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# I/O: the directory, the configs, the state files
# ---------------------------------------------------------------------------------------------


def find_configs(directory: Path) -> list[Path]:
    """Every `*.toml` file directly in `directory`, by name."""
    return sorted(p for p in directory.glob("*.toml") if p.is_file())


def read_tenant(config_path: Path) -> Tenant:
    """Load one tenant's config; a config that does not load is a Tenant with an error."""
    name = config_path.stem
    try:
        cfg = config_mod.load(config_path, environ=_NO_SECRETS, explicit=True)
    except LimefortError as exc:
        return Tenant(name, config_path, None, error=str(exc))
    return Tenant(name, config_path, resolve_state_path(config_path, cfg.state.path))


def status_rows(directory: Path) -> list[dict[str, Any]]:
    """One row per tenant config in `directory`, in name order."""
    configs = find_configs(directory)
    if not configs:
        raise UserError(f"fleet: no tenant configs (*.toml) in {directory}")
    rows = []
    for path in configs:
        tenant = read_tenant(path)
        facts, error = None, None
        if tenant.state is not None:
            try:
                facts = read_state(tenant.state)
            except UserError as exc:
                error = str(exc)
        rows.append(build_row(tenant, facts, error))
    return mark_shared_state(rows)


def fleet_command(directory: Path, as_json: bool) -> int:
    rows = fleet_mod.status_rows(directory)
    click.echo(
        mask_personnummer(fleet_mod.to_json(rows))
        if as_json
        else lines_shown(fleet_mod.render_table(rows))
    )
    return fleet_mod.exit_code(rows)
