"""The Replicate v1 wire format of the local platform: routes, request checks and serializers.

Field names, status values, error bodies and headers follow the Replicate reference (and what the
official `replicate` 1.0.7 client accepts: `cog_version` is always a string, `urls` never hold
nulls). `urls` and pagination links are absolute and built from the request's own host. Lists are
newest first, 100 a page, with an opaque `cursor`.
"""
from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from jsonschema import Draft7Validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jobrunner.local.clock import parse_rfc3339, rfc3339
from jobrunner.local.db import Row
from jobrunner.local.jobs import TERMINAL, InputError, parse_duration
from jobrunner.local.models import catalog
from jobrunner.local.multipart import MultipartError, parse_multipart
from jobrunner.local.problems import ApiError, DropConnection, invalid_fields, not_found

if TYPE_CHECKING:
    from jobrunner.local.platform import Platform

HEX64 = re.compile(r"^[0-9a-f]{64}$")
MODEL_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,98}[a-z0-9])?$")
PREFER = re.compile(r"^\s*wait(?:=(\d+))?\s*$")
WEBHOOK_EVENTS = ("start", "output", "logs", "completed")
PREDICTION_FIELDS = {"version", "input", "webhook", "webhook_events_filter", "stream", "webhook_completed"}
HARDWARE = [
    {"sku": "cpu", "name": "CPU"},
    {"sku": "gpu-t4", "name": "Nvidia T4 GPU"},
    {"sku": "gpu-l40s", "name": "Nvidia L40S GPU"},
    {"sku": "gpu-a100-large", "name": "Nvidia A100 (80GB) GPU"},
]
ACCOUNT = {"type": "user", "username": catalog.ACCOUNT, "name": "Local user", "github_url": None, "avatar_url": None}


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


# --- serializers ---------------------------------------------------------------------------------


def render_job(job: Row, base: str) -> dict[str, Any]:
    collection = "trainings" if job["kind"] == "training" else "predictions"
    get = f"{base}/v1/{collection}/{job['id']}"
    out: dict[str, Any] = {
        "id": job["id"],
        "model": job["model"],
        "version": job["version"],
        "input": job["input"],
        "logs": job["logs"],
        "output": job["output"],
        "data_removed": False,
        "error": job["error"],
        "status": job["status"],
        "created_at": job["created_at"],
        "started_at": job["started_at"],
        "completed_at": job["completed_at"],
        "source": job["source"],
        "metrics": job["metrics"] or {},
        "urls": {"get": get, "cancel": f"{get}/cancel", "web": get},
    }
    if job["kind"] == "training":
        out["destination"] = job["destination"]
        output = job["output"]
        stored_base = job.get("base_url") or ""
        if isinstance(output, dict) and isinstance(output.get("weights"), str) and stored_base != base:
            # The weights URL was made under the host the training was created through; the
            # platform may since answer on another port (auto-start picks a free one).
            if output["weights"].startswith(stored_base + "/v1/files/"):
                out["output"] = {**output, "weights": base + output["weights"][len(stored_base):]}
    if job["deadline"]:
        out["deadline"] = job["deadline"]
    return out


def render_version(version: Row) -> dict[str, Any]:
    return {
        "id": version["id"],
        "created_at": version["created_at"],
        "cog_version": version["cog_version"],
        "openapi_schema": version["openapi_schema"],
    }


def render_model(model: Row, latest: Row | None, base: str, run_count: int = 0) -> dict[str, Any]:
    return {
        "url": f"{base}/v1/models/{model['owner']}/{model['name']}",
        "owner": model["owner"],
        "name": model["name"],
        "description": model["description"],
        "visibility": model["visibility"],
        "github_url": model["github_url"],
        "paper_url": model["paper_url"],
        "license_url": model["license_url"],
        "run_count": run_count,
        "cover_image_url": model["cover_image_url"],
        "default_example": None,
        "latest_version": render_version(latest) if latest else None,
        "is_official": bool(model["is_official"]),
        "hardware": model["hardware"],
    }


def render_file(file: Row, base: str) -> dict[str, Any]:
    return {
        "id": file["id"],
        "name": file["name"],
        "content_type": file["content_type"],
        "size": file["size"],
        "etag": file["sha256"][:32],
        "checksums": {"sha256": file["sha256"]},
        "metadata": file["metadata"],
        "created_at": file["created_at"],
        "expires_at": None,
        "urls": {"get": f"{base}/v1/files/{file['id']}"},
    }


# --- request helpers -------------------------------------------------------------------------------


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(422, "The request body must be a JSON object.", title="Input validation failed")
    return body


def _encode_cursor(**value: int) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(text: str) -> tuple[int | None, int | None]:
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        before, after = value.get("b"), value.get("a")
        if not (isinstance(before, int) or isinstance(after, int)):
            raise ValueError
        return before, after
    except (ValueError, TypeError, AttributeError, json.JSONDecodeError):
        raise ApiError(400, "Invalid cursor.") from None


def paginate(
    request: Request, fetch: Callable[..., list[Row]], size: int, render: Callable[[Row], Any]
) -> dict[str, Any]:
    """A Replicate page `{next, previous, results}` over rows ordered by `seq`, newest first."""
    cursor = request.query_params.get("cursor")
    before, after = _decode_cursor(cursor) if cursor else (None, None)
    rows = fetch(before_seq=before, after_seq=after, limit=size + 1)
    more = len(rows) > size
    if after is None:
        rows = rows[:size]
        next_seq = rows[-1]["seq"] if more and rows else None
        prev_seq = rows[0]["seq"] if cursor and rows else None
    else:
        rows = rows[1:] if more else rows
        prev_seq = rows[0]["seq"] if more and rows else None
        next_seq = rows[-1]["seq"] if rows else None
    url = request.url
    return {
        "next": str(url.include_query_params(cursor=_encode_cursor(b=next_seq))) if next_seq is not None else None,
        "previous": str(url.include_query_params(cursor=_encode_cursor(a=prev_seq))) if prev_seq is not None else None,
        "results": [render(r) for r in rows],
    }


def _time_filter(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        return rfc3339(parse_rfc3339(value))
    except ValueError:
        raise ApiError(400, f"Query parameter {name!r} must be an RFC 3339 date-time, got {value!r}.") from None


# --- the routes --------------------------------------------------------------------------------------


class ReplicateAPI:
    def __init__(self, platform: "Platform") -> None:
        self.p = platform
        self._validators: dict[tuple[str, str], Draft7Validator] = {}

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
            r("/v1/files", self.create_file, methods=["POST"]),
            r("/v1/files", self.list_files, methods=["GET"]),
            r("/v1/files/{id}", self.get_file, methods=["GET"]),
            r("/v1/files/{id}", self.delete_file, methods=["DELETE"]),
            r("/v1/files/{id}/download", self.download_file, methods=["GET"]),
            r("/v1/account", self.account, methods=["GET"]),
            r("/v1/hardware", self.hardware, methods=["GET"]),
            r("/v1/webhooks/default/secret", self.webhook_secret, methods=["GET"]),
        ]

    # --- seeding ---------------------------------------------------------------------------

    def seed_builtins(self) -> None:
        """Create the built-in models and their fixed versions on first start (idempotent)."""
        db = self.p.db
        now = rfc3339(self.p.clock.now())
        for model in catalog.BUILTINS:
            if db.get_model(catalog.OWNER, model.name) is None:
                db.insert_model(
                    {
                        "owner": catalog.OWNER, "name": model.name, "description": model.description,
                        "visibility": "public", "hardware": "cpu", "is_official": 1, "created_at": now,
                    }
                )
            if db.get_version(model.version) is None:
                db.insert_version(
                    {
                        "id": model.version, "owner": catalog.OWNER, "name": model.name, "engine": model.engine,
                        "weights_file": None, "openapi_schema": model.openapi_schema,
                        "cog_version": catalog.COG_VERSION, "created_at": now,
                    }
                )

    # --- job creation ----------------------------------------------------------------------

    def _resolve_version(self, ref: Any) -> Row:
        bad = ApiError(
            422,
            "The specified version does not exist (or perhaps you don't have permission to use it?)",
            title="Invalid version or not permitted",
        )
        if not isinstance(ref, str) or not ref:
            raise bad
        owner_name, _, vid = ref.rpartition(":") if ":" in ref else ("", "", ref)
        if HEX64.match(vid):
            version = self.p.db.get_version(vid)
            if version is None or (owner_name and owner_name != f"{version['owner']}/{version['name']}"):
                raise bad
            return version
        if "/" in ref and ":" not in ref:  # owner/name: official models only
            owner, name = ref.split("/", 1)
            model = self.p.db.get_model(owner, name)
            latest = self.p.db.latest_version(owner, name) if model and model["is_official"] else None
            if latest is not None:
                return latest
        raise bad

    def _validate_input(self, version: Row, schema_name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise invalid_fields([("type", "input", "input must be an object")])
        key = (version["id"], schema_name)
        validator = self._validators.get(key)
        if validator is None:
            schema = ((version["openapi_schema"] or {}).get("components") or {}).get("schemas", {}).get(schema_name)
            if schema is None:
                if schema_name == "TrainingInput":
                    raise ApiError(
                        422, f"{version['owner']}/{version['name']}:{version['id']} cannot be trained.",
                        title="Invalid version or not permitted",
                    )
                return value
            validator = self._validators[key] = Draft7Validator(schema)
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            problems = []
            for err in errors:
                path = ".".join(str(p) for p in err.absolute_path)
                if err.validator == "additionalProperties":
                    extra = sorted(set(value) - set((err.schema.get("properties") or {})))
                    for name in extra:
                        problems.append(("additional_property_not_allowed", f"input.{name}",
                                         f"Additional property {name} is not allowed"))
                    continue
                if err.validator == "required":
                    missing = err.message.split("'")[1] if "'" in err.message else ""
                    problems.append(("required", f"input.{missing}" if missing else "input", err.message))
                    continue
                problems.append((str(err.validator), f"input.{path}" if path else "input", err.message))
            raise invalid_fields(problems)
        return value

    def _check_top_level(self, body: dict[str, Any], allowed: set[str], required: tuple[str, ...]) -> None:
        problems = [
            ("additional_property_not_allowed", "", f"Additional property {k} is not allowed")
            for k in sorted(body) if k not in allowed
        ]
        problems += [("required", k, f"{k} is required") for k in required if k not in body]
        webhook = body.get("webhook")
        if webhook is not None and (not isinstance(webhook, str) or not re.match(r"^https?://", webhook)):
            problems.append(("format", "webhook", "webhook must be an http(s) URL"))
        events = body.get("webhook_events_filter")
        if events is not None and (
            not isinstance(events, list) or any(e not in WEBHOOK_EVENTS for e in events)
        ):
            problems.append(("enum", "webhook_events_filter", f"webhook_events_filter items must be one of {', '.join(WEBHOOK_EVENTS)}"))
        if problems:
            raise invalid_fields(problems)

    def _cancel_after(self, request: Request) -> float | None:
        header = request.headers.get("cancel-after")
        if header is None:
            return None
        try:
            seconds = parse_duration(header)
        except ValueError as exc:
            raise ApiError(422, f"Invalid Cancel-After header: {exc}", title="Invalid Cancel-After") from None
        if seconds < self.p.options.min_cancel_after:
            raise ApiError(
                422, f"Cancel-After must be at least {self.p.options.min_cancel_after:g} seconds, got {header!r}.",
                title="Invalid Cancel-After",
            )
        return seconds

    def _prefer_wait(self, request: Request) -> tuple[float, str] | None:
        header = request.headers.get("prefer")
        if not header:
            return None
        match = PREFER.match(header)
        if not match:
            return None
        if match.group(1) is None:
            return self.p.options.max_wait, "wait"
        n = int(match.group(1))
        if not 1 <= n <= 60:
            return None
        return min(float(n), self.p.options.max_wait), f"wait={n}"

    async def _start_job(
        self, request: Request, *, kind: str, version: Row, body: dict[str, Any], destination: str | None = None
    ) -> Response:
        schema_name = "TrainingInput" if kind == "training" else "Input"
        input = self._validate_input(version, schema_name, body.get("input"))
        cancel_after = self._cancel_after(request)
        base = base_url(request)
        try:
            job = self.p.jobs.create(
                kind=kind, version=version, input=input, base_url=base, destination=destination,
                webhook=body.get("webhook"), webhook_events_filter=body.get("webhook_events_filter"),
                cancel_after=cancel_after,
            )
        except InputError as exc:
            raise invalid_fields([("invalid", exc.field, str(exc))]) from None
        if self.p.faults.should_drop_create():
            return DropConnection()
        headers: dict[str, str] = {}
        prefer = self._prefer_wait(request) if kind == "prediction" else None
        if prefer is not None:
            await self.p.jobs.wait(job["id"], prefer[0])
            headers["Preference-Applied"] = prefer[1]
            job = self.p.jobs.get(job["id"]) or job
            if job["status"] not in TERMINAL:
                # Replicate answers a wait that ran out with the job still `starting`, even when
                # it is processing; the official Python client's run() relies on that to keep
                # polling (anything else it takes as finished).
                job = {**job, "status": "starting", "started_at": None}
        else:
            job = {**job, "status": "starting", "started_at": None, "completed_at": None}
        return JSONResponse(render_job(job, base), status_code=201, headers=headers)

    async def create_prediction(self, request: Request) -> Response:
        body = await json_body(request)
        self._check_top_level(body, PREDICTION_FIELDS, ("version", "input"))
        version = self._resolve_version(body["version"])
        return await self._start_job(request, kind="prediction", version=version, body=body)

    async def create_model_prediction(self, request: Request) -> Response:
        owner, name = request.path_params["owner"], request.path_params["name"]
        model = self.p.db.get_model(owner, name)
        latest = self.p.db.latest_version(owner, name) if model else None
        if model is None or latest is None or not model["is_official"]:
            raise not_found()
        body = await json_body(request)
        self._check_top_level(body, PREDICTION_FIELDS - {"version"}, ("input",))
        return await self._start_job(request, kind="prediction", version=latest, body=body)

    async def create_training(self, request: Request) -> Response:
        owner, name = request.path_params["owner"], request.path_params["name"]
        version = self.p.db.get_version(request.path_params["version_id"])
        if version is None or (version["owner"], version["name"]) != (owner, name):
            raise not_found()
        body = await json_body(request)
        self._check_top_level(
            body, {"destination", "input", "webhook", "webhook_events_filter", "webhook_completed", "version"},
            ("destination", "input"),
        )
        destination = body["destination"]
        dest_owner, _, dest_name = destination.partition("/") if isinstance(destination, str) else ("", "", "")
        if not dest_owner or not dest_name or self.p.db.get_model(dest_owner, dest_name) is None:
            raise ApiError(404, "The specified training destination does not exist")
        return await self._start_job(request, kind="training", version=version, body=body, destination=destination)

    # --- jobs: get, list, cancel -------------------------------------------------------------

    def _job(self, request: Request, kind: str | None) -> Row:
        job = self.p.jobs.get(request.path_params["id"])
        if job is None or (kind is not None and job["kind"] != kind):
            raise not_found()
        return job

    async def get_prediction(self, request: Request) -> Response:
        return JSONResponse(render_job(self._job(request, None), base_url(request)))

    async def get_training(self, request: Request) -> Response:
        return JSONResponse(render_job(self._job(request, "training"), base_url(request)))

    async def _cancel(self, request: Request, kind: str | None) -> Response:
        job = self._job(request, kind)
        self.p.jobs.cancel(job["id"])
        return JSONResponse(render_job(self.p.jobs.get(job["id"]) or job, base_url(request)))

    async def cancel_prediction(self, request: Request) -> Response:
        return await self._cancel(request, None)

    async def cancel_training(self, request: Request) -> Response:
        return await self._cancel(request, "training")

    def _list_jobs(self, request: Request, kind: str) -> Response:
        after, before = _time_filter(request, "created_after"), _time_filter(request, "created_before")
        base = base_url(request)
        lagging = self.p.faults.listed_before(self.p.clock.now().timestamp())
        if lagging is not None:  # fault injection: a list index that lags behind the jobs
            hidden = rfc3339(datetime.fromtimestamp(lagging, tz=timezone.utc))
            before = hidden if before is None or (hidden or "") < before else before

        def fetch(**kw: Any) -> list[Row]:
            return self.p.db.list_jobs(kind, created_after=after, created_before=before, **kw)

        return JSONResponse(paginate(request, fetch, self.p.options.page_size, lambda j: render_job(j, base)))

    async def list_predictions(self, request: Request) -> Response:
        return self._list_jobs(request, "prediction")

    async def list_trainings(self, request: Request) -> Response:
        return self._list_jobs(request, "training")

    # --- models and versions ------------------------------------------------------------------

    def _model(self, request: Request) -> Row:
        model = self.p.db.get_model(request.path_params["owner"], request.path_params["name"])
        if model is None:
            raise not_found()
        return model

    async def list_models(self, request: Request) -> Response:
        base = base_url(request)
        db = self.p.db
        return JSONResponse(
            paginate(
                request, db.list_models, self.p.options.page_size,
                lambda m: render_model(
                    m, db.latest_version(m["owner"], m["name"]), base, db.count_runs(m["owner"], m["name"])
                ),
            )
        )

    async def get_model(self, request: Request) -> Response:
        model = self._model(request)
        latest = self.p.db.latest_version(model["owner"], model["name"])
        runs = self.p.db.count_runs(model["owner"], model["name"])
        return JSONResponse(render_model(model, latest, base_url(request), runs))

    async def create_model(self, request: Request) -> Response:
        body = await json_body(request)
        allowed = {"owner", "name", "visibility", "hardware", "description", "github_url", "paper_url",
                   "license_url", "cover_image_url"}
        problems = [("additional_property_not_allowed", "", f"Additional property {k} is not allowed")
                    for k in sorted(body) if k not in allowed]
        problems += [("required", k, f"{k} is required") for k in ("owner", "name", "visibility", "hardware")
                     if k not in body]
        if "name" in body and (not isinstance(body["name"], str) or not MODEL_NAME.match(body["name"])):
            problems.append(("pattern", "name", "name must be lowercase letters, digits, dashes, underscores or dots"))
        if "visibility" in body and body["visibility"] not in ("public", "private"):
            problems.append(("enum", "visibility", "visibility must be public or private"))
        if "hardware" in body and body["hardware"] not in {h["sku"] for h in HARDWARE}:
            problems.append(("enum", "hardware", f"hardware must be one of {', '.join(h['sku'] for h in HARDWARE)}"))
        if problems:
            raise invalid_fields(problems)
        if body["owner"] != catalog.ACCOUNT:
            raise ApiError(403, f"You can only create models under your own account ({catalog.ACCOUNT}).")
        if self.p.db.get_model(body["owner"], body["name"]) is not None:
            raise ApiError(409, f"A model named {body['owner']}/{body['name']} already exists.")
        row = {k: body.get(k) for k in allowed}
        row.update(is_official=0, created_at=rfc3339(self.p.clock.now()))
        self.p.db.insert_model(row)
        model = self.p.db.get_model(body["owner"], body["name"])
        return JSONResponse(render_model(model, None, base_url(request)), status_code=201)  # type: ignore[arg-type]

    async def delete_model(self, request: Request) -> Response:
        model = self._model(request)
        if model["is_official"] or model["owner"] != catalog.ACCOUNT:
            raise ApiError(403, "You can only delete your own models.")
        if self.p.db.latest_version(model["owner"], model["name"]) is not None:
            raise ApiError(409, "A model with versions cannot be deleted; delete its versions first.")
        self.p.db.conn.execute("DELETE FROM models WHERE owner = ? AND name = ?", (model["owner"], model["name"]))
        return Response(status_code=204)

    async def list_versions(self, request: Request) -> Response:
        model = self._model(request)

        def fetch(**kw: Any) -> list[Row]:
            return self.p.db.list_versions(model["owner"], model["name"], **kw)

        return JSONResponse(paginate(request, fetch, self.p.options.page_size, render_version))

    async def get_version(self, request: Request) -> Response:
        model = self._model(request)
        version = self.p.db.get_version(request.path_params["version_id"])
        if version is None or (version["owner"], version["name"]) != (model["owner"], model["name"]):
            raise not_found()
        return JSONResponse(render_version(version))

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
        file = self.p.store_file(content.data, name=name, content_type=ctype, metadata=metadata)
        return JSONResponse(render_file(file, base_url(request)), status_code=201)

    async def list_files(self, request: Request) -> Response:
        base = base_url(request)
        return JSONResponse(paginate(request, self.p.db.list_files, self.p.options.page_size, lambda f: render_file(f, base)))

    def _file(self, request: Request) -> Row:
        file = self.p.db.get_file(request.path_params["id"])
        if file is None:
            raise ApiError(404, "File not found")
        return file

    async def get_file(self, request: Request) -> Response:
        return JSONResponse(render_file(self._file(request), base_url(request)))

    async def delete_file(self, request: Request) -> Response:
        file = self._file(request)
        if file["purpose"] != "upload":
            raise ApiError(409, "This file holds a model version's weights and cannot be deleted.")
        self.p.db.delete_file(file["id"])
        self.p.file_path(file).unlink(missing_ok=True)
        return Response(status_code=204)

    async def download_file(self, request: Request) -> Response:
        file = self._file(request)
        try:
            data = self.p.file_path(file).read_bytes()
        except FileNotFoundError:
            raise ApiError(404, "File not found") from None
        return Response(data, media_type=file["content_type"])

    # --- account and secrets --------------------------------------------------------------------

    async def account(self, request: Request) -> Response:
        return JSONResponse(ACCOUNT)

    async def hardware(self, request: Request) -> Response:
        return JSONResponse(HARDWARE)

    async def webhook_secret(self, request: Request) -> Response:
        return JSONResponse({"key": self.p.webhook_secret})
