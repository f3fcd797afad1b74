"""Issue 19, item 7: dependency floors past known advisories, and a constraints file that pins
every runtime dependency to a version those floors allow."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
# Advisories fixed in these releases (requests: CVE-2024-47081, .netrc credentials leak;
# urllib3: CVE-2025-50181, redirects not disabled when asked at the PoolManager).
# urllib3 2.6.0 bounds decompression of chained encodings (`Content-Encoding: gzip, gzip`:
# CVE-2025-66471, CVE-2025-66418) and 2.6.3 of redirect bodies (CVE-2026-21441): below them a
# 1.8 KB answer grew past 2 GB before limefort's 32 MiB cap could see it.
FLOORS = {"requests": Version("2.32.4"), "urllib3": Version("2.6.3")}
JUST_BELOW = {"requests": Version("2.32.3"), "urllib3": Version("2.6.2")}


def install_requires() -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    lines = cfg["options"]["install_requires"].strip().splitlines()
    return [Requirement(line.strip()) for line in lines if line.strip()]


def constraints() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
        assert m, f"constraints.txt: not an exact pin: {line!r}"
        pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    return pins


def test_floors_are_past_the_known_advisories() -> None:
    reqs = {canonicalize_name(r.name): r for r in install_requires()}
    for name, floor in FLOORS.items():
        spec = reqs[name].specifier
        assert spec.contains(floor), f"{name} does not allow {floor}"
        assert not spec.contains(JUST_BELOW[name]), f"{name} still allows {JUST_BELOW[name]}"


def test_constraints_pin_every_runtime_dependency_within_its_range() -> None:
    pins = constraints()
    for req in install_requires():
        name = canonicalize_name(req.name)
        assert name in pins, f"constraints.txt does not pin {req.name}"
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {req}"
    for name, floor in FLOORS.items():
        assert pins[name] >= floor


def test_the_install_steps_use_the_constraints() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    installs = re.findall(r"pip install[^\n`]*", readme)
    assert installs and all("-c constraints.txt" in line for line in installs), installs
