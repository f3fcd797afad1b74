"""Third-party check of the sandbox Lime Go: `qls-lime-go-agentic` (a typed SDK built from
Lime's OpenAPI spec v1.0.0 and verified against the live service) reads every resource
limefort reads, over loopback HTTP, and its models must parse every answer with nothing
left over: no validation error and no attribute, relationship or meta key the models do not
know (the models allow extras, so a sandbox-invented field would otherwise pass unseen).

The SDK takes any base URL (`Config(base_url=...)`): plain http to 127.0.0.1 is fine for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import lime_go_agentic as sdk
import pytest
from pydantic import BaseModel, ValidationError

from limefort_sandbox import Sandbox

READ_SCOPES = ("companies:read", "deals:read", "contacts:read", "reference:read", "changes:read")


def leftovers(obj: Any, where: str) -> list[str]:
    """Every key a model accepted only as an extra, anywhere inside `obj`."""
    out: list[str] = []
    if isinstance(obj, BaseModel):
        for key in obj.model_extra or {}:
            out.append(f"{where}.{key}")
        for name in type(obj).model_fields:
            out += leftovers(getattr(obj, name), f"{where}.{name}")
    elif isinstance(obj, list | tuple):
        for i, item in enumerate(obj):
            out += leftovers(item, f"{where}[{i}]")
    return out


class Checked:
    """Collects incompatibilities instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.parsed = 0

    def models(self, items: Any, where: str) -> None:
        for i, item in enumerate(items):
            self.parsed += 1
            self.problems += leftovers(item, f"{where}[{i}]")

    def call(self, where: str, fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except (ValidationError, sdk.LimeGoError) as exc:
            self.problems.append(f"{where}: {type(exc).__name__}: {exc}")
            return None


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(seed=4, companies=23, deals=31, contacts=27, owners=3) as box:
        yield box


@pytest.fixture
def lime(sb: Sandbox) -> Iterator[sdk.LimeGoClient]:
    config = sdk.Config(
        client_id=sb.limego_client_id,
        client_secret=sb.limego_client_secret,
        base_url=sb.limego_url,
        scopes=READ_SCOPES,
        max_retries=0,
    )
    with sdk.LimeGoClient(config) as client:
        yield client


def all_pages(resource: Any, check: Checked, name: str, **kw: Any) -> list[Any]:
    """Every page through the SDK's own paging (`list` then `next_page`)."""
    items: list[Any] = []
    page = check.call(f"{name} list", resource.list, **kw)
    n = 0
    while page is not None:
        check.models(page.data, f"{name} page {n}")
        check.models(page.included, f"{name} page {n} included")
        items += page.data
        page = check.call(f"{name} next_page", resource.next_page, page)
        n += 1
    return items


def test_the_sdk_reads_every_resource_and_parses_every_answer(
    sb: Sandbox, lime: sdk.LimeGoClient
) -> None:
    check = Checked()
    companies = all_pages(lime.companies, check, "companies", page_size=5, include=["owner"])
    assert len(companies) == len(sb.limego.companies)
    assert all(isinstance(c, sdk.Company) and c.etag for c in companies)

    deals = all_pages(lime.deals, check, "deals", page_size=7, include=["company", "stage"])
    assert len(deals) == len(sb.limego.deals)
    assert all(d.attributes.value is not None for d in deals)  # decimal strings parse

    contacts = all_pages(
        lime.contacts, check, "contacts", page_size=10, include=["company"], sort="-id"
    )
    assert len(contacts) == len(sb.limego.contacts)

    stages = all_pages(lime.stages, check, "stages", page_size=2)
    assert {s.attributes.category for s in stages} == {"open", "won", "lost"}
    owners = all_pages(lime.owners, check, "owners", page_size=2)
    assert len(owners) == 3 and all(o.etag is None for o in owners)  # owners: no revision
    defs = all_pages(lime.custom_field_definitions, check, "definitions", page_size=3)
    assert {d.attributes.entity_type for d in defs} == {"companies", "deals"}

    # Single GETs carry the ETag the SDK reads for later writes.
    one = check.call("get company", lime.companies.get, companies[0].id)
    assert one is not None and one.etag == f'"{one.id}:{one.revision}"'
    for resource, item in (
        (lime.deals, deals[0]),
        (lime.contacts, contacts[0]),
        (lime.stages, stages[0]),
        (lime.owners, owners[0]),
        (lime.custom_field_definitions, defs[0]),
    ):
        got = check.call(f"get {item.type}", resource.get, item.id)
        check.models([got], f"get {item.type}")
    assert check.problems == []
    assert check.parsed > 100


def test_the_sdk_filters_are_accepted(sb: Sandbox, lime: sdk.LimeGoClient) -> None:
    check = Checked()
    since = datetime.now(UTC) - timedelta(days=3650)
    for name, resource, filters in (
        ("companies", lime.companies, {"status": "customer", "updated_since": since}),
        ("companies", lime.companies, {"name": "AB"}),
        ("deals", lime.deals, {"name": "a", "updated_since": since}),
        ("contacts", lime.contacts, {"status": "active", "updated_since": since}),
        ("stages", lime.stages, {"name": "Vunnen", "updated_since": since}),
        ("definitions", lime.custom_field_definitions, {"updated_since": since}),
    ):
        got = all_pages(resource, check, f"{name} {sorted(filters)}", filter=filters)
        assert got, (name, filters)
    assert check.problems == []


def test_the_change_feed(sb: Sandbox, lime: sdk.LimeGoClient) -> None:
    check = Checked()
    checkpoint = check.call("changes", lime.changes.read)
    assert checkpoint is not None and checkpoint.checkpoint and checkpoint.data == []
    company = next(iter(sb.limego.companies))
    sb.limego.update_company(company, phone="08-123 45 67")
    new = sb.limego.add_deal(company_id=company, name="Ny affär", value="1000.00")
    for _ in range(120):  # more than a page of changes
        sb.limego.update_deal(new, probability=50)
    sb.limego.delete_deal(new)
    pages = check.call("changes", lambda: list(lime.changes.iter_pages(checkpoint.cursor)))
    assert pages is not None and len(pages) == 2
    changes = [c for p in pages for c in p.data]
    check.models(changes, "changes")
    assert len(changes) == 123
    assert changes[0].attributes.resource_type == "companies"
    assert changes[-1].attributes.deleted and changes[-1].attributes.revision == "122"
    assert check.problems == []


def test_406_is_what_the_sdk_expects(sb: Sandbox, lime: sdk.LimeGoClient) -> None:
    with pytest.raises(sdk.NotAcceptableError) as err:
        lime.request("GET", "/api/v1/stages", headers={"Accept": "application/json"})
    assert err.value.code == "not_acceptable"
