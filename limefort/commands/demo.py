"""`limefort demo`: the real sync against the sandbox servers, in one command, no accounts.

Pass 1 brings a seeded CRM into an empty Fortnox; then a user edits a phone number, wins a
deal and signs a new customer in Lime Go, and pass 2 does only what those changes need.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from limefort import config as config_mod
from limefort.commands.common import App
from limefort.core.errors import EX_OK
from limefort.core.privacy import shown
from limefort.engine.runner import one_pass, summarise
from limefort.engine.sync import PassResult, Syncer
from limefort.state.store import Store
from limefort_sandbox import Sandbox

Echo = Callable[[str], None]


def run_demo(
    echo: Echo, *, companies: int = 30, deals: int = 40, seed: int = 2026, keep: Path | None = None
) -> int:
    workdir = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="limefort-demo-"))
    # Private, like any state directory (limefort refuses a group- or world-writable one).
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    echo("Starting the sandbox servers (Lime Go and Fortnox on loopback)...")
    with Sandbox(seed=seed, companies=companies, deals=deals, recent_days=30) as sb:
        cfg_path = workdir / "limefort.toml"
        cfg_path.write_text(sb.config_toml(str(workdir / "limefort.db")), encoding="utf-8")
        cfg_path.chmod(0o600)
        cfg = config_mod.load(cfg_path, explicit=True)
        echo(f"  Lime Go: {sb.limego_url}   Fortnox: {sb.fortnox_url}   config: {cfg_path}")
        n_cust = len(sb.limego.customer_ids())
        echo(
            f"  The CRM holds {len(sb.limego.companies)} companies ({n_cust} customers) and "
            f"{len(sb.limego.deals)} deals; sync.start = {cfg.sync.start[:10]}, "
            f"deal_target = {cfg.sync.deal_target}."
        )

        echo(
            "\n== Pass 1: first sync into an empty Fortnox (Fortnox's 25 requests / 5 s limit is on)"
        )
        t0 = time.monotonic()
        code1 = _pass(cfg, echo)
        echo(f"   exit code {code1}, {time.monotonic() - t0:.1f} s")
        _show_fortnox(sb, echo)

        echo(
            "\n== Meanwhile in Lime Go: a phone number changes, a deal is won, a new customer signs"
        )
        changed = _make_changes(sb, echo)
        sb.fortnox.reset_log()

        echo("\n== Pass 2: only what changed")
        code2 = _pass(cfg, echo)
        calls = [
            f"{r.method} {r.path}" for r in sb.fortnox.requests if not r.path.startswith("/oauth")
        ]
        echo(f"   exit code {code2}; Fortnox requests in pass 2: {len(calls)}")
        for c in calls:
            echo(f"     {c}")
        echo(
            f"   ({changed} changes in Lime Go -> {len(calls)} Fortnox requests; unchanged records cost none)"
        )

        echo("\n== Pass 3: nothing changed")
        sb.fortnox.reset_log()
        code3 = _pass(cfg, echo)
        echo(f"   exit code {code3}; Fortnox requests in pass 3: {sb.fortnox.count()}")
        _show_kept_warnings(cfg, echo)

    echo(f"\nState kept in {workdir}: try `limefort --config {cfg_path} status`" if keep else "")
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    echo(
        "Next: `limefort sandbox` runs these servers for you to experiment; README.md explains "
        "how to point limefort at real Lime Go and Fortnox accounts."
    )
    # Quarantined records are part of the show (the seed holds a few bad ones): not a failure.
    return 0 if max(code1, code2, code3) <= 1 else max(code1, code2, code3)


def _show_kept_warnings(cfg: config_mod.Config, echo: Echo) -> None:
    """What `limefort status` keeps on records Fortnox holds other than Lime Go has them
    (design rule 15): the demo's state file is gone afterwards, so it is shown here."""
    store = Store.open_read_only(cfg.state.path)
    try:
        kept = [w for w in store.all_warnings() if w.field]
    finally:
        store.close()
    if kept:
        echo("   kept on the record until it changes in Lime Go (`limefort status`):")
    for w in kept[:5]:
        echo(f"   ! {w.key} {shown(w.text)}")


def _pass(cfg: config_mod.Config, echo: Echo) -> int:
    def report(result: PassResult, dry: bool) -> None:
        echo("   " + summarise(dict(result.counts)))
        for key, problem in result.problems[:8]:
            echo(f"   ! {key} {problem}")
        if len(result.problems) > 8:
            echo(f"   ! ... and {len(result.problems) - 8} more (see `limefort status`)")

    def work(s: Syncer) -> PassResult:
        return s.run_pass()

    return one_pass(cfg, command="demo", work=work, echo=lambda _: None, report=report)


def _show_fortnox(sb: Sandbox, echo: Echo) -> None:
    customers = sb.fortnox.customers
    echo(f"\n   Fortnox now holds {len(customers)} customers:")
    echo(f"   {'Nr':>4}  {'Name':<34} {'Org.nr':<12} {'Phone':<16} {'City':<14}")
    for c in customers[:12]:
        echo(
            f"   {c.get('CustomerNumber', ''):>4}  {_cut(c.get('Name'), 34):<34} "
            f"{_cut(c.get('OrganisationNumber'), 12):<12} {_cut(c.get('Phone1'), 16):<16} "
            f"{_cut(c.get('City'), 14):<14}"
        )
    if len(customers) > 12:
        echo(f"   ... and {len(customers) - 12} more")
    docs: list[tuple[str, dict[str, Any]]] = [("invoice", d) for d in sb.fortnox.invoices] + [
        ("order", d) for d in sb.fortnox.orders
    ]
    echo(f"\n   and {len(docs)} documents for deals won since sync.start:")
    echo(
        f"   {'Kind':<8}{'Nr':>4}  {'Cust':>4}  {'Amount':>12} {'Cur':<4} {'Er referens':<20} {'Vår referens':<20}"
    )
    for kind, d in docs[:12]:
        echo(
            f"   {kind:<8}{d.get('DocumentNumber', ''):>4}  {d.get('CustomerNumber', ''):>4}  "
            f"{str(d.get('Total', '')):>12} {d.get('Currency', '') or '':<4} "
            f"{_cut(d.get('YourReference'), 20):<20} {_cut(d.get('OurReference'), 20):<20}"
        )


def _make_changes(sb: Sandbox, echo: Echo) -> int:
    lg = sb.limego
    changes = 0
    customers = lg.customer_ids()
    if customers:
        cid = customers[0]
        lg.update_company(cid, phone="08-555 12 34")
        echo(f"   phone of {lg.companies[cid]['attributes']['name']!r} -> 08-555 12 34")
        changes += 1
    open_deals = [
        d
        for d, res in lg.deals.items()
        if res["relationships"]["stage"]["data"]["id"] not in _won_ids(sb)
        and res["relationships"]["company"]["data"]
    ]
    if open_deals:
        lg.win_deal(open_deals[0])
        echo(f"   deal {lg.deals[open_deals[0]]['attributes']['name']!r} won")
        changes += 1
    new_id = lg.add_company(
        name="Nyköpings Glasbruk AB",
        business_id="556677-8899",
        status="customer",
        phone="0155-12 34 56",
        street="Brukslagargatan 3",
        postal_code="611 30",
        city="Nyköping",
        country="Sverige",
    )
    echo(f"   new customer {lg.companies[new_id]['attributes']['name']!r}")
    return changes + 1


def _won_ids(sb: Sandbox) -> set[str]:
    return {sid for sid, s in sb.limego.stages.items() if s["attributes"]["category"] == "won"}


def _cut(v: Any, n: int) -> str:
    s = "" if v is None else str(v)
    return s if len(s) <= n else s[: n - 1] + "…"


def serve_sandbox(
    app: App,
    companies: int,
    deals: int,
    seed: int,
    port_limego: int,
    port_fortnox: int,
    no_rate_limit: bool,
    write_config: Path | None,
    state: str,
) -> int:
    from limefort.commands.init import write_new_private

    if write_config and write_config.exists():  # before starting anything
        write_new_private(write_config, "", what="--write-config")
    sb = Sandbox(
        seed=seed,
        companies=companies,
        deals=deals,
        port_limego=port_limego,
        port_fortnox=port_fortnox,
        fortnox_rate_limit=None if no_rate_limit else 25,
    )
    sb.start()
    try:
        text = sb.config_toml(state)
        if write_config:
            write_new_private(write_config, text, what="--write-config")
            click.echo(f"# config written to {write_config}", err=True)
        click.echo(text)
        click.echo(
            f"# Lime Go sandbox on {sb.limego_url}, Fortnox sandbox on {sb.fortnox_url}. Ctrl-C stops.",
            err=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return EX_OK
    finally:
        sb.stop()
