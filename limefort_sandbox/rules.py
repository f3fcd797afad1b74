"""Fortnox's validation rules, as the sandbox enforces them.

Field lengths come from the one table `limefort.core.limits` (each with its source).
`DELETE /3/customers/{n}` answers 204 with no body (Fortnox's "responses" page).

Error codes: the ones marked "real" are Fortnox's own (developer.fortnox.se, "Errors"); the
2009xxx ones are the sandbox's own choice, for rules whose real code is not published. A
client must not treat a 2009xxx code as meaningful beyond "a 400 validation error".

| code    | status | when                                                         | source  |
|---------|--------|--------------------------------------------------------------|---------|
| 1000003 | 500    | system exception (also the "500" fault)                      | real    |
| 1000031 | 400    | POST/PUT body sent with a Content-Type other than JSON       | real    |
| 2000106 | 400    | CustomerNumber with characters other than A-Z a-z 0-9 - + / _| real    |
| 2000108 | 400    | Price/quantity/VAT/Discount not numeric (Price as a string)  | real    |
| 2000134 | 400    | a boolean field (Active, VATIncluded, ...) is not true/false | real    |
| 2000311 | 401    | no, invalid or expired bearer token                          | real    |
| 2000359 | 400    | characters outside Fortnox's set (see `bad_character`)       | real    |
| 2000423 | 400    | row without article/account and no default account; bad      | real    |
|         |        | AccountNumber (not 4 digits)                                 |         |
| 2000433 | 404    | GET/PUT of a customer that does not exist                    | real    |
| 2000433 | 400    | invoice/order for a CustomerNumber that does not exist       | real    |
| 2000588 | 400    | bad query parameter (unknown, repeated, limit > 500, bad     | real    |
|         |        | lastmodified/fromdate/todate/page/offset/filter/sortby)      |         |
| 2000637 | 400    | the CustomerNumber given on create is already used           | real    |
| 2000663 | 403    | the token lacks the scope (customer, invoice, ...)           | real    |
| 2001101 | 400    | the company lacks the licence for that scope                 | real    |
| 2001103 | 400    | the company has no API licence (`api_licence = False`)       | real    |
| 2001392 | 400    | empty body, or not {"Customer": {...}} / {"Invoice": ...}    | real    |
| 2001399 | 400    | unknown or read-only field name                              | real    |
| 2002115 | 400    | body is not valid JSON                                       | real    |
| 2009001 | 400    | required field missing (Name, CustomerNumber on a document)  | sandbox |
| 2009002 | 400    | value too long (the message names the field and the limit)   | sandbox |
| 2009003 | 400    | CountryCode/DeliveryCountryCode/VisitingCountryCode invalid  | sandbox |
| 2009004 | 400    | Email/EmailInvoice not an e-mail address                     | sandbox |
| 2009005 | 400    | OrganisationNumber not NNNNNN-NNNN with a valid check digit  | sandbox |
| 2009006 | 400    | a date not YYYY-MM-DD                                        | sandbox |
| 2009007 | 400    | Currency not an ISO 4217 code                                | sandbox |
| 2009008 | 400    | a value of the wrong type or not one of the allowed values   | sandbox |
| 2009009 | 400    | an order without rows                                        | sandbox |
| 2009010 | 404    | invoice/order not found                                      | sandbox |
| 2009011 | 404    | no such resource (unknown route or method)                   | sandbox |
| 2009012 | 400    | cancel/update of a booked invoice (assumed: Fortnox publishes| sandbox |
|         |        | no code for it; a client must not rely on the number)        |         |
| 2009013 | 400    | cancel/update of a cancelled document                        | sandbox |
| 2009014 | 429    | more than the rate limit in the sliding window               | sandbox |
| 2009016 | 503    | service unavailable (the "503" fault)                        | sandbox |
| 2009019 | 400    | PUT trying to change a customer's CustomerNumber             | sandbox |
| 2009020 | 400    | a row on an account that demands a cost centre, without one  | sandbox |
|         |        | ("Kostnadsställe måste anges": softwerkab SDK issue #158)     |         |
| 2009021 | 404    | a predefined account the company has not set (SALES)         | sandbox |
| 2009022 | 404    | a currency not in the company's currency register            | sandbox |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from stdnum import luhn

from limefort.core import limits
from limefort.core.limits import Limit

# --- codes ---------------------------------------------------------------------------------
SYSTEM_EXCEPTION = 1000003
INVALID_CONTENT_TYPE = 1000031
NOT_ALPHANUMERIC = 2000106
NOT_NUMERIC = 2000108
NOT_BOOLEAN = 2000134
INVALID_LOGIN = 2000311
INVALID_CHARACTERS = 2000359
ACCOUNT_NOT_FOUND = 2000423
CUSTOMER_NOT_FOUND = 2000433
INVALID_PARAMETER = 2000588
CUSTOMER_NUMBER_USED = 2000637
NO_SCOPE = 2000663
NO_LICENCE = 2001101
NO_API_LICENCE = 2001103
EMPTY_BODY = 2001392
INVALID_FIELD_NAME = 2001399
JSON_SYNTAX = 2002115
REQUIRED = 2009001
TOO_LONG = 2009002
INVALID_COUNTRY = 2009003
INVALID_EMAIL = 2009004
INVALID_ORGNR = 2009005
INVALID_DATE = 2009006
INVALID_CURRENCY = 2009007
INVALID_VALUE = 2009008
ORDER_WITHOUT_ROWS = 2009009
DOCUMENT_NOT_FOUND = 2009010
NO_SUCH_RESOURCE = 2009011
DOCUMENT_BOOKED = 2009012
DOCUMENT_CANCELLED = 2009013
RATE_LIMITED = 2009014
UNAVAILABLE = 2009016
CUSTOMER_NUMBER_CHANGE = 2009019
COST_CENTRE_REQUIRED = 2009020
PREDEFINED_NOT_SET = 2009021
CURRENCY_NOT_FOUND = 2009022


class FortnoxError(ValueError):
    def __init__(self, code: int, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    def body(self, capitalised: bool = False) -> dict[str, Any]:
        if capitalised:  # Fortnox sometimes answers with capitalised keys
            return {"ErrorInformation": {"Error": 1, "Message": self.message, "Code": self.code}}
        return {"ErrorInformation": {"error": 1, "message": self.message, "code": self.code}}


# --- reference lists -------------------------------------------------------------------------
COUNTRY_CODES = frozenset(
    [
        "AD",
        "AE",
        "AF",
        "AG",
        "AI",
        "AL",
        "AM",
        "AO",
        "AQ",
        "AR",
        "AS",
        "AT",
        "AU",
        "AW",
        "AX",
        "AZ",
        "BA",
        "BB",
        "BD",
        "BE",
        "BF",
        "BG",
        "BH",
        "BI",
        "BJ",
        "BL",
        "BM",
        "BN",
        "BO",
        "BQ",
        "BR",
        "BS",
        "BT",
        "BV",
        "BW",
        "BY",
        "BZ",
        "CA",
        "CC",
        "CD",
        "CF",
        "CG",
        "CH",
        "CI",
        "CK",
        "CL",
        "CM",
        "CN",
        "CO",
        "CR",
        "CU",
        "CV",
        "CW",
        "CX",
        "CY",
        "CZ",
        "DE",
        "DJ",
        "DK",
        "DM",
        "DO",
        "DZ",
        "EC",
        "EE",
        "EG",
        "EH",
        "ER",
        "ES",
        "ET",
        "FI",
        "FJ",
        "FK",
        "FM",
        "FO",
        "FR",
        "GA",
        "GB",
        "GD",
        "GE",
        "GF",
        "GG",
        "GH",
        "GI",
        "GL",
        "GM",
        "GN",
        "GP",
        "GQ",
        "GR",
        "GS",
        "GT",
        "GU",
        "GW",
        "GY",
        "HK",
        "HM",
        "HN",
        "HR",
        "HT",
        "HU",
        "ID",
        "IE",
        "IL",
        "IM",
        "IN",
        "IO",
        "IQ",
        "IR",
        "IS",
        "IT",
        "JE",
        "JM",
        "JO",
        "JP",
        "KE",
        "KG",
        "KH",
        "KI",
        "KM",
        "KN",
        "KP",
        "KR",
        "KW",
        "KY",
        "KZ",
        "LA",
        "LB",
        "LC",
        "LI",
        "LK",
        "LR",
        "LS",
        "LT",
        "LU",
        "LV",
        "LY",
        "MA",
        "MC",
        "MD",
        "ME",
        "MF",
        "MG",
        "MH",
        "MK",
        "ML",
        "MM",
        "MN",
        "MO",
        "MP",
        "MQ",
        "MR",
        "MS",
        "MT",
        "MU",
        "MV",
        "MW",
        "MX",
        "MY",
        "MZ",
        "NA",
        "NC",
        "NE",
        "NF",
        "NG",
        "NI",
        "NL",
        "NO",
        "NP",
        "NR",
        "NU",
        "NZ",
        "OM",
        "PA",
        "PE",
        "PF",
        "PG",
        "PH",
        "PK",
        "PL",
        "PM",
        "PN",
        "PR",
        "PS",
        "PT",
        "PW",
        "PY",
        "QA",
        "RE",
        "RO",
        "RS",
        "RU",
        "RW",
        "SA",
        "SB",
        "SC",
        "SD",
        "SE",
        "SG",
        "SH",
        "SI",
        "SJ",
        "SK",
        "SL",
        "SM",
        "SN",
        "SO",
        "SR",
        "SS",
        "ST",
        "SV",
        "SX",
        "SY",
        "SZ",
        "TC",
        "TD",
        "TF",
        "TG",
        "TH",
        "TJ",
        "TK",
        "TL",
        "TM",
        "TN",
        "TO",
        "TR",
        "TT",
        "TV",
        "TW",
        "TZ",
        "UA",
        "UG",
        "UM",
        "US",
        "UY",
        "UZ",
        "VA",
        "VC",
        "VE",
        "VG",
        "VI",
        "VN",
        "VU",
        "WF",
        "WS",
        "YE",
        "YT",
        "ZA",
        "ZM",
        "ZW",
    ]
)
COUNTRY_NAMES_SV = {
    "SE": "Sverige",
    "NO": "Norge",
    "DK": "Danmark",
    "FI": "Finland",
    "IS": "Island",
    "AX": "Åland",
    "DE": "Tyskland",
    "GB": "Storbritannien",
    "US": "USA",
    "FR": "Frankrike",
    "NL": "Nederländerna",
    "BE": "Belgien",
    "LU": "Luxemburg",
    "ES": "Spanien",
    "PT": "Portugal",
    "IT": "Italien",
    "PL": "Polen",
    "EE": "Estland",
    "LV": "Lettland",
    "LT": "Litauen",
    "AT": "Österrike",
    "CH": "Schweiz",
    "IE": "Irland",
    "GR": "Grekland",
    "CZ": "Tjeckien",
    "HU": "Ungern",
    "UA": "Ukraina",
    "TR": "Turkiet",
    "CN": "Kina",
    "JP": "Japan",
    "IN": "Indien",
    "CA": "Kanada",
    "AU": "Australien",
}
CURRENCIES = frozenset(
    [
        "AED",
        "AFN",
        "ALL",
        "AMD",
        "ANG",
        "AOA",
        "ARS",
        "AUD",
        "AWG",
        "AZN",
        "BAM",
        "BBD",
        "BDT",
        "BGN",
        "BHD",
        "BIF",
        "BMD",
        "BND",
        "BOB",
        "BOV",
        "BRL",
        "BSD",
        "BTN",
        "BWP",
        "BYN",
        "BZD",
        "CAD",
        "CDF",
        "CHE",
        "CHF",
        "CHW",
        "CLF",
        "CLP",
        "CNY",
        "COP",
        "COU",
        "CRC",
        "CUC",
        "CUP",
        "CVE",
        "CZK",
        "DJF",
        "DKK",
        "DOP",
        "DZD",
        "EGP",
        "ERN",
        "ETB",
        "EUR",
        "FJD",
        "FKP",
        "GBP",
        "GEL",
        "GHS",
        "GIP",
        "GMD",
        "GNF",
        "GTQ",
        "GYD",
        "HKD",
        "HNL",
        "HTG",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "IQD",
        "IRR",
        "ISK",
        "JMD",
        "JOD",
        "JPY",
        "KES",
        "KGS",
        "KHR",
        "KMF",
        "KPW",
        "KRW",
        "KWD",
        "KYD",
        "KZT",
        "LAK",
        "LBP",
        "LKR",
        "LRD",
        "LSL",
        "LYD",
        "MAD",
        "MDL",
        "MGA",
        "MKD",
        "MMK",
        "MNT",
        "MOP",
        "MRU",
        "MUR",
        "MVR",
        "MWK",
        "MXN",
        "MXV",
        "MYR",
        "MZN",
        "NAD",
        "NGN",
        "NIO",
        "NOK",
        "NPR",
        "NZD",
        "OMR",
        "PAB",
        "PEN",
        "PGK",
        "PHP",
        "PKR",
        "PLN",
        "PYG",
        "QAR",
        "RON",
        "RSD",
        "RUB",
        "RWF",
        "SAR",
        "SBD",
        "SCR",
        "SDG",
        "SEK",
        "SGD",
        "SHP",
        "SLE",
        "SLL",
        "SOS",
        "SRD",
        "SSP",
        "STN",
        "SVC",
        "SYP",
        "SZL",
        "THB",
        "TJS",
        "TMT",
        "TND",
        "TOP",
        "TRY",
        "TTD",
        "TWD",
        "TZS",
        "UAH",
        "UGX",
        "USD",
        "USN",
        "UYI",
        "UYU",
        "UYW",
        "UZS",
        "VED",
        "VES",
        "VND",
        "VUV",
        "WST",
        "XAF",
        "XAG",
        "XAU",
        "XBA",
        "XBB",
        "XBC",
        "XBD",
        "XCD",
        "XDR",
        "XOF",
        "XPD",
        "XPF",
        "XPT",
        "XSU",
        "XTS",
        "XUA",
        "XXX",
        "YER",
        "ZAR",
        "ZMW",
        "ZWL",
    ]
)
VAT_RATES = frozenset({Decimal(0), Decimal(6), Decimal(12), Decimal(25)})
BLANK = "API_BLANK"


def country_name(code: str) -> str:
    return COUNTRY_NAMES_SV.get(code, code) if code else ""


# --- characters --------------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_EXCEPT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def bad_character(value: str, multiline: bool = False) -> str | None:
    """The first character Fortnox would refuse, or None. The model: what Windows-1252 can
    encode, minus control characters; newline, carriage return and tab only in multi-line
    fields (Remarks, Comments)."""
    try:
        value.encode("cp1252")
    except UnicodeEncodeError as e:
        return value[e.start]
    m = (_CONTROL_EXCEPT_LINES if multiline else _CONTROL).search(value)
    return m.group(0) if m else None


# --- field specifications ---------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    kind: str = "text"  # text multiline bool country email orgnr enum custnr currency date
    #                     number readonly rows
    max_len: int | None = None  # None: no length limit
    choices: tuple[str, ...] = ()


RO = Spec("readonly")


def _len(table: dict[str, Limit], name: str, kind: str = "text") -> Spec:
    """A text field whose length limit comes from the one limit table (its source there)."""
    return Spec(kind, table[name].fortnox)


C, D, R = limits.CUSTOMER, limits.DOCUMENT, limits.ROW

CUSTOMER_FIELDS: dict[str, Spec] = {
    "@url": RO,
    "Active": Spec("bool"),
    "Address1": _len(C, "Address1"),
    "Address2": _len(C, "Address2"),
    "City": _len(C, "City"),
    "Comments": _len(C, "Comments", "multiline"),
    "CostCenter": _len(C, "CostCenter"),
    "Country": RO,
    "CountryCode": Spec("country"),
    "Currency": Spec("currency"),
    "CustomerNumber": Spec("custnr"),
    "DeliveryAddress1": _len(C, "DeliveryAddress1"),
    "DeliveryAddress2": _len(C, "DeliveryAddress2"),
    "DeliveryCity": _len(C, "DeliveryCity"),
    "DeliveryCountry": RO,
    "DeliveryCountryCode": Spec("country"),
    "DeliveryFax": _len(C, "DeliveryFax"),
    "DeliveryName": _len(C, "DeliveryName"),
    "DeliveryPhone1": _len(C, "DeliveryPhone1"),
    "DeliveryPhone2": _len(C, "DeliveryPhone2"),
    "DeliveryZipCode": _len(C, "DeliveryZipCode"),
    "Email": _len(C, "Email", "email"),
    "EmailInvoice": _len(C, "EmailInvoice", "email"),
    "EmailOffer": _len(C, "EmailOffer", "email"),
    "EmailOrder": _len(C, "EmailOrder", "email"),
    "ExternalReference": _len(C, "ExternalReference"),
    "Fax": _len(C, "Fax"),
    "InvoiceRemark": _len(C, "InvoiceRemark", "multiline"),
    "Name": _len(C, "Name"),
    "OrganisationNumber": _len(C, "OrganisationNumber", "orgnr"),
    "OurReference": _len(C, "OurReference"),
    "Phone1": _len(C, "Phone1"),
    "Phone2": _len(C, "Phone2"),
    "Project": _len(C, "Project"),
    "TermsOfPayment": _len(C, "TermsOfPayment"),
    "Type": Spec("enum", choices=("COMPANY", "PRIVATE")),
    "VATNumber": _len(C, "VATNumber"),
    "VATType": Spec("enum", choices=("SEVAT", "SEREVERSEDVAT", "EUREVERSEDVAT", "EUVAT", "EXPORT")),
    "VisitingAddress": _len(C, "VisitingAddress"),
    "VisitingCity": _len(C, "VisitingCity"),
    "VisitingCountry": RO,
    "VisitingCountryCode": Spec("country"),
    "VisitingZipCode": _len(C, "VisitingZipCode"),
    "WWW": _len(C, "WWW"),
    "YourReference": _len(C, "YourReference"),
    "ZipCode": _len(C, "ZipCode"),
}
# read-only fields derived from the code fields
CUSTOMER_DERIVED = {
    "Country": "CountryCode",
    "DeliveryCountry": "DeliveryCountryCode",
    "VisitingCountry": "VisitingCountryCode",
}

_DOC_COMMON: dict[str, Spec] = {
    "@url": RO,
    "Address1": _len(D, "Address1"),
    "Address2": _len(D, "Address2"),
    "Balance": RO,
    "Booked": RO,
    "Cancelled": RO,
    "City": _len(D, "City"),
    "Comments": _len(D, "Comments", "multiline"),
    "Country": RO,
    "Currency": Spec("currency"),
    "CustomerName": _len(D, "CustomerName"),
    "CustomerNumber": Spec("custnr"),
    "DeliveryDate": Spec("date"),
    "DocumentNumber": RO,
    "ExternalInvoiceReference1": _len(D, "ExternalInvoiceReference1"),
    "ExternalInvoiceReference2": _len(D, "ExternalInvoiceReference2"),
    "OrganisationNumber": RO,
    "OurReference": _len(D, "OurReference"),
    "Remarks": _len(D, "Remarks", "multiline"),
    "Sent": RO,
    "Total": RO,
    "VATIncluded": Spec("bool"),
    "YourOrderNumber": _len(D, "YourOrderNumber"),
    "YourReference": _len(D, "YourReference"),
    "ZipCode": _len(D, "ZipCode"),
}
INVOICE_FIELDS: dict[str, Spec] = {
    **_DOC_COMMON,
    "DueDate": Spec("date"),
    "InvoiceDate": Spec("date"),
    "InvoiceRows": Spec("rows"),
}
ORDER_FIELDS: dict[str, Spec] = {
    **_DOC_COMMON,
    "OrderDate": Spec("date"),
    "OrderRows": Spec("rows"),
}
ROW_FIELDS: dict[str, Spec] = {
    "AccountNumber": Spec("account"),
    "CostCenter": Spec("text"),  # a cost centre's code (its register is not modelled)
    "ArticleNumber": _len(R, "ArticleNumber"),
    "DeliveredQuantity": Spec("quantity"),
    "Description": _len(R, "Description"),  # no limit on write
    "Discount": Spec("number"),
    "DiscountType": Spec("enum", choices=("AMOUNT", "PERCENT")),
    "Price": Spec("number"),
    "Total": RO,
    "Unit": _len(R, "Unit"),
    "VAT": Spec("vat"),
}
ORDER_ROW_FIELDS: dict[str, Spec] = {**ROW_FIELDS, "OrderedQuantity": Spec("quantity")}

_EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[A-Za-z]{2,}$")
_ORGNR = re.compile(r"^\d{6}-\d{4}$")
_CUSTNR = re.compile(r"^[A-Za-z0-9\-+/_]+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ACCOUNT = re.compile(r"^\d{4}$")


def valid_orgnr(value: str) -> bool:
    return bool(_ORGNR.match(value)) and luhn.is_valid(value.replace("-", ""))


def _text(field: str, value: Any, spec: Spec) -> str:
    if not isinstance(value, str):
        raise FortnoxError(INVALID_VALUE, f"Ogiltigt värde för fältet {field} (ska vara text)")
    if value == BLANK:
        return ""
    if spec.max_len is not None and len(value) > spec.max_len:
        raise FortnoxError(
            TOO_LONG, f"Fältet {field} får innehålla högst {spec.max_len} tecken ({len(value)})"
        )
    bad = bad_character(value, multiline=spec.kind == "multiline")
    if bad is not None:
        raise FortnoxError(
            INVALID_CHARACTERS,
            f"Värdet innehåller ej tillåtna tecken. ({field}: {bad!r} i {value!r})",
        )
    return value


def decimal_of(field: str, value: Any, allow_string: bool) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise FortnoxError(NOT_NUMERIC, f"Värdet måste vara numeriskt ({field}: {value!r})")
    if isinstance(value, int | Decimal):
        d = Decimal(value)
    elif isinstance(value, str) and allow_string:
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise FortnoxError(
                NOT_NUMERIC, f"Värdet måste vara numeriskt ({field}: {value!r})"
            ) from None
    else:
        raise FortnoxError(NOT_NUMERIC, f"Värdet måste vara numeriskt ({field}: {value!r})")
    if not d.is_finite():
        raise FortnoxError(NOT_NUMERIC, f"Värdet måste vara numeriskt ({field}: {value!r})")
    return d


def check_value(field: str, spec: Spec, value: Any) -> Any:
    """The stored form of one field's value, or a FortnoxError."""
    kind = spec.kind
    if kind == "readonly":
        raise FortnoxError(
            INVALID_FIELD_NAME,
            f"Felaktigt fältnamn ({field} kan inte skrivas, det är skrivskyddat)",
        )
    if kind in ("text", "multiline"):
        return _text(field, value, spec)
    if kind == "bool":
        if not isinstance(value, bool):
            raise FortnoxError(NOT_BOOLEAN, f"Värdet måste vara en boolean ({field}: {value!r})")
        return value
    if kind == "country":
        if not isinstance(value, str):
            raise FortnoxError(INVALID_COUNTRY, f"Ogiltig landskod ({field}: {value!r})")
        s = "" if value == BLANK else value
        if s and s not in COUNTRY_CODES:
            raise FortnoxError(INVALID_COUNTRY, f"Ogiltig landskod ({field}: {value!r})")
        return s
    if kind == "email":
        s = _text(field, value, spec)
        if s and not _EMAIL.match(s):
            raise FortnoxError(INVALID_EMAIL, f"Ogiltig e-postadress ({field}: {value!r})")
        return s
    if kind == "orgnr":
        s = _text(field, value, spec)
        if s and not valid_orgnr(s):
            raise FortnoxError(
                INVALID_ORGNR,
                f"Ogiltigt organisationsnummer ({value!r}); ange det som NNNNNN-NNNN",
            )
        return s
    if kind == "enum":
        if value == BLANK or not isinstance(value, str) or value not in spec.choices:
            allowed = ", ".join(spec.choices)
            raise FortnoxError(
                INVALID_VALUE, f"Ogiltigt värde för fältet {field} ({value!r}; tillåtet: {allowed})"
            )
        return value
    if kind == "custnr":
        if not isinstance(value, str) or value == BLANK or not value:
            raise FortnoxError(INVALID_VALUE, f"Ogiltigt värde för fältet {field} ({value!r})")
        if not _CUSTNR.match(value):
            raise FortnoxError(
                NOT_ALPHANUMERIC, f"Värdet måste vara alfanumeriskt ({field}: {value!r})"
            )
        if len(value) > 1024:
            raise FortnoxError(TOO_LONG, f"Fältet {field} får innehålla högst 1024 tecken")
        return value
    if kind == "currency":
        if not isinstance(value, str) or value not in CURRENCIES:
            raise FortnoxError(INVALID_CURRENCY, f"Ogiltig valuta ({field}: {value!r})")
        return value
    if kind == "date":
        ok = isinstance(value, str) and _DATE.match(value)
        if ok:
            try:
                date.fromisoformat(value)
            except ValueError:
                ok = False
        if not ok:
            raise FortnoxError(
                INVALID_DATE, f"Ogiltigt datum ({field}: {value!r}); använd ÅÅÅÅ-MM-DD"
            )
        return value
    if kind == "number":
        return decimal_of(field, value, allow_string=False)
    if kind == "quantity":
        return decimal_of(field, value, allow_string=True)
    if kind == "vat":
        d = decimal_of(field, value, allow_string=False)
        if d not in VAT_RATES:
            raise FortnoxError(
                INVALID_VALUE, f"Ogiltig momssats ({field}: {value!r}; tillåtet: 0, 6, 12, 25)"
            )
        return d
    if kind == "account":
        s = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(s, str) or not _ACCOUNT.match(s):
            raise FortnoxError(ACCOUNT_NOT_FOUND, f"Kunde inte hitta konto ({field}: {value!r})")
        return int(s)
    raise AssertionError(f"unknown spec kind {kind}")  # pragma: no cover


def check_fields(fields: dict[str, Any], specs: dict[str, Spec]) -> dict[str, Any]:
    """Validate every field (names first, then values, in the order sent)."""
    for name in fields:
        if name not in specs:
            raise FortnoxError(INVALID_FIELD_NAME, f"Felaktigt fältnamn ({name})")
    out = {}
    for name, value in fields.items():
        spec = specs[name]
        if spec.kind == "rows":
            out[name] = value  # checked by check_rows
        else:
            out[name] = check_value(name, spec, value)
    return out


def validate_customer(fields: Any, creating: bool) -> dict[str, Any]:
    if not isinstance(fields, dict):
        raise FortnoxError(EMPTY_BODY, "Ingen eller felaktig typ av data.")
    out = check_fields(fields, CUSTOMER_FIELDS)
    if creating and not out.get("Name", "").strip():
        raise FortnoxError(REQUIRED, "Fältet Name (kundnamn) måste anges")
    if not creating and "Name" in out and not out["Name"].strip():
        raise FortnoxError(REQUIRED, "Fältet Name (kundnamn) kan inte tömmas")
    return out


def check_rows(
    kind: str, rows: Any, default_account: bool
) -> list[dict[str, Any]]:  # kind: invoice | order
    field = "InvoiceRows" if kind == "invoice" else "OrderRows"
    specs = ROW_FIELDS if kind == "invoice" else ORDER_ROW_FIELDS
    if not isinstance(rows, list):
        raise FortnoxError(INVALID_VALUE, f"Ogiltigt värde för fältet {field} (ska vara en lista)")
    out = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise FortnoxError(INVALID_VALUE, f"Ogiltigt värde för rad {i} i {field}")
        checked = check_fields(row, specs)
        text_row = set(row) <= {"Description"}
        has_account = bool(checked.get("ArticleNumber")) or "AccountNumber" in checked
        if not text_row and not has_account and not default_account:
            raise FortnoxError(
                ACCOUNT_NOT_FOUND,
                f"Kunde inte hitta konto (rad {i}: ange AccountNumber eller ArticleNumber, "
                "företaget har inget förvalt försäljningskonto)",
            )
        checked["_text"] = text_row
        out.append(checked)
    return out
