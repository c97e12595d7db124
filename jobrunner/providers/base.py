"""The one small interface every provider implements, and the provider-neutral job record.

The reconciler only ever sees `RemoteJob`s with normalized statuses; each provider maps its own
wire format (Replicate `starting/processing/...`, Emissary `Pending/Running/...`) onto them. Unknown
or future status values map to `UNKNOWN` (never a crash) and keep the raw value for messages.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from jobrunner.errors import UnexpectedIdError
from jobrunner.resources import JOB_DEPLOYMENT


class JobStatus(StrEnum):
    """A job's normalized status. A str: state files, plans and `--json` events carry the bare word,
    and a status read back from state (a plain str) compares equal to its member."""

    PENDING = "pending"  # Replicate starting, Emissary Pending
    RUNNING = "running"  # Replicate processing, Emissary Running
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # Emissary Failed and TimedOut
    CANCELED = "canceled"
    ABORTED = "aborted"  # Replicate: terminated before it started
    UNKNOWN = "unknown"  # a status value we do not know; treated as non-terminal
    GONE = "gone"  # the provider says 404 for a job we track (deleted outside jobrunner)


# The names every module already uses for the statuses.
PENDING, RUNNING, SUCCEEDED, FAILED = JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED
CANCELED, ABORTED, UNKNOWN, GONE = JobStatus.CANCELED, JobStatus.ABORTED, JobStatus.UNKNOWN, JobStatus.GONE

TERMINAL: frozenset[JobStatus] = frozenset({SUCCEEDED, FAILED, CANCELED, ABORTED, GONE})


def job_status(word: str | None) -> JobStatus:
    """A status read back as a plain word (state, a saved plan) as its member; UNKNOWN otherwise."""
    try:
        return JobStatus(word or UNKNOWN)
    except ValueError:
        return UNKNOWN


@dataclass
class RemoteJob:
    """A job as the provider reports it."""

    id: str
    job_kind: str  # "training" | "prediction"
    status: JobStatus  # providers map their wire's status words onto these
    raw_status: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    input: dict[str, Any] | None = None
    output: Any = None
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    model: str | None = None  # Replicate owner/name; Emissary base_model
    version: str | None = None
    project_id: str | None = None  # Emissary
    extra: dict[str, Any] = field(default_factory=dict)  # provider-specific fields worth keeping

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def check_id(job: RemoteJob, asked: str, provider: str, what: str) -> RemoteJob:
    """`job` if it is the one asked for. An answer about another job is a protocol error: recording
    it would tie an address to a job that is not its own."""
    if job.id != asked:
        raise UnexpectedIdError(
            f"{provider}: {what}: the answer is about {job.job_kind} {job.id!r}, not {asked!r}",
            provider=provider,
            hint="the provider (or a proxy or cache in front of it) answered for another job; nothing was "
                 "recorded from that answer",
        )
    return job


@dataclass
class RemoteDeployment:
    """A deployment as the provider reports it, in provider-neutral terms.

    `id` is what later calls name it by: Replicate's `owner/name`, Emissary's `dp-...` id; `name`
    is what a manifest refers to (Replicate: `owner/name`, which predictions are sent to).
    `status` uses the normalized statuses: ready to serve is SUCCEEDED (Replicate reports no status:
    a deployment it answers for is ready), still starting is PENDING or RUNNING, GONE after a 404.
    `settings` holds the fields a manifest declares, as the provider echoes them, so a plan can
    tell a change made outside jobrunner.
    """

    id: str
    name: str
    status: JobStatus
    raw_status: str | None = None
    url: str | None = None  # the API URL of the deployment
    model: str | None = None
    version: str | None = None
    project_id: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None

    @property
    def ready(self) -> bool:
        return self.status == SUCCEEDED

    def as_job(self) -> RemoteJob:
        """The deployment as a RemoteJob of kind "deployment", the shape refresh and plans read:
        its settings and outputs travel in `extra`."""
        return RemoteJob(id=self.id, job_kind=JOB_DEPLOYMENT, status=self.status, raw_status=self.raw_status,
                         created_at=self.created_at, model=self.model, version=self.version,
                         project_id=self.project_id,
                         extra={"settings": dict(self.settings), "outputs": self.outputs()})

    def outputs(self) -> dict[str, Any]:
        """What `${Deployment.x.output.field}` may name: the id, name, URL (and version), and the
        provider's own status word (Emissary's `Deployed`). A provider that reports no status
        (Replicate) has no `status` output: jobrunner's job statuses (`succeeded`) are not one."""
        out: dict[str, Any] = {"id": self.id, "name": self.name, "url": self.url, "status": self.raw_status}
        if self.version:
            out["version"] = self.version
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class CreateRequest:
    """What to create, already resolved (no `${...}` references, files uploaded).

    For Replicate/local: `model` is owner/name, `version` the 64-hex id, `destination` set for
    trainings. For Emissary: `project_id` set and `body` is the CreateTrainingJobRequestBody.
    `body` holds the request fields the provider API takes (input, webhook, ...).
    """

    job_kind: str
    body: dict[str, Any]
    model: str | None = None
    version: str | None = None
    destination: str | None = None
    project_id: str | None = None
    cancel_after: str | None = None  # Replicate Cancel-After header value, e.g. "2h"
    # Predictions on a deployment: Replicate's owner/name (instead of a version), or Emissary's
    # deployment id with the `endpoint` the body is sent to (chat.completions, completions, embeddings).
    deployment: str | None = None
    endpoint: str | None = None


@runtime_checkable
class Provider(Protocol):
    """Async provider interface. Implementations raise `jobrunner.errors.ProviderError` subclasses."""

    name: str

    async def create(self, req: CreateRequest) -> RemoteJob: ...

    async def get(self, job_kind: str, remote_id: str, *, project_id: str | None = None) -> RemoteJob: ...

    async def cancel(self, job_kind: str, remote_id: str, *, project_id: str | None = None) -> None: ...

    def list(
        self, job_kind: str, *, since: datetime | None = None, project_id: str | None = None
    ) -> AsyncIterator[RemoteJob]:
        """Newest first; stops after `since` when given (following cursor pages)."""
        ...

    async def logs(self, job_kind: str, remote_id: str, *, project_id: str | None = None) -> str: ...

    async def upload(self, path: str, *, project_id: str | None = None) -> str:
        """Upload a local file; return what to put in the input (URL, or Emissary dataset id)."""
        ...

    async def aclose(self) -> None: ...
