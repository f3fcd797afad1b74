"""Third-party check of limefort's Fortnox side: fortpyx's models, generated from Fortnox's
OpenAPI spec. Every body limefort's mapping makes (and every body a whole pass sends) must fit
the write models with unknown fields forbidden; the one limit table must agree with the spec;
the sandbox's answers must parse with the read models where those agree with Fortnox."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import Message
from typing import Any

import annotated_types
import pytest
from fortpyx.model import model as fx

from limefort.clients.limego import parse_company, parse_deal, parse_field_def, parse_person
from limefort.core import limits
from limefort.mapping import (
    DealContext,
    Mapped,
    changed_fields,
    map_company,
    map_deal,
    update_body,
)
from limefort_sandbox import Sandbox
from limefort_sandbox.http import Request

from .fortpyx_models import (
    assert_fortnox_write_valid,
    read_model,
    read_problems,
    write_problems,
)


@pytest.fixture(scope="module")
def seeded() -> Iterator[Sandbox]:
    sb = Sandbox(seed=21, companies=120, deals=160, serve=False)
    yield sb
    sb.stop()


def contexts(sb: Sandbox) -> Iterator[DealContext]:
    lg = sb.limego
    defs = {d.key: d for d in map(parse_field_def, lg.custom_field_definitions.values())}
    for raw in lg.deals.values():
        deal = parse_deal(raw)
        company = lg.companies.get(deal.company_id or "")
        contact = lg.contacts.get(deal.contact_ids[0]) if deal.contact_ids else None
        owner = lg.owners.get(deal.owner_ids[0]) if deal.owner_ids else None
        yield DealContext(
            deal=deal,
            company=parse_company(company) if company else None,
            contact=parse_person(contact) if contact else None,
            owner=parse_person(owner) if owner else None,
            field_defs=defs,
        )


def test_every_customer_body_the_mapping_makes_fits_the_write_model(seeded: Sandbox) -> None:
    made = 0
    for raw in seeded.limego.companies.values():
        result = map_company(parse_company(raw))
        if isinstance(result, Mapped):
            assert_fortnox_write_valid("/3/customers", "POST", {"Customer": result.payload})
            made += 1
    assert made > 100


def test_every_document_body_the_mapping_makes_fits_the_write_model(seeded: Sandbox) -> None:
    made = 0
    for ctx in contexts(seeded):
        for kind, wrapper in (("invoice", "Invoice"), ("order", "Order")):
            result = map_deal(ctx, kind, article_number="LIC-1", account_number="3001")
            if isinstance(result, Mapped):
                body = {wrapper: {**result.payload, "CustomerNumber": "17"}}
                assert_fortnox_write_valid(f"/3/{kind}s", "POST", body)
                made += 1
    assert made > 200


def test_a_partial_customer_update_fits_including_api_blank(seeded: Sandbox) -> None:
    raw = next(c for c in seeded.limego.companies.values() if c["attributes"]["phone"])
    old = map_company(parse_company(raw))
    changed = dict(raw, attributes={**raw["attributes"], "phone": None, "city": "Lund"})
    new = map_company(parse_company(changed))
    assert isinstance(old, Mapped) and isinstance(new, Mapped)
    body = update_body(changed_fields(old.payload, new.payload))
    assert body["Phone1"] == "API_BLANK" and "Name" not in body
    assert_fortnox_write_valid("/3/customers/12", "PUT", {"Customer": body})


def test_the_check_catches_what_fortnox_refuses() -> None:
    ok = {"Name": "Åkesson AB", "ExternalReference": "limego:company:1"}
    assert write_problems("/3/customers", "POST", {"Customer": ok}) == []
    assert write_problems("/3/customers/1", "PUT", {"Customer": {"City": "Lund"}}) == []
    missing = write_problems("/3/customers", "POST", {"Customer": {"City": "Lund"}})
    assert missing and "Name" in missing[0]
    assert write_problems("/3/customers", "POST", {"Customer": {**ok, "Colour": "red"}}) == [
        "unknown field Customer.Colour"
    ]
    row = {"Description": "x", "Price": 1, "Discounted": True}
    got = write_problems(
        "/invoices", "POST", {"Invoice": {"CustomerNumber": "1", "InvoiceRows": [row]}}
    )
    assert got == ["unknown field Invoice.InvoiceRows[0].Discounted"]
    long_po = {"CustomerNumber": "1", "YourOrderNumber": "x" * 76}
    assert write_problems("/3/invoices", "POST", {"Invoice": long_po})
    assert (
        write_problems("/3/invoices", "POST", {"Invoice": {**long_po, "YourOrderNumber": "x" * 75}})
        == []
    )
    assert write_problems("/3/invoices/3/cancel", "PUT", None) == []
    assert write_problems("/3/articles", "POST", {"Article": {}})  # no model: not checked blind


MODELS = {
    "CUSTOMER": (fx.FortnoxCustomer,),
    "DOCUMENT": (fx.FortnoxInvoicePayload, fx.FortnoxOrder),
}


def _max_length(model: type, alias: str) -> int | None:
    for f in model.model_fields.values():
        if f.alias == alias:
            lengths = [m.max_length for m in f.metadata if isinstance(m, annotated_types.MaxLen)]
            return lengths[0] if lengths else None
    raise KeyError(f"{model.__name__} has no field {alias}")


@pytest.mark.parametrize("table", ["CUSTOMER", "DOCUMENT"])  # ROW: no spec-sourced limits
def test_the_limit_table_agrees_with_the_spec(table: str) -> None:
    """Every limit whose source is the spec's write model is the write model's length (the
    invoice model for document headers; the order model where it has one too)."""
    checked = 0
    for name, limit in getattr(limits, table).items():
        if limit.source != limits.SPEC:
            continue
        for model in MODELS[table]:
            spec = _max_length(model, name) if name in _aliases(model) else None
            if model is MODELS[table][0] or spec is not None:
                assert spec == limit.fortnox, (table, name, model.__name__, spec, limit)
                checked += 1
    assert checked >= 8


def _aliases(model: type) -> set[str]:
    return {f.alias or n for n, f in model.model_fields.items()}


def test_the_other_sources_are_what_they_say() -> None:
    assert _max_length(fx.FortnoxCustomerListItem, "OrganisationNumber") == 30
    assert _max_length(fx.FortnoxCustomer, "OrganisationNumber") is None
    assert _max_length(fx.FortnoxInvoiceInvoiceRow, "Description") == 255  # the read model
    assert _max_length(fx.FortnoxInvoicePayloadInvoiceRow, "Description") is None
    assert _max_length(fx.FortnoxArticle, "ArticleNumber") == limits.ROW["ArticleNumber"].fortnox
    assert _max_length(fx.FortnoxUnit, "Code") == limits.ROW["Unit"].fortnox


def test_a_whole_pass_sends_only_valid_bodies_and_gets_answers_the_read_models_parse(
    make_inprocess_sandbox: Any, tmp_path: Any
) -> None:
    from conftest import Lf

    sb = make_inprocess_sandbox(seed=8, companies=30, deals=40)
    lf = Lf(sb, tmp_path)
    assert lf.run("sync").code in (0, 1)
    # change some companies so the next pass sends partial PUTs
    for cid in list(sb.limego.companies)[:10]:
        sb.limego.update_company(cid, phone=None, city="Lund")
    assert lf.run("sync").code in (0, 1)
    writes = [
        r for r in sb.fortnox.requests if r.method in ("POST", "PUT") and r.path.startswith("/3/")
    ]
    assert {r.method for r in writes} == {"POST", "PUT"} and len(writes) > 20
    for r in writes:
        assert_fortnox_write_valid(r.path, r.method, r.body)

    # The answers: a customer made by hand in Fortnox (no country codes), then everything read
    # back through the sandbox and parsed with the read models.
    sb.fortnox.add_customer({"Name": "Handgjord AB"})
    token = sb.fortnox.issue_access_token()
    problems: list[str] = []
    faults: list[str] = []
    paths = ["/3/customers", "/3/invoices", "/3/orders", "/3/companyinformation"]
    paths += [f"/3/customers/{c['CustomerNumber']}" for c in sb.fortnox.customers]
    paths += [f"/3/invoices/{d['DocumentNumber']}" for d in sb.fortnox.invoices]
    for path in paths:
        headers = Message()
        headers["Authorization"] = f"Bearer {token}"
        resp = sb.fortnox.handle(Request("GET", path, {}, "", headers, b""))
        assert resp.status == 200, (path, resp.body[:200])
        model = read_model("GET", path)
        assert model is not None, path
        got, met = read_problems(model, resp.body)
        problems += [f"{path}: {p}" for p in got]
        faults += met
    assert problems == []
    assert faults  # the empty country codes of the hand-made customer: fortpyx's fault
