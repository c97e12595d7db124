"""Ctrl-C during apply (exit 130, state saved, jobs keep running) and a job's own `timeout`."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from jobrunner.errors import StateError
from jobrunner.state.local_file import read_state_json
from tests.acceptance.conftest import REPO
from tests.helpers.cli import run_cli, start_process

SLEEP = "9969ed6b494ff19ed449533b9068fbbb2d4a56c25945cdbcd23ccc069365f2f0"


def sleep_batch(root: Path, seconds: float, extra: str = "") -> None:
    (root / "s.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: nap}\nspec:\n"
        f"  provider: local\n  version: {SLEEP}\n  inputs:\n    - {{key: n, seconds: {seconds}}}\n{extra}")


@pytest.mark.slow  # signals a subprocess
def test_first_ctrl_c_saves_state_and_leaves_the_job_running(workspace: Path):
    sleep_batch(workspace, 20)
    state_file = workspace / ".jobrunner" / "state.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = start_process(["apply", "--auto-approve", "s.yaml"], workspace, env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            st = read_state_json(state_file)["addresses"].get("PredictionBatch/nap[n]")
            if st and st["remote_id"]:
                break
        except (OSError, ValueError, StateError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert "keep running" in err
    st = read_state_json(state_file)["addresses"]["PredictionBatch/nap[n]"]
    assert st["status"] in ("pending", "running") and st["intent"] is None
    r = run_cli("destroy", "--auto-approve")
    assert r.code == 0, r.output


@pytest.mark.slow  # waits out a job timeout
def test_job_timeout_cancels_it_and_apply_exits_5(workspace: Path):
    sleep_batch(workspace, 30, "  timeout: 2s\n")
    started = time.monotonic()
    r = run_cli("apply", "--auto-approve", "s.yaml")
    assert r.code == 5, r.output
    assert time.monotonic() - started < 25  # the 2 s timeout ended it, not the 30 s job (busy machine included)
    st = json.loads((workspace / ".jobrunner" / "state.json").read_text())["addresses"]["PredictionBatch/nap[n]"]
    assert st["status"] in ("canceled", "aborted")
