"""Sandbox Lime Go and Fortnox servers on loopback, for tests and the demo.

    from limefort_sandbox import Sandbox, FaultRule
    with Sandbox(seed=7, companies=40, deals=60) as sb:
        sb.fortnox.faults.add(FaultRule("503", rate=0.2))
        ...  # point limefort at sb.config_toml(state_path)

`Sandbox(..., serve=False)` starts no servers: each app gets an address of its own (a port
bound but never listened on) and tests route `requests` to the apps in-process with
`tests/fakes.py` (`inprocess(sb)`, `mount_inprocess(session, sb)`). The request log, faults
and latency behave the same on both transports (`tests/contract/test_transport.py`).

Strict on purpose: what works against these servers must work against the real services.
This package imports nothing from the rest of limefort but `limefort.core.limits` (the
one table of Fortnox's field limits, data only); otherwise stdlib only.

Beyond the core API (see the attributes of `LimeGo` and `Fortnox`), tests may use:
- Lime Go: `add_company`, `update_company`, `add_contact`, `update_contact`, `add_deal`,
  `update_deal` (also `stage=`, `company_id=`, `contact_ids=`, `owner_ids=`), `win_deal`,
  `lose_deal`; `delete_company`, `delete_deal`, `delete_contact` (GET answers 404, lists
  leave it out, the change feed says deleted); `stage_id(name|category|id)`;
  `clock_offset` (seconds Lime Go's clock is ahead, negative = behind: timestamps the
  sandbox stamps and the `Date` header of every Lime Go answer follow now + offset; `now()`);
  `expire_changes()` (every change cursor answers 410), `expire_tokens()`, `allowed_scopes`
  (a set; drop one to get 403s), `change_cursor`. add/update set `updated_at` to now unless
  one is given (ISO 8601 UTC with Z, e.g. `seed.iso(datetime)`), for back-dated records.
  API calls need `Accept: application/vnd.api+json` (406 otherwise).
- Fortnox: `customer(number)`, `customers`, `invoices`, `orders`, `documents_by_ref(ref)`;
  `add_customer`, `add_invoice`, `add_order` (documents "by hand", validated like a POST, any
  `ExternalInvoiceReference1`); `set_active(number, bool)` (list `filter=active|inactive`);
  `delete_customer(number)` (as `DELETE /3/customers/{n}`: 404 after, number reserved:
  2000637 on reuse); `mark_sent(number, kind)`, `book_invoice(number)`,
  `cancel_document(number, kind)` (a booked or cancelled document then refuses `PUT`
  updates, as Fortnox does); `delete_document(number, kind)` (a test hook: gone, 404); lists take `lastmodified` (Swedish local time, minutes);
  `issue_access_token(scopes)`, `expire_access_tokens()`, `service_scopes` (scopes of the
  client-credentials token), `refresh_token_lifetime`, `code_lifetime`, `last_consent`,
  `capitalised_errors`, `revoke_chain_on_reuse`, `rate_limit`/`rate_window`,
  `server_errors` (sandbox bugs, answered 500).
- Both: `faults`, `requests`, `reset_log()`, `count(...)`, `latency` (seconds added to every
  answer; per service: `Sandbox(limego_latency=, fortnox_latency=)` or `sb.fortnox.latency`).
Error codes and messages: `rules.py`.
"""

from __future__ import annotations

import gc
import random
import re
import socket
from datetime import UTC, datetime, timedelta
from os import PathLike
from typing import Any

from limefort_sandbox.faults import FaultRule, Faults
from limefort_sandbox.fortnox import Fortnox
from limefort_sandbox.http import RequestRecord, Server, stop_all
from limefort_sandbox.limego import LimeGo
from limefort_sandbox.rules import FortnoxError
from limefort_sandbox.seed import generate

__all__ = [
    "FaultRule",
    "Faults",
    "Fortnox",
    "FortnoxError",
    "LimeGo",
    "RequestRecord",
    "Sandbox",
    "toml_value",
]


class Sandbox:
    """A seeded Lime Go CRM and an empty Fortnox company, each behind its own HTTP server."""

    def __init__(
        self,
        seed: int = 7,
        companies: int = 40,
        deals: int = 60,
        contacts: int | None = None,
        owners: int = 5,
        customer_ratio: float = 0.5,
        won_ratio: float = 0.3,
        recent_days: int = 30,
        fortnox_rate_limit: int | None = 25,
        fortnox_rate_window: float = 5.0,
        fortnox_token_lifetime: float = 3600,
        limego_token_lifetime: float = 1800,
        fortnox_default_account: bool = True,
        latency: float = 0.0,
        port_limego: int = 0,
        port_fortnox: int = 0,
        host: str = "127.0.0.1",
        *,
        serve: bool = True,
        limego_latency: float | None = None,
        fortnox_latency: float | None = None,
    ) -> None:
        self.seed = seed
        self.serve = serve
        self.recent_days = recent_days
        creds = random.Random(f"limefort-sandbox-credentials:{seed}")
        self.limego_client_id = f"limego-sandbox-{creds.getrandbits(32):08x}"
        self.limego_client_secret = f"lgs_{creds.getrandbits(128):032x}"
        self.fortnox_client_id = f"fnx{creds.getrandbits(48):012x}"
        self.fortnox_client_secret = f"fns_{creds.getrandbits(128):032x}"
        self.fortnox_tenant_id = str(creds.randrange(1_000_000, 10_000_000))
        data = generate(
            seed=seed,
            companies=companies,
            deals=deals,
            contacts=contacts,
            owners=owners,
            customer_ratio=customer_ratio,
            won_ratio=won_ratio,
            recent_days=recent_days,
        )
        if companies + deals + (companies if contacts is None else contacts) >= 10_000:
            # Millions of long-lived objects: keep the cyclic GC from re-scanning them over and
            # over while the benchmark pages through them (process-wide, like any gc setting).
            gc.freeze()
        self.limego = LimeGo(
            data,
            client_id=self.limego_client_id,
            client_secret=self.limego_client_secret,
            token_lifetime=limego_token_lifetime,
            fault_seed=seed * 2 + 1,
            latency=latency if limego_latency is None else limego_latency,
            id_seed=seed * 3 + 2,
        )
        self.fortnox = Fortnox(
            client_id=self.fortnox_client_id,
            client_secret=self.fortnox_client_secret,
            tenant_id=self.fortnox_tenant_id,
            rate_limit=fortnox_rate_limit,
            rate_window=fortnox_rate_window,
            token_lifetime=fortnox_token_lifetime,
            default_account=fortnox_default_account,
            fault_seed=seed * 2 + 2,
            latency=latency if fortnox_latency is None else fortnox_latency,
        )
        self._servers = (
            Server(self.limego, host, port_limego),
            Server(self.fortnox, host, port_fortnox),
        )
        self._placeholders: list[socket.socket] = []
        if not serve:
            self._reserve_origins(host)

    # --- lifecycle ---

    def start(self) -> Sandbox:
        if not self.serve:
            return self  # nothing to start: requests reach the apps in-process
        try:
            for s in self._servers:
                s.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_all(self._servers)
        for sock in self._placeholders:
            sock.close()
        self._placeholders.clear()

    def _reserve_origins(self, host: str) -> None:
        """Give each app an address of its own without serving it: a socket bound to a free
        port but never listening. Nothing else can take the port, and a client that was not
        routed in-process is refused at once instead of reaching some other server."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        shown = f"[{host}]" if ":" in host else host
        for app in (self.limego, self.fortnox):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.bind((host, 0))
            self._placeholders.append(sock)
            app.base_url = f"http://{shown}:{sock.getsockname()[1]}"

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def latency(self) -> float:
        """Seconds added to every answer of both services (each app also has its own
        `latency`, e.g. `sb.fortnox.latency = 0.15`); reading gives Lime Go's."""
        return self.limego.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.limego.latency = self.fortnox.latency = seconds

    # --- addresses ---

    @property
    def limego_url(self) -> str:
        return self._servers[0].url if self.serve else self.limego.base_url

    @property
    def fortnox_url(self) -> str:
        return self._servers[1].url if self.serve else self.fortnox.base_url

    @property
    def fortnox_token_url(self) -> str:
        return f"{self.fortnox_url}/oauth-v1/token"

    @property
    def fortnox_auth_url(self) -> str:
        return f"{self.fortnox_url}/oauth-v1/auth"

    @property
    def start_date(self) -> str:
        """The `sync.start` of `config_toml`: `recent_days` ago (UTC), YYYY-MM-DD."""
        return (datetime.now(UTC).date() - timedelta(days=self.recent_days)).isoformat()

    def config_toml(self, state_path: str | PathLike[str], **sync_overrides: Any) -> str:
        """A complete limefort configuration for these servers."""
        sync: dict[str, Any] = {"deal_target": "invoice", "start": self.start_date}
        sync.update(sync_overrides)
        sections: list[tuple[str, dict[str, Any]]] = [
            (
                "limego",
                {
                    "base_url": self.limego_url,
                    "client_id": self.limego_client_id,
                    "client_secret": self.limego_client_secret,
                },
            ),
            (
                "fortnox",
                {
                    "api_url": self.fortnox_url,
                    "token_url": self.fortnox_token_url,
                    "auth_url": self.fortnox_auth_url,
                    "client_id": self.fortnox_client_id,
                    "client_secret": self.fortnox_client_secret,
                    "tenant_id": self.fortnox_tenant_id,
                },
            ),
            ("sync", sync),
            ("state", {"path": str(state_path)}),
        ]
        lines: list[str] = []
        for name, values in sections:
            if lines:
                lines.append("")
            lines.append(f"[{name}]")
            for key, value in values.items():
                lines.append(f"{_toml_key(key)} = {toml_value(value)}")
        return "\n".join(lines) + "\n"


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def toml_value(value: Any) -> str:
    """A TOML value for a str, bool, int, float, or a list of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"cannot write {value!r} as a TOML value here")
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, PathLike):
        return _toml_string(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write a {type(value).__name__} as a TOML value")
