"""The Deployment kind: its derived schema, validation with file:line errors, and expansion."""
from __future__ import annotations

import json
from pathlib import Path

from jobrunner.loader import load_text
from jobrunner.resources import JOB_DEPLOYMENT
from jobrunner.schema import load_schema
from jobrunner.spec import expand
from jobrunner.validate import ValidationResult, validate_documents
from tests.core.plan_helpers import deployment, emissary_deployment

HEAD = "apiVersion: jobrunner/v1\n"
V = "c" * 64
REPLICATE_DEPLOYMENT = HEAD + f"""kind: Deployment
metadata: {{name: poems-api}}
spec:
  provider: replicate
  model: me/poems
  version: {V}
  hardware: cpu
  min_instances: 0
  max_instances: 1
  lifecycle: {{prevent_destroy: true}}
"""
EMISSARY_TRAINING = HEAD + """kind: Training
metadata: {name: tune}
spec: {provider: emissary, project_id: ms-12345, base_model: Llama-3.2-1B-Instruct, train_dataset_id: ds-1}
"""
EMISSARY_DEPLOYMENT = HEAD + """kind: Deployment
metadata: {name: chat}
spec:
  provider: emissary
  project_id: ms-12345
  training_job_id: ${Training.tune.output.id}
  checkpoint: ${Training.tune.output.checkpoint}
  server_type: on-demand
  description: the support assistant
"""


def check(text: str, root: Path) -> ValidationResult:
    loaded = load_text(text, "m.yaml")
    assert not loaded.diagnostics
    return validate_documents(loaded.documents, root)


def lines(result: ValidationResult) -> list[str]:
    return [d.format() for d in result.diagnostics]


def test_the_schemas_come_from_the_official_request_bodies() -> None:
    schema = load_schema()
    defs = schema["definitions"]
    create = defs["replicate.deployments_create_request"]
    assert create["required"] == ["name", "model", "version", "hardware", "min_instances", "max_instances"]
    assert set(defs["replicate.deployments_update_request"]["properties"]) == {
        "hardware", "max_instances", "min_instances", "version"}
    assert defs["emissary.CreateDeploymentRequestBody"]["required"] == ["training_job_id", "checkpoint"]
    spec = defs["ReplicateDeploymentSpec"]["properties"]
    # The manifest fields point into the request bodies, so upstream bounds apply as written.
    assert spec["max_instances"] == {
        "$ref": "#/definitions/replicate.deployments_create_request/properties/max_instances"}
    assert create["properties"]["max_instances"]["maximum"] == 20
    assert defs["EmissaryDeploymentSpec"]["properties"]["server_type"] == {
        "$ref": "#/definitions/emissary.CreateDeploymentRequestBody/properties/server_type"}
    shipped = json.loads(json.dumps(load_schema("Deployment.schema.json")))
    assert shipped["properties"]["kind"] == {"const": "Deployment"}


def test_valid_deployments_of_both_providers(tmp_path: Path) -> None:
    r = check(REPLICATE_DEPLOYMENT + "---\n" + EMISSARY_TRAINING + "---\n" + EMISSARY_DEPLOYMENT, tmp_path)
    assert r.ok and r.diagnostics == []
    assert [x.address for x in r.resources] == ["Deployment/poems-api", "Training/tune", "Deployment/chat"]


def test_every_mistake_at_once_with_file_line_and_column(tmp_path: Path) -> None:
    text = HEAD + f"""kind: Deployment
metadata: {{name: poems-api}}
spec:
  provider: replicate
  version: {V}
  hardware: cpu
  min_instances: 3
  max_instances: 21
  lifecycle: {{prevent_destroy: true, on_remove: keep}}
---
""" + HEAD + """kind: Deployment
metadata: {name: chat}
spec:
  provider: emissary
  project_id: ms-12345
  training_job_id: ${Training.nope.output.id}
  checkpoint: four
  server_type: gpu
"""
    assert lines(check(text, tmp_path)) == [
        ("m.yaml:4:1: Deployment/poems-api: $.spec: missing required field `model`: a deployment of a bare version "
         "id needs the model's owner/name (or write version as owner/name:<id>)"),
        "m.yaml:9:3: Deployment/poems-api: $.spec.max_instances: 21 is greater than the maximum of 20",
        ("m.yaml:10:38: Deployment/poems-api: $.spec.lifecycle.on_remove: unknown field `on_remove`; "
         "allowed: prevent_destroy"),
        ("m.yaml:18:3: Deployment/chat: $.spec.training_job_id: reference ${Training.nope.output.id}: "
         "no resource Training/nope in the workspace"),
        ("m.yaml:19:3: Deployment/chat: $.spec.checkpoint: must be a checkpoint number or a reference such as "
         "${Training.name.output.checkpoint} (got \"four\")"),
        "m.yaml:20:3: Deployment/chat: $.spec.server_type: must be one of \"serverless\", \"on-demand\" (got \"gpu\")",
    ]


def test_instance_bounds_in_order_and_a_model_that_matches_the_version(tmp_path: Path) -> None:
    text = REPLICATE_DEPLOYMENT.replace("min_instances: 0", "min_instances: 2").replace(
        f"version: {V}", f"version: acme/other:{V}")
    assert lines(check(text, tmp_path)) == [
        "m.yaml:6:3: Deployment/poems-api: $.spec.model: model me/poems does not match the version's model acme/other",
        "m.yaml:9:3: Deployment/poems-api: $.spec.min_instances: min_instances 2 is more than max_instances 1",
    ]


def test_a_reference_to_an_output_a_deployment_does_not_have(tmp_path: Path) -> None:
    batch = HEAD + """kind: PredictionBatch
metadata: {name: b}
spec:
  provider: replicate
  version: ${Deployment.poems-api.output.weights}
  inputs: [{prompt: hi}]
"""
    (line,) = lines(check(REPLICATE_DEPLOYMENT + "---\n" + batch, tmp_path))
    assert line.endswith("reference ${Deployment.poems-api.output.weights}: Deployment/poems-api (replicate) has no "
                         "output `weights`; known outputs: name, url, version")


def test_replicate_expansion_splits_the_version_and_fingerprints_every_field(tmp_path: Path) -> None:
    (job,) = expand([deployment(model=None, version=f"me/poems:{V}")], tmp_path, {})
    assert job.address == "Deployment/poems-api" and job.job_kind == JOB_DEPLOYMENT
    assert job.request == {"provider": "replicate", "kind": "deployment", "name": "poems-api", "model": "me/poems",
                           "version": V, "hardware": "cpu", "min_instances": 0, "max_instances": 1}
    (scaled,) = expand([deployment(version=f"me/poems:{V}", max_instances=3)], tmp_path, {})
    assert scaled.fingerprint != job.fingerprint
    # The lifecycle steers the plan; it never changes what is deployed.
    (guarded,) = expand([deployment(model=None, version=f"me/poems:{V}", lifecycle={"prevent_destroy": True})],
                        tmp_path, {})
    assert guarded.fingerprint == job.fingerprint


def test_emissary_expansion_resolves_training_outputs_and_never_fingerprints_the_description(tmp_path: Path) -> None:
    ref = emissary_deployment(training_job_id="${Training.tune.output.id}",
                              checkpoint="${Training.tune.output.checkpoint}")
    (unknown,) = expand([ref], tmp_path, {})
    assert unknown.fingerprint is None and unknown.depends_on == ("Training/tune",)
    (known,) = expand([ref], tmp_path, {"Training/tune": {"id": "tr-9", "checkpoint": 7}})
    assert known.request["training_job_id"] == "tr-9" and known.request["checkpoint"] == 7
    (described,) = expand([emissary_deployment(training_job_id="tr-9", checkpoint=7, description="v2")], tmp_path, {})
    assert described.request["description"] == "v2" and "description" not in (described.material or {})
    assert described.fingerprint == known.fingerprint



REPLICATE_BATCH = HEAD + """kind: PredictionBatch
metadata: {name: evaluate}
spec:
  provider: replicate
  deployment: ${Deployment.poems-api.output.name}
  inputs: [{key: moon, prompt: The moon}]
"""
EMISSARY_BATCH = HEAD + """kind: PredictionBatch
metadata: {name: ask}
spec:
  provider: emissary
  project_id: ms-12345
  deployment: ${Deployment.chat.output.id}
  endpoint: chat.completions
  input_defaults: {max_new_tokens: 40}
  inputs:
    - {key: hello, messages: [{role: user, content: Hello}]}
    - {key: bad, prompt: not a chat}
"""


def test_batches_on_deployments_validate_rows_against_the_endpoint_body(tmp_path: Path) -> None:
    docs = [REPLICATE_DEPLOYMENT, REPLICATE_BATCH, EMISSARY_TRAINING, EMISSARY_DEPLOYMENT, EMISSARY_BATCH]
    text = "---\n".join(docs)
    result = check(text, tmp_path)
    assert lines(result) == [
        ("m.yaml:48:7: PredictionBatch/ask: $.spec.inputs[1]: chat.completions request body schema: missing "
         "required field `messages`"),
    ]


def test_a_batch_names_a_deployment_or_a_version_not_both(tmp_path: Path) -> None:
    text = REPLICATE_DEPLOYMENT + "---\n" + REPLICATE_BATCH.replace("  inputs:", f"  version: {V}\n  inputs:")
    (line,) = lines(check(text, tmp_path))
    assert "$.spec.deployment: give either deployment or version/model, not both" in line


def test_a_replicate_batch_on_a_deployment_reruns_when_the_served_version_changes(tmp_path: Path) -> None:
    from jobrunner.providers.adapters import adapter_for
    from tests.core.plan_helpers import batch

    res = batch(provider="replicate", version=None, deployment="${Deployment.poems-api.output.name}",
                inputs=[{"key": "moon", "prompt": "The moon"}])
    res = res.__class__(res.kind, res.name, {k: v for k, v in res.spec.items() if k != "version"}, res.file, res.line)
    (unknown,) = expand([res], tmp_path, {})
    assert unknown.fingerprint is None and unknown.depends_on == ("Deployment/poems-api",)
    served = {"Deployment/poems-api": {"name": "me/poems-api", "version": V}}
    (job,) = expand([res], tmp_path, served)
    assert job.request == {"provider": "replicate", "kind": "prediction", "deployment": "me/poems-api",
                           "input": {"prompt": "The moon"}}
    assert job.material["deployment_version"] == V
    req = adapter_for("replicate").create_request(job, res.spec, None)
    assert req.deployment == "me/poems-api" and req.version is None and req.body == {"input": {"prompt": "The moon"}}
    (updated,) = expand([res], tmp_path, {"Deployment/poems-api": {"name": "me/poems-api", "version": "d" * 64}})
    assert updated.fingerprint != job.fingerprint and updated.request == job.request


def test_an_emissary_batch_row_is_the_request_body_of_its_endpoint(tmp_path: Path) -> None:
    from jobrunner.providers.adapters import adapter_for

    result = check(EMISSARY_TRAINING + "---\n" + EMISSARY_DEPLOYMENT + "---\n" + EMISSARY_BATCH.replace(
        "    - {key: bad, prompt: not a chat}\n", ""), tmp_path)
    assert result.ok
    batch = next(r for r in result.resources if r.kind == "PredictionBatch")
    (job,) = expand([batch], tmp_path, {"Deployment/chat": {"id": "dp-7"}}, items=result.items)
    assert job.address == "PredictionBatch/ask[hello]"
    assert job.request == {"provider": "emissary", "kind": "prediction", "project_id": "ms-12345",
                           "deployment": "dp-7", "endpoint": "chat.completions",
                           "input": {"max_new_tokens": 40, "messages": [{"role": "user", "content": "Hello"}]}}
    req = adapter_for("emissary").create_request(job, batch.spec, None)
    assert (req.deployment, req.endpoint, req.project_id) == ("dp-7", "chat.completions", "ms-12345")
    assert req.body == job.request["input"]
