"""The model-based adversarial test, for as long as you like: `python bench/soak_model.py --steps N --seed S`.

Runs the seeded step generator of tests/model/ (manifest edits, applies, plans, kill -9 of apply or
of the platform, fault knobs, state damage and recovery) against the real CLI and a real local
platform, checking every invariant after every step, and prints one row per seed and a total:
steps, seeds, invariant checks, failures found. A failure prints its seed, its step list and the
command that replays it. `--seeds K` runs seeds S..S+K-1; `--extra KINDS` (or MODEL_STEPS_EXTRA)
adds the opt-in step kinds. Exit code 1 when any seed failed.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.model.runner import ModelFailure, run_model  # noqa: E402
from tests.model.world import kinds_from_env  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="first seed [1]")
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds, from --seed on [1]")
    parser.add_argument("--steps", type=int, default=100, help="steps per seed [100]")
    parser.add_argument("--extra", default=os.environ.get("MODEL_STEPS_EXTRA", ""),
                        help="opt-in step kinds, comma-separated, or 'all' [MODEL_STEPS_EXTRA]")
    parser.add_argument("--keep", action="store_true", help="keep every run's workspace, not only failed ones")
    parser.add_argument("--quiet", action="store_true", help="no per-step lines")
    parser.add_argument("--budget-s", type=float, default=0.0, help="stop starting new seeds after this long")
    args = parser.parse_args(argv)
    kinds = kinds_from_env(args.extra)
    # `timeout` or a CI runner ends the soak with SIGTERM: unwind, so the platform is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    rows: list[tuple[int, int, int, str, float]] = []
    failures: list[str] = []
    started = time.monotonic()
    for seed in range(args.seed, args.seed + args.seeds):
        if args.budget_s and time.monotonic() - started > args.budget_s:
            print(f"budget of {args.budget_s:.0f}s spent: stopping before seed {seed}", flush=True)
            break
        print(f"seed {seed}: {args.steps} steps", flush=True)
        t0 = time.monotonic()
        try:
            report = run_model(seed, args.steps, kinds, keep=args.keep, log=None if args.quiet else sys.stdout)
            rows.append((seed, len(report.records), report.evaluations, "ok", report.seconds))
        except ModelFailure as exc:
            failures.append(f"seed {seed} step {exc.step}: " + "; ".join(p.split(":")[0] for p in exc.problems))
            rows.append((seed, exc.step + 1, exc.checks, "FAILED", time.monotonic() - t0))
            print(str(exc), flush=True)
    print()
    print(f"{'seed':>6} {'steps':>6} {'checks':>7} {'result':>7} {'seconds':>8}   (checks: invariants evaluated)")
    for seed, steps, checks, result, seconds in rows:
        print(f"{seed:>6} {steps:>6} {checks:>7} {result:>7} {seconds:>8.1f}")
    total_steps = sum(r[1] for r in rows)
    print(f"\n{len(rows)} seed(s), {total_steps} step(s), {sum(r[2] for r in rows)} invariant check(s), "
          f"{len(failures)} failure(s), {time.monotonic() - started:.0f}s")
    for line in failures:
        print(f"  {line}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
