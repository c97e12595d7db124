"""The `Platform` core: what both wire formats build on, naming neither.

`app.create_app` builds one `Platform` and hands it to each wire's service
(`replicate.service.ReplicateService`, `emissary.service.EmissaryService`). It holds:

- `data_dir: Path`, `token: str`, `options: PlatformOptions`, `clock: Clock`
- `db: Database`: the one SQLite file; each wire's store creates its own tables in it.
- `runner: JobRunner`: `runner.submit(job_id, engine, mode, input, on_event, context)` /
  `runner.cancel(job_id)`; engines are `engines.ENGINES` names or `"module:function"` paths.
- `faults: FaultState`: the live fault knobs (`faults.should_drop_create()` after committing a create).
- `request_stats: RequestStats`: what the app's gate counted (`GET /_admin/stats`).
- `webhook_secret: str`: `whsec_...`, the signing secret of webhooks.
- `scratch_dir` / `scratch_path(suffix)`: server-made names for a job's temporary files (emptied
  at start: nothing there outlives the jobs that used it).
- `spawn(coro)`: run a background task that is cancelled at shutdown.
- `on_shutdown(close)`: a service's own clean-up, run by `shutdown()` after the workers stop and
  before the database closes.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobrunner.local.clock import Clock
from jobrunner.local.db import Database
from jobrunner.local.faults import FaultConfig, FaultState
from jobrunner.local.runner import JobRunner
from jobrunner.local.security import load_or_create_webhook_secret

log = logging.getLogger("jobrunner.local")


@dataclass
class PlatformOptions:
    workers: int = 2
    min_cancel_after: float = 5.0  # Replicate's documented minimum for Cancel-After
    max_wait: float = 60.0  # longest `Prefer: wait=n`
    page_size: int = 100
    webhook_hosts: tuple[str, ...] = ()  # hosts besides loopback that webhooks may be sent to


class RequestStats:
    """Requests the gate saw (admin routes excepted): in all, per category, method and status.

    Keys: `requests`, `category.<create|get|other>` (as the fault knobs classify them),
    `method.<GET|POST|...>`, `list.<predictions|trainings>` (list pages), `status.<code>`
    (`status.dropped` when the connection closed without an answer). A dict increment per
    request: cheap enough to be always on.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


class Platform:
    def __init__(
        self,
        data_dir: Path,
        token: str,
        *,
        options: PlatformOptions | None = None,
        faults: FaultConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.token = token
        self.options = options or PlatformOptions()
        self.clock = clock or Clock()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.scratch_dir = data_dir / "scratch"
        self.scratch_dir.mkdir(exist_ok=True)
        for leftover in self.scratch_dir.glob("*"):  # inputs of jobs that cannot resume after a restart
            leftover.unlink(missing_ok=True)
        self.db = Database(data_dir / "platform.db")
        self.runner = JobRunner(workers=self.options.workers)
        self.faults = FaultState(faults)
        self.request_stats = RequestStats()
        self._closers: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._webhook_secret: str | None = None
        self._closed = False

    @property
    def webhook_secret(self) -> str:
        if self._webhook_secret is None:
            self._webhook_secret = load_or_create_webhook_secret(self.data_dir)
        return self._webhook_secret

    def scratch_path(self, suffix: str = "") -> Path:
        return self.scratch_dir / (secrets.token_hex(16) + suffix)

    # --- tasks and shutdown -------------------------------------------------------------------

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def on_shutdown(self, close: Callable[[], None]) -> None:
        self._closers.append(close)

    async def shutdown(self) -> None:
        """Stop workers and background tasks, run the services' clean-ups, close the database (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await self.runner.aclose()
        for close in self._closers:
            try:
                close()
            except Exception:  # one service's failed clean-up must not keep the database open
                log.exception("a local platform service failed to shut down cleanly")
        self.db.close()
