"""The Emissary adapter: fine-tuning jobs inside projects, created from a flat request body.

Jobs are PROJECT_BODY: a `project_id` and the CreateTrainingJobRequestBody fields
(reference/emissary/api.md), of which `name` and `description` only label the job (sent, never
fingerprinted). Predictions are batch rows sent to a deployment's inference endpoint (the row is
the request body). Emissary lists training summaries (no datasets or parameters), has no
provider-side deadline, and `destroy` deletes its jobs.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobrunner.providers.adapter import (
    Capabilities,
    Costing,
    DeploymentForm,
    DiscoveredSpec,
    Endpoint,
    ProviderAdapter,
    RequestForm,
)
from jobrunner.providers.base import CreateRequest, RemoteJob
from jobrunner.resources import JOB_PREDICTION, JOB_TRAINING, DesiredJob

# CreateTrainingJobRequestBody fields that determine the trained result.
RESULT_FIELDS = (
    "base_model", "train_dataset_id", "test_dataset_id", "train_test_split_ratio", "parameters", "hf_model_link",
)
LABEL_FIELDS = ("name", "description")
BODY_FIELDS = (*RESULT_FIELDS, *LABEL_FIELDS)
# Fields a training job echoes that a discovered manifest declares (datasets are read apart).
_ECHOED = ("train_test_split_ratio", "description", "parameters", "hf_model_link")

OUTPUT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "Training": ("id", "checkpoint", "model_download_url"),
    "PredictionBatch": ("output_file", "count"),
    "Model": ("name", "url"),
    "Deployment": ("id", "name", "url", "status"),
}

# The deployment endpoints a PredictionBatch may send its rows to, as manifests name them, and the
# request body (reference/emissary/openapi-0.4.4.yaml, named as the SDK names it) each row is.
INFERENCE_BODIES: Mapping[str, str] = {
    "chat.completions": "GetChatCompletionsFromDeploymentRequestBody",
    "completions": "GetCompletionsFromDeploymentRequestBody",
    "embeddings": "GetEmbeddingsFromDeploymentRequestBody",
}

# CreateDeploymentRequestBody fields (name aside). Emissary has no update endpoint: any change
# replaces the deployment; the description only labels it.
DEPLOYMENT = DeploymentForm(
    fields=("project_id", "training_job_id", "checkpoint", "server_type"),
    label_fields=("description",),
)


def create_request(job: DesiredJob, spec: Mapping[str, Any], request: Mapping[str, Any] | None = None) -> CreateRequest:
    """The create request of a desired training (`request` overrides `job.request`: datasets
    uploaded), or of one batch row sent to a deployment endpoint (the row is the body)."""
    req = dict(job.request if request is None else request)
    if job.job_kind == JOB_PREDICTION:
        return CreateRequest(job_kind=JOB_PREDICTION, body=dict(req.get("input") or {}),
                             project_id=req.get("project_id") or spec.get("project_id"),
                             deployment=req.get("deployment"), endpoint=req.get("endpoint"))
    given = req.get("body")
    body_src: Mapping[str, Any] = given if isinstance(given, dict) else req
    body = {k: v for k, v in body_src.items() if k in BODY_FIELDS}
    project_id = req.get("project_id") or body_src.get("project_id") or spec.get("project_id")
    return CreateRequest(job_kind=JOB_TRAINING, body=body, project_id=project_id)


def recorded_request(job_kind: str, material: Mapping[str, Any]) -> CreateRequest:
    """A create request rebuilt from the inputs state recorded at intent time."""
    if job_kind == JOB_PREDICTION:
        return CreateRequest(job_kind=job_kind, body=dict(material.get("input") or {}),
                             project_id=material.get("project_id"), deployment=material.get("deployment"),
                             endpoint=material.get("endpoint"))
    body = {k: v for k, v in material.items() if k in BODY_FIELDS}
    return CreateRequest(job_kind=job_kind, body=body, project_id=material.get("project_id"))


def _dataset_id(job: RemoteJob, key: str) -> Any:
    dataset = job.extra.get(key)
    return dataset.get("id") if isinstance(dataset, dict) else job.extra.get(f"{key}_id")


def discovered_training(provider: str, job: RemoteJob) -> DiscoveredSpec:
    """The Training spec that declares a training job run by hand (the body fields it echoes)."""
    train_id = _dataset_id(job, "train_dataset")
    if not job.project_id or not job.model or not train_id:
        return None, "the job does not report its project, base model and training dataset"
    spec: dict[str, Any] = {"provider": provider, "project_id": job.project_id, "base_model": job.model,
                            "train_dataset_id": train_id}
    test_id = _dataset_id(job, "test_dataset")
    if test_id:
        spec["test_dataset_id"] = test_id
    for key in _ECHOED:
        if job.extra.get(key) is not None:
            spec[key] = job.extra[key]
    return spec, None


def base_model_of(request: Mapping[str, Any]) -> str | None:
    """Trainings of one base model take alike long: the base model stands for the version."""
    given = request.get("body")
    body: Mapping[str, Any] = given if isinstance(given, Mapping) else request
    model = body.get("base_model")
    return model if isinstance(model, str) and model and "${" not in model else None


EMISSARY = ProviderAdapter(
    name="emissary",
    title="Emissary",
    client="jobrunner.providers.emissary:build_client",
    form=RequestForm.PROJECT_BODY,
    capabilities=Capabilities(delete_on_destroy=True, provider_deadline=False, bulk_refresh=True,
                              list_returns_summaries=True, update_in_place=False, project_scoped=True),
    # Jobs it lists (import --discover): batch rows sent to a deployment are synchronous inference
    # requests the API never lists, so predictions are not among them.
    job_kinds=frozenset({JOB_TRAINING}),
    output_fields=OUTPUT_FIELDS,
    create_request=create_request,
    recorded_request=recorded_request,
    discovered_training=discovered_training,
    body_fields=BODY_FIELDS,
    result_fields=RESULT_FIELDS,
    endpoint=Endpoint(credential_env="EMISSARY_CLIENT_API_KEY", credential_hint="your Emissary API key",
                      url_env="EMISSARY_SERVER_URL", default_url="https://api.withemissary.com",
                      auth_header="X-API-Key", auth_scheme=None,
                      local_platform=True),  # the local platform speaks its wire (`base_url: local`)
    # Emissary reports no run time a plan could measure (metrics hold progress and loss only), and
    # no hardware: its estimates come from `estimate:` hints.
    costing=Costing(version_of=base_model_of),
    deployment=DEPLOYMENT,
    endpoint_bodies={endpoint: f"emissary.{body}" for endpoint, body in INFERENCE_BODIES.items()},
)

__all__ = ["BODY_FIELDS", "DEPLOYMENT", "EMISSARY", "INFERENCE_BODIES", "LABEL_FIELDS", "OUTPUT_FIELDS",
           "RESULT_FIELDS", "create_request", "discovered_training", "recorded_request"]
