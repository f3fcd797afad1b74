"""`limefort auth fortnox` against the sandbox's consent stand-in, and refresh-token rotation
(issue 6): consent end to end, `--code`, a forged state, spent tokens, many refreshes in one
pass, and a SIGKILL right after a refresh."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
from conftest import Lf

from limefort import config as config_mod
from limefort.clients.fortnox_tokens import consent_url
from limefort.core.models import TokenRecord
from limefort.state.store import Store
from limefort_sandbox import FaultRule, Sandbox

# --- helpers (also used by test_secrets and test_check) --------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drop_key(lf: Lf, section: str, key: str) -> None:
    """Remove `key` from `[section]` of the config (a config may hold tenant_id OR
    refresh_token, or neither)."""
    text = lf.config.read_text(encoding="utf-8")
    head, sep, rest = text.partition(f"[{section}]\n")
    assert sep, f"no [{section}] in the config"
    body, nxt, tail = rest.partition("\n[")
    body = re.sub(rf"^{re.escape(key)}\s*=.*(\n|$)", "", body, flags=re.M)
    lf.write(head + sep + body + nxt + tail)


def set_key(lf: Lf, section: str, key: str, value: str) -> None:
    """Set `key = value` (value as TOML text) in `[section]`, replacing any line for it."""
    drop_key(lf, section, key)
    lf.edit(section, **{key: value})


def use_refresh_token(lf: Lf, token: str | None = None) -> None:
    """Authorization-code mode: no tenant_id; optionally a refresh token to import."""
    drop_key(lf, "fortnox", "tenant_id")
    if token is not None:
        lf.edit("fortnox", refresh_token=token)


def stored(lf: Lf) -> TokenRecord | None:
    if not lf.state.exists():  # a consent that fails before the exchange creates no file
        return None
    store = Store.open(lf.state, create=False)
    try:
        return store.load("fortnox")
    finally:
        store.close()


def refresh_grants(sb: Sandbox) -> int:
    return sum(
        1
        for r in sb.fortnox.requests
        if r.path == "/oauth-v1/token" and (r.body or {}).get("grant_type") == "refresh_token"
    )


def spawn_auth(
    lf: Lf, *extra: str, flags: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[str], str, list[str]]:
    """Start `limefort [FLAGS] auth fortnox` as a subprocess and read until it prints the URL."""
    proc = lf.spawn(*flags, "auth", "fortnox", "--no-browser", "--timeout", "30", *extra)
    assert proc.stdout is not None
    lines: list[str] = []
    while True:
        line = proc.stdout.readline()
        if not line:
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"auth exited before printing a URL: {''.join(lines)}\n{err}")
        lines.append(line)
        if line.startswith("http"):
            return proc, line.strip(), lines


@pytest.fixture
def consent_lf(lf: Lf) -> Lf:
    """The lf config in authorization-code mode, redirecting to a free loopback port."""
    use_refresh_token(lf)
    lf.edit("fortnox", redirect_uri=f'"http://127.0.0.1:{free_port()}/callback"')
    return lf


# --- consent ----------------------------------------------------------------------------------


@pytest.mark.http
def test_consent_end_to_end_then_sync_uses_the_stored_refresh_token(
    consent_lf: Lf, sandbox: Sandbox
) -> None:
    lf = consent_lf
    proc, url, lines = spawn_auth(lf)

    q = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(sandbox.fortnox_auth_url + "?")
    assert q["scope"] == "customer invoice order companyinformation"
    assert q["access_type"] == "offline" and q["response_type"] == "code"
    assert len(q["state"]) >= 32 and "account_type" not in q

    page = requests.get(url, allow_redirects=True, timeout=10)
    out, err = proc.communicate(timeout=30)
    out = "".join(lines) + out
    assert proc.returncode == 0, err
    assert page.status_code == 200 and "limefort is authorised" in page.text
    assert "close this tab" in page.text

    record = stored(lf)
    assert record and record.access_token and record.refresh_token
    assert record.refresh_issued_at and record.expires_at
    assert sandbox.fortnox.last_consent and sandbox.fortnox.last_consent["state"] == q["state"]
    # It says what it did, and never shows a token.
    assert sandbox.fortnox_tenant_id in out and "Sandlåda AB" in out
    assert "companyinformation customer invoice order" in out
    assert "Access token:" in out and "45 days" in out
    assert record.refresh_token not in out + err and record.access_token not in out + err

    # The next sync refreshes with the stored token (the access token is made to expire first).
    sandbox.fortnox.expire_access_tokens()
    before = refresh_grants(sandbox)
    r = lf.run("sync")
    assert r.code in (0, 1), r.err
    assert refresh_grants(sandbox) == before + 1
    assert sandbox.fortnox.invoices and sandbox.fortnox.customers
    after = stored(lf)
    assert after and after.refresh_token and after.refresh_token != record.refresh_token


@pytest.mark.http
def test_consent_with_pasted_code(consent_lf: Lf, sandbox: Sandbox) -> None:
    lf = consent_lf
    cfg = config_mod.load(lf.config, explicit=True)

    def code_from_consent() -> tuple[str, str]:
        # What the administrator's browser would do: approve, then land on the redirect.
        resp = requests.get(consent_url(cfg.fortnox, "pasted"), allow_redirects=False, timeout=5)
        assert resp.status_code == 302
        location = resp.headers["Location"]
        return parse_qs(urlsplit(location).query)["code"][-1], location

    code, _ = code_from_consent()
    r = lf.run("auth", "fortnox", "--code", code)
    assert r.code == 0, r.err
    first = stored(lf)
    assert first and first.refresh_token and first.access_token
    assert sandbox.fortnox_tenant_id in r.out

    # The whole redirect URL pasted instead of the code works too, and replaces the tokens.
    _, location = code_from_consent()
    r = lf.run("auth", "fortnox", "--code", location)
    assert r.code == 0, r.err
    second = stored(lf)
    assert second and second.refresh_token not in (None, first.refresh_token)

    # A code works once.
    r = lf.run("auth", "fortnox", "--code", code)
    assert r.code == 3
    assert "limefort auth fortnox" in r.err


@pytest.mark.http
def test_a_forged_state_is_ignored_and_the_real_redirect_still_works(
    consent_lf: Lf, sandbox: Sandbox
) -> None:
    lf = consent_lf
    proc, url, lines = spawn_auth(lf)
    parts = urlsplit(url)
    q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    forged = dict(q, state="forged-" + q["state"][:10])
    # Through the consent page, so the forged redirect carries a real, unused code.
    page = requests.get(urlunsplit(parts._replace(query=urlencode(forged))), timeout=10)
    assert page.status_code == 400 and "ignored" in page.text
    assert proc.poll() is None  # still waiting
    page = requests.get(url, timeout=10)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
    assert page.status_code == 200 and "limefort is authorised" in page.text
    assert "ignored a redirect with another state" in err
    record = stored(lf)
    assert record and record.refresh_token


@pytest.mark.http
def test_stray_requests_are_ignored_and_a_refusal_exits_3(consent_lf: Lf) -> None:
    lf = consent_lf
    proc, url, _ = spawn_auth(lf)
    q = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
    callback = q["redirect_uri"]
    # A favicon request and a reload without parameters do not end the wait.
    assert requests.get(callback.replace("/callback", "/favicon.ico"), timeout=5).status_code == 404
    assert "still waiting" in requests.get(callback, timeout=5).text
    # The administrator declines: Fortnox redirects with an error.
    refused = f"{callback}?{urlencode({'error': 'access_denied', 'state': q['state']})}"
    assert requests.get(refused, timeout=5).status_code == 400
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, out + err
    assert "refused the consent (access_denied)" in err
    assert stored(lf) is None


@pytest.mark.http
def test_service_account_consent_prints_the_tenant_line(consent_lf: Lf, sandbox: Sandbox) -> None:
    lf = consent_lf
    proc, url, lines = spawn_auth(lf, "--service-account")
    assert "account_type=service" in url
    requests.get(url, timeout=10)
    out, err = proc.communicate(timeout=30)
    out = "".join(lines) + out
    assert proc.returncode == 0, err
    assert (
        sandbox.fortnox.last_consent and sandbox.fortnox.last_consent["account_type"] == "service"
    )
    assert f'tenant_id = "{sandbox.fortnox_tenant_id}"' in out.splitlines()

    # Following the advice gives a working service-account config.
    lf.edit("fortnox", tenant_id=sandbox.fortnox_tenant_id)
    r = lf.run("sync")
    assert r.code in (0, 1), r.err


def test_redirect_uri_that_is_not_loopback_asks_for_code(lf: Lf) -> None:
    use_refresh_token(lf)
    lf.edit("fortnox", redirect_uri='"https://limefort.example.com/callback"')
    r = lf.run("auth", "fortnox", "--no-browser")
    assert r.code == 2
    assert "fortnox.redirect_uri" in r.err and "--code" in r.err
    assert r.out.count("http") >= 1  # the consent URL is still printed, to open elsewhere


def test_no_redirect_within_the_timeout(consent_lf: Lf) -> None:
    r = consent_lf.run("auth", "fortnox", "--no-browser", "--timeout", "1")
    assert r.code == 3
    assert "no redirect" in r.err and "--code" in r.err
    assert stored(consent_lf) is None


def test_busy_callback_port_is_one_line_naming_the_key(consent_lf: Lf) -> None:
    text = consent_lf.config.read_text()
    port = int(re.search(r"127\.0\.0\.1:(\d+)/callback", text).group(1))  # type: ignore[union-attr]
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        r = consent_lf.run("auth", "fortnox", "--no-browser", "--timeout", "1")
    assert r.code == 2
    assert r.err.strip().count("\n") == 0 and "fortnox.redirect_uri" in r.err


# --- rotation -----------------------------------------------------------------------------


def test_reused_refresh_token_is_rejected_with_advice(lf: Lf, sandbox: Sandbox) -> None:
    token = sandbox.fortnox.issue_refresh_token()
    use_refresh_token(lf, token)
    r = lf.run("sync")
    assert r.code in (0, 1), r.err
    assert stored(lf).refresh_token != token  # type: ignore[union-attr]

    # A stale copy of the store (a restored backup, or a second process refreshing without
    # the lock) holds the spent token: Fortnox refuses it, and limefort says what to do.
    store = Store.open(lf.state)
    store.save("fortnox", TokenRecord(refresh_token=token, refresh_issued_at=1.0))
    store.close()
    synced = sandbox.fortnox.customers[0]["ExternalReference"].removeprefix("limego:company:")
    sandbox.limego.update_company(synced, name="Renamed AB")  # so the pass has Fortnox work
    r = lf.run("sync")
    assert r.code == 3
    assert "run `limefort auth fortnox` again" in r.err
    assert "Traceback" not in r.err


def test_a_pass_that_refreshes_many_times_keeps_working(make_sandbox: Any, tmp_path: Path) -> None:
    # Access tokens live 1 s: with limefort's 60 s margin every call needs a fresh one, and the
    # slow fault stretches the pass well past one token's life.
    sb = make_sandbox(seed=11, companies=24, deals=30, fortnox_token_lifetime=1)
    sb.fortnox.faults.add(FaultRule("slow", delay=0.1, path_prefix="/3/"))
    lf = Lf(sb, tmp_path)
    use_refresh_token(lf, sb.fortnox.issue_refresh_token())
    r = lf.run("sync")
    assert r.code in (0, 1), r.err
    assert refresh_grants(sb) >= 3
    assert sb.fortnox.invoices and sb.fortnox.count(status=401) == 0
    # Every rotation was kept: the last token stored is the live one.
    sb.fortnox.faults.clear()
    r = lf.run("sync")
    assert r.code in (0, 1), r.err


def test_access_tokens_revoked_mid_pass_are_refreshed_on_401(lf: Lf, sandbox: Sandbox) -> None:
    use_refresh_token(lf, sandbox.fortnox.issue_refresh_token())
    app = sandbox.fortnox
    handle = app.handle
    seen = {"n": 0}
    lock = threading.Lock()

    def expiring(req: Any) -> Any:
        # Fortnox ends the access token before some API calls (as if its hour ran out).
        if req.path.startswith("/3/"):
            with lock:
                seen["n"] += 1
                if seen["n"] in (2, 6, 10):
                    app.expire_access_tokens()
        return handle(req)

    app.handle = expiring  # type: ignore[method-assign]
    r = lf.run("sync")
    assert r.code in (0, 1), r.err
    # Each of the three expiries refuses the requests in flight at that moment: one, or two
    # when it falls on the customer index, whose active and inactive listings are read at
    # once (issue 26). Each refused request was retried with a new token.
    assert 3 <= app.count(status=401) <= 6
    assert refresh_grants(sandbox) >= 4  # the first token, then one after each 401
    assert app.invoices


KILLER = """
import os, sys
from limefort.state.store import Store

OUT = sys.argv.pop(1)  # where to note the rotated token, for the test to compare
_save = Store.save

def save(self, name, record):
    _save(self, name, record)
    # A rotated token has an access token beside it (an imported one has none): die the
    # moment the save returns, before the new access token is used.
    if name == "fortnox" and record.access_token:
        with open(OUT, "w") as fh:
            fh.write(record.refresh_token or "")
        os.kill(os.getpid(), 9)

Store.save = save
from limefort.cli import main
main(sys.argv[1:])
"""


@pytest.mark.http
def test_sigkill_right_after_a_refresh_keeps_the_new_token(
    lf: Lf, sandbox: Sandbox, tmp_path: Path
) -> None:
    token = sandbox.fortnox.issue_refresh_token()
    use_refresh_token(lf, token)
    script = tmp_path / "killer.py"
    script.write_text(textwrap.dedent(KILLER))
    saw = tmp_path / "rotated.txt"
    proc = subprocess.run(
        [sys.executable, str(script), str(saw), "--config", str(lf.config), "sync"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    rotated = saw.read_text()
    assert rotated and rotated != token
    assert refresh_grants(sandbox) == 1
    # The API never saw the new token: the process died first.
    assert sandbox.fortnox.count() == 0

    # On the next start the committed token is there, and it works (the old one is spent).
    record = stored(lf)
    assert record and record.refresh_token == rotated
    sandbox.fortnox.expire_access_tokens()
    r = lf.run("sync")
    assert r.code in (0, 1), r.err
    assert refresh_grants(sandbox) == 2
    assert sandbox.fortnox.invoices
