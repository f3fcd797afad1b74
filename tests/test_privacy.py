"""Issue 25: personal data and foreign text on their way to a person.

A sole trader's organisation number is a personnummer: masked (`640823-****`) in every line
limefort prints, its logs (text and JSON), `status` and `status --json`, while Fortnox gets it
whole. Text a service sends (an ErrorInformation message) reaches the terminal printable: no
raw control byte, no forged line. A value nested past the depth cap is a quarantined record,
not a crash every pass. Secrets can come from files, and the ping URL is a secret."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import Lf, empty_sandbox
from stdnum import luhn
from test_security_inputs import answer_first

from limefort.core import privacy
from limefort_sandbox.http import Response

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e\u2028\u2029]")


def personnummer(birth: str, serial: str = "323") -> str:
    """A personnummer with a valid check digit: YYMMDD-NNNC."""
    body = birth + serial
    return f"{birth}-{serial}{luhn.calc_check_digit(body)}"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("shares 640823-3234 with company:7", "shares 640823-**** with company:7"),
        ("bare 6408233234 here", "bare 640823-**** here"),
        ("with century 19640823-3234.", "with century 19640823-****."),
        ("over a hundred 120101+1231", "over a hundred 120101+****"),
        ("samordningsnummer 640883-3231", "samordningsnummer 640883-****"),
        # An invalid check digit is still shown masked where it has a personnummer's shape.
        ("'640823-3235' is not valid", "'640823-****' is not valid"),
        # Legal entities: digits 3-4 are 20 or more, never a month: shown whole.
        ("company 556036-0793", "company 556036-0793"),
        ("company 5560360793 and 16556036-0793", "company 5560360793 and 16556036-0793"),
        # A bare run of ten digits that fails Luhn (a phone number) is left alone, as is any
        # longer run of digits.
        ("call 0701234560", "call 0701234560"),
        ("invoice 12640823323412", "invoice 12640823323412"),
    ],
)
def test_personnummer_are_masked_and_company_numbers_are_not(text: str, shown: str) -> None:
    assert privacy.mask_personnummer(text) == shown


def test_the_masks_control_is_a_valid_personnummer() -> None:
    # The table's samples are what they claim: valid (or, where said, invalid) check digits.
    assert luhn.is_valid("6408233234") and not luhn.is_valid("6408233235")
    assert personnummer("640823") == "640823-3234"


def test_foreign_text_is_shown_not_obeyed() -> None:
    hostile = "\x1b]0;pwned\x07bad\nlimefort: FAKE everything synced\u202e\x9b2J\u2028"
    shown = privacy.printable(hostile)
    assert not CONTROL.search(shown) and "\n" not in shown
    assert shown.startswith("\\x1b]0;pwned\\x07bad\\nlimefort: FAKE")
    assert privacy.printable("Ångström AB, 08-12 34") == "Ångström AB, 08-12 34"
    # A block limefort wrote keeps its own line breaks and tabs.
    assert privacy.lines_shown("a\tb\nc\x1bd") == "a\tb\nc\\x1bd"


# --- end to end ----------------------------------------------------------------------------


def _everything(lf: Lf, *args: str) -> str:
    """stdout and stderr of a pass with text logs at -v, a pass with JSON logs, `status`
    and `status --json`, as one text."""
    out = []
    for run in (("-v", *args), ("-v", "--log-format", "json", *args)):
        r = lf.run(*run)
        out += [r.out, r.err]
    for run in (("status",), ("status", "--json")):
        r = lf.run(*run)
        assert r.code == 0, r.err
        out += [r.out, r.err]
    return "\n".join(out)


def test_a_sole_traders_personnummer_is_masked_everywhere_and_sent_whole(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = empty_sandbox(make_inprocess_sandbox, tmp_path, 251)
    shared = personnummer("640823")
    invalid = shared[:-1] + str((int(shared[-1]) + 1) % 10)
    moved = personnummer("710412", "458")
    first = sb.limego.add_company(name="Anna Andersson", status="customer", business_id=shared)
    other = sb.limego.add_company(name="Bo Berg", status="customer", business_id=moved)
    r = lf.run("sync")
    assert r.code == 0, r.err
    # Shared: a second company with the first one's personnummer.
    sb.limego.add_company(name="Anna Andersson Konsult", status="customer", business_id=shared)
    # Invalid: a personnummer with a wrong check digit.
    sb.limego.add_company(name="Cecilia Carlsson", status="customer", business_id=invalid)
    # Quarantined: a linked company moved onto another customer's personnummer.
    sb.limego.update_company(other, business_id=shared)

    text = _everything(lf, "sync")
    for whole in (shared, invalid, shared.replace("-", "")):
        assert whole not in text, whole
    assert shared[:6] + "-****" in text
    data = lf.status()
    reasons = json.dumps(data["quarantined"]) + json.dumps(data["warnings"])
    assert f"company:{other}" in reasons and shared[:6] + "-****" in reasons
    assert "Anna Andersson Konsult" in reasons or "shares" in reasons
    # Fortnox holds the whole number.
    numbers = {c.get("OrganisationNumber") for c in sb.fortnox.customers}
    assert shared in numbers and moved in numbers
    assert first


def test_a_hostile_error_message_reaches_the_terminal_printable(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = empty_sandbox(make_inprocess_sandbox, tmp_path, 252)
    sb.limego.add_company(name="Åkesson AB", status="customer", business_id="556036-0793")
    hostile = "\x1b]0;pwned\x07Fel\x1b[2K\nlimefort: FAKE everything synced\u202e"
    body = {"ErrorInformation": {"error": 1, "message": hostile, "code": 2000359}}
    hits = answer_first(
        sb.fortnox, "/3/customers", 10**6, lambda req: Response(400, json.dumps(body).encode())
    )
    outputs = []
    for args in (("sync",), ("-v", "sync"), ("status",), ("--log-format", "json", "sync")):
        r = lf.run(*args)
        outputs += [r.out, r.err]
    assert hits, "the hostile answer was never sent: nothing was tested"
    text = "\n".join(outputs)
    assert "Fel" in text  # the message is shown ...
    assert not CONTROL.search(text), repr(CONTROL.search(text))  # ... but not obeyed
    assert not any(line.startswith("limefort: FAKE") for line in text.splitlines())


def test_a_value_nested_past_the_cap_quarantines_the_record_not_the_pass(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = empty_sandbox(make_inprocess_sandbox, tmp_path, 253)
    deep: Any = "Djup AB"
    for _ in range(350):
        deep = [deep]
    bad = sb.limego.add_company(name=deep, status="customer", business_id="556036-0793")
    good = sb.limego.add_company(name="Grund AB", status="customer", business_id="556074-3089")
    for _ in range(2):  # and again: the record is read again, the pass still ends cleanly
        r = lf.run("sync")
        assert r.code == 1, r.err
        assert "RecursionError" not in r.err and "internal error" not in r.err
    reason = {q["key"]: q["reason"] for q in lf.status()["quarantined"]}[f"company:{bad}"]
    assert "nested more than" in reason
    assert [c["Name"] for c in sb.fortnox.customers] == ["Grund AB"]
    assert good


def test_a_secret_from_a_file_works_and_is_never_echoed(
    make_inprocess_sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb, lf = empty_sandbox(make_inprocess_sandbox, tmp_path, 254)
    sb.limego.add_company(name="Åkesson AB", status="customer", business_id="556036-0793")
    text = lf.config.read_text(encoding="utf-8")
    secret = sb.fortnox_client_secret
    assert secret in text
    lf.write(re.sub(r"(?m)^client_secret = .*" + re.escape(secret) + r".*\n", "", text))
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "fortnox_client_secret").write_text(secret + "\n")
    # Without it the config is incomplete ...
    r = lf.run("check")
    assert r.code == 2 and "fortnox.client_secret: missing" in r.err
    # ... from LIMEFORT_<SECTION>_<KEY>_FILE, the pass runs and never shows it.
    monkeypatch.setenv(
        "LIMEFORT_FORTNOX_CLIENT_SECRET_FILE", str(secrets / "fortnox_client_secret")
    )
    r = lf.run("-vv", "sync")
    assert r.code == 0, r.err
    assert len(sb.fortnox.customers) == 1 and secret not in r.out + r.err
    # ... and as a systemd credential ($CREDENTIALS_DIRECTORY/<section>_<key>).
    monkeypatch.delenv("LIMEFORT_FORTNOX_CLIENT_SECRET_FILE")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(secrets))
    r = lf.run("-vv", "sync")
    assert r.code == 0, r.err
    # A file that is not there is named, never its content.
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    monkeypatch.setenv("LIMEFORT_FORTNOX_CLIENT_SECRET_FILE", str(secrets / "nope"))
    r = lf.run("sync")
    assert r.code == 2 and "LIMEFORT_FORTNOX_CLIENT_SECRET_FILE: no file" in r.err


def test_the_ping_url_is_shown_by_its_host_only(
    tmp_path: Path, make_inprocess_sandbox: Any
) -> None:
    sb, lf = empty_sandbox(make_inprocess_sandbox, tmp_path, 255)
    secret_path = "c0ffee00-secret-ping-path"
    lf.edit("metrics", ping_url=f'"http://hc-ping.example.com/{secret_path}"')
    r = lf.run("check")
    assert r.code == 2 and "metrics.ping_url" in r.err
    assert "hc-ping.example.com" in r.err and secret_path not in r.err
    lf.edit("metrics", ping_url="12345678")
    r = lf.run("check")
    assert r.code == 2 and "12345678" not in r.err
