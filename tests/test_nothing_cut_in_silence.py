"""Issue 23: what a Swedish bookkeeper can book. Every value limefort shortens, cleans away,
drops or leaves blank stays on the record in `status` (key, field, what Lime Go holds, what
Fortnox got) until the record changes, and is counted in the metrics; an unknown country and
an amount with more than two decimals are held back with their reasons; customers abroad get
the VAT type the user chose, and are named until one is chosen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import Lf, empty_sandbox, valid_orgnrs
from prometheus_client.parser import text_string_to_metric_families

from limefort.core.keys import document_ref
from limefort_sandbox import Sandbox

ORGNR = valid_orgnrs(7300)


def customer(sb: Sandbox, name: str, **attrs: Any) -> str:
    attrs.setdefault("business_id", next(ORGNR))
    return sb.limego.add_company(name=name, status="customer", **attrs)


def fortnox_customer(sb: Sandbox, cid: str) -> dict[str, Any]:
    [found] = [c for c in sb.fortnox.customers if c["ExternalReference"] == f"limego:company:{cid}"]
    return found


def by_key(lf: Lf) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for w in lf.status()["warnings"]:
        out.setdefault(w["key"], []).append(w)
    return out


def gauge(prom: Path, name: str) -> float:
    for fam in text_string_to_metric_families(prom.read_text(encoding="utf-8")):
        for s in fam.samples:
            if s.name == name:
                return float(s.value)
    raise AssertionError(f"{name} not written")


def warning_records(prom: Path) -> float:
    return gauge(prom, "limefort_warning_records")


def test_cut_and_blank_values_stay_on_their_records_until_the_record_changes(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = empty_sandbox(make_inprocess_sandbox, tmp_path, 71)
    prom = tmp_path / "limefort.prom"
    lf.edit("metrics", textfile=str(prom))
    street = "Långgatan " + "1" * 1096  # 1 106 characters; Fortnox's Address1 holds 1 024
    long_street = customer(sb, "Lång Adress AB", street=street)
    emoji = customer(sb, "🚀🚀🚀 AB")
    german = customer(sb, "Tysk Kund GmbH", country="Deutschland")
    buyer = customer(sb, "Referens AB")
    gone = sb.limego.add_contact(buyer, first_name="Greta", last_name="Borttagen")
    deal = sb.limego.add_deal(
        company_id=buyer, stage="won", name="Affär", value="500", contact_ids=[gone]
    )
    sb.limego.delete_contact(gone)

    r = lf.run("sync")
    assert r.code == 0, r.err
    said = by_key(lf)

    [cut] = said[f"company:{long_street}"]
    assert cut["field"] == "Address1" and "cut to 1024 characters (was 1106)" in cut["text"]
    assert cut["held"].startswith("Långgatan 111") and "(1106 characters)" in cut["held"]
    assert "(1024 characters)" in cut["sent"]
    assert len(fortnox_customer(sb, long_street)["Address1"]) == 1024

    [name] = said[f"company:{emoji}"]
    assert (name["field"], name["held"], name["sent"]) == ("Name", "🚀🚀🚀 AB", "AB")

    [vat] = said[f"company:{german}"]
    assert vat["field"] == "VATType" and vat["held"] == "DE" and vat["sent"] is None
    assert "Fortnox applies Swedish VAT" in vat["text"]
    assert fortnox_customer(sb, german)["CountryCode"] == "DE"

    [blank] = said[f"deal:{deal}"]
    assert blank["field"] == "YourReference" and gone in blank["held"] and blank["sent"] is None
    assert "left blank" in blank["text"]
    [invoice] = sb.fortnox.documents_by_ref(document_ref(deal))
    assert not invoice.get("YourReference")
    assert warning_records(prom) == 4
    assert "Warnings:    4" in lf.run("status").out
    # A pass with nothing to do never says "in line" while Fortnox holds a value cut.
    idle = lf.run("sync")
    assert idle.code == 0 and "in line" not in idle.err + idle.out
    assert "4 records in Fortnox with a value cut or left blank" in idle.err + idle.out

    # The street is fixed in Lime Go and the VAT type chosen: those warnings go, the others stay.
    sb.limego.update_company(long_street, street="Långgatan 1")
    lf.edit("mapping.vat_type", eu="EUREVERSEDVAT")
    lf.write(lf.config.read_text(encoding="utf-8") + '\n[mapping.countries]\n"Tyskl." = "DE"\n')
    sb.limego.update_company(german, country="Tyskl.")  # a house spelling, mapped in the config
    r = lf.run("sync")
    assert r.code == 0, r.err
    said = by_key(lf)
    assert f"company:{long_street}" not in said and f"company:{german}" not in said
    assert set(said) == {f"company:{emoji}", f"deal:{deal}"}
    assert fortnox_customer(sb, german)["VATType"] == "EUREVERSEDVAT"
    assert fortnox_customer(sb, long_street)["Address1"] == "Långgatan 1"
    assert warning_records(prom) == 2


def test_an_unknown_country_and_a_third_decimal_are_held_back(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb, lf = empty_sandbox(make_inprocess_sandbox, tmp_path, 72)
    prom = tmp_path / "limefort.prom"
    lf.edit("metrics", textfile=str(prom))
    nowhere = customer(sb, "Atlantis Handel AB", country="Atlantis")
    fine = customer(sb, "Vanlig Kund AB", country="Sverige")
    third = sb.limego.add_deal(company_id=fine, stage="won", name="Öre", value="100.005")
    trailing = sb.limego.add_deal(company_id=fine, stage="won", name="Nollor", value="100.500")

    r = lf.run("sync")
    assert r.code == 1
    quarantined = {q["key"]: q for q in lf.status()["quarantined"]}
    assert set(quarantined) == {f"company:{nowhere}", f"deal:{third}"}
    assert gauge(prom, "limefort_quarantined_records") == 2
    assert (
        "'Atlantis' is not a country Fortnox knows" in quarantined[f"company:{nowhere}"]["reason"]
    )
    assert "[mapping.countries]" in quarantined[f"company:{nowhere}"]["hint"]
    assert "more than 2 decimals" in quarantined[f"deal:{third}"]["reason"]
    assert not [c for c in sb.fortnox.customers if c["Name"] == "Atlantis Handel AB"]
    assert not sb.fortnox.documents_by_ref(document_ref(third))
    [kept] = sb.fortnox.documents_by_ref(document_ref(trailing))
    assert str(kept["InvoiceRows"][0]["Price"]) in ("100.5", "100.50", "100.500")

    # The house spelling goes into the config; `retry` sends the company with its code.
    lf.edit("mapping.countries", Atlantis="GR")
    assert lf.run("retry", f"company:{nowhere}").code in (0, 1)
    assert fortnox_customer(sb, nowhere)["CountryCode"] == "GR"
    assert gauge(prom, "limefort_quarantined_records") == 1  # the third decimal is still held


def test_country_and_vat_type_tables_are_checked_in_the_config(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    sb: Sandbox = make_inprocess_sandbox(seed=73, companies=0, deals=0)
    lf = Lf(sb, tmp_path)
    lf.edit("mapping.countries", Atlantis="XX", Tyskl="DE")
    lf.edit("mapping.vat_type", eu="EXPORT", mars="SEVAT")
    r = lf.run("sync")
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert any(ln.startswith("limefort: mapping.countries.Atlantis:") for ln in lines), r.err
    assert any(
        "mapping.vat_type.eu: expected one of EUREVERSEDVAT, EUVAT, SEVAT" in ln for ln in lines
    )
    assert any("mapping.vat_type.mars: unknown zone" in ln for ln in lines), r.err
    assert not any("Tyskl" in ln for ln in lines)
