"""From a desired job to the provider's `CreateRequest`: file uploads, then the adapter's request form.

`DesiredJob.request` is provider-neutral and may still hold `{$file: path}` markers; they are
uploaded here, just before the create (Replicate files API, Emissary datasets), never at plan time.
Webhook, timeout and the like are not part of the fingerprint, so they are read from the resource
spec when the request does not carry them.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jobrunner.errors import UsageError
from jobrunner.fingerprint import FILE_MARKER, fingerprint, is_file_marker
from jobrunner.providers.adapter import split_version
from jobrunner.providers.adapters import adapter_for
from jobrunner.providers.base import CreateRequest
from jobrunner.resources import DesiredJob


def file_markers(value: Any, path: str = "") -> dict[str, str]:
    """JSON-ish paths of every `{$file: p}` marker inside a value -> p."""
    out: dict[str, str] = {}
    if is_file_marker(value):
        out[path] = str(value[FILE_MARKER])
    elif isinstance(value, dict):
        for k, v in value.items():
            out.update(file_markers(v, f"{path}.{k}" if path else str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.update(file_markers(v, f"{path}[{i}]"))
    return out


def has_file_marker(value: Any) -> bool:
    """Whether a `{$file: p}` marker is anywhere inside `value` (a plain walk: most requests hold
    none, and `upload_files` copies the value a coroutine per node to find out)."""
    if isinstance(value, dict):
        if is_file_marker(value):
            return True
        return any(has_file_marker(v) for v in value.values() if isinstance(v, (dict, list)))
    if isinstance(value, list):
        return any(has_file_marker(v) for v in value if isinstance(v, (dict, list)))
    return False


async def upload_files(value: Any, upload: Callable[[str], Awaitable[str]], base_dirs: list[Path]) -> Any:
    """Return a copy of `value` with each `{$file: p}` replaced by what `upload(abs_path)` returns."""
    if is_file_marker(value):
        rel = str(value[FILE_MARKER])
        for base in base_dirs:
            candidate = (base / rel)
            if candidate.is_file():
                return await upload(str(candidate))
        raise UsageError(f"input file {rel!r} not found",
                         hint="paths in {$file: ...} are relative to the manifest file")
    if isinstance(value, dict):
        return {k: await upload_files(v, upload, base_dirs) for k, v in value.items()}
    if isinstance(value, list):
        return [await upload_files(v, upload, base_dirs) for v in value]
    return value


def create_request(job: DesiredJob, spec: dict[str, Any], request: dict[str, Any] | None = None) -> CreateRequest:
    """Build the provider request from a resolved job request (files already uploaded or not):
    each provider's adapter knows its own request form."""
    return adapter_for(job.provider).create_request(job, spec, request)


def request_digest(req: CreateRequest) -> str:
    """sha256 of everything that identifies a create (recorded in the write-ahead intent)."""
    identity: dict[str, Any] = {
        "job_kind": req.job_kind, "model": req.model, "version": req.version,
        "destination": req.destination, "project_id": req.project_id, "body": req.body,
    }
    # Only when set, so the digests of intents recorded before deployments existed stay the same.
    for key in ("deployment", "endpoint"):
        if getattr(req, key) is not None:
            identity[key] = getattr(req, key)
    return fingerprint(identity)


__all__ = ["create_request", "file_markers", "has_file_marker", "is_file_marker", "request_digest", "split_version",
           "upload_files"]
