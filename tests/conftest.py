"""Shared fixtures: sandbox servers on loopback and a helper that drives the real CLI.

`Lf.run(...)` calls `limefort.cli.main` in-process (fast, shares coverage); `Lf.spawn(...)`
starts the installed command as a real subprocess for crash, overlap and daemon tests.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import responses

from limefort.engine import token_binding
from limefort_sandbox import Sandbox

# The fingerprint's scrypt cost as shipped (tests/test_cli_tokens.py checks it).
PRODUCTION_SCRYPT = dict(token_binding.SCRYPT)


@pytest.fixture(autouse=True)
def _cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process passes hash the credentials at a tiny scrypt cost: the same code and
    format, without ~35 ms of CPU per pass across 1 600 tests (limefort run as a subprocess
    pays the real cost)."""
    monkeypatch.setitem(token_binding.SCRYPT, "n", 2**4)


# Fast retries for tests: the waits are tiny, the classification is the real one.
TEST_HTTP = {
    "attempts": 4,
    "backoff_initial": '"0.01s"',
    "backoff_max": '"0.05s"',
    "timeout": '"2s"',
}


def add_keys(toml: str, section: str, **values: Any) -> str:
    """Add keys to a [section] of a TOML text (creating the section if needed)."""
    rendered = "\n".join(f"{k} = {_toml(v)}" for k, v in values.items())
    header = f"[{section}]"
    if re.search(rf"^\[{re.escape(section)}\]\s*$", toml, flags=re.M):
        return re.sub(
            rf"^\[{re.escape(section)}\]\s*$", header + "\n" + rendered, toml, count=1, flags=re.M
        )
    return toml.rstrip() + f"\n\n{header}\n{rendered}\n"


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, str) and v.startswith('"'):
        return v
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(str(v))


@dataclass
class Result:
    code: int
    out: str
    err: str


class Lf:
    """limefort pointed at a sandbox, with its own state file and config."""

    def __init__(self, sb: Sandbox, tmp_path: Path, *, rate_limit: int = 0, **sync: Any) -> None:
        self.sb = sb
        self.dir = tmp_path
        self.state = tmp_path / "limefort.db"
        self.config = tmp_path / "limefort.toml"
        text = sb.config_toml(str(self.state), **sync)
        text = add_keys(text, "fortnox", rate_limit=rate_limit)
        text = add_keys(text, "http", **TEST_HTTP)
        self.write(text)

    def write(self, text: str) -> None:
        self.config.write_text(text, encoding="utf-8")
        self.config.chmod(0o600)

    def edit(self, section: str, **values: Any) -> None:
        self.write(add_keys(self.config.read_text(encoding="utf-8"), section, **values))

    def run(self, *args: str) -> Result:
        from limefort.cli import main

        out, err = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(["--config", str(self.config), *args])
            except SystemExit as exc:
                code = int(exc.code or 0)
        return Result(code, out.getvalue(), err.getvalue())

    def store_rows(self, table: str) -> list[dict[str, Any]]:
        """The rows of one table of the state file, read directly (never through limefort)."""
        import sqlite3

        conn = sqlite3.connect(f"file:{self.state}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]
        finally:
            conn.close()

    def status(self) -> dict[str, Any]:
        r = self.run("status", "--json")
        assert r.code == 0, r.err
        return json.loads(r.out)

    def spawn(
        self, *args: str, env: dict[str, str] | None = None, **kw: Any
    ) -> subprocess.Popen[str]:
        assert self.sb.serve, "a real process needs real servers: mark the test @pytest.mark.http"
        return subprocess.Popen(
            [sys.executable, "-m", "limefort", "--config", str(self.config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            **kw,
        )


@pytest.fixture
def make_sandbox(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Sandboxes for one test. In-process by default (tests/fakes.py: every session limefort
    builds reaches the sandbox apps without sockets or threads); real loopback servers for a
    test marked `http`: one that starts a real `limefort` process, or talks to the servers
    with its own HTTP client."""
    if request.node.get_closest_marker("http") is None:
        from fakes import inprocess

        with inprocess() as routes:
            made: list[Sandbox] = []

            def in_process(**kw: Any) -> Sandbox:
                kw.setdefault("fortnox_rate_limit", None)
                sb = Sandbox(serve=False, **kw)
                made.append(sb)
                return routes.add(sb)

            yield in_process
            for sb in made:
                sb.stop()
                assert_bodies_fit_fortnox(sb)
        return
    started: list[Sandbox] = []

    def make(**kw: Any) -> Sandbox:
        kw.setdefault("fortnox_rate_limit", None)
        sb = Sandbox(**kw)
        sb.start()
        started.append(sb)
        return sb

    yield make
    for sb in started:
        sb.stop()
        assert_bodies_fit_fortnox(sb)


def assert_bodies_fit_fortnox(sb: Sandbox) -> None:
    """Every body limefort wrote to the sandbox fits Fortnox's own write models (fortpyx,
    generated from Fortnox's OpenAPI spec; unknown fields forbidden): checked after every
    test that used a sandbox, so each sync test is also a contract test of what it sent."""
    from contract.fortpyx_models import write_problems

    problems = [
        f"{r.method} {r.path}: {p}"
        for r in list(sb.fortnox.requests)
        if r.method in ("POST", "PUT") and r.path.startswith("/3/") and r.body is not None
        for p in write_problems(r.path, r.method, r.body)
    ]
    assert not problems, "limefort sent what Fortnox's write models refuse:\n" + "\n".join(
        problems[:10]
    )


def valid_orgnrs(first: int) -> Iterator[str]:
    """Distinct Swedish organisation numbers with a valid check digit, from `first` on (each
    test module takes its own range, so numbers never collide within a run)."""
    from stdnum import luhn

    for n in itertools.count(first):
        body = f"55{n:07d}"
        digits = body + luhn.calc_check_digit(body)
        yield f"{digits[:6]}-{digits[6:]}"


def empty_sandbox(make: Any, tmp_path: Path, seed: int, **sync: Any) -> tuple[Sandbox, Lf]:
    """A sandbox with no seeded records (the test adds its own) and limefort pointed at it."""
    sb = make(seed=seed, companies=0, deals=0)
    return sb, Lf(sb, tmp_path, **sync)


@pytest.fixture
def sandbox(make_sandbox: Any) -> Sandbox:
    return make_sandbox(seed=11, companies=24, deals=30)


@pytest.fixture
def lf(sandbox: Sandbox, tmp_path: Path) -> Lf:
    return Lf(sandbox, tmp_path)


def fortnox_calls(sb: Sandbox) -> list[str]:
    return [f"{r.method} {r.path}" for r in sb.fortnox.requests if r.path.startswith("/3/")]


def beyond_ledger_read(sb: Sandbox) -> list[str]:
    """A pass's Fortnox requests besides its one read of what changed among Fortnox's
    documents (DESIGN rule 14: every pass looks once, so a duplicate made by hand is named)."""
    calls = [r for r in sb.fortnox.requests if r.path.startswith("/3/")]
    reads = [
        r
        for r in calls
        if r.method == "GET"
        and r.path in ("/3/invoices", "/3/orders")
        and "lastmodified" in r.query
    ]
    assert len(reads) == 1, [f"{r.method} {r.path} {r.query}" for r in calls]
    return [f"{r.method} {r.path}" for r in calls if r is not reads[0]]


DEADLINE = 60.0  # a bound for a hung process, never a performance claim


def wait_for(cond: Callable[[], Any], timeout: float = DEADLINE, what: str = "") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or cond}")


def spawn_logged(lf: Lf, name: str, *args: str, **kw: Any) -> tuple[subprocess.Popen[str], Path]:
    """A real `limefort` process; output goes to files so a chatty one never blocks."""
    assert lf.sb.serve, "a real process needs real servers: mark the test @pytest.mark.http"
    err = lf.dir / f"{name}.err"
    proc = subprocess.Popen(
        [sys.executable, "-m", "limefort", "--config", str(lf.config), *args],
        stdin=subprocess.DEVNULL,
        stdout=(lf.dir / f"{name}.out").open("w"),
        stderr=err.open("w"),
        text=True,
        **kw,
    )
    return proc, err


def finish(proc: subprocess.Popen[str], timeout: float = DEADLINE) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@pytest.fixture
def make_inprocess_sandbox() -> Iterator[Any]:
    """As `make_sandbox`, but without servers: every session limefort builds in this test
    reaches these sandboxes in-process (tests/fakes.py), so `Lf.run` needs no sockets or
    threads. Subprocesses (`Lf.spawn`) cannot reach them."""
    from fakes import inprocess

    with inprocess() as routes:
        made: list[Sandbox] = []

        def make(**kw: Any) -> Sandbox:
            kw.setdefault("fortnox_rate_limit", None)
            sb = Sandbox(serve=False, **kw)
            made.append(sb)
            return routes.add(sb)

        yield make
        for sb in made:
            sb.stop()


# --- a loopback server that records everything that reaches it (security tests) --------------


@dataclass
class Recorded:
    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes


class Recorder:
    """A stand-in for a host nobody configured (or a monitoring endpoint): it records every
    request and answers `reply` (status, headers, body); `replies` are used up first."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[Recorded] = []
        self.reply: tuple[int, dict[str, str], bytes] = (200, {}, b"{}")
        self.replies: list[tuple[int, dict[str, str], bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.requests.append(
                    Recorded(self.command, self.path, dict(self.headers.items()), body)
                )
                status, headers, payload = owner.replies.pop(0) if owner.replies else owner.reply
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in headers and "Transfer-Encoding" not in headers:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _any  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        import threading

        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def everything(self) -> str:
        """All that reached this server, as one text to search for secrets."""
        return "\n".join(
            f"{r.method} {r.path}\n{r.headers}\n{r.body.decode('utf-8', 'replace')}"
            for r in self.requests
        )

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.stop()


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """`responses` in strict-enough mode for the client tests (shared by three modules)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as r:
        yield r


@pytest.fixture
def sleeps() -> list[float]:
    """The waits a client was asked for, instead of waiting."""
    return []
