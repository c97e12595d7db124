"""The plan as data: what the pure plan engine returns and the reconciler and renderers consume."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from jobrunner.resources import DesiredJob
from jobrunner.state.model import AddressState

if TYPE_CHECKING:
    from jobrunner.estimate.model import PlanEstimate


class Action(StrEnum):
    """What a plan does to one address. A str: plans, saved plans and JSON carry the bare word."""

    CREATE = "create"  # new address
    REPLACE = "replace"  # fingerprint changed: cancel the old run if still running, then create
    RETRY = "retry"  # last run failed/aborted/canceled outside jobrunner and attempts remain
    CANCEL = "cancel"  # address gone from manifests and its run is still running
    FORGET = "forget"  # gone and terminal: drop from state
    ADOPT = "adopt"  # a remote job matching a pending intent or an import
    WAIT = "wait"  # running, unchanged
    NOOP = "noop"  # converged
    # A declared rename (`moved:` in jobrunner.yaml) whose job needs nothing else: state records it
    # under the new address, the job keeps running. A moved job that also needs a
    # create/replace/retry/cancel keeps that action and says where it moved from
    # (`PlannedChange.moved_from`).
    MOVED = "moved"
    # Resources updated in place (deployments): change some fields of the existing remote object,
    # with a field diff; and delete it on the provider when the manifests no longer define it
    # (destructive).
    UPDATE = "update"
    DELETE = "delete"


# The names every module already uses for the actions.
CREATE, REPLACE, RETRY, CANCEL, FORGET = Action.CREATE, Action.REPLACE, Action.RETRY, Action.CANCEL, Action.FORGET
ADOPT, WAIT, NOOP, MOVED = Action.ADOPT, Action.WAIT, Action.NOOP, Action.MOVED
UPDATE, DELETE = Action.UPDATE, Action.DELETE

ACTIONS: tuple[Action, ...] = (CREATE, UPDATE, REPLACE, RETRY, CANCEL, DELETE, FORGET, ADOPT, MOVED, WAIT, NOOP)
# Text-plan symbols, Terraform-like.
SYMBOLS: dict[Action, str] = {CREATE: "+", UPDATE: "~", REPLACE: "-/+", RETRY: "~", CANCEL: "-", DELETE: "-",
                              FORGET: "-", ADOPT: "<=", MOVED: "->", WAIT: "~", NOOP: " "}
CHANGING: frozenset[Action] = frozenset({CREATE, UPDATE, REPLACE, RETRY, CANCEL, DELETE, FORGET, ADOPT, MOVED})
# What removes something from the provider for good: plans call it out to reviewers.
DESTRUCTIVE: frozenset[Action] = frozenset({DELETE})


# lifecycle.on_change: replace re-runs a job whose fingerprint changed; keep never re-runs one that succeeded.
OnChange = Literal["replace", "keep"]
# lifecycle.on_remove: cancel a removed job still running, then forget it; keep only forgets it;
# delete_version (Replicate trainings) also deletes the version a finished training made.
OnRemove = Literal["cancel", "keep", "delete_version"]


def _on_remove(value: Any) -> OnRemove:
    """Validation admits only these words; anything else reads as the default."""
    if value == "keep":
        return "keep"
    return "delete_version" if value == "delete_version" else "cancel"


@dataclass(frozen=True)
class Policy:
    """The parts of a manifest that steer the plan and apply but never enter a fingerprint.

    Carried on every planned change, so apply runs what the plan showed without reading the
    manifest again (a saved plan applies exactly what it showed).
    """

    max_attempts: int = 1  # retry.max_attempts: runs in all, retries included
    on_change: OnChange = "replace"
    on_remove: OnRemove = "cancel"
    prevent_cancel: bool = False  # never cancel the run (neither on replace nor on removal)
    timeout: str | float | None = None  # spec.timeout as written (e.g. "2h"): apply cancels a run still going then
    prevent_destroy: bool = False  # deployments: refuse to plan a delete or a replace

    @classmethod
    def of(cls, spec: Mapping[str, Any] | None, lifecycle: Mapping[str, Any] | None = None) -> Policy:
        spec = spec or {}
        life = dict(lifecycle or {})
        life.update(spec.get("lifecycle") or {})
        retry = spec.get("retry") or {}
        try:
            attempts = max(1, int(retry.get("max_attempts", 1)))
        except (TypeError, ValueError):
            attempts = 1
        return cls(
            max_attempts=attempts,
            # Validation admits only these words; anything else reads as the default.
            on_change="keep" if life.get("on_change") == "keep" else "replace",
            on_remove=_on_remove(life.get("on_remove")),
            prevent_cancel=bool(life.get("prevent_cancel", False)),
            timeout=spec.get("timeout"),
            prevent_destroy=bool(life.get("prevent_destroy", False)),
        )


@dataclass(frozen=True, slots=True)  # slots: a big batch plans one per item
class PlannedChange:
    address: str
    action: Action
    reason: str  # human reason, e.g. "input.order changed (4 -> 5)"
    job: DesiredJob | None  # the desired job (None for cancel/forget)
    prior: AddressState | None  # what state recorded (None for create)
    fingerprint_before: str | None = None
    fingerprint_after: str | None = None  # None = known after apply
    remote_status: str | None = None  # status the plan saw (saved plans re-check it)
    adopt_remote_id: str | None = None  # for ADOPT
    input_diff: dict[str, Any] = field(default_factory=dict)  # redacted {key: [before, after]}
    blocked_by: tuple[str, ...] = ()  # upstream addresses that failed for good: apply skips this
    quiet: bool = False  # nothing worth showing (converged): renderers list it only in counts
    moved_from: str | None = None  # the address state recorded it under before a declared move
    policy: Policy = Policy()  # retry, timeout and lifecycle as the manifest said when planned


@dataclass
class Plan:
    changes: list[PlannedChange]  # sorted: DAG order, then address
    paths: list[str] = field(default_factory=list)  # manifest paths planned
    manifests_digest: str = ""
    state_lineage: str = ""
    state_serial: int = 0
    warnings: list[str] = field(default_factory=list)
    # Duration and cost of what the plan runs (jobrunner.estimate); None where nothing estimated it
    # (destroy plans).
    estimate: PlanEstimate | None = None

    def counts(self) -> dict[Action, int]:
        out = {a: 0 for a in ACTIONS}
        for c in self.changes:
            out[c.action] += 1
        return out

    @property
    def moves(self) -> list[tuple[str, str]]:
        """(from, to) of every address this plan moves in state, whatever else it does to it."""
        return [(c.moved_from, c.address) for c in self.changes if c.moved_from]

    @property
    def has_changes(self) -> bool:
        return any(c.action in CHANGING for c in self.changes)
