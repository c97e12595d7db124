"""The apply report: what one apply did to each address, as its summary counts it.

Pure data, no I/O. The executor's rooms record an `Outcome` per address here;
`jobrunner.exitcodes.for_apply` turns the finished report into the exit code, and
`jobrunner.render.report` into the lines apply prints. Neither needs the executor itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Outcomes per address, as counted in the summary.
O_ADOPTED = "adopted"
O_SUCCEEDED = "succeeded"
O_FAILED = "failed"
O_CANCELED = "canceled"
O_CANCELED_FORGOTTEN = "canceled+forgotten"  # removed from the manifests: canceled, then dropped from state
O_SKIPPED = "skipped"
O_FORGOTTEN = "forgotten"
O_RUNNING = "running"  # left running (--no-wait, --timeout, Ctrl-C)
O_DEFERRED = "deferred"  # not started: its upstream is still running, or apply stopped first
O_NOOP = "noop"
O_ERROR = "error"
O_NOT_ATTEMPTED = "not attempted"  # its provider refused the credential or account earlier in this run

# Outcomes that leave an address needing a person (or a fix) before apply can exit 0.
BAD_OUTCOMES = frozenset({O_FAILED, O_CANCELED, O_SKIPPED, O_ERROR, O_NOT_ATTEMPTED})


@dataclass
class Outcome:
    address: str
    outcome: str
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

    def record(self, address: str, outcome: str, detail: str = "", created: int = 0, adopted: int = 0,
               stopped_provider: str = "") -> None:
        """Set the address's outcome; creates and adoptions add up over the run (retries, replaces)."""
        prev = self.outcomes.get(address)
        self.outcomes[address] = Outcome(address, outcome, detail, created + (prev.created if prev else 0),
                                         adopted + (prev.adopted if prev else 0), stopped_provider)

    def count(self, outcome: str) -> int:
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
