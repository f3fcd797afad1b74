"""`limefort audit` as a command: the window, the clients, the output format; the findings
themselves are `audit`'s."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from limefort.commands.common import App, date_window, json_logs, zone
from limefort.commands.progress import PassProgress, choose_mode
from limefort.config import Config
from limefort.core.errors import (
    EX_OK,
    EX_PARTIAL,
    ConfigError,
)
from limefort.core.models import DocumentKind
from limefort.core.privacy import lines_shown
from limefort.engine.runner import build_clients, locked, open_store
from limefort.state.files import check_new_file, write_new_file


@contextmanager
def _audit_clients(cfg: Config) -> Iterator[tuple[Any, Any]]:
    """Clients that write nothing: a service account's tokens live in memory. A refresh token
    is single-use and rotates: then the audit holds the run lock and keeps the rotated token
    in the state file (as `check` does), and that is all it writes there."""
    if cfg.fortnox.tenant_id:
        from limefort.clients.fortnox import FortnoxClient
        from limefort.clients.fortnox_tokens import ServiceAccountTokens
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
        quiet=app.quiet, json_logs=json_logs(), tty=sys.stderr.isatty(), lines_when_not_a_tty=False
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
