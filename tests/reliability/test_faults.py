"""Fault suite: apply 200 predictions and 10 trainings against a local platform that misbehaves
the way real networks and providers do, then prove nothing was lost or duplicated.

Faults (set at run time through the platform's admin route, `POST /_admin/faults`). Every fault a
test asserts on is *scheduled*, so every run meets it (a run once met zero 429s by chance and went
red with nothing broken):
- 500/503 answers at 16 known request numbers (`http_5xx_at`) on top of a seeded 5% error rate,
- every 20th create committed, then the connection dropped without an answer
  (`drop_every_nth_create`): the client cannot know whether the job exists,
- a 429 burst with `Retry-After: 1` at requests 40-49 and single 429s later (`http_429_at`), on top
  of a token-bucket rate limit (creates above 20 in a burst, refilled at 20 per second),
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

import pytest

from jobrunner.local.faults import FaultConfigError, FaultState, parse_faults
from tests.reliability.harness import (
    Platform,
    apply_until_converged,
    audit_exactly_once,
    clean_env,
    platform_now,
    run_cli,
)
from tests.reliability.workloads import write_workload

SCHEDULED_5XX = [3, 9, 17, 26, 31, 55, 64, 78, 90, 101, 115, 127, 140, 152, 166, 181]
SCHEDULED_429 = [*range(40, 50), 120, 160, 199]
DROP_EVERY = 20

FAULTS = {
    "http_5xx_at": SCHEDULED_5XX,
    "http_429_at": SCHEDULED_429,
    "drop_every_nth_create": DROP_EVERY,
    "error_rate": 0.05,
    "drop_after_create": 0.0,
    "rate_limit": "custom",
    "create_per_minute": 1200,
    "other_per_minute": 60000,
    "get_per_minute": 60000,
    "burst": 20,
    "latency_jitter_ms": 300,
    "seed": 20261122,
}


@pytest.mark.slow
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
    # The faults really fired, every run: they are scheduled, not drawn. 210 jobs need at least 210
    # creates, so every 20th of them dropped is at least 10 drops; more than 200 requests reach every
    # scheduled 429 and 5xx.
    assert stats.get("requests", 0) > max(SCHEDULED_429 + SCHEDULED_5XX), stats
    assert stats.get("status.dropped", 0) >= 210 // DROP_EVERY, stats
    assert stats.get("status.429", 0) >= len(SCHEDULED_429), stats
    assert stats.get("status.500", 0) + stats.get("status.503", 0) >= len(SCHEDULED_5XX), stats
    assert "adopted" in "".join(r.output for r in results)
    r = run_cli("plan", "--detailed-exitcode", "jobs.yaml")
    assert r.code == 0, r.output


HARSH = {"error_rate": 0.30, "drop_after_create": 0.20, "seed": 7}


@pytest.mark.slow
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


@pytest.mark.slow
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
    # Every 3rd create dropped (scheduled: at least 3 of the 10 trainings are met by it) on top of the
    # seeded random drops and errors.
    platform.faults(error_rate=0.10, drop_after_create=0.30, drop_every_nth_create=3, latency_jitter_ms=200, seed=11)
    try:
        results = apply_until_converged(workspace, env, "jobs.yaml", rounds=6)
    finally:
        platform.faults(reset=True)
    with platform.client() as c:
        stats = c.get("/_admin/stats").json()
    assert stats.get("status.dropped", 0) >= 10 // 3, stats
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


# --- the scheduled knobs themselves (pure: no platform, no clock) ---------------------------------


def test_scheduled_429_and_5xx_answer_exactly_the_listed_request_numbers() -> None:
    faults = FaultState()
    faults.update(parse_faults("http_429_at=2|5|6,http_5xx_at=3,retry_after_s=4,error_statuses=503"))
    decisions = [faults.decide("create" if i % 2 else "other", now=0.0) for i in range(1, 9)]
    assert [d.status for d in decisions] == [None, 429, 503, None, 429, 429, None, None]
    assert {d.retry_after for d in decisions if d.status == 429} == {4}


def test_drop_every_drops_each_nth_committed_create_and_setting_knobs_restarts_the_count() -> None:
    faults = FaultState()
    faults.update({"drop_every_nth_create": 3})
    assert [faults.should_drop_create() for _ in range(7)] == [False, False, True, False, False, True, False]
    faults.update({"drop_every_nth_create": 3})  # a new schedule counts from its own start
    assert [faults.should_drop_create() for _ in range(3)] == [False, False, True]
    faults.update({"reset": True})
    assert not faults.config.active() and not any(faults.should_drop_create() for _ in range(10))


def test_scheduled_knobs_are_validated() -> None:
    for bad in ("http_429_at=0", "http_5xx_at=x", "drop_every_nth_create=-1"):
        try:
            parse_faults(bad)
        except FaultConfigError as exc:
            assert bad.split("=")[0] in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")
    assert parse_faults("http_429_at=7 3 3")["http_429_at"] == [3, 7]


def test_scheduled_faults_reach_the_client_through_the_admin_route(platform: Platform) -> None:
    platform.faults(reset=True)
    platform.faults(http_429_at=[2], http_5xx_at=[3], retry_after_s=2)
    try:
        with platform.client() as c:
            codes = [c.get("/v1/account") for _ in range(4)]
    finally:
        platform.faults(reset=True)
    assert [r.status_code for r in codes] == [200, 429, 500, 200]
    assert codes[1].headers["retry-after"] == "2"
