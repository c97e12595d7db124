"""The Emissary fine-tuning API provider (the wire of `emissary-client-sdk` 0.4.4).

Emissary runs training jobs inside projects: every call names a `project_id`. The key travels in
`X-API-Key`; errors are `{status, error[, code]}`; lists are bare JSON arrays without pagination;
timestamps are integer epoch seconds; statuses are `Pending|Running|Success|Failed|TimedOut|
Cancelled`. Datasets are uploaded as multipart (`name`, `file`) and referenced by id, so `upload`
returns the dataset id to put into `train_dataset_id` / `test_dataset_id`.

Emissary has no logs endpoint: `logs` renders the job's progress and training loss instead.
"""
from __future__ import annotations

import asyncio
import builtins
import mimetypes
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from jobrunner.errors import NotFoundError, ProtocolError, UsageError
from jobrunner.providers.base import (
    CANCELED,
    FAILED,
    GONE,
    PENDING,
    RUNNING,
    SUCCEEDED,
    UNKNOWN,
    CreateRequest,
    RemoteJob,
    check_id,
)
from jobrunner.providers.emissary_deployments import EmissaryDeployments
from jobrunner.providers.http import HttpClient, upload_seconds
from jobrunner.providers.local import platform_http
from jobrunner.providers.ratelimit import CREATE
from jobrunner.providers.settings import ClientContext
from jobrunner.resources import JOB_PREDICTION, JobKind
from jobrunner.timestamps import to_rfc3339

TRAINING = JobKind.TRAINING

STATUS_MAP = {
    "Pending": PENDING,
    "Running": RUNNING,
    "Success": SUCCEEDED,
    "Failed": FAILED,
    "TimedOut": FAILED,
    "Cancelled": CANCELED,
}

# CreateTrainingJobRequestBody fields (openapi-0.4.4.yaml, operation createTrainingJob).
BODY_FIELDS = (
    "base_model",
    "train_dataset_id",
    "test_dataset_id",
    "train_test_split_ratio",
    "name",
    "description",
    "parameters",
    "hf_model_link",
)
UPLOAD_TIMEOUT = httpx.Timeout(300.0, connect=10.0, pool=60.0)
REFRESH_CONCURRENCY = 16


def epoch(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def job_from_json(data: Any, project_id: str | None) -> RemoteJob:
    """A TrainingJobSummary or TrainingJobDetail as a provider-neutral RemoteJob."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise ProtocolError(f"expected a training job object with an id, got {str(data)[:120]!r}")
    raw = data.get("status")
    status = STATUS_MAP.get(raw, UNKNOWN) if isinstance(raw, str) else UNKNOWN
    metrics: dict[str, Any] = {}
    if isinstance(data.get("progress"), (int, float)):
        metrics["progress"] = data["progress"]
    losses = data.get("training_loss")
    if isinstance(losses, list) and losses and isinstance(losses[-1], dict) and "loss" in losses[-1]:
        metrics["loss"] = losses[-1]["loss"]
    extra: dict[str, Any] = {}
    for key in ("name", "description", "created_by", "hyper_parameters", "training_loss", "train_dataset",
                "test_dataset"):
        if data.get(key) is not None:
            extra[key] = data[key]
    if isinstance(data.get("hyper_parameters"), dict):
        # The detail echoes the request's `parameters` as `hyper_parameters`.
        extra["parameters"] = data["hyper_parameters"]
    if raw == "TimedOut":
        extra["timed_out"] = True
    completed = epoch(data.get("updated_at")) if status in (SUCCEEDED, FAILED, CANCELED) else None
    return RemoteJob(
        id=data["id"],
        job_kind=TRAINING,
        status=status,
        raw_status=raw if isinstance(raw, str) else None,
        created_at=epoch(data.get("created_at")),
        completed_at=completed,
        error="training timed out" if raw == "TimedOut" else ("training failed" if raw == "Failed" else None),
        metrics=metrics,
        model=data.get("base_model") if isinstance(data.get("base_model"), str) else None,
        project_id=project_id,
        extra=extra,
    )


def _project(project_id: str | None, what: str) -> str:
    if not project_id:
        raise UsageError(f"emissary: {what} needs a project_id", hint="set spec.project_id in the manifest")
    if "/" in project_id:
        raise UsageError(f"emissary: invalid project_id {project_id!r}")
    return project_id


def _check_kind(job_kind: str) -> None:
    if job_kind != TRAINING:
        raise UsageError(f"emissary runs training jobs only, not {job_kind!r}")


class EmissaryProvider(EmissaryDeployments):
    """Emissary training jobs behind the `Provider` interface, plus projects, datasets, checkpoints,
    and deployments with their inference endpoints (`EmissaryDeployments`)."""

    name = "emissary"

    def __init__(self, http: HttpClient, *, name: str | None = None) -> None:
        self.http = http
        if name:
            self.name = name

    def __repr__(self) -> str:
        return f"EmissaryProvider(name={self.name!r}, base_url={self.http.base_url!r})"

    async def aclose(self) -> None:
        await self.http.aclose()

    def _jobs(self, project_id: str | None, what: str) -> str:
        return f"/v1/projects/{_project(project_id, what)}/training-jobs"

    async def create(self, req: CreateRequest) -> RemoteJob:
        if req.job_kind == JOB_PREDICTION and req.deployment:
            return await self.create_inference(req)  # a batch row on a deployment
        _check_kind(req.job_kind)
        project_id = req.project_id or req.body.get("project_id")
        body = {k: req.body[k] for k in BODY_FIELDS if k in req.body and req.body[k] is not None}
        if not body.get("base_model") or not body.get("train_dataset_id"):
            raise UsageError("an Emissary training needs base_model and train_dataset_id")
        data = await self.http.request_json(
            "POST", self._jobs(project_id, "create"), json=body, idempotent=False, request_class=CREATE,
            what="create training job",
        )
        return job_from_json(data, project_id)

    async def get(self, job_kind: str, remote_id: str, *, project_id: str | None = None) -> RemoteJob:
        return await self._with_checkpoint(await self._get(job_kind, remote_id, project_id=project_id))

    async def _get(self, job_kind: str, remote_id: str, *, project_id: str | None = None) -> RemoteJob:
        _check_kind(job_kind)
        data = await self.http.request_json("GET", f"{self._jobs(project_id, 'get')}/{remote_id}",
                                            what=f"get training job {remote_id}")
        return check_id(job_from_json(data, project_id), remote_id, self.name, f"get training job {remote_id}")

    async def _with_checkpoint(self, job: RemoteJob) -> RemoteJob:
        """A succeeded job with its latest checkpoint's `checkpoint` and `model_download_url` in `extra`.

        The job detail does not carry them (only `GET .../checkpoints` does), yet they are the
        documented outputs `${Training.x.output.checkpoint}` and `.model_download_url` resolve to.
        A job that succeeded without any checkpoint is returned as it is: its dependents are then
        reported as needing attention instead of failing on every apply.
        """
        if job.status != SUCCEEDED or "checkpoint" in job.extra:
            return job
        try:
            points = await self.checkpoints(job.id, project_id=job.project_id)
        except NotFoundError:
            return job
        numbered = [c for c in points if isinstance(c.get("checkpoint"), int) and not isinstance(c["checkpoint"], bool)]
        if not numbered:
            return job
        latest = max(numbered, key=lambda c: c["checkpoint"])
        job.extra["checkpoint"] = latest["checkpoint"]
        if isinstance(latest.get("model_download_url"), str) and latest["model_download_url"]:
            job.extra["model_download_url"] = latest["model_download_url"]
        return job

    async def cancel(self, job_kind: str, remote_id: str, *, project_id: str | None = None) -> None:
        _check_kind(job_kind)
        await self.http.request(
            "POST", f"{self._jobs(project_id, 'cancel')}/{remote_id}/cancel", idempotent=True,
            what=f"cancel training job {remote_id}",
        )

    async def delete(self, job_kind: str, remote_id: str, *, project_id: str | None = None) -> None:
        """Delete a training job (204). Deleting what is already gone counts as done. A batch row
        on a deployment was one inference answered at once: nothing of it is left to delete."""
        if job_kind == JOB_PREDICTION:
            return
        _check_kind(job_kind)
        try:
            await self.http.request("DELETE", f"{self._jobs(project_id, 'delete')}/{remote_id}",
                                    what=f"delete training job {remote_id}")
        except NotFoundError:
            return

    async def list(
        self, job_kind: str, *, since: datetime | None = None, project_id: str | None = None
    ) -> AsyncIterator[RemoteJob]:
        """The project's training jobs, newest first (the API returns one unpaginated array).

        Batch rows on a deployment are inferences answered synchronously and never listed: a
        lookup after a lost answer finds none, and the row is sent again (a repeat may be billed;
        nothing is left behind on the provider)."""
        if job_kind == JOB_PREDICTION:
            return
        _check_kind(job_kind)
        data = await self.http.request_json("GET", self._jobs(project_id, "list"), what="list training jobs")
        if not isinstance(data, list):
            raise ProtocolError(f"{self.name}: list training jobs: expected a JSON array, got {str(data)[:120]!r}",
                                provider=self.name)
        jobs = [job_from_json(item, project_id) for item in data]
        far_past = datetime.min.replace(tzinfo=UTC)
        jobs.sort(key=lambda j: j.created_at or far_past, reverse=True)
        for job in jobs:
            if since is not None and job.created_at is not None and job.created_at < since:
                return
            yield job

    async def refresh_many(
        self, job_kind: str, ids: Iterable[str], oldest: datetime | None = None, *, project_id: str | None = None
    ) -> dict[str, RemoteJob]:
        """Current state of many jobs of one project: one list request, then GETs for the rest."""
        wanted = set(ids)
        found: dict[str, RemoteJob] = {}
        if not wanted:
            return found
        if len(wanted) > 1:
            async for job in self.list(job_kind, project_id=project_id):
                if job.id in wanted:
                    found[job.id] = job
        semaphore = asyncio.Semaphore(REFRESH_CONCURRENCY)

        async def fetch(remote_id: str) -> None:
            async with semaphore:
                try:
                    found[remote_id] = await self.get(job_kind, remote_id, project_id=project_id)
                except NotFoundError:
                    found[remote_id] = RemoteJob(id=remote_id, job_kind=job_kind, status=GONE, project_id=project_id)

        # Listed summaries lack checkpoints like details do; `get` completes the ones it fetches.
        listed = [j for j in found.values() if j.status == SUCCEEDED]
        await asyncio.gather(*(fetch(i) for i in sorted(wanted - set(found))))

        async def complete(job: RemoteJob) -> None:
            async with semaphore:
                await self._with_checkpoint(job)

        await asyncio.gather(*(complete(j) for j in listed))
        return found

    async def logs(self, job_kind: str, remote_id: str, *, project_id: str | None = None) -> str:
        job = await self._get(job_kind, remote_id, project_id=project_id)
        lines = [f"status: {job.raw_status or job.status}"]
        if "progress" in job.metrics:
            lines.append(f"progress: {job.metrics['progress']}%")
        for point in job.extra.get("training_loss") or []:
            if isinstance(point, dict):
                when = epoch(point.get("timestamp"))
                stamp = to_rfc3339(when, timespec="seconds") if when else "?"
                lines.append(f"{stamp} loss={point.get('loss')}")
        return "\n".join(lines) + "\n"

    # `builtins.list`: inside this class, a bare `list` in an annotation names the `list` method above.
    async def checkpoints(self, remote_id: str, *, project_id: str | None = None) -> builtins.list[dict[str, Any]]:
        data = await self.http.request_json(
            "GET", f"{self._jobs(project_id, 'checkpoints')}/{remote_id}/checkpoints",
            what=f"list checkpoints of {remote_id}",
        )
        if not isinstance(data, list):
            raise ProtocolError(f"{self.name}: list checkpoints: expected a JSON array", provider=self.name)
        return [c for c in data if isinstance(c, dict)]

    async def upload(self, path: str, *, project_id: str | None = None) -> str:
        """Upload a dataset file (multipart `name` + `file`); return the new dataset's id."""
        file = Path(path)
        try:
            content = file.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {path} to upload it: {exc.strerror or exc}",
                             hint="check the $file path in the manifest") from None
        ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        data = await self.http.request_json(
            "POST",
            f"/v1/projects/{_project(project_id, 'dataset upload')}/datasets",
            data={"name": file.name},
            files={"file": (file.name, content, ctype)},
            idempotent=True,  # a repeated upload only leaves a spare dataset behind
            what=f"upload dataset {file.name}",
            timeout=UPLOAD_TIMEOUT,
            attempt_timeout=upload_seconds(len(content)),
        )
        dataset_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(dataset_id, str) or not dataset_id:
            raise ProtocolError(f"{self.name}: upload {file.name}: the answer has no dataset id", provider=self.name)
        return dataset_id

    async def create_project(self, name: str) -> dict[str, Any]:
        data = await self.http.request_json("POST", "/v1/projects", json={"name": name}, idempotent=False,
                                            what=f"create project {name}")
        return data if isinstance(data, dict) else {}

    async def list_projects(self) -> builtins.list[dict[str, Any]]:
        data = await self.http.request_json("GET", "/v1/projects", what="list projects")
        return [p for p in data if isinstance(p, dict)] if isinstance(data, list) else []


def build_client(ctx: ClientContext) -> EmissaryProvider:
    """The Emissary client: the adapter's endpoint (`EMISSARY_CLIENT_API_KEY` in `X-API-Key`,
    `EMISSARY_SERVER_URL` or `providers.emissary.base_url`); no rate limit unless jobrunner.yaml sets one.
    `base_url: local` (with EMISSARY_SERVER_URL unset) is the workspace's local platform, whose
    Emissary wire needs no key of ours: its own token is sent instead."""
    if ctx.targets_local_platform():
        return EmissaryProvider(platform_http(ctx), name=ctx.name)
    return EmissaryProvider(ctx.hosted_http(), name=ctx.name)


__all__ = ["EmissaryProvider", "STATUS_MAP", "build_client", "job_from_json"]
