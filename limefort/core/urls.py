"""The one place that decides which host a URL really names, and whether it is loopback.

Python's `urlsplit` and urllib3's `parse_url` (what requests uses to decide where to connect)
read some authorities differently: `https://evil.example\\@api.example/` is `api.example` to
the first and `evil.example` to the second. Every check here parses with urllib3, and URLs
whose authority could be read two ways are refused outright rather than interpreted.
"""

from __future__ import annotations

import ipaddress
import re

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from limefort.core.errors import ConfigError

DEFAULT_PORTS = {"http": 80, "https": 443}

# Whitespace and control characters anywhere: parsers strip or keep them differently
# (urlsplit drops tabs and newlines, urllib3 does not).
_UNSAFE_ANYWHERE = re.compile(r"[\s\x00-\x1f\x7f]")


def is_loopback(host: str | None) -> bool:
    """`localhost` (with or without the root dot) or a loopback address, v4 or v6."""
    if not host:
        return False
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def raw_authority(url: str) -> str:
    """The authority as RFC 3986 delimits it: after `//`, before the first `/`, `?` or `#`."""
    _, sep, rest = url.partition("//")
    if not sep:
        return ""
    return re.split(r"[/?#]", rest, maxsplit=1)[0]


def authority_problem(url: str, *, allow_userinfo: bool = False) -> str | None:
    """Why the URL's authority is ambiguous or deceptive, or None when it is plain."""
    if _UNSAFE_ANYWHERE.search(url):
        return "it contains whitespace or control characters"
    if "\\" in url:
        # urllib3 ends the authority at a backslash, urlsplit does not; browsers read it as
        # `/`. No URL limefort is given has a reason to hold one unescaped (it would be %5C).
        return "it contains a backslash"
    if "@" in raw_authority(url) and not allow_userinfo:
        return "its authority contains user information (`user@`)"
    return None


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) as requests would connect. ValueError when urllib3 cannot parse."""
    try:
        parts = parse_url(url)
    except LocationParseError as exc:
        raise ValueError(str(exc)) from None
    scheme = (parts.scheme or "").lower()
    host = (parts.host or "").lower().rstrip(".")
    return scheme, host, parts.port or DEFAULT_PORTS.get(scheme)


def host_of(url: str) -> str | None:
    """The host requests would connect to, for messages; None when unparseable."""
    try:
        return origin(url)[1] or None
    except ValueError:
        return None


def refuse_plain_http(url: str, key: str) -> None:
    """Credentials must not cross a network unencrypted; a loopback sandbox may use http.
    A configured URL whose authority reads two ways is refused whatever its scheme."""
    problem = authority_problem(url, allow_userinfo=True)
    if problem:
        raise ConfigError(key, f"refusing this URL: {problem}")
    try:
        scheme, host, _ = origin(url)
    except ValueError:
        raise ConfigError(key, "not a URL limefort can parse") from None
    if scheme == "http" and not is_loopback(host):
        raise ConfigError(
            key,
            f"refusing plain http:// to {host} (credentials would travel unencrypted); "
            "use https://",
        )
