"""`limefort auth fortnox`: Fortnox's authorization-code consent, once, by an administrator.

The command prints the consent URL, catches Fortnox's redirect on a one-shot loopback HTTP
server (or takes the code pasted with `--code`), exchanges the code and stores the tokens in
the state file. The run lock is held around the exchange and the store only, so no pass can
rotate the old refresh token while the new one is being stored, and no scheduled pass is
turned away while an administrator reads the consent page.

The callback server is exposed to every local process and, through the browser, to every web
page: it answers only requests that name the redirect URI's own host and port, carry this
consent's `state` (an `error=` too), and finish within a few seconds; it never ends the wait
for anything else. Text from the redirect is stripped of control characters before it is
echoed. PKCE is not sent: Fortnox's documentation of the authorization request and the token
exchange lists no `code_challenge` or `code_verifier` parameter.
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
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click

from limefort.clients.fortnox import FortnoxClient
from limefort.clients.fortnox_tokens import (
    REFRESH_TOKEN_DAYS,
    RefreshTokenTokens,
    consent_url,
    exchange_code,
    tenant_from_token,
)
from limefort.clients.redaction import REDACTOR
from limefort.commands.common import App
from limefort.config import Config
from limefort.core.errors import (
    EX_OK,
    AuthError,
    ConfigError,
    LimefortError,
    UserError,
)
from limefort.core.models import TokenRecord
from limefort.core.privacy import printable
from limefort.core.urls import is_loopback
from limefort.engine.runner import open_store
from limefort.state.files import check_private_dir
from limefort.state.lock import RunLock
from limefort.state.store import Store

log = logging.getLogger("limefort")

log = logging.getLogger("limefort.auth")

Echo = Callable[..., None]

TOKEN_NAME = "fortnox"
# The meta key runner._import_refresh_token uses to remember which config token it imported.
IMPORTED_META = "imported_refresh_token"
# How long one connection to the callback server may take to send its request: a browser
# sends it at once; an idle connection is closed after this, and never blocks the others.
CONNECTION_TIMEOUT = 5.0
# How long the exchange waits for a running pass to let go of the lock: the code lives
# 10 minutes, and giving up would waste the administrator's consent.
LOCK_WAIT = 300.0
# The most characters of a server's text echoed to the terminal.
ECHO_LIMIT = 200

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

IGNORED_PAGE = (
    "<!doctype html><meta charset=utf-8><title>limefort</title>"
    "<body style='font-family:sans-serif;margin:3em'>"
    "<p>This redirect does not belong to the consent limefort is waiting for (a stale tab, or "
    "a request limefort did not ask for); it was ignored. Use the URL limefort printed last."
    "</p></body>"
)


def consent(
    cfg: Config,
    *,
    echo: Echo,
    service_account: bool,
    code: str | None,
    open_browser: bool,
    timeout: int,
    lock_wait: float = LOCK_WAIT,
) -> int:
    """Run the consent and store the tokens. Returns the exit code (0); raises UserError."""
    fx = cfg.fortnox
    redirect_uri = fx.redirect_uri
    # Before anyone consents: a state directory limefort will refuse would waste the code.
    check_private_dir(cfg.state.path.parent)
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
            ignored = server.ignored
        code = _code_from_callback(callback, timeout, ignored)

    REDACTOR.add(code)

    def waiting(holder: int | None) -> None:
        who = f"pid {holder}" if holder else "another process"
        echo(f"Waiting for the running limefort ({who}) to finish before storing the tokens ...")

    # Imported here: runner imports the sync, which this module is not otherwise tied to.

    lock = RunLock(cfg.state.path).acquire(lock_wait, on_wait=waiting)
    try:
        store = open_store(cfg)
        try:
            record = exchange_code(fx, code, redirect_uri, http=cfg.http)
            if record.refresh_token and record.refresh_issued_at is None:
                record = replace(record, refresh_issued_at=time.time())
            store.save(TOKEN_NAME, record)
            _supersede_config_token(cfg, store)
            _report(cfg, store, record, echo=echo, service_account=service_account)
        finally:
            store.close()
    finally:
        lock.release()
    return EX_OK


# ---------------------------------------------------------------------------------------------
# The one-shot loopback callback server
# ---------------------------------------------------------------------------------------------


@dataclass
class Callback:
    params: dict[str, str]


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    # A socket timeout for each connection: an idle one is dropped, never waited on for ever.
    timeout = CONNECTION_TIMEOUT

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        owner = self.server.owner
        if not owner.host_ok(self.headers.get("Host")):
            # A web page reaching the port through a rebinding DNS name sends its own Host.
            owner.ignore("a request for another host")
            self._answer(421, "<!doctype html><title>limefort</title>Misdirected request.")
            return
        parts = urlsplit(self.path)
        if parts.path.rstrip("/") != owner.path.rstrip("/"):
            # A browser also asks for /favicon.ico: not the redirect, keep waiting.
            self._answer(404, "<!doctype html><title>limefort</title>Not found.")
            return
        try:
            fields = parse_qs(parts.query, keep_blank_values=True, max_num_fields=20)
        except ValueError:
            # More fields than any redirect from Fortnox carries: not one, keep waiting.
            owner.ignore("a malformed query")
            self._answer(400, IGNORED_PAGE)
            return
        params = {k: v[-1] for k, v in fields.items()}
        if not params.get("code") and not params.get("error"):
            # Not a redirect from Fortnox (a reload, a prefetch): keep waiting for the real one.
            self._answer(400, WAITING_PAGE)
            return
        if not _same(params.get("state", ""), owner.expected_state):
            # Whoever sent this did not see the consent URL: it cannot end the wait, not even
            # with an error (any local process or web page can send a request here).
            owner.ignore("a redirect with another state")
            self._answer(400, IGNORED_PAGE)
            return
        if params.get("error"):
            reason = "Fortnox said: " + _escape(
                echoed(params.get("error_description") or params["error"])
            )
            self._answer(400, FAILED_PAGE.format(reason=reason))
        else:
            self._answer(200, DONE_PAGE)
        owner.finish(Callback(params))

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
        path = echoed(urlsplit(self.path).path)
        log.debug("callback server: %s %s -> %s", echoed(self.command or ""), path, code)

    def log_message(self, format: str, *args: Any) -> None:
        # Errors quote the request line too: drop every query string and control character.
        log.debug("callback server: %s", echoed(_QUERY.sub("?...", format % args)))


class _HTTPServer(ThreadingMixIn, HTTPServer):
    """One thread per connection, so a slow or idle client never delays the redirect."""

    owner: CallbackServer
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class CallbackServer:
    """Listens on the redirect URI's loopback host and port until the redirect that carries
    `expected_state` arrives, or the deadline passes."""

    def __init__(self, redirect_uri: str, expected_state: str) -> None:
        parts = urlsplit(redirect_uri)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 80
        self.hosts = _host_values(parts.hostname or "127.0.0.1", port)
        if host in ("localhost", "localhost."):
            host = "127.0.0.1"
        self.path = parts.path or "/"
        self.expected_state = expected_state
        self.result: Callback | None = None
        self.ignored = 0
        self._done = threading.Event()
        self._lock = threading.Lock()
        cls = _HTTPServer6 if ":" in host else _HTTPServer
        try:
            self.server = cls((host, port), _Handler)
        except OSError as exc:
            raise ConfigError(
                "fortnox.redirect_uri",
                f"cannot listen on {host}:{port} ({exc.strerror or exc}): free the "
                "port, or choose another redirect_uri (and register it with the Fortnox app), "
                "or use --code",
            ) from None
        self.server.owner = self

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def host_ok(self, value: str | None) -> bool:
        return value is not None and value.strip().lower() in self.hosts

    def ignore(self, what: str) -> None:
        with self._lock:
            self.ignored += 1
        log.warning("callback server: ignored %s", what)

    def finish(self, callback: Callback) -> None:
        with self._lock:
            if self.result is None:  # the first good redirect wins
                self.result = callback
        self._done.set()

    def wait(self, timeout: float) -> Callback | None:
        """Serve until the redirect arrives or `timeout` seconds have passed, whatever the
        connections do: each is handled on its own thread, with its own socket timeout."""
        deadline = time.monotonic() + max(timeout, 0)
        while not self._done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.server.timeout = min(left, 0.5)
            self.server.handle_request()
        return self.result

    def close(self) -> None:
        self.server.server_close()

    def __enter__(self) -> CallbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _host_values(host: str, port: int) -> frozenset[str]:
    """The Host headers a browser sends for the redirect URI (the port may be left out when
    it is 80)."""
    name = f"[{host}]" if ":" in host else host
    values = {f"{name}:{port}".lower()}
    if port == 80:
        values.add(name.lower())
    return frozenset(values)


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
            raise AuthError(f"Fortnox refused the consent: {echoed(params['error'][-1])}")
        if params.get("code"):
            return params["code"][-1]
    if not value:
        raise UserError("--code: empty; paste the code parameter of Fortnox's redirect")
    return value


def _code_from_callback(callback: Callback | None, timeout: float, ignored: int = 0) -> str:
    if callback is None:
        also = (
            f" ({ignored} request{' was' if ignored == 1 else 's were'} ignored for not "
            "carrying this consent's state or host: a stale browser tab, or something else "
            "knocking on the port)"
            if ignored
            else ""
        )
        raise AuthError(
            f"no redirect from Fortnox arrived within {timeout:g} s{also}; nothing was stored: "
            "run `limefort auth fortnox` again (with a longer --timeout), or approve and run "
            "`limefort auth fortnox --code CODE`"
        )
    params = callback.params  # the server only hands over a callback with the right state
    if params.get("error"):
        detail = echoed(params.get("error_description") or params["error"])
        raise AuthError(
            f"Fortnox refused the consent ({detail}); nothing was stored: an administrator "
            "of the Fortnox company must approve `limefort auth fortnox`"
        )
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


def echoed(text: str, limit: int = ECHO_LIMIT) -> str:
    """What a remote party sent, for echoing: printable (`privacy.printable`) and at most
    `limit` characters."""
    kept = printable(text)
    return kept if len(kept) <= limit else kept[: limit - 3] + "..."


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
        name = info.get("CompanyName") or info.get("Name")
        company = echoed(str(name)) if name else None
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


def auth_command(
    app: App, service_account: bool, code: str | None, open_browser: bool, timeout: int
) -> int:
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
