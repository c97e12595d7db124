"""Emissary deployments on the wire: create, get, list, delete, and inference against one.

A deployment serves one checkpoint of a training job inside a project
(reference/emissary/api.md §4.5–4.6, fixtures/deployment_and_inference.json). Create answers 201
with a `DeploymentSummary` (`id`, `name`, `status`, `created_at`); get answers a
`DeploymentDetail`, which names the training job `training_id` (not `training_job_id` as the
create body does). Statuses `Pending -> Deploying -> Deployed`, or `Failed | TimedOut |
Cancelled`. There is no update endpoint: a change replaces the deployment.

Inference is synchronous: `chat/completions`, `completions` and `embeddings` answer 200 with
`{id, response}` (a string, or an object for embeddings). Errors are translated by `HttpClient`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from jobrunner.errors import NotFoundError, ProtocolError, UsageError
from jobrunner.providers.base import (
    CANCELED,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    UNKNOWN,
    CreateRequest,
    RemoteDeployment,
    RemoteJob,
)
from jobrunner.providers.http import HttpClient
from jobrunner.providers.ratelimit import CREATE
from jobrunner.resources import JOB_PREDICTION
from jobrunner.timestamps import from_epoch

STATUS_MAP = {
    "Pending": PENDING,
    "Deploying": RUNNING,
    "Deployed": SUCCEEDED,
    "Failed": FAILED,
    "TimedOut": FAILED,
    "Cancelled": CANCELED,
}
# CreateDeploymentRequestBody (operation createDeployment).
CREATE_FIELDS = ("training_job_id", "checkpoint", "server_type", "name", "description")

# What a batch row may be sent to, as manifests name it -> the path under the deployment.
Endpoint = Literal["chat.completions", "completions", "embeddings"]
ENDPOINTS: tuple[str, ...] = get_args(Endpoint)
_PATHS = {"chat.completions": "chat/completions", "completions": "completions", "embeddings": "embeddings"}


def _segment(value: str | None, what: str) -> str:
    if not value or "/" in value:
        raise UsageError(f"emissary: invalid {what} {value!r}")
    return value


def deployment_from_json(data: Any, project_id: str) -> RemoteDeployment:
    """A DeploymentSummary or DeploymentDetail as a RemoteDeployment (`url` set by the client)."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise ProtocolError(f"expected a deployment object with an id, got {str(data)[:120]!r}")
    raw = data.get("status")
    settings: dict[str, Any] = {"project_id": project_id}
    if isinstance(data.get("training_id"), str):
        settings["training_job_id"] = data["training_id"]
    if isinstance(data.get("checkpoint"), int):
        settings["checkpoint"] = data["checkpoint"]
    return RemoteDeployment(
        id=data["id"],
        name=str(data["name"]) if isinstance(data.get("name"), str) else str(data["id"]),
        status=STATUS_MAP.get(raw, UNKNOWN) if isinstance(raw, str) else UNKNOWN,
        raw_status=raw if isinstance(raw, str) else None,
        model=data.get("base_model") if isinstance(data.get("base_model"), str) else None,
        project_id=project_id,
        settings=settings,
        created_at=from_epoch(data.get("created_at")),
    )


def inference_job(answer: Mapping[str, Any], req: CreateRequest) -> RemoteJob:
    """One answered inference request as a succeeded prediction: its `response` is the output."""
    if not isinstance(answer.get("id"), str) or not answer["id"]:
        raise ProtocolError(f"{req.endpoint} on deployment {req.deployment}: the answer has no id")
    return RemoteJob(id=answer["id"], job_kind=JOB_PREDICTION, status=SUCCEEDED, raw_status="200",
                     input=dict(req.body), output=answer.get("response"), project_id=req.project_id,
                     extra={"deployment": req.deployment, "endpoint": req.endpoint})


class EmissaryDeployments:
    """The deployment calls of the Emissary wire; mixed into `EmissaryProvider` (uses its `http`)."""

    http: HttpClient

    def _deployments(self, project_id: str | None) -> str:
        return f"/v1/projects/{_segment(project_id, 'project_id')}/deployments"

    def _answer(self, data: Any, project_id: str) -> RemoteDeployment:
        found = deployment_from_json(data, project_id)
        found.url = self.http.url(f"{self._deployments(project_id)}/{found.id}")
        return found

    async def create_deployment(self, body: Mapping[str, Any], *, project_id: str | None = None) -> RemoteDeployment:
        """POST a CreateDeploymentRequestBody (201 DeploymentSummary); never retried blindly."""
        if not body.get("training_job_id") or body.get("checkpoint") is None:
            raise UsageError("an Emissary deployment needs training_job_id and checkpoint")
        payload = {k: body[k] for k in CREATE_FIELDS if body.get(k) is not None}
        what = f"create deployment {payload.get('name', '')}".strip()
        data = await self.http.request_json("POST", self._deployments(project_id), json=payload, idempotent=False,
                                            request_class=CREATE, what=what)
        return self._answer(data, str(project_id))

    async def get_deployment(self, deployment_id: str, *, project_id: str | None = None) -> RemoteDeployment:
        path = f"{self._deployments(project_id)}/{_segment(deployment_id, 'deployment id')}"
        found = self._answer(await self.http.request_json("GET", path, what=f"get deployment {deployment_id}"),
                             str(project_id))
        if found.id != deployment_id:
            raise ProtocolError(f"get deployment {deployment_id}: the answer is about {found.id!r}")
        return found

    async def list_deployments(self, *, project_id: str | None = None) -> list[RemoteDeployment]:
        """Every deployment of the project (a bare array, no pagination): how a lost create is found."""
        data = await self.http.request_json("GET", self._deployments(project_id), what="list deployments")
        if not isinstance(data, list):
            raise ProtocolError(f"list deployments: expected an array, got {str(data)[:120]!r}")
        return [self._answer(item, str(project_id)) for item in data]

    async def delete_deployment(self, deployment_id: str, *, project_id: str | None = None) -> None:
        """DELETE (204). A deployment already gone counts as deleted."""
        path = f"{self._deployments(project_id)}/{_segment(deployment_id, 'deployment id')}"
        try:
            await self.http.request("DELETE", path, idempotent=True, what=f"delete deployment {deployment_id}")
        except NotFoundError:
            return

    async def create_inference(self, req: CreateRequest) -> RemoteJob:
        """A batch row on a deployment: one inference request, finished when it answers."""
        answer = await self.infer(req.deployment or "", req.endpoint or "", req.body, project_id=req.project_id)
        return inference_job(answer, req)

    async def infer(self, deployment_id: str, endpoint: str, body: Mapping[str, Any], *,
                    project_id: str | None = None) -> dict[str, Any]:
        """One inference request (200 `{id, response}`). Not retried blindly: a repeat may be billed."""
        if endpoint not in _PATHS:
            raise UsageError(f"emissary: unknown deployment endpoint {endpoint!r}",
                             hint=f"one of {', '.join(ENDPOINTS)}")
        path = f"{self._deployments(project_id)}/{_segment(deployment_id, 'deployment id')}/{_PATHS[endpoint]}"
        data = await self.http.request_json("POST", path, json=dict(body), idempotent=False, request_class=CREATE,
                                            what=f"{endpoint} on deployment {deployment_id}")
        if not isinstance(data, dict) or "response" not in data:
            raise ProtocolError(f"{endpoint} on deployment {deployment_id}: expected {{id, response}}, "
                                f"got {str(data)[:120]!r}")
        return data


__all__ = ["CREATE_FIELDS", "ENDPOINTS", "STATUS_MAP", "EmissaryDeployments", "Endpoint", "deployment_from_json",
           "inference_job"]
