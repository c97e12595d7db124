"""The Emissary wire format (SDK 0.4.4) of the local platform.

`routes(platform)` returns the starlette routes `app.create_app` mounts. They reproduce what the
official `emissary-client-sdk` 0.4.4 expects, because the SDK recognises success only by an exact
status code and validates every body against closed enums and strict types:

- `X-API-Key: <platform token>` on every request; missing, empty or wrong -> 401
  `{"status": 401, "error": "Unauthorized"}`.
- creates -> 201, gets and lists -> 200 (lists are bare JSON arrays), deletes and cancels -> 204
  with an empty body; errors are `{"status", "error"}` (+ `"code": "object_not_found"` on 404).
- a `Content-Type: application/octet-stream` with an empty body is accepted everywhere (the SDK
  sends it on GET, DELETE, cancel and a body-less project create).
- training status is one of `Pending | Running | Success | Failed | TimedOut | Cancelled`;
  timestamps are integer epoch seconds; `progress` is an integer percentage.

`GET /v1/models` is also a Replicate route (a paginated object there, a bare array here). The
two are told apart by the credentials: a request with `X-API-Key` and no `Authorization` header
is an Emissary request. `is_emissary_request()` is what the app uses to dispatch it.

Training with base model `jobrunner-ngram` runs `jobrunner.local.emissary_engine` in the
platform's worker processes (see that module for the parameters). A training job whose
`parameters.timeout_seconds` elapses is stopped and marked `TimedOut`.

Deployments serve a checkpoint: `Pending -> Deploying -> Deployed` once its weights are loaded;
`/completions` and `/chat/completions` generate text with them (`max_new_tokens` characters,
`temperature`, `do_sample: false` for greedy decoding, and a `seed` extension for reproducible
text). `jobrunner-ngram` is a completion model, so `/embeddings` and `/classification` answer 400.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from jobrunner.local import emissary_engine as engine
from jobrunner.local import emissary_store as es
from jobrunner.local.models import ngram
from jobrunner.local.multipart import MultipartError, parse_multipart
from jobrunner.local.security import token_matches

log = logging.getLogger("jobrunner.local.emissary")

BASE_MODELS: dict[str, dict[str, Any]] = {
    engine.BASE_MODEL: {
        "name": engine.BASE_MODEL,
        "type": "completion",
        "parameter_template": dict(engine.DEFAULTS),
        "support_serverless": True,
        # Extra fields are ignored by the SDK; they tell a reader what the model is.
        "description": "A character n-gram language model trained on this machine (jobrunner local platform).",
    }
}
SERVER_TYPES = ("serverless", "on-demand")
DEPLOYMENT_TERMINAL = frozenset({"Failed", "Cancelled", "TimedOut"})
# Runner/engine events -> Emissary status.
_FINAL = {"done": es.SUCCESS, "failed": es.FAILED, "canceled": es.CANCELLED}


class EmissaryError(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def error_response(status: int, error: str) -> JSONResponse:
    body: dict[str, Any] = {"status": status, "error": error}
    if status == 404:
        body["code"] = "object_not_found"  # required by the SDK's APIErrorNotFound model
    return JSONResponse(body, status_code=status)


def not_found(what: str) -> EmissaryError:
    return EmissaryError(404, f"{what} not found")


def is_emissary_request(request: Request) -> bool:
    """An Emissary client authenticates with X-API-Key and sends no Authorization header."""
    return "x-api-key" in request.headers and "authorization" not in request.headers


# --- wire shapes (pure) ----------------------------------------------------------------------


def project_summary(p: es.Row) -> dict[str, Any]:
    return {"id": p["id"], "name": p["name"]}


def dataset_summary(d: es.Row) -> dict[str, Any]:
    return {"id": d["id"], "name": d["name"], "created_at": d["created_at"], "is_uploaded": d["path"] is not None}


def dataset_detail(d: es.Row, base_url: str) -> dict[str, Any]:
    return {
        "id": d["id"],
        "name": d["name"],
        "is_uploaded": d["path"] is not None,
        "dataset_download_url": f"{base_url}/v1/projects/{d['project_id']}/datasets/{d['id']}/download" if d["path"] else None,
        "upload_by": es.USER_ID,
        "created_at": d["created_at"],
        "updated_at": d["updated_at"],
        "size": d["size"],
        "sha256": d["sha256"],
    }


def training_summary(j: es.Row) -> dict[str, Any]:
    return {
        "id": j["id"],
        "name": j["name"],
        "base_model": j["base_model"],
        "status": j["status"],
        "progress": int(j["progress"]),
        "created_by": j["created_by"],
        "created_at": j["created_at"],
        "updated_at": j["updated_at"],
    }


def hyper_parameters(j: es.Row) -> dict[str, Any]:
    """The parameters the job ran with (defaults filled in); values are str/int/float only."""
    given = {k: v for k, v in (j["parameters"] or {}).items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)}
    if j["base_model"] == engine.BASE_MODEL:
        try:
            return {**given, **engine.training_parameters(given)}
        except ValueError:
            return given
    return given


def training_detail(j: es.Row, train_ds: es.Row | None, test_ds: es.Row | None) -> dict[str, Any]:
    out = training_summary(j)
    out.update(
        {
            "description": j["description"],
            "train_dataset": dataset_summary(train_ds) if train_ds else None,
            "test_dataset": dataset_summary(test_ds) if test_ds else None,
            "training_loss": j["training_loss"],
            "hyper_parameters": hyper_parameters(j),
        }
    )
    if j["train_test_split_ratio"] is not None:
        out["train_test_split_ratio"] = j["train_test_split_ratio"]
    if j["error"]:
        out["error"] = j["error"]  # not in the 0.4.4 model (ignored by the SDK), but says why it failed
    return out


def checkpoint_wire(c: es.Row, base_url: str, project_id: str) -> dict[str, Any]:
    url = f"{base_url}/v1/projects/{project_id}/training-jobs/{c['training_job_id']}/checkpoints/{c['checkpoint']}"
    results = dict(c["test_results"])
    results.setdefault("general_test_result", url + "/test_results")
    return {
        "checkpoint": c["checkpoint"],
        "model_download_url": url + "/download",
        "test_results": results,
        "created_at": c["created_at"],
        "updated_at": c["updated_at"],
    }


def deployment_summary(d: es.Row) -> dict[str, Any]:
    return {"id": d["id"], "name": d["name"], "status": d["status"], "created_at": d["created_at"]}


def deployment_detail(d: es.Row, base_model: str | None) -> dict[str, Any]:
    return {
        "id": d["id"],
        "name": d["name"],
        "description": d["description"],
        "base_model": base_model,
        "status": d["status"],
        "training_id": d["training_job_id"],  # the 0.4.4 wire name (not training_job_id)
        "checkpoint": d["checkpoint"],
        "created_at": d["created_at"],
        "updated_at": d["updated_at"],
        "server_type": d["server_type"],
    }


# --- request parsing (pure) -----------------------------------------------------------------


def parse_json_object(raw: bytes, *, required: bool) -> dict[str, Any]:
    if not raw.strip():
        if required:
            raise EmissaryError(400, "a JSON request body is required")
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise EmissaryError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise EmissaryError(400, "the request body must be a JSON object")
    return value


def _opt_str(body: dict[str, Any], key: str) -> None:
    if key in body and body[key] is not None and not isinstance(body[key], str):
        raise EmissaryError(400, f"{key} must be a string")


def check_training_body(body: dict[str, Any]) -> None:
    """CreateTrainingJobRequestBody checks; unknown fields are tolerated like the real API."""
    for key in ("base_model", "train_dataset_id"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise EmissaryError(400, f"{key} is required and must be a non-empty string")
    for key in ("test_dataset_id", "name", "description", "hf_model_link"):
        _opt_str(body, key)
    ratio = body.get("train_test_split_ratio")
    if ratio is not None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
            raise EmissaryError(400, "train_test_split_ratio must be a number from 0 up to (not including) 1")
    params = body.get("parameters")
    if params is not None:
        if not isinstance(params, dict):
            raise EmissaryError(400, "parameters must be an object")
        for k, v in params.items():
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise EmissaryError(400, f"parameters.{k} must be a string or a number")


def check_deployment_body(body: dict[str, Any]) -> None:
    if not isinstance(body.get("training_job_id"), str) or not body["training_job_id"]:
        raise EmissaryError(400, "training_job_id is required and must be a non-empty string")
    ck = body.get("checkpoint")
    if isinstance(ck, bool) or not isinstance(ck, (int, float)) or int(ck) != ck:
        raise EmissaryError(400, "checkpoint is required and must be an integer")
    if body.get("server_type") is not None and body["server_type"] not in SERVER_TYPES:
        raise EmissaryError(400, f"server_type must be one of {', '.join(SERVER_TYPES)}")
    for key in ("name", "description"):
        _opt_str(body, key)


def generation_options(body: dict[str, Any]) -> dict[str, Any]:
    """Map the inference request's sampling fields onto the n-gram generator.

    `max_new_tokens` (default 500) counts characters; `temperature` defaults to 0.7;
    `do_sample: false` means greedy decoding; `seed` (an extension) makes the text reproducible.
    `top_p`, `top_k` and `no_repeat_ngram_size` are accepted and have no effect on this model.
    """
    def num(key: str, default: float, lo: float, hi: float) -> float:
        value = body.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise EmissaryError(400, f"{key} must be a number between {lo:g} and {hi:g}")
        return float(value)

    max_tokens = num("max_new_tokens", 500, 0, 10_000)
    if max_tokens != int(max_tokens):
        raise EmissaryError(400, "max_new_tokens must be an integer")
    temperature = num("temperature", 0.7, 0, 10)
    if body.get("do_sample") is False:
        temperature = 0.0
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise EmissaryError(400, "seed must be an integer")
    return {"max_tokens": int(max_tokens), "temperature": temperature, "seed": seed}


def chat_prompt(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise EmissaryError(400, "messages is required and must be a non-empty array")
    lines = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("content", ""), str):
            raise EmissaryError(400, "each message is an object with a string content")
        if m.get("role") is not None and m["role"] not in ("system", "user", "assistant"):
            raise EmissaryError(400, "message role must be system, user or assistant")
        lines.append(m.get("content") or "")
    return "\n".join(lines) + "\n"


# --- the service ----------------------------------------------------------------------------


class EmissaryService:
    def __init__(self, platform: Any) -> None:
        self.platform = platform
        self.store = es.EmissaryStore(platform.db.conn, platform.data_dir)
        self._timeouts: dict[str, Any] = {}
        self._weights: dict[str, Any] = {}  # deployment id -> loaded checkpoint weights

    # -- lifecycle --

    def recover_after_restart(self) -> None:
        """Jobs that were Pending/Running when the server stopped cannot resume: mark them Failed."""
        for job in self.store.training_jobs_with_status((es.PENDING, es.RUNNING)):
            self.store.update_training_job(
                job["id"], status=es.FAILED,
                error="the local platform stopped while this training job was pending or running; create it again",
            )
        # Deploying is only loading a checkpoint, which is done again on first use after a restart.
        for row in self.store.conn.execute(
            "SELECT id, training_job_id, checkpoint FROM emissary_deployments WHERE status IN ('Pending', 'Deploying')"
        ).fetchall():
            ok = self.store.get_checkpoint(row["training_job_id"], row["checkpoint"]) is not None
            self.store.update_deployment(row["id"], status="Deployed" if ok else "Failed")

    # -- helpers --

    def _project(self, project_id: str) -> es.Row:
        p = self.store.get_project(project_id)
        if p is None:
            raise not_found(f"project {project_id}")
        return p

    def _job(self, project_id: str, job_id: str) -> es.Row:
        self._project(project_id)
        j = self.store.get_training_job(project_id, job_id)
        if j is None:
            raise not_found(f"training job {job_id}")
        return j

    # -- training execution --

    def start_training(self, job: es.Row) -> None:
        train = self.store.get_dataset(job["project_id"], job["train_dataset_id"])
        test = self.store.get_dataset(job["project_id"], job["test_dataset_id"]) if job["test_dataset_id"] else None
        assert train is not None and train["path"]
        context = {
            "train_path": train["path"],
            "test_path": test["path"] if test else None,
            "checkpoint_dir": str(self.store.checkpoint_dir / job["id"]),
        }
        job_input = {"parameters": job["parameters"], "train_test_split_ratio": job["train_test_split_ratio"]}
        job_id = job["id"]
        self.platform.runner.submit(
            job_id, engine.ENGINE, "train", job_input, lambda kind, data: self._on_event(job_id, kind, data), context
        )
        timeout = (job["parameters"] or {}).get("timeout_seconds")
        if timeout is not None:
            handle = asyncio.get_running_loop().call_later(float(timeout), self._time_out, job_id)
            self._timeouts[job_id] = handle

    def _on_event(self, job_id: str, kind: str, data: Any) -> None:
        job = self.store.get_training_job(None, job_id)
        if job is None or job["status"] in es.TERMINAL:
            return  # deleted, cancelled or timed out meanwhile
        if kind == "start":
            self.store.update_training_job(job_id, status=es.RUNNING)
        elif kind == "progress":
            pct = max(0, min(100, int(float(data) * 100)))
            if pct != job["progress"]:
                self.store.update_training_job(job_id, progress=pct)
        elif kind == "training_loss":
            self.store.append_training_loss(job_id, {"timestamp": float(data["timestamp"]), "loss": float(data["loss"])})
        elif kind == "checkpoint":
            self.store.add_checkpoint(job_id, int(data["checkpoint"]), data["path"], engine.test_results(data["metrics"], None))
        elif kind in _FINAL:
            values: dict[str, Any] = {"status": _FINAL[kind]}
            if kind == "done":
                values["progress"] = 100
            elif kind == "failed":
                values["error"] = str(data.get("error") or "training failed")
            self.store.update_training_job(job_id, **values)
            handle = self._timeouts.pop(job_id, None)
            if handle is not None:
                handle.cancel()
        # `log` lines are not part of the Emissary wire; engines' logs go to the server log only.
        elif kind == "log":
            log.debug("%s: %s", job_id, str(data).rstrip())

    def _time_out(self, job_id: str) -> None:
        self._timeouts.pop(job_id, None)
        job = self.store.get_training_job(None, job_id)
        if job is None or job["status"] in es.TERMINAL:
            return
        self.store.update_training_job(job_id, status=es.TIMED_OUT, error="parameters.timeout_seconds elapsed")
        self.platform.runner.cancel(job_id)

    def cancel_training(self, job: es.Row) -> None:
        if job["status"] in es.TERMINAL:
            return  # idempotent: cancelling a finished job changes nothing
        self.store.update_training_job(job["id"], status=es.CANCELLED)
        self.platform.runner.cancel(job["id"])
        handle = self._timeouts.pop(job["id"], None)
        if handle is not None:
            handle.cancel()

    # -- endpoints --

    async def list_base_models(self, request: Request) -> Response:
        return JSONResponse(list(BASE_MODELS.values()))

    async def get_base_model(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in BASE_MODELS:
            raise not_found(f"base model {name}")
        return JSONResponse(BASE_MODELS[name])

    async def create_project(self, request: Request) -> Response:
        body = parse_json_object(await request.body(), required=False)
        _opt_str(body, "name")
        return JSONResponse(project_summary(self.store.create_project(body.get("name"))), status_code=201)

    async def list_projects(self, request: Request) -> Response:
        return JSONResponse([project_summary(p) for p in self.store.list_projects()])

    async def get_project(self, request: Request) -> Response:
        p = self._project(request.path_params["project_id"])
        pid = p["id"]
        return JSONResponse(
            {
                **project_summary(p),
                "datasets": [dataset_summary(d) for d in self.store.list_datasets(pid)],
                "training_jobs": [training_summary(j) for j in self.store.list_training_jobs(pid)],
                "deployments": [deployment_summary(d) for d in self.store.list_deployments(pid)],
            }
        )

    async def delete_project(self, request: Request) -> Response:
        p = self._project(request.path_params["project_id"])
        for job in self.store.list_training_jobs(p["id"]):
            self.cancel_training(job)
        self.store.delete_project(p["id"])
        return Response(status_code=204)

    async def create_dataset(self, request: Request) -> Response:
        p = self._project(request.path_params["project_id"])
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
        return JSONResponse(dataset_summary(row), status_code=201)

    async def list_datasets(self, request: Request) -> Response:
        p = self._project(request.path_params["project_id"])
        return JSONResponse([dataset_summary(d) for d in self.store.list_datasets(p["id"])])

    def _dataset(self, request: Request) -> es.Row:
        p = self._project(request.path_params["project_id"])
        d = self.store.get_dataset(p["id"], request.path_params["dataset_id"])
        if d is None:
            raise not_found(f"dataset {request.path_params['dataset_id']}")
        return d

    async def get_dataset(self, request: Request) -> Response:
        return JSONResponse(dataset_detail(self._dataset(request), _base_url(request)))

    async def download_dataset(self, request: Request) -> Response:
        d = self._dataset(request)
        if not d["path"]:
            raise not_found(f"file of dataset {d['id']}")
        return FileResponse(d["path"], media_type=d["content_type"] or "application/octet-stream")

    async def delete_dataset(self, request: Request) -> Response:
        self.store.delete_dataset(self._dataset(request)["id"])
        return Response(status_code=204)

    async def create_training_job(self, request: Request) -> Response:
        p = self._project(request.path_params["project_id"])
        body = parse_json_object(await request.body(), required=True)
        check_training_body(body)
        if body["base_model"] not in BASE_MODELS:
            raise EmissaryError(400, f"unknown base_model {body['base_model']!r}; available: {', '.join(BASE_MODELS)}")
        train = self.store.get_dataset(p["id"], body["train_dataset_id"])
        if train is None or not train["path"]:
            raise EmissaryError(400, f"train_dataset_id {body['train_dataset_id']!r} is not an uploaded dataset of project {p['id']}")
        if body.get("test_dataset_id"):
            test = self.store.get_dataset(p["id"], body["test_dataset_id"])
            if test is None or not test["path"]:
                raise EmissaryError(400, f"test_dataset_id {body['test_dataset_id']!r} is not an uploaded dataset of project {p['id']}")
        params = body.get("parameters") or {}
        try:
            engine.training_parameters(params)
            if "timeout_seconds" in params and float(params["timeout_seconds"]) <= 0:
                raise ValueError("parameters.timeout_seconds must be positive")
        except ValueError as exc:
            raise EmissaryError(400, str(exc)) from None
        job = self.store.create_training_job(p["id"], body)
        self.start_training(job)
        if self.platform.faults.should_drop_create():  # fault injection: committed, but no answer
            from jobrunner.local.problems import DropConnection

            return DropConnection()
        return JSONResponse(training_summary(job), status_code=201)

    async def list_training_jobs(self, request: Request) -> Response:
        p = self._project(request.path_params["project_id"])
        jobs = self.store.list_training_jobs(p["id"])
        lagging = self.platform.faults.listed_before(time.time())
        if lagging is not None:  # fault injection: a list index that lags behind the jobs
            jobs = [j for j in jobs if j["created_at"] + 1 <= lagging]  # whole seconds: round up
        return JSONResponse([training_summary(j) for j in jobs])

    async def get_training_job(self, request: Request) -> Response:
        j = self._job(request.path_params["project_id"], request.path_params["training_job_id"])
        train = self.store.get_dataset(j["project_id"], j["train_dataset_id"])
        test = self.store.get_dataset(j["project_id"], j["test_dataset_id"]) if j["test_dataset_id"] else None
        return JSONResponse(training_detail(j, train, test))

    async def delete_training_job(self, request: Request) -> Response:
        j = self._job(request.path_params["project_id"], request.path_params["training_job_id"])
        self.cancel_training(j)
        self.store.delete_training_job(j["id"])
        return Response(status_code=204)

    async def cancel_training_job(self, request: Request) -> Response:
        self.cancel_training(self._job(request.path_params["project_id"], request.path_params["training_job_id"]))
        return Response(status_code=204)

    async def list_checkpoints(self, request: Request) -> Response:
        j = self._job(request.path_params["project_id"], request.path_params["training_job_id"])
        base = _base_url(request)
        return JSONResponse([checkpoint_wire(c, base, j["project_id"]) for c in self.store.list_checkpoints(j["id"])])

    def _checkpoint(self, request: Request) -> es.Row:
        j = self._job(request.path_params["project_id"], request.path_params["training_job_id"])
        n = request.path_params["checkpoint"]
        c = self.store.get_checkpoint(j["id"], n)
        if c is None:
            raise not_found(f"checkpoint {n} of training job {j['id']}")
        return c

    async def download_checkpoint(self, request: Request) -> Response:
        c = self._checkpoint(request)
        return FileResponse(c["path"], media_type="application/json")

    async def checkpoint_test_results(self, request: Request) -> Response:
        c = self._checkpoint(request)
        path = c["path"].removesuffix(".json") + "-test_results.json"
        return FileResponse(path, media_type="application/json")


    # -- deployments (serving a checkpoint) --

    async def create_deployment(self, request: Request) -> Response:
        p = self._project(request.path_params["project_id"])
        body = parse_json_object(await request.body(), required=True)
        check_deployment_body(body)
        job = self.store.get_training_job(p["id"], body["training_job_id"])
        if job is None:
            raise EmissaryError(400, f"training_job_id {body['training_job_id']!r} is not a training job of project {p['id']}")
        if self.store.get_checkpoint(job["id"], int(body["checkpoint"])) is None:
            raise EmissaryError(400, f"training job {job['id']} has no checkpoint {int(body['checkpoint'])}")
        row = self.store.create_deployment(p["id"], body, "Pending")
        self.platform.spawn(self._deploy(row["id"]))
        return JSONResponse(deployment_summary(row), status_code=201)

    async def _deploy(self, deployment_id: str) -> None:
        """Pending -> Deploying -> Deployed once the checkpoint's weights are loaded (or Failed)."""
        row = self.store.conn.execute("SELECT * FROM emissary_deployments WHERE id = ?", (deployment_id,)).fetchone()
        if row is None or row["status"] != "Pending":
            return
        self.store.update_deployment(deployment_id, status="Deploying")
        ck = self.store.get_checkpoint(row["training_job_id"], row["checkpoint"])
        try:
            if ck is None:
                raise FileNotFoundError("the checkpoint was deleted")
            weights = await asyncio.to_thread(_load_json, ck["path"])
        except (OSError, ValueError) as exc:
            self._set_deployment_status(deployment_id, "Failed")
            log.warning("deployment %s failed: %s", deployment_id, exc)
            return
        if self._set_deployment_status(deployment_id, "Deployed", only_from="Deploying"):
            self._weights[deployment_id] = weights

    def _set_deployment_status(self, deployment_id: str, status: str, *, only_from: str | None = None) -> bool:
        row = self.store.conn.execute("SELECT status FROM emissary_deployments WHERE id = ?", (deployment_id,)).fetchone()
        if row is None or (only_from is not None and row["status"] != only_from):
            return False
        self.store.update_deployment(deployment_id, status=status)
        return True

    def _deployment(self, request: Request) -> es.Row:
        p = self._project(request.path_params["project_id"])
        d = self.store.get_deployment(p["id"], request.path_params["deployment_id"])
        if d is None:
            raise not_found(f"deployment {request.path_params['deployment_id']}")
        return d

    async def list_deployments(self, request: Request) -> Response:
        p = self._project(request.path_params["project_id"])
        return JSONResponse([deployment_summary(d) for d in self.store.list_deployments(p["id"])])

    async def get_deployment(self, request: Request) -> Response:
        d = self._deployment(request)
        job = self.store.get_training_job(None, d["training_job_id"])
        return JSONResponse(deployment_detail(d, job["base_model"] if job else None))

    async def delete_deployment(self, request: Request) -> Response:
        d = self._deployment(request)
        self._weights.pop(d["id"], None)
        self.store.delete_deployment(d["id"])
        return Response(status_code=204)

    async def cancel_deployment(self, request: Request) -> Response:
        d = self._deployment(request)
        if d["status"] not in DEPLOYMENT_TERMINAL:
            self._weights.pop(d["id"], None)
            self.store.update_deployment(d["id"], status="Cancelled")
        return Response(status_code=204)

    def _serving(self, request: Request) -> dict[str, Any]:
        d = self._deployment(request)
        if d["status"] != "Deployed":
            raise EmissaryError(400, f"deployment {d['id']} is {d['status']}, not Deployed")
        weights = self._weights.get(d["id"])
        if weights is None:  # after a restart: weights are loaded again on first use
            ck = self.store.get_checkpoint(d["training_job_id"], d["checkpoint"])
            try:
                weights = _load_json(ck["path"]) if ck else None
            except (OSError, ValueError):
                weights = None
            if weights is None:
                self.store.update_deployment(d["id"], status="Failed")
                raise EmissaryError(400, f"deployment {d['id']} failed: its checkpoint is gone")
            self._weights[d["id"]] = weights
        return weights

    async def completions(self, request: Request) -> Response:
        weights = self._serving(request)
        body = parse_json_object(await request.body(), required=True)
        if not isinstance(body.get("prompt"), str):
            raise EmissaryError(400, "prompt is required and must be a string")
        opts = generation_options(body)
        text = await asyncio.to_thread(ngram.generate, weights, body["prompt"], **opts)
        return JSONResponse({"id": es.new_id("completion"), "response": text})

    async def chat_completions(self, request: Request) -> Response:
        weights = self._serving(request)
        body = parse_json_object(await request.body(), required=True)
        prompt = chat_prompt(body.get("messages"))
        opts = generation_options(body)
        text = await asyncio.to_thread(ngram.generate, weights, prompt, **opts)
        return JSONResponse({"id": es.new_id("chat-completion"), "response": text})

    async def embeddings(self, request: Request) -> Response:
        self._serving(request)
        body = parse_json_object(await request.body(), required=True)
        for key in ("source_sentence", "target_sentence"):
            if not isinstance(body.get(key), str):
                raise EmissaryError(400, f"{key} is required and must be a string")
        raise EmissaryError(400, f"{engine.BASE_MODEL} is a completion model: use /completions or /chat/completions")

    async def classification(self, request: Request) -> Response:
        self._serving(request)
        body = parse_json_object(await request.body(), required=True)
        if not isinstance(body.get("source_sentence"), str):
            raise EmissaryError(400, "source_sentence is required and must be a string")
        raise EmissaryError(400, f"{engine.BASE_MODEL} is a completion model: use /completions or /chat/completions")


def _load_json(path: str) -> Any:
    with open(path, "rb") as fh:
        return json.load(fh)


def _base_url(request: Request) -> str:
    """Absolute URLs are built from the request's own host, like the Replicate routes do."""
    return str(request.base_url).rstrip("/")


def _guard(service: EmissaryService, handler: Any) -> Any:
    """Auth and error mapping around one endpoint."""

    async def endpoint(request: Request) -> Response:
        if not token_matches(request.headers.get("x-api-key"), service.platform.token):
            return error_response(401, "Unauthorized")
        try:
            return await handler(request)
        except EmissaryError as exc:
            return error_response(exc.status, exc.error)

    endpoint.__name__ = getattr(handler, "__name__", "endpoint")
    return endpoint


def routes(platform: Any) -> list[Route]:
    """The Emissary routes, bound to `platform`; `service` is kept on `platform.emissary`."""
    service = EmissaryService(platform)
    service.recover_after_restart()
    platform.emissary = service
    g = lambda h: _guard(service, h)  # noqa: E731
    pj = "/v1/projects/{project_id}"
    tj = pj + "/training-jobs/{training_job_id}"
    ck = tj + "/checkpoints/{checkpoint:int}"
    dp = pj + "/deployments/{deployment_id}"
    return [
        # `/v1/models` (list) is shared with the Replicate wire: the app dispatches it with
        # `is_emissary_request` to `platform.emissary_list_models`.
        Route("/v1/models/{name}", g(service.get_base_model), methods=["GET"]),
        Route("/v1/projects", g(service.create_project), methods=["POST"]),
        Route("/v1/projects", g(service.list_projects), methods=["GET"]),
        Route(pj, g(service.get_project), methods=["GET"]),
        Route(pj, g(service.delete_project), methods=["DELETE"]),
        Route(pj + "/datasets", g(service.create_dataset), methods=["POST"]),
        Route(pj + "/datasets", g(service.list_datasets), methods=["GET"]),
        Route(pj + "/datasets/{dataset_id}", g(service.get_dataset), methods=["GET"]),
        Route(pj + "/datasets/{dataset_id}", g(service.delete_dataset), methods=["DELETE"]),
        Route(pj + "/datasets/{dataset_id}/download", g(service.download_dataset), methods=["GET"]),
        Route(pj + "/training-jobs", g(service.create_training_job), methods=["POST"]),
        Route(pj + "/training-jobs", g(service.list_training_jobs), methods=["GET"]),
        Route(tj, g(service.get_training_job), methods=["GET"]),
        Route(tj, g(service.delete_training_job), methods=["DELETE"]),
        Route(tj + "/cancel", g(service.cancel_training_job), methods=["POST"]),
        Route(tj + "/checkpoints", g(service.list_checkpoints), methods=["GET"]),
        Route(ck + "/download", g(service.download_checkpoint), methods=["GET"]),
        Route(ck + "/test_results", g(service.checkpoint_test_results), methods=["GET"]),
        Route(pj + "/deployments", g(service.create_deployment), methods=["POST"]),
        Route(pj + "/deployments", g(service.list_deployments), methods=["GET"]),
        Route(dp, g(service.get_deployment), methods=["GET"]),
        Route(dp, g(service.delete_deployment), methods=["DELETE"]),
        Route(dp + "/cancel", g(service.cancel_deployment), methods=["POST"]),
        Route(dp + "/completions", g(service.completions), methods=["POST"]),
        Route(dp + "/chat/completions", g(service.chat_completions), methods=["POST"]),
        Route(dp + "/embeddings", g(service.embeddings), methods=["POST"]),
        Route(dp + "/classification", g(service.classification), methods=["POST"]),
    ]


def list_models_endpoint(platform: Any) -> Any:
    """The Emissary `GET /v1/models` handler, for the app to call when `is_emissary_request`."""
    service: EmissaryService = platform.emissary
    return _guard(service, service.list_base_models)
