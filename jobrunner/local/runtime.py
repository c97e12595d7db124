"""The running platform's runtime files in its data directory: `server.json` (where it listens,
while it runs) and `last_port` (kept after exit, so auto-start asks for the same port again).

Apart from `jobrunner.local.server` so that the commands that only find or start a platform
(the `local` provider's auto-start, on every command's path) read them without importing uvicorn.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

RUNTIME_FILE = "server.json"
LAST_PORT_FILE = "last_port"  # kept after exit: auto-start asks for the same port again


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1"
    return f"http://{shown}:{port}"


def write_runtime(data_dir: Path, host: str, port: int) -> dict[str, Any]:
    info = {"pid": os.getpid(), "host": host, "port": port, "url": _url(host, port), "started_at": time.time()}
    tmp = data_dir / f".{RUNTIME_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(info))
    os.replace(tmp, data_dir / RUNTIME_FILE)
    (data_dir / LAST_PORT_FILE).write_text(str(port))
    return info


def read_last_port(data_dir: Path) -> int | None:
    try:
        port = int((data_dir / LAST_PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return port if 0 < port < 65536 else None


def read_runtime(data_dir: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((data_dir / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "pid" in info and "url" in info else None
