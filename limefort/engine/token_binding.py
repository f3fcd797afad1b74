"""Cached tokens are bound to the credentials that obtained them.

A token cached in the state file outlives a change of the client secret: without this, a pass
with a wrong secret would go on using the cached token (for up to an hour) and exit 0, while
`check` says the secret is rejected. Each token name gets a fingerprint of the client id and
secret it was obtained with (kept in the store's meta table beside the tokens); an access token
whose fingerprint is not the configured one is not handed out, so the client asks the token
endpoint again and a wrong secret fails at once (exit 3).

The fingerprint is `scrypt$<salt>$<hash>`: salted (16 random bytes of its own) and slow
(scrypt, n=2^13; see SCRYPT), because the state file and every backup of it carry it: a plain hash would
let whoever holds a backup try guesses of the client secret offline at billions a second. The
first version stored an unsalted `sha256(id\0secret)[:16]`; a pass that finds one and the
configured credentials match it stores the scrypt form instead (nothing asked of the user). A
match is computed once a process per token name, not once a request. A refresh token is
kept whatever the fingerprint: it is the only way back without a new consent, and using it
proves the secret anyway.

Credentials no token was obtained with yet are tried once when the clients are built
(`runner.build_clients`), so a pass with nothing to send still exits 3 on a wrong secret; in
steady state (fingerprints match) that costs nothing.
"""

from __future__ import annotations

import hashlib
import hmac
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

META_PREFIX = "token_client:"


# scrypt with n=2^13, r=8 (8 MiB, about 17 ms a try here, and for anyone guessing: some
# 10^5 times a sha256). A pass checks two fingerprints, so this is what an idle pass pays; a
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


def fingerprint(client_id: str, secret: str, *, salt: bytes | None = None) -> str:
    """`scrypt$<salt hex>$<hash hex>` of the client id and secret, with a fresh salt."""
    salt = os.urandom(16) if salt is None else salt
    return f"scrypt${salt.hex()}${_scrypt(_credentials(client_id, secret), salt)}"


def matches(stored: str | None, client_id: str, secret: str) -> bool:
    """Whether a stored fingerprint (either form) is of these credentials."""
    if not stored:
        return False
    if stored.startswith("scrypt$"):
        try:
            _, salt_hex, want = stored.split("$")
            salt = bytes.fromhex(salt_hex)
        except ValueError:
            return False
        return hmac.compare_digest(_scrypt(_credentials(client_id, secret), salt), want)
    return hmac.compare_digest(stored, legacy_fingerprint(client_id, secret))


class BoundTokenCache:
    """The clients' TokenCache over the store, trusting only tokens the configured credentials
    obtained. `bindings`: token name -> (client id, secret) configured now."""

    def __init__(self, store: Store, bindings: Mapping[str, tuple[str, str]]) -> None:
        self.store = store
        self.bindings = dict(bindings)
        self._owner = threading.get_ident()
        # token name -> the stored fingerprint found to match: scrypt runs once a process.
        self._known: dict[str, str] = {}
        self._lock = threading.Lock()

    def _bound(self, store: Store, name: str) -> bool:
        """True when the fingerprint stored for `name` is of the configured credentials; an
        old unsalted one that matches is replaced by the salted form here."""
        stored = store.get_meta(META_PREFIX + name)
        with self._lock:
            if stored is not None and self._known.get(name) == stored:
                return True
        client_id, secret = self.bindings[name]
        if not matches(stored, client_id, secret):
            return False
        assert stored is not None
        if not stored.startswith("scrypt$"):
            stored = fingerprint(client_id, secret)
            store.set_meta(META_PREFIX + name, stored)
        with self._lock:
            self._known[name] = stored
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
                stored = fingerprint(*self.bindings[name])
                store.set_meta(META_PREFIX + name, stored)
                with self._lock:
                    self._known[name] = stored


def token_cache(cfg: Config, store: Store) -> BoundTokenCache:
    return BoundTokenCache(
        store,
        {
            LIMEGO_TOKEN: (cfg.limego.client_id, cfg.limego.client_secret),
            FORTNOX_TOKEN: (cfg.fortnox.client_id, cfg.fortnox.client_secret),
        },
    )
