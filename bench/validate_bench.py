#!/usr/bin/env python3
"""Benchmark `jobrunner validate` on a generated workspace: 100 manifests, 10,000 batch rows in all.

    python bench/validate_bench.py [--files 100] [--rows 10000] [--repeat 3]

Each manifest holds a Training and a PredictionBatch that references it (inline rows, with
defaults, keys and a sensitive field), so the run exercises the loader, the schema, references,
batch rows and the semantic checks. The command runs as a subprocess, as a user would run it; the
figures are wall time (best and median of --repeat runs) and the peak resident memory of the child.
Target on a 2-core machine: <= 2 s wall, <= 150 MB peak.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VERSION = "a3c8c00c979c6758b251faf7897f248e49b682972e7e2cb90d03a7c19b47f174"


MODEL = """apiVersion: jobrunner/v1
kind: Model
metadata: {name: bench}
spec: {provider: local, owner: me, name: bench, visibility: private, hardware: cpu}
---
"""


def manifest(i: int, rows: int) -> str:
    lines = [
        "# yaml-language-server: $schema=manifest.schema.json",
        "apiVersion: jobrunner/v1",
        "kind: Training",
        f"metadata: {{name: train-{i:03d}, labels: {{team: bench}}}}",
        "spec:",
        "  provider: local",
        "  model: jobrunner/ngram",
        f"  version: {VERSION}",
        "  destination: me/bench",
        "  input: {train_data: {$file: corpus.txt}, order: 4}",
        "  timeout: 30m",
        "  retry: {max_attempts: 2}",
        "---",
        "apiVersion: jobrunner/v1",
        "kind: PredictionBatch",
        f"metadata: {{name: eval-{i:03d}}}",
        "spec:",
        "  provider: local",
        f"  version: ${{Training.train-{i:03d}.output.version}}",
        "  input_defaults: {max_tokens: 64, temperature: 0.7}",
        f"  output_file: out/eval-{i:03d}.jsonl",
        "  sensitive: [user_email]",
        "  inputs:",
    ]
    for r in range(rows):
        lines.append(f'    - {{key: row-{r:05d}, prompt: "Prompt number {r} of file {i}", seed: {r}, '
                     f'user_email: u{r}@example.com}}')
    return (MODEL if i == 0 else "") + "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--rows", type=int, default=10_000, help="batch rows in all, spread over the files")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="jobrunner-bench-") as tmp:
        root = Path(tmp)
        (root / "jobrunner.yaml").write_text("parallelism: 10\n")
        (root / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 100)
        per_file, extra = divmod(args.rows, args.files)
        total_bytes = 0
        for i in range(args.files):
            text = manifest(i, per_file + (1 if i < extra else 0))
            (root / f"m{i:03d}.yaml").write_text(text)
            total_bytes += len(text)
        times = []
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        for _ in range(args.repeat):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "jobrunner", "validate", "."], cwd=root,
                                  capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            if proc.returncode != 0:
                print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
                return 1
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (usage.ru_utime - cpu_before.ru_utime + usage.ru_stime - cpu_before.ru_stime) / args.repeat
        # ru_maxrss of children is the largest peak among them (kilobytes on Linux).
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"workspace: {args.files} files, {2 * args.files + 1} resources, {args.rows} batch rows, "
              f"{total_bytes / 1e6:.1f} MB of YAML")
        print(f"result: {proc.stdout.strip().splitlines()[-1]}")
        print(f"wall time: best {min(times):.2f} s, median {statistics.median(times):.2f} s "
              f"over {args.repeat} runs (target <= 2 s)")
        print(f"cpu time: {cpu:.2f} s per run (user + system; wall time exceeds it only on a busy machine)")
        print(f"peak memory: {peak_mb:.0f} MB (target <= 150 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
