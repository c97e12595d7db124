#!/usr/bin/env python3
"""Derive jobrunner's JSON Schemas from the providers' official OpenAPI documents.

    python schemas/derive.py          # (re)write the generated schemas
    python schemas/derive.py --check  # exit 1 if a committed schema differs from what this produces

Inputs (copied unmodified from upstream, see schemas/upstream/README.md):
  schemas/upstream/replicate-openapi.json        Replicate HTTP API, OpenAPI 3.1
  schemas/upstream/emissary-openapi-0.4.4.yaml   Emissary fine-tuning API (SDK 0.4.4), OpenAPI 3.1

Outputs, written both to schemas/ (for editors: the manifests' yaml-language-server modeline points
here) and to jobrunner/schemas/ (shipped inside the wheel, read with importlib.resources):
  replicate.<name>.json, emissary.<name>.json   the extracted request schemas, as draft-07
  manifest.schema.json                          any jobrunner manifest document (kind dispatch)
  Training.schema.json, PredictionBatch.schema.json, Model.schema.json, Deployment.schema.json
                                                one kind each

Draft-07 is what yaml-language-server (and most editors) understand. Every manifest schema is
self-contained: the extracted request schemas are embedded under `definitions` and the manifest
fields point into them with `$ref`, so no resolver or network access is needed anywhere. The kind
and provider dispatch uses if/then so a mistake gives one error about the field at fault, never a
wall of `oneOf` alternatives.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from jobrunner.providers.adapter import RequestForm
from jobrunner.providers.adapters import ADAPTERS
from jobrunner.providers.adapters.emissary import INFERENCE_BODIES
from jobrunner.providers.names import PROVIDER_NAMES

# Which providers each spec shape accepts comes from the adapter table: a provider added there
# appears in the schemas once this script is run again.
VERSIONED = [name for name, a in ADAPTERS.items() if a.form is RequestForm.VERSIONED]
PROJECT_BODY = [name for name, a in ADAPTERS.items() if a.form is RequestForm.PROJECT_BODY]


def one_of(names: list[str]) -> dict[str, Any]:
    """`const` for one name (the schemas' if/then dispatch reads best that way), else `enum`."""
    return {"const": names[0]} if len(names) == 1 else {"enum": names}

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
UPSTREAM = HERE / "upstream"
OUT_DIRS = (HERE, REPO / "jobrunner" / "schemas")

DRAFT = "http://json-schema.org/draft-07/schema#"
# No `$id`: every `$ref` is local (`#/definitions/...`), and a made-up base URI could tempt an
# editor to fetch it.

# Kept in sync with jobrunner.references.REF_PATTERN (a unit test checks they are equal).
REF = r"\$\{[A-Za-z][A-Za-z0-9]*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?\.output\.[A-Za-z_][A-Za-z0-9_]*\}"
OWNER_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*"
HEX64 = r"[0-9a-f]{64}"
DURATION = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$|^[0-9]+(\.[0-9]+)?$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

# Keywords that mean something in OpenAPI but are not JSON Schema draft-07.
_OPENAPI_ONLY = ("xml", "externalDocs", "discriminator", "deprecated", "readOnly", "writeOnly")


# --- extraction ---------------------------------------------------------------------------

def to_draft07(node: Any, prefix: str) -> Any:
    """An OpenAPI 3.1 schema fragment as draft-07, with component $refs pointing at definitions."""
    if isinstance(node, list):
        return [to_draft07(x, prefix) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str) and value.startswith("#/components/schemas/"):
            out[key] = f"#/definitions/{prefix}.{value.rsplit('/', 1)[1]}"
        elif key == "example":
            out["examples"] = [copy.deepcopy(value)]
        elif key == "nullable":
            continue  # folded into `type` below
        elif key in _OPENAPI_ONLY:
            continue
        elif key in ("properties", "definitions", "patternProperties"):
            out[key] = {k: to_draft07(v, prefix) for k, v in value.items()}
        else:
            out[key] = to_draft07(value, prefix)
    if node.get("nullable") is True and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"] if "null" not in types else types
    # Upstream fix: Emissary writes `oneOf: [{type: string}, {type: number}, {type: integer}]`
    # for parameter values. Every integer is also a number, so under oneOf an integer matches two
    # branches and is rejected. The intent is "string or number": say it with a type list.
    one_of = out.get("oneOf")
    if isinstance(one_of, list) and one_of and all(isinstance(b, dict) and set(b) == {"type"} for b in one_of):
        out.pop("oneOf")
        types = []
        for b in one_of:
            for t in b["type"] if isinstance(b["type"], list) else [b["type"]]:
                if t not in types:
                    types.append(t)
        out["type"] = types
    return out


def find_refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for v in node.values():
            found |= find_refs(v)
    elif isinstance(node, list):
        for v in node:
            found |= find_refs(v)
    return found


def operation(doc: dict[str, Any], operation_id: str) -> dict[str, Any]:
    for methods in doc["paths"].values():
        for op in methods.values():
            if isinstance(op, dict) and op.get("operationId") == operation_id:
                return op
    raise SystemExit(f"derive: operation {operation_id} not found upstream")


def body(doc: dict[str, Any], operation_id: str) -> dict[str, Any]:
    """The inline JSON request body schema of one operation."""
    schema: dict[str, Any] = operation(doc, operation_id)["requestBody"]["content"]["application/json"]["schema"]
    return schema


def extract(doc: dict[str, Any], prefix: str, roots: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Named request schemas plus every component they reference (transitively), as draft-07."""
    components = doc.get("components", {}).get("schemas", {})
    out: dict[str, dict[str, Any]] = {}
    todo = list(roots.items())
    while todo:
        name, schema = todo.pop(0)
        if name in out:
            continue
        out[name] = to_draft07(schema, prefix)
        for ref in sorted(find_refs(schema)):
            if ref not in out:
                todo.append((ref, components[ref]))
    return out


def upstream_schemas() -> dict[str, dict[str, Any]]:
    """`replicate.X` / `emissary.X` -> draft-07 schema, in a stable order."""
    replicate = json.loads((UPSTREAM / "replicate-openapi.json").read_text(encoding="utf-8"))
    emissary = yaml.safe_load((UPSTREAM / "emissary-openapi-0.4.4.yaml").read_text(encoding="utf-8"))
    comps = replicate["components"]["schemas"]
    rep_roots = {
        "schemas_training_request": comps["schemas_training_request"],
        "schemas_version_prediction_request": comps["schemas_version_prediction_request"],
        "schemas_prediction_request": comps["schemas_prediction_request"],
        # The models.create body is inline in the OpenAPI document; we name it after its operation.
        "models_create_request": body(replicate, "models.create"),
        # Deployments: the create body, and the PATCH body (the fields a deployment updates in place).
        "deployments_create_request": body(replicate, "deployments.create"),
        "deployments_update_request": body(replicate, "deployments.update"),
    }
    em_roots = {
        # Inline request body of operation createTrainingJob; the SDK calls it CreateTrainingJobRequestBody.
        "CreateTrainingJobRequestBody": body(emissary, "createTrainingJob"),
        # Deployments and the inference a batch runs against one; named as the SDK names them.
        "CreateDeploymentRequestBody": body(emissary, "createDeployment"),
        **{name: body(emissary, name[0].lower() + name[1:-len("RequestBody")]) for name in INFERENCE_BODIES.values()},
    }
    out: dict[str, dict[str, Any]] = {}
    for name, schema in extract(replicate, "replicate", rep_roots).items():
        out[f"replicate.{name}"] = {"title": f"Replicate {name}", **schema}
    for name, schema in extract(emissary, "emissary", em_roots).items():
        out[f"emissary.{name}"] = {"title": f"Emissary {name}", **schema}
    return out


# --- manifest schemas ---------------------------------------------------------------------

def up(name: str, prop: str | None = None) -> dict[str, str]:
    """A $ref to an extracted upstream schema, or one of its properties."""
    return {"$ref": f"#/definitions/{name}" + (f"/properties/{prop}" if prop else "")}


def string_or_ref(pattern: str, message: str, description: str) -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": f"^({pattern}|{REF})$",
        "description": description,
        "x-jobrunner-message": message,
    }


def common_definitions() -> dict[str, Any]:
    return {
        "metadata": {
            "type": "object",
            "description": "Identity of the resource. The address is Kind/name.",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {
                    "type": "string",
                    "maxLength": 63,
                    "pattern": DNS_LABEL,
                    "description": "DNS label (lowercase letters, digits, '-'); unique per kind in a workspace.",
                    "x-jobrunner-message": "must be a DNS label: lowercase letters, digits and '-', "
                    "starting and ending with a letter or digit, at most 63 characters",
                },
                "labels": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "Free-form string labels (for people and filters).",
                },
                "annotations": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "Free-form string annotations.",
                },
            },
        },
        "fileRef": {
            "type": "object",
            "description": "A local file, relative to the manifest: uploaded at apply; "
            "its sha256 enters the fingerprint.",
            "required": ["$file"],
            "additionalProperties": False,
            "properties": {"$file": {"type": "string", "minLength": 1}},
        },
        "timeout": {
            "type": ["string", "number"],
            "pattern": DURATION,
            "description": "Cancel the job if it is still running after this long, e.g. 30m, 2h, 1h30m.",
            "x-jobrunner-message": "must be a duration such as 90s, 30m, 2h or 1h30m",
        },
        "retry": {
            "type": "object",
            "additionalProperties": False,
            "description": "Re-create the job after it failed or aborted.",
            "properties": {
                "max_attempts": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100,
                    "description": "Attempts in all, the first included (default 1).",
                },
            },
        },
        "lifecycle": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "on_change": {
                    "enum": ["replace", "keep"],
                    "description": "replace (default): re-run when the spec changes; "
                    "keep: never re-run once succeeded.",
                },
                "on_remove": {
                    "enum": ["cancel", "keep", "delete_version"],
                    "description": "cancel (default): cancel if running, then forget; keep: forget only; "
                    "delete_version (Replicate trainings): cancel if running, else delete the trained version, "
                    "then forget.",
                },
                "prevent_cancel": {"type": "boolean", "description": "Refuse to plan a cancel of this job."},
            },
        },
        "estimate": {
            "type": "object",
            "additionalProperties": False,
            "description": "Inputs of the plan's duration and cost estimate when state has no measured run of this "
                           "version (docs/costs.md).",
            "properties": {
                "duration": {
                    "type": ["string", "number"],
                    "pattern": DURATION,
                    "description": "Expected run time of one job (a batch: of one item), e.g. 30s, 12m, 1h30m.",
                    "x-jobrunner-message": "must be a duration such as 90s, 30m, 2h or 1h30m",
                },
                "hardware": {"type": "string", "minLength": 1,
                             "description": "Hardware SKU the job runs on (priced by the shipped table or "
                                            "`prices:` in jobrunner.yaml), e.g. gpu-a100-large."},
            },
        },
        "sensitive": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "uniqueItems": True,
            "description": "Input keys whose values are redacted in every output.",
        },
        "model": string_or_ref(OWNER_NAME, "must be owner/name, e.g. jobrunner/ngram", "Model as owner/name."),
        "version": string_or_ref(
            f"{HEX64}|{OWNER_NAME}:{HEX64}",
            "must be a 64-hex version id, owner/name:<64-hex id>, "
            "or a reference such as ${Training.name.output.version}",
            "Pinned model version: a 64-hex id, owner/name:id, or a ${Training.x.output.version} reference.",
        ),
    }


def replicate_training_spec() -> dict[str, Any]:
    t = "replicate.schemas_training_request"
    return {
        "type": "object",
        "description": "A Replicate (or local platform) training: "
        "POST /v1/models/{model}/versions/{version}/trainings.",
        "required": ["version", "destination", "input"],
        "additionalProperties": False,
        "properties": {
            "provider": {"enum": VERSIONED, "description": "Where the job runs (default local)."},
            "model": {"$ref": "#/definitions/model"},
            "version": {"$ref": "#/definitions/version"},
            "destination": {
                "allOf": [up(t, "destination")],
                "pattern": f"^({OWNER_NAME}|{REF})$",
                "x-jobrunner-message": "must be owner/name of the model that receives the trained version, "
                "e.g. me/poems",
            },
            "input": {"allOf": [up(t, "input")], "description": "Inputs of the model's train() function."},
            "webhook": up(t, "webhook"),
            "webhook_events_filter": up(t, "webhook_events_filter"),
            "timeout": {"$ref": "#/definitions/timeout"},
            "retry": {"$ref": "#/definitions/retry"},
            "lifecycle": {"$ref": "#/definitions/lifecycle"},
            "estimate": {"$ref": "#/definitions/estimate"},
            "sensitive": {"$ref": "#/definitions/sensitive"},
        },
    }


def emissary_training_spec() -> dict[str, Any]:
    b = "emissary.CreateTrainingJobRequestBody"
    dataset = {"anyOf": [up(b, "train_dataset_id"), {"$ref": "#/definitions/fileRef"}],
               "x-jobrunner-message": "must be a dataset id (string) or {$file: path}"}
    return {
        "type": "object",
        "description": "An Emissary fine-tuning job: POST /v1/projects/{project_id}/training-jobs "
                       "(the job's name is metadata.name).",
        "required": ["provider", "project_id", "base_model", "train_dataset_id"],
        "additionalProperties": False,
        "properties": {
            "provider": one_of(PROJECT_BODY),
            "project_id": {"type": "string", "minLength": 1, "description": "The Emissary project that owns the job."},
            "base_model": up(b, "base_model"),
            "train_dataset_id": dataset,
            "test_dataset_id": {**dataset, "anyOf": [up(b, "test_dataset_id"), {"$ref": "#/definitions/fileRef"}]},
            "train_test_split_ratio": {"allOf": [up(b, "train_test_split_ratio")], "exclusiveMinimum": 0,
                                       "exclusiveMaximum": 1},
            "description": up(b, "description"),
            "parameters": up(b, "parameters"),
            "hf_model_link": up(b, "hf_model_link"),
            "timeout": {"$ref": "#/definitions/timeout"},
            "retry": {"$ref": "#/definitions/retry"},
            "lifecycle": {"$ref": "#/definitions/lifecycle"},
            "estimate": {"$ref": "#/definitions/estimate"},
            "sensitive": {"$ref": "#/definitions/sensitive"},
        },
    }


def training_spec() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"provider": {"enum": list(PROVIDER_NAMES),
                                    "x-jobrunner-message": f"must be one of {', '.join(PROVIDER_NAMES)}"}},
        "if": {"properties": {"provider": one_of(PROJECT_BODY)}, "required": ["provider"]},
        "then": {"$ref": "#/definitions/EmissaryTrainingSpec"},
        "else": {"$ref": "#/definitions/ReplicateTrainingSpec"},
    }


def batch_spec() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"provider": {"enum": list(PROVIDER_NAMES),
                                    "x-jobrunner-message": f"must be one of {', '.join(PROVIDER_NAMES)}"}},
        "if": {"properties": {"provider": one_of(PROJECT_BODY)}, "required": ["provider"]},
        "then": {"$ref": "#/definitions/EmissaryPredictionBatchSpec"},
        "else": {"$ref": "#/definitions/ReplicatePredictionBatchSpec"},
    }


def emissary_batch_spec() -> dict[str, Any]:
    """Rows sent to one endpoint of an Emissary deployment: each row is that endpoint's request body."""
    # Each row is checked against its endpoint's body by `validate` (it knows the endpoint), so the
    # message names that body instead of every alternative.
    rows = {"type": "object", "description": "The request body of the endpoint (plus an optional `key`)."}
    return {
        "type": "object",
        "description": "Inference on an Emissary deployment: one request per row of inputs or inputs_file, "
                       "sent to its chat.completions, completions or embeddings endpoint.",
        "required": ["provider", "project_id", "deployment", "endpoint"],
        "additionalProperties": False,
        "properties": {
            "provider": one_of(PROJECT_BODY),
            "project_id": {"type": "string", "minLength": 1, "description": "The Emissary project of the deployment."},
            "deployment": {"type": "string", "minLength": 1,
                           "description": "The deployment id, or ${Deployment.x.output.id}."},
            "endpoint": {"enum": list(INFERENCE_BODIES),
                         "description": "Which endpoint every row is sent to; a row is its request body."},
            "input_defaults": {"type": "object", "description": "Merged under every row (the row wins)."},
            "inputs": {"type": "array", "items": rows, "description": "Inline rows; an optional `key` names the item."},
            "inputs_file": {"type": "string", "minLength": 1,
                            "description": "JSONL or CSV file of rows, relative to the manifest."},
            "output_file": {
                "type": "string",
                "minLength": 1,
                "description": "Where apply writes the collected results (JSONL), relative to the manifest.",
            },
            "timeout": {"$ref": "#/definitions/timeout"},
            "retry": {"$ref": "#/definitions/retry"},
            "lifecycle": {"$ref": "#/definitions/lifecycle"},
            "sensitive": {"$ref": "#/definitions/sensitive"},
        },
    }


def replicate_batch_spec() -> dict[str, Any]:
    p = "replicate.schemas_version_prediction_request"
    return {
        "type": "object",
        "description": "Many predictions of one model version (or one deployment): "
        "one per row of inputs or inputs_file.",
        "additionalProperties": False,
        "properties": {
            "provider": {"enum": VERSIONED, "description": "Where the predictions run (default local)."},
            "model": {"$ref": "#/definitions/model"},
            "version": {"allOf": [up(p, "version"), {"$ref": "#/definitions/version"}]},
            "deployment": string_or_ref(
                OWNER_NAME,
                "must be owner/name of a deployment, or a reference such as ${Deployment.name.output.name}",
                "Run every row on this deployment (POST /v1/deployments/{owner}/{name}/predictions) "
                "instead of a version."),
            "input_defaults": {"allOf": [up(p, "input")], "description": "Merged under every row (the row wins)."},
            "inputs": {
                "type": "array",
                "items": up(p, "input"),
                "description": "Inline rows; an optional `key` field names the item.",
            },
            "inputs_file": {
                "type": "string",
                "minLength": 1,
                "description": "JSONL or CSV file of rows, relative to the manifest.",
            },
            "output_file": {
                "type": "string",
                "minLength": 1,
                "description": "Where apply writes the collected results (JSONL), relative to the manifest.",
            },
            "webhook": up(p, "webhook"),
            "webhook_events_filter": up(p, "webhook_events_filter"),
            "timeout": {"$ref": "#/definitions/timeout"},
            "retry": {"$ref": "#/definitions/retry"},
            "lifecycle": {"$ref": "#/definitions/lifecycle"},
            "estimate": {"$ref": "#/definitions/estimate"},
            "sensitive": {"$ref": "#/definitions/sensitive"},
        },
    }


def model_spec() -> dict[str, Any]:
    m = "replicate.models_create_request"
    return {
        "type": "object",
        "description": "A destination model (POST /v1/models); created once, never deleted unasked.",
        "required": ["owner", "name", "visibility", "hardware"],
        "additionalProperties": False,
        "properties": {
            "provider": {"enum": VERSIONED, "x-jobrunner-message": f"must be {' or '.join(VERSIONED)}"},
            "owner": up(m, "owner"),
            "name": up(m, "name"),
            "visibility": up(m, "visibility"),
            "hardware": up(m, "hardware"),
            "description": up(m, "description"),
        },
    }


def deployment_lifecycle() -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "prevent_destroy": {"type": "boolean",
                                "description": "Refuse to plan a delete of this deployment (removal or destroy)."},
        },
    }


def replicate_deployment_spec() -> dict[str, Any]:
    c = "replicate.deployments_create_request"
    return {
        "type": "object",
        "description": "A Replicate (or local platform) deployment: POST /v1/deployments (its name is metadata.name); "
                       "version, hardware and instances are updated in place (PATCH), a new model replaces it.",
        "required": ["version", "hardware", "min_instances", "max_instances"],
        "additionalProperties": False,
        "properties": {
            "provider": {"enum": VERSIONED, "description": "Where the deployment runs (default local)."},
            "model": {"allOf": [up(c, "model"), {"$ref": "#/definitions/model"}]},
            "version": {"allOf": [up(c, "version"), {"$ref": "#/definitions/version"}]},
            "hardware": up(c, "hardware"),
            "min_instances": up(c, "min_instances"),
            "max_instances": up(c, "max_instances"),
            "timeout": {"$ref": "#/definitions/timeout"},
            "lifecycle": {"$ref": "#/definitions/deploymentLifecycle"},
        },
    }


def emissary_deployment_spec() -> dict[str, Any]:
    b = "emissary.CreateDeploymentRequestBody"
    return {
        "type": "object",
        "description": "An Emissary deployment of a training job's checkpoint: "
                       "POST /v1/projects/{project_id}/deployments (its name is metadata.name). "
                       "Emissary updates nothing in place: a change replaces it.",
        "required": ["provider", "project_id", "training_job_id", "checkpoint"],
        "additionalProperties": False,
        "properties": {
            "provider": one_of(PROJECT_BODY),
            "project_id": {"type": "string", "minLength": 1, "description": "The Emissary project that owns it."},
            "training_job_id": {"allOf": [up(b, "training_job_id")], "minLength": 1,
                                "description": "The training job to deploy, or ${Training.x.output.id}."},
            "checkpoint": {
                "anyOf": [up(b, "checkpoint"), {"type": "string", "pattern": f"^{REF}$"}],
                "x-jobrunner-message": "must be a checkpoint number or a reference such as "
                                       "${Training.name.output.checkpoint}",
            },
            "server_type": up(b, "server_type"),
            "description": up(b, "description"),
            "timeout": {"$ref": "#/definitions/timeout"},
            "lifecycle": {"$ref": "#/definitions/deploymentLifecycle"},
        },
    }


def deployment_spec() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"provider": {"enum": list(PROVIDER_NAMES),
                                    "x-jobrunner-message": f"must be one of {', '.join(PROVIDER_NAMES)}"}},
        "if": {"properties": {"provider": one_of(PROJECT_BODY)}, "required": ["provider"]},
        "then": {"$ref": "#/definitions/EmissaryDeploymentSpec"},
        "else": {"$ref": "#/definitions/ReplicateDeploymentSpec"},
    }


KIND_SPECS = {"Training": "TrainingSpec", "PredictionBatch": "PredictionBatchSpec", "Model": "ModelSpec",
              "Deployment": "DeploymentSpec"}


def manifest_schema(upstream: dict[str, dict[str, Any]], kinds: list[str], title: str) -> dict[str, Any]:
    kind_prop: dict[str, Any] = (
        {"const": kinds[0]} if len(kinds) == 1
        else {"enum": kinds, "x-jobrunner-message": f"unknown kind; must be one of {', '.join(kinds)}"}
    )
    definitions: dict[str, Any] = {
        **common_definitions(),
        "TrainingSpec": training_spec(),
        "ReplicateTrainingSpec": replicate_training_spec(),
        "EmissaryTrainingSpec": emissary_training_spec(),
        "PredictionBatchSpec": batch_spec(),
        "ReplicatePredictionBatchSpec": replicate_batch_spec(),
        "EmissaryPredictionBatchSpec": emissary_batch_spec(),
        "ModelSpec": model_spec(),
        "deploymentLifecycle": deployment_lifecycle(),
        "DeploymentSpec": deployment_spec(),
        "ReplicateDeploymentSpec": replicate_deployment_spec(),
        "EmissaryDeploymentSpec": emissary_deployment_spec(),
        **{k: {key: val for key, val in v.items()} for k, v in upstream.items()},
    }
    dispatch = [
        {"if": {"properties": {"kind": {"const": k}}, "required": ["kind"]},
         "then": {"properties": {"spec": {"$ref": f"#/definitions/{KIND_SPECS[k]}"}}}}
        for k in kinds
    ]
    return {
        "$schema": DRAFT,
        "title": title,
        "description": "A jobrunner manifest document (generated by schemas/derive.py; do not edit).",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "jobrunner/v1"},
            "kind": kind_prop,
            "metadata": {"$ref": "#/definitions/metadata"},
            "spec": {"type": "object"},
        },
        "allOf": dispatch,
        "definitions": definitions,
    }


def generate() -> dict[str, str]:
    """File name -> exact file content of every generated schema."""
    upstream = upstream_schemas()
    files: dict[str, Any] = {}
    for name, schema in upstream.items():
        files[f"{name}.json"] = {"$schema": DRAFT, **schema}
    kinds = list(KIND_SPECS)
    files["manifest.schema.json"] = manifest_schema(upstream, kinds, "jobrunner manifest")
    for k in kinds:
        files[f"{k}.schema.json"] = manifest_schema(upstream, [k], f"jobrunner {k} manifest")
    return {name: json.dumps(obj, indent=2, ensure_ascii=False) + "\n" for name, obj in sorted(files.items())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if committed schemas are out of date")
    args = ap.parse_args(argv)
    files = generate()
    stale: list[str] = []
    for out_dir in OUT_DIRS:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            path = out_dir / name
            current = path.read_text(encoding="utf-8") if path.exists() else None
            if current != text:
                stale.append(str(path.relative_to(REPO)))
                if not args.check:
                    path.write_text(text, encoding="utf-8")
        for path in sorted(out_dir.glob("*.json")):
            if path.name not in files:
                stale.append(f"{path.relative_to(REPO)} (no longer generated)")
                if not args.check:
                    path.unlink()
    if args.check and stale:
        print("out of date (run python schemas/derive.py):\n  " + "\n  ".join(stale), file=sys.stderr)
        return 1
    if not args.check:
        print(f"wrote {len(files)} schemas to " + ", ".join(str(d.relative_to(REPO)) for d in OUT_DIRS)
              + (f" ({len(stale)} changed)" if stale else " (unchanged)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
