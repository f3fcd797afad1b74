"""Build limefort on its dependency floors alone, the way the container image is built, and
replay the chained gzip bomb against it (`make floors`; .ci/run runs it after `make test`).

setup.cfg's floors are promises: `urllib3>=2.6.3` says that with 2.6.3 the 32 MiB cap holds
against `Content-Encoding: gzip, gzip`. `make test` runs on the pinned versions
(constraints.txt), which says nothing about the floors. This script:

1. turns every `name>=X` of install_requires into `name==X` (a name without a floor takes the
   newest release),
2. makes a venv without pip and installs limefort into it from outside (`pip --python`), as the
   Dockerfile does, then removes the pip that sqlite-utils pulls in, as the Dockerfile does,
3. runs, with that venv's python, the gzip-bomb replay below (`--replay`) and one `limefort
   demo` (a real sync against the sandbox servers).

It needs the package index (PyPI), as `make test` does for its own venv.
"""

from __future__ import annotations

import configparser
import gzip
import http.server
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAP = 32 << 20


def floors() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    out = []
    for line in cfg["options"]["install_requires"].split("\n"):
        line = line.strip()
        if not line:
            continue
        m = re.match(r"([A-Za-z0-9._-]+)\s*>=\s*([0-9][A-Za-z0-9.]*)", line)
        out.append(f"{m.group(1)}=={m.group(2)}" if m else line)
    return out


def build(venv: Path) -> Path:
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(floors()) + "\n")
        pins = f.name
    print("floors:", ", ".join(floors()), flush=True)
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    subprocess.run([*pip, "install", "-q", "--no-cache-dir", "-c", pins, str(ROOT)], check=True)
    # sqlite-utils requires pip (for its own `install` command); a pass never installs.
    subprocess.run([*pip, "uninstall", "-q", "--yes", "pip"], check=True)
    return python


def replay() -> None:
    """In the floors venv: the bomb is refused by limefort's HTTP client within the cap."""
    import urllib3

    from limefort.clients.http import HttpClient
    from limefort.clients.retries import RetrySettings
    from limefort.core.errors import TransientError

    print(f"urllib3 {urllib3.__version__}", flush=True)
    bomb = _bomb()
    print(f"the bomb: {len(bomb)} bytes, 2 GiB inflated", flush=True)
    # The machine's safety net, not the check: with a urllib3 below the floor the chain is
    # inflated whole (2 GiB) and this limit stops it with a MemoryError instead of the host.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip, gzip")
            self.send_header("Content-Length", str(len(bomb)))
            self.end_headers()
            self.wfile.write(bomb)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = HttpClient(
        f"http://127.0.0.1:{server.server_address[1]}",
        "floors",
        settings=RetrySettings(attempts=1, sleep=lambda s: None),
    )
    assert client.max_body == CAP, client.max_body  # limefort's own cap, as in a pass
    try:
        client.request("GET", "/bomb")
    except TransientError as exc:
        assert "larger than" in str(exc), exc
    except MemoryError:
        raise SystemExit(
            "the gzip bomb was inflated past 1 GiB: the urllib3 floor is too low"
        ) from None
    else:
        raise SystemExit("the gzip bomb was read whole: the urllib3 floor is too low")
    finally:
        server.shutdown()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB -> MiB
    print(f"refused within the cap; peak memory {peak} MiB", flush=True)
    if peak > 256:
        raise SystemExit(f"the bomb took {peak} MiB to refuse: the cap did not hold")
    try:
        import pip  # noqa: F401
    except ImportError:
        print("no pip in the venv", flush=True)
    else:
        raise SystemExit("pip is still in the venv")


def _bomb() -> bytes:
    """`Content-Encoding: gzip, gzip`: 2 GiB of zeros, gzipped twice, a few kilobytes. Built
    a MiB at a time, so making it costs no memory."""
    inner = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    zeros = bytes(1 << 20)
    layer = b"".join(inner.compress(zeros) for _ in range(2048)) + inner.flush()
    return gzip.compress(layer, 9)


def main() -> None:
    if sys.argv[1:] == ["--replay"]:
        replay()
        return
    venv = ROOT / ".venv-floors"
    python = build(venv)
    subprocess.run([str(python), str(Path(__file__)), "--replay"], check=True)
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([str(venv / "bin" / "limefort"), "demo"], check=True, cwd=d, timeout=600)
    print("floors: ok", flush=True)


if __name__ == "__main__":
    main()
