"""When an apply stops sending: Ctrl-C and the `--timeout` deadline, and a provider's refusal.

`StopControl`: a first Ctrl-C (`interrupt()`) or the wait deadline stops submitting new jobs and
stops waiting; jobs already created keep running on the provider and state says so. Inside a
task, `check()` and `guard()` raise `Stopped` once that has happened.

`ProviderStops`: a provider that refuses the credential (401/403) or the account (402) refuses
every request alike, so its first such answer stops all further requests to that provider in this
run (`ProviderStopped` inside the tasks that would have sent one), while other providers' jobs
carry on. Until one create of a provider has succeeded, its creates go one at a time (`gate`),
so a wrong token costs one refused request, not one per job.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from jobrunner.errors import AuthError, PaymentRequiredError, ProviderError

# Answers that mean every further request to the same provider would be refused too.
PROVIDER_STOPPING = (AuthError, PaymentRequiredError)


class ProviderStopped(Exception):
    """Raised inside a task instead of sending anything to a provider that refused this run."""

    def __init__(self, provider: str) -> None:
        super().__init__(provider)
        self.provider = provider


class Stopped(Exception):
    """Raised inside a task when apply is interrupted or the wait deadline passed."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def error_detail(exc: ProviderError) -> str:
    """The provider error as one line: message, the provider's detail, and the hint."""
    detail = str(exc)
    if exc.detail and exc.detail not in detail:
        detail += f": {exc.detail}"
    return detail + (f" ({exc.hint})" if exc.hint else "")


class StopControl:
    """Ctrl-C and the wait deadline (`deadline`: time.monotonic() when waiting gives up)."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.why = ""
        self.timed_out = False  # some task stopped at the deadline
        self._event = asyncio.Event()

    def interrupt(self, why: str = "interrupted") -> None:
        if not self._event.is_set():
            self.why = why
            self._event.set()

    @property
    def interrupted(self) -> bool:
        return self._event.is_set() and self.why == "interrupted"

    def check(self) -> None:
        if self._event.is_set():
            raise Stopped(self.why)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise Stopped("timeout")

    async def guard(self, awaitable: Awaitable[Any]) -> Any:
        """Await `awaitable` unless apply is stopped or the deadline passes first (-> Stopped)."""
        fut = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self._event.wait())
        timeout = None
        if self.deadline is not None:
            timeout = max(0.0, self.deadline - time.monotonic())
        try:
            done, _ = await asyncio.wait({fut, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if fut in done:
            return fut.result()
        fut.cancel()  # callers pass asyncio.shield(...) for futures others share
        raise Stopped(self.why if self._event.is_set() else "timeout")


class ProviderStops:
    """Which providers refused this run (shared with the report), and the one-at-a-time gate."""

    def __init__(self, stops: dict[str, str]) -> None:
        self.stops = stops  # provider -> the refusal, as the report shows it
        # Providers whose credential a successful create has proven, and the one-at-a-time gate
        # creates go through until then.
        self.proven: set[str] = set()
        self._probe: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._probing: set[asyncio.Task[Any] | None] = set()  # tasks inside a one-at-a-time gate

    def check(self, provider: str) -> None:
        if provider in self.stops:
            raise ProviderStopped(provider)

    def stop(self, exc: ProviderError, provider: str) -> bool:
        """Record that `provider` refused this run; True the first time (the one to report)."""
        name = exc.provider or provider
        if name in self.stops:
            return False
        self.stops[name] = error_detail(exc)
        if name != provider:
            self.stops.setdefault(provider, self.stops[name])
        return True

    def holds_gate(self) -> bool:
        """Is the current task inside an unproven provider's one-at-a-time gate?"""
        return asyncio.current_task() in self._probing

    @contextlib.asynccontextmanager
    async def gate(self, provider: str) -> AsyncIterator[None]:
        """Around one create: refuse if the provider stopped; one at a time until one succeeded."""
        self.check(provider)
        if provider in self.proven:
            yield
            return
        async with self._probe[provider]:
            self.check(provider)
            task = asyncio.current_task()
            self._probing.add(task)
            try:
                yield
            finally:
                self._probing.discard(task)
