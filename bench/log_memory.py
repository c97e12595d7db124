"""Benchmark: jobrunner's peak memory when the jobs it tracks have huge logs.

A Replicate prediction carries its whole log in the `logs` field of every answer about it (get
and list pages alike), so three running jobs with 50 MB logs used to cost jobrunner hundreds of
MB on every status refresh and apply poll. Answers are now read streaming, `logs` fields trimmed
to their end as they arrive (16 KiB in polls and list pages, `max_log_bytes` = 1 MiB for
`jobrunner logs`), so memory no longer grows with the log.

The script serves a fake Replicate API on a loopback port from its own process (three
predictions, `processing`, each with a log of `--log-mb` MB, streamed so the server holds none of
it), writes a workspace whose state tracks them, and runs in fresh processes:

* `jobrunner status` (the refresh every plan, status and apply poll does: one list page holding
  all three logs);
* `jobrunner logs <address>` (one get of one job, the log printed);
* `jobrunner status --no-refresh` (the interpreter and imports alone, for reference).

It prints wall time and peak RSS for each. `--jobrunner PATH` runs another checkout's jobrunner
(e.g. one before this change) with the same server and workspace, to compare.

    python bench/log_memory.py [--log-mb 50] [--jobs 3] [--jobrunner PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, machine, table  # noqa: E402

VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
TOKEN = "r8_bench_log_memory_0123456789"
LINE = "step {i:08d}: loss=0.{i:06d} lr=0.0001 tokens/s=1234.5 grad_norm=0.87\n"


def _created(i: int) -> str:
    when = datetime.now(UTC) - timedelta(minutes=5, seconds=i)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _job_parts(job_id: str, i: int) -> tuple[bytes, bytes]:
    """The JSON of one prediction, split where its `logs` string goes (after the opening quote)."""
    job = {"id": job_id, "model": "bench/chatty", "version": VERSION, "input": {"n": i},
           "logs": "@@LOGS@@", "output": None, "data_removed": False, "error": None, "status": "processing",
           "created_at": _created(i), "started_at": _created(i), "completed_at": None, "source": "api",
           "metrics": {}, "urls": {"get": f"/v1/predictions/{job_id}", "cancel": f"/v1/predictions/{job_id}/cancel"}}
    head, tail = json.dumps(job).split("@@LOGS@@")
    return head.encode(), tail.encode()


async def _log_chunks(size: int) -> AsyncIterator[bytes]:
    block = "".join(LINE.format(i=i) for i in range(1000))
    escaped = json.dumps(block)[1:-1].encode()
    sent = 0
    while sent < size:
        piece = escaped[: size - sent]
        sent += len(piece)
        yield piece


def serve(port: int, jobs: int, log_mb: float) -> None:
    """The fake Replicate API (run in its own process by `main`)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    size = int(log_mb * 1024 * 1024)
    ids = [f"bench{i:021d}" for i in range(jobs)]

    async def one(job_id: str, i: int) -> AsyncIterator[bytes]:
        head, tail = _job_parts(job_id, i)
        yield head
        async for chunk in _log_chunks(size):
            yield chunk
        yield tail

    async def get(request: Request) -> StreamingResponse:
        job_id = request.path_params["job_id"]
        return StreamingResponse(one(job_id, ids.index(job_id) if job_id in ids else 0), media_type="application/json")

    async def page(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b'{"next": null, "previous": null, "results": ['
            for i, job_id in enumerate(ids):
                if i:
                    yield b", "
                async for chunk in one(job_id, i):
                    yield chunk
            yield b"]}"

        return StreamingResponse(body(), media_type="application/json")

    app = Starlette(routes=[Route("/v1/predictions", page), Route("/v1/predictions/{job_id}", get)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# Runs one command in its own parent, so the peak RSS reported is that command's alone (the
# RUSAGE_CHILDREN maximum of a long-lived parent would carry over from an earlier command).
_WRAPPER = ("import resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:], capture_output=True)\n"
            "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
            "print(p.returncode, rss, len(p.stdout))\n"
            "sys.stderr.write(p.stderr.decode(errors='replace')[-2000:])\n")


def measure(cmd: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, float, int, int, str]:
    """(wall s, peak RSS MB, stdout bytes, exit code, stderr tail) of one jobrunner command."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, sys.executable, "-m", "jobrunner", *cmd], cwd=cwd, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    code, rss_kb, printed = (int(x) for x in proc.stdout.split())
    return wall, rss_kb / 1024, printed, code, proc.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _workspace(root: Path, jobs: int) -> list[str]:
    """A workspace whose state tracks the fake server's `jobs` running predictions."""
    (root / ".jobrunner").mkdir(parents=True)
    (root / "jobrunner.yaml").write_text("providers:\n  replicate: {}\n", encoding="utf-8")
    addresses, entries = [], {}
    for i in range(jobs):
        address, remote_id = f"PredictionBatch/chatty[j{i}]", f"bench{i:021d}"
        addresses.append(address)
        entries[address] = {
            "address": address, "kind": "PredictionBatch", "job_kind": "prediction", "provider": "replicate",
            "file": "chatty.yaml", "fingerprint": f"{i:064x}", "remote_id": remote_id, "status": "running",
            "attempts": 1, "outputs": {}, "error": None, "intent": None, "updated_at": _created(i),
            "history": [{"remote_id": remote_id, "fingerprint": f"{i:064x}", "attempt": 1,
                         "created_at": _created(i), "status": "running"}],
        }
    from jobrunner.state.model import STATE_FORMAT_VERSION

    state = {"format_version": STATE_FORMAT_VERSION, "serial": 1, "lineage": "bench-log-memory", "addresses": entries}
    (root / ".jobrunner" / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
    return addresses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-mb", type=float, default=50.0, help="size of each job's log (MB)")
    parser.add_argument("--jobs", type=int, default=3, help="running jobs tracked")
    parser.add_argument("--jobrunner", type=Path, default=REPO, help="checkout whose jobrunner to run")
    parser.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.jobs, args.log_mb)
        return 0

    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--jobs", str(args.jobs),
                               "--log-mb", str(args.log_mb)], env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory(prefix="jr-logmem-") as tmp:
            root = Path(tmp)
            addresses = _workspace(root, args.jobs)
            env = {**os.environ, "PYTHONPATH": str(args.jobrunner.resolve()), "REPLICATE_API_TOKEN": TOKEN,
                   "REPLICATE_BASE_URL": f"http://127.0.0.1:{port}", "PYTHONUNBUFFERED": "1"}
            rows = []
            for label, cmd in [
                ("status --no-refresh (baseline)", ["status", "--no-refresh"]),
                (f"status ({args.jobs} running jobs refreshed)", ["status"]),
                (f"logs {addresses[0]}", ["logs", addresses[0]]),
            ]:
                wall, rss, printed, code, errors = measure(cmd, cwd=root, env=env)
                rows.append([label, f"{wall:.2f} s", f"{rss:.0f} MB", f"{printed:,} B", code])
                if code != 0:
                    print(errors, file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"{args.jobs} running predictions, each with a {args.log_mb:g} MB log; jobrunner from {args.jobrunner}")
    print(f"({machine()})\n")
    print(table(["command", "wall", "peak RSS", "stdout", "exit"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
