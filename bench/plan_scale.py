"""Benchmark: `jobrunner plan` at 100, 1,000 and 10,000 batch items: time, peak memory, requests.

Two tables, one invocation:

1. **All tracked jobs terminal** (the common case: a batch that already ran). Each size gets a
   workspace with one PredictionBatch of N rows and state recording every item as succeeded; the
   engine is timed stage by stage in a fresh process and `jobrunner plan --detailed-exitcode` end
   to end (interpreter start included). The workspace's providers point at a loopback socket that
   counts connections: terminal jobs are immutable, so the plan must send no request at all.
2. **All tracked jobs non-terminal** (state last saw them `running`, e.g. after `apply --no-wait`):
   N real predictions exist on a local platform and `jobrunner plan` must refresh them. Requests
   are counted by the platform: the bulk refresh lists pages of 100 newest first, so N jobs
   should cost about N/100 requests, not N.

Targets (issues 4 and 6): at 10,000 items <= 1.5 s and <= 200 MB, near-linear growth; zero requests when
every tracked job is terminal; O(N/100) requests to refresh N running jobs.

    python bench/plan_scale.py [--sizes 100,1000,10000] [--runs 3] [--refresh-sizes 100,1000,10000]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    ECHO_VERSION,
    Platform,
    batch_workspace,
    bench_env,
    delta,
    local_platform,
    machine,
    run_timed,
    table,
)

TARGET_WALL_S = 1.5
TARGET_RSS_MB = 200


# --- table 1: every tracked job terminal ---------------------------------------------------------

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
        f"  provider: local\n  version: {ECHO_VERSION}\n  input_defaults: {{max_tokens: 80}}\n"
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



def terminal_table(sizes: list[int], runs: int) -> tuple[str, bool]:
    port, seen = counting_server()
    env = {**bench_env(), "JOBRUNNER_LOCAL_TOKEN": "bench-token", "REPLICATE_API_TOKEN": "bench-token",
           "REPLICATE_BASE_URL": f"http://127.0.0.1:{port}", "EMISSARY_CLIENT_API_KEY": "bench-token",
           "EMISSARY_SERVER_URL": f"http://127.0.0.1:{port}"}
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="jobrunner-plan-scale-") as tmp:
            root = Path(tmp)
            build(root, n, port)
            engine = min((run_engine(root, env) for _ in range(runs)), key=lambda r: r["total"])
            before = len(seen)
            cli = []
            for _ in range(runs):
                run = run_timed([sys.executable, "-m", "jobrunner", "plan", "--detailed-exitcode"], cwd=root, env=env)
                if run.returncode != 0:
                    raise SystemExit(f"jobrunner plan exited {run.returncode} (expected 0, no changes):\n"
                                     f"{run.stdout[-1500:]}\n{run.stderr[-1500:]}")
                # run_timed's peak RSS is the largest child so far; sizes run in increasing order
                cli.append((run.wall, run.cpu, run.rss_mb))
            rows.append((n, engine, min(w for w, _, _ in cli), min(c for _, c, _ in cli), max(r for _, _, r in cli),
                         len(seen) - before))
    out = [
        table(
            [
                "items",
                "state load",
                "validate",
                "expand",
                "compute_plan",
                "render text / JSON / Markdown",
                "engine total",
                "engine peak RSS",
                "`jobrunner plan` wall",
                "CPU",
                "peak RSS",
                "HTTP requests",
            ],
            [
                [
                    f"{n:,}",
                    f"{e['load']:.3f} s",
                    f"{e['validate']:.3f} s",
                    f"{e['expand']:.3f} s",
                    f"{e['plan']:.3f} s",
                    f"{e['text']:.3f} / {e['json']:.3f} / {e['markdown']:.3f} s",
                    f"{e['total']:.3f} s",
                    f"{e['rss_mb']:.0f} MB",
                    f"{wall:.2f} s",
                    f"{cpu:.2f} s",
                    f"{rss:.0f} MB",
                    req,
                ]
                for n, e, wall, cpu, rss, req in rows
            ],
        )
    ]
    n, e, wall, cpu, rss, req = rows[-1]
    ok = wall <= TARGET_WALL_S and rss <= TARGET_RSS_MB and all(r[-1] == 0 for r in rows)
    out.append("")
    out.append(f"At {n:,} items: `jobrunner plan` {wall:.2f} s wall ({cpu:.2f} s CPU), {rss:.0f} MB, "
               f"{sum(r[-1] for r in rows)} requests in all (targets <= {TARGET_WALL_S} s, <= {TARGET_RSS_MB} MB, 0: "
               f"{'met' if ok else 'MISSED'}); best of {runs} runs.")
    if len(rows) > 1:
        (n0, e0, _w0, c0, *_), (n1, e1, _w1, c1, *_) = rows[0], rows[-1]
        out.append(
            f"Growth {n0:,} -> {n1:,} items (x{n1 / n0:.0f}): engine x{e1['total'] / max(e0['total'], 1e-9):.0f}, "
            f"whole command CPU x{c1 / max(c0, 1e-9):.1f} (interpreter start is a fixed ~0.3 s)."
        )
    return "\n".join(out), ok


# --- table 2: every tracked job non-terminal --------------------------------------------------------

async def _create_predictions(platform: Platform, inputs: list[dict[str, Any]], parallelism: int = 16) -> list[str]:
    """Create the predictions straight through the API (fast), returning their ids in input order."""
    import httpx

    ids: list[str] = [""] * len(inputs)
    sem = asyncio.Semaphore(parallelism)
    async with httpx.AsyncClient(base_url=platform.url, headers={"Authorization": f"Bearer {platform.token}"},
                                 timeout=60.0) as client:
        async def one(i: int) -> None:
            async with sem:
                resp = await client.post("/v1/predictions", json={"version": ECHO_VERSION, "input": inputs[i]})
                resp.raise_for_status()
                ids[i] = resp.json()["id"]

        await asyncio.gather(*(one(i) for i in range(len(inputs))))
    return ids


def build_running(root: Path, items: int, platform: Platform) -> None:
    """A workspace whose N batch items were created on the platform and last seen `running`."""
    from jobrunner.plan import lifecycle_of
    from jobrunner.spec import expand, recorded_inputs
    from jobrunner.state.local_file import LocalFileStore
    from jobrunner.state.model import AddressState, Attempt, StateDoc
    from jobrunner.validate import validate_paths

    batch_workspace(root, items, platform.url, tag="refresh-")
    result = validate_paths([root], root)
    assert result.ok, [d.format() for d in result.diagnostics]
    (res,) = result.resources
    jobs = expand(result.resources, root)
    created_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ids = asyncio.run(_create_predictions(platform, [job.request["input"] for job in jobs]))
    doc = StateDoc(lineage="bench")
    for job, rid in zip(jobs, ids, strict=True):
        doc.addresses[job.address] = AddressState(
            address=job.address, kind=res.kind, job_kind=job.job_kind, provider=job.provider, file=job.file,
            fingerprint=job.fingerprint, remote_id=rid, status="running", attempts=1,
            inputs=recorded_inputs(job), lifecycle=lifecycle_of(res), updated_at=created_at,
            history=[Attempt(remote_id=rid, fingerprint=job.fingerprint or "", attempt=1, created_at=created_at,
                             status="running")],
        )
    LocalFileStore(root / ".jobrunner" / "state.json").save(doc)


def refresh_table(sizes: list[int]) -> tuple[str, bool]:
    rows = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="jobrunner-plan-refresh-") as tmp:
        work = Path(tmp)
        with local_platform(work / "platform") as platform:
            for n in sizes:
                root = work / f"ws-{n}"
                build_running(root, n, platform)
                before = platform.stats()
                run = run_timed([sys.executable, "-m", "jobrunner", "plan", "--detailed-exitcode"], cwd=root,
                                env=bench_env(platform))
                counts = delta(platform.stats(), before)
                if run.returncode not in (0, 2):
                    raise SystemExit(
                        f"jobrunner plan exited {run.returncode}:\n{run.stdout[-1500:]}\n{run.stderr[-1500:]}"
                    )
                requests = counts.get("requests", 0)
                pages = math.ceil(n / 100)
                ok = ok and requests <= pages + 2
                rows.append([f"{n:,}", f"{requests:,}", f"{counts.get('list.predictions', 0):,}",
                             f"{counts.get('category.get', 0):,}", f"{pages:,}", f"{requests / n:.3f}",
                             f"{run.wall:.2f} s", f"{run.cpu:.2f} s"])
    out = [table(["tracked running jobs", "HTTP requests", "list pages", "GETs", "N/100", "requests per job",
                  "`jobrunner plan` wall", "CPU"], rows)]
    out += ["", f"Refresh of running jobs through list pages: {'met' if ok else 'MISSED'} "
            "(target: about N/100 requests, at most N/100 + 2)."]
    return "\n".join(out), ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,10000", help="batch sizes for the all-terminal plan")
    ap.add_argument("--runs", type=int, default=3, help="runs per measurement (best shown)")
    ap.add_argument("--refresh-sizes", default="100,1000,10000",
                    help="running jobs to refresh (created on the platform first; empty skips the table)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    refresh_sizes = [int(s) for s in args.refresh_sizes.split(",") if s]
    print(f"Machine: {machine()}.\n")
    text, _ = terminal_table(sizes, args.runs)
    print("Plan with every tracked job terminal:\n")
    print(text)
    if refresh_sizes:
        text, _ = refresh_table(refresh_sizes)
        print("\nPlan with every tracked job running (bulk refresh):\n")
        print(text)


if __name__ == "__main__":
    main()
