"""Benchmark: client CPU per request of the HTTP stacks jobrunner could create predictions with.

N held creates (`POST /v1/predictions` with `Prefer: wait=5`, `jobrunner/echo`, so each answer
is the finished prediction), P in flight, against one real local platform. Each client runs in
its own process; the figure is the CPU (user + system) of the request loop itself, measured in
that process, divided by N (interpreter start and imports excluded; the process's whole CPU is
shown too). The clients, alternated across runs:

- `httpx default`: a plain `httpx.AsyncClient` with its default transport (httpcore on anyio);
- `HttpClient on httpx's transport`: jobrunner's `HttpClient` (retries, deadlines, rate limiter,
  capped read, error translation) with `JOBRUNNER_HTTP_TRANSPORT=httpx` (httpcore on
  `netbackend`'s asyncio sockets: what jobrunner used before `wire.py`);
- `HttpClient on the lean transport`: the same `HttpClient` on `wire.LeanTransport` (the default);
- `raw floor`: `apply_vs_official.py`'s floor client, stdlib asyncio streams, no library at all.

    python bench/http_client_cpu.py [--items 4000] [--parallelism 10] [--runs 2]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ECHO_VERSION, bench_env, local_platform, machine, table  # noqa: E402

CLIENTS = {
    "httpx": "httpx default (httpcore on anyio)",
    "httpx-asyncio": "HttpClient on httpx's transport (httpcore, asyncio sockets)",
    "lean": "HttpClient on the lean transport (wire.py)",
    "floor": "raw floor (stdlib asyncio streams)",
}


def _bodies(n: int, tag: str) -> list[dict[str, Any]]:
    return [{"version": ECHO_VERSION, "input": {"prompt": f"{tag}prompt {i}", "seed": i % 7}} for i in range(n)]


async def _pooled(n: int, parallelism: int, tag: str, one: Any) -> int:
    queue = _bodies(n, tag)
    failed = 0

    async def worker() -> None:
        nonlocal failed
        while queue:
            job = await one(queue.pop())
            failed += job.get("status") != "succeeded"

    await asyncio.gather(*(worker() for _ in range(parallelism)))
    return failed


async def run_httpx(url: str, token: str, n: int, parallelism: int, tag: str) -> int:
    import httpx

    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0) as c:
        async def one(body: dict[str, Any]) -> Any:
            response = await c.post("/v1/predictions", json=body, headers={"Prefer": "wait=5"})
            response.raise_for_status()
            return response.json()

        return await _pooled(n, parallelism, tag, one)


async def run_http_client(url: str, token: str, n: int, parallelism: int, tag: str) -> int:
    from jobrunner.providers.http import HttpClient

    http = HttpClient("replicate", url, token=token)
    try:
        async def one(body: dict[str, Any]) -> Any:
            return await http.request_json("POST", "/v1/predictions", json=body, headers={"Prefer": "wait=5"})

        return await _pooled(n, parallelism, tag, one)
    finally:
        await http.aclose()


async def run_floor(url: str, token: str, n: int, parallelism: int, tag: str) -> int:
    from urllib.parse import urlsplit

    from bench.apply_vs_official import _http

    parts = urlsplit(url)
    queue = _bodies(n, tag)

    async def connection() -> int:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        failed = 0
        while queue:
            status, job = await _http(reader, writer, "POST", "/v1/predictions", parts.netloc, token,
                                      json.dumps(queue.pop()).encode(), "Prefer: wait=5\r\n")
            failed += status >= 300 or job["status"] != "succeeded"
        writer.close()
        return failed

    return sum(await asyncio.gather(*(connection() for _ in range(parallelism))))


def child(args: argparse.Namespace) -> None:
    runner = {"httpx": run_httpx, "httpx-asyncio": run_http_client, "lean": run_http_client,
              "floor": run_floor}[args.client]
    if args.client == "httpx-asyncio":
        os.environ["JOBRUNNER_HTTP_TRANSPORT"] = "httpx"
    cpu, wall = time.process_time(), time.perf_counter()
    failed = asyncio.run(runner(args.url, args.token, args.items, args.parallelism, args.tag))
    print(json.dumps({"loop_cpu": time.process_time() - cpu, "loop_wall": time.perf_counter() - wall,
                      "failed": failed}))


def measure(client: str, url: str, token: str, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--client", client, "--url", url, "--token", token,
           "--items", str(args.items), "--parallelism", str(args.parallelism), "--tag", tag]
    env = {**bench_env(), "JOBRUNNER_HTTP_TRANSPORT": ""}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{client} exited {out.returncode}:\n{out.stderr[-3000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    if row["failed"]:
        raise SystemExit(f"{client}: {row['failed']} predictions did not succeed")
    row["process_cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row["load"] = os.getloadavg()[0]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=4000)
    ap.add_argument("--parallelism", type=int, default=10)
    ap.add_argument("--runs", type=int, default=2, help="runs per client, alternating; the lowest is shown")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default=",".join(CLIENTS), help="comma-separated clients to run")
    ap.add_argument("--client", choices=sorted(CLIENTS), help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--token", help=argparse.SUPPRESS)
    ap.add_argument("--tag", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        child(args)
        return
    names = [c for c in args.only.split(",") if c]
    samples: dict[str, list[dict[str, Any]]] = {c: [] for c in names}
    with tempfile.TemporaryDirectory(prefix="jobrunner-httpcpu-") as tmp, \
            local_platform(Path(tmp) / "platform", workers=args.workers) as platform:
        measure("floor", platform.url, platform.token, argparse.Namespace(**{**vars(args), "items": 50}), "warm-")
        for i in range(args.runs):
            for client in (names if i % 2 == 0 else names[::-1]):
                row = measure(client, platform.url, platform.token, args, f"r{i}-{client}-{time.time_ns()}-")
                samples[client].append(row)
                print(f"  {client}: {row['loop_cpu'] / args.items * 1e3:.3f} ms/request, "
                      f"load {row['load']:.1f}", file=sys.stderr)
    rows = []
    for client in names:
        best = min(samples[client], key=lambda r: r["loop_cpu"])
        rows.append([CLIENTS[client], ", ".join(f"{r['loop_cpu'] / args.items * 1e3:.3f}" for r in samples[client]),
                     f"{best['loop_wall']:.2f} s", f"{best['process_cpu']:.2f} s",
                     ", ".join(f"{r['load']:.1f}" for r in samples[client])])
    print(f"{args.items:,} held creates of `jobrunner/echo`, {args.parallelism} in flight, platform workers "
          f"{args.workers}; {machine()}.\n")
    print(table(["client", "loop CPU ms/request (each run)", "loop wall (lowest CPU run)",
                 "process CPU (same run)", "load avg (1 min)"], rows))


if __name__ == "__main__":
    main()
