"""The waiter stops waiting on a provider whose every poll fails for `unreachable_after` seconds.

Time here is the waiter's injected clock, moved by each poll the provider answers (`STEP`
seconds a poll), so "fails for 0.5 s" means a number of polls, whatever the machine's load.
"""
from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from jobrunner.errors import ProviderUnreachableError, TransportError
from jobrunner.providers.base import RUNNING, SUCCEEDED, JobStatus, RemoteJob
from jobrunner.reconcile.waiter import Waiter

STEP = 0.0625  # clock seconds per poll (exact in binary: sums of it compare exactly)


class FlakyProvider:
    """Answers `get` per a script: "fail" raises a transport error, a status answers with it.

    `now` is the clock the waiter reads: each poll moves it by STEP.
    """

    def __init__(self, script: list[str], unreachable_after: float) -> None:
        self.script = script
        self.http = SimpleNamespace(unreachable_after=unreachable_after)
        self.calls = 0
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def get(self, job_kind: str, remote_id: str, *, project_id: str | None = None) -> RemoteJob:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        self.now += STEP
        if step == "fail":
            raise TransportError("local: get prediction p1 failed: could not connect", provider="local")
        return RemoteJob(id=remote_id, job_kind=job_kind, status=JobStatus(step))


class Pool:
    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def get(self, name: str) -> Any:
        return self.provider


def test_every_poll_failing_for_the_window_fails_the_wait_with_a_clear_error() -> None:
    provider = FlakyProvider(["fail"], unreachable_after=0.5)

    async def main() -> ProviderUnreachableError:
        waiter = Waiter(Pool(provider), min_interval=0.02, max_interval=0.05, clock=provider.clock)
        # A real-time ceiling only against a waiter that never gives up (a hang), far above the
        # fraction of a second that 9 polls take.
        with pytest.raises(ProviderUnreachableError) as info:
            await asyncio.wait_for(waiter.wait("local", "prediction", "p1"), timeout=60)
        await waiter.aclose()
        return info.value

    err = asyncio.run(main())
    # The streak starts at the first failed poll (clock 0.0625); the window ends at the poll where
    # 0.5 s have passed since: the 9th (clock 0.5625). Not one poll earlier, not one later.
    assert provider.calls == 9
    assert str(err).startswith("local: stopped waiting for 1 job(s): every poll failed for 0.5s ")
    assert "(providers.local.unreachable_after is 0.5s)" in str(err)
    assert "last error: local: get prediction p1 failed: could not connect" in str(err)
    assert "run `jobrunner apply` again" in (err.hint or "")


def test_an_answer_inside_the_window_starts_it_again() -> None:
    # 8 failed polls in a row (0.4375 s from the first), an answer, 8 more, then the job finishes:
    # never 0.5 s in a row (9 failed polls would end the wait, as above).
    script = ["fail"] * 8 + [RUNNING] + ["fail"] * 8 + [SUCCEEDED]
    provider = FlakyProvider(script, unreachable_after=0.5)

    async def main() -> RemoteJob:
        waiter = Waiter(Pool(provider), min_interval=0.02, max_interval=0.02, clock=provider.clock)
        job = await asyncio.wait_for(waiter.wait("local", "prediction", "p1"), timeout=60)
        await waiter.aclose()
        return job

    assert asyncio.run(main()).status == SUCCEEDED
