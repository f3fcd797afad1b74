"""Issue 19, item 4: the consent callback server, as exposed as it is (every local process and,
through a browser, every web page can reach it).

An idle connection neither blocks the redirect nor outlives the deadline; a request without
this consent's `state` (an `error=` included) or for another Host is ignored; what is echoed
has no control characters; the run lock is free while the administrator reads the consent
page; the browser is opened only on request; no PKCE (Fortnox does not document it)."""

from __future__ import annotations

import json
import os
import socket
import threading
import webbrowser
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from conftest import DEADLINE, Lf, wait_for
from test_auth import free_port, set_key, spawn_auth, stored

from limefort import config as config_mod
from limefort.clients.fortnox_tokens import consent_url
from limefort.commands.auth import (
    Callback,
    CallbackServer,
    _code_from,
    _code_from_callback,
    consent,
    echoed,
)
from limefort.core.errors import AuthError, LockHeld, UserError
from limefort.state.lock import RunLock

STATE = "s" * 43
ESCAPES = "\x1b]0;pwned\x07\x1b[31mred\u202etxet\x9b2J"


class Running:
    """A CallbackServer waiting on a thread, as `limefort auth fortnox` does."""

    def __init__(self, timeout: float = DEADLINE) -> None:
        self.port = free_port()
        self.server = CallbackServer(f"http://127.0.0.1:{self.port}/callback", STATE)
        self.result: list[Callback | None] = []
        self.thread = threading.Thread(
            target=lambda: self.result.append(self.server.wait(timeout)), daemon=True
        )
        self.thread.start()

    def url(self, **params: str) -> str:
        return f"http://127.0.0.1:{self.port}/callback?{urlencode(params)}"

    def finished(self) -> Callback | None:
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive(), "the callback server did not return"
        self.server.close()
        return self.result[0]


def idle_connection(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.send(b"GET /callback?code=")  # half a request line, then nothing
    return s


def test_an_idle_connection_does_not_block_the_redirect() -> None:
    run = Running()
    with idle_connection(run.port), idle_connection(run.port):
        page = requests.get(run.url(code="the-code", state=STATE), timeout=10)
        got = run.finished()
    assert page.status_code == 200
    assert got is not None and got.params["code"] == "the-code"


def test_an_idle_connection_does_not_outlive_the_deadline() -> None:
    run = Running(timeout=1)
    with idle_connection(run.port):
        assert run.finished() is None


def test_a_stateless_error_is_ignored_and_the_real_redirect_still_counts() -> None:
    run = Running()
    stray = requests.get(run.url(error="access_denied", error_description=ESCAPES), timeout=10)
    wrong = requests.get(run.url(error="access_denied", state="guessed"), timeout=10)
    assert stray.status_code == wrong.status_code == 400 and "ignored" in stray.text
    assert run.thread.is_alive() and run.server.ignored == 2
    requests.get(run.url(code="the-code", state=STATE), timeout=10)
    got = run.finished()
    assert got is not None and got.params["code"] == "the-code"


def test_a_query_with_too_many_fields_is_answered_400_and_the_wait_goes_on() -> None:
    run = Running()
    fields = {f"f{i}": "x" for i in range(30)}
    flood = requests.get(run.url(code="c", state=STATE, **fields), timeout=10)
    assert flood.status_code == 400 and run.thread.is_alive()
    requests.get(run.url(code="the-code", state=STATE), timeout=10)
    got = run.finished()
    assert got is not None and got.params["code"] == "the-code"


def test_a_request_for_another_host_is_ignored() -> None:
    # What a web page reaching the port through a DNS name that resolves to 127.0.0.1 sends.
    run = Running()
    other = requests.get(
        run.url(code="c", state=STATE), headers={"Host": f"evil.example:{run.port}"}, timeout=10
    )
    assert other.status_code == 421 and run.server.ignored == 1
    requests.get(run.url(code="the-code", state=STATE), timeout=10)
    got = run.finished()
    assert got is not None and got.params["code"] == "the-code"


def test_a_refusal_with_the_right_state_is_echoed_without_control_characters() -> None:
    run = Running()
    page = requests.get(
        run.url(error="access_denied", error_description=ESCAPES, state=STATE), timeout=10
    )
    got = run.finished()
    assert page.status_code == 400 and "\x1b" not in page.text
    with pytest.raises(AuthError) as exc:
        _code_from_callback(got, 10)
    message = str(exc.value)
    assert "pwned" in message and "red" in message
    assert not any(ch in message for ch in "\x1b\x07\u202e\x9b")


def test_a_pasted_refusal_is_echoed_without_control_characters() -> None:
    with pytest.raises(UserError) as exc:
        _code_from("http://127.0.0.1/cb?code=&error=" + ESCAPES.replace("\x1b", "%1b"))
    assert "\x1b" not in str(exc.value)


def test_echoed() -> None:
    assert echoed("ok text, å ä ö") == "ok text, å ä ö"
    # Shown, not obeyed (and not silently dropped: the reader sees something was there).
    assert echoed("a\x1b[2Jb\r\nc\u200bd") == "a\\x1b[2Jb\\r\\nc\\u200bd"
    assert len(echoed("x" * 1000)) == 200


def test_an_idle_connection_and_a_stateless_error_through_the_command(consent_lf: Lf) -> None:
    lf = consent_lf
    port = int(urlsplit(_redirect_uri(lf)).port or 0)
    idle: list[socket.socket] = []

    def knock() -> None:
        wait_for(lambda: _listening(port), what="the callback server")
        idle.append(idle_connection(port))  # kept open until the command has returned
        requests.get(
            f"http://127.0.0.1:{port}/callback?"
            + urlencode({"error": "access_denied", "error_description": ESCAPES}),
            timeout=10,
        )

    thread = threading.Thread(target=knock, daemon=True)
    thread.start()
    r = lf.run("auth", "fortnox", "--timeout", "2")
    thread.join(DEADLINE)
    assert idle
    idle[0].close()
    assert r.code == 3, r.err
    assert "no redirect from Fortnox arrived within 2 s (1 request was ignored" in r.err
    assert "refused" not in r.err  # the stray error did not end the consent
    assert not any(ch in r.out + r.err for ch in "\x1b\x07\u202e\x9b")
    assert stored(lf) is None


@pytest.mark.http
def test_the_run_lock_is_free_while_waiting_for_the_redirect(consent_lf: Lf) -> None:
    lf = consent_lf
    # The scheduled pass: a service-account config sharing the state file (and its lock).
    (lf.dir / "sched").mkdir(mode=0o700)
    scheduled = Lf(lf.sb, lf.dir / "sched")
    set_key(scheduled, "state", "path", json.dumps(str(lf.state)))
    proc, url, _ = spawn_auth(lf)
    r = scheduled.run("sync")
    assert r.code in (0, 1), r.err  # not 75: the consent is not holding the lock
    requests.get(url, timeout=10)
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, err
    assert stored(lf) is not None


def test_the_browser_opens_only_on_request(consent_lf: Lf, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    r = consent_lf.run("auth", "fortnox", "--timeout", "0")
    assert r.code == 3 and opened == []
    assert "state=" in r.out  # the URL is printed for the administrator to open
    r = consent_lf.run("auth", "fortnox", "--open-browser", "--timeout", "1")
    wait_for(lambda: opened, what="the browser launch")
    assert opened[0].startswith(consent_lf.sb.fortnox_auth_url)


def test_no_pkce_parameters_are_sent(consent_lf: Lf) -> None:
    r = consent_lf.run("auth", "fortnox", "--timeout", "0")
    url = next(line for line in r.out.splitlines() if line.startswith("http"))
    q = parse_qs(urlsplit(url).query)
    assert "code_challenge" not in q and "code_challenge_method" not in q


@pytest.mark.http
def test_the_exchange_waits_for_a_running_pass_instead_of_wasting_the_code(
    consent_lf: Lf,
) -> None:
    lf = consent_lf
    cfg = config_mod.load(lf.config, explicit=True)
    resp = requests.get(consent_url(cfg.fortnox, "s"), allow_redirects=False, timeout=10)
    code = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][-1]
    said: list[str] = []
    holder = RunLock(lf.state).acquire()

    def echo(text: str = "", err: bool = False) -> None:
        said.append(text)
        if text.startswith("Waiting for the running limefort"):
            holder.release()  # the pass ends while the consent waits for it

    assert (
        consent(cfg, echo=echo, service_account=False, code=code, open_browser=False, timeout=1)
        == 0
    )
    assert f"Waiting for the running limefort (pid {os.getpid()})" in said[0]
    assert stored(lf) is not None

    # A pass that does not end in time: the code is not spent (no exchange without the lock).
    exchanges = _exchanges(lf)
    with RunLock(lf.state), pytest.raises(LockHeld):
        consent(
            cfg,
            echo=said.append,
            service_account=False,
            code="unused-code",
            open_browser=False,
            timeout=1,
            lock_wait=0.2,
        )
    assert _exchanges(lf) == exchanges


# --- helpers --------------------------------------------------------------------------------


def _exchanges(lf: Lf) -> int:
    return sum(
        1
        for r in lf.sb.fortnox.requests
        if r.path == "/oauth-v1/token" and (r.body or {}).get("grant_type") == "authorization_code"
    )


def _redirect_uri(lf: Lf) -> str:
    import re

    m = re.search(r'redirect_uri = "([^"]+)"', lf.config.read_text())
    assert m
    return m.group(1)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def consent_lf(lf: Lf) -> Lf:
    from test_auth import use_refresh_token

    use_refresh_token(lf)
    lf.edit("fortnox", redirect_uri=f'"http://127.0.0.1:{free_port()}/callback"')
    return lf
