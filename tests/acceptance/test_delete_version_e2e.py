"""`lifecycle.on_remove: delete_version` end to end: the real CLI against the real local platform.

A training removed from the manifests takes its trained version with it (DELETE
/v1/models/{owner}/{name}/versions/{id}); the model stays.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.cli import run_cli

pytestmark = pytest.mark.slow

MODEL = """apiVersion: jobrunner/v1
kind: Model
metadata: {name: poems}
spec: {provider: local, owner: me, name: poems, visibility: private, hardware: cpu}
"""
TRAINING = """---
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
"""


def test_a_removed_training_deletes_its_version(workspace: Path, platform: Any) -> None:
    (workspace / "poems.txt").write_text("the moon over the quiet sea\n" * 20)
    (workspace / "m.yaml").write_text(MODEL + TRAINING)
    assert run_cli("apply", "--auto-approve", "m.yaml").code == 0
    state = json.loads((workspace / ".jobrunner/state.json").read_text())["addresses"]
    version = state["Training/poems-ngram"]["outputs"]["version"]
    vid = version.split(":")[1]
    url = f"{platform.url}/v1/models/me/poems/versions/{vid}"
    auth = {"Authorization": f"Bearer {platform.token}"}
    assert httpx.get(url, headers=auth, timeout=10).status_code == 200

    (workspace / "m.yaml").write_text(MODEL)
    plan = run_cli("plan", "m.yaml")
    assert "- Training/poems-ngram" in plan.output and "trained version" in plan.output, plan.output
    r = run_cli("apply", "--auto-approve", "m.yaml")
    assert r.code == 0 and "1 deleted" in r.output, r.output
    assert httpx.get(url, headers=auth, timeout=10).status_code == 404
    state = json.loads((workspace / ".jobrunner/state.json").read_text())["addresses"]
    assert "Training/poems-ngram" not in state and "Model/poems" in state
