"""A restored backup that predates a *retry*: the job that succeeded is adopted, not run a third time.

Found by the model-based test (`python bench/soak_model.py --seed 1303 --steps 69`): a batch row's
first job failed (the platform stopped under it), the next apply ran it again and it succeeded;
then the state file was damaged and restored from a backup taken before both. The recovery lookup
matched the row to its *first* job (the earliest match), saw it failed, and ran the row a third
time. For an address no other row shares a request with, the newest matching job is its current
one and the older ones are its earlier attempts (as `jobrunner state recover` does).

Two backups are tried: one that lacks the row altogether, and one that records the row's first
job as still running (its refreshed status, failed, must count, not the backup's).
End to end: real CLI, a real `jobrunner serve` killed and restarted, the platform's listing audited.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import INHERITED_ENV, write_workspace
from tests.model.runner import ServedPlatform
from tests.reliability.harness import (
    LOOKUP_WINDOW,
    SLEEP,
    Platform,
    apply_until_converged,
    audit_exactly_once,
    clean_env,
    load_state,
    platform_now,
    run_cli,
)
from tests.reliability.workloads import write_workload


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedPlatform]:
    """`jobrunner serve` in its own process: killed and restarted, it fails the jobs it was running."""
    served = ServedPlatform(tmp_path / "platform" / "data", "jrl_rt_" + secrets.token_hex(8))
    served.start()
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def workspace(tmp_path: Path, served: ServedPlatform, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = write_workspace(tmp_path / "ws", served.url)
    monkeypatch.chdir(root)
    monkeypatch.setenv("JOBRUNNER_LOCAL_TOKEN", served.token)
    monkeypatch.setenv("JOBRUNNER_LOOKUP_WINDOW", LOOKUP_WINDOW)
    for var in INHERITED_ENV:
        monkeypatch.delenv(var, raising=False)
    return root


def _status(platform: Platform, remote_id: str) -> str:
    with platform.client() as c:
        return str(c.get(f"/v1/predictions/{remote_id}").json()["status"])


def _run_twice(workspace: Path, served: ServedPlatform, tag: str) -> tuple[dict[str, bytes], set[str], str]:
    """Rows p0, p1 applied (the first backup); then s0 started (the second backup), failed by a
    platform restart, and applied again: it succeeds on its second attempt."""
    platform = Platform(served.url, served.token, served.data_dir, None)
    write_workload(workspace, tag, predictions=2, trainings=0)
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    state = workspace / ".jobrunner" / "state.json"
    backups = {"no-row": state.read_bytes()}
    expected = write_workload(workspace, tag, predictions=2, trainings=0, slow=1, slow_seconds=4.0)
    manifest = workspace / "jobs.yaml"
    retried = f"version: {SLEEP}\n  retry: {{max_attempts: 3}}\n"
    manifest.write_text(manifest.read_text().replace(f"version: {SLEEP}\n", retried))
    started = run_cli("apply", "--auto-approve", "--no-wait", "jobs.yaml")
    assert started.code == 0, started.output
    first = load_state(workspace)["addresses"]["PredictionBatch/slow[s0]"]["remote_id"]
    backups["running-row"] = state.read_bytes()
    served.kill()  # s0 is still sleeping: the restarted platform fails it
    served.start()
    assert _status(platform, first) == "failed"
    apply_until_converged(workspace, clean_env(platform), "jobs.yaml")
    row = load_state(workspace)["addresses"]["PredictionBatch/slow[s0]"]
    assert row["remote_id"] != first and row["status"] == "succeeded", row
    return backups, expected, first


@pytest.mark.slow  # a platform restart, two runs of a slow row and a lookup window
@pytest.mark.parametrize("backup_has", ["no-row", "running-row"])
def test_a_row_retried_since_the_backup_adopts_its_last_job(workspace: Path, served: ServedPlatform,
                                                              backup_has: str) -> None:
    tag = "rt" + secrets.token_hex(4)
    platform = Platform(served.url, served.token, served.data_dir, None)
    since = platform_now(platform)
    backups, expected, first = _run_twice(workspace, served, tag)
    succeeded = load_state(workspace)["addresses"]["PredictionBatch/slow[s0]"]["remote_id"]

    state = workspace / ".jobrunner" / "state.json"
    (workspace / ".jobrunner" / "state.json.bak").write_bytes(backups[backup_has])
    state.write_bytes(b"")  # the state file is emptied
    restored = run_cli("state", "restore-backup")
    assert restored.code == 0, restored.output

    plan = run_cli("plan")
    assert plan.code == 0, plan.output
    assert f"adopting {succeeded}" in plan.stdout, plan.stdout  # the retry's job, not the failed first one
    assert "0 to create, 0 to replace, 0 to retry" in plan.stdout, plan.stdout

    results = apply_until_converged(workspace, clean_env(platform))
    assert "created (" not in results[0].output, results[0].output  # nothing run a third time
    row = load_state(workspace)["addresses"]["PredictionBatch/slow[s0]"]
    assert row["remote_id"] == succeeded and row["status"] == "succeeded", row
    assert [h["remote_id"] for h in row["history"]] == [first, succeeded], row["history"]
    assert [h["attempt"] for h in row["history"]] == [1, 2], row["history"]
    audit = audit_exactly_once(platform, workspace, since, expected)
    assert not audit.problems, "\n".join(audit.problems)
    assert audit.remote_jobs == 4  # p0, p1, and s0's two jobs: 0 duplicates
