"""Train -> deploy -> evaluate on the Emissary wire of the real local platform, through the real CLI.

One apply trains the `jobrunner-ngram` base model, deploys the training's latest checkpoint and
sends every evaluation row to the deployment's completions endpoint, writing the answers to the
batch's `output_file`. Then: a deployment change Emissary cannot make in place is a replace (delete,
then create); removing the deployment deletes it on the provider; `lifecycle.prevent_destroy`
refuses that removal with exit 1 before anything is sent.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.cli import run_cli

pytestmark = pytest.mark.slow

TRAINING = """apiVersion: jobrunner/v1
kind: Training
metadata: {{name: ft}}
spec:
  provider: emissary
  project_id: {pid}
  base_model: jobrunner-ngram
  description: poems
  train_dataset_id: {{$file: data/train.jsonl}}
  train_test_split_ratio: 0.2
  parameters: {{order: 3, steps: 4, checkpoint_every: 2}}
"""

DEPLOYMENT = """---
apiVersion: jobrunner/v1
kind: Deployment
metadata: {{name: poems-api}}
spec:
  provider: emissary
  project_id: {pid}
  training_job_id: ${{Training.ft.output.id}}
  checkpoint: ${{Training.ft.output.checkpoint}}
  server_type: {server_type}
  timeout: 2m
{lifecycle}"""

EVALUATION = """---
apiVersion: jobrunner/v1
kind: PredictionBatch
metadata: {{name: eval}}
spec:
  provider: emissary
  project_id: {pid}
  deployment: ${{Deployment.poems-api.output.id}}
  endpoint: completions
  input_defaults: {{max_new_tokens: 20, seed: 1}}
  inputs:
    - {{key: moon, prompt: "the moon"}}
    - {{key: sea, prompt: "the sea"}}
  output_file: out/eval.jsonl
"""


def _project(platform: Any) -> str:
    headers = {"X-API-Key": platform.token}
    made = httpx.post(f"{platform.url}/v1/projects", json={"name": "poems"}, headers=headers, timeout=10)
    return str(made.json()["id"])


def _write(ws: Path, pid: str, *, deploy: bool = True, evaluate: bool = True, server_type: str = "on-demand",
           protect: bool = False) -> None:
    text = TRAINING.format(pid=pid)
    if deploy:
        lifecycle = "  lifecycle: {prevent_destroy: true}\n" if protect else ""
        text += DEPLOYMENT.format(pid=pid, server_type=server_type, lifecycle=lifecycle)
    if evaluate:
        text += EVALUATION.format(pid=pid)
    (ws / "pipeline.yaml").write_text(text)


def _state(ws: Path) -> dict[str, Any]:
    return dict(json.loads((ws / ".jobrunner/state.json").read_text())["addresses"])


def _deployments(platform: Any, pid: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{platform.url}/v1/projects/{pid}/deployments", headers={"X-API-Key": platform.token}, timeout=10)
    return list(r.json())


@pytest.fixture
def pipeline(workspace: Path, platform: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    monkeypatch.setenv("EMISSARY_SERVER_URL", platform.url)
    monkeypatch.setenv("EMISSARY_CLIENT_API_KEY", platform.token)
    (workspace / "data").mkdir()
    (workspace / "data" / "train.jsonl").write_text(
        "\n".join(json.dumps({"text": f"line {i}: the moon over the quiet sea"}) for i in range(40)) + "\n")
    return workspace, _project(platform)


def test_train_deploy_evaluate_in_one_apply_then_converged(pipeline: tuple[Path, str], platform: Any) -> None:
    ws, pid = pipeline
    _write(ws, pid)
    r = run_cli("apply", "--auto-approve", "pipeline.yaml")
    assert r.code == 0, r.output
    st = _state(ws)
    dep = st["Deployment/poems-api"]
    assert dep["status"] == "succeeded" and dep["remote_id"].startswith("dp-")
    assert dep["outputs"]["id"] == dep["remote_id"] and dep["outputs"]["status"] == "Deployed"
    assert dep["outputs"]["url"].endswith(f"/v1/projects/{pid}/deployments/{dep['remote_id']}")
    assert [d["id"] for d in _deployments(platform, pid)] == [dep["remote_id"]]
    detail = httpx.get(f"{platform.url}/v1/projects/{pid}/deployments/{dep['remote_id']}",
                       headers={"X-API-Key": platform.token}, timeout=10).json()
    assert detail["training_id"] == st["Training/ft"]["remote_id"]
    rows = [json.loads(line) for line in (ws / "out/eval.jsonl").read_text().splitlines()]
    assert [row["key"] for row in rows] == ["moon", "sea"]
    assert all(row["status"] == "succeeded" and isinstance(row["output"], str) and row["output"] for row in rows)
    assert "1 created" not in r.output and "4 created" in r.output  # training, deployment, two rows

    again = run_cli("plan", "--detailed-exitcode", "pipeline.yaml")
    assert again.code == 0, again.output

    r = run_cli("destroy", "--auto-approve")
    assert r.code == 0, r.output
    assert _deployments(platform, pid) == [] and _state(ws) == {}


def test_a_field_emissary_cannot_change_in_place_replaces_and_removal_deletes(pipeline: tuple[Path, str],
                                                                             platform: Any) -> None:
    ws, pid = pipeline
    _write(ws, pid, evaluate=False)
    assert run_cli("apply", "--auto-approve", "pipeline.yaml").code == 0
    first = _state(ws)["Deployment/poems-api"]["remote_id"]

    _write(ws, pid, evaluate=False, server_type="serverless")
    plan = run_cli("plan", "pipeline.yaml")
    assert "-/+ Deployment/poems-api" in plan.output and "server_type cannot change in place" in plan.output
    r = run_cli("apply", "--auto-approve", "pipeline.yaml")
    assert r.code == 0, r.output
    second = _state(ws)["Deployment/poems-api"]["remote_id"]
    assert second != first and [d["id"] for d in _deployments(platform, pid)] == [second]

    _write(ws, pid, deploy=False, evaluate=False)
    plan = run_cli("plan", "pipeline.yaml")
    assert "- Deployment/poems-api" in plan.output and "Destructive:" in plan.output
    r = run_cli("apply", "--auto-approve", "pipeline.yaml")
    assert r.code == 0, r.output
    assert "1 deleted" in r.output
    assert "Deployment/poems-api" not in _state(ws) and _deployments(platform, pid) == []


def test_prevent_destroy_refuses_the_removal_with_exit_1(pipeline: tuple[Path, str], platform: Any) -> None:
    ws, pid = pipeline
    _write(ws, pid, evaluate=False, protect=True)
    assert run_cli("apply", "--auto-approve", "pipeline.yaml").code == 0
    kept = _state(ws)["Deployment/poems-api"]["remote_id"]

    _write(ws, pid, deploy=False, evaluate=False)
    r = run_cli("apply", "--auto-approve", "pipeline.yaml")
    assert r.code == 1, r.output
    assert "prevent_destroy" in r.output and "Deployment/poems-api" in r.output
    assert "Traceback" not in r.output
    assert [d["id"] for d in _deployments(platform, pid)] == [kept]
    assert _state(ws)["Deployment/poems-api"]["remote_id"] == kept
