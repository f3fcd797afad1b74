"""This installation's id: what it stamps on the documents it makes (DESIGN rule 14).

The id lives in `limefort.id` beside the state file (the directory a deployment keeps:
systemd's StateDirectory, a Kubernetes volume), outside the state file, so that a lost or
deleted state file does not make this machine a stranger to its own invoices. It is mirrored
into the state file's meta, so a backup restored onto a new machine carries its own id. It
never comes from the host: a Kubernetes CronJob's pod has a new hostname every run.

Resolution: the id file; else the state file's id (a restored backup); else a new random one.
Whatever was missing is written, so both agree afterwards. A copied VM copies the file too:
limefort then cannot tell the copy from the original (docs/operations.md: delete `limefort.id` on a clone).
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from limefort.core.errors import StateError
from limefort.core.keys import INSTALLATION_ID
from limefort.state.files import open_private
from limefort.state.store import Store

log = logging.getLogger("limefort")

ID_FILE = "limefort.id"
META_KEY = "installation_id"


def id_path(state_path: Path) -> Path:
    return state_path.parent / ID_FILE


def read_id_file(path: Path) -> str | None:
    try:
        fd = open_private(path, os.O_RDONLY, create=False, what="installation id file")
    except FileNotFoundError:
        return None
    with os.fdopen(fd, encoding="ascii", errors="replace") as f:
        text = f.read(64).strip()
    if not INSTALLATION_ID.fullmatch(text):
        raise StateError(
            f"{path}: not a limefort installation id (12 hex digits); remove the file and "
            "limefort makes a new one"
        )
    return text


def _write_id_file(path: Path, installation: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        log.warning(
            "%s: cannot write the installation id (%s); it is kept in the state file only",
            path,
            exc.strerror or exc,
        )
        return
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(installation + "\n")


def resolve(store: Store, state_path: Path | None, *, write: bool = True) -> str:
    """This installation's id. `write=False` (a dry run): nothing is written anywhere."""
    path = id_path(state_path) if state_path is not None else None
    from_file = read_id_file(path) if path is not None else None
    from_state = store.get_meta(META_KEY)
    installation = from_file or from_state or secrets.token_hex(6)
    if not write:
        return installation
    if path is not None and from_file is None:
        _write_id_file(path, installation)
    if from_state != installation:
        if from_state:
            log.info(
                "the state file was written by installation %s; this is installation %s (its %s)",
                from_state,
                installation,
                ID_FILE,
            )
        with store.transaction():
            store.set_meta(META_KEY, installation)
    return installation
