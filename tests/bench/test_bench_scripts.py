"""Each benchmark script runs end to end at a tiny size, so the scripts cannot rot.

No timing is asserted (figures are for `docs/performance.md`, measured by hand); what is asserted
is behaviour the figures rest on: the tables are printed, every prediction succeeded, and the
request counts come from the platform.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Each script starts platforms and subprocesses: the fast tier (`-m "not slow"`) leaves them out.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: float = 180) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("JOBRUNNER_LOCAL_FAULTS", None)
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _row(out: str, name: str) -> list[str]:
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0].startswith(name):
            return cells
    raise AssertionError(f"no row {name!r} in:\n{out}")


def test_apply_vs_official_small() -> None:
    out = _run("bench/apply_vs_official.py", "--items", "20", "--naive-items", "3", "--parallelism", "5")
    jobrunner = _row(out, "jobrunner apply")
    best = _row(out, "official client, best practice")
    naive = _row(out, "official client, naive loop (measured on 3")
    # HTTP requests column (4th): jobrunner's echo predictions come back finished from the create
    # (Prefer: wait), so nothing is polled; the official client polls every one of them.
    assert int(jobrunner[3].replace(",", "")) == 20
    assert int(best[3].replace(",", "")) >= 40
    assert naive[1].endswith(" s")
    assert "jobrunner vs best practice: wall x" in out


def test_apply_vs_official_with_the_floor_client() -> None:
    out = _run("bench/apply_vs_official.py", "--items", "20", "--naive-items", "0", "--parallelism", "5", "--floor")
    floor = _row(out, "raw asyncio floor")
    assert int(floor[3].replace(",", "")) == 20  # one held create per prediction, counted by the platform
    assert "jobrunner vs the raw asyncio floor: wall x" in out


def test_http_client_cpu_small() -> None:
    out = _run("bench/http_client_cpu.py", "--items", "30", "--runs", "1", "--parallelism", "3")
    for name in ("httpx default", "HttpClient on httpx's transport", "HttpClient on the lean transport",
                 "raw floor"):
        assert f"| {name}" in out  # each ran its 30 creates, every one succeeded (else it exits non-zero)


def test_rate_limit_small() -> None:
    out = _run("bench/rate_limit.py", "--items", "40", "--create-per-minute", "1200", "--parallelism", "10")
    jobrunner = _row(out, "jobrunner apply")
    assert jobrunner[2] == "40"  # creates accepted
    # ... failed creates, succeeded, then the client's CPU and its share of wall
    assert jobrunner[9] == "0" and jobrunner[10] == "40"
    assert jobrunner[11].endswith(" s") and jobrunner[12].endswith("%")
    official = _row(out, "official client, best practice")
    # The official client does not retry a throttled create: at a 20/s limit with a burst of 20,
    # some of its 40 creates are refused; the table counts them.
    assert int(official[9]) > 0
    assert "0 failed creates (target 0: met)" in out and "client CPU " in out


def test_plan_scale_small() -> None:
    out = _run("bench/plan_scale.py", "--sizes", "20,40", "--runs", "1", "--refresh-sizes", "150")
    assert re.search(r"\| 40 \|.*\| 0 \|$", out, re.M), out  # all terminal: no request at all
    refresh = _row(out, "150")
    assert refresh[1] == "2" and refresh[2] == "2" and refresh[3] == "0"  # 2 list pages, no GET
    assert "Refresh of running jobs through list pages: met" in out


def test_log_memory_small() -> None:
    out = _run("bench/log_memory.py", "--log-mb", "3", "--jobs", "2")
    status = _row(out, "status (2 running jobs refreshed)")
    logs = _row(out, "logs PredictionBatch/chatty[j0]")
    assert status[-1] == "0" and logs[-1] == "0"
    # The log printed is its end (max_log_bytes, 1 MiB), not the 3 MB the server sent.
    assert 500_000 < int(logs[3].removesuffix(" B").replace(",", "")) < 1_200_000


def test_scale_small() -> None:
    out = _run("bench/scale.py", "--items", "30", "--parallelism", "5")
    apply = _row(out, "apply")
    # command, items, wall, CPU, CPU/item, RSS, requests, journal records, snapshots, load
    assert apply[1] == "30" and apply[6] == "30"  # one create per item, answered finished
    assert int(apply[7]) >= 1 and int(apply[8]) >= 1  # saves went to the journal, then compacted
    for name in ("plan", "no-change apply", "status", "outputs"):
        row = _row(out, name)
        assert row[6] == "0" and row[7] == "0" and row[8] == "0", row  # no request, no state write


def test_scale_synthetic_small() -> None:
    out = _run("bench/scale.py", "--items", "30", "--synthetic")
    assert "| apply |" not in out  # no apply: the succeeded items were written, not run
    for name in ("plan", "no-change apply", "status", "outputs"):
        row = _row(out, name)
        assert row[1] == "30" and row[6] == "0" and row[7] == "0" and row[8] == "0", row
