"""Benchmark: `jobrunner apply` of one PredictionBatch of N echo items on the local platform.

Measures the whole command as a user runs it (the platform auto-started beforehand, in its own
process): wall time for the first apply (N creates, bulk waiting, N outputs recorded, output file
written) and for the second one (no changes, no request). Prints figures; asserts nothing.

    python bench/apply_batch_bench.py [--items 1000] [--parallelism 10]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ECHO_VERSION, Run, bench_env, run_timed  # noqa: E402


def jobrunner(cwd: Path, *args: str) -> Run:
    return run_timed([sys.executable, "-m", "jobrunner", *args], cwd=cwd, env=bench_env())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--parallelism", type=int, default=10)
    args = ap.parse_args()
    from jobrunner.local.autostart import ensure_platform, stop_platform

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with open(root / "rows.jsonl", "w") as fh:
            for i in range(args.items):
                fh.write(json.dumps({"key": f"i{i:05d}", "text": f"row {i}"}) + "\n")
        (root / "batch.yaml").write_text(
            "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: bench}\nspec:\n"
            f"  provider: local\n  version: {ECHO_VERSION}\n  inputs_file: rows.jsonl\n  output_file: out.jsonl\n")
        ensure_platform(root)
        try:
            proc = jobrunner(root, "apply", "--auto-approve", "--parallelism", str(args.parallelism))
            first = proc.wall
            if proc.returncode != 0:
                print(proc.stdout[-3000:], proc.stderr[-3000:])
                raise SystemExit(f"apply exited {proc.returncode}")
            lines = (root / "out.jsonl").read_text().splitlines()
            proc2 = jobrunner(root, "apply", "--auto-approve")
            second = proc2.wall
            print(f"apply of {args.items} echo items (parallelism {args.parallelism}): {first:.2f}s wall "
                  f"({args.items / first:.0f} jobs/s end to end), {len(lines)} output rows")
            print(f"second apply (No changes.): {second:.2f}s wall, exit {proc2.returncode}")
            print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        finally:
            stop_platform(root)


if __name__ == "__main__":
    main()
