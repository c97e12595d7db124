"""The Emissary routes (SDK 0.4.4) of the local platform: parse the request, call the service, render.

`EmissaryRoutes(service).routes()` is the route table `app.create_app` mounts in the Emissary
sub-app. They reproduce what the official `emissary-client-sdk` 0.4.4 expects, because the SDK
recognises success only by an exact status code:

- `X-API-Key: <platform token>` on every request; missing, empty or wrong -> 401
  `{"status": 401, "error": "Unauthorized"}`.
- creates -> 201, gets and lists -> 200 (lists are bare JSON arrays), deletes and cancels -> 204
  with an empty body; errors are `{"status", "error"}` (+ `"code": "object_not_found"` on 404).
- a `Content-Type: application/octet-stream` with an empty body is accepted everywhere (the SDK
  sends it on GET, DELETE, cancel and a body-less project create).

`GET /v1/models` is also a Replicate route (a paginated object there, a bare array here); the
app's gate tells the two apart by the credentials (`X-API-Key` and no `Authorization` header is
an Emissary request) and sends it to this sub-app. `jobrunner-ngram` is a completion model that
also serves `/embeddings` (its mean next-character distributions, `engines.ngram.embed`);
`/classification` answers 400.
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from jobrunner.local.db import Row
from jobrunner.local.drop import DropConnection
from jobrunner.local.emissary import catalog
from jobrunner.local.emissary import serializers as wire
from jobrunner.local.emissary.errors import EmissaryError, error_response, not_found
from jobrunner.local.emissary.service import EmissaryService
from jobrunner.local.emissary.store import new_id
from jobrunner.local.multipart import MultipartError, parse_multipart
from jobrunner.local.security import token_matches

Handler = Callable[[Request], Awaitable[Response]]

_COMPLETION_ONLY = (
    f"{catalog.BASE_MODEL} is a completion model: use /completions, /chat/completions or /embeddings"
)


def _base_url(request: Request) -> str:
    """Absolute URLs are built from the request's own host, like the Replicate routes do."""
    return str(request.base_url).rstrip("/")


async def _body(request: Request, *, required: bool = True) -> dict[str, Any]:
    return wire.parse_json_object(await request.body(), required=required)


class EmissaryRoutes:
    def __init__(self, service: EmissaryService) -> None:
        self.service = service
        self.store = service.store

    def routes(self) -> list[Route]:
        g = self._guard
        pj = "/v1/projects/{project_id}"
        tj = pj + "/training-jobs/{training_job_id}"
        ck = tj + "/checkpoints/{checkpoint:int}"
        dp = pj + "/deployments/{deployment_id}"
        return [
            Route("/v1/models", g(self.list_base_models), methods=["GET"]),
            Route("/v1/models/{name}", g(self.get_base_model), methods=["GET"]),
            Route("/v1/projects", g(self.create_project), methods=["POST"]),
            Route("/v1/projects", g(self.list_projects), methods=["GET"]),
            Route(pj, g(self.get_project), methods=["GET"]),
            Route(pj, g(self.delete_project), methods=["DELETE"]),
            Route(pj + "/datasets", g(self.create_dataset), methods=["POST"]),
            Route(pj + "/datasets", g(self.list_datasets), methods=["GET"]),
            Route(pj + "/datasets/{dataset_id}", g(self.get_dataset), methods=["GET"]),
            Route(pj + "/datasets/{dataset_id}", g(self.delete_dataset), methods=["DELETE"]),
            Route(pj + "/datasets/{dataset_id}/download", g(self.download_dataset), methods=["GET"]),
            Route(pj + "/training-jobs", g(self.create_training_job), methods=["POST"]),
            Route(pj + "/training-jobs", g(self.list_training_jobs), methods=["GET"]),
            Route(tj, g(self.get_training_job), methods=["GET"]),
            Route(tj, g(self.delete_training_job), methods=["DELETE"]),
            Route(tj + "/cancel", g(self.cancel_training_job), methods=["POST"]),
            Route(tj + "/checkpoints", g(self.list_checkpoints), methods=["GET"]),
            Route(ck + "/download", g(self.download_checkpoint), methods=["GET"]),
            Route(ck + "/test_results", g(self.checkpoint_test_results), methods=["GET"]),
            Route(pj + "/deployments", g(self.create_deployment), methods=["POST"]),
            Route(pj + "/deployments", g(self.list_deployments), methods=["GET"]),
            Route(dp, g(self.get_deployment), methods=["GET"]),
            Route(dp, g(self.delete_deployment), methods=["DELETE"]),
            Route(dp + "/cancel", g(self.cancel_deployment), methods=["POST"]),
            Route(dp + "/completions", g(self.completions), methods=["POST"]),
            Route(dp + "/chat/completions", g(self.chat_completions), methods=["POST"]),
            Route(dp + "/embeddings", g(self.embeddings), methods=["POST"]),
            Route(dp + "/classification", g(self.classification), methods=["POST"]),
        ]

    def _guard(self, handler: Handler) -> Handler:
        """Auth and error mapping around one endpoint."""

        async def endpoint(request: Request) -> Response:
            if not token_matches(request.headers.get("x-api-key"), self.service.platform.token):
                return error_response(401, "Unauthorized")
            try:
                return await handler(request)
            except EmissaryError as exc:
                return error_response(exc.status, exc.error)

        endpoint.__name__ = getattr(handler, "__name__", "endpoint")
        return endpoint

    # -- path lookups --

    def _project(self, request: Request) -> Row:
        return self.service.project(request.path_params["project_id"])

    def _job(self, request: Request) -> Row:
        return self.service.training_job(request.path_params["project_id"], request.path_params["training_job_id"])

    def _dataset(self, request: Request) -> Row:
        return self.service.dataset(request.path_params["project_id"], request.path_params["dataset_id"])

    def _checkpoint(self, request: Request) -> Row:
        p = request.path_params
        return self.service.checkpoint(p["project_id"], p["training_job_id"], p["checkpoint"])

    def _deployment(self, request: Request) -> Row:
        return self.service.deployment(request.path_params["project_id"], request.path_params["deployment_id"])

    # -- base models and projects --

    async def list_base_models(self, request: Request) -> Response:
        return JSONResponse(list(catalog.BASE_MODELS.values()))

    async def get_base_model(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in catalog.BASE_MODELS:
            raise not_found(f"base model {name}")
        return JSONResponse(catalog.BASE_MODELS[name])

    async def create_project(self, request: Request) -> Response:
        body = await _body(request, required=False)
        wire.opt_str(body, "name")
        return JSONResponse(wire.project_summary(self.store.create_project(body.get("name"))), status_code=201)

    async def list_projects(self, request: Request) -> Response:
        return JSONResponse([wire.project_summary(p) for p in self.store.list_projects()])

    async def get_project(self, request: Request) -> Response:
        p = self._project(request)
        pid = p["id"]
        return JSONResponse(
            {
                **wire.project_summary(p),
                "datasets": [wire.dataset_summary(d) for d in self.store.list_datasets(pid)],
                "training_jobs": [wire.training_summary(j) for j in self.store.list_training_jobs(pid)],
                "deployments": [wire.deployment_summary(d) for d in self.store.list_deployments(pid)],
            }
        )

    async def delete_project(self, request: Request) -> Response:
        self.service.delete_project(self._project(request))
        return Response(status_code=204)

    # -- datasets --

    async def create_dataset(self, request: Request) -> Response:
        p = self._project(request)
        ctype = request.headers.get("content-type", "")
        try:
            parts = parse_multipart(await request.body(), ctype)
        except MultipartError as exc:
            raise EmissaryError(400, f"{exc} (parts: name, file)") from None
        name_part, file_part = parts.get("name"), parts.get("file")
        if name_part is None and file_part is None:
            raise EmissaryError(400, "a dataset needs a `file` part (and optionally a `name` part)")
        row = self.store.create_dataset(
            p["id"],
            name_part.text() if name_part else None,
            file_part.filename if file_part else None,
            file_part.content_type if file_part else None,
            file_part.data if file_part else None,
        )
        return JSONResponse(wire.dataset_summary(row), status_code=201)

    async def list_datasets(self, request: Request) -> Response:
        p = self._project(request)
        return JSONResponse([wire.dataset_summary(d) for d in self.store.list_datasets(p["id"])])

    async def get_dataset(self, request: Request) -> Response:
        return JSONResponse(wire.dataset_detail(self._dataset(request), _base_url(request)))

    async def download_dataset(self, request: Request) -> Response:
        d = self._dataset(request)
        if not d["path"]:
            raise not_found(f"file of dataset {d['id']}")
        return FileResponse(d["path"], media_type=d["content_type"] or "application/octet-stream")

    async def delete_dataset(self, request: Request) -> Response:
        self.store.delete_dataset(self._dataset(request)["id"])
        return Response(status_code=204)

    # -- training jobs and checkpoints --

    async def create_training_job(self, request: Request) -> Response:
        p = self._project(request)
        body = await _body(request)
        wire.check_training_body(body)
        job = self.service.create_training_job(p, body)
        if self.service.platform.faults.should_drop_create():  # fault injection: committed, but no answer
            return DropConnection()
        return JSONResponse(wire.training_summary(job), status_code=201)

    async def list_training_jobs(self, request: Request) -> Response:
        p = self._project(request)
        jobs = self.store.list_training_jobs(p["id"])
        lagging = self.service.platform.faults.listed_before(time.time())
        if lagging is not None:  # fault injection: a list index that lags behind the jobs
            jobs = [j for j in jobs if j["created_at"] + 1 <= lagging]  # whole seconds: round up
        return JSONResponse([wire.training_summary(j) for j in jobs])

    async def get_training_job(self, request: Request) -> Response:
        j = self._job(request)
        train = self.store.get_dataset(j["project_id"], j["train_dataset_id"])
        test = self.store.get_dataset(j["project_id"], j["test_dataset_id"]) if j["test_dataset_id"] else None
        return JSONResponse(wire.training_detail(j, train, test))

    async def delete_training_job(self, request: Request) -> Response:
        self.service.delete_training_job(self._job(request))
        return Response(status_code=204)

    async def cancel_training_job(self, request: Request) -> Response:
        self.service.cancel_training(self._job(request))
        return Response(status_code=204)

    async def list_checkpoints(self, request: Request) -> Response:
        j = self._job(request)
        base = _base_url(request)
        checkpoints = self.store.list_checkpoints(j["id"])
        return JSONResponse([wire.checkpoint_wire(c, base, j["project_id"]) for c in checkpoints])

    async def download_checkpoint(self, request: Request) -> Response:
        return FileResponse(self._checkpoint(request)["path"], media_type="application/json")

    async def checkpoint_test_results(self, request: Request) -> Response:
        path = self._checkpoint(request)["path"].removesuffix(".json") + "-test_results.json"
        return FileResponse(path, media_type="application/json")

    # -- deployments and inference --

    async def create_deployment(self, request: Request) -> Response:
        p = self._project(request)
        body = await _body(request)
        wire.check_deployment_body(body)
        return JSONResponse(wire.deployment_summary(self.service.create_deployment(p, body)), status_code=201)

    async def list_deployments(self, request: Request) -> Response:
        p = self._project(request)
        return JSONResponse([wire.deployment_summary(d) for d in self.store.list_deployments(p["id"])])

    async def get_deployment(self, request: Request) -> Response:
        d = self._deployment(request)
        job = self.store.get_training_job(None, d["training_job_id"])
        return JSONResponse(wire.deployment_detail(d, job["base_model"] if job else None))

    async def delete_deployment(self, request: Request) -> Response:
        self.service.delete_deployment(self._deployment(request))
        return Response(status_code=204)

    async def cancel_deployment(self, request: Request) -> Response:
        self.service.cancel_deployment(self._deployment(request))
        return Response(status_code=204)

    async def completions(self, request: Request) -> Response:
        weights = self.service.serving_weights(self._deployment(request))
        body = await _body(request)
        if not isinstance(body.get("prompt"), str):
            raise EmissaryError(400, "prompt is required and must be a string")
        text = await self.service.generate(weights, body["prompt"], wire.generation_options(body))
        return JSONResponse({"id": new_id("completion"), "response": text})

    async def chat_completions(self, request: Request) -> Response:
        weights = self.service.serving_weights(self._deployment(request))
        body = await _body(request)
        prompt = wire.chat_prompt(body.get("messages"))
        text = await self.service.generate(weights, prompt, wire.generation_options(body))
        return JSONResponse({"id": new_id("chat-completion"), "response": text})

    async def embeddings(self, request: Request) -> Response:
        weights = self.service.serving_weights(self._deployment(request))
        body = await _body(request)
        source, target, measures = wire.embedding_request(body)
        text1, text2 = await self.service.embed(weights, source, target)
        return JSONResponse({"id": new_id("embedding"), "response": wire.embedding_response(text1, text2, measures)})

    async def classification(self, request: Request) -> Response:
        self.service.serving_weights(self._deployment(request))
        body = await _body(request)
        if not isinstance(body.get("source_sentence"), str):
            raise EmissaryError(400, "source_sentence is required and must be a string")
        raise EmissaryError(400, _COMPLETION_ONLY)
