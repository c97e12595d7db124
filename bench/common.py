"""Shared helpers of the benchmarks: a local platform on a loopback port, server-side request
counts, workspaces holding one big PredictionBatch, timed CLI runs, and Markdown tables.

The benchmarks compare clients by what the *server* saw (`GET /_admin/stats` of the local
platform), never by what a client says it sent: a retry inside a client library, a poll, a list
page all count the same. Everything runs on 127.0.0.1 in a temporary directory.
"""
from __future__ import annotations

import json
import os
import platform as pyplatform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
ECHO_VERSION = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"
SLEEP_VERSION = "9969ed6b494ff19ed449533b9068fbbb2d4a56c25945cdbcd23ccc069365f2f0"
VERSIONS = {"echo": ECHO_VERSION, "sleep": SLEEP_VERSION}
TOKEN = "jrl_bench-0123456789abcdef"


@dataclass
class Platform:
    """A `jobrunner serve` process on an ephemeral loopback port."""

    url: str
    token: str
    data_dir: Path
    proc: subprocess.Popen[bytes]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30.0)

    def stats(self) -> dict[str, int]:
        """The server's request counters so far (see `jobrunner.local.platform.RequestStats`)."""
        with self.client() as c:
            resp = c.get("/_admin/stats")
            resp.raise_for_status()
            return resp.json()

    def set_faults(self, **knobs: Any) -> dict[str, Any]:
        with self.client() as c:
            resp = c.post("/_admin/faults", json=knobs)
            resp.raise_for_status()
            return resp.json()

    def cpu_seconds(self) -> float:
        """User + system CPU time the platform process has used so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def local_platform(data_dir: Path, *, workers: int = 2, faults: str = "", token: str = TOKEN) -> Iterator[Platform]:
    """Start `python -m jobrunner serve --port 0` on `data_dir`; stop it on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "jobrunner", "serve", "--data-dir", str(data_dir), "--port", "0",
           "--token", token, "--workers", str(workers)]
    if faults:
        cmd += ["--faults", faults]
    env = {**os.environ, "PYTHONPATH": str(REPO), "JOBRUNNER_LOCAL_FAULTS": ""}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    runtime = data_dir / "server.json"
    deadline = time.monotonic() + 60
    url = None
    try:
        while time.monotonic() < deadline:
            if runtime.exists():
                try:
                    url = json.loads(runtime.read_text())["url"]
                    break
                except (ValueError, KeyError):
                    pass
            if proc.poll() is not None:
                raise SystemExit(f"the local platform exited during start-up:\n{proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        if url is None:
            raise SystemExit("the local platform did not start within 60 s")
        yield Platform(url=url, token=token, data_dir=data_dir, proc=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def batch_rows(items: int, tag: str = "", *, model: str = "echo", seconds: float = 1.0) -> list[dict[str, Any]]:
    """The benchmark's prediction inputs: `items` distinct rows for `jobrunner/<model>`.

    `sleep` takes only `seconds` (its schema allows nothing else): rows differ in the microseconds.
    """
    if model == "sleep":
        return [{"key": f"item-{i:05d}", "seconds": round(seconds + i * 1e-6, 6)} for i in range(items)]
    return [{"key": f"item-{i:05d}", "prompt": f"{tag}prompt number {i}", "seed": i % 7} for i in range(items)]


def batch_workspace(root: Path, items: int, url: str, *, tag: str = "", rate_limits: dict[str, Any] | None = None,
                    name: str = "bench", model: str = "echo", seconds: float = 1.0,
                    settings: dict[str, Any] | None = None) -> Path:
    """A workspace with one PredictionBatch of `items` `jobrunner/<model>` rows on the platform at `url`.

    `settings` are more `providers.local` keys for jobrunner.yaml (e.g. `sync_wait`).
    """
    root.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"providers": {"local": {"url": url, **(settings or {})}}}
    if rate_limits:
        config["providers"]["local"]["rate_limits"] = rate_limits
    (root / "jobrunner.yaml").write_text(json.dumps(config, indent=2) + "\n")
    with open(root / "prompts.jsonl", "w") as fh:
        for row in batch_rows(items, tag, model=model, seconds=seconds):
            fh.write(json.dumps(row) + "\n")
    (root / "batch.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\n"
        f"metadata: {{name: {name}}}\nspec:\n  provider: local\n  version: {VERSIONS[model]}\n"
        "  inputs_file: prompts.jsonl\n  output_file: out/results.jsonl\n")
    return root


@dataclass
class Run:
    wall: float
    cpu: float  # user + system of the child process
    rss_mb: float  # peak RSS of the largest child so far
    returncode: int
    stdout: str
    stderr: str


def run_timed(cmd: Sequence[str], *, cwd: Path, env: dict[str, str]) -> Run:
    """Run a command to completion; wall time, its CPU time and the children's peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall, cpu, after.ru_maxrss / 1024, proc.returncode, out.decode(errors="replace"),
               err.decode(errors="replace"))


def bench_env(platform: Platform | None = None) -> dict[str, str]:
    """The environment for child processes: this checkout first on the path, the platform's token."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    for var in ("JOBRUNNER_STATE_URL", "JOBRUNNER_LOCAL_FAULTS"):
        env.pop(var, None)
    if platform is not None:
        env["JOBRUNNER_LOCAL_TOKEN"] = platform.token
        env["REPLICATE_API_TOKEN"] = platform.token
        env["REPLICATE_BASE_URL"] = platform.url
    return env


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A Markdown table; `align` is one character per column, `l` or `r` (default: first left)."""
    align = align or ("l" + "r" * (len(headers) - 1))
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`th percentile (nearest rank) of `values`; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def machine() -> str:
    """One line about where the figures come from (they are noisy on a shared machine)."""
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs, {pyplatform.system()} {pyplatform.machine()}, Python "
            f"{pyplatform.python_version()}, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")


__all__ = [
    "ECHO_VERSION",
    "Platform",
    "SLEEP_VERSION",
    "VERSIONS",
    "REPO",
    "Run",
    "TOKEN",
    "batch_rows",
    "batch_workspace",
    "bench_env",
    "delta",
    "local_platform",
    "machine",
    "percentile",
    "run_timed",
    "table",
]
