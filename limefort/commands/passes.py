"""The commands that run a pass: `sync` (one pass), `backfill` (deals won in the past) and `run`
(the daemon)."""

from __future__ import annotations

import logging
import sys
import threading
from datetime import timedelta

import click

from limefort.commands.common import (
    App,
    date_window,
    json_logs,
    parse_date,
    reported_pass,
    stoppable_pass,
    zone,
)
from limefort.commands.progress import PassProgress, choose_mode, hms
from limefort.core.errors import (
    ConfigError,
    UserError,
)
from limefort.engine.runner import build_clients, locked, open_store
from limefort.engine.sync import PassResult, Syncer, eta_seconds

log = logging.getLogger("limefort")


class Progress(PassProgress):
    """backfill's progress: a bar on a terminal, a plain line a second in a log file."""

    def __init__(self, total: int, limit: int, window: float, *, quiet: bool = False) -> None:
        mode = choose_mode(
            quiet=quiet, json_logs=json_logs(), tty=sys.stderr.isatty(), lines_when_not_a_tty=True
        )
        super().__init__("backfill", limit=limit, window=window, mode=mode, total=total)


def sync(app: App, since: str | None, dry_run: bool, only: str | None, take_over: bool) -> int:
    cfg = app.config()
    widen = parse_date(since, "--since", cfg)
    # A bar only for a person at a terminal: cron's and journald's logs stay free of it.
    mode = choose_mode(
        quiet=app.quiet or dry_run,
        json_logs=json_logs(),
        tty=sys.stderr.isatty(),
        lines_when_not_a_tty=False,
    )
    if mode == "json":
        mode = "off"

    def work(s: Syncer) -> PassResult:
        limit, window = cfg.fortnox.rate_limit, cfg.fortnox.rate_window
        with PassProgress("sync", limit=limit, window=window, mode=mode) as bar:
            if mode != "off":
                s.progress = bar
            s.guard.take_over = take_over
            return s.run_pass(since=widen, only=only)

    return stoppable_pass(app, cfg, "sync", work, dry_run=dry_run)


def backfill(app: App, from_: str, to: str | None, dry_run: bool, yes: bool) -> int:
    from limefort.ops.signals import stop_on_signals

    cfg = app.config()
    start, end = date_window(cfg, from_, to)
    assert start is not None
    if cfg.sync.deal_target == "none":
        raise ConfigError("sync.deal_target", 'is "none": there is nothing to backfill')
    kind = cfg.sync.deal_target

    def work(s: Syncer) -> PassResult:
        candidates = s.gather.backfill_candidates(start, end)
        n = len(candidates)
        limit, window = cfg.fortnox.rate_limit, cfg.fortnox.rate_window
        est = eta_seconds(n, 0, limit, window)
        app.echo(
            f"{n} deal{'s' if n != 1 else ''} won between {start.astimezone(zone(cfg)).date()} and {end.astimezone(zone(cfg)).date()} "
            f"{'have' if n != 1 else 'has'} no {kind} in Fortnox"
            + (f" (about {hms(est)} at Fortnox's rate limit)." if n and limit else ".")
        )
        if not n:
            # Still settle what an interrupted backfill left pending (nothing new is created).
            return s.backfill([], start=start, end=end)
        if not dry_run and not yes:
            if not sys.stdin.isatty():
                raise UserError("backfill: not a terminal; add --yes to create them without asking")
            click.confirm(f"Create {n} {kind}s in Fortnox?", abort=True)
        # Only now: a Ctrl-C at the prompt above must still abort it. From here SIGINT and
        # SIGTERM finish the record in hand and commit; running it again goes on from there.
        with Progress(n, limit, window, quiet=app.quiet or dry_run) as bar:
            s.progress = bar
            with stop_on_signals(s.stop_event):
                return s.backfill(candidates, start=start, end=end, progress=bar.step)

    return reported_pass(app, cfg, "backfill", work, dry_run=dry_run)


def run(app: App) -> int:
    from limefort.ops.scheduler import run_daemon

    cfg = app.config()

    def pass_fn(stop: threading.Event) -> int:
        try:
            return reported_pass(app, cfg, "run", lambda s: s.run_pass(), stop_event=stop)
        except UserError as exc:
            log.error("%s", exc)
            return exc.exit_code

    keepalive = None
    if not cfg.fortnox.tenant_id:

        def keepalive() -> None:
            # A refresh token unused for 45 days dies: rotate it well before, even when idle.
            with locked(cfg):
                store = open_store(cfg)
                try:
                    _, fortnox = build_clients(cfg, store)
                    fortnox.company_information()
                finally:
                    store.close()

    return run_daemon(
        pass_fn,
        interval=cfg.sync.interval,
        cron=cfg.sync.cron,
        keepalive=keepalive,
        keepalive_every=timedelta(days=7),
    )
