"""Helpers of the local platform tests, imported as `tests.local.helpers` (fixtures are in conftest.py).

- `TOKEN`: the platform token the tests serve with.
- `serve_app(data_dir, token, **options)`: the real app served on an ephemeral loopback port, as a
  context manager (tests/platform_fixture.py), for tests that restart a platform on one data directory.
- `wait_for(client, path, timeout=, until=)`: poll a Replicate job until it reaches a status.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import httpx

from tests.platform_fixture import LivePlatform, serve_platform

TOKEN = "test-token-0123456789"


def serve_app(data_dir: Path, token: str = TOKEN, **options: Any) -> contextlib.AbstractContextManager[LivePlatform]:
    return serve_platform(data_dir, token, **options)


def wait_for(
    client: httpx.Client,
    path: str,
    *,
    timeout: float = 15.0,
    until: tuple[str, ...] = ("succeeded", "failed", "canceled", "aborted"),
) -> dict[str, Any]:
    """Poll a job until its status is in `until`; returns its JSON."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path).json()
        if body["status"] in until or time.monotonic() > deadline:
            return body
        time.sleep(0.02)
