"""Replicate deployments on the wire: create, get, update in place (PATCH), delete.

A deployment is a model version served on chosen hardware, scaled between `min_instances` and
`max_instances` (reference/replicate/openapi.json, `deployments.*`). It is named `owner/name`;
the owner is the token's account, so the create body carries only `name`. The answer is a
`schemas_deployment_response`: `owner`, `name` and a `current_release` holding the model, version
and `configuration` (hardware, instances). It has no status: a deployment the API answers for is
ready to take predictions (`POST /v1/deployments/{owner}/{name}/predictions`, sent by
`ReplicateProvider.create` for a request with `deployment`).

Errors are translated by `HttpClient` like every other call; a 404 on get is `NotFoundError`
(the caller records GONE), on delete it means the work is already done.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobrunner.errors import NotFoundError, ProtocolError, UsageError
from jobrunner.providers.base import SUCCEEDED, RemoteDeployment
from jobrunner.providers.http import HttpClient
from jobrunner.timestamps import parse_rfc3339

# deployments.create body (all required) and the part of it deployments.update (PATCH) takes.
CREATE_FIELDS = ("name", "model", "version", "hardware", "min_instances", "max_instances")
UPDATE_FIELDS = ("version", "hardware", "min_instances", "max_instances")


def deployment_path(deployment_id: str) -> str:
    """`/v1/deployments/{owner}/{name}` of an `owner/name` id; anything else is a usage error."""
    owner, sep, name = deployment_id.partition("/")
    if not sep or not owner or not name or "/" in name:
        raise UsageError(f"{deployment_id!r} is not an owner/name deployment")
    return f"/v1/deployments/{owner}/{name}"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def deployment_from_json(data: Any) -> RemoteDeployment:
    """A `schemas_deployment_response` as a RemoteDeployment (`id` = owner/name; `url` set by the client)."""
    if not isinstance(data, dict) or not isinstance(data.get("owner"), str) or not isinstance(data.get("name"), str):
        raise ProtocolError(f"expected a deployment object with owner and name, got {str(data)[:120]!r}")
    release = _mapping(data.get("current_release"))
    config = _mapping(release.get("configuration"))
    deployment_id = f"{data['owner']}/{data['name']}"
    model, version = release.get("model"), release.get("version")
    settings: dict[str, Any] = {k: config[k] for k in ("hardware", "min_instances", "max_instances") if k in config}
    if isinstance(model, str):
        settings["model"] = model
    if isinstance(version, str):
        settings["version"] = version
    return RemoteDeployment(
        id=deployment_id,
        name=deployment_id,
        status=SUCCEEDED,
        model=model if isinstance(model, str) else None,
        version=version if isinstance(version, str) else None,
        settings=settings,
        created_at=parse_rfc3339(release.get("created_at")),
    )


class ReplicateDeployments:
    """The deployment calls of the Replicate wire; mixed into `ReplicateProvider` (uses its `http`)."""

    http: HttpClient

    def _answer(self, data: Any) -> RemoteDeployment:
        found = deployment_from_json(data)
        found.url = self.http.url(deployment_path(found.id))
        return found

    async def create_deployment(self, body: Mapping[str, Any], *, project_id: str | None = None) -> RemoteDeployment:
        """POST /v1/deployments with every create field; never retried blindly (not idempotent)."""
        missing = [k for k in CREATE_FIELDS if body.get(k) is None]
        if missing:
            raise UsageError(f"a Replicate deployment needs {', '.join(missing)}")
        payload = {k: body[k] for k in CREATE_FIELDS}
        data = await self.http.request_json("POST", "/v1/deployments", json=payload, idempotent=False,
                                            what=f"create deployment {body['name']}")
        return self._answer(data)

    async def get_deployment(self, deployment_id: str, *, project_id: str | None = None) -> RemoteDeployment:
        data = await self.http.request_json("GET", deployment_path(deployment_id),
                                            what=f"get deployment {deployment_id}")
        found = self._answer(data)
        if found.id != deployment_id:
            raise ProtocolError(f"get deployment {deployment_id}: the answer is about {found.id!r}")
        return found

    async def list_deployments(self, *, project_id: str | None = None) -> list[RemoteDeployment]:
        """Every deployment of the account (following `next` pages): how a lost create is found."""
        found: list[RemoteDeployment] = []
        path: str | None = "/v1/deployments"
        seen: set[str] = set()
        while path and path not in seen:  # a server that repeats a `next` link is not followed round
            seen.add(path)
            data = await self.http.request_json("GET", path, what="list deployments")
            results = data.get("results") if isinstance(data, dict) else None
            if not isinstance(results, list):
                raise ProtocolError(f"list deployments: expected a page with results, got {str(data)[:120]!r}")
            found.extend(self._answer(item) for item in results)
            nxt = data.get("next")
            path = nxt if isinstance(nxt, str) and nxt else None
        return found

    async def update_deployment(self, deployment_id: str, changes: Mapping[str, Any], *,
                                project_id: str | None = None) -> RemoteDeployment:
        """PATCH the fields that changed. Setting absolute values twice gives the same result, so
        unlike a create this may be retried after an ambiguous failure."""
        payload = {k: v for k, v in changes.items() if k in UPDATE_FIELDS}
        unknown = sorted(set(changes) - set(UPDATE_FIELDS))
        if unknown:
            raise UsageError(f"Replicate cannot change {', '.join(unknown)} of deployment {deployment_id} in place")
        data = await self.http.request_json("PATCH", deployment_path(deployment_id), json=payload, idempotent=True,
                                            what=f"update deployment {deployment_id}")
        return self._answer(data)

    async def delete_deployment(self, deployment_id: str, *, project_id: str | None = None) -> None:
        """DELETE (204). A deployment already gone counts as deleted."""
        try:
            await self.http.request("DELETE", deployment_path(deployment_id), idempotent=True,
                                    what=f"delete deployment {deployment_id}")
        except NotFoundError:
            return


__all__ = ["CREATE_FIELDS", "UPDATE_FIELDS", "ReplicateDeployments", "deployment_from_json", "deployment_path"]
