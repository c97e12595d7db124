"""The worker process: runs one engine call at a time, streaming events back over a pipe.

Started by `runner.JobRunner` as `python -m jobrunner.local.worker` (a fresh interpreter that does
not depend on how the server's own program was started). The protocol is JSON lines: requests on
stdin `{"job_id", "engine", "mode", "input", "context"}`; events on a private copy of the original
stdout `[kind, job_id, data]` with kind `start`, `log`, `progress`, an engine-defined kind sent
with `ctx.emit` (e.g. `checkpoint`), then exactly one of `done` (`{"output", "predict_time"}`) or
`failed` (`{"error", "predict_time"}`). Engines that print go to stderr, never into the protocol.
Cancel is not a message: the runner kills the process.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, BinaryIO

from jobrunner.local.engines import ModelError, RunContext, resolve


class WorkerContext:
    """The `RunContext` engines get inside a worker process."""

    def __init__(self, out: BinaryIO, job_id: str, context: dict[str, Any]) -> None:
        self._out = out
        self._job_id = job_id
        self.context = context

    def _send(self, kind: str, data: Any) -> None:
        self._out.write(json.dumps([kind, self._job_id, data], default=str).encode("utf-8") + b"\n")
        self._out.flush()

    def log(self, line: str) -> None:
        self._send("log", line if line.endswith("\n") else line + "\n")

    def progress(self, fraction: float) -> None:
        self._send("progress", max(0.0, min(1.0, float(fraction))))

    def emit(self, kind: str, data: Any) -> None:
        self._send(kind, data)

    def cancelled(self) -> bool:
        return False  # cancel kills the process; engines never need to poll


def run_engine(engine: str, mode: str, input: dict[str, Any], ctx: RunContext) -> tuple[str, dict[str, Any]]:
    """Run one engine call; returns the final `(kind, data)` event. Shared by inline execution."""
    started = time.perf_counter()
    try:
        output = resolve(engine)(mode, input, ctx)
    except ModelError as exc:
        return "failed", {"error": str(exc), "predict_time": time.perf_counter() - started}
    except Exception as exc:  # a bug in an engine: report it on the job, keep the worker alive
        ctx.log(traceback.format_exc())
        return "failed", {"error": f"{type(exc).__name__}: {exc}", "predict_time": time.perf_counter() - started}
    return "done", {"output": output, "predict_time": time.perf_counter() - started}


def _exit_with_parent(interval: float = 1.0) -> None:
    """End this worker when the server that started it is gone (e.g. killed with SIGKILL), even
    in the middle of a long job: nobody is left to receive its result."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    _exit_with_parent()
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything an engine prints goes to stderr
    sys.stdout = sys.stderr
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        msg = json.loads(line)
        ctx = WorkerContext(out, msg["job_id"], msg.get("context") or {})
        ctx._send("start", None)
        kind, data = run_engine(msg["engine"], msg["mode"], msg["input"], ctx)
        try:
            ctx._send(kind, data)
        except (TypeError, ValueError) as exc:
            ctx._send("failed", {"error": f"the output could not be returned: {exc}",
                                 "predict_time": data.get("predict_time")})


if __name__ == "__main__":
    main()
