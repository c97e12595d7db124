"""Fixtures for the local platform tests (also used by the Emissary and webhook tests).

- `live_platform`: the real app served by uvicorn on an ephemeral loopback port in a background
  thread (tests/platform_fixture.py); yields a `LivePlatform(url, token, data_dir, app)`. Options for
  `create_app` can be given with `@pytest.mark.platform_options(workers=1, ...)`.
- `client`: a synchronous `httpx.Client` for it with the Replicate `Authorization` header.
- `wait`: the `wait_for(client, path, timeout=, until=)` helper.

Plain helpers (`TOKEN`, `serve_app`, `wait_for`) live in `tests/local/helpers.py`.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.local.helpers import serve_app, wait_for
from tests.platform_fixture import LivePlatform


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


@pytest.fixture
def wait() -> Any:
    """The `wait_for(client, path, timeout=, until=)` helper."""
    return wait_for
