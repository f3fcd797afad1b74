"""`limefort backup`: an online copy of the state file, safe while a pass runs."""

from __future__ import annotations

from pathlib import Path

from limefort.commands.common import App
from limefort.core.errors import EX_OK


def backup(app: App, path: Path, force: bool) -> int:
    from limefort.state.backup import backup as write_backup

    cfg = app.config()
    done = write_backup(cfg.state.path, path, force=force)
    app.echo(f"Backed up {cfg.state.path} to {done.path} ({done.size} bytes, mode {done.mode:04o})")
    return EX_OK
