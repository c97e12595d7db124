"""`import --discover` against the real local platform: jobs run by hand become manifests + state."""
from __future__ import annotations

import time

import httpx
import yaml

from tests.helpers.cli import run_cli

ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"

DECLARED = f"""\
apiVersion: jobrunner/v1
kind: PredictionBatch
metadata: {{name: greet}}
spec:
  provider: local
  model: jobrunner/echo
  version: {ECHO}
  inputs:
    - {{key: hello, text: declared}}
"""


def run_by_hand(platform, body: dict) -> str:
    """A prediction created with plain HTTP, as someone would from a notebook."""
    r = httpx.post(f"{platform.url}/v1/predictions", json=body,
                   headers={"Authorization": f"Bearer {platform.token}", "Prefer": "wait=5"}, timeout=30)
    assert r.status_code in (200, 201), r.text
    pid = r.json()["id"]
    deadline = time.monotonic() + 20
    while r.json()["status"] not in ("succeeded", "failed", "canceled"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
        r = httpx.get(f"{platform.url}/v1/predictions/{pid}",
                      headers={"Authorization": f"Bearer {platform.token}"}, timeout=30)
    return pid


def test_discover_writes_manifests_adopts_them_and_plans_no_changes(workspace, platform):
    (workspace / "specs").mkdir()
    (workspace / "specs" / "greet.yaml").write_text(DECLARED)
    ran = [run_by_hand(platform, {"version": ECHO, "input": {"text": f"notebook {i}", "n": i}}) for i in range(2)]
    declared_id = run_by_hand(platform, {"version": ECHO, "input": {"text": "declared"}})

    result = run_cli("import", "--discover", "--provider", "local", "--since", "1h", "--out", "discovered.yaml",
                     "specs/")
    assert result.code == 0, result.output
    # The job the manifests already declare is pointed at, not given a second manifest.
    assert f"jobrunner import PredictionBatch/greet[hello] {declared_id}" in result.stdout

    docs = list(yaml.safe_load_all((workspace / "discovered.yaml").read_text()))
    batches = [d for d in docs if d and d["kind"] == "PredictionBatch"]
    ours = [b for b in batches if any(row["key"] in ran for row in b["spec"]["inputs"])]
    assert len(ours) == 1
    batch = ours[0]
    assert batch["spec"]["version"] == ECHO and batch["spec"]["provider"] == "local"
    rows = {row["key"]: row for row in batch["spec"]["inputs"]}
    assert rows[ran[0]]["text"] == "notebook 0" and rows[ran[1]]["n"] == 1
    assert declared_id not in rows

    name = batch["metadata"]["name"]
    listed = run_cli("state", "list").stdout.split()
    assert f"PredictionBatch/{name}[{ran[0]}]" in listed and f"PredictionBatch/{name}[{ran[1]}]" in listed

    plan = run_cli("plan", "discovered.yaml", "--detailed-exitcode")
    assert plan.code == 0, plan.output
    assert "No changes." in plan.stdout

    # Never overwrites, and what is adopted is not discovered again.
    again = run_cli("import", "--discover", "--provider", "local", "--since", "1h", "--out", "discovered.yaml")
    assert again.code == 1 and "already exists" in again.stderr
    second = run_cli("import", "--discover", "--provider", "local", "--since", "1h", "--out", "more.yaml", "specs/")
    assert second.code == 0, second.output
    assert not any(pid in second.stdout.split("jobrunner import")[0] and f"<= local {pid}" in second.stdout
                   for pid in ran)
    assert f"<= local {ran[0]}" not in second.stdout


def test_import_without_address_or_discover_is_a_usage_error(workspace):
    result = run_cli("import")
    assert result.code == 1
    assert "import needs ADDRESS and REMOTE_ID (or --discover)" in result.stderr


def test_discover_adopts_an_emissary_training_run_by_hand(workspace, platform, monkeypatch):
    monkeypatch.setenv("EMISSARY_SERVER_URL", platform.url)
    monkeypatch.setenv("EMISSARY_CLIENT_API_KEY", platform.token)
    headers = {"X-API-Key": platform.token}
    with httpx.Client(base_url=platform.url, headers=headers, timeout=30) as http:
        project = http.post("/v1/projects", json={"name": "by-hand"}).json()["id"]
        dataset = http.post(f"/v1/projects/{project}/datasets", data={"name": "poems"},
                            files={"file": ("train.jsonl", b'{"text": "The moon is up, the night is long."}\n'
                                                           b'{"text": "At dawn the birds begin to sing."}\n')})
        assert dataset.status_code == 201, dataset.text
        job = http.post(f"/v1/projects/{project}/training-jobs", json={
            "base_model": "jobrunner-ngram", "train_dataset_id": dataset.json()["id"],
            "description": "tried in a notebook", "parameters": {"order": 3}})
        assert job.status_code == 201, job.text
        job_id = job.json()["id"]
        deadline = time.monotonic() + 30
        while http.get(f"/v1/projects/{project}/training-jobs/{job_id}").json()["status"] in ("Pending", "Running"):
            assert time.monotonic() < deadline
            time.sleep(0.2)

    result = run_cli("import", "--discover", "--provider", "emissary", "--since", "1h", "--out", "adopted.yaml")
    assert result.code == 0, result.output
    (doc,) = [d for d in yaml.safe_load_all((workspace / "adopted.yaml").read_text()) if d]
    assert doc["kind"] == "Training"
    spec = doc["spec"]
    params = spec.pop("parameters")
    assert spec == {"provider": "emissary", "project_id": project, "base_model": "jobrunner-ngram",
                    "train_dataset_id": dataset.json()["id"], "description": "tried in a notebook"}
    # The job reports every hyper-parameter it ran with, defaults included: the manifest declares them all.
    assert params["order"] == 3 and len(params) > 1
    address = f"Training/{doc['metadata']['name']}"
    assert f"{address} <= emissary {job_id}" in result.stdout
    assert run_cli("state", "list").stdout.split() == [address]
    plan = run_cli("plan", "adopted.yaml", "--detailed-exitcode")
    assert plan.code == 0, plan.output
    assert "No changes." in plan.stdout


def test_discover_adopts_a_training_run_by_hand_with_its_destination(workspace, platform):
    auth = {"Authorization": f"Bearer {platform.token}"}
    ngram = "a3c8c00c979c6758b251faf7897f248e49b682972e7e2cb90d03a7c19b47f174"
    with httpx.Client(base_url=platform.url, headers=auth, timeout=30) as http:
        made = http.post("/v1/models", json={"owner": "me", "name": "by-hand", "visibility": "private",
                                              "hardware": "cpu"})
        assert made.status_code in (200, 201), made.text
        started = http.post(f"/v1/models/jobrunner/ngram/versions/{ngram}/trainings", json={
            "destination": "me/by-hand", "input": {"train_data": "The moon is up. " * 20, "order": 3}})
        assert started.status_code in (200, 201), started.text
        tid = started.json()["id"]
        deadline = time.monotonic() + 30
        while http.get(f"/v1/trainings/{tid}").json()["status"] not in ("succeeded", "failed", "canceled"):
            assert time.monotonic() < deadline
            time.sleep(0.2)

    result = run_cli("import", "--discover", "--provider", "local", "--since", "1h", "--out", "trained.yaml")
    assert result.code == 0, result.output
    trainings = [d for d in yaml.safe_load_all((workspace / "trained.yaml").read_text())
                 if d and d["kind"] == "Training"]
    (doc,) = [d for d in trainings if d["spec"].get("destination") == "me/by-hand"]
    assert doc["spec"]["model"] == "jobrunner/ngram" and doc["spec"]["version"] == ngram
    assert doc["spec"]["input"] == {"train_data": "The moon is up. " * 20, "order": 3}
    address = f"Training/{doc['metadata']['name']}"
    assert f"{address} <= local {tid}" in result.stdout
    outputs = run_cli("outputs")
    assert f"{address}.version = me/by-hand:" in outputs.stdout  # the trained version is known to references
    plan = run_cli("plan", "trained.yaml", "--detailed-exitcode")
    assert plan.code == 0, plan.output
