"""Waiting until jobs are terminal, with one poller for everything an apply touched.

Each job that needs watching registers here; a single loop refreshes all watched jobs per
(provider, job kind, project) in bulk (`jobrunner.refresh.fetch_jobs`), reports status changes and
resolves a job's future when it turns terminal. The interval starts short (local jobs finish in
well under a second) and backs off while nothing changes, so a long wait costs few requests.
Transient provider errors during polling are reported and retried on the next tick.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from jobrunner.errors import RetryableError
from jobrunner.providers.base import RemoteJob
from jobrunner.refresh import fetch_jobs

Key = tuple[str, str, str | None]  # provider, job kind, project id


@dataclass
class _Watch:
    remote_id: str
    future: asyncio.Future
    last_status: str | None = None
    created: datetime | None = None
    on_change: list[Callable[[RemoteJob], None]] = field(default_factory=list)


class Waiter:
    def __init__(self, pool: Any, *, min_interval: float = 0.2, max_interval: float = 3.0,
                 parallelism: int = 10, on_error: Callable[[Exception], None] | None = None) -> None:
        self.pool = pool
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.parallelism = parallelism
        self.on_error = on_error
        self._watches: dict[Key, dict[str, _Watch]] = defaultdict(dict)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.polls = 0

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
                                        project_id=project_id, parallelism=self.parallelism, oldest=oldest)
            except RetryableError as exc:
                if self.on_error:
                    self.on_error(exc)
                continue
            except Exception as exc:  # fatal (auth, protocol): every waiter of this group learns it
                for w in watches.values():
                    if not w.future.done():
                        w.future.set_exception(exc)
                watches.clear()
                continue
            for remote_id, job in jobs.items():
                w = watches.get(remote_id)
                if w is None:
                    continue
                if job.status != w.last_status:
                    changed = True
                    w.last_status = job.status
                    for cb in w.on_change:
                        cb(job)
                if job.terminal:
                    watches.pop(remote_id, None)
                    if not w.future.done():
                        w.future.set_result(job)
        self.polls += 1
        return changed

    async def _loop(self) -> None:
        interval = self.min_interval
        while any(self._watches.values()):
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=interval)
                # New jobs to watch: look soon, but let a burst of creates gather first.
                await asyncio.sleep(self.min_interval)
                interval = self.min_interval
            except asyncio.TimeoutError:
                pass
            if await self._poll_once():
                interval = self.min_interval
            else:
                interval = min(self.max_interval, interval * 1.5)

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
