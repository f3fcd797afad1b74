"""Issue 17: a wrong secret never hides behind a cached token. `sync` with a wrong client
secret exits 3 like `check`, even while a token obtained with the right one is still cached."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from conftest import Lf

from limefort.core.models import TokenRecord
from limefort.engine import token_binding
from limefort.engine.token_binding import (
    META_ALL,
    META_PREFIX,
    BoundTokenCache,
    fingerprint,
    legacy_fingerprint,
    matches,
    matches_all,
)
from limefort.state.store import Store
from limefort_sandbox import Sandbox


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
    cache = BoundTokenCache(store, {"fortnox": ("id", "secret")})
    got = cache.load("fortnox")
    assert got is not None and got.access_token is None and got.refresh_token == "r"

    cache.save("fortnox", record)
    assert cache.load("fortnox") == record
    other = BoundTokenCache(store, {"fortnox": ("id", "other secret")})
    loaded = other.load("fortnox")
    assert loaded is not None and loaded.access_token is None and loaded.refresh_token == "r"
    # A token name nobody bound is passed through as stored.
    store.save("x", record)
    assert cache.load("x") == record


def test_the_fingerprint_depends_on_both_id_and_secret_and_hides_them() -> None:
    f = fingerprint("id", "secret")
    assert "secret" not in f.split("$", 1)[1]
    assert matches(f, "id", "secret")
    assert not matches(f, "id", "secret2") and not matches(f, "id2", "secret")
    assert not matches(fingerprint("a", "bc"), "ab", "c")


def test_the_fingerprint_is_salted_and_slow_not_a_plain_hash() -> None:
    a, b = fingerprint("id", "secret"), fingerprint("id", "secret")
    # Salted: the same credentials give another fingerprint in every state file, so one
    # table of guesses does not fit two backups.
    assert a != b and a.startswith("scrypt$") and len(a.split("$")[1]) == 32
    assert matches(a, "id", "secret") and matches(b, "id", "secret")
    # Not the unsalted sha256 form anywhere in it.
    assert legacy_fingerprint("id", "secret") not in a
    assert not matches("scrypt$zz$00", "id", "secret")  # a damaged value is no match


def test_the_shipped_scrypt_cost_is_slow_and_is_the_one_used() -> None:
    from conftest import PRODUCTION_SCRYPT

    from limefort.engine import token_binding

    assert PRODUCTION_SCRYPT["n"] >= 2**13 and PRODUCTION_SCRYPT["r"] >= 8
    salt = bytes(range(16))
    want = hashlib.scrypt(b"id\0secret", salt=salt, maxmem=64 << 20, **token_binding.SCRYPT)
    assert fingerprint("id", "secret", salt=salt) == f"scrypt${salt.hex()}${want.hex()}"


def test_an_old_unsalted_fingerprint_is_migrated_without_asking() -> None:
    store = Store.memory()
    record = TokenRecord(access_token="a", expires_at=9e12, refresh_token="r")
    store.save("fortnox", record)
    store.set_meta(META_PREFIX + "fortnox", legacy_fingerprint("id", "secret"))  # version 1
    bindings = {"fortnox": ("id", "secret")}
    assert BoundTokenCache(store, bindings).load("fortnox") == record
    stored = store.get_meta(META_PREFIX + "fortnox")
    assert stored is not None and stored == store.get_meta(META_ALL)
    assert stored.startswith("scrypt$") and matches_all(stored, bindings)
    # An old fingerprint of other credentials is no match, and is not rewritten.
    store.set_meta(META_PREFIX + "fortnox", legacy_fingerprint("id", "old"))
    loaded = BoundTokenCache(store, bindings).load("fortnox")
    assert loaded is not None and loaded.access_token is None
    assert store.get_meta(META_PREFIX + "fortnox") == legacy_fingerprint("id", "old")


BOTH = {"limego": ("lg-id", "lg-secret"), "fortnox": ("fx-id", "fx-secret")}
RECORD = TokenRecord(access_token="a", expires_at=9e12, refresh_token="r")


def counted_scrypt(monkeypatch: Any) -> list[int]:
    calls: list[int] = []
    real = token_binding._scrypt

    def counting(credentials: bytes, salt: bytes) -> str:
        calls.append(1)
        return real(credentials, salt)

    monkeypatch.setattr(token_binding, "_scrypt", counting)
    return calls


def test_a_pass_checks_both_services_credentials_with_one_scrypt(monkeypatch: Any) -> None:
    """Issue 26: the scrypt check is a third of an idle pass's CPU; one covers both services."""
    store = Store.memory()
    first = BoundTokenCache(store, BOTH)
    for name in BOTH:
        store.save(name, RECORD)
        first.save(name, RECORD)
    calls = counted_scrypt(monkeypatch)
    later = BoundTokenCache(store, BOTH)  # the next process
    assert not later.unverified("limego") and not later.unverified("fortnox")
    assert later.load("limego") == RECORD and later.load("fortnox") == RECORD
    assert len(calls) == 1


def test_a_per_token_fingerprint_of_the_last_release_moves_to_the_shared_one(
    monkeypatch: Any,
) -> None:
    store = Store.memory()
    for name, pair in BOTH.items():
        store.save(name, RECORD)
        store.set_meta(META_PREFIX + name, fingerprint(*pair))  # as the last release wrote it
    cache = BoundTokenCache(store, BOTH)
    assert cache.load("limego") == RECORD and cache.load("fortnox") == RECORD
    shared = store.get_meta(META_ALL)
    assert matches_all(shared, BOTH)
    assert all(store.get_meta(META_PREFIX + name) == shared for name in BOTH)
    calls = counted_scrypt(monkeypatch)
    assert BoundTokenCache(store, BOTH).load("fortnox") == RECORD and len(calls) == 1


def test_one_changed_secret_unbinds_both_tokens_and_a_wrong_one_is_never_bound(
    monkeypatch: Any,
) -> None:
    store = Store.memory()
    cache = BoundTokenCache(store, BOTH)
    for name in BOTH:
        store.save(name, RECORD)
        cache.save(name, RECORD)
    wrong = {**BOTH, "limego": ("lg-id", "typo")}
    calls = counted_scrypt(monkeypatch)
    after = BoundTokenCache(store, wrong)
    assert after.unverified("limego") and after.unverified("fortnox")
    got = after.load("fortnox")  # the refresh token stays: the way back without a consent
    assert got is not None and got.access_token is None and got.refresh_token == "r"
    assert len(calls) == 1  # the mismatch is found once, not by every token's check
    # Fortnox's refresh proves its secret and is saved under the configured credentials...
    after.save("fortnox", RECORD)
    assert after.load("fortnox") == RECORD
    # ...but the Lime Go token obtained with the right secret is still not handed out: no
    # token was obtained with the wrong one, so the next pass asks (and fails, exit 3).
    again = BoundTokenCache(store, wrong)
    assert again.unverified("limego") and not again.unverified("fortnox")
    limego = again.load("limego")
    assert limego is not None and limego.access_token is None


def test_a_token_shorter_lived_than_the_margin_is_not_fetched_for_every_request(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    """`expires_in: 30` with a 60 s refresh margin: the token is used for half its life, not
    thrown away at once (seen: 17 token calls for 16 API calls)."""
    sb = make_inprocess_sandbox(
        seed=41, companies=16, deals=0, fortnox_token_lifetime=30, limego_token_lifetime=30
    )
    lf = Lf(sb, tmp_path)
    r = lf.run("sync")
    assert r.code == 0, r.err
    fortnox_api = [q for q in sb.fortnox.requests if q.path.startswith("/3/")]
    fortnox_tokens = [q for q in sb.fortnox.requests if q.path == "/oauth-v1/token"]
    limego_api = [q for q in sb.limego.requests if q.path.startswith("/api/")]
    limego_tokens = [q for q in sb.limego.requests if q.path == "/oauth/token"]
    assert len(fortnox_api) >= 16 and limego_api
    # One at the start (and at most one more for a pass slower than 15 s on a busy machine).
    assert len(fortnox_tokens) <= 2, (len(fortnox_tokens), len(fortnox_api))
    assert len(limego_tokens) <= 2, (len(limego_tokens), len(limego_api))
