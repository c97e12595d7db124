"""The Replicate v1 wire shapes of the local platform: bodies out, request fields in (pure).

Field names, status values and headers follow the Replicate reference (and what the official
`replicate` 1.0.7 client accepts: `cog_version` is always a string, `urls` never hold nulls).
`urls` and pagination links are absolute and built from the request's own host. Lists are newest
first, 100 a page, with an opaque `cursor`.
"""
from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any, Literal

from jobrunner.durations import parse_duration as _parse_duration
from jobrunner.local.db import Row
from jobrunner.local.replicate import catalog
from jobrunner.local.replicate.errors import ApiError, invalid_fields

JobKind = Literal["prediction", "training"]

HEX64 = re.compile(r"^[0-9a-f]{64}$")
MODEL_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,98}[a-z0-9])?$")
PREFER = re.compile(r"^\s*wait(?:=(\d+))?\s*$")
WEBHOOK_EVENTS = ("start", "output", "logs", "completed")
PREDICTION_FIELDS = frozenset(
    {"version", "input", "webhook", "webhook_events_filter", "stream", "webhook_completed"}
)
TRAINING_FIELDS = frozenset(
    {"destination", "input", "webhook", "webhook_events_filter", "webhook_completed", "version"}
)
MODEL_FIELDS = frozenset(
    {"owner", "name", "visibility", "hardware", "description", "github_url", "paper_url", "license_url",
     "cover_image_url"}
)
DEPLOYMENT_FIELDS = ("name", "model", "version", "hardware", "min_instances", "max_instances")
DEPLOYMENT_UPDATE_FIELDS = ("version", "hardware", "min_instances", "max_instances")
# deployments.create / deployments.update: instance bounds (reference openapi.json).
INSTANCE_LIMITS = {"min_instances": (0, 5), "max_instances": (0, 20)}
HARDWARE = [
    {"sku": "cpu", "name": "CPU"},
    {"sku": "gpu-t4", "name": "Nvidia T4 GPU"},
    {"sku": "gpu-l40s", "name": "Nvidia L40S GPU"},
    {"sku": "gpu-a100-large", "name": "Nvidia A100 (80GB) GPU"},
]
ACCOUNT = {"type": "user", "username": catalog.ACCOUNT, "name": "Local user", "github_url": None, "avatar_url": None}


# --- bodies out ----------------------------------------------------------------------------------


def render_job(job: Row, base: str) -> dict[str, Any]:
    """The job's wire shape (what GET returns), with URLs under `base`."""
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
        out["output"] = _weights_under(job, base)
    if job["deadline"]:
        out["deadline"] = job["deadline"]
    deployment = (job.get("extra") or {}).get("deployment")
    if deployment:
        out["deployment"] = deployment  # set only on predictions created through a deployment
    return out


def _weights_under(job: Row, base: str) -> Any:
    """A training's output with its weights URL moved under `base`.

    The weights URL was made under the host the training was created through; the platform may
    since answer on another port (auto-start picks a free one).
    """
    output = job["output"]
    stored_base = job.get("base_url") or ""
    if (
        isinstance(output, dict) and isinstance(output.get("weights"), str) and stored_base != base
        and output["weights"].startswith(stored_base + "/v1/files/")
    ):
        return {**output, "weights": base + output["weights"][len(stored_base):]}
    return output


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


def render_deployment(deployment: Row) -> dict[str, Any]:
    """A `schemas_deployment_response`: owner, name and the current release."""
    return {
        "owner": deployment["owner"],
        "name": deployment["name"],
        "current_release": {
            "number": deployment["number"],
            "model": deployment["model"],
            "version": deployment["version"],
            "created_at": deployment["release_created_at"],
            "created_by": dict(ACCOUNT),
            "configuration": {
                "hardware": deployment["hardware"],
                "min_instances": deployment["min_instances"],
                "max_instances": deployment["max_instances"],
            },
        },
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


# --- pages -------------------------------------------------------------------------------------


def encode_cursor(**value: int) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[int | None, int | None]:
    """(before_seq, after_seq) of an opaque cursor; 400 when it is not one of ours."""
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        before, after = value.get("b"), value.get("a")
        if not (isinstance(before, int) or isinstance(after, int)):
            raise ValueError
        return before, after
    except (ValueError, TypeError, AttributeError, json.JSONDecodeError):
        raise ApiError(400, "Invalid cursor.") from None


def page(
    rows: list[Row], size: int, cursor: str | None, after: int | None, link: Callable[[str], str],
    render: Callable[[Row], Any],
) -> dict[str, Any]:
    """A page `{next, previous, results}` from up to `size + 1` rows fetched around the cursor.

    `link(cursor)` is the request URL with that cursor; `after` is the cursor's after_seq (a
    page back), which was fetched oldest first and reversed.
    """
    more = len(rows) > size
    if after is None:
        rows = rows[:size]
        next_seq = rows[-1]["seq"] if more and rows else None
        prev_seq = rows[0]["seq"] if cursor and rows else None
    else:
        rows = rows[1:] if more else rows
        prev_seq = rows[0]["seq"] if more and rows else None
        next_seq = rows[-1]["seq"] if rows else None
    return {
        "next": link(encode_cursor(b=next_seq)) if next_seq is not None else None,
        "previous": link(encode_cursor(a=prev_seq)) if prev_seq is not None else None,
        "results": [render(r) for r in rows],
    }


# --- request fields in -------------------------------------------------------------------------


def parse_json_body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(422, "The request body must be a JSON object.", title="Input validation failed")
    return body


def check_top_level(body: dict[str, Any], allowed: frozenset[str], required: tuple[str, ...]) -> None:
    """A job create's top-level fields: known names, required ones, webhook URL and events."""
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
        problems.append(
            ("enum", "webhook_events_filter", f"webhook_events_filter items must be one of {', '.join(WEBHOOK_EVENTS)}")
        )
    if problems:
        raise invalid_fields(problems)


def check_model_body(body: dict[str, Any]) -> None:
    """`POST /v1/models` fields (422 listing every problem)."""
    problems = [("additional_property_not_allowed", "", f"Additional property {k} is not allowed")
                for k in sorted(body) if k not in MODEL_FIELDS]
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


def check_deployment_body(body: dict[str, Any], *, update: bool) -> None:
    """`POST /v1/deployments` (every field required) or `PATCH` (any of the release fields) body
    checks: known names, types, instance bounds, a known hardware SKU (422 listing every problem)."""
    allowed = DEPLOYMENT_UPDATE_FIELDS if update else DEPLOYMENT_FIELDS
    problems = [("additional_property_not_allowed", "", f"Additional property {k} is not allowed")
                for k in sorted(body) if k not in allowed]
    if not update:
        problems += [("required", k, f"{k} is required") for k in DEPLOYMENT_FIELDS if k not in body]
    for key in ("name", "model", "version", "hardware"):
        if key in body and key in allowed and (not isinstance(body[key], str) or not body[key]):
            problems.append(("type", key, f"{key} must be a non-empty string"))
    if isinstance(body.get("name"), str) and body["name"] and not MODEL_NAME.match(body["name"]):
        problems.append(("pattern", "name", "name must be lowercase letters, digits, dashes, underscores or dots"))
    for key, (low, high) in INSTANCE_LIMITS.items():
        value = body.get(key)
        if key in body and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
            problems.append(("range", key, f"{key} must be an integer from {low} to {high}"))
    skus = [h["sku"] for h in HARDWARE]
    if isinstance(body.get("hardware"), str) and body["hardware"] and body["hardware"] not in skus:
        problems.append(("enum", "hardware", f"hardware must be one of {', '.join(skus)} (GET /v1/hardware)"))
    if problems:
        raise invalid_fields(problems)


def input_problems(errors: list[Any], value: dict[str, Any]) -> list[tuple[str, str, str]]:
    """jsonschema errors of a job's `input` as Replicate's `invalid_fields` (type, field, description)."""
    problems = []
    for err in errors:
        path = ".".join(str(p) for p in err.absolute_path)
        if err.validator == "additionalProperties":
            extra = sorted(set(value) - set(err.schema.get("properties") or {}))
            for name in extra:
                problems.append(("additional_property_not_allowed", f"input.{name}",
                                 f"Additional property {name} is not allowed"))
            continue
        if err.validator == "required":
            missing = err.message.split("'")[1] if "'" in err.message else ""
            problems.append(("required", f"input.{missing}" if missing else "input", err.message))
            continue
        problems.append((str(err.validator), f"input.{path}" if path else "input", err.message))
    return problems


def parse_duration(text: str) -> float:
    """`Cancel-After` values: `30s`, `5m`, `1h`, `2h30m`, `1h30m45s`, or a bare number of seconds.

    jobrunner.durations' spelling without the `d` unit, which Replicate's (Go) parser refuses too;
    raises ValueError (DurationError) naming what is accepted.
    """
    return _parse_duration(text, allow_days=False)


def cancel_after(header: str | None, minimum: float) -> float | None:
    """Seconds of a `Cancel-After` header (None without one); 422 when malformed or too short."""
    if header is None:
        return None
    try:
        seconds = parse_duration(header)
    except ValueError as exc:
        raise ApiError(422, f"Invalid Cancel-After header: {exc}", title="Invalid Cancel-After") from None
    if seconds < minimum:
        raise ApiError(
            422, f"Cancel-After must be at least {minimum:g} seconds, got {header!r}.",
            title="Invalid Cancel-After",
        )
    return seconds


def prefer_wait(header: str | None, max_wait: float) -> tuple[float, str] | None:
    """(seconds to wait, `Preference-Applied` value) of a `Prefer: wait[=n]` header, else None."""
    if not header:
        return None
    match = PREFER.match(header)
    if not match:
        return None
    if match.group(1) is None:
        return max_wait, "wait"
    n = int(match.group(1))
    if not 1 <= n <= 60:
        return None
    return min(float(n), max_wait), f"wait={n}"
