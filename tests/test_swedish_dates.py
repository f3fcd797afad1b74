"""Dates a person types are Swedish calendar days (issue 23, DESIGN rule 16): `sync.start`,
`backfill --from/--to` and `audit --from/--to` are days in `sync.timezone`, DST-correct."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from limefort import config as config_mod
from limefort_sandbox.seed import iso
from tests.conftest import Lf

STHLM = ZoneInfo("Europe/Stockholm")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=STHLM)


@pytest.mark.parametrize(
    "typed, instant",
    [
        ("2026-11-01", datetime(2026, 10, 31, 23, 0, tzinfo=UTC)),  # winter: UTC+1
        ("2026-07-01", datetime(2026, 6, 30, 22, 0, tzinfo=UTC)),  # summer: UTC+2
        ("2026-07-01T08:00", datetime(2026, 7, 1, 6, 0, tzinfo=UTC)),  # wall-clock time
        ("2026-07-01T08:00Z", datetime(2026, 7, 1, 8, 0, tzinfo=UTC)),  # an offset wins
    ],
)
def test_a_typed_date_is_a_day_in_stockholm(typed: str, instant: datetime) -> None:
    assert datetime.fromisoformat(config_mod.parse_start("x", typed, STHLM)) == instant


@pytest.mark.parametrize(
    "day, last",
    [
        ("2026-03-29", datetime(2026, 3, 29, 21, 59, 59, 999999, tzinfo=UTC)),  # 23 hours
        ("2026-10-25", datetime(2026, 10, 25, 22, 59, 59, 999999, tzinfo=UTC)),  # 25 hours
    ],
)
def test_a_whole_day_across_a_dst_change(day: str, last: datetime) -> None:
    assert config_mod.end_of_day(day, STHLM) == last


def test_an_unknown_time_zone_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    p = tmp_path / "limefort.toml"
    p.write_text('[sync]\ntimezone = "Europe/Stokholm"\n', encoding="utf-8")
    with pytest.raises(config_mod.ConfigErrors) as exc:
        config_mod.load(p, environ={}, explicit=True)
    assert "sync.timezone" in str(exc.value)


def _win_at(sb: Any, when: datetime, name: str) -> str:
    cid = sb.limego.add_company(name=f"{name} AB", status="customer")
    return str(
        sb.limego.add_deal(
            company_id=cid, stage="won", name=name, value="100", updated_at=iso(when)
        )
    )


def test_sync_start_is_midnight_in_stockholm(make_sandbox: Any, tmp_path: Path) -> None:
    sb = make_sandbox(seed=41, companies=0, deals=0)
    after_midnight = _win_at(sb, local(2026, 11, 1, 0, 30), "Natt")
    evening_before = _win_at(sb, local(2026, 10, 31, 22, 0), "Kväll")
    lf = Lf(sb, tmp_path, start="2026-11-01")
    r = lf.run("sync")
    assert r.code == 0, r.err
    refs = {d["ExternalInvoiceReference1"] for d in sb.fortnox.invoices}
    assert refs == {f"limego:deal:{after_midnight}"}, (evening_before, refs)


def test_backfill_and_audit_windows_are_stockholm_days_across_spring_forward(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb = make_sandbox(seed=42, companies=0, deals=0)
    late = _win_at(sb, local(2026, 3, 29, 23, 30), "Sent")  # 21:30 UTC, on the 29th
    next_day = _win_at(sb, local(2026, 3, 30, 0, 10), "Nästa")  # 22:10 UTC, on the 29th in UTC
    early = _win_at(sb, local(2026, 3, 29, 0, 20), "Tidig")  # 23:20 UTC on the 28th
    lf = Lf(sb, tmp_path, start="now")
    assert lf.run("sync").code == 0  # records them all as won before start
    r = lf.run("backfill", "--from", "2026-03-29", "--to", "2026-03-29", "--yes")
    assert r.code == 0, r.err
    refs = {d["ExternalInvoiceReference1"] for d in sb.fortnox.invoices}
    assert refs == {f"limego:deal:{late}", f"limego:deal:{early}"}, (next_day, refs)
    # audit's window is the same day: the two invoiced deals, nothing missing in it.
    r = lf.run("audit", "--from", "2026-03-29", "--to", "2026-03-29", "--json")
    assert r.code == 0, r.out + r.err
