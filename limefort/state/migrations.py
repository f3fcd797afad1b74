"""The state file's schema, changed only by these named migrations, applied in order.

Append only: a released migration is never edited; add a new one. `Store.migrate` applies
what a file lacks and records each name in `_migrations`. Each one is handed sqlite-utils'
`Database` over the store's connection (`Tables.db`), imported only when one runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlite_utils import Database


def _m001_initial(db: Database) -> None:
    db.table("cursors").create({"name": str, "value": str, "updated_at": str}, pk="name")
    db.table("meta").create({"key": str, "value": str}, pk="key")
    db.table("customers").create(
        {
            "company_id": str,
            "state": str,  # pending (POST sent or about to be, outcome unknown) | done
            "customer_number": str,
            "orgnr": str,
            "name": str,
            "payload": str,  # JSON of the payload last sent (Decimal-exact)
            "hash": str,
            "intent_at": str,
            "outcome": str,  # null while the POST may be in flight; "lost" once Fortnox finished
            "updated_at": str,
        },
        pk="company_id",
    )
    db.table("customers").create_index(["orgnr"])
    db.table("customers").create_index(["state"])
    db.table("documents").create(
        {
            "deal_id": str,
            "kind": str,  # invoice | order
            "state": str,  # pending | done | skipped (won before sync.start)
            "idem_key": str,
            "document_number": str,
            "customer_number": str,
            "company_id": str,
            "name": str,
            "value": str,
            "won_at": str,
            "since": str,
            "outcome": str,  # as for customers
            "done_at": str,
        },
        pk="deal_id",
    )
    db.table("documents").create_index(["state"])
    db.table("quarantine").create(
        {
            "key": str,
            "name": str,
            "reason": str,
            "hint": str,
            "attempts": int,
            "source_hash": str,
            "first_seen": str,
            "last_seen": str,
        },
        pk="key",
    )
    db.table("runs").create(
        {
            "id": int,
            "command": str,
            "started_at": str,
            "finished_at": str,
            "exit_code": int,
            "counts": str,
        },
        pk="id",
    )
    db.table("tokens").create(
        {
            "name": str,
            "access_token": str,
            "expires_at": float,
            "refresh_token": str,
            "refresh_issued_at": float,
            "scope": str,
            "tenant_id": str,
            "updated_at": str,
        },
        pk="name",
    )
    # What limefort knows of Fortnox's customers, for matching by organisation number without a
    # search per company (rule 4). Built from pages of 500, refreshed by `lastmodified`.
    db.table("fortnox_customers").create(
        {"customer_number": str, "orgnr": str, "name": str}, pk="customer_number"
    )
    db.table("fortnox_customers").create_index(["orgnr"])
    db.table("fortnox_customers").create_index(["name"])


def _m002_quarantine_waits_for(db: Database) -> None:
    # A deal quarantined only because its company is not in Fortnox names that company here,
    # so it follows once the company is in, even though the deal itself never changes.
    db.table("quarantine").add_column("waits_for", str)


def _m003_fortnox_documents(db: Database) -> None:
    # Fortnox is the ledger (DESIGN rule 9): what limefort knows of Fortnox's invoices and
    # orders by their key, read from list pages of 500 and refreshed by `lastmodified`, so no
    # document is POSTed whose key Fortnox already holds, whatever the state file says.
    db.table("fortnox_documents").create(
        {
            "kind": str,
            "document_number": str,
            "ext_ref": str,  # ExternalInvoiceReference1 exactly as Fortnox holds it
            "customer_number": str,
            "cancelled": int,
            "booked": int,
            "sent": int,
            "total": str,
            "currency": str,
        },
        pk=("kind", "document_number"),
    )
    db.table("fortnox_documents").create_index(["ext_ref"])
    # Customers without an organisation number are recognised by ExternalReference, which the
    # customer list does not carry: remembered here once read (or once limefort wrote it).
    db.table("fortnox_customers").add_column("ext_ref", str)
    db.table("fortnox_customers").create_index(["ext_ref"])


def _m004_drift(db: Database) -> None:
    # What each document was made from, beside value, name and company (rule 12): the deal's
    # currency. `revised_at`: when `[sync] on_deal_change = "update-unbooked"` last updated
    # the document in Fortnox to follow its deal.
    db.table("documents").add_column("currency", str)
    db.table("documents").add_column("revised_at", str)
    # A deal that changed in Lime Go after its document was made: what changed (JSON of
    # field -> [as the document was made, as Lime Go has it now]), since when, and whether a
    # person acknowledged it (`limefort ack`). Counted by `fleet status` while unacknowledged.
    db.table("drift").create(
        {
            "key": str,  # deal:<id>
            "document": str,  # invoice:<DocumentNumber> | order:<DocumentNumber>
            "changes": str,
            "since": str,
            "acked_at": str,
            "updated_at": str,
        },
        pk="key",
    )
    db.table("drift").create_index(["acked_at"])


def _m005_shared_customers(db: Database) -> None:
    # One legal entity is one Fortnox customer (DESIGN rule 11): a second Lime Go company with
    # the organisation number of one already linked is linked "shared", naming the company that
    # owns the customer's fields; its own field changes are never sent.
    db.table("customers").add_column("shared_with", str)
    # Persistent warnings on a record, shown by `status` until the record's situation changes:
    # a shared customer, an inactive customer adopted, a customer deleted in Fortnox and linked
    # afresh, text that did not fit a document. One row per record and kind.
    db.table("warnings").create(
        {"key": str, "kind": str, "text": str, "since": str}, pk=("key", "kind")
    )
    # Fortnox's customer list carries no Active flag: the index reads active and inactive
    # customers separately and remembers which is which (null: not known yet). Forget when the
    # index was last read, so the next pass reads it whole once and learns the flags.
    db.table("fortnox_customers").add_column("active", int)
    db.execute("DELETE FROM meta WHERE key = 'fortnox_index_at'")


def _m006_ledger_under_real_conditions(db: Database) -> None:
    # One normal form for organisation numbers on both sides (DESIGN rule 4): Fortnox keeps
    # what was typed or imported (no dash, spaces, a 12-digit form), so its index is matched on
    # the folded 10 digits, never on the raw text. Rows read before get theirs from the next
    # full read: the index's mark is forgotten, as 005 did.
    db.table("fortnox_customers").add_column("orgnr_key", str)
    db.table("fortnox_customers").create_index(["orgnr_key"])
    db.execute("DELETE FROM meta WHERE key = 'fortnox_index_at'")
    # One writer per tenant (rule 14): a document's ExternalInvoiceReference2 carries the
    # installation that made it and when (`limefort <id> <time>`); list items carry it, so a
    # pass sees another installation's recent writes in the index it reads anyway.
    db.table("fortnox_documents").add_column("stamp", str)
    db.execute("DELETE FROM meta WHERE key IN ('fortnox_invoices_at', 'fortnox_orders_at')")
    # Duplicates a person has looked at (`limefort ack KEY`): the key and exactly which
    # documents or customers were acknowledged, so a third one is named again.
    db.table("duplicate_acks").create({"key": str, "members": str, "acked_at": str}, pk="key")


def _m007_run_reasons(db: Database) -> None:
    # Why a run ended other than 0, in one line: `status` shows it beside the exit
    # code, so "exit 3" says which credential and "exit 1" which record, without the logs.
    db.table("runs").add_column("reason", str)


def _m008_invoice_payments(db: Database) -> None:
    # Payments at a glance, read-only: invoice list items carry Balance and
    # DueDate, which the index now keeps, so each pass's metrics say what is owed and overdue
    # without a request per invoice. Rows read before get theirs from the next full read:
    # the invoices' mark is forgotten, as 005 and 006 did.
    db.table("fortnox_documents").add_column("balance", str)
    db.table("fortnox_documents").add_column("due_date", str)
    db.execute("DELETE FROM meta WHERE key = 'fortnox_invoices_at'")


def _m009_field_warnings(db: Database) -> None:
    # Nothing cut in silence (design rule 15): a value Fortnox got other than Lime
    # Go holds it is a warning on the record naming the field, what Lime Go holds and what
    # Fortnox got, kept until the record is written again.
    db.table("warnings").add_column("field", str)
    db.table("warnings").add_column("held", str)
    db.table("warnings").add_column("sent", str)


MIGRATIONS: list[tuple[str, Callable[[Database], None]]] = [
    ("001_initial", _m001_initial),
    ("002_quarantine_waits_for", _m002_quarantine_waits_for),
    ("003_fortnox_documents", _m003_fortnox_documents),
    ("004_drift", _m004_drift),
    ("005_shared_customers", _m005_shared_customers),
    ("006_ledger_under_real_conditions", _m006_ledger_under_real_conditions),
    ("007_run_reasons", _m007_run_reasons),
    ("008_invoice_payments", _m008_invoice_payments),
    ("009_field_warnings", _m009_field_warnings),
]
