"""Benchmark: `jobrunner plan` over 10,000 tracked batch items that have all succeeded.

Target (issue 4): <= 1.5 s wall, <= 200 MB peak RSS, and no HTTP request at all (terminal jobs are
immutable). The workspace's `local` provider points at a loopback port where a tiny counting
server listens: any request it receives is reported as a failure of the "no HTTP" target.

    python bench/plan_10k_bench.py [--items 10000] [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"


def counting_server() -> tuple[int, list[bytes]]:
    """A loopback socket that records every connection's first bytes (and answers nothing)."""
    seen: list[bytes] = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)

    def serve() -> None:
        while True:
            conn, _ = sock.accept()
            seen.append(conn.recv(200))
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return sock.getsockname()[1], seen


def build(root: Path, items: int, port: int) -> None:
    from jobrunner.reconcile.planning import load_resources
    from jobrunner.spec import expand, recorded_inputs
    from jobrunner.state.model import AddressState, Attempt, StateDoc

    (root / "jobrunner.yaml").write_text(f"providers:\n  local:\n    url: http://127.0.0.1:{port}\n")
    with open(root / "prompts.jsonl", "w") as fh:
        for i in range(items):
            fh.write(json.dumps({"key": f"item-{i:05d}", "text": f"prompt number {i}"}) + "\n")
    (root / "batch.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: big}\nspec:\n"
        f"  provider: local\n  version: {ECHO}\n  inputs_file: prompts.jsonl\n")
    resources, _, _ = load_resources([root], root)
    doc = StateDoc(lineage="bench", serial=1)
    for job in expand(resources, root):
        rid = "r" + job.fingerprint[:25]
        doc.addresses[job.address] = AddressState(
            address=job.address, kind="PredictionBatch", job_kind=job.job_kind, provider="local", file=job.file,
            fingerprint=job.fingerprint, remote_id=rid, status="succeeded", attempts=1,
            outputs={"output": job.request["input"], "metrics": {"predict_time": 0.01}},
            inputs=recorded_inputs(job), updated_at="2026-01-01T00:00:00Z",
            history=[Attempt(remote_id=rid, fingerprint=job.fingerprint, attempt=1,
                             created_at="2026-01-01T00:00:00Z", status="succeeded")])
    (root / ".jobrunner").mkdir(exist_ok=True)
    (root / ".jobrunner" / "state.json").write_text(json.dumps(doc.to_json()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    port, seen = counting_server()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(root, args.items, port)
        env = {**os.environ, "PYTHONPATH": str(REPO), "JOBRUNNER_LOCAL_TOKEN": "bench"}
        walls = []
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        for _ in range(args.runs):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "jobrunner", "plan", "--detailed-exitcode"], cwd=root,
                                  env=env, capture_output=True, text=True)
            walls.append(time.perf_counter() - start)
            if proc.returncode != 0:
                print(proc.stdout[-2000:], proc.stderr[-2000:])
                raise SystemExit(f"plan exited {proc.returncode} (expected 0: no changes)")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        rss_mb = usage.ru_maxrss / 1024
        cpu = ((usage.ru_utime - cpu_before.ru_utime) + (usage.ru_stime - cpu_before.ru_stime)) / args.runs
        print(f"plan over {args.items} succeeded items: wall best {min(walls):.2f}s, "
              f"median {sorted(walls)[len(walls) // 2]:.2f}s (target <= 1.5s)")
        print(f"CPU time per run (user+sys, whole process incl. interpreter start) {cpu:.2f}s; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall grows with load)")
        print(f"peak RSS {rss_mb:.0f} MB (target <= 200 MB)")
        print(f"HTTP requests received: {len(seen)} (target 0)")


if __name__ == "__main__":
    main()
