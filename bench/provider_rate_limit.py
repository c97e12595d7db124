"""Benchmark of the provider layer against a rate-limited local platform: pacing and bulk refresh.

Starts `python -m jobrunner serve` on an ephemeral loopback port with Replicate's limits scaled up
(`--create-per-minute`, default 6000 = 100 creates/s; other requests 10x that) and a server burst
of one second's worth. Then the `local` provider, with the same limits in its own rate limiter,
creates `--n` `jobrunner/echo` predictions from `--parallelism` concurrent workers, and prints a
Markdown table:

- the achieved create rate as a share of the server's limit (target at least 90%);
- how many answers were 429 (target at most 1% of requests) and how many creates failed (target 0);
- what it cost to refresh all N jobs with `refresh_many` (list pages) against one GET per job.

Usage:

    python bench/provider_rate_limit.py                 # 1,000 creates at 6,000/min
    python bench/provider_rate_limit.py --n 2000 --create-per-minute 12000 --parallelism 20
    python bench/provider_rate_limit.py --no-client-limit   # the same run without client pacing
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobrunner.errors import ProviderError  # noqa: E402
from jobrunner.providers.base import CreateRequest  # noqa: E402
from jobrunner.providers.registry import get_provider  # noqa: E402
from jobrunner.workspace import WorkspaceConfig  # noqa: E402

ECHO_VERSION = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"
TOKEN = "jrl_bench-provider-rate-limit-token"


def start_server(data_dir: Path, faults: str, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobrunner", "serve", "--data-dir", str(data_dir), "--port", "0",
         "--token", TOKEN, "--workers", str(workers), "--faults", faults],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "JOBRUNNER_LOCAL_FAULTS": ""},
    )
    deadline = time.monotonic() + 30
    runtime = data_dir / "server.json"
    while time.monotonic() < deadline:
        if runtime.exists():
            try:
                return proc, json.loads(runtime.read_text())["url"]
            except (ValueError, KeyError):
                pass
        if proc.poll() is not None:
            raise SystemExit("the platform exited during start-up")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("the platform did not start")


async def run(url: str, args: argparse.Namespace, root: Path) -> dict[str, float]:
    limits = {"create_per_minute": args.create_per_minute, "other_per_minute": args.create_per_minute * 10}
    settings: dict[str, object] = {"url": url}
    if not args.no_client_limit:
        settings["rate_limits"] = limits
    config = WorkspaceConfig(providers={"local": settings})
    provider = get_provider("local", config, root, env={"JOBRUNNER_LOCAL_TOKEN": TOKEN})
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(args.n):
        queue.put_nowait(i)
    ids: list[str] = []
    failed = 0

    async def worker() -> None:
        nonlocal failed
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            req = CreateRequest(job_kind="prediction", body={"input": {"i": i}}, model="jobrunner/echo", version=ECHO_VERSION)
            try:
                job = await provider.create(req)
                ids.append(job.id)
            except ProviderError:
                failed += 1

    try:
        # Warm the connection pool so the figure measures pacing, not TCP set-up.
        await provider.get_version_schema("jobrunner/echo", ECHO_VERSION)
        started_at = datetime.now(timezone.utc)
        before = dict(provider.http.stats)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.parallelism)))
        wall = time.perf_counter() - t0
        stats = {k: provider.http.stats[k] - before.get(k, 0) for k in provider.http.stats}
        await asyncio.sleep(1.0)  # let the echo jobs finish
        r0 = provider.http.stats["requests"]
        t1 = time.perf_counter()
        refreshed = await provider.refresh_many("prediction", set(ids), started_at - timedelta(seconds=1))
        refresh_wall = time.perf_counter() - t1
        refresh_requests = provider.http.stats["requests"] - r0
    finally:
        await provider.aclose()
    return {
        "creates": float(len(ids)),
        "failed": float(failed),
        "wall": wall,
        "requests": float(stats.get("requests", 0)),
        "throttled": float(stats.get("throttled", 0)),
        "retries": float(stats.get("retries", 0)),
        "refreshed": float(len(refreshed)),
        "refresh_requests": float(refresh_requests),
        "refresh_wall": refresh_wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="predictions to create")
    parser.add_argument("--create-per-minute", type=float, default=6000.0, help="the server's create limit")
    parser.add_argument("--parallelism", type=int, default=10, help="concurrent creates")
    parser.add_argument("--workers", type=int, default=2, help="platform worker processes")
    parser.add_argument("--no-client-limit", action="store_true", help="do not pace on the client (for comparison)")
    args = parser.parse_args()
    per_second = args.create_per_minute / 60.0
    faults = (
        f"rate_limit=custom,create_per_minute={args.create_per_minute:g},"
        f"other_per_minute={args.create_per_minute * 10:g},get_per_minute={args.create_per_minute * 100:g},burst={per_second:g}"
    )
    with tempfile.TemporaryDirectory(prefix="jobrunner-bench-") as tmp:
        data_dir = Path(tmp) / "platform"
        proc, url = start_server(data_dir, faults, args.workers)
        try:
            result = asyncio.run(run(url, args, Path(tmp)))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    achieved = result["creates"] / result["wall"] if result["wall"] else 0.0
    share = achieved / per_second
    throttled_share = result["throttled"] / result["requests"] if result["requests"] else 0.0
    pacing = "off" if args.no_client_limit else f"{args.create_per_minute:g}/min"
    print(f"### provider rate limiting: {args.n} creates, server limit {args.create_per_minute:g}/min "
          f"(burst {per_second:g}), client pacing {pacing}, parallelism {args.parallelism}\n")
    print("| figure | value | target |")
    print("|---|---|---|")
    print(f"| creates succeeded / failed | {result['creates']:.0f} / {result['failed']:.0f} | failed = 0 |")
    print(f"| wall time | {result['wall']:.2f} s | |")
    print(f"| achieved create rate | {achieved:.1f}/s = {share:.1%} of the limit | >= 90% |")
    print(f"| HTTP requests for the creates | {result['requests']:.0f} | |")
    print(f"| 429 answers | {result['throttled']:.0f} ({throttled_share:.2%} of requests) | <= 1% |")
    print(f"| retries | {result['retries']:.0f} | |")
    print(f"| refresh of {result['refreshed']:.0f} jobs | {result['refresh_requests']:.0f} requests in "
          f"{result['refresh_wall']:.2f} s (one GET each: {args.n}) | ~N/100 |")


if __name__ == "__main__":
    main()
