"""`limefort check` against the sandbox servers: what it reports, its exit codes, when it
takes the run lock, and that it never prints a secret."""

from __future__ import annotations

import os

import pytest
from conftest import Lf
from test_auth import set_key, stored, use_refresh_token

from limefort.state.lock import RunLock
from limefort_sandbox import FaultRule, Sandbox


def lines(text: str, mark: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(mark)]


def assert_no_secret(sb: Sandbox, *texts: str) -> None:
    for secret in (sb.fortnox_client_secret, sb.limego_client_secret):
        for text in texts:
            assert secret not in text


def test_all_ok(lf: Lf, sandbox: Sandbox) -> None:
    r = lf.run("check")
    assert r.code == 0, r.out + r.err
    assert not lines(r.out, "✗") and not lines(r.out, "!")
    assert f"✓ config: {lf.config}" in r.out
    assert "will be created" in r.out or "first pass creates it" in r.out
    assert '"Vunnen" (category won)' in r.out
    assert "Sandlåda AB" in r.out and sandbox.fortnox_tenant_id in r.out
    assert "customers readable" in r.out and "invoices" in r.out
    for scope in ("companies:read", "deals:read", "contacts:read", "reference:read"):
        assert scope in r.out
    assert r.out.rstrip().endswith("All checks passed.")
    assert_no_secret(sandbox, r.out, r.err)
    # A check in service-account mode changes nothing: no state file appears.
    assert not lf.state.exists()
    assert sandbox.fortnox.count(method="POST") == sandbox.fortnox.count(method="PUT") == 0


def test_state_file_mode_is_reported(lf: Lf) -> None:
    assert lf.run("sync").code in (0, 1)
    r = lf.run("check")
    assert f"✓ state file: {lf.state} (mode 0600)" in r.out
    os.chmod(lf.state, 0o644)
    r = lf.run("check")
    assert r.code == 0
    (warning,) = lines(r.out, "! state file")
    assert "0644" in warning and "0600" in warning


def test_missing_invoice_licence(lf: Lf, sandbox: Sandbox) -> None:
    sandbox.fortnox.licences.discard("invoice")
    r = lf.run("check")
    assert r.code == 1
    (fail,) = lines(r.out, "✗")
    assert "invoice" in fail and "no licence for the 'invoice' module" in fail
    assert "2001101" in fail
    assert r.out.rstrip().endswith("1 check failed.")


def test_order_target_probes_orders(lf: Lf, sandbox: Sandbox) -> None:
    set_key(lf, "sync", "deal_target", '"order"')
    sandbox.fortnox.licences.discard("invoice")  # not needed when deal_target is order
    r = lf.run("check")
    assert r.code == 0, r.out
    assert "orders" in r.out
    assert any(req.path == "/3/orders" for req in sandbox.fortnox.requests)
    assert not any(req.path == "/3/invoices" for req in sandbox.fortnox.requests)

    sandbox.fortnox.licences.discard("order")
    r = lf.run("check")
    assert r.code == 1
    assert "no licence for the 'order' module" in lines(r.out, "✗")[0]


def test_missing_scope(lf: Lf, sandbox: Sandbox) -> None:
    # The service account was consented without the invoice scope.
    sandbox.fortnox.service_scopes.discard("invoice")
    r = lf.run("check")
    assert r.code == 1
    (fail,) = lines(r.out, "✗")
    assert "not authorised for the 'invoice' scope" in fail and "2000663" in fail


def test_wrong_fortnox_client_secret_exits_3(
    lf: Lf, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIMEFORT_FORTNOX_CLIENT_SECRET", "not-the-secret-at-all")
    r = lf.run("check")
    assert r.code == 3
    (fail,) = lines(r.out, "✗")
    assert fail.startswith("✗ Fortnox:") and "client_secret" in fail
    assert "not-the-secret-at-all" not in r.out + r.err
    assert "a credential was rejected" in r.out
    # Lime Go was still checked.
    assert '"Vunnen"' in r.out


def test_wrong_limego_client_secret_exits_3(
    lf: Lf, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIMEFORT_LIMEGO_CLIENT_SECRET", "wrong-lime-go-secret")
    r = lf.run("check")
    assert r.code == 3
    (fail,) = lines(r.out, "✗")
    assert fail.startswith("✗ Lime Go:") and "client_secret" in fail
    assert "Sandlåda AB" in r.out  # Fortnox was still checked


def test_no_stage_counts_as_won(lf: Lf) -> None:
    lf.edit("limego", won_stage_categories=[], won_stage_names=["Hemligt vunnen"])
    r = lf.run("check")
    assert r.code == 1
    (fail,) = lines(r.out, "✗ won stages")
    assert "Hemligt vunnen" in fail and '"Vunnen" (won)' in fail


def test_won_stage_by_name(lf: Lf) -> None:
    lf.edit("limego", won_stage_categories=[], won_stage_names=["vunnen", "Finns inte"])
    r = lf.run("check")
    assert r.code == 0, r.out
    assert '✓ won stages: "Vunnen" (category won), by won_stage_names' in r.out
    (warning,) = lines(r.out, "! won stages")
    assert "Finns inte" in warning


def test_unreachable_fortnox_is_a_failure_not_an_auth_error(lf: Lf, sandbox: Sandbox) -> None:
    sandbox.fortnox.faults.add(FaultRule("503"))
    r = lf.run("check")
    assert r.code == 1
    assert lines(r.out, "✗ Fortnox: not reachable")


def test_refresh_token_mode_reports_age_and_takes_the_lock(lf: Lf, sandbox: Sandbox) -> None:
    use_refresh_token(lf, sandbox.fortnox.issue_refresh_token())
    # No state file yet: the check creates it, to keep the token it rotates.
    r = lf.run("check")
    assert r.code == 0, r.out
    assert "created" in r.out
    (age,) = lines(r.out, "✓ Fortnox refresh token")
    assert "of 45 left" in age and "rotated just now" in age
    record = stored(lf)
    assert record and record.refresh_token and record.refresh_token not in r.out + r.err

    # Run again: the stored access token is still valid, nothing is rotated.
    r = lf.run("check")
    assert r.code == 0
    assert "rotated just now" not in r.out
    assert stored(lf) == record

    # While a pass holds the lock, Fortnox is not touched (it could rotate the token).
    sandbox.fortnox.reset_log()
    with RunLock(lf.state):
        r = lf.run("check")
    assert r.code == 75
    assert lines(r.out, "! Fortnox: not checked") and '"Vunnen"' in r.out
    assert sandbox.fortnox.requests == []


def test_service_account_check_does_not_take_the_lock(lf: Lf) -> None:
    assert lf.run("sync").code in (0, 1)
    with RunLock(lf.state):
        r = lf.run("check")
    assert r.code == 0, r.out


def test_refresh_token_missing(lf: Lf) -> None:
    use_refresh_token(lf)
    r = lf.run("check")
    assert r.code == 3
    (fail,) = lines(r.out, "✗")
    assert "limefort auth fortnox" in fail
    assert not lf.state.exists()


@pytest.mark.http
def test_plain_marks_without_a_unicode_terminal(lf: Lf, sandbox: Sandbox) -> None:
    proc = lf.spawn("check", env={"PYTHONIOENCODING": "ascii:replace"})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert out.startswith("OK   config:")
    assert "OK   won stages:" in out and "Sandl" in out  # names with å print, never crash


# --- the assumption report (issue 15) ------------------------------------------------------------


def test_the_assumption_report(lf: Lf, sandbox: Sandbox) -> None:
    r = lf.run("check")
    assert r.code == 0, r.out + r.err
    (stages,) = [line for line in r.out.splitlines() if "stages found:" in line]
    found = stages.split("stages found: ")[1]
    by_category = dict(part.split(": ", 1) for part in found.split("; "))
    assert set(by_category) == {"open", "won", "lost"}
    assert set(by_category["open"].split(", ")) == {
        '"Kontakt"',
        '"Behov"',
        '"Offert"',
        '"Förhandling"',
    }
    assert by_category["won"] == '"Vunnen" (won)' and by_category["lost"] == '"Förlorad"'
    (fields,) = [line for line in r.out.splitlines() if "company custom fields" in line]
    for key in ("visiting_street", "visiting_postal_code", "visiting_city", "industry"):
        assert f"{key} " in fields
    assert "po_number" not in fields  # a deal field
    (visiting,) = lines(r.out, "✓ visiting address")
    assert "custom_fields.visiting_street -> DeliveryAddress1" in visiting
    assert "all found" in visiting


def test_the_report_names_stages_counted_as_won_by_name(lf: Lf) -> None:
    text = lf.config.read_text(encoding="utf-8")
    lf.write(text.replace("[limego]\n", '[limego]\nwon_stage_names = ["Förhandling"]\n', 1))
    r = lf.run("check")
    (stages,) = [line for line in r.out.splitlines() if "stages found:" in line]
    assert '"Förhandling" (won)' in stages and '"Vunnen" (won)' in stages


def test_a_visiting_address_key_the_account_lacks_is_a_warning(lf: Lf) -> None:
    lf.write(
        lf.config.read_text(encoding="utf-8")
        + '\n[mapping.customer]\nDeliveryCity = "custom_fields.besoksort"\n'
        + 'WWW = "custom_fields.hemsida"\n'
    )
    r = lf.run("check")
    assert r.code == 0, r.out + r.err
    (warning,) = lines(r.out, "! visiting address")
    assert "besoksort (for DeliveryCity)" in warning
    (other,) = lines(r.out, "! mapping")
    assert "hemsida (for WWW)" in other


def test_unknown_customer_status_stops_check_at_load_naming_the_key(
    lf: Lf, sandbox: Sandbox
) -> None:
    lf.edit("limego", customer_statuses=["customer", "kund"])
    sandbox.limego.reset_log()
    sandbox.fortnox.reset_log()
    r = lf.run("check")
    assert r.code == 2, r.out + r.err
    assert r.err.strip().splitlines() == [
        "limefort: limego.customer_statuses: 'kund' is not a Lime Go company status "
        "(known: lead, prospect, customer, churned, inactive, unknown)"
    ]
    assert r.out == ""
    assert sandbox.limego.requests == [] and sandbox.fortnox.requests == []


def test_check_names_the_absolute_state_path_of_a_relative_one(lf: Lf) -> None:
    text = lf.config.read_text(encoding="utf-8").replace(str(lf.state), "sub/../limefort.db")
    lf.write(text)
    r = lf.run("check")
    assert r.code == 0, r.out + r.err
    assert f"state file: {lf.dir / 'limefort.db'} " in r.out, r.out


def test_a_refused_refresh_token_is_one_line_not_also_good_for_days(
    lf: Lf, sandbox: Sandbox
) -> None:
    """Issue 24: one thing per credential. A refresh token Fortnox refuses is said once; no
    "45 days left" beside it."""
    use_refresh_token(lf, sandbox.fortnox.issue_refresh_token())
    assert lf.run("check").code == 0
    sandbox.fortnox.expire_access_tokens()
    sandbox.fortnox.refresh_token_lifetime = 0  # every refresh token is now spent
    r = lf.run("check")
    assert r.code == 3, r.out
    assert [x for x in r.out.splitlines() if "refresh token" in x.lower()], r.out
    assert not lines(r.out, "✓ Fortnox refresh token"), r.out
    assert "left" not in r.out, r.out
