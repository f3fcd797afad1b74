"""Lime Go records -> Fortnox payloads, as data plus pure functions.

The mapping itself is two tables (Fortnox field -> Lime Go source path) that the config may
override line by line. Field rules (length limit and kind) say what Fortnox accepts; every
value passes through them, so a payload that leaves here is one Fortnox can store. What does
not fit is cut or left out with a warning, and only what makes the record meaningless
(no name, no amount, a bad currency) rejects it.

The tables and rules live in `fields`, `results`, `sources`, `customers`, `documents` and\n`payloads`, with `normalise` (values cleaned to what Fortnox stores) beside them; this module\nis their one face.
"""

from limefort.mapping.customers import (
    VAT_TYPES,
    map_company,
    source_text,
    vat_type_of,
    vat_zone,
)
from limefort.mapping.documents import (
    map_deal,
    split_overflow,
)
from limefort.mapping.fields import (
    ALL_CUSTOM_FIELDS,
    CUSTOMER_FIELDS,
    CUSTOMER_KEY_FIELD,
    DEFAULT_CUSTOMER_MAPPING,
    DEFAULT_DOCUMENT_MAPPING,
    DOCUMENT_FIELDS,
    DOCUMENT_KEY_FIELD,
    KEY_LIMITS,
    MAX_PRICE,
    PRICE_DECIMALS,
    ROW_FIELDS,
    FieldKind,
    FieldRule,
    Scope,
    SourcePath,
    account_problem,
    article_problem,
    build_mappings,
    parse_source,
)
from limefort.mapping.payloads import (
    API_BLANK,
    changed_fields,
    from_json,
    payload_hash,
    to_json,
    update_body,
)
from limefort.mapping.results import (
    SHOWN,
    DealContext,
    FieldNote,
    Mapped,
    Rejected,
    note_rows,
)
from limefort.mapping.sources import (
    apply_rule,
    custom_field_lines,
)

__all__ = [
    "ALL_CUSTOM_FIELDS",
    "API_BLANK",
    "CUSTOMER_FIELDS",
    "CUSTOMER_KEY_FIELD",
    "DEFAULT_CUSTOMER_MAPPING",
    "DEFAULT_DOCUMENT_MAPPING",
    "DOCUMENT_FIELDS",
    "DOCUMENT_KEY_FIELD",
    "DealContext",
    "FieldKind",
    "FieldNote",
    "FieldRule",
    "KEY_LIMITS",
    "MAX_PRICE",
    "Mapped",
    "PRICE_DECIMALS",
    "ROW_FIELDS",
    "Rejected",
    "SHOWN",
    "Scope",
    "SourcePath",
    "VAT_TYPES",
    "account_problem",
    "apply_rule",
    "article_problem",
    "build_mappings",
    "changed_fields",
    "custom_field_lines",
    "from_json",
    "map_company",
    "map_deal",
    "note_rows",
    "parse_source",
    "payload_hash",
    "source_text",
    "split_overflow",
    "to_json",
    "update_body",
    "vat_type_of",
    "vat_zone",
]
