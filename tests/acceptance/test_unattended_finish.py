"""A job that finishes while no apply watches it is recorded by the next apply, even a no-change one.

Found by the model-based test (seed 401): apply was killed just as a job turned terminal; the job
then succeeded, and every later apply printed "No changes" and exited 0 while state kept saying
`running` with no outputs, so references to it could never resolve.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from tests.acceptance.test_exit_codes import nap_batch
from tests.helpers.cli import run_cli


def _state(root: Path) -> dict:
    return json.loads((root / ".jobrunner" / "state.json").read_text(encoding="utf-8"))["addresses"]


def test_a_job_that_finished_unattended_is_saved_by_a_no_change_apply(workspace: Path, platform) -> None:
    nap_batch(workspace, 2)
    assert run_cli("apply", "--auto-approve", "--no-wait", "nap.yaml").code == 0
    remote_id = _state(workspace)["PredictionBatch/nap[k]"]["remote_id"]
    assert _state(workspace)["PredictionBatch/nap[k]"]["status"] != "succeeded"
    deadline = time.monotonic() + 30
    with platform.client() as c:
        while c.get(f"/v1/predictions/{remote_id}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.1)

    r = run_cli("apply", "--auto-approve", "nap.yaml")
    assert r.code == 0, r.output
    st = _state(workspace)["PredictionBatch/nap[k]"]
    assert st["status"] == "succeeded" and st["remote_id"] == remote_id
    assert st["outputs"], st
    # And it stays converged: nothing more to record, nothing sent again.
    again = run_cli("apply", "--auto-approve", "nap.yaml")
    assert again.code == 0 and "No changes" in again.output, again.output
