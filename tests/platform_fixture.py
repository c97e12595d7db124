"""The real local platform served by uvicorn on an ephemeral loopback port, for tests.

One helper for every suite that needs a live platform (local platform, provider and end-to-end
tests): `serve_platform(data_dir, token, **options)` runs `jobrunner.local.app.create_app` with
the platform's own uvicorn settings in a background thread, waits until it listens, yields a
`LivePlatform`, and shuts it down afterwards.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from jobrunner.local.app import create_app
from jobrunner.local.server import uvicorn_config

START_TIMEOUT_S = 20.0


@dataclass
class LivePlatform:
    url: str
    token: str
    data_dir: Path
    app: Any = None

    @property
    def platform(self) -> Any:
        """The platform core (`jobrunner.local.platform.Platform`)."""
        return self.app.state.platform

    @property
    def emissary(self) -> Any:
        """The Emissary wire's service (`jobrunner.local.emissary.service.EmissaryService`)."""
        return self.app.state.emissary

    def client(self, **headers: str) -> httpx.Client:
        """A client speaking the Replicate wire (Bearer token) to this platform."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}", **headers}, timeout=30.0
        )

    def set_faults(self, **knobs: Any) -> dict[str, Any]:
        with self.client() as c:
            resp = c.post("/_admin/faults", json=knobs)
            resp.raise_for_status()
            return resp.json()


@contextlib.contextmanager
def serve_platform(data_dir: Path, token: str, **options: Any) -> Iterator[LivePlatform]:
    """Serve a platform on `data_dir` (options go to create_app) until the block ends."""
    app = create_app(data_dir, token, **options)
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", 0))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the local platform did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LivePlatform(f"http://127.0.0.1:{port}", token, data_dir, app)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
