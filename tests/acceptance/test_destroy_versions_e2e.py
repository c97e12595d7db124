"""`destroy` honours `lifecycle.on_remove: delete_version`: the real CLI against the real local platform.

A training whose trained version a deployment serves and a batch ran on: destroy deletes the
deployment first (the platform answers 409 while a deployment uses a version), forgets the batch,
then deletes the version (404 afterwards) and leaves state empty. `--target` the training alone
while a kept deployment serves its version is refused before anything is sent.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobrunner.providers.replicate_deployments import ReplicateDeployments
from tests.helpers.cli import run_cli

pytestmark = pytest.mark.slow

PIPELINE = """apiVersion: jobrunner/v1
kind: Model
metadata: {name: poems}
spec: {provider: local, owner: me, name: poems, visibility: private, hardware: cpu}
---
apiVersion: jobrunner/v1
kind: Training
metadata: {name: poems-ngram}
spec:
  provider: local
  model: jobrunner/ngram
  version: a3c8c00c979c6758b251faf7897f248e49b682972e7e2cb90d03a7c19b47f174
  destination: me/poems
  input: {train_data: {$file: poems.txt}, order: 3}
  lifecycle: {on_remove: delete_version}
---
apiVersion: jobrunner/v1
kind: Deployment
metadata: {name: poems-api}
spec:
  provider: local
  version: ${Training.poems-ngram.output.version}
  hardware: cpu
  min_instances: 0
  max_instances: 1
  timeout: 5m
---
apiVersion: jobrunner/v1
kind: PredictionBatch
metadata: {name: poems-eval}
spec:
  provider: local
  version: ${Training.poems-ngram.output.version}
  input_defaults: {max_tokens: 20}
  inputs:
    - {key: moon, prompt: "The moon", seed: 1}
    - {key: sea, prompt: "The sea", seed: 2}
"""


def _state(ws: Path) -> dict[str, Any]:
    return dict(json.loads((ws / ".jobrunner/state.json").read_text())["addresses"])


def _applied(workspace: Path, platform: Any) -> tuple[str, dict[str, str]]:
    """Apply the pipeline; (URL of the trained version on the platform, auth header)."""
    (workspace / "poems.txt").write_text("the moon over the quiet sea\n" * 20)
    (workspace / "m.yaml").write_text(PIPELINE)
    r = run_cli("apply", "--auto-approve", "m.yaml")
    assert r.code == 0, r.output
    vid = _state(workspace)["Training/poems-ngram"]["outputs"]["version"].split(":")[1]
    auth = {"Authorization": f"Bearer {platform.token}"}
    url = f"{platform.url}/v1/models/me/poems/versions/{vid}"
    assert httpx.get(url, headers=auth, timeout=10).status_code == 200
    return url, auth


def _slow_deployment_deletes(monkeypatch: pytest.MonkeyPatch, deleted: list[str]) -> None:
    """The deployment's DELETE is sent late (a slow answer, scheduled rather than left to chance):
    a version delete sent meanwhile would meet the platform's 409 (the deployment still uses it)."""
    original = ReplicateDeployments.delete_deployment

    async def slow(self: Any, deployment_id: str, **kwargs: Any) -> None:
        await asyncio.sleep(0.5)
        await original(self, deployment_id, **kwargs)
        deleted.append(deployment_id)

    monkeypatch.setattr(ReplicateDeployments, "delete_deployment", slow)


def test_destroy_deletes_the_deployment_then_the_trained_version(workspace: Path, platform: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    version_url, auth = _applied(workspace, platform)
    deleted: list[str] = []
    _slow_deployment_deletes(monkeypatch, deleted)
    plan = run_cli("destroy", "m.yaml")
    assert "- Training/poems-ngram" in plan.output and "trained version me/poems:" in plan.output, plan.output
    assert "deletes 1 deployment and 1 trained version on the provider" in plan.output, plan.output
    assert plan.code == 1 and httpx.get(version_url, headers=auth, timeout=10).status_code == 200  # not confirmed

    r = run_cli("destroy", "--auto-approve")
    assert r.code == 0, r.output
    assert "Destroy complete" in r.output and "2 deleted" in r.output, r.output
    assert deleted == ["me/poems-api"]
    assert httpx.get(version_url, headers=auth, timeout=10).status_code == 404
    gone = httpx.get(f"{platform.url}/v1/deployments/me/poems-api", headers=auth, timeout=10)
    assert gone.status_code == 404
    assert _state(workspace) == {}
    again = run_cli("destroy", "--auto-approve")
    assert again.code == 0 and "Nothing to destroy." in again.output, again.output


def test_destroy_target_of_a_served_version_is_refused_before_anything_is_sent(workspace: Path,
                                                                              platform: Any) -> None:
    version_url, auth = _applied(workspace, platform)
    r = run_cli("destroy", "--auto-approve", "--target", "Training/poems-ngram")
    assert r.code == 1, r.output
    assert "Deployment/poems-api" in r.output and "Traceback" not in r.output, r.output
    assert httpx.get(version_url, headers=auth, timeout=10).status_code == 200
    assert "Training/poems-ngram" in _state(workspace)

    both = run_cli("destroy", "--auto-approve", "--target", "Training/poems-ngram", "--target", "Deployment/poems-api")
    assert both.code == 0 and "2 deleted" in both.output, both.output
    assert httpx.get(version_url, headers=auth, timeout=10).status_code == 404
    kept = {"Model/poems", "PredictionBatch/poems-eval[moon]", "PredictionBatch/poems-eval[sea]"}
    assert set(_state(workspace)) == kept
