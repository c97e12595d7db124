"""Benchmark of the local platform: concurrent clients creating `jobrunner/echo` predictions
over loopback and polling each one until it succeeded.

Starts `python -m jobrunner serve` on an ephemeral port with a fresh data directory (or uses
`--url`/`--token` for a running one), runs `--clients` concurrent clients for `--duration`
seconds, and prints requests/s, creates/s and p50/p99 latency per request kind as a Markdown
table. Usage:

    python bench/local_platform_bench.py --clients 24 --duration 10
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ECHO_VERSION, local_platform, percentile, table  # noqa: E402


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: far cheaper per request than
    httpx, so on a small machine the figures measure the server rather than the client."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {token}\r\nHost: {host}:{port}\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            sock = self.writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = f"{method} {path} HTTP/1.1\r\n{self.auth}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        assert self.reader is not None
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    async def post(self, path: str, json_body: dict) -> tuple[int, dict]:
        status, data = await self.request("POST", path, json.dumps(json_body).encode())
        return status, json.loads(data) if data else {}

    async def get(self, path: str) -> tuple[int, dict]:
        status, data = await self.request("GET", path)
        return status, json.loads(data) if data else {}

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()


class HttpxClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def post(self, path: str, json_body: dict) -> tuple[int, dict]:
        resp = await self.http.post(path, json=json_body)
        return resp.status_code, resp.json()

    async def get(self, path: str) -> tuple[int, dict]:
        resp = await self.http.get(path)
        return resp.status_code, resp.json()

    async def aclose(self) -> None:
        pass


async def client_loop(
    http: RawClient | HttpxClient,
    stop_at: float,
    lat: dict[str, list[float]],
    counts: dict[str, int],
    poll_interval: float,
) -> None:
    while time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        status, body = await http.post("/v1/predictions", {"version": ECHO_VERSION, "input": {"text": "hello", "n": 1}})
        lat["create"].append(time.perf_counter() - t0)
        if status != 201:
            counts["errors"] += 1
            continue
        counts["create"] += 1
        job_id = body["id"]
        while True:
            if poll_interval:
                await asyncio.sleep(poll_interval)
            t0 = time.perf_counter()
            status, body = await http.get(f"/v1/predictions/{job_id}")
            lat["get"].append(time.perf_counter() - t0)
            counts["get"] += 1
            if status != 200:
                counts["errors"] += 1
                break
            if body["status"] in ("succeeded", "failed", "canceled", "aborted"):
                counts["succeeded"] += body["status"] == "succeeded"
                break


async def run(
    url: str, token: str, clients: int, duration: float, warmup: float, poll_interval: float, kind: str
) -> dict[str, object]:
    parsed = httpx.URL(url)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=30
    ) as http:
        if kind == "raw":
            conns: list = [RawClient(parsed.host, parsed.port or 80, token) for _ in range(clients)]
        else:
            conns = [HttpxClient(http) for _ in range(clients)]
        if warmup:
            scratch: dict[str, list[float]] = {"create": [], "get": []}
            scratch_counts = {"create": 0, "get": 0, "errors": 0, "succeeded": 0}
            end = time.perf_counter() + warmup
            await asyncio.gather(*(client_loop(c, end, scratch, scratch_counts, poll_interval) for c in conns))
        lat: dict[str, list[float]] = {"create": [], "get": []}
        counts = {"create": 0, "get": 0, "errors": 0, "succeeded": 0}
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(c, started + duration, lat, counts, poll_interval) for c in conns))
        elapsed = time.perf_counter() - started
        for c in conns:
            await c.aclose()
    return {"lat": lat, "counts": counts, "elapsed": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--poll-interval", type=float, default=0.0, help="seconds between polls of one prediction")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw", help="HTTP client used by the benchmark")
    parser.add_argument("--url")
    parser.add_argument("--token")
    args = parser.parse_args()

    def measure(url: str, token: str) -> dict[str, object]:
        return asyncio.run(run(url, token, args.clients, args.duration, args.warmup, args.poll_interval, args.client))

    cpu_before = cpu_after = None
    if args.url is not None:
        result = measure(args.url, args.token or "")
    else:
        with tempfile.TemporaryDirectory(prefix="jobrunner-bench-") as tmp, \
                local_platform(Path(tmp), workers=args.workers, token="bench-token") as platform:
            cpu_before = platform.cpu_seconds()
            result = measure(platform.url, platform.token)
            cpu_after = platform.cpu_seconds()
    lat, counts, elapsed = result["lat"], result["counts"], result["elapsed"]  # type: ignore[misc]
    total = counts["create"] + counts["get"]  # type: ignore[index]
    all_lat = lat["create"] + lat["get"]  # type: ignore[index]
    load = os.getloadavg()[0]
    print(
        f"## local platform benchmark: {args.clients} clients ({args.client}), {elapsed:.1f}s, "
        f"echo predictions over loopback, {os.cpu_count()} CPUs, load average {load:.1f}\n"
    )
    rows: list[list[object]] = [
        ["requests/s (all)", f"{total / elapsed:.0f}"],
        ["creates/s", f"{counts['create'] / elapsed:.0f}"],  # type: ignore[index]
        ["predictions succeeded", counts["succeeded"]],  # type: ignore[index]
        ["errors", counts["errors"]],  # type: ignore[index]
    ]
    if cpu_before is not None and cpu_after is not None and total:
        # includes the warm-up's requests in the CPU time, so this slightly overstates the cost
        rows.append(["server CPU per request (ms)", f"{(cpu_after - cpu_before) * 1000 / total:.2f}"])
    for name, values in (("create", lat["create"]), ("get", lat["get"]), ("all", all_lat)):  # type: ignore[index]
        rows.append([f"{name} latency p50 / p99 (ms)",
                     f"{percentile(values, 50) * 1000:.1f} / {percentile(values, 99) * 1000:.1f}"])
    print(table(["measure", "value"], rows))

if __name__ == "__main__":
    main()
