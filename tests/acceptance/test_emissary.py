"""An Emissary fine-tune applied end to end against the local platform's Emissary wire.

`provider: emissary` with `EMISSARY_SERVER_URL` / `EMISSARY_CLIENT_API_KEY` pointed at the local
platform: the dataset file is uploaded to the project, the job trains the `jobrunner-ngram` base
model for real, a re-plan converges, and destroy deletes the job (Emissary jobs are deleted).
"""
from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.helpers.cli import run_cli


def test_emissary_training_apply_converge_destroy(workspace: Path, platform, monkeypatch):
    monkeypatch.setenv("EMISSARY_SERVER_URL", platform.url)
    monkeypatch.setenv("EMISSARY_CLIENT_API_KEY", platform.token)
    headers = {"X-API-Key": platform.token}
    project = httpx.post(f"{platform.url}/v1/projects", json={"name": "poems"}, headers=headers, timeout=10).json()
    (workspace / "data").mkdir()
    (workspace / "data" / "train.jsonl").write_text(
        "\n".join(json.dumps({"text": f"line {i}: the moon over the quiet sea"}) for i in range(40)) + "\n")
    (workspace / "ft.yaml").write_text(
        "apiVersion: jobrunner/v1\nkind: Training\nmetadata: {name: ft}\nspec:\n  provider: emissary\n"
        f"  project_id: {project['id']}\n  base_model: jobrunner-ngram\n  description: poems\n"
        "  train_dataset_id: {$file: data/train.jsonl}\n  train_test_split_ratio: 0.2\n"
        "  parameters: {order: 3, steps: 4, checkpoint_every: 2}\n")
    r = run_cli("apply", "--auto-approve", "ft.yaml")
    assert r.code == 0, r.output
    st = json.loads((workspace / ".jobrunner/state.json").read_text())["addresses"]["Training/ft"]
    assert st["status"] == "succeeded" and st["project_id"] == project["id"]
    r = run_cli("plan", "--detailed-exitcode", "ft.yaml")
    assert r.code == 0, r.output

    r = run_cli("destroy", "--auto-approve")
    assert r.code == 0, r.output
    gone = httpx.get(f"{platform.url}/v1/projects/{project['id']}/training-jobs/{st['remote_id']}", headers=headers,
                     timeout=10)
    assert gone.status_code == 404
