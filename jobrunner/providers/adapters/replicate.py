"""The Replicate adapter: the Replicate v1 wire as the core sees it (also the local platform's).

Jobs are VERSIONED: `model` (owner/name), a pinned `version` (`id` or `owner/name:id`), `input` and,
for trainings, a `destination`. Replicate cancels a prediction at its `timeout` itself
(`Cancel-After`), lists jobs in pages that bulk refresh can walk, and only calls https webhooks.
The request-building functions here are shared with the local adapter, which speaks the same wire.
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
    ServingShape,
    split_version,
)
from jobrunner.providers.base import CreateRequest, RemoteJob
from jobrunner.providers.limits import REPLICATE_LIMITS
from jobrunner.resources import JOB_PREDICTION, JOB_TRAINING, DesiredJob

# Request fields passed through to the provider (never part of a fingerprint).
PASS_THROUGH = ("webhook", "webhook_events_filter")

OUTPUT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "Training": ("id", "version", "weights"),
    "PredictionBatch": ("output_file", "count"),
    "Model": ("name", "url"),
    # `name` is owner/name: what a batch's `deployment:` names. Replicate reports no deployment
    # status (one it answers for serves), so there is no `status` output.
    "Deployment": ("name", "url", "version"),
}

# deployments.create body fields (name aside); deployments.update (PATCH) takes all but `model`.
DEPLOYMENT = DeploymentForm(
    fields=("model", "version", "hardware", "min_instances", "max_instances"),
    updatable=frozenset({"version", "hardware", "min_instances", "max_instances"}),
    # A PATCH keeps the deployment's owner/name (its id and URL); only a new version changes what it serves.
    update_keeps={"id": frozenset(), "name": frozenset(), "url": frozenset(), "version": frozenset({"version"})},
)


def serving_shape(request: Mapping[str, Any]) -> ServingShape:
    """A deployment's instances and hardware: Replicate bills each running instance by the second
    on its hardware, and keeps `min_instances` running while idle."""
    def count(key: str) -> int | None:
        value = request.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    hardware = request.get("hardware")
    return count("min_instances"), count("max_instances"), hardware if isinstance(hardware, str) else None


def create_request(job: DesiredJob, spec: Mapping[str, Any], request: Mapping[str, Any] | None = None) -> CreateRequest:
    """The create request of a desired job; `request` overrides `job.request` (files uploaded)."""
    req = dict(job.request if request is None else request)
    model, version = split_version(req.get("model") or spec.get("model"), req.get("version"))
    body: dict[str, Any] = {"input": req.get("input") or {}}
    for key in PASS_THROUGH:
        value = req.get(key, spec.get(key))
        if value is not None:
            body[key] = value
    cancel_after = None
    if job.job_kind == JOB_PREDICTION and spec.get("timeout") is not None:
        # Replicate enforces this itself (Cancel-After header, predictions only).
        cancel_after = str(spec["timeout"])
    return CreateRequest(
        job_kind=job.job_kind,
        body=body,
        model=model,
        version=version,
        destination=req.get("destination") if job.job_kind == JOB_TRAINING else None,
        cancel_after=cancel_after,
        deployment=req.get("deployment") if job.job_kind == JOB_PREDICTION else None,
    )


def recorded_request(job_kind: str, material: Mapping[str, Any]) -> CreateRequest:
    """A create request rebuilt from the inputs state recorded at intent time."""
    model, version = split_version(material.get("model"), material.get("version"))
    return CreateRequest(job_kind=job_kind, body={"input": material.get("input") or {}}, model=model,
                         version=version, destination=material.get("destination"),
                         deployment=material.get("deployment"))


def discovered_training(provider: str, job: RemoteJob) -> DiscoveredSpec:
    """The Training spec that declares a training run by hand (model, version, destination, input)."""
    version = split_version(None, job.version or "")[1] or None
    destination = job.extra.get("destination")
    if not job.model or not version:
        return None, "the training names no base model and version"
    if not destination:
        return None, "the provider does not report its destination (it is known once the training succeeds)"
    return {"provider": provider, "model": job.model, "version": version, "destination": destination,
            "input": dict(job.input or {})}, None


def version_of(request: Mapping[str, Any]) -> str | None:
    """The version id a job runs (what "the same model version" means for measured run times)."""
    version = split_version(request.get("model"), request.get("version"))[1]
    return version if isinstance(version, str) and version and "${" not in version else None


def model_of(request: Mapping[str, Any]) -> str | None:
    """The `owner/name` a job's version belongs to: a declared Model's `hardware` says what it runs on."""
    model = split_version(request.get("model"), request.get("version"))[0]
    return model if isinstance(model, str) and model and "${" not in model else None


REPLICATE = ProviderAdapter(
    name="replicate",
    title="Replicate",
    client="jobrunner.providers.replicate:build_client",
    form=RequestForm.VERSIONED,
    capabilities=Capabilities(delete_on_destroy=False, provider_deadline=True, bulk_refresh=True,
                              list_returns_summaries=False, update_in_place=True, https_webhooks_only=True,
                              delete_versions=True),
    job_kinds=frozenset({JOB_TRAINING, JOB_PREDICTION}),
    output_fields=OUTPUT_FIELDS,
    create_request=create_request,
    recorded_request=recorded_request,
    discovered_training=discovered_training,
    endpoint=Endpoint(credential_env="REPLICATE_API_TOKEN",
                      credential_hint="an API token from https://replicate.com/account/api-tokens",
                      url_env="REPLICATE_BASE_URL", default_url="https://api.replicate.com",
                      rate_limits=REPLICATE_LIMITS),
    # metrics.predict_time (reference/replicate/api.md): CPU/GPU seconds, queueing excluded.
    costing=Costing(version_of=version_of, model_of=model_of, serving=serving_shape),
    deployment=DEPLOYMENT,
)

__all__ = ["DEPLOYMENT", "OUTPUT_FIELDS", "PASS_THROUGH", "REPLICATE", "create_request", "discovered_training",
           "model_of", "recorded_request", "serving_shape", "version_of"]
