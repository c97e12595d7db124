"""Soak of the local platform: many mixed requests from concurrent clients, no error, flat memory.

Starts `python -m jobrunner serve` in its own process (fresh data directory, ephemeral loopback
port), then `--clients` concurrent keep-alive clients send `--requests` requests in all, a mix of
what apply and the official clients do: 20% prediction creates (`jobrunner/echo`, which really run
in the worker processes), 50% gets of a prediction, 10% list pages, 10% account reads, 10% Emissary
project listings. Any non-2xx answer or transport error counts as an error. The server process's
resident memory (RSS, from /proc) is sampled after warm-up, at the middle and at the end.

    python bench/soak.py                      # the full soak: 10,000 requests, 32 clients
    python bench/soak.py --requests 2000      # quicker

tests/reliability/test_platform_hardening.py runs a reduced soak through `run_soak`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ECHO_VERSION = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"
MIB = 1024 * 1024


@dataclass
class SoakResult:
    requests: int
    clients: int
    done: int = 0
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)
    rss: dict[str, int] = field(default_factory=dict)  # start / middle / end, bytes
    latencies: list[float] = field(default_factory=list)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def start_server(data_dir: Path, token: str, workers: int = 2) -> tuple[subprocess.Popen[bytes], str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "JOBRUNNER_LOCAL_FAULTS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobrunner", "serve", "--data-dir", str(data_dir), "--port", "0",
         "--token", token, "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
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
            raise RuntimeError("the platform exited during start-up")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the platform did not start")


async def _soak(url: str, token: str, pid: int, result: SoakResult) -> None:
    errors: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    ids: list[str] = []
    counter = iter(range(result.requests))
    middle = result.requests // 2
    rng = random.Random(7)
    headers = {"Authorization": f"Bearer {token}"}

    async def one(client: httpx.AsyncClient, i: int) -> None:
        slot = i % 10
        if slot < 2 or not ids:
            kind, req = "create", client.build_request(
                "POST", "/v1/predictions", json={"version": ECHO_VERSION, "input": {"text": f"soak {i}"}})
        elif slot < 7:
            kind, req = "get", client.build_request("GET", f"/v1/predictions/{rng.choice(ids)}")
        elif slot == 7:
            kind, req = "list", client.build_request("GET", "/v1/predictions")
        elif slot == 8:
            kind, req = "account", client.build_request("GET", "/v1/account")
        else:
            kind, req = "emissary", client.build_request("GET", "/v1/projects",
                                                         headers={"X-API-Key": token, "Authorization": ""})
        t0 = time.perf_counter()
        try:
            resp = await client.send(req)
            await resp.aread()
        except httpx.HTTPError as exc:
            errors[type(exc).__name__] += 1
            return
        finally:
            result.latencies.append(time.perf_counter() - t0)
        kinds[kind] += 1
        if resp.status_code >= 300:
            errors[f"HTTP {resp.status_code} on {kind}"] += 1
        elif kind == "create":
            ids.append(resp.json()["id"])

    async def client_loop() -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
            for i in counter:
                await one(client, i)
                result.done += 1
                if result.done == middle:
                    result.rss["middle"] = rss_bytes(pid)

    # warm-up: connections, caches, worker processes; then the baseline
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as warm:
        for i in range(50):
            await one(warm, i)
    await asyncio.sleep(0.5)
    result.rss["start"] = rss_bytes(pid)
    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(result.clients)))
    result.seconds = time.perf_counter() - started
    result.rss["end"] = rss_bytes(pid)
    result.errors = dict(errors)
    result.kinds = dict(kinds)


def run_soak(data_dir: Path, *, requests: int = 10_000, clients: int = 32, workers: int = 2) -> SoakResult:
    token = "jrl_soak_" + secrets.token_hex(12)
    proc, url = start_server(data_dir, token, workers)
    try:
        result = SoakResult(requests=requests, clients=clients)
        asyncio.run(_soak(url, token, proc.pid, result))
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def memory_is_flat(result: SoakResult) -> bool:
    """Flat: the second half grew RSS by at most 10% (or 8 MiB), the whole run by at most 25% (or 16 MiB)."""
    start, middle, end = result.rss["start"], result.rss["middle"], result.rss["end"]
    return end - middle <= max(8 * MIB, 0.10 * middle) and end - start <= max(16 * MIB, 0.25 * start)


def report(result: SoakResult) -> str:
    lat = sorted(result.latencies) or [0.0]

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q / 100 * (len(lat) - 1)))] * 1000

    rss = {k: v / MIB for k, v in result.rss.items()}
    return "\n".join([
        f"| soak | {result.done} requests, {result.clients} clients |",
        "|---|---|",
        f"| wall time | {result.seconds:.1f} s ({result.done / max(result.seconds, 1e-9):.0f} req/s) |",
        f"| latency p50 / p99 | {pct(50):.1f} ms / {pct(99):.1f} ms |",
        f"| errors | {sum(result.errors.values())} {result.errors or ''} |",
        f"| mix | {', '.join(f'{k} {v}' for k, v in sorted(result.kinds.items()))} |",
        f"| server RSS start / middle / end | {rss.get('start', 0):.1f} / {rss.get('middle', 0):.1f} / "
        f"{rss.get('end', 0):.1f} MiB |",
        f"| memory flat | {'yes' if memory_is_flat(result) else 'NO'} |",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobrunner-soak-") as tmp:
        result = run_soak(Path(tmp) / "data", requests=args.requests, clients=args.clients, workers=args.workers)
    print(report(result))
    return 0 if not result.errors and result.done == args.requests and memory_is_flat(result) else 1


if __name__ == "__main__":
    raise SystemExit(main())
