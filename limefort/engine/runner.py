"""Wiring around a pass, shared by the CLI commands, the daemon and the demo: the lock, the
store, the clients, the run record, metrics and the ping. No decisions live here."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from limefort.bookkeeping.payments import owed_by_currency, payment_of
from limefort.clients.fortnox import FortnoxClient
from limefort.clients.fortnox_tokens import RefreshTokenTokens, ServiceAccountTokens
from limefort.clients.limego import LimeGoClient
from limefort.clients.redaction import REDACTOR
from limefort.config import Config
from limefort.core.errors import EX_OK, EX_PARTIAL, AuthError, ConfigError, LimefortError, UserError
from limefort.core.models import TokenRecord
from limefort.engine.sync import PassResult, Syncer
from limefort.engine.token_binding import FORTNOX_TOKEN, LIMEGO_TOKEN, token_cache
from limefort.ops.metrics import PassMetrics, Pinger, build_registry, write_textfile
from limefort.state.lock import RunLock
from limefort.state.store import Store

log = logging.getLogger("limefort")


def open_store(cfg: Config, *, create: bool = True) -> Store:
    store = Store.open(cfg.state.path, create=create, busy_timeout=cfg.state.busy_timeout)
    _import_refresh_token(cfg, store)
    return store


def _import_refresh_token(cfg: Config, store: Store) -> None:
    """A refresh token in the config is imported once; after that it rotates in the store and
    the (now spent) value in the config is ignored unless it is replaced by a new one."""
    token = cfg.fortnox.refresh_token
    if not token:
        return
    digest = hashlib.sha256(token.encode()).hexdigest()
    if store.get_meta("imported_refresh_token") == digest:
        return
    # Store.save commits on its own (it refuses to run inside a transaction). Saved first: a
    # crash before the mark only imports the same token again on the next start.
    store.save("fortnox", TokenRecord(refresh_token=token, refresh_issued_at=time.time()))
    store.set_meta("imported_refresh_token", digest)


def build_clients(cfg: Config, store: Store) -> tuple[LimeGoClient, FortnoxClient]:
    # A cached access token is used only if the configured client id and secret obtained it:
    # a wrong secret then fails at once (exit 3) instead of hiding behind a cached token.
    cache = token_cache(cfg, store)
    limego = LimeGoClient(cfg.limego, http=cfg.http, tokens=cache)
    tokens: ServiceAccountTokens | RefreshTokenTokens
    if cfg.fortnox.tenant_id:
        tokens = ServiceAccountTokens(cfg.fortnox, cache, http=cfg.http)
    else:
        stored = store.load("fortnox")
        if not (stored and stored.refresh_token):
            raise ConfigError(
                "fortnox.tenant_id",
                "missing: set tenant_id (service account) or refresh_token, "
                "or run `limefort auth fortnox` once",
            )
        tokens = RefreshTokenTokens(cfg.fortnox, cache, http=cfg.http)
    # Credentials changed since a token was last obtained (or a fresh state file): try them
    # now, so that even a pass with nothing to send says a secret is wrong (exit 3). Only an
    # authentication failure counts here; an unreachable service is the pass's to report.
    for name, obtain in ((LIMEGO_TOKEN, limego.access_token), (FORTNOX_TOKEN, tokens.access_token)):
        if cache.unverified(name):
            try:
                obtain()
            except AuthError:
                raise
            except LimefortError as exc:
                log.debug("could not check the %s credentials yet: %s", name, exc)
    return limego, FortnoxClient(cfg.fortnox, tokens, http=cfg.http)


@contextmanager
def locked(cfg: Config) -> Iterator[None]:
    if not cfg.state.path.parent.exists():
        raise ConfigError("state.path", f"directory {cfg.state.path.parent} does not exist")
    with RunLock(cfg.state.path):
        yield


def summarise(
    counts: Mapping[str, int],
    dry_run: bool = False,
    *,
    outstanding: int = 0,
    clean: bool = True,
) -> str:
    """One line for a pass. It never says "in line" while anything needs attention:
    `outstanding` records are still quarantined, pending or drifted; `clean=False` (a past
    run that exited non-zero, whose leftovers are not known any more) says so instead."""
    # (count key, what happened, what a dry run would do): the count is put in front.
    verbs = [
        ("customers_created", "customer{s} created", "customer{s} to create"),
        ("customers_adopted", "customer{s} linked", "customer{s} to link"),
        ("customers_updated", "customer{s} updated", "customer{s} to update"),
        ("customers_shared", "customer{s} linked as shared", "customer{s} to link as shared"),
        ("invoices_created", "invoice{s} created", "invoice{s} to create"),
        ("orders_created", "order{s} created", "order{s} to create"),
        ("reconciled", "lost answer{s} reconciled", "lost answer{s} to reconcile"),
        (
            "skipped_historical",
            "deal{s} won before sync.start skipped",
            "deal{s} won before sync.start to skip",
        ),
        ("quarantined", "quarantined", "to quarantine"),
        ("pending", "pending", "pending"),
        ("failed", "failed (will retry)", "failed (will retry)"),
        ("documents_updated", "document{s} updated to follow its deal", "document{s} to update"),
        ("drift", "deal{s} with unacknowledged drift", "deal{s} with unacknowledged drift"),
        (
            "duplicates",
            "duplicate{s} in Fortnox (see `limefort status`)",
            "duplicate{s} in Fortnox (see `limefort status`)",
        ),
        (
            "other_writer",
            "stopped: another installation writes to this tenant",
            "would stop: another installation writes to this tenant",
        ),
    ]
    parts = []
    relinked = counts.get("documents_relinked", 0)
    if relinked:
        # A lost, old or second state file: Fortnox (the ledger) already had these.
        adopted = counts.get("customers_adopted", 0)
        verb = "rebuilt links" if not dry_run else "links to rebuild"
        parts.append(
            f"{verb}: {adopted} customer{'s' if adopted != 1 else ''}, "
            f"{relinked} document{'s' if relinked != 1 else ''}"
        )
        verbs = [v for v in verbs if v[0] != "customers_adopted"]
    for key, done, todo in verbs:
        n = counts.get(key, 0)
        if n:
            parts.append(f"{n} " + (todo if dry_run else done).format(s="" if n == 1 else "s"))
    if outstanding:
        s = "" if outstanding == 1 else "s"
        parts.append(
            f"{outstanding} record{s} still need{'s' if outstanding == 1 else ''} attention "
            "(see `limefort status`)"
        )
    cut = counts.get("field_warnings", 0)
    if not parts and cut:
        # Never "in line" while Fortnox holds a value other than Lime Go's (rule 15).
        s = "" if cut == 1 else "s"
        parts.append(
            f"nothing to do; {cut} record{s} in Fortnox with a value cut or left blank "
            "(see `limefort status`)"
        )
    if not parts:
        parts.append(
            "nothing to do: Fortnox is in line with Lime Go"
            if clean
            else "nothing sent; records needed attention"
        )
    reqs = counts.get("fortnox_requests", 0)
    return "; ".join(parts) + f" ({reqs} Fortnox request{'s' if reqs != 1 else ''})"


def one_pass(
    cfg: Config,
    *,
    command: str,
    work: Callable[[Syncer], PassResult],
    echo: Callable[[str], None],
    report: Callable[[PassResult, bool], None],
    dry_run: bool = False,
    stop_event: threading.Event | None = None,
) -> int:
    """Everything around a pass: lock, store, run record, clients, metrics and ping."""
    with locked(cfg):
        store = open_store(cfg)
        try:
            limego, fortnox = build_clients(cfg, store)
            syncer = Syncer(
                cfg, store, limego, fortnox, dry_run=dry_run, echo=echo, stop_event=stop_event
            )
            if dry_run:
                echo("Dry run: nothing is written to Fortnox or to the state file.")
                result = work(syncer)
                result.outstanding = leftovers(store, result)
                report(result, True)
                return result.exit_code
            pinger = Pinger(cfg.metrics.ping_url)
            pinger.start()
            started = time.time()
            run_id = store.start_run(command)
            code = EX_PARTIAL
            result = PassResult()
            reason: str | None = "ended by an error (see the log)"
            try:
                result = work(syncer)
                result.outstanding = leftovers(store, result)
                code = result.exit_code or _leftover_code(store)
                reason = run_reason(result) if code else None
            except UserError as exc:
                code = exc.exit_code
                reason = str(exc)
                raise
            finally:
                counts = dict(result.counts)
                store.finish_run(run_id, code, counts, REDACTOR.redact(reason) if reason else None)
                _write_metrics(cfg, store, started, code, counts)
                pinger.finish(code)
                log.info(
                    "%s finished with exit code %s: %s",
                    command,
                    code,
                    summarise(counts, outstanding=len(result.outstanding)),
                    extra={"counts": counts, "exit_code": code, "command": command},
                )
            report(result, False)
            return code
        finally:
            store.close()


def run_reason(result: PassResult) -> str | None:
    """Why a pass ended non-zero, in one line, for `status`."""
    for text in (result.other_writer, result.aborted):
        if text:
            return text
    named = [*result.problems, *result.outstanding]
    if named:
        key, text = named[0]
        more = f" (and {len(named) - 1} more)" if len(named) > 1 else ""
        return f"{key} {text}{more}"
    if result.stopped:
        return "stopped on request between two records"
    return None


def leftovers(store: Store, result: PassResult) -> list[tuple[str, str]]:
    """What still needs attention after a pass, each record named (those the pass itself
    named already are left out): quarantined, pending, and unacknowledged drift."""
    named = {key for key, _ in result.problems}
    out: list[tuple[str, str]] = []
    for q in store.all_quarantined():
        if q.key not in named:
            out.append((q.key, f"still quarantined: {q.reason} ({q.hint})"))
    for link in store.pending_customers():
        key = f"company:{link.company_id}"
        if key not in named:
            out.append((key, "customer outcome unknown; checked against Fortnox each pass"))
    for intent in store.pending_documents():
        key = f"deal:{intent.deal_id}"
        if key not in named:
            out.append((key, f"{intent.kind} outcome unknown; checked against Fortnox each pass"))
    # Unacknowledged drift is named by every pass itself (sync.note_drift), as problems.
    return out


def _leftover_code(store: Store) -> int:
    """0 only when everything in scope is in Fortnox: nothing quarantined, nothing pending."""
    if store.all_quarantined() or store.pending_documents() or store.pending_customers():
        return EX_PARTIAL
    if store.unacked_drift():  # rule 12: until a person acknowledges it
        return EX_PARTIAL
    return EX_OK


def owed(cfg: Config, store: Store) -> dict[str, dict[str, Decimal]]:
    """What limefort's invoices still owe, per currency, from the index this pass's ledger
    read (Fortnox's invoice list items carry Balance and DueDate: no request of its own)."""
    today = store.clock().astimezone(ZoneInfo(cfg.sync.timezone)).date()
    return owed_by_currency(payment_of(**r, today=today) for r in store.ledger_invoices())


def metric_counts(counts: dict[str, int]) -> dict[str, int]:
    """A pass's counts under the names limefort.ops.metrics documents: invoices and orders as
    `documents_created`, Fortnox's 429s as `rate_limited`. Lime Go's request counts are not
    records, so they stay out of limefort_records_total."""
    out = dict(counts)
    out["documents_created"] = out.pop("invoices_created", 0) + out.pop("orders_created", 0)
    out["rate_limited"] = out.pop("fortnox_rate_limited", 0)
    for k in ("limego_requests", "limego_rate_limited"):
        out.pop(k, None)
    return out


def _write_metrics(
    cfg: Config, store: Store, started: float, code: int, counts: dict[str, int]
) -> None:
    if not cfg.metrics.textfile:
        return
    last = store.last_success()
    registry = build_registry(
        PassMetrics(
            started_at=started,
            finished_at=time.time(),
            exit_code=code,
            counts={
                **metric_counts(counts),
                "in_quarantine": len(store.all_quarantined()),
                "with_warnings": store.records_with_warnings(),
            },
            owed=owed(cfg, store) if cfg.sync.document_kind == "invoice" else None,
        ),
        last_success=datetime.fromisoformat(last).timestamp() if last else None,
        tenant=cfg.metrics.tenant,
    )
    write_textfile(cfg.metrics.textfile, registry)  # logs instead of raising
