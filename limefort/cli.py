"""The `limefort` command: glue only (github-to-sqlite style). Each command's options and help
live here; its work lives in `limefort.commands`, imported when the command runs (an idle
`sync` loads no audit, check or sandbox code). Errors become exit codes in `main`. Nothing
imports this module."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from limefort import __version__
from limefort import config as config_mod
from limefort.clients.redaction import REDACTOR
from limefort.commands.common import App, say
from limefort.core.errors import (
    EX_OK,
    EX_PARTIAL,
    EX_USAGE,
    ConfigError,
    LimefortError,
    UserError,
)
from limefort.ops import logs

log = logging.getLogger("limefort")


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


def sandbox_installed() -> None:
    """The sandbox servers are a package of their own, kept out of the container image."""
    import importlib.util

    if importlib.util.find_spec("limefort_sandbox") is None:
        raise UserError(
            "the sandbox servers are not installed here (the container image leaves them out): "
            "run `make demo` from a clone of the repository"
        )


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

    from limefort.commands import passes as command

    return command.sync(app, since, dry_run, only, take_over)


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
    from limefort.commands import passes as command

    return command.backfill(app, from_, to, dry_run, yes)


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
    from limefort.commands import passes as command

    return command.run(app)


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
    from limefort.commands import status as command

    return command.status(app, as_json)


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
    from limefort.commands import retry as command

    return command.retry(app, keys, all_)


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
    from limefort.commands import init as command

    return command.init_command(app, no_input)


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
    from limefort.commands import auth as command

    return command.auth_command(app, service_account, code, open_browser, timeout)


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
    sandbox_installed()  # before importing the demo module, which imports the sandbox
    from limefort.commands import demo as command

    return command.serve_sandbox(
        app, companies, deals, seed, port_limego, port_fortnox, no_rate_limit, write_config, state
    )


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
    from limefort.commands import backup as command

    return command.backup(app, path, force)


# ---------------------------------------------------------------------------------------------


@cli.group()
def fleet() -> None:
    """Many tenants, one config each: see docs/operations.md, "Running many tenants"."""


@fleet.command("status")
@click.argument(
    "directory",
    metavar="[DIR]",
    required=False,
    default="/etc/limefort",  # commands.fleet.DEFAULT_DIR (a test keeps the two equal)
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
    from limefort.commands import fleet as command

    return command.fleet_command(directory, as_json)


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
    from limefort.commands import audit_command as command

    return command.audit(app, from_, to, as_json, csv_path, deep, force, list_payments, unpaid)


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
    from limefort.commands import ack as command

    return command.ack(app, keys, all_)


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
