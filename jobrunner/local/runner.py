"""The job runner: a queue in front of a small pool of worker processes.

`submit(job_id, engine, mode, input, on_event, context=None)` queues a job; `on_event(kind, data)`
is then called on the event loop with `start`, `log` (text), `progress` (0..1), any engine-defined
kind (e.g. `checkpoint`), and finally one of `done` (`{"output", "predict_time"}`), `failed`
(`{"error", "predict_time"}`) or `canceled` (`{"started": bool}`). `cancel(job_id)` removes a queued
job or kills the worker running it (and starts a replacement), so cancel takes effect at once.

A stuck model never stalls the API: engines run in separate processes and the event loop only
reacts to their pipes becoming readable. Engines listed in `engines.INLINE` (echo) are trivially fast
and pure, so they run on the event loop itself without a process round trip.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobrunner.local.engines import INLINE
from jobrunner.local.worker import run_engine

log = logging.getLogger("jobrunner.local.runner")

EventSink = Callable[[str, Any], None]


@dataclass
class _Job:
    job_id: str
    engine: str
    mode: str
    input: dict[str, Any]
    context: dict[str, Any]
    on_event: EventSink


@dataclass
class _Slot:
    process: subprocess.Popen[bytes]
    fd: int  # the read end of the worker's event pipe (non-blocking)
    job: _Job | None = None
    dead: bool = False
    buffer: bytes = b""


class _InlineContext:
    def __init__(self, job: _Job) -> None:
        self._job = job
        self.context = job.context

    def log(self, line: str) -> None:
        self._job.on_event("log", line if line.endswith("\n") else line + "\n")

    def progress(self, fraction: float) -> None:
        self._job.on_event("progress", fraction)

    def emit(self, kind: str, data: Any) -> None:
        self._job.on_event(kind, data)

    def cancelled(self) -> bool:
        return False


@dataclass
class JobRunner:
    workers: int = 2
    _loop: asyncio.AbstractEventLoop | None = None
    _queue: collections.deque[_Job] = field(default_factory=collections.deque)
    _slots: list[_Slot] = field(default_factory=list)
    _inline_pending: dict[str, _Job] = field(default_factory=dict)
    _closed: bool = False

    # --- public API ----------------------------------------------------------------------

    def submit(
        self,
        job_id: str,
        engine: str,
        mode: str,
        input: dict[str, Any],
        on_event: EventSink,
        context: dict[str, Any] | None = None,
    ) -> None:
        job = _Job(job_id, engine, mode, input, dict(context or {}), on_event)
        loop = self._get_loop()
        if engine in INLINE:
            self._inline_pending[job_id] = job
            loop.call_soon(self._run_inline, job_id)
            return
        self._queue.append(job)
        self._pump()

    def cancel(self, job_id: str) -> bool:
        """Stop a queued or running job; False when the runner does not hold it."""
        job = self._inline_pending.pop(job_id, None)
        if job is not None:
            job.on_event("canceled", {"started": False})
            return True
        for queued in self._queue:
            if queued.job_id == job_id:
                self._queue.remove(queued)
                queued.on_event("canceled", {"started": False})
                return True
        for slot in self._slots:
            if slot.job is not None and slot.job.job_id == job_id:
                job = slot.job
                slot.job = None
                self._retire(slot)
                job.on_event("canceled", {"started": True})
                self._pump()
                return True
        return False

    def holds(self, job_id: str) -> bool:
        return (
            job_id in self._inline_pending
            or any(j.job_id == job_id for j in self._queue)
            or any(s.job is not None and s.job.job_id == job_id for s in self._slots)
        )

    def busy(self) -> bool:
        """True while any job is queued or running (an idle platform may stop only when False)."""
        return bool(self._inline_pending or self._queue or any(s.job is not None for s in self._slots))

    def active(self) -> int:
        """How many jobs are queued or running (`GET /_admin/info` reports it as `running_jobs`)."""
        return len(self._inline_pending) + len(self._queue) + sum(1 for s in self._slots if s.job is not None)

    def running(self, job_id: str) -> bool:
        return any(s.job is not None and s.job.job_id == job_id for s in self._slots)

    async def aclose(self) -> None:
        self._closed = True
        for slot in list(self._slots):
            self._retire(slot, replace=False)
        self._slots.clear()
        self._queue.clear()

    # --- internals -----------------------------------------------------------------------

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            # First use, or the app is now driven by a new event loop (in-process tests that
            # call asyncio.run more than once): workers watched by the old loop are useless.
            for slot in list(self._slots):
                self._retire(slot, replace=False)
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _run_inline(self, job_id: str) -> None:
        job = self._inline_pending.pop(job_id, None)
        if job is None:  # canceled before it ran
            return
        job.on_event("start", None)
        kind, data = run_engine(job.engine, job.mode, job.input, _InlineContext(job))
        job.on_event(kind, data)

    def _spawn(self) -> _Slot:
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        process = subprocess.Popen(
            [sys.executable, "-m", "jobrunner.local.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,  # Ctrl-C in a terminal reaches the server only
        )
        assert process.stdout is not None
        fd = process.stdout.fileno()
        os.set_blocking(fd, False)
        slot = _Slot(process, fd)
        self._get_loop().add_reader(fd, self._readable, slot)
        self._slots.append(slot)
        return slot

    def _pump(self) -> None:
        if self._closed:
            return
        while self._queue:
            idle = next((s for s in self._slots if s.job is None and not s.dead), None)
            if idle is None:
                if len(self._slots) >= self.workers:
                    return
                idle = self._spawn()
            job = self._queue.popleft()
            idle.job = job
            message = {"job_id": job.job_id, "engine": job.engine, "mode": job.mode, "input": job.input,
                       "context": job.context}
            try:
                assert idle.process.stdin is not None
                idle.process.stdin.write(json.dumps(message).encode("utf-8") + b"\n")
                idle.process.stdin.flush()
            except (OSError, ValueError) as exc:
                idle.job = None
                self._retire(idle)
                job.on_event("failed", {"error": f"could not start the job in a worker: {exc}", "predict_time": None})

    def _readable(self, slot: _Slot) -> None:
        try:
            chunk = os.read(slot.fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:  # EOF: the worker exited (or is exiting: its pipe closes first)
            job = slot.job
            slot.job = None
            try:
                code: int | None = slot.process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                code = None
            self._retire(slot)
            if job is not None:
                job.on_event(
                    "failed",
                    {"error": f"the worker process running this job exited unexpectedly (exit code {code})",
                     "predict_time": None},
                )
            self._pump()
            return
        slot.buffer += chunk
        *lines, slot.buffer = slot.buffer.split(b"\n")
        for line in lines:
            if slot.dead:
                return
            try:
                kind, job_id, data = json.loads(line)
            except (ValueError, TypeError):
                log.warning("ignoring a malformed message from a worker: %r", line[:200])
                continue
            job = slot.job
            if job is None or job.job_id != job_id:
                continue  # late message from a job already canceled
            if kind in ("done", "failed"):
                slot.job = None
                job.on_event(kind, data)
                self._pump()
            else:
                job.on_event(kind, data)

    def _retire(self, slot: _Slot, *, replace: bool = True) -> None:
        """Kill a worker (if alive) and forget it, starting a replacement unless closing."""
        if slot.dead:
            return
        slot.dead = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(ValueError, OSError, RuntimeError):
                loop.remove_reader(slot.fd)
        if slot.process.poll() is None:
            slot.process.kill()
        for stream in (slot.process.stdin, slot.process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        # Reap in the background so a slow exit never blocks the event loop.
        threading.Thread(target=slot.process.wait, daemon=True).start()
        if slot in self._slots:
            self._slots.remove(slot)
        if replace and not self._closed:
            if self._queue:
                self._pump()
            elif len(self._slots) < self.workers:
                self._spawn()  # keep the pool warm: the next job need not wait for a start-up
