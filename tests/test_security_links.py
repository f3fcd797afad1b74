"""Issue 19, item 2: a `links.next` (or a configured URL) is judged by the host requests will
really connect to, and an authority that reads two ways is refused. One loopback check."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import Lf, Recorder

from limefort import config as config_mod
from limefort.clients import http as http_mod
from limefort.clients.http import HttpClient
from limefort.core.errors import ConfigError, TransientError
from limefort.core.urls import authority_problem, is_loopback, origin, refuse_plain_http
from limefort_sandbox import Sandbox
from limefort_sandbox.http import Response


def inject_next(sb: Sandbox, link: str) -> list[int]:
    """The first page of companies says its next page is at `link`."""
    app = sb.limego
    handle = app.handle
    served: list[int] = []

    def deceiving(req: Any) -> Any:
        resp = handle(req)
        if req.path.endswith("/companies") and resp.status == 200 and not served:
            doc = json.loads(resp.body)
            doc.setdefault("links", {})["next"] = link
            served.append(1)
            return Response(200, json.dumps(doc).encode(), "application/json", resp.headers)
        return resp

    app.handle = deceiving
    return served


def test_a_backslash_links_next_sends_the_token_nowhere(
    lf: Lf, sandbox: Sandbox, recorder: Recorder
) -> None:
    # urlsplit reads the host after `@` (the sandbox), requests the one before `\`: the
    # recorder. The old same-origin check passed this link and the bearer token went along.
    port = sandbox.limego_url.rsplit(":", 1)[1]
    link = f"http://127.0.0.1:{recorder.port}\\@127.0.0.1:{port}/api/v1/companies?cursor=x"
    served = inject_next(sandbox, link)
    r = lf.run("sync")
    assert served
    assert recorder.requests == []
    assert r.code != 70 and "internal error" not in r.err
    assert "refusing to follow a link: it contains a backslash" in r.err


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.example\\@api.example.test/next",
        "https://api.example.test\\.evil.example/next",
        "https://user@api.example.test/next",
        "https://evil.example@api.example.test/next",
        "https://api.example.test\t.evil/next",
        "https://api.example.test\x00/next",
        "https://api.example.test /next",
        "https://api.example.test:444/next",
        "http://api.example.test/next",
        "https://evil.example/next",
    ],
)
def test_deceptive_or_foreign_links_are_refused(link: str) -> None:
    client = HttpClient("https://api.example.test", "T")
    with pytest.raises(TransientError, match="refusing to follow a link"):
        client.url(link)


def test_same_origin_links_are_followed_as_given() -> None:
    client = HttpClient("https://api.example.test/api", "T")
    for link in (
        "https://api.example.test/api/v1/companies?cursor=abc%5C",
        "https://API.example.test:443/x",
        "https://api.example.test./x",
    ):
        assert client.url(link) == link


def test_origin_reads_urls_as_requests_does() -> None:
    assert origin("https://evil.example\\@api.example/x")[1] == "evil.example"
    assert origin("http://127.0.0.1@evil.example/")[1] == "evil.example"
    assert origin("https://[::1]:8443/")[1:] == ("[::1]", 8443)


@pytest.mark.parametrize(
    "url",
    [
        "http://evil.example\\@127.0.0.1/",
        "http://127.0.0.1@evil.example/",
        "http://evil.example#@127.0.0.1/",
        "http://127.0.0.1\t/",
    ],
)
def test_the_loopback_exception_for_plain_http_cannot_be_borrowed(url: str) -> None:
    with pytest.raises(ConfigError):
        refuse_plain_http(url, "limego.base_url")
    with pytest.raises(ConfigError):
        config_mod.check_url("limego.base_url", url)


def test_a_backslash_base_url_in_the_config_is_refused_naming_the_key(lf: Lf) -> None:
    text = lf.config.read_text()
    base = lf.sb.limego_url
    lf.write(text.replace(f'"{base}"', json.dumps(f"http://evil.example\\@{base[7:]}")))
    r = lf.run("sync")
    assert r.code == 2
    assert r.err.startswith("limefort: limego.base_url:") and "backslash" in r.err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost.", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("[::1]", True),
        ("::1", True),
        ("localhost.evil", False),
        ("10.0.0.1", False),
        ("", False),
        (None, False),
    ],
)
def test_one_loopback_check_for_the_whole_project(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    # Every module that asks uses this very function: they cannot disagree again.
    from limefort.commands import auth

    assert http_mod.is_loopback is is_loopback and auth.is_loopback is is_loopback
    assert not hasattr(config_mod, "is_loopback") or config_mod.is_loopback is is_loopback


def test_localhost_with_the_root_dot_is_loopback_in_the_config_too() -> None:
    assert config_mod.check_url("fortnox.redirect_uri", "http://localhost.:8765/callback")


def test_authority_problem_says_what() -> None:
    assert authority_problem("https://a.example/x?q=a b") is not None
    assert authority_problem("https://u@a.example/") is not None
    assert authority_problem("https://u@a.example/", allow_userinfo=True) is None
    assert authority_problem("https://a.example/x?email=a@b.example") is None
