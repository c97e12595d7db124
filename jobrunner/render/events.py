"""The apply/destroy event interface: what the reconciler reports, as typed events in one status vocabulary.

The executor reports progress as `event(address, word, detail)` and `note(text)` calls (the words
are its own: `created`, `waiting`, `timeout`, `canceled and forgotten`, ...). Every display (the live
view, the line-per-event log, the `--json` stream) consumes them through `classify()`, which turns
a word into a `JobEvent` whose status is one of `JobStatus`: the provider statuses `status` and
`outputs` show (`pending`, `running`, `succeeded`, ...) plus the few states only jobrunner knows
(`skipped`, `deferred`, ...). A freshly created job is therefore `pending` everywhere, never
`created` in one place and `pending` in another.

`ProgressSink` is the whole surface the executor sees; the executor module stays free of display
code and can be split or rewritten without touching the displays.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, get_args

if TYPE_CHECKING:
    from jobrunner.plan_types import Plan

JobStatus = Literal[
    # what the providers report (jobrunner.providers.base), as `status` shows them
    "pending", "running", "succeeded", "failed", "canceled", "aborted", "gone", "unknown",
    # what only jobrunner knows about a job in this run
    "canceling", "retrying", "skipped", "deferred", "unchanged", "forgotten", "error",
]
EventKind = Literal["create", "status", "retry", "error"]

STATUSES: tuple[str, ...] = get_args(JobStatus)
# A job in one of these has nothing left to do in this run (counted as done by the live view's bar).
DONE: frozenset[str] = frozenset({"succeeded", "failed", "canceled", "aborted", "gone", "skipped", "unchanged",
                                  "forgotten", "error"})
# Done, but not as asked: shown among a batch's latest failures, and as `error` events in `--json`.
BAD: frozenset[str] = frozenset({"failed", "canceled", "aborted", "gone", "skipped", "error"})

# executor word -> (event kind, status). Words not listed keep their kind `status` and map to `unknown`.
_WORDS: dict[str, tuple[EventKind, JobStatus]] = {
    "created": ("create", "pending"),
    "adopted": ("create", "pending"),
    "exists": ("create", "pending"),  # a model that already exists, adopted
    "pending": ("status", "pending"),
    "running": ("status", "running"),
    "unknown": ("status", "unknown"),
    "waiting": ("status", "running"),  # waiting on a job an earlier run created
    "succeeded": ("status", "succeeded"),
    "unchanged": ("status", "unchanged"),
    "deferred": ("status", "deferred"),
    "canceling": ("status", "canceling"),
    "timeout": ("status", "canceling"),  # its own `timeout` passed: jobrunner cancels it
    "forgotten": ("status", "forgotten"),
    "canceled and forgotten": ("status", "forgotten"),
    "retrying": ("retry", "retrying"),
    # deployments: changed in place (rolling out until it serves again), deleted and forgotten
    "updated": ("status", "pending"),
    "deleting": ("status", "canceling"),
    "deleted": ("status", "forgotten"),
    "failed": ("error", "failed"),
    "aborted": ("error", "aborted"),
    "canceled": ("error", "canceled"),
    "gone": ("error", "gone"),
    "skipped": ("error", "skipped"),
    "error": ("error", "error"),
}
_ATTEMPT = re.compile(r"attempt (\d+)(?: of (\d+))?")
_PROGRESS = re.compile(r"(\S+) \((\d{1,3})%\)")  # "tr-123 (75%)": a percentage the provider reports


@dataclass(frozen=True)
class JobEvent:
    """One thing that happened to one address, in the shared vocabulary."""

    address: str
    kind: EventKind
    status: JobStatus
    detail: str = ""
    word: str = ""  # the executor's own word, for the line-per-event log
    remote_id: str | None = None
    attempt: int | None = None
    max_attempts: int | None = None
    progress: int | None = None  # percent done, when the provider reports it (Emissary trainings)

    @property
    def batch(self) -> str | None:
        """`PredictionBatch/name` for a batch item, None for a training or model."""
        return self.address.split("[", 1)[0] if "[" in self.address else None


def status_of(address: str, word: str) -> JobStatus:
    """`classify(address, word).status`, without the rest of the event (the plain progress view
    keeps only the status of each batch item)."""
    kind, status = _WORDS.get(word, ("status", "unknown"))
    return "succeeded" if kind == "create" and address.startswith("Model/") else status


def classify(address: str, word: str, detail: str = "") -> JobEvent:
    """The typed event for one executor report (`detail` is free text: a remote id, an error, ...)."""
    kind, status = _WORDS.get(word, ("status", "unknown"))
    remote_id: str | None = None
    attempt: int | None = None
    max_attempts: int | None = None
    progress: int | None = None
    if kind == "create":
        remote_id = detail.split(",", 1)[0].strip() or None
        attempt = 1
        if address.startswith("Model/"):
            status = "succeeded"  # a model exists once created or adopted: nothing to wait for
    if kind in ("create", "retry"):
        found = _ATTEMPT.search(detail)
        if found:
            attempt = int(found.group(1))
            max_attempts = int(found.group(2)) if found.group(2) else None
    if kind == "status" and status in ("pending", "running", "unknown", "succeeded"):
        found = _PROGRESS.fullmatch(detail)
        if found:
            remote_id, progress = found.group(1), min(100, int(found.group(2)))
        elif re.fullmatch(r"\S+", detail):
            remote_id = detail
    if word == "timeout":
        detail = f"timed out, {detail}" if detail else "timed out, canceling"
    return JobEvent(address, kind, status, detail, word, remote_id, attempt, max_attempts, progress)


class ProgressSink(Protocol):
    """What the executor and the apply/destroy commands report progress to."""

    def begin(self, plan: Plan) -> None:
        """The plan about to run (the live view takes each batch's total from it)."""

    def event(self, address: str, what: str, detail: str = "") -> None:
        """Something happened to one address (`what` is an executor word, see `classify`)."""

    def note(self, text: str) -> None:
        """A message for the user that belongs to no single address."""

    def close(self) -> None:
        """The run is over: draw the last state."""


__all__ = ["BAD", "DONE", "STATUSES", "EventKind", "JobEvent", "JobStatus", "ProgressSink", "classify"]
