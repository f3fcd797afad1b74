"""`limefort audit` against the in-process sandbox (issue 14): each category found on a seeded
workload, nothing on a clean one, read-only on both sides; and the pure `findings` table."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import Lf

from limefort.commands import audit as A
from limefort.core.keys import document_ref
from limefort.core.models import Deal, DocumentIntent
from limefort.state.readonly import Recorded
from limefort_sandbox import Sandbox

YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()


def seeded(make: Any, tmp_path: Path) -> tuple[Lf, Sandbox, list[str], list[str]]:
    """Two customers and eight won deals, all invoiced by one pass."""
    sb: Sandbox = make(seed=43, companies=0, deals=0)
    companies = [
        sb.limego.add_company(name=f"Revisionsbolag {i} AB", status="customer") for i in range(2)
    ]
    deals = [
        sb.limego.add_deal(
            company_id=companies[0], stage="won", name=f"Uppdrag {i}", value=f"{1000 + i}.00"
        )
        for i in range(8)
    ]
    lf = Lf(sb, tmp_path)
    r = lf.run("sync")
    assert r.code == 0, r.err
    assert len(sb.fortnox.invoices) == 8
    return lf, sb, companies, deals


def number_of(sb: Sandbox, did: str) -> str:
    [doc] = sb.fortnox.documents_by_ref(document_ref(did))
    return str(doc["DocumentNumber"])


def fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("window", [(), ("--from", YESTERDAY)], ids=["all", "from"])
def test_a_clean_workload_has_no_findings(
    make_inprocess_sandbox: Any, tmp_path: Path, window: tuple[str, ...]
) -> None:
    lf, sb, _, deals = seeded(make_inprocess_sandbox, tmp_path)
    r = lf.run("audit", "--json", *window)
    assert r.code == 0, r.err
    got = json.loads(r.out)
    assert got["won"] == len(deals) and got["documents"] == len(deals)
    assert all(got[c] == [] for c in A.CATEGORIES)
    text = lf.run("audit", *window)
    assert text.code == 0 and "Nothing found" in text.out


@pytest.mark.parametrize("window", [(), ("--from", YESTERDAY)], ids=["all", "from"])
def test_each_category_is_found(
    make_inprocess_sandbox: Any, tmp_path: Path, window: tuple[str, ...]
) -> None:
    lf, sb, companies, deals = seeded(make_inprocess_sandbox, tmp_path)
    removed, twice, cancelled, moved, deleted, lost, revalued, _clean = deals
    # the other company is linked to a Fortnox customer by a deal of its own
    own = sb.limego.add_deal(company_id=companies[1], stage="won", name="Eget", value="10.00")
    assert lf.run("sync").code == 0
    other_number = sb.fortnox.documents_by_ref(document_ref(own))[0]["CustomerNumber"]

    sb.fortnox.delete_document(number_of(sb, removed))
    doc = sb.fortnox.documents_by_ref(document_ref(twice))[0]
    sb.fortnox.add_invoice(
        {
            "CustomerNumber": doc["CustomerNumber"],
            "ExternalInvoiceReference1": document_ref(twice),
            "InvoiceRows": [{"Description": "Uppdrag 1", "Price": Decimal("1001.00")}],
        }
    )
    sb.fortnox.cancel_document(number_of(sb, cancelled))
    sb.limego.update_deal(moved, company_id=companies[1])
    sb.limego.delete_deal(deleted)
    sb.limego.lose_deal(lost)
    sb.limego.update_deal(revalued, value="9999.00")

    state = lf.dir / "limefort.db"
    before = fingerprint(state)
    mark = len(sb.fortnox.requests)
    csv_file = tmp_path / "audit.csv"
    r = lf.run("audit", "--json", "--csv", str(csv_file), *window)
    assert r.code == 1, r.err
    got = json.loads(r.out)
    assert list(got) == ["window", "won", "documents", *A.CATEGORIES]

    def keys(category: str) -> list[str]:
        return [e["key"] for e in got[category]]

    assert keys("missing") == [f"deal:{removed}"]
    assert keys("duplicates") == [f"deal:{twice}"]
    assert len(got["duplicates"][0]["documents"]) == 2
    assert keys("cancelled") == [f"deal:{cancelled}"]
    mismatched = {e["key"]: e["differences"] for e in got["mismatched"]}
    assert set(mismatched) == {f"deal:{moved}", f"deal:{revalued}"}
    assert mismatched[f"deal:{moved}"]["customer"][1] == other_number
    assert mismatched[f"deal:{revalued}"] == {"amount": ["1006.00", "9999.00"]}
    orphans = {e["key"]: e["reason"] for e in got["orphans"]}
    assert set(orphans) == {f"deal:{deleted}", f"deal:{lost}"}
    assert "no longer exists" in orphans[f"deal:{deleted}"]
    assert "not won" in orphans[f"deal:{lost}"]
    assert all("key" in e for c in A.CATEGORIES for e in got[c])

    # Read-only on both sides, and the state file is untouched.
    api = [x for x in sb.fortnox.requests[mark:] if x.path.startswith("/3/")]
    assert api and {x.method for x in api} == {"GET"}  # (a token is POSTed to /oauth-v1)
    assert fingerprint(state) == before

    with csv_file.open(encoding="utf-8", newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["finding", "key", "documents", "detail"]
    assert len(table) - 1 == sum(len(got[c]) for c in A.CATEGORIES)

    text = lf.run("audit", *window)
    assert text.code == 1
    for category in A.CATEGORIES:
        # unreadable needs --deep: its own test below
        assert (category in text.out) == (category != "unreadable"), category


def test_deep_compares_the_rows(make_inprocess_sandbox: Any, tmp_path: Path) -> None:
    lf, sb, _, deals = seeded(make_inprocess_sandbox, tmp_path)
    # The row changed in Fortnox by hand (the recorded value still matches the deal).
    number = number_of(sb, deals[0])
    sb.fortnox._update_document(  # noqa: SLF001 (as a Fortnox user editing the invoice)
        "invoice",
        number,
        {"InvoiceRows": [{"Description": "Uppdrag 0", "Price": Decimal("1500.00")}]},
    )
    assert lf.run("audit").code == 0
    r = lf.run("audit", "--deep", "--json")
    assert r.code == 1
    [entry] = json.loads(r.out)["mismatched"]
    assert entry["key"] == f"deal:{deals[0]}"
    assert entry["differences"] == {"amount": ["1500.00", "1000.00"]}
    gets = [x for x in sb.fortnox.requests if x.method == "GET" and "/invoices/" in x.path]
    assert len(gets) == len(deals)


# --- pure -------------------------------------------------------------------------------------

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WINDOW = A.Window(T0, T0 + timedelta(days=30))


def deal(did: str, stage: str = "won", at: datetime = T0 + timedelta(days=1), **kw: Any) -> Deal:
    return Deal(did, {"name": did, "value": "100.00", **kw}, at, "c1", stage)


def doc(
    did: str | None, number: str, cancelled: bool = False, date: str = "2026-03-02"
) -> A.Document:
    return A.Document("invoice", number, document_ref(did) if did else None, "7", cancelled, date)


def made(did: str, number: str, value: str = "100.00", at: datetime = T0) -> DocumentIntent:
    return DocumentIntent(
        did, "invoice", "done", document_ref(did), number, "7", "c1", did, value, at.isoformat(),
        at, None,
    )  # fmt: skip


RECORDED = Recorded({}, {"c1": "7"})


@pytest.mark.parametrize(
    ("deals", "docs", "recorded", "gone", "want"),
    [
        ({"a": deal("a")}, [doc("a", "1")], RECORDED, set(), {}),
        ({"a": deal("a")}, [], RECORDED, set(), {"missing": ["deal:a"]}),
        ({"a": deal("a")}, [doc("a", "1"), doc("a", "2")], RECORDED, set(),
         {"duplicates": ["deal:a"]}),
        # a cancelled extra copy is no duplicate; only cancelled ones mean "cancelled"
        ({"a": deal("a")}, [doc("a", "1"), doc("a", "2", True)], RECORDED, set(), {}),
        ({"a": deal("a")}, [doc("a", "1", True)], RECORDED, set(), {"cancelled": ["deal:a"]}),
        ({"a": deal("a")}, [A.Document("invoice", "1", document_ref("a"), "8", False, None)],
         RECORDED, set(), {"mismatched": ["deal:a"]}),
        ({"a": deal("a", value="150.00")}, [doc("a", "1")],
         Recorded({"a": made("a", "1")}, {"c1": "7"}), set(), {"mismatched": ["deal:a"]}),
        ({}, [doc("a", "1")], RECORDED, {"a"}, {"orphans": ["deal:a"]}),
        ({"a": deal("a", stage="lost")}, [doc("a", "1")], RECORDED, set(),
         {"orphans": ["deal:a"]}),
        # a cancelled document of a lost deal is settled: nothing
        ({"a": deal("a", stage="lost")}, [doc("a", "1", True)], RECORDED, set(), {}),
        # outside the window: not judged
        ({"a": deal("a", at=T0 - timedelta(days=1))}, [], RECORDED, set(), {}),
        # recorded won-at wins over a later change
        ({"a": deal("a", at=T0 + timedelta(days=90))}, [],
         Recorded({"a": made("a", "1", at=T0 + timedelta(days=2))}, {}), set(),
         {"missing": ["deal:a"]}),
        # a document that is not limefort's is none of the audit's business
        ({}, [doc(None, "1")], RECORDED, set(), {}),
    ],
)  # fmt: skip
def test_findings(
    deals: dict[str, Deal],
    docs: list[A.Document],
    recorded: Recorded,
    gone: set[str],
    want: dict[str, list[str]],
) -> None:
    got = A.findings(
        deals, docs, recorded, won_stages=frozenset({"won"}), window=WINDOW, gone=frozenset(gone)
    )
    found = {c: [e["key"] for e in getattr(got, c)] for c in A.CATEGORIES if getattr(got, c)}
    assert found == want


@pytest.mark.parametrize(
    ("docs", "recorded", "want"),
    [
        ([doc("a", "1")], Recorded({}, {}), {"a"}),
        ([doc("a", "1", date="2026-02-01")], Recorded({}, {}), set()),  # dated before
        ([doc("a", "1", cancelled=True)], Recorded({}, {}), set()),
        ([doc("a", "1")], Recorded({"a": made("a", "1", at=T0 - timedelta(days=5))}, {}), set()),
        ([doc("a", "1")], Recorded({"a": made("a", "1", at=T0 + timedelta(days=5))}, {}), {"a"}),
    ],
)
def test_to_look_up(docs: list[A.Document], recorded: Recorded, want: set[str]) -> None:
    assert A.to_look_up(docs, {}, recorded, WINDOW) == want
    assert A.to_look_up(docs, {}, recorded, A.Window(None, WINDOW.end)) == set()


def test_rows_total() -> None:
    rows = {"InvoiceRows": [
        {"Price": "100.00", "DeliveredQuantity": "2.00"},
        {"Price": "50", "DeliveredQuantity": "1", "Discount": "10", "DiscountType": "PERCENT"},
    ]}  # fmt: skip
    assert A.rows_total(rows) == Decimal("245.00")


class Recording:
    def __init__(self) -> None:
        self.totals: list[int] = []
        self.advanced = 0
        self.read_n = 0

    def total(self, n: int) -> None:
        self.totals.append(n)

    def read(self, n: int = 1) -> None:
        self.read_n += n

    def advance(self, n: int = 1, *, written: int = 0) -> None:
        self.advanced += n


def test_progress_learns_the_pages_from_fortnox(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    """The bar's total is Fortnox's page count (its ETA is then held to the rate limit)."""
    from fakes import inprocess  # noqa: F401 (the sandbox fixture routes the sessions)

    from limefort.clients.fortnox import FortnoxClient
    from limefort.clients.fortnox_tokens import ServiceAccountTokens
    from limefort.clients.limego import LimeGoClient
    from limefort.config import load

    lf, sb, _, deals = seeded(make_inprocess_sandbox, tmp_path)
    cfg = load(lf.config, explicit=True)
    limego = LimeGoClient(cfg.limego, http=cfg.http)
    fortnox = FortnoxClient(cfg.fortnox, ServiceAccountTokens(cfg.fortnox, http=cfg.http))
    seen = Recording()
    got = A.run_audit(
        limego, fortnox, Recorded({}, {}), kind="invoice", won_stages=frozenset(
            s for s, v in sb.limego.stages.items() if v["attributes"]["category"] == "won"
        ), window=A.Window(None, datetime.now(UTC)), progress=seen,
    )  # fmt: skip
    assert got.won == len(deals)
    assert seen.totals == [1] and seen.advanced == 1 and seen.read_n == len(deals)


# --- issue 24: audit proves its all-clear -------------------------------------------------------


def test_deep_with_unreadable_documents_is_a_finding_not_in_line(
    make_inprocess_sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from limefort.clients.fortnox import FortnoxClient

    lf, sb, _, deals = seeded(make_inprocess_sandbox, tmp_path)
    hidden = {number_of(sb, deals[0]), number_of(sb, deals[1])}
    real = FortnoxClient.get_document

    def get_document(self: Any, kind: Any, number: str) -> Any:
        return None if number in hidden else real(self, kind, number)  # Fortnox's 404

    monkeypatch.setattr(FortnoxClient, "get_document", get_document)
    r = lf.run("audit", "--deep")
    assert r.code == 1, r.out
    assert "in line" not in r.out
    for did in deals[:2]:
        assert f"deal:{did}" in r.out
    got = json.loads(lf.run("audit", "--deep", "--json").out)
    assert sorted(e["document"] for e in got["unreadable"]) == sorted(
        f"invoice:{n}" for n in hidden
    )


def test_csv_into_a_missing_directory_is_one_line_exit_2(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    lf, *_ = seeded(make_inprocess_sandbox, tmp_path)
    r = lf.run("audit", "--csv", str(tmp_path / "missing" / "dir" / "x.csv"))
    assert r.code == 2, r.err
    assert r.err.count("\n") == 1 and "does not exist" in r.err and "Traceback" not in r.err


def test_csv_over_an_existing_file_needs_force_and_is_private(
    make_inprocess_sandbox: Any, tmp_path: Path
) -> None:
    lf, *_ = seeded(make_inprocess_sandbox, tmp_path)
    target = tmp_path / "audit.csv"
    target.write_text("keep me\n")
    r = lf.run("audit", "--csv", str(target))
    assert r.code == 2 and "--force" in r.err
    assert target.read_text() == "keep me\n"
    r = lf.run("audit", "--csv", str(target), "--force")
    assert r.code == 0, r.err
    assert target.read_text().startswith("finding,key,documents,detail")
    assert target.stat().st_mode & 0o777 == 0o600
    # A symlink is replaced itself, never written through.
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("untouched\n")
    target.unlink()
    target.symlink_to(elsewhere)
    assert lf.run("audit", "--csv", str(target), "--force").code == 0
    assert elsewhere.read_text() == "untouched\n" and not target.is_symlink()


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_formula_looking_value_stays_text_in_the_csv(start: str) -> None:
    value = f'{start}HYPERLINK("http://x")'
    assert A.spreadsheet_text(value) == "'" + value
    f = A.Findings(WINDOW)
    f.orphans.append({"key": value, "document": value, "reason": value})
    for row in csv.reader(A.to_csv(f).splitlines()[1:]):
        assert not any(cell.startswith(start) for cell in row), row
