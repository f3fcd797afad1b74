"""limefort's benchmark: how close a pass runs to Fortnox's rate limit, and what it costs.

Runs against the sandbox servers (in this process) through the real CLI code paths and prints
three small tables:

1. Fortnox requests per record, by kind of change (limit off).
2. The sustained Fortnox request rate of a 300-document `backfill` with the real limit on
   (sandbox 25 per 5 s, client limiter 25 per 5 s), and the number of 429s.
3. Wall time, CPU time per record and peak memory of a first pass and of a `--since` pass that
   re-reads every company and deal (limit off, no latency). These passes run in a child
   process, so its CPU and memory are limefort's alone; the sandbox stays in this process.
4. `limefort audit` over 5 000 won deals and their invoices at the real rate limit (child
   process, as 3).
5. A lost state file against a Fortnox that holds 5 000 customers and 20 000 invoices made
   by limefort: the list pages read, the requests and the time of the pass that relinks them.
6. An idle fleet: 1 000 passes with nothing to do, each a new process, their CPU against
   `python -c "import requests, sqlite3"` in the same run, and their requests.

    python bench/run.py            # the full run (`make bench`), a few minutes
    python bench/run.py --quick    # a small smoke version, well under a minute
    python bench/run.py --only 4   # one part (1 to 6)
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from limefort.engine.sync import eta_seconds
from limefort_sandbox import Sandbox, toml_value

ROOT = Path(__file__).resolve().parent.parent

# The child that runs one limefort command and reports its own resource use. Peak memory is
# VmHWM, the high-water mark of the child's own address space: on Linux `ru_maxrss` carries
# the forking parent's high-water mark over exec, so with the sandbox's data in this process
# it would report the sandbox, not limefort.
CHILD = """
import atexit, json, resource, sys
out = sys.argv[1]

def report():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    hwm = None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = hwm if hwm is not None else ru.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    with open(out, "w") as f:
        json.dump({"cpu": ru.ru_utime + ru.ru_stime, "peak": rss}, f)

atexit.register(report)
from limefort.cli import main
main(sys.argv[2:])
"""


# ---------------------------------------------------------------------------------------------
# Plumbing
# ---------------------------------------------------------------------------------------------


class Lf:
    """limefort pointed at a sandbox: its own directory, state file and config."""

    def __init__(self, sb: Sandbox, *, rate_limit: int, **sync: Any) -> None:
        self.sb = sb
        self.dir = Path(tempfile.mkdtemp(prefix="limefort-bench-"))
        atexit.register(shutil.rmtree, self.dir, ignore_errors=True)
        self.config = self.dir / "limefort.toml"
        text = sb.config_toml(self.dir / "limefort.db", **sync)
        text = text.replace("[fortnox]\n", f"[fortnox]\nrate_limit = {toml_value(rate_limit)}\n")
        self.config.write_text(text, encoding="utf-8")
        self.config.chmod(0o600)

    def run(self, *args: str) -> int:
        """One command in this process (the sandbox answers from its own threads)."""
        from limefort.cli import main

        out, err = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(["-q", "--config", str(self.config), *args])
            except SystemExit as exc:
                code = int(exc.code or 0)
        if code not in (0, 1):
            raise SystemExit(f"limefort {' '.join(args)} exited {code}: {err.getvalue()}")
        return code

    def spawn(self, *args: str) -> Child:
        """One command in a child process: its wall time, CPU time and peak memory."""
        report = self.dir / "child.json"
        report.unlink(missing_ok=True)
        parent0 = _cpu(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(report), "-q", "--config", str(self.config), *args],
            cwd=self.dir,
            stdout=subprocess.DEVNULL,  # a report (audit's table) is not the benchmark's output
        )
        code = proc.wait()
        wall = time.perf_counter() - t0
        if code not in (0, 1):
            raise SystemExit(f"limefort {' '.join(args)} exited {code}")
        got = json.loads(report.read_text())
        return Child(wall, got["cpu"], got["peak"], _cpu(resource.RUSAGE_SELF) - parent0)


@dataclass
class Child:
    wall: float
    cpu: float  # limefort's CPU seconds
    peak: int  # limefort's peak resident memory, bytes
    sandbox_cpu: float  # this process's CPU seconds meanwhile (the sandbox servers)


def _cpu(who: int) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def api_calls(sb: Sandbox, since: int = 0) -> list[Any]:
    return [r for r in sb.fortnox.requests[since:] if r.path.startswith("/3/")]


def orgnr(i: int) -> str:
    """A valid Swedish organisation number (Luhn check digit), distinct for each i."""
    body = f"556{i:06d}"
    total = 0
    for pos, ch in enumerate(body):
        d = int(ch) * (2 if pos % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return f"{body[:6]}-{body[6:]}{(10 - total % 10) % 10}"


def add_customers(sb: Sandbox, n: int, first: int) -> list[str]:
    return [
        sb.limego.add_company(
            name=f"Bänkbolaget {i} AB",
            business_id=orgnr(i),
            status="customer",
            phone="08-123 45 67",
            street=f"Storgatan {i % 90 + 1}",
            postal_code="111 22",
            city="Stockholm",
            country="Sverige",
        )
        for i in range(first, first + n)
    ]


def fmt_bytes(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        lines.append(
            "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        )
    return "\n".join(lines)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# 1. Requests per record
# ---------------------------------------------------------------------------------------------


def requests_per_record(n: int) -> tuple[list[list[str]], bool]:
    say(f"1/4 requests per record ({n} of each kind)...")
    with Sandbox(seed=3, companies=0, deals=0, fortnox_rate_limit=None) as sb:
        lf = Lf(sb, rate_limit=0, start=datetime.now(UTC).isoformat(timespec="seconds"))
        lf.run("sync")  # fetches the token

        def measure(*args: str) -> tuple[Counter[str], int]:
            mark = len(sb.fortnox.requests)
            lf.run(*args)
            calls = api_calls(sb, mark)
            kinds: Counter[str] = Counter()
            index = 0
            for c in calls:
                if c.method == "GET" and c.path in ("/3/customers", "/3/invoices"):
                    # Fortnox's indexes (pages of 500; the writer guard's looks and the check
                    # after a pass read what changed in them): per pass, not per record.
                    index += 1
                else:
                    kinds[
                        f"{c.method} {c.path.rsplit('/', 1)[0] if c.method == 'PUT' else c.path}"
                    ] += 1
            return kinds, index

        rows: list[list[str]] = []
        ok = True

        def row(kind: str, calls: Counter[str], index: int, want: float) -> None:
            nonlocal ok
            per = sum(calls.values()) / n
            ok = ok and per == want
            what = ", ".join(f"{v} {k}" for k, v in sorted(calls.items())) or "none"
            note = f"+{index} index GETs (refresh, writer guard, check after)" if index else ""
            rows.append([kind, f"{per:.2f}", what, note])

        ids = add_customers(sb, n, 1)
        calls, index = measure("sync")
        row("new customer", calls, index, 1.0)

        for cid in ids:
            sb.limego.update_company(cid, phone="08-765 43 21")
        calls, index = measure("sync")
        row("changed customer", calls, index, 1.0)

        for i, cid in enumerate(ids):
            sb.limego.add_deal(company_id=cid, stage="won", name=f"Affär {i}", value="1000.00")
        calls, index = measure("sync")
        row("new document (invoice)", calls, index, 1.0)

        since = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
        calls, index = measure("sync", "--since", since)
        calls_all = sum(calls.values())
        rows.append(
            [
                f"unchanged record ({n} companies + {n} deals re-read)",
                f"{calls_all / (2 * n):.2f}",
                "none" if not calls_all else str(calls),
                f"+{index} GET /3/invoices per pass (what changed in Fortnox: rule 14)",
            ]
        )
        ok = ok and calls_all == 0 and index == 1
    return rows, ok


# ---------------------------------------------------------------------------------------------
# 2. Sustained rate at the real limit
# ---------------------------------------------------------------------------------------------

LIMIT, WINDOW = 25, 5.0


def ceiling_fraction(times: list[float], limit: int = LIMIT, window: float = WINDOW) -> float:
    """How close a run of requests came to Fortnox's ceiling, as issue 16 defines it: the least
    time the limit allows for them (request k no sooner than floor((k-1)/limit) windows after
    the first) over the time from the first request to the last. 1.00 is every window as full
    as Fortnox allows."""
    if len(times) < 2:
        return 0.0
    times = sorted(times)
    least = ((len(times) - 1) // limit) * window
    span = times[-1] - times[0]
    return least / span if span > 0 else 0.0


def add_won_deals(sb: Sandbox, companies: list[str], n: int, name: str) -> None:
    """`n` won deals spread over `companies`, each with its own contact person (the first
    contact of a deal is its document's reference: one Lime Go read per document)."""
    for i in range(n):
        cid = companies[i % len(companies)]
        contact = sb.limego.add_contact(cid, first_name="Kontakt", last_name=f"Nummer {i}")
        sb.limego.add_deal(
            company_id=cid, stage="won", name=f"{name} {i}", value="950.00", contact_ids=[contact]
        )


def rate_row(
    kind: str,
    n: int,
    latency: float,
    customers: int | None = None,
    targets: tuple[float, float] = (0.95, 0.90),
) -> tuple[list[str], bool]:
    """`n` documents at the real limit with `latency` seconds added to every answer of both
    services, limefort in a child process (its peak memory). `kind`: "backfill" of deals won
    before sync.start for 10 customers already in Fortnox, or a "first pass" creating the
    customers (`customers`, by default one for every 3 deals) and then the documents."""
    ms = f"{latency * 1000:.0f} ms"
    say(f"2/4 {kind} of {n} documents at the real limit, {ms} added latency...")
    with Sandbox(
        seed=4, companies=0, deals=0, fortnox_rate_limit=LIMIT, fortnox_rate_window=WINDOW
    ) as sb:
        if kind == "backfill":
            ids = add_customers(sb, 10, 1)
            add_won_deals(sb, ids, n, "Gammal affär")
            # Won before sync.start: the pass records them as historical and creates nothing.
            start = (datetime.now(UTC) + timedelta(seconds=5)).isoformat(timespec="seconds")
            lf = Lf(sb, rate_limit=LIMIT, start=start)
            lf.run("sync")
            assert not sb.fortnox.invoices, "the deals should have been skipped as historical"
            args = [
                "backfill",
                "--from",
                (datetime.now(UTC) - timedelta(days=1)).date().isoformat(),
            ]
            args.append("--yes")
        else:
            ids = add_customers(sb, customers or max(n // 3, 1), 1)
            add_won_deals(sb, ids, n, "Ny affär")
            lf = Lf(sb, rate_limit=LIMIT, start="2000-01-01")
            args = ["sync"]
        sb.latency = latency
        # A new process's limiter knows nothing of the last one's requests: let the window pass.
        time.sleep(WINDOW + 0.5)
        mark, limited0 = len(sb.fortnox.requests), sb.fortnox.rate_limited
        child = lf.spawn(*args)
        calls = api_calls(sb, mark)
        made = len(sb.fortnox.invoices)
        customers = len(sb.fortnox.customers) if kind != "backfill" else 0
        limited = sb.fortnox.rate_limited - limited0
    posts = sum(1 for c in calls if c.method == "POST")
    frac = ceiling_fraction([c.at for c in calls])
    times = sorted(c.at for c in calls)
    busiest = max((sum(1 for u in times if t <= u < t + WINDOW) for t in times), default=0)
    want = targets[0] if latency == 0 else targets[1]
    per = posts / (made + customers) if made else 0.0
    ok = made == n and limited == 0 and frac >= want and per == 1.0 and child.peak < 250 * 2**20
    what = f"{made} of {n}" + (f" (+{customers} new customers)" if customers else "")
    row = [
        kind,
        ms,
        what,
        str(len(calls)),
        f"{child.wall:.1f} s",
        f"{frac:.3f} (target ≥ {want:.2f})",
        f"{busiest} (limit {LIMIT})",
        str(limited),
        f"{per:.2f}",
        fmt_bytes(child.peak),
    ]
    return row, ok


# ---------------------------------------------------------------------------------------------
# 6. An idle fleet (issue 26)
# ---------------------------------------------------------------------------------------------


def _child_cpu(argv: list[str]) -> float:
    """CPU seconds (user + system) of one child process running `argv`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def idle_fleet(n: int) -> tuple[list[list[str]], bool]:
    """`n` idle `sync` passes (nothing changed since the last), each a new process, against
    `python -c "import requests, sqlite3"` measured in the same run. Target (issue 26): an idle
    pass at most twice that CPU, and no Fortnox request beyond the one read of what changed
    among its documents that rule 14 needs (see docs/performance.md)."""
    say(f"6/6 {n} idle passes...")
    # The sandbox's Fortnox window is off: a thousand tenants have a thousand windows, and
    # a thousand passes against one would see 429s that no tenant sees.
    with Sandbox(seed=6, companies=20, deals=20, fortnox_rate_limit=None) as sb:
        lf = Lf(sb, rate_limit=0)
        lf.run("sync")
        fx, lg = len(sb.fortnox.requests), len(sb.limego.requests)
        # The `limefort` command as installed (the console script beside this Python).
        script = Path(sys.executable).with_name("limefort")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "limefort"]
        argv = [*command, "--config", str(lf.config), "-q", "sync"]
        base: list[float] = []
        idle: list[float] = []
        for _ in range(n):  # interleaved: the machine's load moves both alike
            base.append(_child_cpu([sys.executable, "-c", "import requests, sqlite3"]))
            idle.append(_child_cpu(argv))
        fx_per = (len(api_calls(sb, fx))) / n
        lg_per = (len(sb.limego.requests) - lg) / n
    base_mean, idle_mean = sum(base) / n, sum(idle) / n
    ratio = idle_mean / base_mean if base_mean else float("inf")
    ok = ratio <= 2.0 and fx_per <= 1.0
    rows = [
        ["python -c 'import requests, sqlite3'", str(n), f"{base_mean * 1000:.0f} ms",
         f"{sum(base):.1f} s", "-"],
        [f"idle `limefort sync` ({ratio:.2f} x, target <= 2)", str(n),
         f"{idle_mean * 1000:.0f} ms", f"{sum(idle):.1f} s",
         f"Fortnox {fx_per:.1f}, Lime Go {lg_per:.1f}"],
    ]  # fmt: skip
    return rows, ok


# ---------------------------------------------------------------------------------------------
# 3. Cost of a pass
# ---------------------------------------------------------------------------------------------


SLOW_LIMEGO = 0.15  # seconds added to every Lime Go answer in the last row of part 3


def pass_costs(companies: int, deals: int, customers: int) -> tuple[list[list[str]], bool]:
    say(f"3/4 generating {companies} companies and {deals} deals...")
    with Sandbox(
        seed=5,
        companies=companies,
        deals=deals,
        customer_ratio=customers / companies,
        fortnox_rate_limit=None,
        latency=0.0,
    ) as sb:
        lf = Lf(sb, rate_limit=0, start="now")
        rows: list[list[str]] = []

        say(f"    first pass ({customers} customers to create)...")
        mark = len(sb.fortnox.requests)
        first = lf.spawn("sync")
        created = len(api_calls(sb, mark))
        records = companies + deals
        rows.append(
            [
                f"first pass: {companies} companies ({len(sb.fortnox.customers)} customers "
                f"created) + {deals} deals (the won ones recorded as won before sync.start)",
                f"{first.wall:.1f} s",
                f"{first.cpu:.1f} s ({first.cpu / records * 1e6:.0f} µs/record)",
                f"{first.sandbox_cpu:.1f} s",
                fmt_bytes(first.peak),
                str(created),
            ]
        )

        say(f"    --since pass re-reading {companies} companies and {deals} deals...")
        mark = len(sb.fortnox.requests)
        again = lf.spawn("sync", "--since", "2000-01-01")
        calls = len(api_calls(sb, mark))
        rows.append(
            [
                f"`sync --since` re-reading {companies} companies + {deals} deals, all unchanged",
                f"{again.wall:.1f} s",
                f"{again.cpu:.1f} s ({again.cpu / records * 1e6:.0f} µs/record)",
                f"{again.sandbox_cpu:.1f} s",
                fmt_bytes(again.peak),
                str(calls),
            ]
        )
        say(f"    --since pass again, {SLOW_LIMEGO * 1000:.0f} ms added to every Lime Go answer...")
        sb.limego.latency = SLOW_LIMEGO
        mark = len(sb.fortnox.requests)
        slow = lf.spawn("sync", "--since", "2000-01-01")
        slow_calls = len(api_calls(sb, mark))
        rows.append(
            [
                f"the same `sync --since`, {SLOW_LIMEGO * 1000:.0f} ms added to every Lime Go "
                "answer",
                f"{slow.wall:.1f} s",
                f"{slow.cpu:.1f} s ({slow.cpu / records * 1e6:.0f} µs/record)",
                f"{slow.sandbox_cpu:.1f} s",
                fmt_bytes(slow.peak),
                str(slow_calls),
            ]
        )
    # A re-read of unchanged records sends Fortnox nothing; its one request is the read of
    # what changed among Fortnox's documents that every pass makes (rule 14).
    ok = (
        again.wall < 60
        and again.peak < 250 * 2**20
        and calls <= 1
        and first.peak < 250 * 2**20
        and slow.peak < 250 * 2**20
        and slow_calls <= 1
    )
    return rows, ok


# ---------------------------------------------------------------------------------------------
# 4. Audit at the real limit
# ---------------------------------------------------------------------------------------------


def audit_cost(n: int) -> tuple[list[list[str]], bool]:
    say(f"4/4 audit of {n} won deals and their invoices at the real limit...")
    with Sandbox(
        seed=6, companies=0, deals=0, fortnox_rate_limit=LIMIT, fortnox_rate_window=WINDOW
    ) as sb:
        ids = add_customers(sb, 50, 1)
        numbers = [sb.fortnox.add_customer({"Name": f"Bänkbolaget {i} AB"}) for i in range(50)]
        for i in range(n):
            did = sb.limego.add_deal(
                company_id=ids[i % len(ids)], stage="won", name=f"Affär {i}", value="950.00"
            )
            # The invoices limefort would have made, put straight into Fortnox (making them
            # through the API at 5/s would take a quarter of an hour and measure backfill).
            sb.fortnox.add_invoice(
                {
                    "CustomerNumber": numbers[i % len(numbers)],
                    "ExternalInvoiceReference1": f"limego:deal:{did}",
                    "InvoiceRows": [{"Description": f"Affär {i}", "Price": Decimal("950.00")}],
                }
            )
        lf = Lf(sb, rate_limit=LIMIT)
        mark = len(sb.fortnox.requests)
        day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
        run = lf.spawn("audit", "--from", day)
        calls = api_calls(sb, mark)
        limited = sb.fortnox.rate_limited
    pages = sum(1 for c in calls if c.path == "/3/invoices")
    deep = eta_seconds(n + pages, 0, LIMIT, WINDOW)
    rows = [
        [
            f"`audit --from {day}`: {n} won deals, {n} invoices, all in line",
            f"{run.wall:.1f} s",
            f"{run.cpu:.1f} s",
            fmt_bytes(run.peak),
            f"{len(calls)} ({pages} pages of 500)",
            str(limited),
        ],
        [
            "`audit --deep` (one GET per invoice), at the limit's ceiling",
            f"≥ {deep / 60:.0f} min",
            "",
            "",
            f"{n + pages}",
            "",
        ],
    ]
    return rows, run.wall < 60 and limited == 0 and pages == -(-n // 500)


# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# 5. A lost state file against a Fortnox limefort has written to (issue 12)
# ---------------------------------------------------------------------------------------------


def rebuild_cost(customers: int, documents: int) -> tuple[list[list[str]], bool]:
    """A fresh state file, a Fortnox that already holds every customer and document: the
    first pass reads Fortnox's lists (pages of 500) and links everything; it creates nothing
    and searches no document one by one."""
    say(f"5/5 a lost state file: {customers} customers and {documents} documents in Fortnox...")
    with Sandbox(
        seed=7, companies=0, deals=0, fortnox_rate_limit=LIMIT, fortnox_rate_window=WINDOW
    ) as sb:
        ids = add_customers(sb, customers, 1)
        numbers = []
        for i, cid in enumerate(ids, start=1):
            numbers.append(
                sb.fortnox.add_customer(
                    {
                        "Name": f"Bänkbolaget {i} AB",
                        "OrganisationNumber": orgnr(i),
                        "ExternalReference": f"limego:company:{cid}",
                    }
                )
            )
        for i in range(documents):
            did = sb.limego.add_deal(
                company_id=ids[i % len(ids)], stage="won", name=f"Affär {i}", value="950.00"
            )
            sb.fortnox.add_invoice(
                {
                    "CustomerNumber": numbers[i % len(numbers)],
                    "ExternalInvoiceReference1": f"limego:deal:{did}",
                    "InvoiceRows": [{"Description": f"Affär {i}", "Price": Decimal("950.00")}],
                }
            )
        lf = Lf(sb, rate_limit=LIMIT, start="2000-01-01")
        mark = len(sb.fortnox.requests)
        run = lf.spawn("sync")
        calls = api_calls(sb, mark)
        limited = sb.fortnox.rate_limited
        made = Counter(c.method for c in calls)
        lists = sum(
            1 for c in calls if c.method == "GET" and c.path in ("/3/customers", "/3/invoices")
        )
        searches = sum(
            1 for c in calls if c.method == "GET" and "externalinvoicereference1" in c.query
        )
        docs_after = len(sb.fortnox.invoices)
        custs_after = len(sb.fortnox.customers)
    want_lists = -(-documents // 500) + -(-customers // 500) + 1  # +1: the inactive list
    ok = (
        made["POST"] == 0
        and searches == 0
        and docs_after == documents
        and custs_after == customers
        and lists <= want_lists
        and limited == 0
    )
    rows = [
        [
            f"`sync` on a fresh state file: {customers} customers and {documents} invoices "
            "already in Fortnox",
            f"{run.wall:.0f} s",
            f"{run.cpu:.1f} s",
            fmt_bytes(run.peak),
            f"{lists} list pages (target ≤ {want_lists}), {searches} searches, "
            f"{made['PUT']} PUTs (one per customer linked), {made['POST']} POSTs",
            str(limited),
        ]
    ]
    return rows, ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    ap.add_argument("--only", choices=["1", "2", "3", "4", "5", "6"], help="run one part")
    args = ap.parse_args(argv)
    per_kind = 20 if args.quick else 100
    docs = 60 if args.quick else 300
    big = (5_000, 5_000, 1_000) if args.quick else (100_000, 100_000, 20_000)

    results = []
    ok = True
    if args.only in (None, "1"):
        rows, good = requests_per_record(per_kind)
        ok &= good
        results.append(
            "Fortnox requests per record (limit off)\n\n"
            + table(["kind", "requests/record", "requests", "per pass"], rows)
        )
    if args.only in (None, "2"):
        rows = []
        for kind in ("backfill", "first pass"):
            for latency in (0.0, 0.15):
                row, good = rate_row(kind, docs, latency)
                ok &= good
                rows.append(row)
        # Issue 26's pass: 20 new customers and 150 won deals (one contact each), measured over
        # the whole pass, first Fortnox request to last, against the exact bound.
        n26, c26 = (50, 7) if args.quick else (150, 20)
        for latency in (0.0, 0.15):
            row, good = rate_row("first pass", n26, latency, customers=c26, targets=(0.97, 0.95))
            ok &= good
            rows.append(row)
        results.append(
            f"{docs} documents at the real limit, sandbox limit and client limiter both "
            f"{LIMIT} per {WINDOW:.0f} s (limefort in a child process)\n\n"
            + table(
                [
                    "pass",
                    "added latency (both services)",
                    "documents",
                    "Fortnox requests",
                    "wall",
                    "fraction of the ceiling",
                    "busiest 5 s",
                    "HTTP 429",
                    "writes/new record",
                    "peak memory",
                ],
                rows,
            )
        )
    if args.only in (None, "3"):
        rows, good = pass_costs(*big)
        ok &= good
        results.append(
            "Cost of a pass (limit off, no latency; limefort in a child process)\n\n"
            + table(
                [
                    "pass",
                    "wall",
                    "CPU (limefort)",
                    "CPU (sandbox)",
                    "peak memory",
                    "Fortnox requests",
                ],
                rows,
            )
        )
    if args.only in (None, "4"):
        rows, good = audit_cost(1_000 if args.quick else 5_000)
        ok &= good
        results.append(
            f"`audit` at the real limit (sandbox and client limiter {LIMIT} per "
            f"{WINDOW:.0f} s; limefort in a child process)\n\n"
            + table(
                ["run", "wall", "CPU (limefort)", "peak memory", "Fortnox requests", "429s"],
                rows,
            )
        )
    if args.only in (None, "6"):
        rows, good = idle_fleet(20 if args.quick else 1_000)
        ok &= good
        results.append(
            "An idle fleet: passes with nothing to do, each a new process as cron or a timer "
            "starts it (CPU is the child's own, user + system)\n\n"
            + table(["run", "passes", "CPU per pass", "CPU in all", "requests per pass"], rows)
        )
    if args.only in (None, "5"):
        rows, good = rebuild_cost(*((500, 2_000) if args.quick else (5_000, 20_000)))
        ok &= good
        results.append(
            f"A lost state file, at the real limit ({LIMIT} per {WINDOW:.0f} s; limefort in a "
            "child process)\n\n"
            + table(
                ["pass", "wall", "CPU (limefort)", "peak memory", "Fortnox requests", "429s"], rows
            )
        )
    print(f"limefort bench on {os.cpu_count()} cores, Python {sys.version.split()[0]}\n")
    print("\n\n".join(results))
    print("\nall targets met" if ok else "\nSOME TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
