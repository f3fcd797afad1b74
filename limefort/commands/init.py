"""`limefort init`: write the annotated config template shipped inside the package, mode 0600,
never over an existing file. On a terminal it asks for the few values that have no default and
writes them into the template's lines, comments kept."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import click

from limefort import config as config_mod
from limefort.commands.common import App
from limefort.core.errors import (
    EX_OK,
    ConfigError,
)


@dataclass(frozen=True)
class Question:
    section: str
    key: str
    text: str
    secret: bool = False
    # Optional: an empty answer leaves the template's line as it is (a placeholder the user
    # fills later, or the environment variable the template points to).
    optional: bool = False
    check: Callable[[str, str], object] | None = None


QUESTIONS = (
    Question(
        "limego",
        "base_url",
        "Lime Go instance URL (e.g. https://acme.lime-go.com)",
        check=config_mod.check_url,
    ),
    Question("limego", "client_id", "Lime Go API client id"),
    Question(
        "limego",
        "client_secret",
        "Lime Go API client secret (Enter: set LIMEFORT_LIMEGO_CLIENT_SECRET instead)",
        secret=True,
        optional=True,
    ),
    Question("fortnox", "client_id", "Fortnox integration client id"),
    Question(
        "fortnox",
        "client_secret",
        "Fortnox integration client secret (Enter: set LIMEFORT_FORTNOX_CLIENT_SECRET instead)",
        secret=True,
        optional=True,
    ),
    Question(
        "fortnox",
        "tenant_id",
        "Fortnox tenant id (Enter: later; `limefort auth fortnox --service-account` prints it)",
        optional=True,
    ),
)

# (question, secret, optional) -> the answer ("" for none).
Ask = Callable[[Question], str]

_SECTION = re.compile(r"^\s*\[([^\]]+)\]")
_KEY_LINE = re.compile(r"^(?:#\s*)?([A-Za-z0-9_]+)\s*=")


def fill(template: str, answers: Mapping[tuple[str, str], str]) -> str:
    """The template with each answered key's line replaced by `key = "answer"` (a commented-out
    line such as `# tenant_id = ""` is uncommented). Every other line, comments included, stays."""
    section: str | None = None
    out: list[str] = []
    done: set[tuple[str, str]] = set()
    for line in template.splitlines(keepends=True):
        m = _SECTION.match(line)
        if m:
            section = m.group(1).strip()
        k = _KEY_LINE.match(line)
        if k and section is not None:
            where = (section, k.group(1))
            if where in answers and where not in done:
                # JSON's string escapes are valid in a TOML basic string.
                line = f"{k.group(1)} = {json.dumps(answers[where], ensure_ascii=False)}\n"
                done.add(where)
        out.append(line)
    missing = set(answers) - done
    if missing:  # a template without a line for a question is a packaging bug
        raise RuntimeError(f"the config template has no line for {sorted(missing)}")
    return "".join(out)


def ask_all(ask: Ask) -> dict[tuple[str, str], str]:
    answers: dict[tuple[str, str], str] = {}
    for q in QUESTIONS:
        value = ask(q).strip()
        if value:
            answers[(q.section, q.key)] = value
    return answers


def write_new_private(path: Path, text: str, *, what: str = "config") -> None:
    """Create `path` with mode 0600 holding `text`; never replace a file that exists (O_EXCL:
    also safe against a second init racing this one)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(
            what,
            f"{path.absolute()} already exists; it was left as it is "
            "(edit it, remove it first, or name another file with --config)",
        ) from None
    except OSError as exc:
        raise ConfigError(what, f"cannot create {path.absolute()}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def run_init(path: Path, *, ask: Ask | None) -> list[str]:
    """Write the config; ask the questions first when `ask` is given (a terminal). Returns the
    keys that still hold an example value, for the message that says what to edit."""
    if path.exists():  # before asking anything: the answers would be lost
        write_new_private(path, "")
    text = config_mod.template_text()
    if ask is not None:
        text = fill(text, ask_all(ask))
    write_new_private(path, text)
    return remaining_placeholders(path)


def remaining_placeholders(path: Path) -> list[str]:
    try:
        config_mod.load(path, explicit=True)
    except config_mod.ConfigErrors as exc:
        return [p.key for p in exc.problems]
    except ConfigError as exc:
        return [exc.key]
    return []


def init_command(app: App, no_input: bool) -> int:
    from limefort.commands.init import run_init

    path = app.config_path or config_mod.DEFAULT_PATH

    def ask(q: Question) -> str:
        while True:
            value: str = click.prompt(
                q.text,
                default="" if q.optional else None,
                show_default=False,
                hide_input=q.secret,
                err=True,
            )
            if q.check is None or not value.strip():
                return value
            try:
                q.check(f"{q.section}.{q.key}", value.strip())
                return value
            except ConfigError as exc:
                click.echo(f"  {exc}", err=True)

    left = run_init(path, ask=None if no_input or not sys.stdin.isatty() else ask)
    click.echo(f"Wrote {path.absolute()} (mode 0600).")
    if left:
        click.echo(f"Still to fill in there (or in LIMEFORT_<SECTION>_<KEY>): {', '.join(left)}.")
    click.echo(
        "Next: `limefort check`, then `limefort auth fortnox --service-account` if the "
        "Fortnox tenant id is not set yet (README: Credentials)."
    )
    return EX_OK
