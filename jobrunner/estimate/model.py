"""Estimates as plain data: what a planned change will take and cost, and the plan's totals.

Every number carries its source, and a number nobody can know is None, shown as "unknown": a
missing estimate must never read as "free" or "instant" to a reviewer or to a budget policy.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Basis(enum.Enum):
    """Where a duration came from, most trusted first."""

    MEASURED = "measured"  # run times of the same model version recorded in state
    HINT = "hint"  # the resource's `estimate.duration`
    UNKNOWN = "unknown"
    # The change runs no job (a deployment updated in place: one PATCH, nothing billed for it).
    NO_JOB = "no_job"


@dataclass(frozen=True)
class Estimate:
    """One planned change: its run time and cost, each with its source.

    `usd` is None when the duration or the price is unknown; a free SKU (the local platform) is a
    known 0.0, not an unknown.
    """

    seconds: float | None
    basis: Basis
    duration_source: str  # e.g. "median of 4 runs of version d99e221ba68f in state"
    hardware: str | None
    hardware_source: str  # e.g. "Model/poems hardware", "estimate.hardware", "the local platform"
    usd: float | None
    cost_source: str  # e.g. "cpu at $0.0001/s (list prices as of 2025-06-01, …)"
    job_kind: str = ""


@dataclass(frozen=True)
class ResourceEstimate:
    """The changes of one resource (a training, or every changed item of a batch), summed."""

    resource: str  # Kind/name
    provider: str
    jobs: int  # jobs the changes run (batch items count one each; an update in place runs none)
    unknown_duration: int  # of which the run time is unknown
    unknown_cost: int  # of which the cost is unknown
    compute_seconds: float  # summed over the known run times
    usd: float  # summed over the known costs
    wall_seconds: float | None  # None: some run time unknown
    sources: tuple[str, ...] = ()  # distinct duration sources, for the cost table

    @property
    def cost_known(self) -> bool:
        return self.unknown_cost == 0


@dataclass(frozen=True)
class Totals:
    """Sums over a provider's resources, or over the whole plan (`provider` = "")."""

    provider: str
    jobs: int
    unknown_cost: int
    unknown_duration: int
    usd: float  # known part only; `unknown_cost` says how many jobs it leaves out
    wall_seconds: float | None


@dataclass(frozen=True)
class Serving:
    """What a deployment this plan creates or changes costs per hour while it is deployed.

    Not a one-off: it is billed for as long as the deployment exists, so it is never added to the
    plan's totals (nor to a budget policy's). `usd_per_hour_min` is the idle floor (`min_instances`
    kept running), `usd_per_hour_max` the ceiling at `max_instances`; None: unknown.
    """

    resource: str  # Deployment/name
    provider: str
    min_instances: int | None
    max_instances: int | None
    hardware: str | None
    usd_per_hour_min: float | None
    usd_per_hour_max: float | None
    source: str  # e.g. "gpu-t4 at $0.000225/s (list prices …)", or why it is unknown


@dataclass
class PlanEstimate:
    """Estimates of a whole plan: per change, per resource, per provider and in all."""

    changes: dict[str, Estimate] = field(default_factory=dict)  # by address
    resources: list[ResourceEstimate] = field(default_factory=list)
    providers: list[Totals] = field(default_factory=list)
    total: Totals = field(default_factory=lambda: Totals("", 0, 0, 0, 0.0, 0.0))
    serving: list[Serving] = field(default_factory=list)  # deployments created or changed, per hour
    creates: int = 0  # jobs this plan creates (create, replace, retry): what max_creates_per_apply counts
    parallelism: int = 10  # the wall-clock assumption
    # Policy verdicts (jobrunner.estimate.policy): what is over budget, and whether a flag allowed it.
    over_budget: list[str] = field(default_factory=list)
    allow_over_budget: bool = False


__all__ = ["Basis", "Estimate", "PlanEstimate", "ResourceEstimate", "Serving", "Totals"]
