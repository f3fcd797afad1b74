"""Issue 19, item 6: what limefort prints never holds a credential or an organisation number,
including the HTTP libraries' own lines at -vv, and a config error about a secret names its
type only."""

from __future__ import annotations

import re

import pytest
from conftest import Lf, Recorder
from test_auth import drop_key

from limefort.mapping.normalise import normalise_orgnr
from limefort_sandbox import FaultRule, Sandbox

PING_SECRET = "c0ffee00-1d2e-4f5a-9b8c-secretpingkey"


def set_raw(lf: Lf, section: str, key: str, toml_value: str) -> None:
    """`key = <toml_value>` in [section], written as raw TOML (a number, a list, a table)."""
    drop_key(lf, section, key)
    text = lf.config.read_text(encoding="utf-8")
    lf.write(text.replace(f"[{section}]\n", f"[{section}]\n{key} = {toml_value}\n", 1))


def orgnrs(sb: Sandbox) -> set[str]:
    """Every organisation number of the sandbox, as Lime Go holds it and as sent to Fortnox."""
    out: set[str] = set()
    for company in sb.limego.companies.values():
        raw = company["attributes"].get("business_id")
        if raw:
            out.add(raw)
            out.add(raw.replace("-", ""))
            normalised = normalise_orgnr(raw)
            if normalised:
                out.add(str(normalised))
    return out


@pytest.mark.http
def test_vv_output_hides_the_ping_url_and_query_strings(
    lf: Lf, sandbox: Sandbox, recorder: Recorder
) -> None:
    lf.edit("metrics", ping_url=f'"{recorder.url}/{PING_SECRET}"')
    # A lost answer to a customer create: the pass then searches Fortnox by org number.
    sandbox.fortnox.faults.add(
        FaultRule("ghost500", methods=("POST",), path_prefix="/3/customers", times=3)
    )
    r = lf.run("-vv", "sync")
    assert r.code in (0, 1), r.err

    # The ping happened and urllib3 did log its request lines: this is what is being tested.
    assert [q.path for q in recorder.requests] == [
        f"/{PING_SECRET}/start",
        f"/{PING_SECRET}/{r.code}",
    ]
    request_lines = [line for line in r.err.splitlines() if re.search(r'"(GET|POST|PUT) ', line)]
    assert any(f"127.0.0.1:{recorder.port}" in line for line in request_lines)
    assert any("/3/customers" in line for line in request_lines)

    assert PING_SECRET not in r.err + r.out
    for line in request_lines:
        assert "?" not in line or "?..." in line, line
        assert not re.search(r"\?(?!\.\.\.)", line), line
    # The searches by organisation number were made, and their query strings are not shown
    # (limefort's own report may still quote an invalid number, to say which value is wrong).
    searched = [q for q in sandbox.fortnox.requests if "organisationnumber" in q.query]
    assert searched
    library_lines = [line for line in r.err.splitlines() if "127.0.0.1:" in line]
    leaked = sorted(n for n in orgnrs(sandbox) for line in library_lines if n in line)
    assert leaked == []
    for secret in (sandbox.limego_client_secret, sandbox.fortnox_client_secret):
        assert secret not in r.err + r.out


@pytest.mark.parametrize(
    ("section", "value", "kind"),
    [
        ("limego", "31415926535897", "int"),
        ("fortnox", "3.14159265358979", "float"),
        ("fortnox", '["s3cr3t-in-a-list"]', "list"),
        ("fortnox", '{ value = "s3cr3t-in-a-table" }', "dict"),
    ],
)
def test_a_secret_of_the_wrong_type_is_named_by_type_only(
    lf: Lf, section: str, value: str, kind: str
) -> None:
    set_raw(lf, section, "client_secret", value)
    r = lf.run("sync")
    assert r.code == 2
    assert f"{section}.client_secret: expected a string, got {kind}" in r.err
    for fragment in ("31415926535897", "3.14159265358979", "s3cr3t"):
        assert fragment not in r.err + r.out


def test_other_keys_of_the_wrong_type_still_show_their_value(lf: Lf) -> None:
    set_raw(lf, "sync", "article_number", "12345")
    r = lf.run("sync")
    assert r.code == 2 and "got int 12345" in r.err


def test_a_refresh_token_of_the_wrong_type_is_named_by_type_only(lf: Lf) -> None:
    drop_key(lf, "fortnox", "tenant_id")
    set_raw(lf, "fortnox", "refresh_token", "271828182845904")
    r = lf.run("sync")
    assert r.code == 2 and "271828182845904" not in r.err
