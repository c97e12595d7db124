"""The Replicate HTTP API v1 provider (also the wire the local platform speaks).

Predictions and trainings are created, read, canceled and listed here; files are uploaded through
`POST /v1/files`; destination models are read and created; a version's input schema is fetched
once and cached (versions are immutable). Every request goes through `HttpClient`, so retries,
rate limits and error translation are the same everywhere.

Bulk refresh (`refresh_many`) is what keeps plans cheap: the list endpoints return 100 jobs a page,
newest first, so N tracked jobs cost about N/100 requests instead of N.

Wire facts (see docs/providers.md): statuses `starting|processing|succeeded|failed|canceled|
aborted`; RFC 3339 timestamps with up to 9 fractional digits; list pages `{next, previous,
results}` with absolute cursor URLs; `created_after` on the predictions list only; a training's
result is `output.version` = `dest_owner/dest_name:<version id>`.
"""
from __future__ import annotations

import asyncio
import json
import mimetypes
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from jobrunner.errors import NotFoundError, ProtocolError, UsageError
from jobrunner.providers.adapter import split_version
from jobrunner.providers.base import (
    ABORTED,
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
from jobrunner.providers.http import HttpClient, upload_seconds
from jobrunner.providers.ratelimit import CREATE, OTHER
from jobrunner.providers.replicate_deployments import ReplicateDeployments, deployment_path
from jobrunner.providers.settings import ClientContext
from jobrunner.providers.sync_create import SyncCreatePolicy
from jobrunner.resources import JobKind
from jobrunner.timestamps import REFRESH_LOOKBACK, parse_rfc3339, to_rfc3339

TRAINING, PREDICTION = JobKind.TRAINING, JobKind.PREDICTION

STATUS_MAP = {
    "starting": PENDING,
    "processing": RUNNING,
    "succeeded": SUCCEEDED,
    "failed": FAILED,
    "canceled": CANCELED,
    "aborted": ABORTED,
}

# Request fields each create endpoint takes (prediction requests reject unknown keys with 422).
PREDICTION_FIELDS = ("input", "webhook", "webhook_events_filter")
TRAINING_FIELDS = ("input", "webhook", "webhook_events_filter")

PAGE_SIZE = 100
REFRESH_CONCURRENCY = 16
UPLOAD_TIMEOUT = httpx.Timeout(300.0, connect=10.0, pool=60.0)
SYNC_READ_MARGIN = 10.0  # seconds beyond a Prefer: wait hold before a create's answer is overdue

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# The Replicate wire's names for jobrunner.timestamps' parser and formatter (`created_after`
# takes microseconds, as the API shows them).
parse_time = parse_rfc3339


def format_time(when: datetime) -> str:
    return to_rfc3339(when, timespec="microseconds")


def _owner_name(model: str, what: str) -> tuple[str, str]:
    owner, sep, name = model.partition("/")
    if not sep or not owner or not name or "/" in name:
        raise UsageError(f"{what}: {model!r} is not an owner/name model reference")
    return owner, name


def job_from_json(data: Any, job_kind: str) -> RemoteJob:
    """A Replicate prediction/training object as a provider-neutral RemoteJob."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise ProtocolError(f"expected a {job_kind} object with an id, got {str(data)[:120]!r}")
    raw_status = data.get("status")
    status = STATUS_MAP.get(raw_status, UNKNOWN) if isinstance(raw_status, str) else UNKNOWN
    output = data.get("output")
    extra: dict[str, Any] = {}
    for key in ("source", "deadline", "data_removed", "destination", "urls"):
        if data.get(key) is not None:
            extra[key] = data[key]
    if job_kind == TRAINING and isinstance(output, dict) and isinstance(output.get("version"), str):
        # The API does not echo the destination; the new version names it (as the official client does).
        dest, _, new_version = output["version"].rpartition(":")
        if dest:
            extra.setdefault("destination", dest)
        extra["trained_version"] = new_version or output["version"]
    # List pages may abridge jobs; remember whether this one carried its output at all.
    extra["partial"] = "output" not in data
    metrics = data.get("metrics")
    error = data.get("error")
    return RemoteJob(
        id=data["id"],
        job_kind=job_kind,
        status=status,
        raw_status=raw_status if isinstance(raw_status, str) else None,
        created_at=parse_time(data.get("created_at")),
        started_at=parse_time(data.get("started_at")),
        completed_at=parse_time(data.get("completed_at")),
        input=data.get("input") if isinstance(data.get("input"), dict) else None,
        output=output,
        error=error if isinstance(error, str) or error is None else json.dumps(error),
        metrics=metrics if isinstance(metrics, dict) else {},
        model=data.get("model") if isinstance(data.get("model"), str) else None,
        version=data.get("version") if isinstance(data.get("version"), str) else None,
        extra=extra,
    )


def _collection(job_kind: str) -> str:
    if job_kind == TRAINING:
        return "/v1/trainings"
    if job_kind == PREDICTION:
        return "/v1/predictions"
    raise UsageError(f"the Replicate API has no {job_kind!r} jobs (expected training or prediction)")


class ReplicateProvider(ReplicateDeployments):
    """Replicate HTTP API v1 behind the `Provider` interface, plus models, schemas, bulk refresh,
    and deployments (`ReplicateDeployments`)."""

    name = "replicate"

    def __init__(
        self,
        http: HttpClient,
        *,
        name: str | None = None,
        schema_cache_dir: Path | None = None,
        sync_create: SyncCreatePolicy | None = None,
    ) -> None:
        self.http = http
        # Prediction creates ask to be held until done while that pays (see sync_create.py).
        self.sync_create = sync_create if sync_create is not None else SyncCreatePolicy()
        if name:
            self.name = name
        self.schema_cache_dir = schema_cache_dir
        self._schemas: dict[str, dict[str, Any] | None] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.http.base_url!r})"

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- jobs -------------------------------------------------------------------------------

    async def create(self, req: CreateRequest) -> RemoteJob:
        """Create a prediction or training. Never retried blindly (see HttpClient.request)."""
        headers = {"Cancel-After": req.cancel_after} if req.cancel_after else None
        model, version = split_version(req.model, req.version or req.body.get("version"))
        if req.job_kind == PREDICTION:
            prefer = self.sync_create.header()
            if prefer:
                headers = {**(headers or {}), "Prefer": prefer}
            body = {k: req.body[k] for k in PREDICTION_FIELDS if k in req.body}
            body.setdefault("input", {})
            if req.deployment:
                # deployments.predictions.create takes schemas_prediction_request: no version.
                path = f"{deployment_path(req.deployment)}/predictions"
            elif version:
                path = "/v1/predictions"
                body = {"version": version, **body}
            elif model:
                owner, name = _owner_name(model, "prediction model")
                path = f"/v1/models/{owner}/{name}/predictions"
            else:
                raise UsageError("a Replicate prediction needs a version (or an official model name)")
            timeout = None
            if prefer and self.sync_create.wait_seconds:
                # The server holds the answer up to the wait: a read timeout shorter than that
                # would turn every held create into an ambiguous one.
                base = self.http.timeout
                hold = float(self.sync_create.wait_seconds) + SYNC_READ_MARGIN
                if base.read is not None and base.read < hold:
                    timeout = httpx.Timeout(connect=base.connect, read=hold, write=base.write, pool=base.pool)
            data = await self.http.request_json(
                "POST", path, json=body, headers=headers, idempotent=False, request_class=CREATE,
                what="create prediction", timeout=timeout,
            )
            job = job_from_json(data, PREDICTION)
            if prefer:
                self.sync_create.observe(job.terminal)
            return job
        if req.job_kind == TRAINING:
            destination = req.destination or req.body.get("destination")
            if not (model and version and destination):
                raise UsageError("a Replicate training needs model, version and destination")
            owner, name = _owner_name(model, "training model")
            _owner_name(destination, "training destination")
            body = {"destination": destination, **{k: req.body[k] for k in TRAINING_FIELDS if k in req.body}}
            body.setdefault("input", {})
            data = await self.http.request_json(
                "POST",
                f"/v1/models/{owner}/{name}/versions/{version}/trainings",
                json=body,
                headers=headers,
                idempotent=False,
                # Replicate counts training creates in its general bucket, not the 600/min one.
                request_class=OTHER,
                what="create training",
            )
            job = job_from_json(data, TRAINING)
            job.extra.setdefault("destination", destination)
            return job
        _collection(req.job_kind)
        raise AssertionError("unreachable")

    async def get(self, job_kind: str, remote_id: str, *, project_id: str | None = None) -> RemoteJob:
        data = await self.http.request_json(
            "GET", f"{_collection(job_kind)}/{remote_id}", what=f"get {job_kind} {remote_id}"
        )
        return check_id(job_from_json(data, job_kind), remote_id, self.name, f"get {job_kind} {remote_id}")

    async def cancel(self, job_kind: str, remote_id: str, *, project_id: str | None = None) -> None:
        # Canceling twice is harmless, so a cancel may be retried like a read.
        await self.http.request(
            "POST", f"{_collection(job_kind)}/{remote_id}/cancel", idempotent=True,
            what=f"cancel {job_kind} {remote_id}",
        )

    async def logs(self, job_kind: str, remote_id: str, *, project_id: str | None = None) -> str:
        """The job's log; a long one is its last `max_log_bytes`, after a truncation marker line."""
        data = await self.http.request_json(
            "GET", f"{_collection(job_kind)}/{remote_id}", what=f"get {job_kind} {remote_id}",
            log_bytes=self.http.max_log_bytes,
        )
        logs = data.get("logs") if isinstance(data, dict) else None
        return logs if isinstance(logs, str) else ""

    async def pages(
        self, job_kind: str, *, since: datetime | None = None
    ) -> AsyncGenerator[list[RemoteJob], None]:
        """Pages of the list endpoint, newest first, following `next` cursors.

        With `since`, the server is asked to filter (`created_after`, predictions only) and the
        walk stops after the first page that reaches past `since`; jobs older than it are dropped.
        """
        path: str | None = _collection(job_kind)
        params: dict[str, str] | None = None
        if since is not None and job_kind == PREDICTION:
            params = {"created_after": format_time(since)}
        seen: set[str] = set()
        while path:
            data = await self.http.request_json("GET", path, params=params, what=f"list {job_kind}s")
            params = None  # a `next` URL carries its own query
            if not isinstance(data, dict) or not isinstance(data.get("results"), list):
                raise ProtocolError(
                    f"{self.name}: list {job_kind}s: expected a page {{next, previous, results}}, "
                    f"got {str(data)[:120]!r}",
                    provider=self.name,
                )
            jobs = [job_from_json(item, job_kind) for item in data["results"]]
            past = since is not None and any(j.created_at is not None and j.created_at < since for j in jobs)
            if since is not None:
                jobs = [j for j in jobs if j.created_at is None or j.created_at >= since]
            yield jobs
            nxt = data.get("next")
            if past or not isinstance(nxt, str) or not nxt or nxt in seen:
                return
            seen.add(nxt)
            path = nxt

    async def list(
        self, job_kind: str, *, since: datetime | None = None, project_id: str | None = None
    ) -> AsyncIterator[RemoteJob]:
        """Every job of the account, newest first; stops once past `since` when given."""
        async for page in self.pages(job_kind, since=since):
            for job in page:
                yield job

    async def refresh_many(
        self,
        job_kind: str,
        ids: Iterable[str],
        oldest: datetime | None = None,
        *,
        project_id: str | None = None,
    ) -> dict[str, RemoteJob]:
        """Current state of many jobs in about len(ids)/100 requests.

        Walks list pages (100 a page, newest first) back to `oldest` (the earliest creation time
        of the tracked jobs, minus `timestamps.REFRESH_LOOKBACK`), then GETs the ids the list did not
        show (without `oldest`, the walk is bounded by that cost rule alone). The walk also stops as
        soon as fetching the remaining ids one by one would be cheaper than the pages already spent.
        Jobs the provider no longer knows (404) come back with status GONE. Jobs a list page abridged
        (terminal, without their output) are fetched in full, since the output is what the
        reconciler records.
        """
        wanted = set(ids)
        found: dict[str, RemoteJob] = {}
        if not wanted:
            return found
        since: datetime | None = None
        if oldest is not None:
            if oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=UTC)
            since = oldest - REFRESH_LOOKBACK
        pages = 0
        if len(wanted) > 1:
            walker = self.pages(job_kind, since=since)
            try:
                async for page in walker:
                    pages += 1
                    for job in page:
                        if job.id in wanted and not (job.terminal and job.extra.get("partial")):
                            found[job.id] = job
                    missing = len(wanted) - len(found)
                    if missing == 0 or pages >= missing:
                        break
            finally:
                await walker.aclose()
        missing_ids = sorted(wanted - set(found))
        semaphore = asyncio.Semaphore(REFRESH_CONCURRENCY)

        async def fetch(remote_id: str) -> None:
            async with semaphore:
                try:
                    found[remote_id] = await self.get(job_kind, remote_id)
                except NotFoundError:
                    found[remote_id] = RemoteJob(id=remote_id, job_kind=job_kind, status=GONE, raw_status=None)

        await asyncio.gather(*(fetch(i) for i in missing_ids))
        return found

    # -- files ------------------------------------------------------------------------------

    async def upload(self, path: str, *, project_id: str | None = None) -> str:
        """Upload a local file through `POST /v1/files`; return its `urls.get` for the input."""
        file = Path(path)
        try:
            content = file.read_bytes()
        except OSError as exc:
            raise UsageError(
                f"cannot read {path} to upload it: {exc.strerror or exc}", hint="check the $file path in the manifest"
            ) from None
        ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        data = await self.http.request_json(
            "POST",
            "/v1/files",
            files={"content": (file.name, content, ctype)},
            # A repeated upload only leaves a spare copy behind, so it is safe to retry.
            idempotent=True,
            what=f"upload {file.name}",
            timeout=UPLOAD_TIMEOUT,
            attempt_timeout=upload_seconds(len(content)),
        )
        url = (data.get("urls") or {}).get("get") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url:
            raise ProtocolError(f"{self.name}: upload {file.name}: the answer has no urls.get", provider=self.name)
        return url

    # -- models and versions ----------------------------------------------------------------

    async def get_model(self, owner: str, name: str) -> dict[str, Any]:
        """The model object; NotFoundError when it does not exist (see `model_exists`)."""
        data = await self.http.request_json("GET", f"/v1/models/{owner}/{name}", what=f"get model {owner}/{name}")
        if not isinstance(data, dict):
            raise ProtocolError(f"{self.name}: get model {owner}/{name}: expected a model object", provider=self.name)
        return data

    async def model_exists(self, owner: str, name: str) -> bool:
        try:
            await self.get_model(owner, name)
        except NotFoundError:
            return False
        return True

    async def create_model(
        self,
        owner: str,
        name: str,
        visibility: str = "private",
        hardware: str = "cpu",
        description: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"owner": owner, "name": name, "visibility": visibility, "hardware": hardware}
        if description:
            body["description"] = description
        data = await self.http.request_json(
            "POST", "/v1/models", json=body, idempotent=False, what=f"create model {owner}/{name}"
        )
        return data if isinstance(data, dict) else {}

    async def delete_version(self, model: str | None, version: str) -> bool:
        """DELETE a model version (`lifecycle.on_remove: delete_version`). Replicate answers 202 and
        removes it with its predictions and output files "within minutes".

        True when this call deleted it, False when it was already gone (404): a removal is done
        either way, so a retry after a lost answer is safe. `version` is an id or `owner/name:id`.
        """
        model_ref, vid = split_version(model, version)
        if not model_ref or not isinstance(vid, str) or not _HEX64.match(vid):
            raise UsageError(f"delete version: need owner/name and a 64-hex version id, got {model!r} {version!r}")
        owner, name = _owner_name(model_ref, "delete version")
        try:
            await self.http.request(
                "DELETE", f"/v1/models/{owner}/{name}/versions/{vid}", idempotent=True,
                what=f"delete version {owner}/{name}:{vid[:12]}",
            )
        except NotFoundError:
            return False
        finally:
            self._schemas.pop(vid, None)
        return True

    async def get_version_openapi(self, model: str, version: str) -> dict[str, Any] | None:
        """The version's Cog `openapi_schema` (cached in memory and, when configured, on disk)."""
        model_ref, vid = split_version(model, version)
        if not model_ref or not vid:
            raise UsageError(f"need owner/name and a version id to fetch a schema, got {model!r} {version!r}")
        if vid in self._schemas:
            return self._schemas[vid]
        cached = self._read_cache(vid)
        if cached is not None:
            self._schemas[vid] = cached
            return cached
        owner, name = _owner_name(model_ref, "model")
        data = await self.http.request_json(
            "GET", f"/v1/models/{owner}/{name}/versions/{vid}", what=f"get version {owner}/{name}:{vid[:12]}"
        )
        schema = data.get("openapi_schema") if isinstance(data, dict) else None
        schema = schema if isinstance(schema, dict) else None
        self._schemas[vid] = schema
        if schema is not None:
            self._write_cache(vid, schema)
        return schema

    async def get_version_schema(self, model: str, version: str, job_kind: str = PREDICTION) -> dict[str, Any] | None:
        """The JSON Schema of the version's input (`Input`, or `TrainingInput` for trainings).

        Returned self-contained: the OpenAPI `components` ride along so the `$ref`s Cog writes
        (`#/components/schemas/...`, e.g. for enums) resolve when validating against it. None
        when the version publishes no such schema.
        """
        openapi = await self.get_version_openapi(model, version)
        if not openapi:
            return None
        components = openapi.get("components")
        schemas = components.get("schemas") if isinstance(components, dict) else None
        key = "TrainingInput" if job_kind == TRAINING else "Input"
        schema = schemas.get(key) if isinstance(schemas, dict) else None
        if not isinstance(schema, dict):
            return None
        return {**schema, "components": components}

    def _cache_file(self, vid: str) -> Path | None:
        if self.schema_cache_dir is None or not _HEX64.match(vid):
            return None
        return self.schema_cache_dir / f"{vid}.json"

    def _read_cache(self, vid: str) -> dict[str, Any] | None:
        path = self._cache_file(vid)
        if path is None:
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _write_cache(self, vid: str, schema: dict[str, Any]) -> None:
        path = self._cache_file(vid)
        if path is None:
            return
        try:  # a cache: failing to write it only costs a request next time
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(schema, sort_keys=True), encoding="utf-8")
            tmp.replace(path)
        except OSError:
            pass


def build_client(ctx: ClientContext) -> ReplicateProvider:
    """A Replicate-wire client for a hosted provider: the adapter's endpoint (for Replicate:
    `REPLICATE_API_TOKEN`, `REPLICATE_BASE_URL` or `providers.replicate.base_url`, its documented
    rate limits unless jobrunner.yaml sets others)."""
    return ReplicateProvider(ctx.hosted_http(), name=ctx.name, schema_cache_dir=ctx.schema_cache_dir,
                             sync_create=ctx.sync_create())


__all__ = [
    "ReplicateProvider", "STATUS_MAP", "build_client", "format_time", "job_from_json", "parse_time", "split_version",
]
