"""`limefort retry`: quarantined records tried again now, after their cause was fixed."""

from __future__ import annotations

import click

from limefort.commands.common import App, stoppable_pass
from limefort.core.errors import EX_OK
from limefort.core.keys import parse_key
from limefort.engine.sync import PassResult, Syncer
from limefort.state.store import quarantined_keys_read_only


def retry_todo(keys: tuple[str, ...], quarantined: set[str]) -> tuple[list[str], list[str]]:
    """Which of the named keys to retry, and which are not quarantined (said, not retried).
    A malformed key is a usage error, raised before anything is read or written."""
    for key in keys:
        try:
            parse_key(key)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    todo = [k for k in dict.fromkeys(keys) if k in quarantined]
    return todo, [k for k in dict.fromkeys(keys) if k not in quarantined]


def retry(app: App, keys: tuple[str, ...], all_: bool) -> int:
    if not keys and not all_:
        raise click.UsageError("name the records (company:<id> deal:<id>) or use --all")
    retry_todo(keys, set())  # a malformed key: usage error before the config is even read
    cfg = app.config()
    quarantined = quarantined_keys_read_only(cfg.state.path)
    named, not_quarantined = retry_todo(keys, quarantined)
    for key in not_quarantined:
        app.echo(f"{key} is not quarantined: nothing to retry.")
    if keys and not named:
        return EX_OK
    if not keys and not quarantined:
        app.echo("Nothing is quarantined.")
        return EX_OK

    def work(s: Syncer) -> PassResult:
        todo = named or [q.key for q in s.store.all_quarantined()]
        return s.retry(todo)

    return stoppable_pass(app, cfg, "retry", work)
