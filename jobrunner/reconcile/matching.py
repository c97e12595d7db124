"""Exactly-once creation: recognise, among a provider's recent jobs, the one a lost create made.

After a crash between "create sent" and "id recorded", or an ambiguous failure (timeout, dropped
connection, 5xx), the job may or may not exist. We never re-send blindly: we list the provider's
jobs created since the intent (minus a small clock skew) and match on what the request asked for.
Uploaded files get a fresh URL per upload, so inputs are compared everywhere except at the places
that held a `{$file: ...}` marker. Remote ids already recorded in state are never matched again.

A provider's list may lag behind its jobs (an eventually consistent index): a job created a moment
ago can be missing from the list while a GET already finds it. So "not found" is only concluded
once the list has been read again after `lookup_window` seconds have passed since the create
attempt (default `DEFAULT_LOOKUP_WINDOW`, set with `JOBRUNNER_LOOKUP_WINDOW`, in seconds).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from jobrunner.fingerprint import is_file_marker
from jobrunner.providers.adapter import split_version
from jobrunner.providers.base import CreateRequest, RemoteJob
from jobrunner.redact import REDACTED
from jobrunner.timestamps import CLOCK_SKEW

DEFAULT_LOOKUP_WINDOW = 10.0  # seconds a provider's list may lag behind a job just created
LOOKUP_WINDOW_ENV = "JOBRUNNER_LOOKUP_WINDOW"
LOOKUP_WINDOW_MAX = 600.0


def lookup_window(env: Mapping[str, str]) -> float:
    """Seconds after a create attempt during which a lookup that finds nothing lists again.

    From `JOBRUNNER_LOOKUP_WINDOW` (0 trusts the first listing); an unusable value is a ConfigError.
    """
    from jobrunner.errors import ConfigError

    text = env.get(LOOKUP_WINDOW_ENV)
    if text is None or not text.strip():
        return DEFAULT_LOOKUP_WINDOW
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= LOOKUP_WINDOW_MAX:
        raise ConfigError(f"{LOOKUP_WINDOW_ENV}={text!r}: expected a number of seconds from 0 to {LOOKUP_WINDOW_MAX:g}",
                          hint=f"unset it for the default of {DEFAULT_LOOKUP_WINDOW:g} seconds")
    return value


def next_listing_delay(elapsed_listings: int, remaining: float) -> float:
    """How long to wait before listing again: 2 s after the first listing, then the rest of the
    window. Every listing holds back the creates of its provider (see creategate), so a lookup
    that finds nothing lists three times at most."""
    return max(0.0, min(remaining, 2.0) if elapsed_listings == 0 else remaining)


def _is_wildcard(desired: Any) -> bool:
    """Values we cannot compare: a local file (uploaded under a fresh URL each time, recorded as
    `{$file: p}` or, in state, as `{$file_sha256: d}`) and a redacted secret."""
    if is_file_marker(desired):
        return True
    if isinstance(desired, dict) and set(desired) <= {"$file", "$file_sha256"} and desired:
        return True
    return desired == REDACTED


def _same_input(desired: Any, remote: Any) -> bool:
    if _is_wildcard(desired):
        return remote is not None  # any uploaded value stands for the file
    if isinstance(desired, dict):
        if not isinstance(remote, dict) or set(desired) - set(remote):
            return False
        # The remote may echo defaults we did not send; keys we sent must agree.
        return all(_same_input(v, remote.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(remote, list) and len(desired) == len(remote) and all(
            _same_input(a, b) for a, b in zip(desired, remote, strict=True))
    if isinstance(desired, bool) or isinstance(remote, bool):
        return desired is remote
    if isinstance(desired, (int, float)) and isinstance(remote, (int, float)):
        return float(desired) == float(remote)
    return desired == remote


def matches(remote: RemoteJob, req: CreateRequest, *, desired_body: dict[str, Any] | None = None) -> bool:
    """Does `remote` look like what `req` would have created? (`desired_body`: body before uploads.)"""
    body = desired_body if desired_body is not None else req.body
    if remote.job_kind != req.job_kind:
        return False
    if req.project_id is not None or req.model is None and "base_model" in body:
        if req.project_id and remote.project_id and remote.project_id != req.project_id:
            return False
        base = body.get("base_model")
        if base and remote.model and remote.model != base:
            return False
        for key in ("description", "parameters", "hf_model_link", "train_test_split_ratio"):
            if key in body and key in remote.extra and not _same_input(body[key], remote.extra[key]):
                return False
        # The detail names its datasets as objects; trainings may differ by nothing else.
        for key, field in (("train_dataset_id", "train_dataset"), ("test_dataset_id", "test_dataset")):
            got = remote.extra.get(field)
            got_id = got.get("id") if isinstance(got, dict) else None
            if body.get(key) and got_id and got_id != body[key]:
                return False
        return True
    _, want_version = split_version(req.model, req.version)
    _, got_version = split_version(remote.model, remote.version)
    if want_version and got_version and want_version != got_version:
        return False
    if req.destination and remote.extra.get("destination") and remote.extra["destination"] != req.destination:
        return False
    return _same_input(body.get("input") or {}, remote.input or {})


def mismatches(remote: RemoteJob, req: CreateRequest, *, desired_body: dict[str, Any] | None = None) -> list[str]:
    """What makes `remote` not what `req` would have created, one phrase each (empty when `matches`).

    For `jobrunner import`, which must say what differs. The same rules as `matches`, and never an
    input value (it may be sensitive): only where inputs differ. Versions and models are shown.
    """
    body = desired_body if desired_body is not None else req.body
    if remote.job_kind != req.job_kind:
        return [f"kind: the manifest declares a {req.job_kind}, the remote job is a {remote.job_kind}"]
    if req.project_id is not None or req.model is None and "base_model" in body:
        return _emissary_mismatches(remote, req, body)
    found: list[str] = []
    _, want_version = split_version(req.model, req.version)
    _, got_version = split_version(remote.model, remote.version)
    if want_version and got_version and want_version != got_version:
        found.append(f"version: the manifest runs {want_version}, the remote job ran {got_version}")
    if req.destination and remote.extra.get("destination") and remote.extra["destination"] != req.destination:
        found.append(f"destination: the manifest trains into {req.destination}, "
                     f"the remote job into {remote.extra['destination']}")
    found += _input_differences(body.get("input") or {}, remote.input or {}, "input")
    return found


def _emissary_mismatches(remote: RemoteJob, req: CreateRequest, body: dict[str, Any]) -> list[str]:
    found: list[str] = []
    if req.project_id and remote.project_id and remote.project_id != req.project_id:
        found.append(f"project: the manifest's is {req.project_id}, the remote job's {remote.project_id}")
    base = body.get("base_model")
    if base and remote.model and remote.model != base:
        found.append(f"base_model: the manifest's is {base}, the remote job's {remote.model}")
    for key in ("description", "parameters", "hf_model_link", "train_test_split_ratio"):
        if key in body and key in remote.extra and not _same_input(body[key], remote.extra[key]):
            found.append(f"{key} differs")
    for key, field in (("train_dataset_id", "train_dataset"), ("test_dataset_id", "test_dataset")):
        got = remote.extra.get(field)
        got_id = got.get("id") if isinstance(got, dict) else None
        if body.get(key) and got_id and got_id != body[key]:
            found.append(f"{key}: the manifest's is {body[key]}, the remote job's {got_id}")
    return found


def _input_differences(desired: Any, remote: Any, path: str) -> list[str]:
    """Where `_same_input(desired, remote)` fails, as `input.a.b differs` / `... missing` phrases."""
    if _is_wildcard(desired):
        return [] if remote is not None else [f"{path} is missing on the remote job"]
    if isinstance(desired, dict):
        if not isinstance(remote, dict):
            return [f"{path} differs"]
        found: list[str] = []
        for key, value in desired.items():
            if key not in remote:
                found.append(f"{path}.{key} is missing on the remote job")
            else:
                found += _input_differences(value, remote[key], f"{path}.{key}")
        return found
    if isinstance(desired, list):
        if not isinstance(remote, list) or len(desired) != len(remote):
            return [f"{path} differs"]
        return [d for i, (a, b) in enumerate(zip(desired, remote, strict=True))
                for d in _input_differences(a, b, f"{path}[{i}]")]
    return [] if _same_input(desired, remote) else [f"{path} differs"]


def matching_jobs(candidates: Iterable[RemoteJob], req: CreateRequest, *, since: datetime,
                  exclude_ids: set[str], desired_body: dict[str, Any] | None = None) -> list[RemoteJob]:
    """Every unclaimed candidate created from `since` on (minus the `CLOCK_SKEW`) that matches
    `req`, oldest first: one address's attempts, when no other address asks for the same request."""
    cutoff = since - CLOCK_SKEW
    found = [job for job in candidates
             if job.id not in exclude_ids and not (job.created_at is not None and job.created_at < cutoff)
             and matches(job, req, desired_body=desired_body)]
    found.sort(key=lambda j: (j.created_at is None, j.created_at or since, j.id))
    return found


def find_match(
    candidates: Iterable[RemoteJob],
    req: CreateRequest,
    *,
    not_before: datetime,
    exclude_ids: set[str],
    desired_body: dict[str, Any] | None = None,
) -> RemoteJob | None:
    """The earliest matching unclaimed candidate created at/after `not_before` (else the earliest one
    inside the `CLOCK_SKEW` window before it)."""
    found = matching_jobs(candidates, req, since=not_before, exclude_ids=exclude_ids, desired_body=desired_body)
    if not found:
        return None
    # Our own create was sent after its intent was written, so a job created at/after `not_before`
    # wins over an identical one from the skew window before it (say another workspace's run of
    # the same input): adopting that one would leave ours untracked.
    found.sort(key=lambda j: (j.created_at is None, j.created_at is not None and j.created_at < not_before,
                              j.created_at or not_before, j.id))
    return found[0]
