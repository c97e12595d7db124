"""Fault suite: apply 200 predictions and 10 trainings against a local platform that misbehaves
the way real networks and providers do, then prove nothing was lost or duplicated.

Faults (set at run time through the platform's admin route, `POST /_admin/faults`):
- 10% of requests answered 500/503 before they are processed (`error_rate`),
- 5% of creates committed, then the connection dropped without an answer (`drop_after_create`):
  the client cannot know whether the job exists,
- 429 bursts with `Retry-After`: creates above 20 in a burst, refilled at 20 per second,
- latency spikes: every request delayed by 0-300 ms (`latency_jitter_ms`).

A run may end with some addresses failed by the faults (a create that kept failing through its
retries); the user's response, and the test's, is to run apply again until it exits 0. Then the
platform's own listing is audited against state: one remote job per address and attempt, every
remote job recorded, every address succeeded.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from tests.reliability.harness import (
    Platform,
    apply_until_converged,
    audit_exactly_once,
    clean_env,
    platform_now,
    run_cli,
)
from tests.reliability.workloads import write_workload

FAULTS = {
    "error_rate": 0.10,
    "drop_after_create": 0.05,
    "rate_limit": "custom",
    "create_per_minute": 1200,
    "other_per_minute": 60000,
    "get_per_minute": 60000,
    "burst": 20,
    "latency_jitter_ms": 300,
    "seed": 20261122,
}


def test_faulty_platform_converges_with_zero_duplicates_and_zero_lost(workspace: Path, platform: Platform) -> None:
    expected = write_workload(workspace, "faults", predictions=200, trainings=10)
    since = platform_now(platform)
    platform.faults(**FAULTS)
    started = time.monotonic()
    try:
        results = apply_until_converged(workspace, clean_env(platform), "--parallelism", "20", "jobs.yaml")
    finally:
        platform.faults(reset=True)
    took = time.monotonic() - started
    print(f"fault suite: converged in {len(results)} apply run(s), {took:.1f}s; "
          f"exit codes {[r.code for r in results]}")
    for r in results[:-1]:  # a create that failed through all its retries: an error (1) or a failed job (5)
        assert r.code in (1, 5), r.output[-2000:]
    audit = audit_exactly_once(platform, workspace, since, expected)
    assert not audit.problems, "\n".join(audit.problems[:50])
    assert audit.remote_jobs == 210, audit  # 200 predictions + 10 trainings, each created once
    with platform.client() as c:
        stats = c.get("/_admin/stats").json()
    print(f"platform answered: {stats}")
    # The faults really fired: creates were dropped after commit (and adopted), 5xx and 429 answered.
    assert stats.get("status.dropped", 0) >= 3 and stats.get("status.429", 0) >= 1, stats
    assert stats.get("status.500", 0) + stats.get("status.503", 0) >= 5, stats
    assert "adopted" in "".join(r.output for r in results)
    r = run_cli("plan", "--detailed-exitcode", "jobs.yaml")
    assert r.code == 0, r.output


HARSH = {"error_rate": 0.30, "drop_after_create": 0.20, "seed": 7}


def test_a_harsh_platform_needs_reruns_and_they_still_create_each_job_once(workspace: Path,
                                                                          platform: Platform) -> None:
    """30% errors and 20% drops: some creates exhaust their retries, so apply reports them and is
    re-run (exactly what a user does); across the re-runs nothing is duplicated or lost."""
    expected = write_workload(workspace, "harsh", predictions=40, trainings=2)
    since = platform_now(platform)
    platform.faults(**HARSH)
    try:
        results = apply_until_converged(workspace, clean_env(platform), "--parallelism", "20", "jobs.yaml",
                                        rounds=8)
    finally:
        platform.faults(reset=True)
    print(f"harsh faults: converged in {len(results)} apply run(s); exit codes {[r.code for r in results]}")
    for r in results[:-1]:
        assert r.code in (1, 5), r.output[-2000:]
    audit = audit_exactly_once(platform, workspace, since, expected)
    assert not audit.problems, "\n".join(audit.problems[:50])
    assert audit.remote_jobs == 42


def test_emissary_trainings_under_faults_each_get_their_own_job_once(workspace: Path, platform: Platform) -> None:
    """10 Emissary trainings in one project, same base model, differing only by dataset, with 10%
    errors and 30% of creates dropped after commit: each gets exactly one job, on its own dataset."""
    from tests.reliability.test_crash import _emissary_setup

    project, datasets = _emissary_setup(platform, "faults", count=10)
    (workspace / "jobs.yaml").write_text("".join(
        f"---\napiVersion: jobrunner/v1\nkind: Training\nmetadata: {{name: t{i}}}\nspec:\n  provider: emissary\n"
        f"  project_id: {project}\n  base_model: jobrunner-ngram\n  train_dataset_id: {d}\n"
        for i, d in enumerate(datasets)))
    env = clean_env(platform, EMISSARY_SERVER_URL=platform.url, EMISSARY_CLIENT_API_KEY=platform.token)
    platform.faults(error_rate=0.10, drop_after_create=0.30, latency_jitter_ms=200, seed=11)
    try:
        results = apply_until_converged(workspace, env, "jobs.yaml", rounds=6)
    finally:
        platform.faults(reset=True)
    with platform.client() as c:
        stats = c.get("/_admin/stats").json()
    assert stats.get("status.dropped", 0) >= 1, stats
    state = json.loads((workspace / ".jobrunner" / "state.json").read_text())["addresses"]
    em = {"X-API-Key": platform.token, "Authorization": ""}
    with platform.client() as c:
        jobs = c.get(f"/v1/projects/{project}/training-jobs", headers=em).json()
        assert len(jobs) == 10, f"{len(jobs)} jobs for 10 trainings after {len(results)} apply run(s)"
        for i, d in enumerate(datasets):
            st = state[f"Training/t{i}"]
            assert st["status"] == "succeeded" and st["intent"] is None and len(st["history"]) == 1
            detail = c.get(f"/v1/projects/{project}/training-jobs/{st['remote_id']}", headers=em).json()
            assert detail["train_dataset"]["id"] == d
