"""The job runner on its own: worker processes, engine events, crashes, cancel, inline engines."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from jobrunner.local.runner import JobRunner

ENGINES = str(Path(__file__).parent / "engines")


@pytest.fixture(autouse=True)
def _engines_importable(monkeypatch):
    import os

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [ENGINES, os.environ.get("PYTHONPATH")])))


async def _run(
    runner: JobRunner,
    job_id: str,
    engine: str,
    input: dict[str, Any],
    context: dict[str, Any] | None = None,
    timeout: float = 20,
) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    done = asyncio.Event()

    def on_event(kind: str, data: Any) -> None:
        events.append((kind, data))
        if kind in ("done", "failed", "canceled"):
            done.set()

    runner.submit(job_id, engine, "train", input, on_event, context)
    await asyncio.wait_for(done.wait(), timeout)
    return events


def test_engine_events_and_context_cross_the_process_boundary():
    async def main() -> list[tuple[str, Any]]:
        runner = JobRunner(workers=1)
        try:
            return await _run(runner, "j1", "custom_engines:emits", {"a": 1}, {"path": "/x"})
        finally:
            await runner.aclose()

    events = asyncio.run(main())
    kinds = [k for k, _ in events]
    assert kinds == ["start", "checkpoint", "checkpoint", "checkpoint", "progress", "done"]
    assert [d["n"] for k, d in events if k == "checkpoint"] == [0, 1, 2]
    assert events[-1][1]["output"] == {"context": {"path": "/x"}, "input": {"a": 1}}
    assert events[-1][1]["predict_time"] >= 0


def test_a_crashing_worker_fails_the_job_and_is_replaced():
    async def main() -> tuple[list, list]:
        runner = JobRunner(workers=1)
        try:
            crashed = await _run(runner, "j1", "custom_engines:crashes", {})
            after = await _run(runner, "j2", "sleep", {"seconds": 0})
            return crashed, after
        finally:
            await runner.aclose()

    crashed, after = asyncio.run(main())
    assert crashed[-1][0] == "failed"
    assert "exited unexpectedly (exit code 3)" in crashed[-1][1]["error"]
    assert ("log", "about to exit\n") in crashed
    assert after[-1][0] == "done"


def test_an_engine_exception_becomes_the_error_with_a_traceback_in_the_logs():
    async def main() -> list:
        runner = JobRunner(workers=1)
        try:
            return await _run(runner, "j1", "custom_engines:raises", {})
        finally:
            await runner.aclose()

    events = asyncio.run(main())
    assert events[-1] == ("failed", {"error": "ValueError: bad things", "predict_time": events[-1][1]["predict_time"]})
    assert any(k == "log" and "Traceback" in d for k, d in events)


def test_cancel_queued_and_running_jobs():
    async def main() -> tuple[list, list, float]:
        runner = JobRunner(workers=1)
        events: dict[str, list] = {"a": [], "b": []}
        try:
            runner.submit("a", "sleep", "predict", {"seconds": 30}, lambda k, d: events["a"].append(k))
            runner.submit("b", "sleep", "predict", {"seconds": 30}, lambda k, d: events["b"].append(k))
            deadline = time.monotonic() + 20
            while "start" not in events["a"] and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert runner.running("a") and runner.holds("b") and not runner.running("b")
            assert runner.cancel("b") is True  # queued: never starts
            started = time.monotonic()
            assert runner.cancel("a") is True  # running: the worker is killed
            took = time.monotonic() - started
            assert runner.cancel("a") is False
            return events["a"], events["b"], took
        finally:
            await runner.aclose()

    a, b, took = asyncio.run(main())
    assert a[-1] == "canceled" and b == ["canceled"]
    assert took < 10.0  # the worker is killed, not waited for (30 s), even on a busy machine


def test_inline_engines_run_without_a_worker():
    async def main() -> tuple[list, int]:
        runner = JobRunner(workers=1)
        try:
            events = await _run(runner, "e", "echo", {"x": [1, 2]})
            return events, len(runner._slots)
        finally:
            await runner.aclose()

    events, workers = asyncio.run(main())
    assert [k for k, _ in events] == ["start", "done"]
    assert events[-1][1]["output"] == {"x": [1, 2]}
    assert workers == 0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow  # a kill case
def test_workers_exit_when_the_server_is_killed(tmp_path):
    import json
    import os
    import subprocess
    import sys

    import httpx

    from jobrunner.local.replicate.catalog import SLEEP_VERSION

    server = subprocess.Popen(
        [sys.executable, "-m", "jobrunner", "serve", "--port", "0", "--data-dir", str(tmp_path), "--token", "t"],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "server.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        url = json.loads((tmp_path / "server.json").read_text())["url"]
        headers = {"Authorization": "Bearer t"}
        job = httpx.post(
            f"{url}/v1/predictions", json={"version": SLEEP_VERSION, "input": {"seconds": 60}}, headers=headers
        ).json()
        while httpx.get(f"{url}/v1/predictions/{job['id']}", headers=headers).json()["status"] != "processing":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        workers = _children(server.pid)
        assert workers
    finally:
        server.kill()
        server.wait()
    deadline = time.monotonic() + 5
    while any(os.path.exists(f"/proc/{w}") for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{w}") for w in workers)
