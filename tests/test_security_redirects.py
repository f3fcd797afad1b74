"""Issue 19, item 1: no request that carries a secret follows a redirect.

A token endpoint (or the API, or the ping URL) that answers 307/302 with a Location on another
loopback server: that server records everything that reaches it, and nothing does; the pass
ends with a one-line error naming the configured key and the host the redirect pointed to
(exit 2, never the internal-error 70)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Lf, Recorder
from test_auth import use_refresh_token

from limefort_sandbox import Sandbox
from limefort_sandbox.http import Response


def redirect_path(app: Any, path: str, to: str, status: int = 307) -> list[str]:
    """Make `app` answer every request for `path` with a redirect to `to`."""
    handle = app.handle
    seen: list[str] = []

    def redirecting(req: Any) -> Any:
        if req.path == path:
            seen.append(req.method)
            return Response(status, b"", "text/plain", {"Location": to})
        return handle(req)

    app.handle = redirecting
    return seen


def secrets_of(sb: Sandbox, refresh: str | None) -> list[str]:
    out = [sb.limego_client_secret, sb.fortnox_client_secret]
    return out + ([refresh] if refresh else [])


@pytest.mark.parametrize(
    ("service", "path", "key"),
    [
        ("limego", "/oauth/token", "limego.base_url"),
        ("fortnox", "/oauth-v1/token", "fortnox.token_url"),
    ],
)
@pytest.mark.parametrize("status", [307, 308, 302])
def test_a_token_endpoint_redirect_sends_nothing_anywhere_and_names_the_host(
    lf: Lf, sandbox: Sandbox, recorder: Recorder, service: str, path: str, key: str, status: int
) -> None:
    # Refresh-token mode: the Fortnox form carries the refresh token, Lime Go's its secret.
    refresh = sandbox.fortnox.issue_refresh_token()
    use_refresh_token(lf, refresh)
    app = sandbox.limego if service == "limego" else sandbox.fortnox
    seen = redirect_path(app, path, f"{recorder.url}/collect?x=1", status)

    r = lf.run("sync")

    assert seen, "the token endpoint was asked"
    assert recorder.requests == []  # not the form, not the Basic header: nothing at all
    assert r.code == 2, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"limefort: {key}:")
    assert f"redirect to http://127.0.0.1:{recorder.port}" in lines[0]
    assert "/collect" not in r.err and "internal error" not in r.err
    for secret in secrets_of(sandbox, refresh):
        assert secret not in r.out + r.err


def test_an_api_redirect_is_not_followed_with_the_bearer_token(
    lf: Lf, sandbox: Sandbox, recorder: Recorder
) -> None:
    handle = sandbox.fortnox.handle

    def redirecting(req: Any) -> Any:
        if req.path.startswith("/3/"):
            return Response(302, b"", "text/plain", {"Location": f"{recorder.url}{req.path}"})
        return handle(req)

    sandbox.fortnox.handle = redirecting  # type: ignore[method-assign]
    r = lf.run("sync")
    assert recorder.requests == []
    assert r.code == 2, r.err
    assert "fortnox.api_url:" in r.err and f"127.0.0.1:{recorder.port}" in r.err
    assert "internal error" not in r.err


def test_the_consent_code_exchange_does_not_follow_a_redirect(
    lf: Lf, sandbox: Sandbox, recorder: Recorder
) -> None:
    use_refresh_token(lf)
    redirect_path(sandbox.fortnox, "/oauth-v1/token", f"{recorder.url}/t")
    r = lf.run("auth", "fortnox", "--code", "a-single-use-code-0123456789")
    assert recorder.requests == []
    assert r.code == 2 and "fortnox.token_url:" in r.err
    assert "a-single-use-code-0123456789" not in r.out + r.err
    assert not lf.state.exists() or "fortnox" not in _stored_names(lf)


def _stored_names(lf: Lf) -> str:
    import sqlite3

    with sqlite3.connect(lf.state) as db:
        return " ".join(str(r[0]) for r in db.execute("select name from tokens"))


def test_a_ping_redirect_is_not_followed(lf: Lf, recorder: Recorder) -> None:
    from conftest import Recorder as Server

    ping = Server()
    try:
        ping.reply = (302, {"Location": f"{recorder.url}/stolen"}, b"")
        lf.edit("metrics", ping_url=f'"{ping.url}/ping-3f1e9c7a-secret"')
        r = lf.run("sync")
        assert r.code in (0, 1), r.err
        assert [q.path for q in ping.requests] == [
            "/ping-3f1e9c7a-secret/start",
            f"/ping-3f1e9c7a-secret/{r.code}",
        ]
        assert recorder.requests == []
        assert "redirect; not followed" in r.err and "metrics.ping_url" in r.err
        assert "ping-3f1e9c7a-secret" not in r.err
    finally:
        ping.stop()
