"""Cached tokens are bound to the credentials that obtained them.

A token cached in the state file outlives a change of the client secret: without this, a pass
with a wrong secret would go on using the cached token (for up to an hour) and exit 0, while
`check` says the secret is rejected. Each token name gets a fingerprint of the client id and
secret it was obtained with (a short sha256, kept in the store's meta table beside the tokens);
an access token whose fingerprint is not the configured one is not handed out, so the client
asks the token endpoint again and a wrong secret fails at once (exit 3). A refresh token is
kept whatever the fingerprint: it is the only way back without a new consent, and using it
proves the secret anyway.

Credentials no token was obtained with yet are tried once when the clients are built
(`runner.build_clients`), so a pass with nothing to send still exits 3 on a wrong secret; in
steady state (fingerprints match) that costs nothing.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace

from limefort.config import Config
from limefort.fortnox import TOKEN_NAME as FORTNOX_TOKEN
from limefort.limego import TOKEN_NAME as LIMEGO_TOKEN
from limefort.models import TokenRecord
from limefort.store import Store

META_PREFIX = "token_client:"


def fingerprint(client_id: str, secret: str) -> str:
    return hashlib.sha256(f"{client_id}\0{secret}".encode()).hexdigest()[:16]


class BoundTokenCache:
    """The clients' TokenCache over the store, trusting only tokens the configured credentials
    obtained. `bindings`: token name -> fingerprint of the credentials configured now."""

    def __init__(self, store: Store, bindings: Mapping[str, str]) -> None:
        self.store = store
        self.bindings = dict(bindings)
        self._owner = threading.get_ident()

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
            if store.get_meta(META_PREFIX + name) != self.bindings[name]:
                return replace(record, access_token=None, expires_at=0.0)
            return record

    def unverified(self, name: str) -> bool:
        """True when no token was obtained with the configured credentials yet (a fresh state
        file, or the id or secret changed since): worth one token request up front."""
        return name in self.bindings and (
            self.store.get_meta(META_PREFIX + name) != self.bindings[name]
        )

    def save(self, name: str, record: TokenRecord) -> None:
        with self._here() as store:
            store.save(name, record)
            if name in self.bindings:
                # After the tokens: a crash in between only costs one more token request.
                store.set_meta(META_PREFIX + name, self.bindings[name])


def token_cache(cfg: Config, store: Store) -> BoundTokenCache:
    return BoundTokenCache(
        store,
        {
            LIMEGO_TOKEN: fingerprint(cfg.limego.client_id, cfg.limego.client_secret),
            FORTNOX_TOKEN: fingerprint(cfg.fortnox.client_id, cfg.fortnox.client_secret),
        },
    )
