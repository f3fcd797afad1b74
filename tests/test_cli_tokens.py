"""Issue 17: a wrong secret never hides behind a cached token. `sync` with a wrong client
secret exits 3 like `check`, even while a token obtained with the right one is still cached."""

from __future__ import annotations

from conftest import Lf

from limefort.models import TokenRecord
from limefort.sandbox import Sandbox
from limefort.store import Store
from limefort.token_binding import BoundTokenCache, fingerprint


def set_value(lf: Lf, old: str, new: str) -> None:
    text = lf.config.read_text(encoding="utf-8")
    assert f'"{old}"' in text
    lf.write(text.replace(f'"{old}"', f'"{new}"'))


def token_requests(sb: Sandbox) -> tuple[int, int]:
    lg = sum(1 for r in sb.limego.requests if r.path == "/oauth/token")
    fx = sum(1 for r in sb.fortnox.requests if r.path == "/oauth-v1/token")
    return lg, fx


def test_wrong_limego_secret_exits_3_although_a_token_is_cached(lf: Lf, sandbox: Sandbox) -> None:
    assert lf.run("sync").code == 0
    assert token_requests(sandbox) == (1, 1)
    # The right secret again: both cached tokens are used, no new token request.
    assert lf.run("sync").code == 0
    assert token_requests(sandbox) == (1, 1)

    set_value(lf, sandbox.limego_client_secret, "not-the-secret")
    r = lf.run("sync")
    assert r.code == 3, (r.out, r.err)
    assert "Lime Go" in r.err and "not-the-secret" not in r.err + r.out
    assert token_requests(sandbox)[0] == 2  # it asked, and was refused

    # `check` agrees.
    assert lf.run("check").code == 3

    # Back to the right secret: works, and a good token is cached again.
    set_value(lf, "not-the-secret", sandbox.limego_client_secret)
    assert lf.run("sync").code == 0


def test_wrong_fortnox_secret_exits_3_although_a_token_is_cached(lf: Lf, sandbox: Sandbox) -> None:
    assert lf.run("sync").code == 0
    set_value(lf, sandbox.fortnox_client_secret, "wrong")
    r = lf.run("sync")
    assert r.code == 3, (r.out, r.err)
    assert "Fortnox" in r.err
    set_value(lf, "wrong", sandbox.fortnox_client_secret)
    assert lf.run("sync").code == 0


def test_another_client_id_does_not_reuse_the_cached_token(lf: Lf, sandbox: Sandbox) -> None:
    assert lf.run("sync").code == 0
    set_value(lf, sandbox.limego_client_id, "someone-else")
    assert lf.run("sync").code == 3


def test_the_cache_keeps_a_refresh_token_but_drops_an_unbound_access_token() -> None:
    store = Store.memory()
    record = TokenRecord(access_token="a", expires_at=9e12, refresh_token="r")
    store.save("fortnox", record)  # as `limefort auth fortnox` stores it: no binding yet
    cache = BoundTokenCache(store, {"fortnox": fingerprint("id", "secret")})
    got = cache.load("fortnox")
    assert got is not None and got.access_token is None and got.refresh_token == "r"

    cache.save("fortnox", record)
    assert cache.load("fortnox") == record
    other = BoundTokenCache(store, {"fortnox": fingerprint("id", "other secret")})
    loaded = other.load("fortnox")
    assert loaded is not None and loaded.access_token is None and loaded.refresh_token == "r"
    # A token name nobody bound is passed through as stored.
    store.save("x", record)
    assert cache.load("x") == record


def test_the_fingerprint_depends_on_both_id_and_secret_and_hides_them() -> None:
    f = fingerprint("id", "secret")
    assert len(f) == 16 and "secret" not in f
    assert f != fingerprint("id", "secret2") and f != fingerprint("id2", "secret")
    assert fingerprint("a", "bc") != fingerprint("ab", "c")
