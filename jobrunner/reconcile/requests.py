"""From a desired job to the provider's `CreateRequest`: version splitting, file uploads, headers.

`DesiredJob.request` is provider-neutral and may still hold `{$file: path}` markers; they are
uploaded here, just before the create (Replicate files API, Emissary datasets), never at plan time.
Webhook, timeout and the like are not part of the fingerprint, so they are read from the resource
spec when the request does not carry them.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Awaitable, Callable

from jobrunner.errors import UsageError
from jobrunner.providers.base import CreateRequest
from jobrunner.resources import JOB_PREDICTION, JOB_TRAINING, DesiredJob

# Fields of the Emissary CreateTrainingJobRequestBody (reference/emissary/api.md).
EMISSARY_BODY_FIELDS = (
    "base_model", "train_dataset_id", "test_dataset_id", "train_test_split_ratio",
    "description", "parameters", "hf_model_link", "name",
)
_PASS_THROUGH = ("webhook", "webhook_events_filter")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_json(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def split_version(model: str | None, version: str | None) -> tuple[str | None, str | None]:
    """`owner/name:id` -> (owner/name, id); a bare id keeps the given model."""
    if version and ":" in version:
        m, _, v = version.partition(":")
        return (m or model), v
    return model, version


def is_file_marker(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "$file" in value


def file_markers(value: Any, path: str = "") -> dict[str, str]:
    """JSON-ish paths of every `{$file: p}` marker inside a value -> p."""
    out: dict[str, str] = {}
    if is_file_marker(value):
        out[path] = str(value["$file"])
    elif isinstance(value, dict):
        for k, v in value.items():
            out.update(file_markers(v, f"{path}.{k}" if path else str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.update(file_markers(v, f"{path}[{i}]"))
    return out


async def upload_files(value: Any, upload: Callable[[str], Awaitable[str]], base_dirs: list[Path]) -> Any:
    """Return a copy of `value` with each `{$file: p}` replaced by what `upload(abs_path)` returns."""
    if is_file_marker(value):
        rel = str(value["$file"])
        for base in base_dirs:
            candidate = (base / rel)
            if candidate.is_file():
                return await upload(str(candidate))
        raise UsageError(f"input file {rel!r} not found", hint="paths in {$file: ...} are relative to the manifest file")
    if isinstance(value, dict):
        return {k: await upload_files(v, upload, base_dirs) for k, v in value.items()}
    if isinstance(value, list):
        return [await upload_files(v, upload, base_dirs) for v in value]
    return value


def create_request(job: DesiredJob, spec: dict[str, Any], request: dict[str, Any] | None = None) -> CreateRequest:
    """Build the provider request from a resolved job request (files already uploaded or not)."""
    req = dict(job.request if request is None else request)
    if job.provider == "emissary":
        body_src = req.get("body") if isinstance(req.get("body"), dict) else req
        body = {k: v for k, v in body_src.items() if k in EMISSARY_BODY_FIELDS}
        project_id = req.get("project_id") or body_src.get("project_id") or spec.get("project_id")
        return CreateRequest(job_kind=JOB_TRAINING, body=body, project_id=project_id)
    model, version = split_version(req.get("model") or spec.get("model"), req.get("version"))
    body: dict[str, Any] = {"input": req.get("input") or {}}
    for key in _PASS_THROUGH:
        value = req.get(key, spec.get(key))
        if value is not None:
            body[key] = value
    cancel_after = None
    if job.job_kind == JOB_PREDICTION and spec.get("timeout") is not None:
        # Replicate enforces this itself (Cancel-After header, predictions only).
        cancel_after = str(spec["timeout"])
    return CreateRequest(
        job_kind=job.job_kind,
        body=body,
        model=model,
        version=version,
        destination=req.get("destination") if job.job_kind == JOB_TRAINING else None,
        cancel_after=cancel_after,
    )


def request_digest(req: CreateRequest) -> str:
    """sha256 of everything that identifies a create (recorded in the write-ahead intent)."""
    return sha256_json({
        "job_kind": req.job_kind, "model": req.model, "version": req.version,
        "destination": req.destination, "project_id": req.project_id, "body": req.body,
    })
