"""Every documented reference output resolves end to end, on both wires of the local platform.

docs/manifests.md lists the outputs a reference may name per kind and provider. Each one is used
here by a downstream batch of the `jobrunner/echo` model, whose output is its input: after one
apply the echoed values must be exactly the upstream's outputs, and a re-plan must converge.
An output that is not documented (or a batch's `output_file` when the spec sets none) is a
validation error listing the valid ones; an upstream that succeeded without an output its
dependents need makes them "needs attention" (exit 5, once per apply, nothing retried or sent).
"""
from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import httpx

from jobrunner.references import KNOWN_OUTPUTS
from tests.helpers.cli import run_cli

ECHO = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"
NGRAM = "a3c8c00c979c6758b251faf7897f248e49b682972e7e2cb90d03a7c19b47f174"

# The fields each test below resolves, per (kind, provider) of KNOWN_OUTPUTS.
RESOLVED: dict[tuple[str, str], set[str]] = {}


def write(root: Path, name: str, text: str) -> None:
    (root / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


def state(root: Path) -> dict:
    """The addresses state records, as jobrunner reads them (snapshot and journal)."""
    from jobrunner.state.local_file import read_state_json

    return read_state_json(root / ".jobrunner" / "state.json")["addresses"]


def echo_rows(refs: dict[str, str]) -> str:
    """One echo row whose fields are the given references."""
    return "\n".join(f"              {k}: ${{{v}}}" for k, v in refs.items())


LOCAL_REFS = {
    "model_name": "Model.m.output.name",
    "model_url": "Model.m.output.url",
    "training_id": "Training.t.output.id",
    "training_version": "Training.t.output.version",
    "training_weights": "Training.t.output.weights",
    "batch_count": "PredictionBatch.up.output.count",
    "batch_file": "PredictionBatch.up.output.output_file",
}


def test_every_local_output_resolves_after_one_apply(workspace: Path):
    (workspace / "data").mkdir()
    (workspace / "data" / "poems.txt").write_text("the moon is a silver coin over the sea\n" * 20)
    write(workspace, "pipeline.yaml", f"""
        apiVersion: jobrunner/v1
        kind: Model
        metadata: {{name: m}}
        spec: {{provider: local, owner: me, name: refs-m, visibility: private, hardware: cpu}}
        ---
        apiVersion: jobrunner/v1
        kind: Training
        metadata: {{name: t}}
        spec:
          provider: local
          model: jobrunner/ngram
          version: {NGRAM}
          destination: me/refs-m
          input: {{train_data: {{$file: data/poems.txt}}, order: 3}}
        ---
        apiVersion: jobrunner/v1
        kind: PredictionBatch
        metadata: {{name: up}}
        spec:
          provider: local
          version: ${{Training.t.output.version}}
          inputs:
            - {{key: a, prompt: "The moon", max_tokens: 5, seed: 1}}
            - {{key: b, prompt: "The sea", max_tokens: 5, seed: 2}}
          output_file: out/up.jsonl
        ---
        apiVersion: jobrunner/v1
        kind: PredictionBatch
        metadata: {{name: down}}
        spec:
          provider: local
          version: {ECHO}
          inputs:
            - key: all
{echo_rows(LOCAL_REFS)}
        """)
    r = run_cli("validate", "pipeline.yaml")
    assert r.code == 0, r.output
    r = run_cli("plan", "pipeline.yaml")
    assert r.code == 0 and "known after apply" in r.stdout, r.output

    r = run_cli("apply", "--auto-approve", "pipeline.yaml")
    assert r.code == 0, r.output
    st = state(workspace)
    echoed = st["PredictionBatch/down[all]"]["outputs"]["output"]
    model, training = st["Model/m"]["outputs"], st["Training/t"]["outputs"]
    assert echoed == {
        "model_name": model["name"], "model_url": model["url"],
        "training_id": training["id"], "training_version": training["version"],
        "training_weights": training["weights"],
        "batch_count": 2, "batch_file": "out/up.jsonl",  # workspace-relative, as apply wrote it
    }
    assert all(echoed.values()) and (workspace / echoed["batch_file"]).is_file()
    r = run_cli("plan", "--detailed-exitcode", "pipeline.yaml")
    assert r.code == 0 and "No changes." in r.stdout, r.output
    for ref in LOCAL_REFS.values():
        kind, _, _, field = ref.split(".")
        RESOLVED.setdefault((kind, "local"), set()).add(field)


def test_a_batch_count_follows_its_items(workspace: Path):
    def manifest(keys: str) -> None:
        write(workspace, "b.yaml", f"""
            apiVersion: jobrunner/v1
            kind: PredictionBatch
            metadata: {{name: up}}
            spec:
              provider: local
              version: {ECHO}
              inputs: [{keys}]
            ---
            apiVersion: jobrunner/v1
            kind: PredictionBatch
            metadata: {{name: down}}
            spec:
              provider: local
              version: {ECHO}
              inputs:
                - {{key: n, n: "${{PredictionBatch.up.output.count}}"}}
            """)

    manifest("{key: a, x: 1}")
    assert run_cli("apply", "--auto-approve", "b.yaml").code == 0
    assert state(workspace)["PredictionBatch/down[n]"]["outputs"]["output"] == {"n": 1}
    manifest("{key: a, x: 1}, {key: b, x: 2}")
    r = run_cli("apply", "--auto-approve", "b.yaml")
    assert r.code == 0, r.output
    assert state(workspace)["PredictionBatch/down[n]"]["outputs"]["output"] == {"n": 2}


def test_an_output_that_can_never_resolve_is_a_validation_error(workspace: Path):
    write(workspace, "bad.yaml", f"""
        apiVersion: jobrunner/v1
        kind: PredictionBatch
        metadata: {{name: up}}
        spec:
          provider: local
          version: {ECHO}
          inputs: [{{key: a}}]
        ---
        apiVersion: jobrunner/v1
        kind: PredictionBatch
        metadata: {{name: down}}
        spec:
          provider: local
          version: {ECHO}
          inputs:
            - {{key: f, f: "${{PredictionBatch.up.output.output_file}}"}}
            - {{key: g, g: "${{PredictionBatch.up.output.rows}}"}}
        """)
    for command in ("validate", "plan", "apply"):
        r = run_cli(command, *(["--auto-approve"] if command == "apply" else []), "bad.yaml")
        assert r.code == 1, r.output
        assert "bad.yaml:16" in r.output and "sets no spec.output_file; known outputs: count" in r.output
        assert "bad.yaml:17" in r.output and "has no output `rows`; known outputs: count" in r.output
    assert not (workspace / ".jobrunner" / "state.json").exists()


def _emissary(workspace: Path, platform, monkeypatch) -> str:
    monkeypatch.setenv("EMISSARY_SERVER_URL", platform.url)
    monkeypatch.setenv("EMISSARY_CLIENT_API_KEY", platform.token)
    project = httpx.post(f"{platform.url}/v1/projects", json={"name": "refs"}, headers={"X-API-Key": platform.token},
                         timeout=10).json()
    (workspace / "data").mkdir()
    (workspace / "data" / "train.jsonl").write_text(
        "\n".join(json.dumps({"text": f"line {i}: the moon over the quiet sea"}) for i in range(40)) + "\n")
    write(workspace, "ft.yaml", f"""
        apiVersion: jobrunner/v1
        kind: Training
        metadata: {{name: ft}}
        spec:
          provider: emissary
          project_id: {project["id"]}
          base_model: jobrunner-ngram
          train_dataset_id: {{$file: data/train.jsonl}}
          train_test_split_ratio: 0.2
          parameters: {{order: 3, steps: 4, checkpoint_every: 2}}
        """)
    return project["id"]


EMISSARY_REFS = {
    "training_id": "Training.ft.output.id",
    "checkpoint": "Training.ft.output.checkpoint",
    "download": "Training.ft.output.model_download_url",
}


def _down(workspace: Path) -> None:
    write(workspace, "down.yaml", f"""
        apiVersion: jobrunner/v1
        kind: PredictionBatch
        metadata: {{name: down}}
        spec:
          provider: local
          version: {ECHO}
          inputs:
            - key: all
{echo_rows(EMISSARY_REFS)}
        """)


def test_every_emissary_training_output_resolves_after_one_apply(workspace: Path, platform, monkeypatch):
    project_id = _emissary(workspace, platform, monkeypatch)
    _down(workspace)
    r = run_cli("apply", "--auto-approve")
    assert r.code == 0, r.output
    st = state(workspace)
    job_id = st["Training/ft"]["remote_id"]
    points = httpx.get(f"{platform.url}/v1/projects/{project_id}/training-jobs/{job_id}/checkpoints",
                       headers={"X-API-Key": platform.token}, timeout=10).json()
    latest = max(points, key=lambda c: c["checkpoint"])
    assert latest["checkpoint"] == 2
    assert st["PredictionBatch/down[all]"]["outputs"]["output"] == {
        "training_id": job_id, "checkpoint": 2, "download": latest["model_download_url"]}
    r = run_cli("plan", "--detailed-exitcode")
    assert r.code == 0, r.output
    for ref in EMISSARY_REFS.values():
        RESOLVED.setdefault(("Training", "emissary"), set()).add(ref.split(".")[-1])


def test_an_upstream_that_succeeded_without_the_output_needs_attention_once(workspace: Path, platform, monkeypatch):
    project_id = _emissary(workspace, platform, monkeypatch)
    assert run_cli("apply", "--auto-approve", "--no-wait", "ft.yaml").code == 0
    job_id = state(workspace)["Training/ft"]["remote_id"]
    deadline = time.monotonic() + 60
    while True:  # it finishes unattended; then the provider loses its checkpoints
        got = httpx.get(f"{platform.url}/v1/projects/{project_id}/training-jobs/{job_id}",
                        headers={"X-API-Key": platform.token}, timeout=10).json()
        if got["status"] == "Success":
            break
        assert time.monotonic() < deadline and got["status"] in ("Pending", "Running"), got
        time.sleep(0.1)
    platform.emissary.store.conn.execute(
        "DELETE FROM emissary_checkpoints WHERE training_job_id = ?", (job_id,))
    _down(workspace)
    predictions_before = len(_predictions(platform))

    for _ in range(2):  # the same report each time; nothing retried, nothing sent for `down`
        r = run_cli("apply", "--auto-approve")
        assert r.code == 5, r.output
        assert "Training/ft succeeded without output `checkpoint`, `model_download_url`" in r.output
        assert "jobrunner apply --replace Training/ft" in r.output
        assert "could not be resolved" not in r.output and "Traceback" not in r.output
        assert "Training/ft failed" not in r.output  # it succeeded; it lacks an output
    r = run_cli("plan", "--detailed-exitcode")
    assert r.code == 5, r.output
    assert "PredictionBatch/down[all]" in r.stdout and "succeeded without output" in r.stdout
    st = state(workspace)
    assert st["Training/ft"]["status"] == "succeeded" and st["Training/ft"]["remote_id"] == job_id
    assert not st.get("PredictionBatch/down[all]", {}).get("remote_id")
    assert len(_predictions(platform)) == predictions_before

    # The fix the message names: replace the training, and the apply runs it (and `down`) again.
    r = run_cli("apply", "--auto-approve", "--replace", "Training/ft")
    assert r.code == 0, r.output
    assert state(workspace)["PredictionBatch/down[all]"]["outputs"]["output"]["checkpoint"] == 2


def _predictions(platform) -> list:
    """Every prediction the platform holds, from its own paginated listing."""
    out: list = []
    with platform.client() as c:
        url: str | None = "/v1/predictions"
        while url:
            page = c.get(url).json()
            out += page["results"]
            url = page.get("next")
    return out


def test_every_documented_output_was_resolved_above():
    """Runs last in this module: each documented field of the kinds and providers that can run."""
    runnable = {("Model", "local"), ("Training", "local"), ("PredictionBatch", "local"), ("Training", "emissary")}
    for key in runnable:
        kind, provider = key
        assert RESOLVED.get(key) == set(KNOWN_OUTPUTS[kind][provider]), key
