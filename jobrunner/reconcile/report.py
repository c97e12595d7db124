"""The apply report: what one apply did to each address, as its summary counts it.

Pure data, no I/O. The executor's rooms record an `Outcome` per address here;
`jobrunner.exitcodes.for_apply` turns the finished report into the exit code, and
`jobrunner.render.report` into the lines apply prints. Neither needs the executor itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class OutcomeKind(StrEnum):
    """What one apply did to an address, as counted in the summary."""

    ADOPTED = "adopted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    CANCELED_FORGOTTEN = "canceled+forgotten"  # removed from the manifests: canceled, then dropped from state
    SKIPPED = "skipped"
    FORGOTTEN = "forgotten"
    RUNNING = "running"  # left running (--no-wait, --timeout, Ctrl-C)
    DEFERRED = "deferred"  # not started: its upstream is still running, or apply stopped first
    NOOP = "noop"
    ERROR = "error"
    NOT_ATTEMPTED = "not attempted"  # its provider refused the credential or account earlier in this run
    UPDATED = "updated"  # a deployment changed in place (and serving again)
    DELETED = "deleted"  # a deployment deleted on the provider (removed from the manifests, or destroyed)


# The names the rooms and tests use.
O_ADOPTED, O_SUCCEEDED, O_FAILED = OutcomeKind.ADOPTED, OutcomeKind.SUCCEEDED, OutcomeKind.FAILED
O_CANCELED, O_CANCELED_FORGOTTEN = OutcomeKind.CANCELED, OutcomeKind.CANCELED_FORGOTTEN
O_SKIPPED, O_FORGOTTEN, O_RUNNING = OutcomeKind.SKIPPED, OutcomeKind.FORGOTTEN, OutcomeKind.RUNNING
O_DEFERRED, O_NOOP, O_ERROR = OutcomeKind.DEFERRED, OutcomeKind.NOOP, OutcomeKind.ERROR
O_NOT_ATTEMPTED = OutcomeKind.NOT_ATTEMPTED
O_UPDATED, O_DELETED = OutcomeKind.UPDATED, OutcomeKind.DELETED

# Outcomes that leave an address needing a person (or a fix) before apply can exit 0.
BAD_OUTCOMES: frozenset[OutcomeKind] = frozenset({O_FAILED, O_CANCELED, O_SKIPPED, O_ERROR, O_NOT_ATTEMPTED})


@dataclass(frozen=True)
class Unfinished:
    """How a change that did not succeed ended, as the changes that depend on it read it.

    A change that succeeded returns None instead.
    """

    pending: bool  # still running, or stopped before it could start: dependents defer, not skip
    reason: str  # shown in a dependent's skip message: "error", "skipped", or the job's final status


RUNNING = Unfinished(pending=True, reason="running")
SKIPPED = Unfinished(pending=False, reason="skipped")
ERROR = Unfinished(pending=False, reason="error")


def ended(status: str) -> Unfinished:
    """A job that ended without succeeding (its final status: failed, canceled, aborted, ...)."""
    return Unfinished(pending=False, reason=status)


@dataclass(slots=True)  # slots: a big batch reports one per item
class Outcome:
    address: str
    outcome: OutcomeKind
    detail: str = ""
    created: int = 0  # creates sent for this address in this run
    adopted: int = 0  # existing remote jobs (or models) taken over instead of creating
    stopped_provider: str = ""  # set when the outcome comes from that provider's stop (reported once)


@dataclass
class ApplyReport:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    files_written: list[str] = field(default_factory=list)
    interrupted: bool = False
    timed_out: bool = False
    # provider -> the refusal that stopped it (message, provider detail, hint), in order of stopping
    provider_stops: dict[str, str] = field(default_factory=dict)

    def record(self, address: str, outcome: OutcomeKind, detail: str = "", created: int = 0, adopted: int = 0,
               stopped_provider: str = "") -> None:
        """Set the address's outcome; creates and adoptions add up over the run (retries, replaces)."""
        prev = self.outcomes.get(address)
        self.outcomes[address] = Outcome(address, outcome, detail, created + (prev.created if prev else 0),
                                         adopted + (prev.adopted if prev else 0), stopped_provider)

    def count(self, outcome: OutcomeKind) -> int:
        return sum(1 for o in self.outcomes.values() if o.outcome == outcome)

    @property
    def created(self) -> int:
        return sum(o.created for o in self.outcomes.values())

    @property
    def adopted(self) -> int:
        return sum(o.adopted for o in self.outcomes.values())

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes.values() if o.outcome in BAD_OUTCOMES]

    @property
    def running(self) -> list[Outcome]:
        return [o for o in self.outcomes.values() if o.outcome == O_RUNNING]
