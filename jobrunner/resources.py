"""Plain data types shared by the pure core: loaded resources and the jobs they expand to.

These are the contracts between the loader/validator (which produces `Resource`s), the spec
expansion (which turns resources into `DesiredJob`s with fingerprints), the plan engine and the
reconciler. They are frozen dataclasses over plain JSON-like data so that every stage stays a pure
function that is easy to unit-test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from jobrunner.jsonpaths import nearest
from jobrunner.providers.names import DEFAULT_PROVIDER, PROVIDER_NAMES

API_VERSION = "jobrunner/v1"
KINDS = ("Training", "PredictionBatch", "Model", "Deployment")
PROVIDERS = PROVIDER_NAMES


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass(frozen=True)
class Resource:
    """One manifest document, after loading and validation.

    `spec` is plain data (dicts, lists, str, int, float, bool, None). `positions` maps a JSON path
    inside the document (e.g. "$.spec.input.order") to where it was written, so any later stage can
    point a user at file:line:col.
    """

    kind: str
    name: str
    spec: dict[str, Any]
    file: str  # path relative to the workspace root, POSIX separators
    line: int
    column: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict, compare=False, repr=False)

    @property
    def address(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def provider(self) -> str:
        return str(self.spec.get("provider", DEFAULT_PROVIDER))

    def position(self, json_path: str) -> Position:
        """Best position for a JSON path: the path itself, else its nearest ancestor, else the document."""
        return nearest(self.positions, json_path) or Position(self.line, self.column)


class JobKind(StrEnum):
    """The kinds of unit a plan reasons about. A str: state and plans carry the bare word."""

    TRAINING = "training"
    PREDICTION = "prediction"  # one item of a PredictionBatch
    MODEL = "model"  # a Model resource is not a job: it is created once and kept
    # A Deployment is not a one-shot job either: it is created, updated in place and deleted.
    DEPLOYMENT = "deployment"


# The names every module already uses for the kinds.
JOB_TRAINING = JobKind.TRAINING
JOB_PREDICTION = JobKind.PREDICTION
JOB_MODEL = JobKind.MODEL
JOB_DEPLOYMENT = JobKind.DEPLOYMENT


@dataclass(frozen=True)
class DesiredJob:
    """One unit the plan reasons about: a training, one batch item, a model or a deployment.

    `request` is the provider-neutral description of what to run, with references still in
    `${Kind.name.output.field}` form when their values are not known yet. `fingerprint` is None
    exactly when some reference is still unknown ("known after apply").
    """

    address: str  # Training/x, PredictionBatch/x[key], Model/x, Deployment/x
    resource_address: str  # Kind/name of the manifest document it came from
    job_kind: JobKind
    provider: str
    file: str
    request: dict[str, Any]
    fingerprint: str | None
    depends_on: tuple[str, ...] = ()  # resource addresses this job waits for
    sensitive_paths: tuple[str, ...] = ()  # extra input keys to redact (spec.sensitive)
    # What the fingerprint was computed over (files as {"$file_sha256": ...}); plans diff it.
    material: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    # (upstream address, output field) per reference whose upstream succeeded, and will not run
    # again, without that output: the job cannot run until someone acts (plan: needs attention).
    missing_outputs: tuple[tuple[str, str], ...] = ()


def resource_of(address: str) -> str:
    """The resource address (`Kind/name`) of a unit's address (`PredictionBatch/x[key]` -> `PredictionBatch/x`)."""
    return address.split("[", 1)[0]


__all__ = [
    "resource_of",
    "JobKind",
    "API_VERSION",
    "KINDS",
    "PROVIDERS",
    "Position",
    "Resource",
    "DesiredJob",
    "JOB_TRAINING",
    "JOB_PREDICTION",
    "JOB_MODEL",
    "JOB_DEPLOYMENT",
]
