"""Cached tokens are bound to the credentials that obtained them.

A token cached in the state file outlives a change of the client secret: without this, a pass
with a wrong secret would go on using the cached token (for up to an hour) and exit 0, while
`check` says the secret is rejected. Each token name gets a fingerprint of the client id and
secret it was obtained with (kept in the store's meta table beside the tokens); an access token
whose fingerprint is not the configured one is not handed out, so the client asks the token
endpoint again and a wrong secret fails at once (exit 3).

The fingerprint is `scrypt$<salt>$<hash>`: salted (16 random bytes of its own) and slow
(scrypt, n=2^13; see SCRYPT), because the state file and every backup of it carry it: a plain
hash would let whoever holds a backup try guesses of the client secret offline at billions a
second. One fingerprint covers the credentials of both services (meta `token_clients`), and each
token name records the fingerprint it was obtained under (meta `token_client:<name>`): a pass
checks the configured credentials with one scrypt, not one per service, which is a third of
what an idle pass costs above Python's own start (docs/performance.md). The price: a changed
secret of one service also costs the other one token request, once.

Older state files hold a fingerprint per token name: the salted scrypt of that one client's
id and secret, or (the first version) an unsalted `sha256(id\0secret)[:16]`. A pass that
finds one its configured credentials match moves it to the shared form (nothing asked of the
user). A refresh token is kept whatever the fingerprint: it is the only way back without a
new consent, and using it proves the secret anyway.

Credentials no token was obtained with yet are tried once when the clients are built
(`runner.build_clients`), so a pass with nothing to send still exits 3 on a wrong secret; in
steady state (fingerprints match) that costs nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace

from limefort.clients.fortnox_tokens import TOKEN_NAME as FORTNOX_TOKEN
from limefort.clients.limego import TOKEN_NAME as LIMEGO_TOKEN
from limefort.config import Config
from limefort.core.models import TokenRecord
from limefort.state.store import Store

META_PREFIX = "token_client:"  # + token name: the fingerprint the token was obtained under
META_ALL = "token_clients"  # the fingerprint of every configured client's credentials


# scrypt with n=2^13, r=8 (8 MiB, about 17 ms a try here, and for anyone guessing: some
# 10^5 times a sha256). A pass checks one fingerprint, so this is what an idle pass pays; a
# client secret is a long random string, so the cost only has to make guessing useless, not
# to stretch a weak password. (RFC 7914 section 2; the tests lower n, tests/conftest.py.)
SCRYPT = {"n": 2**13, "r": 8, "p": 1, "dklen": 16}


def _scrypt(credentials: bytes, salt: bytes) -> str:
    return hashlib.scrypt(credentials, salt=salt, maxmem=64 * 2**20, **SCRYPT).hex()


def _credentials(client_id: str, secret: str) -> bytes:
    return f"{client_id}\0{secret}".encode()


def legacy_fingerprint(client_id: str, secret: str) -> str:
    """The unsalted form state files of the first version hold; read, never written."""
    return hashlib.sha256(_credentials(client_id, secret)).hexdigest()[:16]


def _all_credentials(bindings: Mapping[str, tuple[str, str]]) -> bytes:
    """Every client's name, id and secret, in one unambiguous string (JSON, by name)."""
    return json.dumps(sorted([name, *pair] for name, pair in bindings.items())).encode()


def _scrypt_form(credentials: bytes, salt: bytes | None) -> str:
    salt = os.urandom(16) if salt is None else salt
    return f"scrypt${salt.hex()}${_scrypt(credentials, salt)}"


def _scrypt_matches(stored: str, credentials: bytes) -> bool:
    try:
        _, salt_hex, want = stored.split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt(credentials, salt), want)


def fingerprint(client_id: str, secret: str, *, salt: bytes | None = None) -> str:
    """`scrypt$<salt hex>$<hash hex>` of one client's id and secret, with a fresh salt (the
    per-token form of older state files; `fingerprint_all` is what is written now)."""
    return _scrypt_form(_credentials(client_id, secret), salt)


def fingerprint_all(bindings: Mapping[str, tuple[str, str]], *, salt: bytes | None = None) -> str:
    """`scrypt$<salt hex>$<hash hex>` of every configured client's id and secret together."""
    return _scrypt_form(_all_credentials(bindings), salt)


def matches(stored: str | None, client_id: str, secret: str) -> bool:
    """Whether a stored per-token fingerprint (either older form) is of these credentials."""
    if not stored:
        return False
    if stored.startswith("scrypt$"):
        return _scrypt_matches(stored, _credentials(client_id, secret))
    return hmac.compare_digest(stored, legacy_fingerprint(client_id, secret))


def matches_all(stored: str | None, bindings: Mapping[str, tuple[str, str]]) -> bool:
    """Whether a stored fingerprint is of exactly these clients' credentials."""
    return bool(stored and stored.startswith("scrypt$")) and _scrypt_matches(
        str(stored), _all_credentials(bindings)
    )


class BoundTokenCache:
    """The clients' TokenCache over the store, trusting only tokens the configured credentials
    obtained. `bindings`: token name -> (client id, secret) configured now."""

    def __init__(self, store: Store, bindings: Mapping[str, tuple[str, str]]) -> None:
        self.store = store
        self.bindings = dict(bindings)
        self._owner = threading.get_ident()
        # The state file's shared fingerprint once it was found to be of the configured
        # credentials (or written for them): scrypt runs once a process, not once a token.
        self._current: str | None = None
        self._other: str | None = None  # a shared fingerprint found to be of other credentials
        self._lock = threading.Lock()

    def _current_fingerprint(self, store: Store, *, write: bool = False) -> str | None:
        """The shared fingerprint when it is of the configured credentials. `write`: when it
        is not (none yet, or a secret changed), write one that is (a token was just obtained
        with them) instead of answering None."""
        with self._lock:
            if self._current is not None:
                return self._current
        # Not under the lock: another thread may hold the file's write lock and wait for
        # this one. Two threads racing here cost at most one more token request later.
        stored = store.get_meta(META_ALL)
        if stored is not None and stored != self._other and matches_all(stored, self.bindings):
            found = stored
        elif write:
            found = fingerprint_all(self.bindings)
            store.set_meta(META_ALL, found)
        else:
            with self._lock:
                self._other = stored  # checked once, not again by every token's check
            return None
        with self._lock:
            self._current = found
        return found

    def _bound(self, store: Store, name: str) -> bool:
        """True when the token `name` was obtained under the configured credentials. An older
        per-token fingerprint that matches them is moved to the shared form here."""
        stored = store.get_meta(META_PREFIX + name)
        if stored is None:
            return False
        if stored == self._current_fingerprint(store):
            return True
        client_id, secret = self.bindings[name]
        if stored == store.get_meta(META_ALL) or not matches(stored, client_id, secret):
            return False  # the shared form, of other credentials; or another client's
        store.set_meta(META_PREFIX + name, str(self._current_fingerprint(store, write=True)))
        return True

    @contextmanager
    def _here(self) -> Iterator[Store]:
        """The store, for this thread. The pass reads Lime Go ahead and sends Fortnox writes
        on helper threads, and a token may expire (or be refused) there; SQLite's connection
        belongs to the thread that opened it, so another thread gets a connection of its own
        to the same file for this one read or write (WAL: the pass's own connection is not
        blocked, and a write waits for its transaction at most the busy timeout)."""
        if threading.get_ident() == self._owner or self.store.path is None:
            yield self.store
            return
        side = Store.open(self.store.path, create=False)
        side.clock = self.store.clock
        try:
            yield side
        finally:
            side.close()

    def load(self, name: str) -> TokenRecord | None:
        with self._here() as store:
            record = store.load(name)
            if record is None or name not in self.bindings:
                return record
            if not self._bound(store, name):
                return replace(record, access_token=None, expires_at=0.0)
            return record

    def unverified(self, name: str) -> bool:
        """True when no token was obtained with the configured credentials yet (a fresh state
        file, or the id or secret changed since): worth one token request up front."""
        return name in self.bindings and not self._bound(self.store, name)

    def save(self, name: str, record: TokenRecord) -> None:
        with self._here() as store:
            store.save(name, record)
            if name in self.bindings and not self._bound(store, name):
                # After the tokens: a crash in between only costs one more token request.
                current = self._current_fingerprint(store, write=True)
                store.set_meta(META_PREFIX + name, str(current))


def token_cache(cfg: Config, store: Store) -> BoundTokenCache:
    return BoundTokenCache(
        store,
        {
            LIMEGO_TOKEN: (cfg.limego.client_id, cfg.limego.client_secret),
            FORTNOX_TOKEN: (cfg.fortnox.client_id, cfg.fortnox.client_secret),
        },
    )
