"""The Replicate v1 routes of the local platform: parse the request, call the service, render.

`ReplicateRoutes(service).routes()` is the route table `app.create_app` mounts. Handlers stay thin:
request fields are checked by `serializers`, state changes go through `service`, rows are read
from `service.store`. Errors are raised as `errors.ApiError` (problem+json).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jobrunner.local.clock import parse_rfc3339, rfc3339
from jobrunner.local.db import Row
from jobrunner.local.drop import DropConnection
from jobrunner.local.multipart import MultipartError, parse_multipart
from jobrunner.local.replicate import catalog
from jobrunner.local.replicate import serializers as wire
from jobrunner.local.replicate.errors import ApiError, invalid_fields, not_found
from jobrunner.local.replicate.service import TERMINAL, InputError, ReplicateService


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def json_body(request: Request) -> dict[str, Any]:
    return wire.parse_json_body(await request.body())


def paginate(
    request: Request, fetch: Callable[..., list[Row]], size: int, render: Callable[[Row], Any]
) -> dict[str, Any]:
    """A page `{next, previous, results}` over rows ordered by `seq`, newest first."""
    cursor = request.query_params.get("cursor")
    before, after = wire.decode_cursor(cursor) if cursor else (None, None)
    rows = fetch(before_seq=before, after_seq=after, limit=size + 1)
    url = request.url
    return wire.page(rows, size, cursor, after, lambda c: str(url.include_query_params(cursor=c)), render)


def _time_filter(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        return rfc3339(parse_rfc3339(value))
    except ValueError:
        raise ApiError(400, f"Query parameter {name!r} must be an RFC 3339 date-time, got {value!r}.") from None


class ReplicateRoutes:
    def __init__(self, service: ReplicateService) -> None:
        self.service = service
        self.p = service.p
        self.store = service.store

    def routes(self) -> list[Route]:
        r = Route
        return [
            r("/v1/predictions", self.create_prediction, methods=["POST"]),
            r("/v1/predictions", self.list_predictions, methods=["GET"]),
            r("/v1/predictions/{id}", self.get_prediction, methods=["GET"]),
            r("/v1/predictions/{id}/cancel", self.cancel_prediction, methods=["POST"]),
            r("/v1/models/{owner}/{name}/predictions", self.create_model_prediction, methods=["POST"]),
            r("/v1/models/{owner}/{name}/versions/{version_id}/trainings", self.create_training, methods=["POST"]),
            r("/v1/trainings", self.list_trainings, methods=["GET"]),
            r("/v1/trainings/{id}", self.get_training, methods=["GET"]),
            r("/v1/trainings/{id}/cancel", self.cancel_training, methods=["POST"]),
            r("/v1/models", self.list_models, methods=["GET"]),
            r("/v1/models", self.create_model, methods=["POST"]),
            r("/v1/models/{owner}/{name}", self.get_model, methods=["GET"]),
            r("/v1/models/{owner}/{name}", self.delete_model, methods=["DELETE"]),
            r("/v1/models/{owner}/{name}/versions", self.list_versions, methods=["GET"]),
            r("/v1/models/{owner}/{name}/versions/{version_id}", self.get_version, methods=["GET"]),
            r("/v1/models/{owner}/{name}/versions/{version_id}", self.delete_version, methods=["DELETE"]),
            r("/v1/deployments", self.list_deployments, methods=["GET"]),
            r("/v1/deployments", self.create_deployment, methods=["POST"]),
            r("/v1/deployments/{owner}/{name}", self.get_deployment, methods=["GET"]),
            r("/v1/deployments/{owner}/{name}", self.update_deployment, methods=["PATCH"]),
            r("/v1/deployments/{owner}/{name}", self.delete_deployment, methods=["DELETE"]),
            r("/v1/deployments/{owner}/{name}/predictions", self.create_deployment_prediction, methods=["POST"]),
            r("/v1/files", self.create_file, methods=["POST"]),
            r("/v1/files", self.list_files, methods=["GET"]),
            r("/v1/files/{id}", self.get_file, methods=["GET"]),
            r("/v1/files/{id}", self.delete_file, methods=["DELETE"]),
            r("/v1/files/{id}/download", self.download_file, methods=["GET"]),
            r("/v1/account", self.account, methods=["GET"]),
            r("/v1/hardware", self.hardware, methods=["GET"]),
            r("/v1/webhooks/default/secret", self.webhook_secret, methods=["GET"]),
        ]

    # --- job creation ----------------------------------------------------------------------

    async def _start_job(
        self, request: Request, *, kind: wire.JobKind, version: Row, body: dict[str, Any],
        destination: str | None = None, deployment: str | None = None,
    ) -> Response:
        schema_name = "TrainingInput" if kind == "training" else "Input"
        input = self.service.validate_input(version, schema_name, body.get("input"))
        cancel_after = wire.cancel_after(request.headers.get("cancel-after"), self.p.options.min_cancel_after)
        base = base_url(request)
        try:
            job = self.service.create(
                kind=kind, version=version, input=input, base_url=base, destination=destination,
                webhook=body.get("webhook"), webhook_events_filter=body.get("webhook_events_filter"),
                cancel_after=cancel_after, deployment=deployment,
            )
        except InputError as exc:
            raise invalid_fields([("invalid", exc.field, str(exc))]) from None
        if self.p.faults.should_drop_create():
            return DropConnection()
        headers: dict[str, str] = {}
        prefer = (
            wire.prefer_wait(request.headers.get("prefer"), self.p.options.max_wait) if kind == "prediction" else None
        )
        if prefer is not None:
            await self.service.wait(job["id"], prefer[0])
            headers["Preference-Applied"] = prefer[1]
            job = self.service.get(job["id"]) or job
            if job["status"] not in TERMINAL:
                # Replicate answers a wait that ran out with the job still `starting`, even when
                # it is processing; the official Python client's run() relies on that to keep
                # polling (anything else it takes as finished).
                job = {**job, "status": "starting", "started_at": None}
        else:
            job = {**job, "status": "starting", "started_at": None, "completed_at": None}
        return JSONResponse(wire.render_job(job, base), status_code=201, headers=headers)

    async def create_prediction(self, request: Request) -> Response:
        body = await json_body(request)
        wire.check_top_level(body, wire.PREDICTION_FIELDS, ("version", "input"))
        version = self.service.resolve_version(body["version"])
        return await self._start_job(request, kind="prediction", version=version, body=body)

    async def create_model_prediction(self, request: Request) -> Response:
        owner, name = request.path_params["owner"], request.path_params["name"]
        model = self.store.get_model(owner, name)
        latest = self.store.latest_version(owner, name) if model else None
        if model is None or latest is None or not model["is_official"]:
            raise not_found()
        body = await json_body(request)
        wire.check_top_level(body, wire.PREDICTION_FIELDS - {"version"}, ("input",))
        return await self._start_job(request, kind="prediction", version=latest, body=body)

    async def create_deployment_prediction(self, request: Request) -> Response:
        """Runs the deployment's current release version, like a prediction on that version."""
        deployment = self._deployment(request)
        version = self.store.get_version(deployment["version"])
        if version is None:  # cannot happen while version deletes refuse deployed versions
            raise not_found()
        body = await json_body(request)
        wire.check_top_level(body, wire.PREDICTION_FIELDS - {"version"}, ("input",))
        name = f"{deployment['owner']}/{deployment['name']}"
        return await self._start_job(request, kind="prediction", version=version, body=body, deployment=name)

    async def create_training(self, request: Request) -> Response:
        owner, name = request.path_params["owner"], request.path_params["name"]
        version = self.store.get_version(request.path_params["version_id"])
        if version is None or (version["owner"], version["name"]) != (owner, name):
            raise not_found()
        body = await json_body(request)
        wire.check_top_level(body, wire.TRAINING_FIELDS, ("destination", "input"))
        destination = body["destination"]
        dest_owner, _, dest_name = destination.partition("/") if isinstance(destination, str) else ("", "", "")
        if not dest_owner or not dest_name or self.store.get_model(dest_owner, dest_name) is None:
            raise ApiError(404, "The specified training destination does not exist")
        return await self._start_job(request, kind="training", version=version, body=body, destination=destination)

    # --- jobs: get, list, cancel -------------------------------------------------------------

    def _job(self, request: Request, kind: wire.JobKind | None) -> Row:
        job = self.service.get(request.path_params["id"])
        if job is None or (kind is not None and job["kind"] != kind):
            raise not_found()
        return job

    async def get_prediction(self, request: Request) -> Response:
        return JSONResponse(wire.render_job(self._job(request, None), base_url(request)))

    async def get_training(self, request: Request) -> Response:
        return JSONResponse(wire.render_job(self._job(request, "training"), base_url(request)))

    async def _cancel(self, request: Request, kind: wire.JobKind | None) -> Response:
        job = self._job(request, kind)
        self.service.cancel(job["id"])
        return JSONResponse(wire.render_job(self.service.get(job["id"]) or job, base_url(request)))

    async def cancel_prediction(self, request: Request) -> Response:
        return await self._cancel(request, None)

    async def cancel_training(self, request: Request) -> Response:
        return await self._cancel(request, "training")

    def _list_jobs(self, request: Request, kind: wire.JobKind) -> Response:
        after, before = _time_filter(request, "created_after"), _time_filter(request, "created_before")
        base = base_url(request)
        lagging = self.p.faults.listed_before(self.p.clock.now().timestamp())
        if lagging is not None:  # fault injection: a list index that lags behind the jobs
            hidden = rfc3339(datetime.fromtimestamp(lagging, tz=UTC))
            before = hidden if before is None or (hidden or "") < before else before

        def fetch(**kw: Any) -> list[Row]:
            return self.store.list_jobs(kind, created_after=after, created_before=before, **kw)

        return JSONResponse(paginate(request, fetch, self.p.options.page_size, lambda j: wire.render_job(j, base)))

    async def list_predictions(self, request: Request) -> Response:
        return self._list_jobs(request, "prediction")

    async def list_trainings(self, request: Request) -> Response:
        return self._list_jobs(request, "training")

    # --- models and versions ------------------------------------------------------------------

    def _model(self, request: Request) -> Row:
        model = self.store.get_model(request.path_params["owner"], request.path_params["name"])
        if model is None:
            raise not_found()
        return model

    async def list_models(self, request: Request) -> Response:
        base = base_url(request)
        store = self.store
        return JSONResponse(
            paginate(
                request, store.list_models, self.p.options.page_size,
                lambda m: wire.render_model(
                    m, store.latest_version(m["owner"], m["name"]), base, store.count_runs(m["owner"], m["name"])
                ),
            )
        )

    async def get_model(self, request: Request) -> Response:
        model = self._model(request)
        latest = self.store.latest_version(model["owner"], model["name"])
        runs = self.store.count_runs(model["owner"], model["name"])
        return JSONResponse(wire.render_model(model, latest, base_url(request), runs))

    async def create_model(self, request: Request) -> Response:
        body = await json_body(request)
        wire.check_model_body(body)
        if body["owner"] != catalog.ACCOUNT:
            raise ApiError(403, f"You can only create models under your own account ({catalog.ACCOUNT}).")
        if self.store.get_model(body["owner"], body["name"]) is not None:
            raise ApiError(409, f"A model named {body['owner']}/{body['name']} already exists.")
        row = {k: body.get(k) for k in wire.MODEL_FIELDS}
        row.update(is_official=0, created_at=rfc3339(self.p.clock.now()))
        self.store.insert_model(row)
        model = self.store.get_model(body["owner"], body["name"])
        assert model is not None  # just inserted, by this (the only) writer
        return JSONResponse(wire.render_model(model, None, base_url(request)), status_code=201)

    async def delete_model(self, request: Request) -> Response:
        model = self._model(request)
        if model["is_official"] or model["owner"] != catalog.ACCOUNT:
            raise ApiError(403, "You can only delete your own models.")
        if self.store.latest_version(model["owner"], model["name"]) is not None:
            raise ApiError(409, "A model with versions cannot be deleted; delete its versions first.")
        self.store.delete_model(model["owner"], model["name"])
        return Response(status_code=204)

    async def list_versions(self, request: Request) -> Response:
        model = self._model(request)

        def fetch(**kw: Any) -> list[Row]:
            return self.store.list_versions(model["owner"], model["name"], **kw)

        return JSONResponse(paginate(request, fetch, self.p.options.page_size, wire.render_version))

    async def get_version(self, request: Request) -> Response:
        model = self._model(request)
        version = self.store.get_version(request.path_params["version_id"])
        if version is None or (version["owner"], version["name"]) != (model["owner"], model["name"]):
            raise not_found()
        return JSONResponse(wire.render_version(version))

    async def delete_version(self, request: Request) -> Response:
        model = self._model(request)
        version = self.store.get_version(request.path_params["version_id"])
        if version is None or (version["owner"], version["name"]) != (model["owner"], model["name"]):
            raise not_found()
        if model["is_official"] or model["owner"] != catalog.ACCOUNT:
            raise ApiError(403, "You can only delete versions of your own models.")
        if model["visibility"] != "private":
            raise ApiError(403, "You can only delete versions of private models.")
        self.service.delete_version(version)
        return Response(status_code=202)

    # --- deployments ----------------------------------------------------------------------------

    def _deployment(self, request: Request) -> Row:
        deployment = self.store.get_deployment(request.path_params["owner"], request.path_params["name"])
        if deployment is None:
            raise not_found()
        return deployment

    async def list_deployments(self, request: Request) -> Response:
        return JSONResponse(
            paginate(request, self.store.list_deployments, self.p.options.page_size, wire.render_deployment)
        )

    async def create_deployment(self, request: Request) -> Response:
        body = await json_body(request)
        wire.check_deployment_body(body, update=False)
        # Replicate answers a create with 200 (not 201), as its reference documents.
        return JSONResponse(wire.render_deployment(self.service.create_deployment(body)))

    async def get_deployment(self, request: Request) -> Response:
        return JSONResponse(wire.render_deployment(self._deployment(request)))

    async def update_deployment(self, request: Request) -> Response:
        deployment = self._deployment(request)
        body = await json_body(request)
        wire.check_deployment_body(body, update=True)
        return JSONResponse(wire.render_deployment(self.service.update_deployment(deployment, body)))

    async def delete_deployment(self, request: Request) -> Response:
        deployment = self._deployment(request)
        self.store.delete_deployment(deployment["owner"], deployment["name"])
        return Response(status_code=204)

    # --- files ----------------------------------------------------------------------------------

    async def create_file(self, request: Request) -> Response:
        raw = await request.body()
        try:
            parts = parse_multipart(raw, request.headers.get("content-type", ""))
        except MultipartError as exc:
            raise ApiError(400, f"Invalid upload: {exc}") from None
        content = parts.get("content")
        if content is None:
            raise invalid_fields([("required", "content", "content is required (the file)")])
        metadata: dict[str, Any] = {}
        if "metadata" in parts and parts["metadata"].data.strip():
            try:
                metadata = json.loads(parts["metadata"].text())
            except json.JSONDecodeError:
                raise invalid_fields([("type", "metadata", "metadata must be a JSON object")]) from None
            if not isinstance(metadata, dict):
                raise invalid_fields([("type", "metadata", "metadata must be a JSON object")])
        name = parts["filename"].text() if "filename" in parts else (content.filename or "file")
        ctype = parts["type"].text() if "type" in parts else (content.content_type or "application/octet-stream")
        file = self.service.store_file(content.data, name=name, content_type=ctype, metadata=metadata)
        return JSONResponse(wire.render_file(file, base_url(request)), status_code=201)

    async def list_files(self, request: Request) -> Response:
        base = base_url(request)
        return JSONResponse(
            paginate(request, self.store.list_files, self.p.options.page_size, lambda f: wire.render_file(f, base))
        )

    def _file(self, request: Request) -> Row:
        file = self.store.get_file(request.path_params["id"])
        if file is None:
            raise ApiError(404, "File not found")
        return file

    async def get_file(self, request: Request) -> Response:
        return JSONResponse(wire.render_file(self._file(request), base_url(request)))

    async def delete_file(self, request: Request) -> Response:
        file = self._file(request)
        if file["purpose"] != "upload":
            raise ApiError(409, "This file holds a model version's weights and cannot be deleted.")
        self.service.delete_file(file)
        return Response(status_code=204)

    async def download_file(self, request: Request) -> Response:
        file = self._file(request)
        try:
            data = self.service.file_path(file).read_bytes()
        except FileNotFoundError:
            raise ApiError(404, "File not found") from None
        return Response(data, media_type=file["content_type"])

    # --- account and secrets --------------------------------------------------------------------

    async def account(self, request: Request) -> Response:
        return JSONResponse(wire.ACCOUNT)

    async def hardware(self, request: Request) -> Response:
        return JSONResponse(wire.HARDWARE)

    async def webhook_secret(self, request: Request) -> Response:
        return JSONResponse({"key": self.p.webhook_secret})
