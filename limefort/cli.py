"""The `limefort` command: glue only (github-to-sqlite style). Parse options, build the
pieces, call them, turn errors into exit codes. Nothing imports this module."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from limefort import __version__, plan
from limefort import config as config_mod
from limefort.clients.http import REDACTOR
from limefort.commands import fleet as fleet_mod
from limefort.commands.progress import PassProgress, choose_mode, hms
from limefort.config import Config
from limefort.core.errors import (
    EX_OK,
    EX_PARTIAL,
    EX_USAGE,
    ConfigError,
    LimefortError,
    StateError,
    UserError,
)
from limefort.core.keys import company_key, deal_id_of_ref, deal_key, parse_key
from limefort.core.models import DocumentKind
from limefort.core.privacy import lines_shown, mask_personnummer, shown
from limefort.engine.runner import build_clients, locked, one_pass, open_store, summarise
from limefort.engine.sync import PassResult, Syncer, eta_seconds
from limefort.engine.sync import duplicates as sync_duplicates
from limefort.ops import logs
from limefort.state import installation
from limefort.state.files import check_new_file, write_new_file
from limefort.state.lock import lock_path
from limefort.state.store import Store, quarantined_keys_read_only

log = logging.getLogger("limefort")


# ---------------------------------------------------------------------------------------------
# Shared plumbing
# ---------------------------------------------------------------------------------------------


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


def _json_logs() -> bool:
    return any(isinstance(h.formatter, logs.JsonFormatter) for h in logging.getLogger().handlers)


def say(text: str, *, key: str | None = None, level: int = logging.WARNING) -> None:
    """A line for the operator on stderr: `limefort: text`, or under --log-format json a log
    object like every other line there (stderr stays one JSON object a line)."""
    if _json_logs():
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
    if result.exit_code and not dry_run and not _json_logs():
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


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


# Global options a person may also type after the command name (`limefort sync --config x`):
# option -> whether it takes a value.
GLOBAL_OPTIONS = {
    "--config": True,
    "--log-format": True,
    "-v": False,
    "-vv": False,
    "-vvv": False,
    "--verbose": False,
    "-q": False,
    "--quiet": False,
}


def _global_option(arg: str) -> tuple[bool, bool]:
    """(is a global option, its value is the next argument)."""
    name, eq, _ = arg.partition("=")
    if name in GLOBAL_OPTIONS and (not eq or GLOBAL_OPTIONS[name]):
        return True, GLOBAL_OPTIONS[name] and not eq
    return False, False


def hoist_global_options(args: list[str]) -> list[str]:
    """Move the global options found after the command name to the front, where click parses
    them, keeping their order. Stops at `--`. A pure function, tested on its own."""
    i = 0
    while i < len(args):  # the global options already in front, then the command name
        is_global, takes_value = _global_option(args[i])
        if not is_global:
            break
        i += 2 if takes_value else 1
    front, rest, moved = list(args[:i]), [], []
    j = i
    while j < len(args):
        arg = args[j]
        if arg == "--":
            rest.extend(args[j:])
            break
        is_global, takes_value = _global_option(arg)
        if is_global and j > i:  # never the command name itself
            moved.append(arg)
            if takes_value and j + 1 < len(args):
                moved.append(args[j + 1])
                j += 1
        else:
            rest.append(arg)
        j += 1
    return front + moved + rest


class _Cli(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))


@click.group(
    cls=_Cli,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="LIMEFORT_CONFIG",
    help="Config file (default ./limefort.toml, or $LIMEFORT_CONFIG). A relative state.path in "
    "it is relative to the file's directory; with no file (settings only from the "
    "environment), to the working directory.",
)
@click.option("-v", "--verbose", count=True, help="More detail: -v per record, -vv HTTP.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.version_option(__version__, prog_name="limefort")
@click.pass_context
def cli(
    ctx: click.Context, config_path: Path | None, verbose: int, quiet: bool, log_format: str
) -> None:
    """Keep Fortnox in step with Lime Go, one way: customers, invoices and orders.

    \b
    Examples:
      limefort demo                      # see it work against local sandbox servers
      limefort init                      # write ./limefort.toml to fill in
      limefort check                     # is the config right, are the credentials good?
      limefort sync                      # one pass; what cron runs
      limefort status                    # cursors, counts, quarantined records

    The global options may also follow the command: limefort sync --config /etc/limefort.toml
    """
    logs.setup(-1 if quiet else verbose, log_format)
    ctx.obj = App(
        config_path=config_path,
        explicit=config_path is not None,
        verbose=verbose,
        quiet=quiet,
        log_format=log_format,
    )


@cli.command()
@click.option(
    "--since",
    metavar="DATE",
    help="Also re-examine records changed since DATE (a day in sync.timezone).",
)
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@click.option("--only", type=click.Choice(["customers", "deals"]), help="Only one half.")
@click.option(
    "--take-over",
    is_flag=True,
    help="This installation replaces another on purpose: documents other installations made "
    "up to now no longer stop a pass (one they make from now on still does).",
)
@click.pass_obj
def sync(app: App, since: str | None, dry_run: bool, only: str | None, take_over: bool) -> int:
    """Run one pass: bring Fortnox in line with what changed in Lime Go.

    A pass that finds another installation's documents in Fortnox from within
    `sync.writer_lease` stops before writing and exits 4: stop the other one, or hand over
    on purpose with --take-over.

    \b
    Examples:
      limefort sync
      limefort sync --dry-run
      limefort sync --since 2026-11-01 --only customers
      limefort sync --take-over
    """

    cfg = app.config()
    widen = parse_date(since, "--since", cfg)
    # A bar only for a person at a terminal: cron's and journald's logs stay free of it.
    mode = choose_mode(
        quiet=app.quiet or dry_run,
        json_logs=_json_logs(),
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


@cli.command()
@click.option(
    "--from",
    "from_",
    required=True,
    metavar="DATE",
    help="First day, won on or after (days are in sync.timezone, Europe/Stockholm by default).",
)
@click.option("--to", metavar="DATE", help="Last day, whole (default: now).")
@click.option("--dry-run", is_flag=True, help="List what would be created; create nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def backfill(app: App, from_: str, to: str | None, dry_run: bool, yes: bool) -> int:
    """Create documents for deals won in the past that Fortnox does not have yet.

    Resumable: run it again after Ctrl-C or a crash and it goes on where it stopped, never
    creating a document twice.

    \b
    Example:
      limefort backfill --from 2026-01-01 --to 2026-06-30 --dry-run
      limefort backfill --from 2026-01-01 --yes
    """
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


class Progress(PassProgress):
    """backfill's progress: a bar on a terminal, a plain line a second in a log file."""

    def __init__(self, total: int, limit: int, window: float, *, quiet: bool = False) -> None:
        mode = choose_mode(
            quiet=quiet, json_logs=_json_logs(), tty=sys.stderr.isatty(), lines_when_not_a_tty=True
        )
        super().__init__("backfill", limit=limit, window=window, mode=mode, total=total)


@cli.command()
@click.pass_obj
def run(app: App) -> int:
    """Run as a daemon: a pass every sync.interval (or sync.cron), one at a time.

    Stops cleanly on SIGTERM or Ctrl-C: the pass in progress finishes its current record and
    commits.

    \b
    Example:
      limefort run --log-format json
    """
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


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (times in UTC).")
@click.pass_obj
def status(app: App, as_json: bool) -> int:
    """Show cursors, counts, last runs, quarantined and pending records.

    Times are local, with their zone; a pass still going is shown as "running since", one
    that was killed before it finished as "interrupted". Reads only; needs no credentials.

    \b
    Example:
      limefort status --json | jq .quarantined
    """
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
    """Persistent warnings on records (issue 13): what a person should know about a record
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


@cli.command()
@click.argument("keys", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every quarantined record.")
@click.pass_obj
def retry(app: App, keys: tuple[str, ...], all_: bool) -> int:
    """Re-attempt quarantined records now (after fixing Fortnox settings, say).

    \b
    Examples:
      limefort retry deal:0b0c6f1e-...
      limefort retry --all
    """
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


@cli.command()
@click.pass_obj
def check(app: App) -> int:
    """Check the config, both sets of credentials, Fortnox scopes and licences, and which
    Lime Go stages count as won. Changes nothing in either system.

    Example: limefort check
    """
    from limefort.commands.check import run_checks

    cfg = app.config()
    return run_checks(cfg, app.echo)


@cli.command()
@click.option(
    "--no-input", is_flag=True, help="Do not ask anything, even on a terminal: write the template."
)
@click.pass_obj
def init(app: App, no_input: bool) -> int:
    """Write an annotated config to fill in: --config PATH, or ./limefort.toml.

    The file is created with mode 0600 (it may hold secrets) and never over an existing one.
    On a terminal it asks for the few values that have no default (the Lime Go instance URL,
    the two API clients' ids and secrets, the Fortnox tenant id); an empty answer to an
    optional one leaves it to fill in later (secrets are better in the environment).

    \b
    Examples:
      limefort init
      limefort --config /etc/limefort/limefort.toml init --no-input
    """
    from limefort.commands.init import Question, run_init

    path = app.config_path or config_mod.DEFAULT_PATH

    def ask(q: Question) -> str:
        while True:
            value: str = click.prompt(
                q.text,
                default="" if q.optional else None,
                show_default=False,
                hide_input=q.secret,
                err=True,
            )
            if q.check is None or not value.strip():
                return value
            try:
                q.check(f"{q.section}.{q.key}", value.strip())
                return value
            except ConfigError as exc:
                click.echo(f"  {exc}", err=True)

    left = run_init(path, ask=None if no_input or not sys.stdin.isatty() else ask)
    click.echo(f"Wrote {path.absolute()} (mode 0600).")
    if left:
        click.echo(f"Still to fill in there (or in LIMEFORT_<SECTION>_<KEY>): {', '.join(left)}.")
    click.echo(
        "Next: `limefort check`, then `limefort auth fortnox --service-account` if the "
        "Fortnox tenant id is not set yet (README: Credentials)."
    )
    return EX_OK


@cli.group()
def auth() -> None:
    """Authorise limefort with a service."""


@auth.command("fortnox")
@click.option("--service-account", is_flag=True, help="Consent as a service account (recommended).")
@click.option(
    "--code", help="Paste the code from the redirect instead of running a callback server."
)
@click.option(
    "--open-browser/--no-browser",
    default=False,
    help="Also open the consent URL in a browser (default: only print it; a browser's command "
    "line shows the URL to every user of the machine).",
)
@click.option("--timeout", default=300, show_default=True, help="Seconds to wait for the redirect.")
@click.pass_obj
def auth_fortnox(
    app: App, service_account: bool, code: str | None, open_browser: bool, timeout: int
) -> int:
    """Run Fortnox's consent (authorization code flow) and store the tokens.

    An administrator of the Fortnox company opens the printed URL and approves; Fortnox
    redirects to fortnox.redirect_uri, where this command is listening on loopback.

    \b
    Examples:
      limefort auth fortnox --service-account
      limefort auth fortnox --code 4f2c...   # code pasted from the redirect URL
    """
    from limefort.commands.auth import consent

    # The lock is taken inside, around the exchange and the store only.
    return consent(
        # Consent needs only the Fortnox half: the Lime Go half may be filled in later.
        app.config(allow_placeholders=("limego",)),
        # Interactive: --quiet must not hide the consent URL the user has to open.
        echo=click.echo,
        service_account=service_account,
        code=code,
        open_browser=open_browser,
        timeout=timeout,
    )


def sandbox_installed() -> None:
    """The sandbox servers are a package of their own, kept out of the container image."""
    import importlib.util

    if importlib.util.find_spec("limefort_sandbox") is None:
        raise UserError(
            "the sandbox servers are not installed here (the container image leaves them out): "
            "run `make demo` from a clone of the repository"
        )


@cli.command()
@click.option("--companies", default=30, show_default=True)
@click.option("--deals", default=40, show_default=True)
@click.option("--seed", default=2026, show_default=True)
@click.option(
    "--keep", type=click.Path(file_okay=False, path_type=Path), help="Keep the state here."
)
@click.pass_obj
def demo(app: App, companies: int, deals: int, seed: int, keep: Path | None) -> int:
    """Start the sandbox servers, sync a seeded CRM into them, and show the result.

    No accounts needed: both services are local stand-ins that behave like the real ones
    (OAuth, paging, validation, Fortnox's 25-requests-per-5-s limit).

    Example: limefort demo
    """
    sandbox_installed()
    from limefort.commands.demo import run_demo

    return run_demo(app.echo, companies=companies, deals=deals, seed=seed, keep=keep)


@cli.command()
@click.option("--companies", default=40, show_default=True)
@click.option("--deals", default=60, show_default=True)
@click.option("--seed", default=1, show_default=True)
@click.option("--port-limego", default=8801, show_default=True)
@click.option("--port-fortnox", default=8802, show_default=True)
@click.option("--no-rate-limit", is_flag=True, help="Turn Fortnox's 25/5 s limit off.")
@click.option(
    "--write-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the config to this new file (0600); never over an existing one.",
)
@click.option(
    "--state",
    default="limefort-sandbox.db",
    show_default=True,
    help="state.path in the printed config.",
)
@click.pass_obj
def sandbox(
    app: App,
    companies: int,
    deals: int,
    seed: int,
    port_limego: int,
    port_fortnox: int,
    no_rate_limit: bool,
    write_config: Path | None,
    state: str,
) -> int:
    """Run the sandbox Lime Go and Fortnox servers on loopback until Ctrl-C.

    Prints a config that points limefort at them.

    \b
    Example:
      limefort sandbox --write-config sandbox.toml &
      limefort --config sandbox.toml sync
    """
    from limefort.commands.init import write_new_private

    sandbox_installed()
    from limefort_sandbox import Sandbox

    if write_config and write_config.exists():  # before starting anything
        write_new_private(write_config, "", what="--write-config")
    sb = Sandbox(
        seed=seed,
        companies=companies,
        deals=deals,
        port_limego=port_limego,
        port_fortnox=port_fortnox,
        fortnox_rate_limit=None if no_rate_limit else 25,
    )
    sb.start()
    try:
        text = sb.config_toml(state)
        if write_config:
            write_new_private(write_config, text, what="--write-config")
            click.echo(f"# config written to {write_config}", err=True)
        click.echo(text)
        click.echo(
            f"# Lime Go sandbox on {sb.limego_url}, Fortnox sandbox on {sb.fortnox_url}. Ctrl-C stops.",
            err=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return EX_OK
    finally:
        sb.stop()


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace PATH if it exists.")
@click.pass_obj
def backup(app: App, path: Path, force: bool) -> int:
    """Write a consistent copy of the state file to PATH, readable only by you (0600).

    Safe while a pass runs. The copy holds the Fortnox refresh token: keep it as private as
    the state file, and note that restoring an old copy brings back a spent token.

    \b
    Example:
      limefort backup /var/backups/limefort/limefort-$(date +%F).db
    """
    from limefort.state.backup import backup as write_backup

    cfg = app.config()
    done = write_backup(cfg.state.path, path, force=force)
    app.echo(f"Backed up {cfg.state.path} to {done.path} ({done.size} bytes, mode {done.mode:04o})")
    return EX_OK


# ---------------------------------------------------------------------------------------------


@cli.group()
def fleet() -> None:
    """Many tenants, one config each: see README, "Running many tenants"."""


@fleet.command("status")
@click.argument(
    "directory",
    metavar="[DIR]",
    required=False,
    default=str(fleet_mod.DEFAULT_DIR),
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def fleet_status(directory: Path, as_json: bool) -> int:
    """One row per tenant config (*.toml) in DIR (default /etc/limefort): last run, last
    success, quarantined, pending and drift. Read-only: opens each state file read-only and
    takes no lock, so it is safe beside running passes. Ignores --config.

    Exit 0 when every tenant's last pass exited 0 and nothing waits for a person (quarantined
    records, unacknowledged drift); 1 otherwise, a tenant that never ran or whose config does
    not load included.

    \b
    Example:
      limefort fleet status /etc/limefort --json | jq '.[] | select(.ok | not) | .tenant'
    """
    rows = fleet_mod.status_rows(directory)
    click.echo(
        mask_personnummer(fleet_mod.to_json(rows))
        if as_json
        else lines_shown(fleet_mod.render_table(rows))
    )
    return fleet_mod.exit_code(rows)


@cli.command()
@click.option(
    "--from",
    "from_",
    metavar="DATE",
    help="First day, won on or after (a day in sync.timezone; default: all).",
)
@click.option("--to", metavar="DATE", help="Last day, whole (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write one row per finding to FILE, for a spreadsheet.",
)
@click.option("--deep", is_flag=True, help="Read each document to compare its rows (slow).")
@click.option("--force", is_flag=True, help="Replace an existing --csv file.")
@click.option(
    "--payments",
    "list_payments",
    is_flag=True,
    help="List each won deal's invoice: paid, unpaid, overdue or cancelled, booked, amount left.",
)
@click.option(
    "--unpaid", is_flag=True, help="List only the invoices still owed (unpaid or overdue)."
)
@click.pass_obj
def audit(
    app: App,
    from_: str | None,
    to: str | None,
    as_json: bool,
    csv_path: Path | None,
    deep: bool,
    force: bool,
    list_payments: bool,
    unpaid: bool,
) -> int:
    """Check that what was won is what was billed: the won deals of a window (Lime Go)
    against the documents (Fortnox), matched by their key. Changes nothing anywhere.

    Reports won deals with no document (missing), keys with more than one document
    (duplicates), documents whose customer or amount differs from the deal (mismatched),
    documents whose deal is gone or not won (orphans), and won deals whose document is
    cancelled. Exit 0 when nothing is found, 1 otherwise. A deal's won-at time is the one
    limefort recorded, else its last change in Lime Go (as for backfill).

    Payments (invoices only; read from the same invoice list, no request per invoice): the
    summary says how many invoices are paid, unpaid, overdue or cancelled and what is owed.
    --payments lists every won deal's invoice, --unpaid only those still owed, with the
    amount left and the due date; an invoice is overdue the day after its due date in
    sync.timezone. They change what is listed, not the exit code.

    \b
    Examples:
      limefort audit --from 2026-01-01 --to 2026-06-30
      limefort audit --from 2026-01-01 --json | jq '.missing[].key'
      limefort audit --csv audit.csv --deep
      limefort audit --unpaid --csv owed.csv
    """
    from limefort.commands.audit import (
        Window,
        payments_csv,
        payments_table,
        run_audit,
        to_csv,
        to_json,
        to_table,
    )
    from limefort.state.readonly import read_recorded

    cfg = app.config()
    start, end = date_window(cfg, from_, to)
    if csv_path is not None:
        check_new_file(csv_path, force=force, option="--csv")
    if cfg.sync.deal_target == "none":
        raise ConfigError("sync.deal_target", 'is "none": there are no documents to audit')
    kind: DocumentKind = "order" if cfg.sync.deal_target == "order" else "invoice"
    by_payment = list_payments or unpaid
    if by_payment and kind != "invoice":
        raise click.UsageError(
            "--payments/--unpaid: payments are registered on invoices, and sync.deal_target "
            "is order"
        )
    recorded = read_recorded(cfg.state.path)
    mode = choose_mode(
        quiet=app.quiet, json_logs=_json_logs(), tty=sys.stderr.isatty(), lines_when_not_a_tty=False
    )
    with _audit_clients(cfg) as (limego, fortnox):
        from limefort.plan import won_stage_ids

        won = won_stage_ids(
            limego.stages(), cfg.limego.won_stage_categories, cfg.limego.won_stage_names
        )
        limit, window = cfg.fortnox.rate_limit, cfg.fortnox.rate_window
        with PassProgress("audit", limit=limit, window=window, mode=mode) as bar:
            found = run_audit(
                limego,
                fortnox,
                recorded,
                kind=kind,
                won_stages=won,
                window=Window(start, end),
                deep=deep,
                progress=bar,
                today=datetime.now(zone(cfg)).date(),
            )
    if csv_path is not None:
        text = payments_csv(found, unpaid=unpaid) if by_payment else to_csv(found)
        write_new_file(csv_path, text, force=force, option="--csv")
    if as_json:
        click.echo(to_json(found, payments=list_payments, unpaid=unpaid))
    elif by_payment:
        click.echo(lines_shown(payments_table(found, unpaid=unpaid)))
    else:
        click.echo(lines_shown(to_table(found, kind)))
    return EX_PARTIAL if found.found else EX_OK


@contextmanager
def _audit_clients(cfg: Config) -> Iterator[tuple[Any, Any]]:
    """Clients that write nothing: a service account's tokens live in memory. A refresh token
    is single-use and rotates: then the audit holds the run lock and keeps the rotated token
    in the state file (as `check` does), and that is all it writes there."""
    if cfg.fortnox.tenant_id:
        from limefort.clients.fortnox import FortnoxClient, ServiceAccountTokens
        from limefort.clients.limego import LimeGoClient

        yield (
            LimeGoClient(cfg.limego, http=cfg.http),
            FortnoxClient(
                cfg.fortnox, ServiceAccountTokens(cfg.fortnox, http=cfg.http), http=cfg.http
            ),
        )
        return
    with locked(cfg):
        store = open_store(cfg)
        try:
            yield build_clients(cfg, store)
        finally:
            store.close()


@cli.command()
@click.argument("keys", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every unacknowledged drift and duplicate.")
@click.pass_obj
def ack(app: App, keys: tuple[str, ...], all_: bool) -> int:
    """Acknowledge drift or a duplicate a person has looked at.

    Drift: a deal changed in Lime Go after its document was made (and the document was
    credited, corrected or accepted in Fortnox). A duplicate: Fortnox holds two documents for
    one deal, or two customers for one company (made by hand, or by two installations at one
    instant), and a person has dealt with it. Passes exit 1 and `status` lists both until
    acknowledged; a cancelled extra document needs no acknowledgement. A later, different
    change (or a third document) is named again. Needs no credentials.

    \b
    Examples:
      limefort ack deal:0b0c6f1e-...
      limefort ack company:5d1e...
      limefort ack --all
    """
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


def main(argv: list[str] | None = None) -> None:
    verbose = any(a in ("-v", "-vv", "-vvv", "--verbose") for a in (argv or sys.argv[1:]))
    try:
        rc = cli.main(args=argv, prog_name="limefort", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("limefort: aborted", err=True)
        sys.exit(EX_PARTIAL)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code if exc.exit_code else EX_USAGE)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except UserError as exc:
        # A config with several problems says all of them, one line each.
        problems = exc.problems if isinstance(exc, config_mod.ConfigErrors) else [exc]
        for p in problems[: config_mod.MAX_PROBLEMS]:
            key = p.key if isinstance(p, ConfigError) else None
            say(REDACTOR.redact(str(p)), key=key, level=logging.ERROR)
        if len(problems) > config_mod.MAX_PROBLEMS:
            more = len(problems) - config_mod.MAX_PROBLEMS
            say(f"config: {more} more problems not listed", key="config", level=logging.ERROR)
        sys.exit(exc.exit_code)
    except LimefortError as exc:
        if verbose:
            log.exception("failed")
        say(REDACTOR.redact(str(exc)), level=logging.ERROR)
        sys.exit(EX_PARTIAL)
    except KeyboardInterrupt:
        say("interrupted", level=logging.ERROR)
        sys.exit(130)
    except Exception as exc:
        if verbose:
            log.exception("internal error")
        say(
            f"internal error: {REDACTOR.redact(repr(exc))} (run with -v for the traceback)",
            level=logging.ERROR,
        )
        sys.exit(70)
    sys.exit(rc if isinstance(rc, int) else EX_OK)
