"""What the commands share: the `App` (global options and the config, read once), one line for the
operator on stderr (`say`), a pass run and reported the same way by every command, and dates
a person types."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from limefort import config as config_mod
from limefort.clients.redaction import REDACTOR
from limefort.config import Config
from limefort.core.errors import (
    ConfigError,
)
from limefort.core.privacy import lines_shown, shown
from limefort.engine.runner import one_pass, summarise
from limefort.engine.sync import PassResult, Syncer
from limefort.ops import logs

log = logging.getLogger("limefort")


@dataclass
class App:
    config_path: Path | None
    explicit: bool
    verbose: int
    quiet: bool
    log_format: str
    _cfg: Config | None = None

    def config(self, *, allow_placeholders: tuple[str, ...] = ()) -> Config:
        """The validated config. `allow_placeholders` names the sections a command never
        uses the credentials of (a template's example values there are not an error)."""
        if self._cfg is None:
            self._cfg = config_mod.load(
                self.config_path, explicit=self.explicit, allow_placeholders=allow_placeholders
            )
            for secret in config_mod.secrets_of(self._cfg):
                REDACTOR.add(secret)
            if config_mod.world_readable_with_secret(self._cfg):
                log.warning(
                    "%s holds a secret and is readable by other users: chmod 600 it, or move "
                    "the secret to LIMEFORT_<SECTION>_<KEY> in the environment",
                    self._cfg.source,
                )
        return self._cfg

    def echo(self, text: str = "", err: bool = False) -> None:
        if not self.quiet or err:
            click.echo(lines_shown(text), err=err)


def json_logs() -> bool:
    return any(isinstance(h.formatter, logs.JsonFormatter) for h in logging.getLogger().handlers)


def say(text: str, *, key: str | None = None, level: int = logging.WARNING) -> None:
    """A line for the operator on stderr: `limefort: text`, or under --log-format json a log
    object like every other line there (stderr stays one JSON object a line)."""
    if json_logs():
        log.log(level, "%s", text, extra={"key": key} if key else None)
    else:
        click.echo(f"limefort: {shown(text)}", err=True)


def report(app: App, result: PassResult, *, dry_run: bool = False) -> None:
    for key, problem in result.problems:
        say(f"{key} {problem}", key=key)
    for key, text in result.outstanding:
        say(f"{key} {text}", key=key)
    if result.other_writer:
        say(f"the pass stopped: {result.other_writer}", level=logging.ERROR)
    elif result.aborted:
        say(f"the pass stopped early: {result.aborted}", level=logging.ERROR)
    elif result.stopped:
        say(
            "stopped on request after the record in hand; nothing is lost, "
            "the next run goes on from there"
        )
    app.echo(
        ("Dry run: " if dry_run else "")
        + summarise(result.counts, dry_run, outstanding=len(result.outstanding))
    )
    if result.exit_code and not dry_run and not json_logs():
        app.echo("See `limefort status` for what needs attention.", err=True)


def reported_pass(
    app: App,
    cfg: Config,
    command: str,
    work: Callable[[Syncer], PassResult],
    *,
    dry_run: bool = False,
    stop_event: threading.Event | None = None,
) -> int:
    """One pass as a command: `one_pass` around `work`, its result reported the same way by
    every command. With `stop_event`, SIGTERM/SIGINT are the caller's to route to it."""
    return one_pass(
        cfg,
        command=command,
        dry_run=dry_run,
        stop_event=stop_event,
        work=work,
        echo=app.echo,
        report=lambda r, d: report(app, r, dry_run=d),
    )


def stoppable_pass(
    app: App,
    cfg: Config,
    command: str,
    work: Callable[[Syncer], PassResult],
    *,
    dry_run: bool = False,
) -> int:
    """`reported_pass` where SIGTERM (systemd stopping a oneshot) or Ctrl-C finishes the record
    in hand, commits and exits 1."""
    from limefort.ops.signals import stop_on_signals

    with stop_on_signals(threading.Event()) as stop:
        return reported_pass(app, cfg, command, work, dry_run=dry_run, stop_event=stop)


def parse_date(value: str | None, param: str, cfg: Config) -> datetime | None:
    """A date a person typed: a calendar day (or wall-clock time) in `sync.timezone`."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(config_mod.parse_start(param, value, zone(cfg)))
    except ConfigError:
        raise click.BadParameter(f"expected an ISO date like 2026-01-31, got {value!r}") from None


def zone(cfg: Config) -> ZoneInfo:
    return ZoneInfo(cfg.sync.timezone)


def date_window(cfg: Config, from_: str | None, to: str | None) -> tuple[datetime | None, datetime]:
    """`--from`/`--to` as instants: days in `sync.timezone`; a bare `--to` date is that whole
    day (to its last instant, DST-correct); no `--to` is now."""
    start = parse_date(from_, "--from", cfg)
    if to is None:
        return start, datetime.now(UTC)
    if len(to.strip()) == 10:
        try:
            return start, config_mod.end_of_day(to, zone(cfg))
        except ValueError:
            raise click.BadParameter(f"expected an ISO date like 2026-01-31, got {to!r}") from None
    end = parse_date(to, "--to", cfg)
    assert end is not None
    return start, end
