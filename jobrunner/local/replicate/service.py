"""The Replicate wire's service on the local platform: catalog, files and the job lifecycle.

A job row moves `starting` -> `processing` -> `succeeded` | `failed` | `canceled`, or from
`starting` straight to `canceled` (user cancel) or `aborted` (its `Cancel-After` deadline passed
before it started). Runner events are applied to the row as they arrive: logs are appended while
the job runs, `metrics.predict_time` / `total_time` are set at the end, and a successful training
registers its weights as a file and a new version of the destination model. Each event is also
the job's webhook (`start`, `output`, `logs`, `completed`, sent by `jobrunner.local.webhooks`).

At start the built-in models of `catalog` are seeded (fixed version ids), and jobs that were
queued or running when the server stopped come back as `failed`. Inputs are validated against the
version's Cog-style `Input` / `TrainingInput` schema. Nothing here knows HTTP: `routes` parses
requests and renders rows with `serializers`.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hashlib
import logging
import re
import urllib.parse
from datetime import timedelta
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

from jobrunner.local.clock import new_id, parse_rfc3339, rfc3339
from jobrunner.local.db import Row
from jobrunner.local.platform import Platform
from jobrunner.local.replicate import catalog
from jobrunner.local.replicate.errors import ApiError, invalid_fields
from jobrunner.local.replicate.serializers import HEX64, JobKind, input_problems, render_job
from jobrunner.local.replicate.store import ReplicateStore
from jobrunner.local.webhooks import WebhookSender, allowed_hosts_from

log = logging.getLogger("jobrunner.local")

TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
RESTART_ERROR = (
    "The local platform stopped while this job was queued or running, so it did not finish. "
    "Create it again."
)
_FILE_URL = re.compile(r"^/v1/files/([a-z0-9]+)(?:/download)?/?$")


class InputError(ValueError):
    """An input the platform cannot accept (becomes a 422 naming `field`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ReplicateService:
    """The Replicate wire's state and job lifecycle on the platform core (see the module docstring)."""

    CACHE_SIZE = 5_000

    def __init__(self, platform: Platform) -> None:
        self.p = platform
        self.store = ReplicateStore(platform.db)
        self.files_dir = platform.data_dir / "files"
        self.files_dir.mkdir(exist_ok=True)
        self.webhooks = WebhookSender(
            lambda: platform.webhook_secret, allowed_hosts=allowed_hosts_from(platform.options.webhook_hosts)
        )
        self._validators: dict[tuple[str, str], Draft7Validator] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._cancel_status: dict[str, str] = {}
        # Write-through cache of recently used job rows. This process is the only writer of the
        # jobs table (the data-dir lock guarantees it), so a cached row is always current; it
        # spares the SELECTs of polling and of event handling.
        self._cache: collections.OrderedDict[str, Row] = collections.OrderedDict()
        self._start_pending: set[str] = set()
        self._seed_builtins()
        self._recover_after_restart()
        platform.on_shutdown(self._close)

    def get(self, job_id: str) -> Row | None:
        """The current row of a job (from the cache, else the database)."""
        job = self._cache.get(job_id)
        if job is not None:
            self._cache.move_to_end(job_id)
            return job
        job = self.store.get_job(job_id)
        if job is not None:
            self._remember(job)
        return job

    def _remember(self, job: Row) -> None:
        if job["kind"] == "training":
            return  # few, polled slowly, and their inputs can be large (inline training text)
        self._cache[job["id"]] = job
        self._cache.move_to_end(job["id"])
        while len(self._cache) > self.CACHE_SIZE:
            self._cache.popitem(last=False)

    def _update(self, job_id: str, **values: Any) -> None:
        self.store.update_job(job_id, **values)
        job = self._cache.get(job_id)
        if job is not None:
            job.update(values)

    # --- catalog: built-in models, versions, inputs ------------------------------------------

    def _seed_builtins(self) -> None:
        """Create the built-in models and their fixed versions on first start (idempotent)."""
        store = self.store
        now = rfc3339(self.p.clock.now())
        for model in catalog.BUILTINS:
            if store.get_model(catalog.OWNER, model.name) is None:
                store.insert_model(
                    {
                        "owner": catalog.OWNER, "name": model.name, "description": model.description,
                        "visibility": "public", "hardware": "cpu", "is_official": 1, "created_at": now,
                    }
                )
            if store.get_version(model.version) is None:
                store.insert_version(
                    {
                        "id": model.version, "owner": catalog.OWNER, "name": model.name, "engine": model.engine,
                        "weights_file": None, "openapi_schema": model.openapi_schema,
                        "cog_version": catalog.COG_VERSION, "created_at": now,
                    }
                )

    def resolve_version(self, ref: Any) -> Row:
        """The version a create names: `<id>`, `owner/name:<id>`, or `owner/name` of an official model."""
        bad = ApiError(
            422,
            "The specified version does not exist (or perhaps you don't have permission to use it?)",
            title="Invalid version or not permitted",
        )
        if not isinstance(ref, str) or not ref:
            raise bad
        owner_name, _, vid = ref.rpartition(":") if ":" in ref else ("", "", ref)
        if HEX64.match(vid):
            version = self.store.get_version(vid)
            if version is None or (owner_name and owner_name != f"{version['owner']}/{version['name']}"):
                raise bad
            return version
        if "/" in ref and ":" not in ref:  # owner/name: official models only
            owner, name = ref.split("/", 1)
            model = self.store.get_model(owner, name)
            latest = self.store.latest_version(owner, name) if model and model["is_official"] else None
            if latest is not None:
                return latest
        raise bad

    def validate_input(self, version: Row, schema_name: str, value: Any) -> dict[str, Any]:
        """`value` checked against the version's `Input` or `TrainingInput` schema (422 otherwise)."""
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
            raise invalid_fields(input_problems(errors, value))
        return value

    # --- deployments and version removal ------------------------------------------------------

    def deployment_version(self, model: str, version_id: str) -> Row:
        """The version a deployment release runs: `version_id` of `model` (`owner/name`), else 422."""
        owner, _, name = model.partition("/")
        if not owner or not name or self.store.get_model(owner, name) is None:
            raise invalid_fields([("invalid", "model", f"model {model} does not exist (create it or check the name)")])
        version = self.store.get_version(version_id)
        if version is None or (version["owner"], version["name"]) != (owner, name):
            raise ApiError(
                422,
                "The specified version does not exist (or perhaps you don't have permission to use it?)",
                title="Invalid version or not permitted",
            )
        return version

    def create_deployment(self, body: dict[str, Any]) -> Row:
        """Release 1 of a new deployment under the account (fields already checked by serializers)."""
        _check_instances(body["min_instances"], body["max_instances"])
        self.deployment_version(body["model"], body["version"])
        if self.store.get_deployment(catalog.ACCOUNT, body["name"]) is not None:
            raise ApiError(409, f"A deployment named {catalog.ACCOUNT}/{body['name']} already exists.")
        now = rfc3339(self.p.clock.now())
        row = {k: body[k] for k in ("name", "model", "version", "hardware", "min_instances", "max_instances")}
        row.update(owner=catalog.ACCOUNT, number=1, release_created_at=now, created_at=now)
        self.store.insert_deployment(row)
        return self._deployment(catalog.ACCOUNT, body["name"])

    def update_deployment(self, current: Row, changes: dict[str, Any]) -> Row:
        """A new release (number + 1) with `changes` applied over the current one; the model stays."""
        merged = {**current, **changes}
        _check_instances(merged["min_instances"], merged["max_instances"])
        if "version" in changes:
            self.deployment_version(current["model"], changes["version"])
        values = {k: merged[k] for k in ("version", "hardware", "min_instances", "max_instances")}
        self.store.update_deployment(
            current["owner"], current["name"], number=current["number"] + 1,
            release_created_at=rfc3339(self.p.clock.now()), **values,
        )
        return self._deployment(current["owner"], current["name"])

    def _deployment(self, owner: str, name: str) -> Row:
        row = self.store.get_deployment(owner, name)
        assert row is not None  # just written, by this (the only) writer
        return row

    def delete_version(self, version: Row) -> None:
        """Remove a version of an own model, with its predictions and weights (Replicate's 202).

        Refused (409) while a deployment runs it, a training is based on it, or jobs on it are
        still queued or running; done at once rather than "within minutes" as on Replicate.
        """
        ref = f"{version['owner']}/{version['name']}:{version['id']}"
        deployments = self.store.deployments_of_version(version["id"])
        if deployments:
            names = ", ".join(f"{d['owner']}/{d['name']}" for d in deployments)
            raise ApiError(
                409, f"Version {ref} is used by deployment {names}; point it at another version or delete it first."
            )
        if self.store.jobs_of_version(version["id"], kind="training"):
            raise ApiError(409, f"Version {ref} is the base of a training and cannot be deleted.")
        if self.store.jobs_of_version(version["id"], statuses=("starting", "processing")):
            raise ApiError(409, f"Version {ref} has predictions still running; cancel them or wait, then delete it.")
        jobs = [j["id"] for j in self.store.jobs_of_version(version["id"])]
        self.store.delete_jobs(jobs)
        for job_id in jobs:
            self._cache.pop(job_id, None)
        self.store.delete_version(version["id"])
        self._validators = {k: v for k, v in self._validators.items() if k[0] != version["id"]}
        weights = self.store.get_file(version["weights_file"]) if version.get("weights_file") else None
        if weights is not None:
            self.delete_file(weights)

    # --- files ----------------------------------------------------------------------------

    def file_path(self, row: Row) -> Path:
        return self.files_dir / Path(row["path"]).name

    def store_file(
        self,
        data: bytes,
        *,
        name: str = "file",
        content_type: str = "application/octet-stream",
        metadata: dict[str, Any] | None = None,
        purpose: str = "upload",
        file_id: str | None = None,
    ) -> Row:
        """Write `data` under a server-made name and record it; returns the file row."""
        fid = file_id or new_id()
        path = self.files_dir / fid
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
        row = {
            "id": fid,
            "name": _safe_display_name(name),
            "content_type": content_type or "application/octet-stream",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "metadata": metadata or {},
            "created_at": rfc3339(self.p.clock.now()),
            "path": fid,
            "purpose": purpose,
        }
        self.store.insert_file(row)
        return row

    def delete_file(self, row: Row) -> None:
        self.store.delete_file(row["id"])
        self.file_path(row).unlink(missing_ok=True)

    # --- creation ----------------------------------------------------------------------

    def create(
        self,
        *,
        kind: JobKind,
        version: Row,
        input: dict[str, Any],
        base_url: str,
        destination: str | None = None,
        webhook: str | None = None,
        webhook_events_filter: list[str] | None = None,
        cancel_after: float | None = None,
        deployment: str | None = None,
    ) -> Row:
        """Store a new job (status `starting`) and queue it. Inputs are already validated."""
        now = self.p.clock.now()
        job_id = new_id()
        context = self._context_for(kind, version, input, job_id)
        job: Row = {
            "id": job_id,
            "kind": kind,
            "model": f"{version['owner']}/{version['name']}",
            "version": version["id"],
            "destination": destination,
            "status": "starting",
            "input": input,
            "output": None,
            "logs": "",
            "error": None,
            "metrics": {},
            "created_at": rfc3339(now),
            "deadline": rfc3339(now + timedelta(seconds=cancel_after)) if cancel_after else None,
            "webhook": webhook,
            "webhook_events_filter": webhook_events_filter,
            "base_url": base_url,
            "source": "api",
            "extra": (
                {"weights_file": context.get("weights_file_id"), "scratch": context.get("scratch_path")}
                if kind == "training" else ({"deployment": deployment} if deployment else {})
            ),
        }
        self.store.insert_job(job)
        self._remember({**job, "started_at": None, "completed_at": None})
        mode = "train" if kind == "training" else "predict"
        self.p.runner.submit(
            job_id, version["engine"], mode, input, lambda k, d: self._on_event(job_id, k, d), context
        )
        if cancel_after:
            loop = asyncio.get_running_loop()
            self._timers[job_id] = loop.call_later(cancel_after, self._deadline, job_id)
        return job

    def _context_for(self, kind: str, version: Row, input: dict[str, Any], job_id: str) -> dict[str, Any]:
        """Server-resolved paths for the engine; nothing here comes from the client verbatim."""
        context: dict[str, Any] = {}
        if version.get("weights_file"):
            file = self.store.get_file(version["weights_file"])
            if file is not None:
                context["weights_path"] = str(self.file_path(file))
        if kind == "training":
            path = self.resolve_train_data(input.get("train_data", ""))
            context["train_text_path"] = str(path)
            if path.parent == self.p.scratch_dir:
                context["scratch_path"] = str(path)  # removed when the training ends
            file_id = new_id()
            context["weights_file_id"] = file_id
            context["weights_path"] = str(self.files_dir / file_id)
        return context

    def resolve_train_data(self, value: Any) -> Path:
        """`train_data`: a file URL of this platform, a `data:` URI, or inline text -> a local path."""
        if not isinstance(value, str) or not value:
            raise InputError(
                "input.train_data", "train_data is required: a file URL of this platform, a data: URI or text"
            )
        if value.startswith("data:"):
            header, sep, payload = value.partition(",")
            if not sep:
                raise InputError("input.train_data", "malformed data: URI (no comma)")
            try:
                data = (
                    base64.b64decode(payload, validate=False)
                    if header.endswith(";base64")
                    else urllib.parse.unquote_to_bytes(payload)
                )
            except (binascii.Error, ValueError):
                raise InputError("input.train_data", "data: URI payload is not valid base64") from None
            return self._scratch(data)
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", value):
            parsed = urllib.parse.urlsplit(value)
            match = _FILE_URL.match(parsed.path)
            file = self.store.get_file(match.group(1)) if match and parsed.scheme in ("http", "https") else None
            if file is None:
                raise InputError(
                    "input.train_data",
                    "train_data URLs must be files uploaded to this platform (POST /v1/files) or data: URIs",
                )
            return self.file_path(file)
        return self._scratch(value.encode("utf-8"))

    def _scratch(self, data: bytes) -> Path:
        path = self.p.scratch_path(".txt")
        path.write_bytes(data)
        return path

    # --- runner events ----------------------------------------------------------------------

    def _on_event(self, job_id: str, kind: str, data: Any) -> None:
        if kind == "start":
            started = {"status": "processing", "started_at": rfc3339(self.p.clock.now())}
            job = self._cache.get(job_id)
            if job is not None:
                # Stored on the next loop step, so a job that also finishes in this step (inline
                # engines) is written once, by `_finish`.
                job.update(started)
                self._start_pending.add(job_id)
                asyncio.get_running_loop().call_soon(self._store_start, job_id)
            else:
                self._update(job_id, **started)
            self._notify("start", job_id)
        elif kind == "log":
            self.store.append_logs(job_id, str(data))
            job = self._cache.get(job_id)
            if job is not None:
                job["logs"] = (job.get("logs") or "") + str(data)
            self._notify("logs", job_id)
        elif kind == "progress":
            pass  # Replicate has no progress field; engines log their progress too
        elif kind == "done":
            self._finish(job_id, "succeeded", output=data.get("output"), predict_time=data.get("predict_time"))
        elif kind == "failed":
            self._finish(job_id, "failed", error=data.get("error"), predict_time=data.get("predict_time"))
        elif kind == "canceled":
            self._finish(job_id, self._cancel_status.pop(job_id, "canceled"))

    def _store_start(self, job_id: str) -> None:
        if job_id in self._start_pending:
            self._start_pending.discard(job_id)
            job = self._cache.get(job_id)
            if job is not None:
                self.store.update_job(job_id, status=job["status"], started_at=job["started_at"])

    def _finish(
        self,
        job_id: str,
        status: str,
        *,
        output: Any = None,
        error: str | None = None,
        predict_time: float | None = None,
    ) -> None:
        job = self.get(job_id)
        if job is None or job["status"] in TERMINAL:
            return
        now = self.p.clock.now()
        if status == "succeeded" and job["kind"] == "training":
            try:
                output = self._register_trained_version(job, output)
            except Exception as exc:  # the weights vanished or the destination was removed
                status, output, error = "failed", None, f"Training failed: could not register the new version: {exc}"
        metrics: dict[str, Any] = {"total_time": round((now - parse_rfc3339(job["created_at"])).total_seconds(), 6)}
        if predict_time is not None and job["started_at"]:
            metrics["predict_time"] = round(predict_time, 6)
        values: dict[str, Any] = {"status": status, "completed_at": rfc3339(now), "metrics": metrics}
        if status == "succeeded":
            values["output"] = output
        if error is not None:
            values["error"] = error
        if job_id in self._start_pending:
            self._start_pending.discard(job_id)
            values["started_at"] = job["started_at"]
        self._update(job_id, **values)
        timer = self._timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()
        scratch = (job.get("extra") or {}).get("scratch")
        if scratch:
            Path(scratch).unlink(missing_ok=True)
        if status == "succeeded" and output is not None:
            # Built-in models produce their output at the end; it is still new output, so
            # `output` subscribers hear of it (before `completed`, as on Replicate).
            self._notify("output", job_id)
        self._notify("completed", job_id)
        for fut in self._waiters.pop(job_id, []):
            if not fut.done():
                fut.set_result(None)

    def _register_trained_version(self, job: Row, result: Any) -> dict[str, str]:
        file_id = (job.get("extra") or {}).get("weights_file")
        if not file_id:
            raise RuntimeError("the training recorded no weights file")
        path = self.files_dir / file_id
        data = path.read_bytes()
        owner, name = job["destination"].split("/", 1)
        if self.store.get_model(owner, name) is None:
            raise RuntimeError(f"the destination model {job['destination']} no longer exists")
        file = self.store_file(
            data, name=f"{name}-weights.json", content_type="application/json", purpose="weights", file_id=file_id
        )
        version_id = hashlib.sha256(f"{job['id']}:{file['sha256']}".encode()).hexdigest()
        self.store.insert_version(
            {
                "id": version_id,
                "owner": owner,
                "name": name,
                "engine": "ngram",
                "weights_file": file_id,
                "openapi_schema": catalog.trained_ngram_schema(),
                "cog_version": catalog.COG_VERSION,
                "created_at": rfc3339(self.p.clock.now()),
            }
        )
        return {"version": f"{owner}/{name}:{version_id}", "weights": f"{job['base_url']}/v1/files/{file_id}/download"}

    def _notify(self, event: str, job_id: str) -> None:
        """Send the job's webhook for `event` (`start`, `output`, `logs`, `completed`), if it has one."""
        job = self.get(job_id)
        if job is None or not job.get("webhook"):
            return
        try:
            self.webhooks.emit(
                job_id, event, render_job(job, job["base_url"]),
                webhook=job["webhook"], events_filter=job.get("webhook_events_filter"),
            )
        except Exception:  # a webhook bug must never break a job
            log.exception("queueing a webhook failed")

    # --- cancel, deadlines, waiting -----------------------------------------------------------

    def cancel(self, job_id: str, *, deadline: bool = False) -> None:
        job = self.get(job_id)
        if job is None or job["status"] in TERMINAL:
            return
        queued = job["status"] == "starting"
        status = "aborted" if (deadline and queued) else "canceled"
        self._cancel_status[job_id] = status
        if not self.p.runner.cancel(job_id):  # no longer held by the runner (e.g. finishing)
            self._cancel_status.pop(job_id, None)
            self._finish(job_id, status)

    def _deadline(self, job_id: str) -> None:
        self._timers.pop(job_id, None)
        self.cancel(job_id, deadline=True)

    async def wait(self, job_id: str, timeout: float) -> None:
        """Return when the job is terminal or `timeout` seconds passed."""
        job = self.get(job_id)
        if job is None or job["status"] in TERMINAL:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(job_id)
            if waiters and fut in waiters:
                waiters.remove(fut)

    def _recover_after_restart(self) -> None:
        """Jobs that were queued or running when the server stopped cannot resume: mark them failed."""
        now = rfc3339(self.p.clock.now())
        for job in self.store.jobs_with_status(["starting", "processing"]):
            self.store.update_job(job["id"], status="failed", error=RESTART_ERROR, completed_at=now)

    def _close(self) -> None:
        try:
            self.webhooks.close(timeout=2.0)  # let final `completed` deliveries go out
        except Exception:
            log.exception("closing the webhook sender failed")
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


def _check_instances(low: int, high: int) -> None:
    if low > high:
        raise invalid_fields(
            [("range", "min_instances", f"min_instances ({low}) must not be more than max_instances ({high})")]
        )


def _safe_display_name(name: str) -> str:
    """Keep only the last path component of a client-given file name (display only)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip() or "file"
    return base[:255]
