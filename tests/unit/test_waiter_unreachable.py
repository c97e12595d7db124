"""The waiter stops waiting on a provider whose every poll fails for `unreachable_after` seconds."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from jobrunner.errors import ProviderUnreachableError, TransportError
from jobrunner.providers.base import RUNNING, SUCCEEDED, RemoteJob
from jobrunner.reconcile.waiter import Waiter


class FlakyProvider:
    """Answers `get` per a script: "fail" raises a transport error, a status answers with it."""

    def __init__(self, script: list[str], unreachable_after: float) -> None:
        self.script = script
        self.http = SimpleNamespace(unreachable_after=unreachable_after)
        self.calls = 0

    async def get(self, job_kind: str, remote_id: str, *, project_id: str | None = None) -> RemoteJob:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if step == "fail":
            raise TransportError("local: get prediction p1 failed: could not connect", provider="local")
        return RemoteJob(id=remote_id, job_kind=job_kind, status=step)


class Pool:
    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def get(self, name: str) -> Any:
        return self.provider


def test_every_poll_failing_for_the_window_fails_the_wait_with_a_clear_error() -> None:
    provider = FlakyProvider(["fail"], unreachable_after=0.5)

    async def main() -> tuple[float, ProviderUnreachableError]:
        waiter = Waiter(Pool(provider), min_interval=0.02, max_interval=0.05)
        started = time.monotonic()
        with pytest.raises(ProviderUnreachableError) as info:
            await asyncio.wait_for(waiter.wait("local", "prediction", "p1"), timeout=5)
        await waiter.aclose()
        return time.monotonic() - started, info.value

    took, err = asyncio.run(main())
    assert 0.5 <= took < 1.5
    assert str(err).startswith("local: stopped waiting for 1 job(s): every poll failed for ")
    assert "(providers.local.unreachable_after is 0.5s)" in str(err)
    assert "last error: local: get prediction p1 failed: could not connect" in str(err)
    assert "run `jobrunner apply` again" in (err.hint or "")
    assert provider.calls >= 3


def test_an_answer_inside_the_window_starts_it_again() -> None:
    # Fails for ~0.3 s, answers once, fails ~0.3 s more, then the job finishes: never 0.5 s in a row.
    script = ["fail"] * 6 + [RUNNING] + ["fail"] * 6 + [SUCCEEDED]
    provider = FlakyProvider(script, unreachable_after=0.5)

    async def main() -> RemoteJob:
        waiter = Waiter(Pool(provider), min_interval=0.05, max_interval=0.05)
        job = await asyncio.wait_for(waiter.wait("local", "prediction", "p1"), timeout=5)
        await waiter.aclose()
        return job

    assert asyncio.run(main()).status == SUCCEEDED
