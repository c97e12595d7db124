"""Benchmark of the local platform's webhooks: how fast signed `completed` webhooks arrive.

Starts `python -m jobrunner serve` on an ephemeral port with a fresh data directory, runs a
webhook receiver on loopback, creates `--jobs` `jobrunner/echo` predictions (from `--clients`
concurrent clients) whose `webhook` points at the receiver with `webhook_events_filter:
["completed"]`, and waits until every webhook has arrived. Prints, as a Markdown table: webhooks
delivered, webhooks/s, the delay from the job's `completed_at` to the receiver (p50/p99), and how
many signatures failed verification against `GET /v1/webhooks/default/secret`. Usage:

    python bench/webhooks_bench.py --jobs 500 --clients 8
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ECHO_VERSION, local_platform, percentile, table  # noqa: E402
from jobrunner.local.webhooks import verify  # noqa: E402


class Receiver:
    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a production receiver would

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    receiver.arrivals.append((time.time(), {k.lower(): v for k, v in self.headers.items()}, raw))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


async def create_jobs(url: str, token: str, hook: str, jobs: int, clients: int) -> int:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(jobs):
        queue.put_nowait(i)
    errors = 0

    async def client() -> None:
        nonlocal errors
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, trust_env=False, timeout=30
        ) as http:
            while not queue.empty():
                i = queue.get_nowait()
                body = {
                    "version": ECHO_VERSION,
                    "input": {"text": f"job {i}"},
                    "webhook": hook,
                    "webhook_events_filter": ["completed"],
                }
                resp = await http.post("/v1/predictions", json=body)
                errors += resp.status_code != 201

    await asyncio.gather(*(client() for _ in range(clients)))
    return errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=60.0, help="give up waiting for webhooks after this many seconds")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp, \
            local_platform(Path(tmp) / "platform", token="bench-token") as platform:
        url, token = platform.url, platform.token
        secret = httpx.get(
            f"{url}/v1/webhooks/default/secret", headers={"Authorization": f"Bearer {token}"}, trust_env=False
        ).json()["key"]
        rx = Receiver()
        started = time.perf_counter()
        errors = asyncio.run(create_jobs(url, token, rx.url, args.jobs, args.clients))
        expected = args.jobs - errors
        deadline = time.monotonic() + args.timeout
        while len(rx.arrivals) < expected and time.monotonic() < deadline:
            time.sleep(0.02)
        elapsed = time.perf_counter() - started

    delays: list[float] = []
    bad = 0
    for at, headers, raw in rx.arrivals:
        if not verify(secret, headers, raw, tolerance=300):
            bad += 1
        completed = json.loads(raw).get("completed_at")
        if completed:
            delays.append(at - datetime.fromisoformat(completed.replace("Z", "+00:00")).timestamp())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"## webhook benchmark: {args.jobs} echo predictions, {args.clients} clients, "
          f"{os.cpu_count()} CPUs, load average {load:.1f}\n")
    print(table(["measure", "value"], [
        ["webhooks delivered / expected", f"{len(rx.arrivals)} / {expected}"],
        ["create errors", errors],
        ["webhooks/s (first create to last webhook)", f"{len(rx.arrivals) / elapsed:.0f}"],
        ["completed_at -> received, p50 / p99 (ms)",
         f"{percentile(delays, 50) * 1000:.1f} / {percentile(delays, 99) * 1000:.1f}"],
        ["signatures failing verification", bad],
    ]))

if __name__ == "__main__":
    main()
