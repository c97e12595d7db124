"""What the live view knows about a run: per batch the item statuses and latest failures, per single job its status.

A pure model fed with `JobEvent`s (and the plan, for each batch's total), kept apart from drawing so
the numbers the bar shows (done/total, rate, ETA, counts by status) are tested without a terminal.
Times are `time.monotonic()` seconds, passed in by the caller.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobrunner.render.events import BAD, DONE, JobEvent

if TYPE_CHECKING:
    from jobrunner.plan_types import Plan

FAILURES_KEPT = 5  # per batch: the live view shows the latest few, the summary lists them all


@dataclass
class BatchView:
    name: str
    total: int = 0  # items the plan runs (at least the items seen, if the plan was not given)
    started: float | None = None  # first event of any item
    status: dict[str, str] = field(default_factory=dict)  # item address -> status
    failures: deque[tuple[str, str, str]] = field(default_factory=lambda: deque(maxlen=FAILURES_KEPT))

    @property
    def done(self) -> int:
        return sum(1 for s in self.status.values() if s in DONE)

    def counts(self) -> Counter[str]:
        """Items by status; items of the plan not heard from yet are `pending`."""
        counts = Counter(self.status.values())
        unseen = self.total - len(self.status)
        if unseen > 0:
            counts["pending"] += unseen
        return counts

    def rate(self, now: float) -> float | None:
        """Items done per second since the batch started, once there is something to measure."""
        if self.started is None or not self.done or now - self.started < 0.5:
            return None
        return self.done / (now - self.started)

    def eta(self, now: float) -> float | None:
        rate = self.rate(now)
        if not rate:
            return None
        return max(0.0, self.total - self.done) / rate


@dataclass
class SingleView:
    """A training or model: one row."""

    address: str
    status: str
    detail: str
    started: float
    finished: float | None = None
    progress: int | None = None  # percent, when the provider reports it

    def elapsed(self, now: float) -> float:
        return (self.finished if self.finished is not None else now) - self.started


class Board:
    """The run as the live view draws it."""

    def __init__(self) -> None:
        self.batches: dict[str, BatchView] = {}
        self.singles: dict[str, SingleView] = {}

    def begin(self, plan: Plan) -> None:
        """Take each batch's total from the plan: the items it runs (converged ones are not counted)."""
        for change in plan.changes:
            if change.quiet or change.action == "noop" or "[" not in change.address:
                continue
            batch = change.address.split("[", 1)[0]
            self.batches.setdefault(batch, BatchView(batch)).total += 1

    def apply(self, ev: JobEvent, now: float) -> None:
        if ev.batch is None:
            self._single(ev, now)
            return
        view = self.batches.setdefault(ev.batch, BatchView(ev.batch))
        if view.started is None:
            view.started = now
        view.status[ev.address] = ev.status
        view.total = max(view.total, len(view.status))
        if ev.status in BAD:
            view.failures.append((ev.address[len(ev.batch):], ev.status, ev.detail))

    def _single(self, ev: JobEvent, now: float) -> None:
        row = self.singles.get(ev.address)
        if row is None:
            row = self.singles[ev.address] = SingleView(ev.address, ev.status, ev.detail, now)
        row.status = ev.status
        row.detail = ev.remote_id if ev.progress is not None and ev.remote_id else ev.detail
        if ev.progress is not None:
            row.progress = ev.progress
        elif ev.status == "succeeded":
            row.progress = None if row.progress is None else 100
        row.finished = now if ev.status in DONE else None


__all__ = ["FAILURES_KEPT", "BatchView", "Board", "SingleView"]
