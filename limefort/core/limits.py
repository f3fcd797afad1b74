"""Fortnox's field length limits: the one table, each limit with its source.

`fortnox` is what Fortnox enforces on a write (None: no limit is published) and is what the
sandbox enforces; `limefort` is what limefort cuts a value to when it chooses to stay below
that (None: the same as `fortnox`). Data only: the mapping (`limefort.mapping`) and the
sandbox (`limefort_sandbox.rules`) both read it, and `tests/contract/test_fortpyx.py` checks
every limit sourced from the OpenAPI spec against fortpyx's models.
"""

from __future__ import annotations

from dataclasses import dataclass

# Sources
SPEC = "Fortnox OpenAPI spec (fortpyx 0.0.1a1 write model)"
SPEC_LIST = "Fortnox OpenAPI spec (fortpyx 0.0.1a1 list-item model; the write model has none)"
SPEC_READ = "Fortnox OpenAPI spec (fortpyx 0.0.1a1 read model; the write model has none)"
ISO = "ISO code (3166-1 alpha-2 country, 4217 currency)"


@dataclass(frozen=True)
class Limit:
    fortnox: int | None
    source: str
    limefort: int | None = None

    @property
    def cut(self) -> int | None:
        """The length limefort keeps a value within."""
        return self.limefort if self.limefort is not None else self.fortnox


def _spec(n: int | None) -> Limit:
    return Limit(n, SPEC)


CUSTOMER: dict[str, Limit] = {
    "Name": _spec(1024),
    "OrganisationNumber": Limit(30, SPEC_LIST),
    "CustomerNumber": _spec(1024),
    "ExternalReference": _spec(1024),
    "Phone1": _spec(1024),
    "Phone2": _spec(1024),
    "Fax": _spec(1024),
    "Email": _spec(1024),
    "EmailInvoice": _spec(1024),
    "EmailOrder": _spec(1024),
    "EmailOffer": _spec(1024),
    "Address1": _spec(1024),
    "Address2": _spec(1024),
    "City": _spec(1024),
    "ZipCode": _spec(10),
    "CountryCode": _spec(2),
    "DeliveryName": _spec(1024),
    "DeliveryAddress1": _spec(1024),
    "DeliveryAddress2": _spec(1024),
    "DeliveryCity": _spec(1024),
    "DeliveryZipCode": _spec(10),
    "DeliveryCountryCode": _spec(2),
    "DeliveryPhone1": _spec(1024),
    "DeliveryPhone2": _spec(1024),
    "DeliveryFax": _spec(1024),
    "VisitingAddress": _spec(128),
    "VisitingZipCode": _spec(10),
    "VisitingCity": _spec(128),
    "VisitingCountryCode": _spec(2),
    "YourReference": _spec(50),
    "OurReference": _spec(50),
    "Comments": _spec(1024),
    "InvoiceRemark": _spec(1024),
    "WWW": _spec(128),
    "Currency": _spec(3),
    # No length in the spec for these; the sandbox enforces none.
    "CostCenter": _spec(None),
    "Project": _spec(None),
    "TermsOfPayment": _spec(None),
    "VATNumber": _spec(None),
}

# Invoice and order header fields (the invoice write model; the order model agrees where it
# has a limit, and has none for the rest).
DOCUMENT: dict[str, Limit] = {
    "YourReference": _spec(50),
    "OurReference": _spec(50),
    # The sources disagree: the OpenAPI spec says 75, Fortnox support's answer quoted in
    # accodeing/fortnox-api#66 says 30. limefort keeps to the lower, so either is satisfied
    # (what was cut is said, as every cut value is).
    "YourOrderNumber": Limit(75, SPEC, limefort=30),
    "Remarks": _spec(1024),
    "Comments": _spec(1024),
    "ExternalInvoiceReference1": _spec(80),
    "ExternalInvoiceReference2": _spec(80),
    "Currency": Limit(3, ISO),
    "City": _spec(1024),
    "ZipCode": _spec(1024),
    "Address1": _spec(None),
    "Address2": _spec(None),
    "CustomerName": _spec(None),
}

# How many text rows (rows with only a Description) limefort adds to a document for the part of
# Remarks that does not fit its 1024 characters. Fortnox publishes no limit on rows; this is
# limefort's own bound, so that a runaway custom field cannot make a document of pages.
MAX_TEXT_ROWS = 20

ROW: dict[str, Limit] = {
    # No limit on write; the invoice read model holds 255, so limefort stays within it and
    # what it wrote reads back whole.
    "Description": Limit(None, SPEC_READ, limefort=255),
    "ArticleNumber": Limit(50, "Fortnox OpenAPI spec (fortpyx 0.0.1a1 article model, 50)"),
    "Unit": Limit(20, "Fortnox OpenAPI spec (fortpyx 0.0.1a1 unit model: Code, 20)"),
    "AccountNumber": Limit(4, "a Fortnox bookkeeping account: 4 digits (spec: 1000..9999)"),
}
