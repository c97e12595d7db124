"""Benchmark: how jobrunner's cost grows with the size of one batch, 1,000 -> 100,000 items.

For each N: `jobrunner apply` of N `jobrunner/echo` predictions (provider local, client rate
limits off) on a fresh local platform, then, over the N succeeded items, `plan`, a no-change
`apply`, `status` and `outputs`. For every command: wall, client CPU (and per item for apply),
peak RSS of the client, requests the platform answered, and state writes (journal records and
snapshots, counted by bench/_counted_cli.py). Prints Markdown tables with the load average;
asserts nothing.

    python bench/scale.py [--items 1000,10000] [--parallelism 10]
    python bench/scale.py --items 100000 --synthetic   # the read-only commands only

`--synthetic` skips the apply: the N succeeded items are written as such an apply leaves them
(bench/_synthetic.py: state and output file in the same shapes, fingerprints from jobrunner's own
expansion), so the read-only commands over 100,000 items are measured in a minute, not an hour.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    Platform,
    Run,
    batch_workspace,
    bench_env,
    delta,
    local_platform,
    machine,
    table,
)

COUNTED = str(Path(__file__).resolve().parent / "_counted_cli.py")


def run_child(cmd: list[str], *, cwd: Path, env: dict[str, str]) -> Run:
    """Like common.run_timed, with the CPU and peak RSS of this child alone (os.wait4), not the
    maximum over every child so far."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode,
                   out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def command(platform: Platform, ws: Path, name: str, args: list[str], items: int) -> dict[str, Any]:
    counts_file = ws / ".bench-counts.json"
    counts_file.unlink(missing_ok=True)
    before = platform.stats()
    load = os.getloadavg()[0]
    run = run_child([sys.executable, COUNTED, str(counts_file), *args], cwd=ws, env=bench_env(platform))
    requests = delta(platform.stats(), before).get("requests", 0)
    if run.returncode not in (0, 2):
        raise SystemExit(f"{name} exited {run.returncode}:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}")
    writes = json.loads(counts_file.read_text()) if counts_file.exists() else {}
    return {"command": name, "items": items, "wall": run.wall, "cpu": run.cpu, "rss": run.rss_mb,
            "requests": requests, "journal": writes.get("journal_records", 0),
            "snapshots": writes.get("snapshots", 0), "load": load}


def one_size(items: int, parallelism: int, work: Path, synthetic: bool = False) -> list[dict[str, Any]]:
    with local_platform(work / f"platform-{items}", workers=1) as platform:
        rows = []
        if synthetic:  # in a child: Linux keeps the peak RSS across fork and exec, so building the
            # workspace here would show up as every later command's peak
            ws = work / f"ws-{items}"
            subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "_synthetic.py"), str(ws),
                            str(items), platform.url], check=True, env=bench_env(platform))
        else:
            ws = batch_workspace(work / f"ws-{items}", items, platform.url, tag=f"s{items}-")
            rows.append(command(platform, ws, "apply", ["apply", "--auto-approve", "--parallelism",
                                                        str(parallelism)], items))
        out = ws / "out" / "results.jsonl"
        ok = sum(1 for line in out.read_text().splitlines() if json.loads(line).get("status") == "succeeded")
        if ok != items:
            raise SystemExit(f"apply: {ok} of {items} items succeeded")
        rows.append(command(platform, ws, "plan", ["plan"], items))
        rows.append(command(platform, ws, "no-change apply", ["apply", "--auto-approve"], items))
        rows.append(command(platform, ws, "status", ["status"], items))
        rows.append(command(platform, ws, "outputs", ["outputs"], items))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", default="1000,10000", help="comma-separated batch sizes")
    ap.add_argument("--parallelism", type=int, default=10)
    ap.add_argument("--synthetic", action="store_true",
                    help="no apply: write the succeeded items' state and output file, then time the read-only commands")
    args = ap.parse_args()
    sizes = [int(x) for x in args.items.split(",") if x.strip()]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            results += one_size(n, args.parallelism, Path(tmp), args.synthetic)
            print(f"... {n:,} items done", file=sys.stderr)
    what = "synthetic succeeded items, read-only commands" if args.synthetic else f"parallelism {args.parallelism}"
    print(f"# jobrunner at scale ({machine()}, {what})\n")
    print(table(
        ["command", "items", "wall s", "CPU s", "CPU ms/item", "peak RSS MB", "requests", "journal records",
         "snapshots", "load avg"],
        [[r["command"], f"{r['items']:,}", f"{r['wall']:.2f}", f"{r['cpu']:.2f}",
          f"{1000 * r['cpu'] / r['items']:.3f}", f"{r['rss']:.0f}", r["requests"], r["journal"], r["snapshots"],
          f"{r['load']:.1f}"] for r in results],
    ))


if __name__ == "__main__":
    main()
