"""Fixtures for the local platform tests (also used by the Emissary and webhook tests).

- `live_platform`: the real app served by uvicorn on an ephemeral loopback port in a background
  thread; yields a `LivePlatform(url, token, data_dir, app)`. Options for `create_app` can be
  given with `@pytest.mark.platform_options(workers=1, ...)`.
- `client`: a synchronous `httpx.Client` for it with the Replicate `Authorization` header.
- `serve_app(data_dir, token, **options)`: the same as a context manager, for tests that restart
  a platform on one data directory.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import uvicorn

from jobrunner.local.app import create_app
from jobrunner.local.server import uvicorn_config

TOKEN = "test-token-0123456789"


@dataclass
class LivePlatform:
    url: str
    token: str
    data_dir: Path
    app: Any

    @property
    def platform(self) -> Any:
        return self.app.state.platform

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}", **headers}, timeout=30.0
        )

    def set_faults(self, **knobs: Any) -> dict[str, Any]:
        with self.client() as c:
            resp = c.post("/_admin/faults", json=knobs)
            resp.raise_for_status()
            return resp.json()


@contextlib.contextmanager
def serve_app(data_dir: Path, token: str = TOKEN, **options: Any) -> Iterator[LivePlatform]:
    app = create_app(data_dir, token, **options)
    config = uvicorn_config(app, "127.0.0.1", 0)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "platform_options(**kw): options for create_app in the live_platform fixture")


@pytest.fixture
def live_platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LivePlatform]:
    marker = request.node.get_closest_marker("platform_options")
    options: dict[str, Any] = {"min_cancel_after": 0.2}
    if marker is not None:
        options.update(marker.kwargs)
    with serve_app(tmp_path / "platform", **options) as live:
        yield live


@pytest.fixture
def client(live_platform: LivePlatform) -> Iterator[httpx.Client]:
    with live_platform.client() as c:
        yield c


def wait_for(client: httpx.Client, path: str, *, timeout: float = 15.0, until: tuple[str, ...] = ("succeeded", "failed", "canceled", "aborted")) -> dict[str, Any]:
    """Poll a job until its status is in `until`; returns its JSON."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path).json()
        if body["status"] in until or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


@pytest.fixture
def wait() -> Any:
    """The `wait_for(client, path, timeout=, until=)` helper."""
    return wait_for
