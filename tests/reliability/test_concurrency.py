"""Concurrency: two applies on one workspace, racing applies, and locks left by other hosts.

(A lock left by a `kill -9` on this host is taken over with a warning: every case of the crash
suite asserts that on its first re-run.)
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.cli import start_process
from tests.reliability.harness import (
    Platform,
    apply_until_converged,
    audit_exactly_once,
    clean_env,
    platform_now,
    run_cli,
    run_process,
)
from tests.reliability.workloads import write_workload

# Racing applies as separate processes: slow tier.
pytestmark = pytest.mark.slow


def _start_apply(workspace: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return start_process(["apply", "--auto-approve", "jobs.yaml"], workspace, env, merge_stderr=True)


def _wait_for_holder(workspace: Path, pid: int) -> None:
    lock = workspace / ".jobrunner" / "state.json.lock"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if json.loads(lock.read_text() or "{}").get("pid") == pid:
                return
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.02)
    raise AssertionError("the first apply never took the lock")


def test_second_apply_exits_4_naming_the_holder_and_nothing_is_created_twice(workspace: Path,
                                                                             platform: Platform) -> None:
    # slow jobs keep the first apply (and its lock) busy while two more commands start
    expected = write_workload(workspace, "conc-second", predictions=5, trainings=0, slow=2, slow_seconds=5)
    since = platform_now(platform)
    env = clean_env(platform)
    first = _start_apply(workspace, env)
    try:
        _wait_for_holder(workspace, first.pid)
        for command in (["apply", "--auto-approve", "jobs.yaml"], ["destroy", "--auto-approve"]):
            second = run_process(command, workspace, env)
            assert second.code == 4, second.output
            assert f"pid {first.pid}" in second.output and "`jobrunner apply`" in second.output, second.output
            assert "Traceback" not in second.output
    finally:
        out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out
    audit = audit_exactly_once(platform, workspace, since, expected)
    assert not audit.problems, "\n".join(audit.problems)
    assert audit.remote_jobs == 7


def test_racing_applies_one_wins_the_others_exit_4_zero_duplicates(workspace: Path, platform: Platform) -> None:
    expected = write_workload(workspace, "conc-race", predictions=20, trainings=1, slow=1)
    since = platform_now(platform)
    env = clean_env(platform)
    procs = [_start_apply(workspace, env) for _ in range(4)]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert set(codes) <= {0, 4} and 0 in codes, list(zip(codes, outs, strict=True))
    for code, out in zip([p.returncode for p in procs], outs, strict=True):
        assert "Traceback" not in out
        if code == 4:
            assert "locked by `jobrunner apply`" in out, out
    apply_until_converged(workspace, env, "jobs.yaml")
    audit = audit_exactly_once(platform, workspace, since, expected)
    assert not audit.problems, "\n".join(audit.problems)
    assert audit.remote_jobs == 22


def test_a_lock_from_another_host_is_reported_with_its_age_and_the_way_to_free_it(workspace: Path,
                                                                                 platform: Platform) -> None:
    write_workload(workspace, "conc-foreign", predictions=2, trainings=0)
    lock = workspace / ".jobrunner" / "state.json.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"id": "x", "host": "ci-runner-17", "pid": 4242, "user": "ci", "command": "apply",
                                "started_at": "2026-01-01T00:00:00+00:00", "ci_run": "GITHUB_RUN_ID=99"}))
    for command in (["apply", "--auto-approve", "jobs.yaml"], ["import", "PredictionBatch/echo[p0]", "x"]):
        r = run_cli(*command)
        assert r.code == 4, r.output
        assert "ci@ci-runner-17" in r.output and "GITHUB_RUN_ID=99" in r.output, r.output
        assert " ago" in r.output and "jobrunner state unlock" in r.output, r.output
    assert not (workspace / ".jobrunner" / "state.json").exists(), "nothing was sent or written"
    r = run_cli("state", "unlock")
    assert r.code == 0 and "ci-runner-17" in r.output, r.output
    r = run_cli("apply", "--auto-approve", "jobs.yaml")
    assert r.code == 0, r.output
