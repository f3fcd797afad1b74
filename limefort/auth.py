"""`limefort auth fortnox`: Fortnox's authorization-code consent, once, by an administrator.

The command prints the consent URL, catches Fortnox's redirect on a one-shot loopback HTTP
server (or takes the code pasted with `--code`), checks `state`, exchanges the code and
stores the tokens in the state file. The CLI holds the run lock around all of it, so no pass
can rotate the old refresh token while the new one is being stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import secrets
import socket
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from limefort.config import Config, is_loopback
from limefort.errors import EX_OK, AuthError, ConfigError, LimefortError, UserError
from limefort.fortnox import (
    FortnoxClient,
    RefreshTokenTokens,
    consent_url,
    exchange_code,
    tenant_from_token,
)
from limefort.http import REDACTOR
from limefort.models import TokenRecord
from limefort.store import Store

log = logging.getLogger("limefort.auth")

Echo = Callable[..., None]

TOKEN_NAME = "fortnox"
REFRESH_TOKEN_DAYS = 45  # Fortnox: a refresh token is single-use and lives 45 days
# The meta key runner._import_refresh_token uses to remember which config token it imported.
IMPORTED_META = "imported_refresh_token"

DONE_PAGE = (
    "<!doctype html><meta charset=utf-8><title>limefort</title>"
    "<body style='font-family:sans-serif;margin:3em'>"
    "<h1>limefort is authorised</h1><p>You can close this tab.</p></body>"
)
FAILED_PAGE = (
    "<!doctype html><meta charset=utf-8><title>limefort</title>"
    "<body style='font-family:sans-serif;margin:3em'>"
    "<h1>limefort was not authorised</h1><p>{reason}</p>"
    "<p>Nothing was stored. Run <code>limefort auth fortnox</code> again.</p></body>"
)

_QUERY = re.compile(r"\?[^\s'\"]*")
WAITING_PAGE = (
    "<!doctype html><meta charset=utf-8><title>limefort</title>"
    "<body style='font-family:sans-serif;margin:3em'>"
    "<p>This is not Fortnox's redirect; limefort is still waiting for it.</p></body>"
)

STATE_MISMATCH = (
    "Fortnox's redirect carried a different state than this consent request (a stale browser "
    "tab, or a redirect this command did not ask for); nothing was stored: run "
    "`limefort auth fortnox` again and use the URL it prints"
)


def consent(
    cfg: Config,
    store: Store,
    *,
    echo: Echo,
    service_account: bool,
    code: str | None,
    open_browser: bool,
    timeout: int,
) -> int:
    """Run the consent and store the tokens. Returns the exit code (0); raises UserError."""
    fx = cfg.fortnox
    redirect_uri = fx.redirect_uri
    if code is not None:
        code = _code_from(code)
    else:
        state = secrets.token_urlsafe(32)
        url = consent_url(fx, state, service_account=service_account)
        parts = urlsplit(redirect_uri)
        if parts.scheme != "http" or not is_loopback(parts.hostname):
            echo("Open this URL in a browser, logged in to Fortnox as an administrator:")
            echo(url)
            raise ConfigError(
                "fortnox.redirect_uri",
                f"{redirect_uri} is not a loopback http:// address, so limefort cannot catch "
                "Fortnox's redirect itself: approve in the browser, copy the `code` parameter "
                "from the address Fortnox redirects to, and run `limefort auth fortnox --code "
                "CODE` within 10 minutes",
            )
        with CallbackServer(redirect_uri, expected_state=state) as server:
            echo("Open this URL in a browser, logged in to Fortnox as an administrator:")
            echo(url)
            if open_browser:
                _open_browser(url)
            echo(f"Waiting up to {timeout} s for Fortnox's redirect to {redirect_uri} ...")
            callback = server.wait(timeout)
        code = _code_from_callback(callback, state, timeout)

    REDACTOR.add(code)
    record = exchange_code(fx, code, redirect_uri, http=cfg.http)
    if record.refresh_token and record.refresh_issued_at is None:
        record = replace(record, refresh_issued_at=time.time())
    store.save(TOKEN_NAME, record)
    _supersede_config_token(cfg, store)
    _report(cfg, store, record, echo=echo, service_account=service_account)
    return EX_OK


# ---------------------------------------------------------------------------------------------
# The one-shot loopback callback server
# ---------------------------------------------------------------------------------------------


@dataclass
class Callback:
    params: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        parts = urlsplit(self.path)
        owner = self.server.owner
        if parts.path.rstrip("/") != owner.path.rstrip("/"):
            # A browser also asks for /favicon.ico: not the redirect, keep waiting.
            self._answer(404, "<!doctype html><title>limefort</title>Not found.")
            return
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if not params.get("code") and not params.get("error"):
            # Not a redirect from Fortnox (a reload, a prefetch): keep waiting for the real one.
            self._answer(400, WAITING_PAGE)
            return
        if params.get("error"):
            reason = "Fortnox said: " + _escape(params.get("error_description") or params["error"])
            self._answer(400, FAILED_PAGE.format(reason=reason))
        elif owner.expected_state is not None and not _same(
            params.get("state", ""), owner.expected_state
        ):
            self._answer(400, FAILED_PAGE.format(reason="The state did not match."))
        else:
            self._answer(200, DONE_PAGE)
        owner.result = Callback(params)

    def _answer(self, status: int, page: str) -> None:
        body = page.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The request line holds the code: log the path only, never the query.
        log.debug("callback server: %s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        # Errors quote the request line too: drop every query string.
        log.debug("callback server: %s", _QUERY.sub("?...", format % args))


class _HTTPServer(HTTPServer):
    owner: CallbackServer
    allow_reuse_address = True


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class CallbackServer:
    """Listens on the redirect URI's loopback host and port until one redirect arrives."""

    def __init__(self, redirect_uri: str, expected_state: str | None = None) -> None:
        parts = urlsplit(redirect_uri)
        host = parts.hostname or "127.0.0.1"
        if host == "localhost":
            host = "127.0.0.1"
        self.path = parts.path or "/"
        self.expected_state = expected_state
        self.result: Callback | None = None
        cls = _HTTPServer6 if ":" in host else _HTTPServer
        try:
            self.server = cls((host, parts.port or 80), _Handler)
        except OSError as exc:
            raise ConfigError(
                "fortnox.redirect_uri",
                f"cannot listen on {host}:{parts.port or 80} ({exc.strerror or exc}): free the "
                "port, or choose another redirect_uri (and register it with the Fortnox app), "
                "or use --code",
            ) from None
        self.server.owner = self

    def wait(self, timeout: float) -> Callback | None:
        deadline = time.monotonic() + max(timeout, 0)
        while self.result is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.server.timeout = min(left, 1.0)
            self.server.handle_request()
        return self.result

    def close(self) -> None:
        self.server.server_close()

    def __enter__(self) -> CallbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _open_browser(url: str) -> None:
    # A headless machine has no browser: the printed URL is enough. webbrowser can also block
    # on a console browser, so it runs on a daemon thread.
    def run() -> None:
        with contextlib.suppress(Exception):  # any failure means: no browser
            webbrowser.open(url)

    threading.Thread(target=run, name="limefort-browser", daemon=True).start()


def _code_from(value: str) -> str:
    """The pasted code, or the code parameter of a pasted redirect URL."""
    value = value.strip()
    if "code=" in value:
        params = parse_qs(urlsplit(value).query or value.split("?", 1)[-1])
        if params.get("error"):
            raise AuthError(f"Fortnox refused the consent: {params['error'][-1]}")
        if params.get("code"):
            return params["code"][-1]
    if not value:
        raise UserError("--code: empty; paste the code parameter of Fortnox's redirect")
    return value


def _code_from_callback(callback: Callback | None, state: str, timeout: float) -> str:
    if callback is None:
        raise AuthError(
            f"no redirect from Fortnox arrived within {timeout:g} s; nothing was stored: run "
            "`limefort auth fortnox` again (with a longer --timeout), or approve and run "
            "`limefort auth fortnox --code CODE`"
        )
    params = callback.params
    if params.get("error"):
        detail = params.get("error_description") or params["error"]
        raise AuthError(
            f"Fortnox refused the consent ({detail}); nothing was stored: an administrator "
            "of the Fortnox company must approve `limefort auth fortnox`"
        )
    if not _same(params.get("state", ""), state):
        raise AuthError(STATE_MISMATCH)
    code = params.get("code")
    if not code:
        raise AuthError("Fortnox's redirect carried no code; nothing was stored: run again")
    return code


def _supersede_config_token(cfg: Config, store: Store) -> None:
    """The runner imports [fortnox] refresh_token into the store once per distinct value.
    Recording the config's value as imported makes sure it can never overwrite the tokens
    just stored (it is spent, or about to be)."""
    token = cfg.fortnox.refresh_token
    if token:
        store.set_meta(IMPORTED_META, hashlib.sha256(token.encode()).hexdigest())


def _same(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _report(
    cfg: Config, store: Store, record: TokenRecord, *, echo: Echo, service_account: bool
) -> None:
    fx = cfg.fortnox
    tenant = record.tenant_id or (
        tenant_from_token(record.access_token) if record.access_token else None
    )
    company = None
    try:
        tokens = RefreshTokenTokens(fx, store, http=cfg.http)
        info = FortnoxClient(fx, tokens, http=cfg.http).company_information()
        company = info.get("CompanyName") or info.get("Name")
        tenant = tenant or (str(info["DatabaseNumber"]) if info.get("DatabaseNumber") else None)
    except LimefortError as exc:
        # The tokens are stored; a missing companyinformation scope only costs the label.
        echo(f"limefort: could not read the company information: {exc}", err=True)

    echo(f"Fortnox: authorised; tokens stored in {cfg.state.path}.")
    label = " ".join(p for p in (company, f"(tenant {tenant})" if tenant else None) if p)
    echo(f"  Company:        {label or 'unknown'}")
    granted = set((record.scope or "").split())
    if record.scope:
        echo(f"  Scopes granted: {' '.join(sorted(granted))}")
        missing = [s for s in fx.scopes if s not in granted]
        if missing:
            echo(
                f"limefort: Fortnox did not grant {' '.join(missing)}: add the scope to the app "
                "in Fortnox's developer portal and consent again",
                err=True,
            )
    else:
        echo(f"  Scopes granted: as requested ({' '.join(fx.scopes)})")
    if record.access_token:
        echo(f"  Access token:   valid until {_when(record.expires_at)}")
    if record.refresh_token:
        issued = record.refresh_issued_at or time.time()
        expires = issued + REFRESH_TOKEN_DAYS * 86400
        echo(
            f"  Refresh token:  valid until {_when(expires)} ({REFRESH_TOKEN_DAYS} days); "
            "limefort rotates it on every refresh, so a pass at least every few weeks keeps "
            "it alive (`limefort run` does this on its own)"
        )
    if fx.refresh_token:
        where = cfg.source or "the config"
        echo(
            f"limefort: the refresh_token in {where} is superseded by the stored one and will "
            "be ignored; remove it",
            err=True,
        )
    if service_account:
        if tenant and fx.tenant_id == tenant:
            echo(f"Service account for tenant {tenant}: [fortnox] tenant_id already says so.")
        elif tenant:
            where = cfg.source or "your config"
            echo(f"Service account for tenant {tenant}. Put this line in [fortnox] of {where}:")
            echo(f'tenant_id = "{tenant}"')
        else:
            echo(
                "limefort: Fortnox did not say which tenant this is; find the DatabaseNumber "
                "in Fortnox and set [fortnox] tenant_id to it",
                err=True,
            )
