"""Benchmark of the local platform: concurrent clients creating `jobrunner/echo` predictions
over loopback and polling each one until it succeeded.

Starts `python -m jobrunner serve` on an ephemeral port with a fresh data directory (or uses
`--url`/`--token` for a running one), runs `--clients` concurrent clients for `--duration`
seconds, and prints requests/s, creates/s and p50/p99 latency per request kind as a Markdown
table. Usage:

    python bench/local_platform_bench.py --clients 16 --duration 10
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
from pathlib import Path

import httpx

ECHO_VERSION = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def start_server(data_dir: Path, token: str, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobrunner", "serve", "--data-dir", str(data_dir), "--port", "0",
         "--token", token, "--workers", str(workers)],
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


async def client_loop(
    http: httpx.AsyncClient, stop_at: float, lat: dict[str, list[float]], counts: dict[str, int], poll_interval: float
) -> None:
    while time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        resp = await http.post("/v1/predictions", json={"version": ECHO_VERSION, "input": {"text": "hello", "n": 1}})
        lat["create"].append(time.perf_counter() - t0)
        if resp.status_code != 201:
            counts["errors"] += 1
            continue
        counts["create"] += 1
        job_id = resp.json()["id"]
        while True:
            if poll_interval:
                await asyncio.sleep(poll_interval)
            t0 = time.perf_counter()
            resp = await http.get(f"/v1/predictions/{job_id}")
            lat["get"].append(time.perf_counter() - t0)
            counts["get"] += 1
            if resp.status_code != 200:
                counts["errors"] += 1
                break
            if resp.json()["status"] in ("succeeded", "failed", "canceled", "aborted"):
                counts["succeeded"] += resp.json()["status"] == "succeeded"
                break


async def run(url: str, token: str, clients: int, duration: float, warmup: float, poll_interval: float) -> dict[str, object]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=30) as http:
        if warmup:
            scratch = {"create": [], "get": []}  # type: dict[str, list[float]]
            scratch_counts = {"create": 0, "get": 0, "errors": 0, "succeeded": 0}
            end = time.perf_counter() + warmup
            await asyncio.gather(*(client_loop(http, end, scratch, scratch_counts, poll_interval) for _ in range(clients)))
        lat: dict[str, list[float]] = {"create": [], "get": []}
        counts = {"create": 0, "get": 0, "errors": 0, "succeeded": 0}
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(http, started + duration, lat, counts, poll_interval) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {"lat": lat, "counts": counts, "elapsed": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--poll-interval", type=float, default=0.0, help="seconds between polls of one prediction")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--url")
    parser.add_argument("--token")
    args = parser.parse_args()

    proc = None
    tmp = None
    url, token = args.url, args.token
    if url is None:
        tmp = tempfile.TemporaryDirectory(prefix="jobrunner-bench-")
        token = "bench-token"
        proc, url = start_server(Path(tmp.name), token, args.workers)
    try:
        result = asyncio.run(run(url, token or "", args.clients, args.duration, args.warmup, args.poll_interval))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        if tmp is not None:
            tmp.cleanup()
    lat, counts, elapsed = result["lat"], result["counts"], result["elapsed"]  # type: ignore[misc]
    total = counts["create"] + counts["get"]  # type: ignore[index]
    all_lat = lat["create"] + lat["get"]  # type: ignore[index]
    print(f"## local platform benchmark: {args.clients} clients, {elapsed:.1f}s, echo predictions over loopback\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| requests/s (all) | {total / elapsed:.0f} |")
    print(f"| creates/s | {counts['create'] / elapsed:.0f} |")  # type: ignore[index]
    print(f"| predictions succeeded | {counts['succeeded']} |")  # type: ignore[index]
    print(f"| errors | {counts['errors']} |")  # type: ignore[index]
    for name, values in (("create", lat["create"]), ("get", lat["get"]), ("all", all_lat)):  # type: ignore[index]
        print(f"| {name} latency p50 / p99 (ms) | {percentile(values, 50) * 1000:.1f} / {percentile(values, 99) * 1000:.1f} |")


if __name__ == "__main__":
    main()
