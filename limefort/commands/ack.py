"""`limefort ack`: drift and duplicates acknowledged, so passes stop naming them."""

from __future__ import annotations

import click

from limefort.commands.common import App, say
from limefort.core.errors import (
    EX_OK,
    EX_PARTIAL,
    StateError,
)
from limefort.core.keys import parse_key
from limefort.engine.sync import duplicates as sync_duplicates
from limefort.state.store import Store


def ack(app: App, keys: tuple[str, ...], all_: bool) -> int:
    if keys and all_:
        raise click.UsageError(
            "name the records (deal:<id> company:<id> ...) or use --all, not both"
        )
    if not keys and not all_:
        raise click.UsageError("name the records (deal:<id> company:<id> ...) or use --all")
    for key in keys:
        try:
            parse_key(key)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    cfg = app.config(allow_placeholders=("limego", "fortnox"))
    if not cfg.state.path.exists():
        raise StateError(f"state.path: no state file at {cfg.state.path}: nothing to acknowledge")
    store = Store.open(cfg.state.path, create=False, busy_timeout=cfg.state.busy_timeout)
    wanted = list(dict.fromkeys(keys))
    try:
        with store.transaction():
            deals = [k for k in wanted if k.startswith("deal:")]
            drift = store.ack_drift(None if all_ else deals) if all_ or deals else []
            dups = [d for d in sync_duplicates(store) if not d.acknowledged]
            dups = [d for d in dups if all_ or d.key in wanted]
            for d in dups:
                store.ack_duplicate(d.key, d.members)
    finally:
        store.close()
    for key in drift:
        app.echo(f"{key}: drift acknowledged")
    for d in dups:
        app.echo(f"{d.key}: duplicate acknowledged ({', '.join(d.members)})")
    done = set(drift) | {d.key for d in dups}
    missing = [k for k in wanted if k not in done]
    for key in missing:
        say(f"{key} has no unacknowledged drift or duplicate", key=key)
    if all_ and not done:
        app.echo("No unacknowledged drift or duplicates.")
    return EX_PARTIAL if missing else EX_OK
