"""What a provider is to jobrunner: one `ProviderAdapter` value per provider, pure data and functions.

The core (spec expansion, validation, references, planning, discovery, apply) asks a provider's
adapter instead of comparing provider names: which request form its jobs take, which outputs they
record, what it can do (`Capabilities`), how a desired job becomes its `CreateRequest`. Adapters
are registered in one name-keyed table, `jobrunner.providers.adapters.ADAPTERS`; the wire client
is named by `client` ("module:function") and built by `jobrunner.providers.registry.get_provider`,
so reading an adapter never imports httpx or the local platform.

Adding a provider is one adapter module plus one entry in that table (docs/architecture.md).
"""
from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jobrunner.providers.base import CreateRequest, RemoteJob
from jobrunner.providers.limits import CREATE, OTHER, UNLIMITED
from jobrunner.providers.names import DEFAULT_PROVIDER, PROVIDER_NAMES, ProviderName
from jobrunner.resources import JOB_PREDICTION, JOB_TRAINING, DesiredJob


class RequestForm(enum.Enum):
    """The shape of a provider's create requests, which decides how a spec expands.

    VERSIONED: `model` (owner/name), a pinned `version`, `input` and, for trainings, a
    `destination`; inputs follow the version's OpenAPI schema (the Replicate wire).
    PROJECT_BODY: a `project_id` and a flat request body of named fields, some of which determine
    the result (`result_fields`) and some only label it (the Emissary wire).
    """

    VERSIONED = "versioned"
    PROJECT_BODY = "project_body"


def split_version(model: Any, version: Any) -> tuple[Any, Any]:
    """(owner/name, version id) of a VERSIONED job from its `model` and `version` fields.

    `version` is a bare id or `owner/name:id` (reference/replicate/api.md, "version accepted
    formats"). The model named in the version wins over `model`: the version id alone decides what
    runs, and `validate` reports a `model` that disagrees with it. A bare id, and a version that
    still holds a `${...}` reference, keep the given model.
    """
    if isinstance(version, str) and ":" in version and "${" not in version:
        named, _, vid = version.partition(":")
        return (named or model), vid
    return model, version


@dataclass(frozen=True)
class Capabilities:
    """What a provider does that the reconciler must plan around."""

    # `destroy` deletes the job on the provider (not only cancels it), so it is always sent.
    delete_on_destroy: bool
    # The provider cancels a prediction at its `timeout` itself (Replicate's Cancel-After header);
    # jobrunner's own deadline is then only a backstop.
    provider_deadline: bool
    # Many jobs' status can be read from list pages in one walk (`refresh_many`).
    bulk_refresh: bool
    # List pages hold summaries without inputs or datasets: matching and discovery fetch each detail.
    list_returns_summaries: bool
    # A changed deployment can be updated on the provider (only the fields its `DeploymentForm`
    # names as `updatable`); without it every change replaces the deployment.
    update_in_place: bool
    # Jobs live inside a project: every call names its `project_id`.
    project_scoped: bool = False
    # Only https webhooks are called.
    https_webhooks_only: bool = False
    # A version a training made can be deleted (`lifecycle.on_remove: delete_version`, on removal
    # and on `destroy`): the wire client has `delete_version(model, version)`.
    delete_versions: bool = False


@dataclass(frozen=True)
class Endpoint:
    """Where a hosted provider's API is and how it authenticates. Credentials come from the
    environment only; `providers.<name>.base_url` in jobrunner.yaml may move the URL (or, where
    `local_platform` is true, name the value `local`: the workspace's local platform, which speaks
    this provider's wire and whose own token stands in for the credential)."""

    credential_env: str  # e.g. REPLICATE_API_TOKEN
    credential_hint: str  # where to get one, for the "not set" message
    url_env: str  # e.g. REPLICATE_BASE_URL (wins over jobrunner.yaml)
    default_url: str
    auth_header: str = "Authorization"
    auth_scheme: str | None = "Bearer"
    rate_limits: Mapping[str, float | None] = field(default_factory=lambda: dict(UNLIMITED))  # documented limits
    local_platform: bool = False  # `base_url: local` targets the local platform (jobrunner.providers.local)


def recorded_predict_time(outputs: Mapping[str, Any]) -> float | None:
    """Seconds a finished job ran, from the `metrics.predict_time` its outputs recorded (the
    Replicate wire's measure: compute time, queueing excluded), else None."""
    metrics = outputs.get("metrics")
    value = metrics.get("predict_time") if isinstance(metrics, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return float(value)


# A deployment's (min instances, max instances, hardware) as its request says; None where unsaid.
ServingShape = tuple[int | None, int | None, str | None]


@dataclass(frozen=True)
class Costing:
    """What the estimator (`jobrunner.estimate`) needs to know about a provider.

    `measured_seconds` reads how long a finished job ran from the outputs state recorded (None:
    not measured). `version_of` names what "the same model version" is for a job's request (run
    times of one version predict the next run). `model_of` names the model whose declared
    `hardware` (a `Model` resource) a job runs on. `fixed_hardware` is the SKU every job of the
    provider runs on whatever the manifests say (the local platform: this machine, priced 0).
    `rate_class` maps a job kind to the rate-limit class its creates spend
    (`providers.limits.CREATE` or `OTHER`). `serving` reads a deployment's request as
    (min instances, max instances, hardware) for its hourly serving cost; None: the provider's
    deployments have no such figures (not estimated).
    """

    measured_seconds: Callable[[Mapping[str, Any]], float | None] = recorded_predict_time
    version_of: Callable[[Mapping[str, Any]], str | None] = lambda request: None
    model_of: Callable[[Mapping[str, Any]], str | None] = lambda request: None
    fixed_hardware: str | None = None
    rate_class: Mapping[str, str] = field(default_factory=lambda: {JOB_PREDICTION: CREATE, JOB_TRAINING: OTHER})
    serving: Callable[[Mapping[str, Any]], ServingShape] | None = None


@dataclass(frozen=True)
class DeploymentForm:
    """How a provider's `Deployment` spec maps to its create request (name = metadata.name).

    `fields` determine what is served and enter the fingerprint; `label_fields` are sent but only
    label it (never fingerprinted, never a reason to change it); `updatable` are the fields the
    provider changes in place (Replicate's PATCH body); a change to any other field replaces it.

    `update_keeps` says which outputs an update in place leaves as they were: output -> the
    updatable fields whose change does change it (Replicate: the name and URL always, the version
    it serves unless `version` changes). An output it does not list is unknown after any update, so
    a provider that forgets one re-runs dependents rather than feeding them a stale value.
    """

    fields: tuple[str, ...]
    label_fields: tuple[str, ...] = ()
    updatable: frozenset[str] = frozenset()
    update_keeps: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def updates_in_place(self, changed: frozenset[str] | set[str]) -> bool:
        """Whether a change of the fields `changed` is an update in place (else a replace)."""
        return set(changed) <= self.updatable

    def outputs_after_update(self, changed: frozenset[str] | set[str],
                             outputs: Mapping[str, Any]) -> dict[str, Any] | None:
        """The `outputs` still true once `changed` is updated in place; None for a replace (a new
        deployment: every output is known only after apply)."""
        if not self.updates_in_place(changed):
            return None
        return {k: v for k, v in outputs.items() if k in self.update_keeps and not self.update_keeps[k] & set(changed)}


# (spec, why-not) of a manifest that reproduces a remote training, for `import --discover`.
DiscoveredSpec = tuple[dict[str, Any] | None, str | None]


@dataclass(frozen=True)
class ProviderAdapter:
    """Everything the core knows about one provider.

    The hooks are plain functions of plain data: `create_request(job, spec, request)` builds the
    wire request from a desired job (its `request`, or `request` given after file uploads) and the
    resource spec (for settings outside the fingerprint: webhook, timeout); `recorded_request`
    rebuilds one from the inputs state recorded at intent time (an address no manifest defines any
    more); `discovered_training` writes a manifest spec for a remote training; `version_schema`
    returns the OpenAPI document of a version known without asking the provider (None: unknown).
    """

    name: ProviderName
    title: str  # how messages name it ("Replicate")
    client: str  # "module:function" building the wire client (see providers.registry)
    form: RequestForm
    capabilities: Capabilities
    job_kinds: frozenset[str]  # job kinds it runs (a Model resource is not a job)
    output_fields: Mapping[str, tuple[str, ...]]  # resource kind -> outputs recorded on success
    create_request: Callable[[DesiredJob, Mapping[str, Any], Mapping[str, Any] | None], CreateRequest]
    recorded_request: Callable[[str, Mapping[str, Any]], CreateRequest]
    discovered_training: Callable[[str, RemoteJob], DiscoveredSpec]
    # PROJECT_BODY form: the request body's fields, and those of them that determine the result.
    body_fields: tuple[str, ...] = ()
    result_fields: tuple[str, ...] = ()
    version_schema: Callable[[str], dict[str, Any] | None] | None = None
    # Hosted providers: their API's URL and credential (None: the client finds its own endpoint).
    endpoint: Endpoint | None = None
    # jobrunner.yaml keys under providers.<name> that only this provider reads (beyond SETTING_KEYS).
    settings_keys: frozenset[str] = frozenset()
    # Inputs of cost and duration estimates (jobrunner.estimate).
    costing: Costing = field(default_factory=Costing)
    # How its `Deployment` kind is built (None: the provider serves no deployments).
    deployment: DeploymentForm | None = None
    # Deployment endpoints a PredictionBatch may send its rows to (the manifest's `endpoint`), each
    # with the derived schema definition (jobrunner/schemas) that every row must satisfy.
    endpoint_bodies: Mapping[str, str] = field(default_factory=dict)


__all__ = [
    "DEFAULT_PROVIDER",
    "PROVIDER_NAMES",
    "Capabilities",
    "Costing",
    "ServingShape",
    "DeploymentForm",
    "DiscoveredSpec",
    "Endpoint",
    "ProviderAdapter",
    "ProviderName",
    "RequestForm",
    "recorded_predict_time",
    "split_version",
]
