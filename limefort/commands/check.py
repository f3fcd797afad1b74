"""`limefort check`: is the config right, are both sets of credentials good, does the Fortnox
company hold the scopes and licences the sync needs, and the assumptions limefort makes about
this Lime Go account: the stage categories and names it finds and which count as won, and the
custom-field keys companies have (whether the visiting-address keys the mapping reads exist).

Changes nothing in either system: every call is a read. The one write it may cause is a
refresh-token rotation (when the stored access token has expired), which is why it takes the
run lock in refresh-token mode, and why it then keeps the state file the rotated token lives in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from limefort import config as config_mod
from limefort.bookkeeping.booking import booking_lines
from limefort.clients.fortnox import DOCUMENTS, FortnoxClient
from limefort.clients.fortnox_errors import NO_REFRESH_TOKEN
from limefort.clients.fortnox_tokens import (
    REFRESH_TOKEN_DAYS,
    RefreshTokenTokens,
    ServiceAccountTokens,
    tenant_from_token,
)
from limefort.clients.limego import LimeGoClient
from limefort.clients.redaction import REDACTOR
from limefort.config import Config
from limefort.core.errors import (
    EX_AUTH,
    EX_OK,
    EX_PARTIAL,
    EX_TEMPFAIL,
    ApiError,
    AuthError,
    LimefortError,
    LockHeld,
    ServiceError,
    UserError,
)
from limefort.core.explain import explain
from limefort.core.models import Stage, TokenRecord
from limefort.engine.runner import locked, open_store
from limefort.engine.token_binding import token_cache
from limefort.mapping import build_mappings, parse_source
from limefort.mapping.normalise import normalise_country
from limefort.plan import deal_currency, won_stage_ids
from limefort.plan.cursor import skew as cursor_skew
from limefort.state.store import Store, token_age_days

Echo = Callable[..., None]

LIMEGO_SCOPES = ("companies:read", "deals:read", "contacts:read", "reference:read")
WARN_DAYS_LEFT = 7
# A check is interactive: one retry is enough to tell "down" from "a blip".
CHECK_ATTEMPTS = 2


@dataclass
class Report:
    """Prints one line per finding and remembers the worst outcome."""

    echo: Echo
    failed: int = 0
    warned: int = 0
    auth_failed: bool = False
    auth_failures: int = 0  # credentials rejected so far (one line each, never contradicted)
    lock_held: bool = False
    # What the Lime Go checks saw, for the booking checks (currencies, customers abroad).
    sample_currencies: set[str] = dataclasses.field(default_factory=set)
    sample_countries: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> code

    def __post_init__(self) -> None:
        self.marks = _marks()

    def _line(self, mark: str, text: str) -> None:
        # Messages can quote exceptions: pass everything through the redactor.
        self.echo(f"{mark} {REDACTOR.redact(text)}")

    def ok(self, text: str) -> None:
        self._line(self.marks[0], text)

    def fail(self, text: str, *, auth: bool = False) -> None:
        self.failed += 1
        self.auth_failed = self.auth_failed or auth
        self.auth_failures += auth
        self._line(self.marks[1], text)

    def warn(self, text: str) -> None:
        self.warned += 1
        self._line(self.marks[2], text)

    def exit_code(self) -> int:
        if self.auth_failed:
            return EX_AUTH
        if self.failed:
            return EX_PARTIAL
        if self.lock_held:
            return EX_TEMPFAIL
        return EX_OK


def _marks() -> tuple[str, str, str]:
    marks = ("✓", "✗", "!")
    try:
        "".join(marks).encode(getattr(sys.stdout, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return ("OK  ", "FAIL", "WARN")
    return marks


def run_checks(cfg: Config, echo: Echo) -> int:
    """Report line by line; 0 when all pass, 3 when a credential is rejected, 1 otherwise
    (75 when only the Fortnox checks were skipped because a pass holds the lock)."""
    r = Report(echo)
    cfg = replace(cfg, http=replace(cfg.http, attempts=min(cfg.http.attempts, CHECK_ATTEMPTS)))
    _check_config(cfg, r)
    existed = _check_state_file(cfg, r)
    uses_refresh_token = not cfg.fortnox.tenant_id

    with contextlib.ExitStack() as stack:
        fortnox_ok_to_call = True
        if uses_refresh_token:
            # Fortnox may hand out a new refresh token during the check (the stored access
            # token expired): only the lock holder may spend one.
            try:
                stack.enter_context(locked(cfg))
            except LockHeld:
                r.lock_held = True
                fortnox_ok_to_call = False
            except UserError as exc:
                r.fail(str(exc))
                fortnox_ok_to_call = False
        store: Store | None = None
        if uses_refresh_token and fortnox_ok_to_call:
            # The refresh token lives in the state file (a config one is imported into it).
            # Not while another pass holds the lock: opening imports a config refresh token.
            store = _open_store(cfg, r, existed=existed)
        if store is not None:
            stack.callback(store.close)

        _check_limego(cfg, store, r)
        if r.lock_held:
            r.warn(
                "Fortnox: not checked: another limefort is running and holds the lock "
                "(a check could rotate the refresh token under it); try again when it has "
                "finished"
            )
        elif not fortnox_ok_to_call:
            pass  # the lock could not be taken: said above
        elif uses_refresh_token and store is None:
            if existed or cfg.fortnox.refresh_token:
                r.fail("Fortnox: not checked: the refresh token needs a usable state file")
            else:
                r.fail(f"Fortnox: {NO_REFRESH_TOKEN}", auth=True)
        else:
            before = store.load("fortnox") if store is not None else None
            rejected = r.auth_failures
            _check_fortnox(cfg, store, r)
            # One thing per credential: a refresh token Fortnox just refused has no days left
            # worth printing beside that line.
            if store is not None and r.auth_failures == rejected:
                _check_refresh_token(before, store.load("fortnox"), r)

    code = r.exit_code()
    if code == EX_OK:
        tail = f" ({r.warned} warning{'s' if r.warned != 1 else ''})" if r.warned else ""
        echo(f"All checks passed{tail}.")
    elif code == EX_TEMPFAIL:
        echo("Checks passed, but Fortnox was not checked: run `limefort check` again later.")
    else:
        echo(
            f"{r.failed} check{'s' if r.failed != 1 else ''} failed"
            + (": a credential was rejected." if r.auth_failed else ".")
        )
    return code


# ---------------------------------------------------------------------------------------------
# Local files
# ---------------------------------------------------------------------------------------------


def _check_config(cfg: Config, r: Report) -> None:
    where = str(cfg.source) if cfg.source else "the environment (no config file)"
    r.ok(f"config: {where}")
    if config_mod.world_readable_with_secret(cfg):
        r.warn(
            f"config: {cfg.source} holds a secret and is readable by other users: chmod 600 it, "
            "or move the secret to LIMEFORT_<SECTION>_<KEY> in the environment"
        )


def _check_state_file(cfg: Config, r: Report) -> bool:
    path = cfg.state.path
    if not path.exists():
        if not path.parent.is_dir():
            r.fail(f"state file: {path}: directory {path.parent} does not exist (state.path)")
        elif not os.access(path.parent, os.W_OK):
            r.fail(f"state file: {path}: cannot create it, {path.parent} is not writable")
        else:
            r.ok(f"state file: {path} (not there yet: the first pass creates it, mode 0600)")
        return False
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        r.warn(
            f"state file: {path} has mode {mode:04o}: it holds tokens and should be 0600 "
            "(limefort tightens it on the next pass; or chmod 600 it now)"
        )
    else:
        r.ok(f"state file: {path} (mode {mode:04o})")
    return True


def _open_store(cfg: Config, r: Report, *, existed: bool) -> Store | None:
    """The store of a refresh-token config. Created only to import the config's refresh token:
    the check may rotate it, and the rotated one must be kept."""
    if not existed and not cfg.fortnox.refresh_token:
        return None
    try:
        store = open_store(cfg)
    except UserError as exc:
        r.fail(f"state file: {exc}")
        return None
    if not existed:
        r.ok(f"state file: created {cfg.state.path} (mode 0600) to keep the rotated refresh token")
    return store


# ---------------------------------------------------------------------------------------------
# Lime Go
# ---------------------------------------------------------------------------------------------


def _check_limego(cfg: Config, store: Store | None, r: Report) -> None:
    lg_cfg = cfg.limego
    try:
        client = LimeGoClient(
            lg_cfg, http=cfg.http, tokens=token_cache(cfg, store) if store is not None else None
        )
        granted = client.granted_scopes
    except AuthError as exc:
        r.fail(f"Lime Go: {exc}", auth=True)
        return
    except (ServiceError, UserError) as exc:
        r.fail(f"Lime Go: not reachable at {lg_cfg.base_url}: {exc}")
        return
    r.ok(f"Lime Go: {lg_cfg.base_url}: authorised; scopes granted: {' '.join(sorted(granted))}")
    missing = [s for s in LIMEGO_SCOPES if s not in granted]
    if missing:
        r.warn(
            f"Lime Go: the API client lacks {' '.join(missing)} (limefort reads companies, "
            f"deals, contacts and reference data: needs {' '.join(LIMEGO_SCOPES)})"
        )

    try:
        stages = client.stages()
    except AuthError as exc:
        r.fail(f"Lime Go stages: {exc}", auth=True)
        return
    except LimefortError as exc:
        r.fail(f"Lime Go stages: cannot read them: {exc}")
        return
    won_ids = won_stage_ids(stages, lg_cfg.won_stage_categories, lg_cfg.won_stage_names)
    rule = _won_rule(lg_cfg.won_stage_categories, lg_cfg.won_stage_names)
    if not won_ids:
        known = ", ".join(f'"{s.name}" ({s.category or "no category"})' for s in stages.values())
        r.fail(
            f"won stages: no Lime Go stage matches {rule}, so no deal would ever be invoiced; "
            f"the stages are: {known or 'none'} (set [limego] won_stage_categories or "
            "won_stage_names)"
        )
        return
    won = ", ".join(
        f'"{stages[i].name}" (category {stages[i].category or "none"})' for i in sorted(won_ids)
    )
    r.ok(f"won stages: {won}, by {rule}")
    names = {s.name.casefold() for s in stages.values()}
    unknown = [n for n in lg_cfg.won_stage_names if n.casefold() not in names]
    if unknown:
        r.warn(
            f"won stages: won_stage_names lists {', '.join(repr(n) for n in unknown)}, which "
            "no Lime Go stage is called"
        )
    r.ok(f"stages found: {describe_stages(stages, won_ids)}")
    _check_clock(client, r)
    _check_company_fields(cfg, client, r)
    with contextlib.suppress(LimefortError):  # reachable and readable was said above
        page = next(client.iter_deals(descending=True), None)
        r.sample_currencies = {c for d in (page.deals if page else []) if (c := deal_currency(d))}


# Beyond this, a person should hear that the clocks disagree (it costs limefort nothing: its
# cursors follow Lime Go's clock, DESIGN rule 10, but times in logs and `status` will differ).
SKEW_WARN_SECONDS = 120.0


def clock_skew_text(seconds: float) -> str:
    """`Lime Go's clock is 15 min behind this machine's` (whole seconds under two minutes)."""
    ahead = "ahead of" if seconds > 0 else "behind"
    size = abs(seconds)
    amount = f"{size / 60:.0f} min" if size >= 120 else f"{size:.0f} s"
    return f"Lime Go's clock is {amount} {ahead} this machine's"


def _check_clock(client: LimeGoClient, r: Report) -> None:
    measured = cursor_skew(client.last_date, datetime.now(UTC))
    if measured is None:
        r.warn(
            "Lime Go's clock: its answers carry no Date header; cursors fall back to this "
            "machine's clock"
        )
        return
    if abs(measured) < SKEW_WARN_SECONDS:
        r.ok(f"{clock_skew_text(measured)} (cursors follow Lime Go's clock)")
        return
    r.warn(
        f"{clock_skew_text(measured)}: limefort's cursors follow Lime Go's clock, so nothing "
        "is lost, but times in logs differ; check the time service (NTP) of this machine"
    )


def describe_stages(stages: Mapping[str, Stage], won_ids: Iterable[str]) -> str:
    """Every stage by category, the won ones marked: the assumption that
    a category (or name) means "won" is one the user should see."""
    won = set(won_ids)
    by_category: dict[str, list[str]] = {}
    for stage in stages.values():
        mark = " (won)" if stage.id in won else ""
        by_category.setdefault(stage.category or "no category", []).append(f'"{stage.name}"{mark}')
    return "; ".join(f"{cat}: {', '.join(names)}" for cat, names in by_category.items())


def mapped_custom_fields(customer_mapping: Mapping[str, str]) -> dict[str, str]:
    """custom-field key -> the Fortnox customer field it fills, from the customer mapping."""
    out: dict[str, str] = {}
    for field, path in customer_mapping.items():
        src = parse_source(path, document=False) if path else None
        if src is not None and src.attr == "custom_fields" and src.key:
            out[src.key] = field
    return out


def _check_company_fields(cfg: Config, client: LimeGoClient, r: Report) -> None:
    """Which custom-field keys companies have, and whether the ones the mapping reads (the
    visiting address by default) exist: a missing key silently sends nothing."""
    try:
        defined = client.company_field_defs()
        first = next(client.iter_companies(), [])
    except AuthError as exc:
        r.fail(f"Lime Go custom fields: {exc}", auth=True)
        return
    except LimefortError as exc:
        r.fail(f"Lime Go custom fields: cannot read them: {exc}")
        return
    for c in first:
        code = normalise_country(str(c.attributes.get("country") or "-"), cfg.mapping.countries)
        if isinstance(code, str):
            r.sample_countries[c.id] = code
    seen: dict[str, int] = {}
    for company in first:
        values = company.attributes.get("custom_fields")
        if isinstance(values, Mapping):
            for key, value in values.items():
                if value not in (None, ""):
                    seen[str(key)] = seen.get(str(key), 0) + 1
    keys = sorted(set(defined) | set(seen))
    listed = ", ".join(
        f"{k} {seen.get(k, 0)}/{len(first)}" + ("" if k in defined else " (no definition)")
        for k in keys
    )
    r.ok(
        f"company custom fields (key, filled on how many of the first {len(first)} "
        f"companies): {listed or 'none'}"
    )
    customer_mapping = build_mappings(cfg.mapping.customer, cfg.mapping.document)[0]
    wanted = mapped_custom_fields(customer_mapping)
    visiting = {k: f for k, f in wanted.items() if f.startswith(("Delivery", "Visiting"))}
    missing = [k for k in visiting if k not in defined and k not in seen]
    if not visiting:
        r.ok("visiting address: not mapped (no Delivery*/Visiting* field reads a custom field)")
    elif missing:
        r.warn(
            "visiting address: Lime Go companies have no custom field "
            + ", ".join(f"{k} (for {visiting[k]})" for k in missing)
            + ": those Fortnox fields stay empty; set [mapping.customer] to the keys above"
        )
    else:
        r.ok(
            "visiting address: "
            + ", ".join(f"custom_fields.{k} -> {f}" for k, f in visiting.items())
            + ": all found"
        )
    others = [k for k in wanted if k not in visiting and k not in defined and k not in seen]
    if others:
        r.warn(
            "mapping: [mapping.customer] reads custom fields no Lime Go company has: "
            + ", ".join(f"{k} (for {wanted[k]})" for k in others)
        )


def _won_rule(categories: tuple[str, ...], names: tuple[str, ...]) -> str:
    parts = []
    if categories:
        parts.append(f"won_stage_categories = {_toml_list(categories)}")
    if names:
        parts.append(f"won_stage_names = {_toml_list(names)}")
    return " or ".join(parts)


def _toml_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(json.dumps(i, ensure_ascii=False) for i in items) + "]"


# ---------------------------------------------------------------------------------------------
# Fortnox
# ---------------------------------------------------------------------------------------------


def _check_fortnox(cfg: Config, store: Store | None, r: Report) -> None:
    fx = cfg.fortnox
    tokens: ServiceAccountTokens | RefreshTokenTokens
    # Cached tokens count only for the client id and secret they were issued to.
    bound = token_cache(cfg, store) if store is not None else None
    try:
        if fx.tenant_id:
            tokens = ServiceAccountTokens(fx, bound, http=cfg.http)
        else:
            assert bound is not None
            tokens = RefreshTokenTokens(fx, bound, http=cfg.http)
        client = FortnoxClient(fx, tokens, http=cfg.http)
        info: dict[str, Any] | None = client.company_information()
        info_error: ApiError | None = None
    except AuthError as exc:
        r.fail(f"Fortnox: {exc}", auth=True)
        return
    except ApiError as exc:
        # The token was accepted; only this read was refused (a scope or a licence).
        info, info_error = None, exc
    except (ServiceError, UserError) as exc:
        r.fail(f"Fortnox: not reachable at {fx.api_url}: {exc}")
        return

    kind = "service account" if fx.tenant_id else "refresh token"
    if info is not None:
        name = info.get("CompanyName") or info.get("Name") or "unnamed company"
        tenant = info.get("DatabaseNumber")
        r.ok(f'Fortnox: {fx.api_url}: authorised ({kind}) for "{name}" (tenant {tenant})')
        if fx.tenant_id and tenant is not None and str(tenant) != fx.tenant_id:
            r.warn(
                f"Fortnox: [fortnox] tenant_id is {fx.tenant_id} but the company's "
                f"DatabaseNumber is {tenant}"
            )
        r.ok("Fortnox companyinformation: readable")
    else:
        token = tokens.access_token()
        tenant = fx.tenant_id or tenant_from_token(token) or "unknown"
        r.ok(f"Fortnox: {fx.api_url}: authorised ({kind}) for tenant {tenant}")
        assert info_error is not None
        r.fail(f"Fortnox companyinformation: {explain(info_error, scope='companyinformation')}")

    probes = [("customer", "/customers", "customers")]
    target = cfg.sync.deal_target
    if target in DOCUMENTS:
        path, _, _ = DOCUMENTS[target]
        probes.append((target, f"/{path}", f'{path} (sync.deal_target = "{target}")'))
    for scope, path, what in probes:
        try:
            client.get(path, {"limit": 1})
        except AuthError as exc:
            r.fail(f"Fortnox {scope}: {exc}", auth=True)
            return
        except ApiError as exc:
            r.fail(f"Fortnox {scope}: {what} not readable: {explain(exc, scope=scope)}")
        except (ServiceError, UserError) as exc:
            r.fail(f"Fortnox {scope}: {what}: {exc}")
        else:
            r.ok(f"Fortnox {scope}: {what} readable")
    if target not in DOCUMENTS:
        r.ok('Fortnox documents: sync.deal_target = "none": no invoice or order module needed')

    record = store.load("fortnox") if store is not None else None
    granted = set((record.scope or "").split()) if record and record.scope else None
    needed = ["companyinformation", "customer", *([target] if target in DOCUMENTS else [])]
    if granted is not None:
        missing = [s for s in needed if s not in granted]
        if missing:
            r.warn(
                f"Fortnox: the token's scopes ({' '.join(sorted(granted))}) lack "
                f"{' '.join(missing)}: add them to the app and consent again "
                "(`limefort auth fortnox`)"
            )
    # Whether the company can book what limefort sends, before the first document.
    known_currencies, known_countries = _recorded(cfg, store)
    currencies = r.sample_currencies | known_currencies
    # by company: one the state file knows and the first page shows counts once
    countries = {**r.sample_countries, **known_countries}
    try:
        lines = booking_lines(
            cfg, client.get, deal_currencies=currencies, countries=countries.values()
        )
    except AuthError as exc:
        r.fail(f"Fortnox: {exc}", auth=True)
        return
    except (ServiceError, UserError) as exc:
        r.warn(f"booking: not verified: {exc}")
        return
    for line in lines:
        {"ok": r.ok, "warn": r.warn, "fail": r.fail}[line.level](line.text)


def _recorded(cfg: Config, store: Store | None) -> tuple[set[str], dict[str, str]]:
    """The deals' currencies and the customers' countries the state file knows (opened for
    reading only when the check did not open it: a service account needs no state file)."""
    if store is not None:
        return store.known_currencies(), store.customer_countries()
    if not cfg.state.path.exists():
        return set(), {}
    try:
        ro = Store.open_read_only(cfg.state.path, busy_timeout=cfg.state.busy_timeout)
    except UserError:
        return set(), {}  # the state file's own line above says what is wrong with it
    try:
        return ro.known_currencies(), ro.customer_countries()
    finally:
        ro.close()


def _check_refresh_token(before: TokenRecord | None, after: TokenRecord | None, r: Report) -> None:
    if after is None or not after.refresh_token:
        return
    rotated = before is not None and before.refresh_token != after.refresh_token
    age = token_age_days(after)
    if age is None:
        r.warn("Fortnox refresh token: its age is unknown (no issue time stored)")
        return
    left = REFRESH_TOKEN_DAYS - age
    text = (
        f"Fortnox refresh token: {_days(age)} old, {_days(max(left, 0))} of "
        f"{REFRESH_TOKEN_DAYS} left"
    )
    if rotated:
        text += " (rotated just now by this check)"
    if left <= 0:
        r.fail(f"{text}: expired; run `limefort auth fortnox` again")
    elif left < WARN_DAYS_LEFT:
        r.warn(f"{text}: run a pass (`limefort sync`) soon, or it expires")
    else:
        r.ok(f"{text}; every pass rotates it")


def _days(d: float) -> str:
    if d < 1:
        hours = d * 24
        return f"{hours:.0f} hour{'s' if round(hours) != 1 else ''}"
    return f"{d:.0f} day{'s' if round(d) != 1 else ''}"
