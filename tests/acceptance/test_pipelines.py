"""The train -> deploy -> evaluate examples of specs/pipelines/, applied as shipped on the real local platform.

Replicate wire (`provider: local`): one apply trains, deploys and evaluates against the deployment;
changing `max_instances` plans and applies an in-place update (the deployment keeps its name, the
evaluation does not run again, counted on the platform; a new trained version runs it again);
removing the deployment deletes it; `prevent_destroy` refuses that.
Emissary wire: the example as shipped, with the repository's `providers.emissary.base_url: local`
and no Emissary variables, on the platform's seeded project `ms-local`.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from jobrunner.local.autostart import find_platform, stop_platform
from tests.helpers.cli import run_cli, run_process

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PIPELINES = REPO / "specs" / "pipelines"


def _copy(ws: Path, which: str) -> Path:
    dest = ws / "specs" / "pipelines" / which
    shutil.copytree(PIPELINES / which, dest)
    return dest / "train-deploy-evaluate.yaml"


def _state(ws: Path) -> dict[str, Any]:
    return dict(json.loads((ws / ".jobrunner/state.json").read_text())["addresses"])


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_emissary_pipeline_as_shipped_in_one_apply(workspace: Path, platform: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The repository's jobrunner.yaml setting (`providers.emissary.base_url: local`) and no EMISSARY_*
    variable: Emissary is the local platform, the manifest's project `ms-local` is seeded there."""
    for var in ("EMISSARY_SERVER_URL", "EMISSARY_CLIENT_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    config = workspace / "jobrunner.yaml"
    settings = yaml.safe_load(config.read_text())
    settings["providers"]["emissary"] = {"base_url": "local"}  # as in the repository's jobrunner.yaml
    config.write_text(yaml.safe_dump(settings))
    _copy(workspace, "emissary")
    r = run_cli("apply", "--auto-approve", "specs/pipelines/emissary/")
    assert r.code == 0, r.output
    assert "Apply complete: 5 created, 5 succeeded, 0 failed." in r.output
    rows = _rows(workspace / "specs/pipelines/emissary/out/support-eval.jsonl")
    assert [row["key"] for row in rows] == ["password", "export", "refund"]
    assert all(row["status"] == "succeeded" and row["output"] for row in rows)
    training = _state(workspace)["Training/support-ngram"]["remote_id"]
    job = httpx.get(f"{platform.url}/v1/projects/ms-local/training-jobs/{training}",
                    headers={"X-API-Key": platform.token}, timeout=10)
    assert job.status_code == 200 and job.json()["status"] == "Success"  # trained on the shared platform
    assert platform.token not in (workspace / ".jobrunner/state.json").read_text() + r.output
    again = run_cli("apply", "--auto-approve", "specs/pipelines/emissary/")
    assert again.code == 0 and "No changes." in again.stdout, again.output
    assert run_cli("plan", "--detailed-exitcode", "specs/pipelines/emissary/").code == 0


def test_emissary_pipeline_from_a_fresh_clone_in_one_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's command as a new user runs it: the repository's own jobrunner.yaml, no platform
    running, no EMISSARY_* variable; the platform auto-starts (and is stopped at the end)."""
    shutil.copy(REPO / "jobrunner.yaml", tmp_path / "jobrunner.yaml")
    shutil.copytree(PIPELINES / "emissary", tmp_path / "specs/pipelines/emissary")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EMISSARY_") and k not in ("JOBRUNNER_LOCAL_TOKEN", "JOBRUNNER_STATE_URL")}
    env["PYTHONPATH"] = str(REPO)
    try:
        first = run_process(["apply", "--auto-approve", "specs/pipelines/emissary/"], tmp_path, env, timeout=180)
        assert first.code == 0, first.output
        assert "started the local platform" in first.stderr
        assert "Apply complete: 5 created, 5 succeeded, 0 failed." in first.stdout
        assert len(_rows(tmp_path / "specs/pipelines/emissary/out/support-eval.jsonl")) == 3
        stop_platform(tmp_path)
        # Validating needs no platform and starts none (status and plan do read the live
        # deployment, jobrunner.refresh, so they would start it).
        quiet = run_process(["validate", "specs/pipelines/emissary/"], tmp_path, env)
        assert quiet.code == 0 and "started the local platform" not in quiet.stderr, quiet.output
        assert find_platform(tmp_path) is None
    finally:
        stop_platform(tmp_path)


def test_replicate_pipeline_update_in_place_removal_and_prevent_destroy(workspace: Path, platform: Any) -> None:
    manifest = _copy(workspace, "replicate")
    r = run_cli("apply", "--auto-approve", "specs/pipelines/replicate/")
    assert r.code == 0, r.output
    dep = _state(workspace)["Deployment/haiku-api"]
    assert dep["status"] == "succeeded" and dep["outputs"]["name"].endswith("/haiku-api")
    rows = _rows(workspace / "specs/pipelines/replicate/out/haiku-eval.jsonl")
    assert [row["key"] for row in rows] == ["summer", "tyger", "hope"] and all(row["output"] for row in rows)

    manifest.write_text(manifest.read_text().replace("max_instances: 1", "max_instances: 2"))
    plan = run_cli("plan", "specs/pipelines/replicate/")
    assert "~ Deployment/haiku-api" in plan.output and "max_instances: 1 -> 2" in plan.output, plan.output
    r = run_cli("apply", "--auto-approve", "specs/pipelines/replicate/")
    assert r.code == 0, r.output
    assert "1 updated" in r.output and "0 created" in r.output
    assert _state(workspace)["Deployment/haiku-api"]["remote_id"] == dep["remote_id"]
    served = httpx.get(f"{platform.url}/v1/deployments/{dep['remote_id']}",
                       headers={"Authorization": f"Bearer {platform.token}"}, timeout=10).json()
    assert served["current_release"]["configuration"]["max_instances"] == 2

    text = manifest.read_text()
    protected = text.replace("  timeout: 5m", "  lifecycle: {prevent_destroy: true}\n  timeout: 5m")
    manifest.write_text(protected)
    assert run_cli("apply", "--auto-approve", "specs/pipelines/replicate/").code == 0
    kept = text.split("---\napiVersion: jobrunner/v1\nkind: Deployment")[0]
    manifest.write_text(kept)
    r = run_cli("apply", "--auto-approve", "specs/pipelines/replicate/")
    assert r.code == 1 and "prevent_destroy" in r.output and "Deployment/haiku-api" in r.output, r.output
    assert "Deployment/haiku-api" in _state(workspace)

    manifest.write_text(text)  # unprotected again, then removed: deleted on the provider
    assert run_cli("apply", "--auto-approve", "specs/pipelines/replicate/").code == 0
    manifest.write_text(kept)
    r = run_cli("apply", "--auto-approve", "specs/pipelines/replicate/")
    assert r.code == 0 and "1 deleted" in r.output, r.output
    gone = httpx.get(f"{platform.url}/v1/deployments/{dep['remote_id']}",
                     headers={"Authorization": f"Bearer {platform.token}"}, timeout=10)
    assert gone.status_code == 404 and "Deployment/haiku-api" not in _state(workspace)


def _predictions(platform: Any) -> list[dict[str, Any]]:
    """Every prediction the platform has run (GET /v1/predictions, all pages)."""
    out: list[dict[str, Any]] = []
    url: str | None = f"{platform.url}/v1/predictions"
    while url:
        page = httpx.get(url, headers={"Authorization": f"Bearer {platform.token}"}, timeout=10).json()
        out += page["results"]
        url = page.get("next")
    return out


def test_scaling_the_deployment_reruns_no_evaluation_and_a_new_version_does(workspace: Path, platform: Any) -> None:
    manifest = _copy(workspace, "replicate")
    earlier = {p["id"] for p in _predictions(platform)}  # the platform is shared by this module's tests
    assert run_cli("apply", "--auto-approve", "specs/pipelines/replicate/").code == 0
    before = [p for p in _predictions(platform) if p["id"] not in earlier]
    assert len(before) == 3
    first_rows = _rows(workspace / "specs/pipelines/replicate/out/haiku-eval.jsonl")

    manifest.write_text(manifest.read_text().replace("max_instances: 1", "max_instances: 3"))
    plan = run_cli("plan", "--out", "scale.plan", "specs/pipelines/replicate/")
    assert plan.code == 0, plan.output
    assert "~ Deployment/haiku-api" in plan.output and "~ max_instances: 1 -> 3" in plan.output, plan.output
    assert "PredictionBatch/haiku-eval" not in plan.output, plan.output  # neither replaced nor estimated
    assert "Plan: 0 to create, 1 to update, 0 to replace," in plan.output, plan.output
    r = run_cli("apply", "scale.plan")  # a saved plan applies what it showed
    assert r.code == 0 and "1 updated" in r.output and "0 created" in r.output, r.output
    assert len(_predictions(platform)) == len(earlier) + 3  # no evaluation ran again
    assert _rows(workspace / "specs/pipelines/replicate/out/haiku-eval.jsonl") == first_rows
    settled = run_cli("plan", "--detailed-exitcode", "specs/pipelines/replicate/")
    assert settled.code == 0 and "No changes." in settled.output, settled.output

    # A new trained version reaches the deployment, and through it the evaluation.
    manifest.write_text(manifest.read_text().replace("order: 4", "order: 3"))
    plan = run_cli("plan", "specs/pipelines/replicate/")
    assert "-/+ Training/haiku-ngram" in plan.output and "~ Deployment/haiku-api" in plan.output, plan.output
    assert plan.output.count("-/+ PredictionBatch/haiku-eval[") == 3, plan.output
    assert "deployment_version known after apply" in plan.output, plan.output
    r = run_cli("apply", "--auto-approve", "specs/pipelines/replicate/")
    assert r.code == 0 and "1 updated" in r.output, r.output
    state = _state(workspace)
    served = state["Deployment/haiku-api"]["outputs"]["version"]
    assert served != before[0]["version"] and state["Training/haiku-ngram"]["outputs"]["version"].endswith(served)
    new = [p for p in _predictions(platform) if p["id"] not in earlier | {b["id"] for b in before}]
    assert len(new) == 3 and {p["version"] for p in new} == {served}
    assert run_cli("plan", "--detailed-exitcode", "specs/pipelines/replicate/").code == 0
