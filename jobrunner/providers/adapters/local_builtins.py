"""The local provider's built-in models (Replicate wire names), their FIXED version ids and their
Cog-style schemas.

The version ids are part of the public contract (manifests pin them), so they never change. Each
version exposes an `openapi_schema` shaped like Cog's: `components.schemas.Input`, `Output` and,
for trainable models, `TrainingInput` / `TrainingOutput`. `Input` schemas are also what the
platform validates inputs against (422 on failure).

This is pure data shared by both sides of the contract: the local adapter reads the schemas so
that `validate` checks inputs offline, and the platform's Replicate wire
(`jobrunner.local.replicate.catalog`) serves them. It lives with the adapter, in the pure core, so
that the core never imports the platform.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OWNER = "jobrunner"
ACCOUNT = "me"  # the local account's username: destinations look like `me/poems`
COG_VERSION = "0.9.0"

ECHO_VERSION = "0ab87730172dfeb11de187803938c2507e8ab8f7cab883c1a905b3f91b3d3ab6"
NGRAM_VERSION = "a3c8c00c979c6758b251faf7897f248e49b682972e7e2cb90d03a7c19b47f174"
SLEEP_VERSION = "9969ed6b494ff19ed449533b9068fbbb2d4a56c25945cdbcd23ccc069365f2f0"

ECHO_INPUT: dict[str, Any] = {
    "type": "object",
    "title": "Input",
    "description": "Any JSON object; the output is the same object.",
    "properties": {},
    "additionalProperties": True,
}

SLEEP_INPUT: dict[str, Any] = {
    "type": "object",
    "title": "Input",
    "properties": {
        "seconds": {"type": "number", "title": "Seconds", "minimum": 0, "maximum": 3600, "default": 1, "x-order": 0,
                    "description": "How long to run."},
        "fail": {"type": "boolean", "title": "Fail", "default": False, "x-order": 1,
                 "description": "End as failed instead of succeeded."},
        "log_lines": {"type": "integer", "title": "Log Lines", "minimum": 0, "maximum": 10000, "default": 0,
                      "x-order": 2, "description": "Progress lines to log, evenly spaced."},
        "message": {"type": "string", "title": "Message", "x-order": 3,
                    "description": "With fail: quoted in the job's error, as a model quotes its input."},
    },
    "additionalProperties": False,
}

NGRAM_PREDICT_INPUT: dict[str, Any] = {
    "type": "object",
    "title": "Input",
    "properties": {
        "prompt": {"type": "string", "title": "Prompt", "default": "", "x-order": 0,
                   "description": "Text to continue."},
        "max_tokens": {"type": "integer", "title": "Max Tokens", "minimum": 1, "maximum": 100000, "default": 100,
                       "x-order": 1, "description": "Characters to generate."},
        "temperature": {"type": "number", "title": "Temperature", "minimum": 0, "maximum": 10, "default": 1.0,
                        "x-order": 2, "description": "Sampling temperature; 0 is greedy."},
        "seed": {"type": "integer", "title": "Seed", "x-order": 3,
                 "description": "Random seed; the same seed gives the same text."},
    },
    "additionalProperties": False,
}

NGRAM_TRAINING_INPUT: dict[str, Any] = {
    "type": "object",
    "title": "TrainingInput",
    "required": ["train_data"],
    "properties": {
        "train_data": {"type": "string", "title": "Train Data", "x-order": 0,
                       "description": "Training text: a file URL of this platform, a data: URI, or the text itself."},
        "order": {"type": "integer", "title": "Order", "minimum": 1, "maximum": 10, "default": 4, "x-order": 1,
                  "description": "n of the character n-gram model."},
    },
    "additionalProperties": False,
}

TRAINING_OUTPUT: dict[str, Any] = {
    "type": "object",
    "title": "TrainingOutput",
    "properties": {"version": {"type": "string", "title": "Version"},
                   "weights": {"type": "string", "format": "uri", "title": "Weights"}},
}


def cog_schema(inp: dict[str, Any], out: dict[str, Any], training: dict[str, Any] | None = None) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Input": inp, "Output": out}
    paths: dict[str, Any] = {"/predictions": {"post": {"summary": "Predict"}}}
    if training is not None:
        schemas["TrainingInput"] = training
        schemas["TrainingOutput"] = TRAINING_OUTPUT
        paths["/trainings"] = {"post": {"summary": "Train"}}
    return {"openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"}, "paths": paths,
            "components": {"schemas": schemas}}


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    version: str
    engine: str
    description: str
    openapi_schema: dict[str, Any]

    @property
    def full_name(self) -> str:
        return f"{OWNER}/{self.name}"


BUILTINS: tuple[BuiltinModel, ...] = (
    BuiltinModel("echo", ECHO_VERSION, "echo", "Returns its input as its output.",
                 cog_schema(ECHO_INPUT, {"title": "Output"})),
    BuiltinModel("ngram", NGRAM_VERSION, "ngram",
                 "A character n-gram language model: train it on text, then generate text.",
                 cog_schema(NGRAM_PREDICT_INPUT, {"type": "string", "title": "Output"}, NGRAM_TRAINING_INPUT)),
    BuiltinModel("sleep", SLEEP_VERSION, "sleep", "Waits, logs progress and optionally fails (for tests).",
                 cog_schema(SLEEP_INPUT, {"type": "object", "title": "Output"})),
)


def trained_ngram_schema() -> dict[str, Any]:
    """The schema of a version produced by training `jobrunner/ngram`."""
    return cog_schema(NGRAM_PREDICT_INPUT, {"type": "string", "title": "Output"})


__all__ = [
    "ACCOUNT", "BUILTINS", "COG_VERSION", "ECHO_INPUT", "ECHO_VERSION", "NGRAM_PREDICT_INPUT", "NGRAM_TRAINING_INPUT",
    "NGRAM_VERSION", "OWNER", "SLEEP_INPUT", "SLEEP_VERSION", "TRAINING_OUTPUT", "BuiltinModel", "cog_schema",
    "trained_ngram_schema",
]
