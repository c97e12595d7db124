"""Waiting until jobs are terminal, with one poller for everything an apply touched.

Each job that needs watching registers here; a single loop refreshes all watched jobs per
(provider, job kind, project) in bulk (`jobrunner.refresh.fetch_jobs`), reports status changes and
resolves a job's future when it turns terminal. The interval starts short (local jobs finish in
well under a second) and backs off while nothing changes, so a long wait costs few requests.
Transient provider errors during polling are reported and retried on the next tick, but not
forever: once a provider has failed every poll for `unreachable_after` seconds (its
`providers.<name>.unreachable_after`, 5 minutes by default), its jobs' futures fail with a
`ProviderUnreachableError` and apply stops waiting on them. The jobs keep running remotely and
state still tracks them, so the next apply resumes waiting. Each poll is itself bounded by the
request deadline (`jobrunner.providers.http`), so apply stops within `unreachable_after` plus one
request deadline of the provider's last answer.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobrunner.errors import ProviderUnreachableError, RetryableError
from jobrunner.providers.base import RemoteJob
from jobrunner.refresh import bulk_refresh, fetch_jobs

Key = tuple[str, str, str | None]  # provider, job kind, project id

DEFAULT_UNREACHABLE_AFTER = 300.0  # seconds of failed polls before apply stops waiting on a provider


@dataclass
class _Watch:
    remote_id: str
    future: asyncio.Future
    last_status: str | None = None
    last_progress: Any = None  # the percentage the provider reports (Emissary trainings), if any
    created: datetime | None = None
    on_change: list[Callable[[RemoteJob], None]] = field(default_factory=list)


class Waiter:
    def __init__(self, pool: Any, *, min_interval: float = 0.2, max_interval: float = 3.0,
                 parallelism: int = 10, on_error: Callable[[Exception], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.clock = clock  # for unreachable_after; tests pass a clock that moves per poll
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.parallelism = parallelism
        self.on_error = on_error
        self._watches: dict[Key, dict[str, _Watch]] = defaultdict(dict)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.polls = 0
        # When each group's current run of failed polls began (self.clock()).
        self._failing_since: dict[Key, float] = {}

    def wait(self, provider: str, job_kind: str, remote_id: str, *, project_id: str | None = None,
             status: str | None = None, on_change: Callable[[RemoteJob], None] | None = None,
             created: datetime | None = None) -> asyncio.Future:
        """A future resolved with the terminal RemoteJob (shared by every waiter of the same job)."""
        key = (provider, job_kind, project_id)
        watch = self._watches[key].get(remote_id)
        if watch is None:
            watch = _Watch(remote_id, asyncio.get_running_loop().create_future(), last_status=status,
                           created=created)
            self._watches[key][remote_id] = watch
            self._wakeup.set()
        if on_change is not None:
            watch.on_change.append(on_change)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop())
        return watch.future

    def forget(self, provider: str, job_kind: str, remote_id: str, project_id: str | None = None) -> None:
        self._watches.get((provider, job_kind, project_id), {}).pop(remote_id, None)

    async def _poll_once(self) -> bool:
        changed = False
        for key, watches in list(self._watches.items()):
            if not watches:
                continue
            provider_name, job_kind, project_id = key
            try:
                oldest = min((w.created for w in watches.values() if w.created is not None), default=None)
                jobs = await fetch_jobs(self.pool.get(provider_name), job_kind, list(watches),
                                        bulk=bulk_refresh(provider_name), project_id=project_id,
                                        parallelism=self.parallelism, oldest=oldest)
            except RetryableError as exc:
                if self.on_error:
                    self.on_error(exc)
                self._give_up_if_unreachable(key, watches, exc)
                continue
            except Exception as exc:  # fatal (auth, protocol): every waiter of this group learns it
                for waiting in watches.values():
                    if not waiting.future.done():
                        waiting.future.set_exception(exc)
                watches.clear()
                continue
            self._failing_since.pop(key, None)
            for remote_id, job in jobs.items():
                w = watches.get(remote_id)
                if w is None:
                    continue
                progress = job.metrics.get("progress") if isinstance(job.metrics, dict) else None
                if job.status != w.last_status:
                    changed = True
                    w.last_status, w.last_progress = job.status, progress
                    for cb in w.on_change:
                        cb(job)
                elif progress != w.last_progress:  # for the live view; the poll interval is unchanged
                    w.last_progress = progress
                    for cb in w.on_change:
                        cb(job)
                if job.terminal:
                    watches.pop(remote_id, None)
                    if not w.future.done():
                        w.future.set_result(job)
        self.polls += 1
        return changed

    def unreachable_after(self, provider_name: str) -> float:
        """How long `provider_name` may fail every poll before waiting on it stops."""
        http = getattr(self.pool.get(provider_name), "http", None)
        value = getattr(http, "unreachable_after", None)
        return float(value) if isinstance(value, (int, float)) and value > 0 else DEFAULT_UNREACHABLE_AFTER

    def _give_up_if_unreachable(self, key: Key, watches: dict[str, _Watch], exc: Exception) -> None:
        """After `unreachable_after` seconds of failed polls, fail this group's waits (jobs keep running)."""
        now = self.clock()
        since = self._failing_since.setdefault(key, now)
        provider_name = key[0]
        window = self.unreachable_after(provider_name)
        if now - since < window:
            return
        del self._failing_since[key]
        err = ProviderUnreachableError(
            f"{provider_name}: stopped waiting for {len(watches)} job(s): every poll failed for "
            f"{_seconds(now - since)} (providers.{provider_name}.unreachable_after is {_seconds(window)}); "
            f"last error: {exc}",
            provider=provider_name,
            hint=(f"the jobs keep running on {provider_name} and state still tracks them: run `jobrunner apply` "
                  "again once it answers, and it resumes waiting"),
        )
        for w in watches.values():
            if not w.future.done():
                w.future.set_exception(err)
        watches.clear()

    async def _loop(self) -> None:
        interval = self.min_interval
        while any(self._watches.values()):
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=interval)
                # New jobs to watch: look soon, but let a burst of creates gather first.
                await asyncio.sleep(self.min_interval)
                interval = self.min_interval
            except TimeoutError:
                pass
            interval = self.min_interval if await self._poll_once() else min(self.max_interval, interval * 1.5)

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def _seconds(value: float) -> str:
    """A short duration for messages: 0.5s, 45s, 5m, 5m30s."""
    if value < 60:
        return f"{value:.2g}s" if value < 10 else f"{value:.0f}s"
    total = int(round(value))
    minutes, seconds = divmod(total, 60)
    if not minutes:
        return f"{seconds}s"
    return f"{minutes}m" + (f"{seconds}s" if seconds else "")
