"""Exactly-once creation end to end: a `kill -9` mid-create and a dropped connection after commit.

Both leave the question "was the job created?" open; the next apply (or the same apply, for the
dropped connection) must look the job up on the provider and adopt it, never create a duplicate.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.acceptance.conftest import REPO
from tests.helpers.cli import run_cli

ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"


def manifest(root: Path, marker: str) -> None:
    (root / "m.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: once}\nspec:\n"
        f"  provider: local\n  version: {ECHO}\n  inputs:\n    - {{key: k, text: {marker}}}\n")


def jobs_with(platform, marker: str) -> list[dict]:
    headers = {"Authorization": f"Bearer {platform.token}"}
    found, url = [], f"{platform.url}/v1/predictions"
    while url:
        page = httpx.get(url, headers=headers, timeout=10).json()
        found += [p for p in page["results"] if (p.get("input") or {}).get("text") == marker]
        url = page.get("next")
    return found


def faults(platform, **knobs) -> None:
    r = httpx.post(f"{platform.url}/_admin/faults", json=knobs, headers={"Authorization": f"Bearer {platform.token}"},
                   timeout=10)
    r.raise_for_status()


def test_kill_9_after_the_create_reached_the_provider_then_apply_adopts(workspace: Path, platform):
    marker = f"kill-{time.time_ns()}"
    manifest(workspace, marker)
    state_file = workspace / ".jobrunner" / "state.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("crash_after_create.py")), "apply",
                           "--auto-approve", "m.yaml"], cwd=workspace, env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    st = json.loads(state_file.read_text())["addresses"]["PredictionBatch/once[k]"]
    assert st["intent"] is not None and st["remote_id"] is None, "the crash left only the intent"
    assert len(jobs_with(platform, marker)) == 1

    r = run_cli("plan", "m.yaml")
    assert r.code == 0 and "adopt" in r.stdout.lower(), r.output
    r = run_cli("apply", "--auto-approve", "m.yaml")
    assert r.code == 0, r.output
    after = jobs_with(platform, marker)
    assert len(after) == 1, "the job was adopted, not created again"
    st = json.loads(state_file.read_text())["addresses"]["PredictionBatch/once[k]"]
    assert st["remote_id"] == after[0]["id"] and st["intent"] is None and st["status"] == "succeeded"
    r = run_cli("plan", "--detailed-exitcode", "m.yaml")
    assert r.code == 0, r.output


def test_dropped_connection_after_commit_is_adopted_not_duplicated(workspace: Path, platform):
    marker = f"drop-{time.time_ns()}"
    manifest(workspace, marker)
    faults(platform, drop_next_creates=1)
    try:
        r = run_cli("apply", "--auto-approve", "m.yaml")
    finally:
        faults(platform, reset=True)
    assert r.code == 0, r.output
    assert len(jobs_with(platform, marker)) == 1
    assert "adopted" in r.stdout and "0 created, 1 adopted" in r.stdout


def test_crash_then_manifest_deleted_still_finds_the_job_instead_of_orphaning_it(workspace: Path, platform):
    marker = f"orphan-{time.time_ns()}"
    manifest(workspace, marker)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("crash_after_create.py")), "apply",
                           "--auto-approve", "m.yaml"], cwd=workspace, env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    (workspace / "m.yaml").unlink()
    r = run_cli("plan", ".")
    assert r.code == 0, r.output
    [job] = jobs_with(platform, marker)
    assert job["id"] in r.stdout, "the plan names the job the interrupted create made"
    r = run_cli("apply", "--auto-approve", ".")
    assert r.code == 0, r.output
    assert json.loads((workspace / ".jobrunner" / "state.json").read_text())["addresses"] == {}
