"""Benchmark: planning over 100, 1,000 and 10,000 tracked batch items that have all succeeded.

For each size it builds a workspace (one PredictionBatch with an `inputs_file` of N rows, state
recording every item as succeeded, exactly as apply records it) and measures, each in a fresh
process so peak memory is per measurement:

- the engine, stage by stage: state load, validation, spec expansion, `compute_plan`, rendering
  (text, JSON, markdown);
- `jobrunner plan --detailed-exitcode` end to end (interpreter start included), which must exit 0
  ("No changes") and send no HTTP request at all: the workspace's providers point at a loopback
  socket that counts connections.

Targets (issues 4 and 6): at 10,000 items <= 1.5 s wall and <= 200 MB peak, growth near linear.
Prints a Markdown table.

    python bench/plan_bench.py [--sizes 100,1000,10000] [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"
TARGET_WALL_S = 1.5
TARGET_RSS_MB = 200


def counting_server() -> tuple[int, list[bytes]]:
    """A loopback socket that records the first bytes of every connection and answers nothing."""
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
    """A workspace whose N batch items are all recorded as succeeded."""
    sys.path.insert(0, str(REPO))
    from jobrunner.plan import lifecycle_of
    from jobrunner.spec import expand, recorded_inputs
    from jobrunner.state.local_file import LocalFileStore
    from jobrunner.state.model import AddressState, Attempt, StateDoc
    from jobrunner.validate import validate_paths

    url = f"http://127.0.0.1:{port}"
    (root / "jobrunner.yaml").write_text(
        f"providers:\n  local:\n    url: {url}\n  replicate:\n    base_url: {url}\n  emissary:\n    base_url: {url}\n")
    with open(root / "prompts.jsonl", "w") as fh:
        for i in range(items):
            fh.write(json.dumps({"key": f"item-{i:05d}", "prompt": f"prompt number {i}", "seed": i % 7}) + "\n")
    (root / "batch.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: big}\nspec:\n"
        f"  provider: local\n  version: {ECHO}\n  input_defaults: {{max_tokens: 80}}\n"
        "  inputs_file: prompts.jsonl\n")
    result = validate_paths([root], root)
    assert result.ok, [d.format() for d in result.diagnostics]
    (res,) = result.resources
    doc = StateDoc(lineage="bench")
    for job in expand(result.resources, root):
        rid = "p" + (job.fingerprint or "")[:25]
        doc.addresses[job.address] = AddressState(
            address=job.address, kind=res.kind, job_kind=job.job_kind, provider=job.provider, file=job.file,
            fingerprint=job.fingerprint, remote_id=rid, status="succeeded", attempts=1,
            outputs={"output": job.request["input"]["prompt"], "metrics": {"predict_time": 0.01}},
            inputs=recorded_inputs(job), lifecycle=lifecycle_of(res), updated_at="2026-01-01T00:00:00+00:00",
            history=[Attempt(remote_id=rid, fingerprint=job.fingerprint or "", attempt=1,
                             created_at="2026-01-01T00:00:00+00:00", status="succeeded")],
        )
    LocalFileStore(root / ".jobrunner" / "state.json").save(doc)


# --- the engine, measured inside a fresh process ------------------------------------------------

_ENGINE = r"""
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from jobrunner.plan import compute_plan
from jobrunner.render import plan_json, plan_markdown, plan_text
from jobrunner.spec import expand
from jobrunner.state.local_file import LocalFileStore
from jobrunner.validate import validate_paths
root = Path(sys.argv[1])
t1 = time.perf_counter()
doc = LocalFileStore(root / ".jobrunner" / "state.json").load()
t2 = time.perf_counter()
result = validate_paths([root], root)
t3 = time.perf_counter()
desired = expand(result.resources, root, state=doc)
t4 = time.perf_counter()
plan = compute_plan(desired, doc, {}, planned_files=set(result.files), resources=result.resources)
t5 = time.perf_counter()
text = plan_text.render(plan, color=False)
t6 = time.perf_counter()
plan_json.render(plan)
t7 = time.perf_counter()
md = plan_markdown.render(plan)
t8 = time.perf_counter()
assert not plan.has_changes and text.startswith("No changes."), text[:500]
print(json.dumps({
    "import": t1 - t0, "load": t2 - t1, "validate": t3 - t2, "expand": t4 - t3, "plan": t5 - t4,
    "text": t6 - t5, "json": t7 - t6, "markdown": t8 - t7, "total": t8 - t1,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "changes": len(plan.changes),
    "markdown_chars": len(md),
}))
"""


def run_engine(root: Path, env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", _ENGINE, str(root)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"engine run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_cli(root: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS MB) of `jobrunner plan --detailed-exitcode` in `root`."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "jobrunner", "plan", "--detailed-exitcode"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    # communicate() reaped it: its CPU time is in the children's totals; ru_maxrss is the largest
    # child so far (sizes run in increasing order, so it is this size's peak)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rss = after.ru_maxrss / 1024
    if proc.returncode != 0:
        raise SystemExit(f"jobrunner plan exited {proc.returncode} (expected 0, no changes):\n"
                         f"{out.decode()[-1500:]}\n{err.decode()[-1500:]}")
    return wall, cpu, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--runs", type=int, default=3, help="runs per measurement; the best is reported")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    port, seen = counting_server()
    env = {**os.environ, "PYTHONPATH": str(REPO), "JOBRUNNER_LOCAL_TOKEN": "bench-token",
           "REPLICATE_API_TOKEN": "bench-token", "REPLICATE_BASE_URL": f"http://127.0.0.1:{port}",
           "EMISSARY_CLIENT_API_KEY": "bench-token", "EMISSARY_SERVER_URL": f"http://127.0.0.1:{port}"}
    env.pop("JOBRUNNER_STATE_URL", None)
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="jobrunner-plan-bench-") as tmp:
            root = Path(tmp)
            build(root, n, port)
            engine = min((run_engine(root, env) for _ in range(args.runs)), key=lambda r: r["total"])
            before = len(seen)
            cli = [run_cli(root, env) for _ in range(args.runs)]
            wall = min(w for w, _, _ in cli)
            cpu = min(c for _, c, _ in cli)
            rss = max(r for _, _, r in cli)
            requests = len(seen) - before
            rows.append((n, engine, wall, cpu, rss, requests))

    print("| items | state load | validate | expand | compute_plan | render text / json / md | engine total "
          "| engine peak RSS | `jobrunner plan` wall | CLI CPU | CLI peak RSS | HTTP requests |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, e, wall, cpu, rss, requests in rows:
        print(f"| {n:,} | {e['load']:.3f} s | {e['validate']:.3f} s | {e['expand']:.3f} s | {e['plan']:.3f} s "
              f"| {e['text']:.3f} / {e['json']:.3f} / {e['markdown']:.3f} s | {e['total']:.3f} s "
              f"| {e['rss_mb']:.0f} MB | {wall:.2f} s | {cpu:.2f} s | {rss:.0f} MB | {requests} |")
    n, e, wall, cpu, rss, requests = rows[-1]
    ok = wall <= TARGET_WALL_S and rss <= TARGET_RSS_MB and requests == 0
    print()
    print(f"Target at {n:,} items: `jobrunner plan` <= {TARGET_WALL_S} s wall and <= {TARGET_RSS_MB} MB, "
          f"0 HTTP requests: {'met' if ok else 'MISSED'} ({wall:.2f} s, {rss:.0f} MB, {requests} requests). "
          f"Best of {args.runs} runs; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
          "(on a busy machine wall time exceeds CPU time; CPU time is what the code costs).")
    if len(rows) > 1:
        (n0, e0, *_), (n1, e1, *_) = rows[0], rows[-1]
        print(f"Engine growth {n0:,} -> {n1:,} items: x{e1['total'] / max(e0['total'], 1e-9):.0f} time for "
              f"x{n1 / n0:.0f} items.")


if __name__ == "__main__":
    main()
