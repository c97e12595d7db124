"""The Emissary wire shapes (SDK 0.4.4) of the local platform: bodies out, request fields in (pure).

The official `emissary-client-sdk` 0.4.4 validates every body against closed enums and strict
types, so these shapes are exact: training status is one of
`Pending | Running | Success | Failed | TimedOut | Cancelled`; timestamps are integer epoch
seconds; `progress` is an integer percentage; lists are bare JSON arrays. Request checks raise
`EmissaryError(400, ...)` naming the field; unknown fields are tolerated like the real API.
"""
from __future__ import annotations

import json
from typing import Any

from jobrunner.local.db import Row
from jobrunner.local.emissary.catalog import BASE_MODEL, USER_ID
from jobrunner.local.emissary.errors import EmissaryError
from jobrunner.local.engines import ngram_finetune

SERVER_TYPES = ("serverless", "on-demand")


# --- bodies out ----------------------------------------------------------------------


def project_summary(p: Row) -> dict[str, Any]:
    return {"id": p["id"], "name": p["name"]}


def dataset_summary(d: Row) -> dict[str, Any]:
    return {"id": d["id"], "name": d["name"], "created_at": d["created_at"], "is_uploaded": d["path"] is not None}


def dataset_detail(d: Row, base_url: str) -> dict[str, Any]:
    return {
        "id": d["id"],
        "name": d["name"],
        "is_uploaded": d["path"] is not None,
        "dataset_download_url": (f"{base_url}/v1/projects/{d['project_id']}/datasets/{d['id']}/download"
                                 if d["path"] else None),
        "upload_by": USER_ID,
        "created_at": d["created_at"],
        "updated_at": d["updated_at"],
        "size": d["size"],
        "sha256": d["sha256"],
    }


def training_summary(j: Row) -> dict[str, Any]:
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


def hyper_parameters(j: Row) -> dict[str, Any]:
    """The parameters the job ran with (defaults filled in); values are str/int/float only."""
    given = {k: v for k, v in (j["parameters"] or {}).items()
             if isinstance(v, (str, int, float)) and not isinstance(v, bool)}
    if j["base_model"] == BASE_MODEL:
        try:
            return {**given, **ngram_finetune.training_parameters(given)}
        except ValueError:
            return given
    return given


def training_detail(j: Row, train_ds: Row | None, test_ds: Row | None) -> dict[str, Any]:
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


def checkpoint_wire(c: Row, base_url: str, project_id: str) -> dict[str, Any]:
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


def deployment_summary(d: Row) -> dict[str, Any]:
    return {"id": d["id"], "name": d["name"], "status": d["status"], "created_at": d["created_at"]}


def deployment_detail(d: Row, base_model: str | None) -> dict[str, Any]:
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


# --- request fields in -----------------------------------------------------------------


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


def opt_str(body: dict[str, Any], key: str) -> None:
    if key in body and body[key] is not None and not isinstance(body[key], str):
        raise EmissaryError(400, f"{key} must be a string")


def check_training_body(body: dict[str, Any]) -> None:
    """CreateTrainingJobRequestBody checks; unknown fields are tolerated like the real API."""
    for key in ("base_model", "train_dataset_id"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise EmissaryError(400, f"{key} is required and must be a non-empty string")
    for key in ("test_dataset_id", "name", "description", "hf_model_link"):
        opt_str(body, key)
    ratio = body.get("train_test_split_ratio")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1):
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
        opt_str(body, key)


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


EMBEDDING_MEASURES = ("cosine", "manhattan", "euclidean")
MAX_SENTENCE_CHARS = 20_000


def embedding_request(body: dict[str, Any]) -> tuple[str, str, list[str]]:
    """(source_sentence, target_sentence, measures asked for) of an embeddings request (400 otherwise)."""
    for key in ("source_sentence", "target_sentence"):
        if not isinstance(body.get(key), str):
            raise EmissaryError(400, f"{key} is required and must be a string")
        if len(body[key]) > MAX_SENTENCE_CHARS:
            raise EmissaryError(400, f"{key} must be at most {MAX_SENTENCE_CHARS} characters")
    for key in EMBEDDING_MEASURES:
        if key in body and not isinstance(body[key], bool):
            raise EmissaryError(400, f"{key} must be a boolean")
    return body["source_sentence"], body["target_sentence"], [k for k in EMBEDDING_MEASURES if body.get(k)]


def embedding_response(text1: list[float], text2: list[float], measures: list[str]) -> dict[str, Any]:
    """The `response` object: both vectors, plus `cosine_score`, `manhattan_distance` and
    `euclidean_distance` when asked for (the vectors are unit length, so cosine is their dot)."""
    out: dict[str, Any] = {"embeddings": {"text1": text1, "text2": text2}}
    pairs = list(zip(text1, text2, strict=True))
    if "cosine" in measures:
        out["cosine_score"] = round(sum(a * b for a, b in pairs), 6)
    if "manhattan" in measures:
        out["manhattan_distance"] = round(sum(abs(a - b) for a, b in pairs), 6)
    if "euclidean" in measures:
        out["euclidean_distance"] = round(sum((a - b) ** 2 for a, b in pairs) ** 0.5, 6)
    return out
