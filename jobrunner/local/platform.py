"""The `Platform` object: everything a wire-format route module needs, in one place.

`app.create_app` builds one and hands it to the Replicate routes and, when present, to
`jobrunner.local.emissary_api.routes(platform)` and `jobrunner.local.webhooks.attach(platform)`.

Attributes:
- `data_dir: Path`, `token: str`, `options: PlatformOptions`, `clock: Clock`
- `db: Database` (SQLite; `db.conn` for other wire formats' own tables)
- `runner: JobRunner`: `runner.submit(job_id, engine, mode, input, on_event, context)` /
  `runner.cancel(job_id)`; engines are `models.ENGINES` names or `"module:function"` paths
  (`jobrunner.local.models.ngram` has `train`, `generate`, `evaluate`, `NgramModel`).
- `jobs: ReplicateJobs`: the Replicate job lifecycle.
- `faults: FaultState`: the live fault knobs (`faults.should_drop_create()` after committing a create).
- `webhook_secret: str`: `whsec_...`, as served by `GET /v1/webhooks/default/secret`.
- `subscribe(listener)`: `listener(event, job)` is called for Replicate job events `start`,
  `output`, `logs` and `completed`, with `job` the stored job row (`jobs.render(job, job["base_url"])`
  gives its wire shape).
- `store_file(data, name=, content_type=, metadata=, purpose=) -> row`, `file_path(row) -> Path`,
  `scratch_path(suffix) -> Path`: server-made file names under the data directory.
- `spawn(coro)`: run a background task that is cancelled at shutdown.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from jobrunner.local.clock import Clock, new_id, rfc3339
from jobrunner.local.db import Database, Row
from jobrunner.local.faults import FaultConfig, FaultState
from jobrunner.local.runner import JobRunner
from jobrunner.local.security import load_or_create_webhook_secret

log = logging.getLogger("jobrunner.local")

Listener = Callable[[str, Row], None]


@dataclass
class PlatformOptions:
    workers: int = 2
    min_cancel_after: float = 5.0  # Replicate's documented minimum for Cancel-After
    max_wait: float = 60.0  # longest `Prefer: wait=n`
    page_size: int = 100
    webhook_hosts: tuple[str, ...] = ()  # hosts besides loopback that webhooks may be sent to


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
        (data_dir / "files").mkdir(exist_ok=True)
        (data_dir / "scratch").mkdir(exist_ok=True)
        self.db = Database(data_dir / "platform.db")
        self.runner = JobRunner(workers=self.options.workers)
        self.faults = FaultState(faults)
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._webhook_secret: str | None = None
        self._closed = False
        from jobrunner.local.jobs import ReplicateJobs  # circular: jobs needs the platform

        self.jobs = ReplicateJobs(self)

    # --- events ----------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def notify(self, event: str, job: Row) -> None:
        for listener in self._listeners:
            try:
                listener(event, job)
            except Exception:  # a listener bug must never break a job
                log.exception("job event listener failed")

    # --- secrets ----------------------------------------------------------------------------

    @property
    def webhook_secret(self) -> str:
        if self._webhook_secret is None:
            self._webhook_secret = load_or_create_webhook_secret(self.data_dir)
        return self._webhook_secret

    # --- files ------------------------------------------------------------------------------

    def file_path(self, row: Row) -> Path:
        return self.data_dir / "files" / Path(row["path"]).name

    def new_file_id(self) -> str:
        return new_id()

    def store_file(
        self,
        data: bytes,
        *,
        name: str = "file",
        content_type: str = "application/octet-stream",
        metadata: dict[str, Any] | None = None,
        purpose: str = "upload",
        file_id: str | None = None,
    ) -> Row:
        """Write `data` under a server-made name and record it; returns the file row."""
        fid = file_id or new_id()
        path = self.data_dir / "files" / fid
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
        row = {
            "id": fid,
            "name": _safe_display_name(name),
            "content_type": content_type or "application/octet-stream",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "metadata": metadata or {},
            "created_at": rfc3339(self.clock.now()),
            "path": fid,
            "purpose": purpose,
        }
        self.db.insert_file(row)
        return row

    def scratch_path(self, suffix: str = "") -> Path:
        return self.data_dir / "scratch" / (secrets.token_hex(16) + suffix)

    # --- tasks ------------------------------------------------------------------------------

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def shutdown(self) -> None:
        """Stop workers and background tasks and close the database (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await self.runner.aclose()
        sender = getattr(self, "webhooks", None)  # attached by jobrunner.local.webhooks
        if sender is not None and hasattr(sender, "close"):
            try:
                sender.close(timeout=2.0)  # let final `completed` deliveries go out
            except Exception:
                log.exception("closing the webhook sender failed")
        self.jobs.close()
        self.db.close()


def _safe_display_name(name: str) -> str:
    """Keep only the last path component of a client-given file name (display only)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip() or "file"
    return base[:255]
