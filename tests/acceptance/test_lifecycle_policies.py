"""`lifecycle` end to end: on_remove keep forgets without canceling; prevent_cancel refuses a cancel."""
from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.helpers.cli import run_cli

SLEEP = "9969ed6b494ff19ed449533b9068fbbb2d4a56c25945cdbcd23ccc069365f2f0"


def sleeper(root: Path, name: str, lifecycle: str) -> Path:
    path = root / f"{name}.yaml"
    path.write_text("apiVersion: jobrunner/v1\nkind: PredictionBatch\nmetadata: {name: " + name + "}\nspec:\n"
                    f"  provider: local\n  version: {SLEEP}\n  inputs:\n    - {{key: k, seconds: 20}}\n"
                    f"  lifecycle: {lifecycle}\n")
    return path


def remote_status(platform, rid: str) -> str:
    return httpx.get(f"{platform.url}/v1/predictions/{rid}", headers={"Authorization": f"Bearer {platform.token}"},
                     timeout=10).json()["status"]


def test_on_remove_keep_forgets_and_leaves_the_job_running(workspace: Path, platform):
    path = sleeper(workspace, "keep", "{on_remove: keep}")
    assert run_cli("apply", "--auto-approve", "--no-wait", ".").code == 0
    rid = json.loads((workspace / ".jobrunner/state.json").read_text())["addresses"]["PredictionBatch/keep[k]"][
        "remote_id"
    ]
    path.unlink()
    r = run_cli("apply", "--auto-approve", ".")
    assert r.code == 0, r.output
    assert "on_remove is keep" in r.stdout
    assert json.loads((workspace / ".jobrunner/state.json").read_text())["addresses"] == {}
    assert remote_status(platform, rid) in ("starting", "processing")
    httpx.post(f"{platform.url}/v1/predictions/{rid}/cancel", headers={"Authorization": f"Bearer {platform.token}"},
               timeout=10)


def test_prevent_cancel_refuses_to_plan_a_cancel_and_destroy(workspace: Path, platform):
    path = sleeper(workspace, "guarded", "{prevent_cancel: true}")
    assert run_cli("apply", "--auto-approve", "--no-wait", ".").code == 0
    r = run_cli("destroy", "--auto-approve")
    assert r.code == 1 and "prevent_cancel" in r.stderr, r.output
    rid = json.loads((workspace / ".jobrunner/state.json").read_text())["addresses"]["PredictionBatch/guarded[k]"][
        "remote_id"
    ]
    # A replace never cancels a prevent_cancel job: the old run is left alone, a new one starts.
    path.write_text(path.read_text().replace("seconds: 20", "seconds: 21"))
    assert run_cli("apply", "--auto-approve", "--no-wait", ".").code == 0
    st = json.loads((workspace / ".jobrunner/state.json").read_text())["addresses"]["PredictionBatch/guarded[k]"]
    assert st["remote_id"] != rid and len(st["history"]) == 2
    assert remote_status(platform, rid) in ("starting", "processing")
    for job in (rid, st["remote_id"]):
        httpx.post(f"{platform.url}/v1/predictions/{job}/cancel",
                   headers={"Authorization": f"Bearer {platform.token}"}, timeout=10)
