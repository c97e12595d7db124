"""Waiting for a deployment to serve, bounded by its `timeout`: the real CLI and reconciler against the
Emissary API mocked (respx) with the documented payloads (tests/providers/fixtures/emissary/).

A deployment still `Deploying` when its timeout passes is reported as not ready (exit 5, needs
attention) and left as it is; the next apply waits on the same deployment instead of creating
another, and succeeds once it is `Deployed`.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from tests.helpers.cli import run_cli

BASE = "https://api.emissary.test"
FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "providers" / "fixtures" / "emissary"
                      / "deployment_and_inference.json").read_text())
DEPLOYMENTS = "/v1/projects/ms-12345/deployments"
MANIFEST = """apiVersion: jobrunner/v1
kind: Deployment
metadata: {name: deployment-1}
spec:
  provider: emissary
  project_id: ms-12345
  training_job_id: tr-12345
  checkpoint: 4
  server_type: on-demand
  timeout: 1s
"""


def test_a_deployment_not_ready_within_its_timeout_needs_attention_then_is_waited_on(
        workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMISSARY_SERVER_URL", BASE)
    monkeypatch.setenv("EMISSARY_CLIENT_API_KEY", "em_TESTKEY_0123456789abcdef")
    detail = copy.deepcopy(FIXTURE["get_deployment"]["response"]["body"])
    detail["status"] = "Deploying"

    def get(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=detail)

    (workspace / "d.yaml").write_text(MANIFEST)
    with respx.mock(base_url=BASE) as mock:
        create = mock.post(DEPLOYMENTS).mock(return_value=httpx.Response(
            201, json=FIXTURE["create_deployment"]["response"]["body"]))
        mock.get(f"{DEPLOYMENTS}/dp-12345").mock(side_effect=get)
        r = run_cli("apply", "--auto-approve", "d.yaml")
        assert r.code == 5, r.output
        assert "Deployment/deployment-1: failed: dp-12345 not ready within its timeout (1s)" in r.output
        assert json.loads(create.calls[0].request.content) == {
            "name": "deployment-1", "training_job_id": "tr-12345", "checkpoint": 4, "server_type": "on-demand"}

        detail["status"] = "Deployed"
        r = run_cli("apply", "--auto-approve", "d.yaml")
        assert r.code == 0, r.output
        assert create.call_count == 1  # waited on, never created again
    state: dict[str, Any] = json.loads((workspace / ".jobrunner/state.json").read_text())["addresses"]
    st = state["Deployment/deployment-1"]
    assert st["status"] == "succeeded" and st["outputs"]["status"] == "Deployed"
