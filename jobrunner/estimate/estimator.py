"""The estimator: how long each planned change will run and what it will cost, with sources.

Pure: a function of the plan's changes, the state document, the resources and an
`EstimateContext` (prices, parallelism, rate limits) built from jobrunner.yaml. No request is
sent: measured run times come from what state recorded (`metrics.predict_time` of finished jobs,
including those a plan's refresh just absorbed), never from extra provider calls, so a plan over
terminal jobs still sends no request.

Per change, in order of preference:

- duration: the median measured run time of the same model version in state (the provider's
  adapter says what "version" and "measured" mean), else the resource's `estimate.duration`
  hint, else unknown;
- hardware: the provider's fixed hardware (the local platform), else the `estimate.hardware`
  hint, else the `hardware` of the declared `Model` the version belongs to, else unknown;
- cost: duration × the hardware's price (`prices.PriceTable`), unknown when either is.

A deployment updated in place without an `estimate.duration` hint runs no job: its estimate says
so (basis `no_job`, 0 s, $0) instead of an unknown job, so a budget policy does not refuse a
scale-up for a cost nobody could know. What a deployment the plan creates or changes costs while
it is deployed is estimated apart, per hour (`Serving`: `min_instances` kept running as the idle
floor, `max_instances` as the ceiling, times its hardware's price), where the provider's adapter
says how (`Costing.serving`); it is never added to the totals, which are one-off costs.

Wall clock of a resource with N changes, per-item run time d, parallelism P and a provider create
rate R per minute: max(ceil(N/P)·d, N/R minutes): batches are bounded by the slower of compute and
the rate limit. A plan's wall clock is its longest dependency chain, and at least all compute
divided by P. Changes are taken generically (any action in ESTIMATED_ACTIONS with a desired job),
so new kinds and actions (a deployment's `update`) get estimates through the same path.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from jobrunner.durations import DurationError, parse_duration
from jobrunner.estimate.model import (
    Basis,
    Estimate,
    PlanEstimate,
    ResourceEstimate,
    Serving,
    Totals,
)
from jobrunner.estimate.prices import PriceTable
from jobrunner.plan_types import PlannedChange
from jobrunner.providers.adapter import ProviderAdapter
from jobrunner.providers.adapters import ADAPTERS, find_adapter
from jobrunner.providers.base import SUCCEEDED
from jobrunner.providers.limits import CREATE, OTHER, UNLIMITED, RateLimits
from jobrunner.resources import JOB_DEPLOYMENT, JOB_MODEL, DesiredJob, Resource
from jobrunner.state.model import StateDoc

# Actions that run something new on a provider (and so take time and money). `update` is the
# in-place change of a deployment.
ESTIMATED_ACTIONS = frozenset({"create", "replace", "retry", "update"})
# Actions that create a job: what `policy.max_creates_per_apply` counts.
CREATING_ACTIONS = frozenset({"create", "replace", "retry"})

HistoryKey = tuple[str, str, str]  # provider, job kind, version


@dataclass(frozen=True)
class EstimateContext:
    """What estimates assume beyond state and manifests (from jobrunner.yaml)."""

    prices: PriceTable = field(default_factory=PriceTable)
    parallelism: int = 10
    # provider -> rate class -> creates per minute (None: no limit)
    rates: Mapping[str, Mapping[str, float | None]] = field(default_factory=lambda: MappingProxyType({}))


def measured_runs(doc: StateDoc) -> dict[HistoryKey, list[float]]:
    """Run times of succeeded jobs in state, by (provider, job kind, version)."""
    runs: dict[HistoryKey, list[float]] = {}
    for st in doc.addresses.values():
        adapter = find_adapter(st.provider)
        if adapter is None or st.status != SUCCEEDED or not st.outputs or not st.inputs:
            continue
        seconds = adapter.costing.measured_seconds(st.outputs)
        version = adapter.costing.version_of(st.inputs)
        if seconds is not None and version:
            runs.setdefault((st.provider, st.job_kind, version), []).append(seconds)
    return runs


def declared_hardware(resources: Sequence[Resource]) -> dict[tuple[str, str], tuple[str, str]]:
    """(provider, owner/name) -> (hardware, Model address) of every declared Model."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for r in resources:
        hw, owner, name = r.spec.get("hardware"), r.spec.get("owner"), r.spec.get("name")
        if r.kind == "Model" and isinstance(hw, str) and owner and name:
            out[(r.provider, f"{owner}/{name}")] = (hw, r.address)
    return out


def hint_of(resource: Resource | None) -> dict[str, Any]:
    hint = resource.spec.get("estimate") if resource is not None else None
    return hint if isinstance(hint, dict) else {}


def _where(resource: Resource, key: str) -> str:
    pos = resource.position(f"$.spec.estimate.{key}")
    return f"estimate.{key} ({resource.file}:{pos.line})"


@dataclass
class _Inputs:
    runs: dict[HistoryKey, list[float]]
    hardware: dict[tuple[str, str], tuple[str, str]]
    resources: dict[str, Resource]
    ctx: EstimateContext


def _duration(job: DesiredJob, adapter: ProviderAdapter, res: Resource | None,
              inp: _Inputs) -> tuple[float | None, Basis, str]:
    version = adapter.costing.version_of(job.request)
    runs = inp.runs.get((job.provider, job.job_kind, version or ""), []) if version else []
    if runs and version:
        n = len(runs)
        return (statistics.median(runs), Basis.MEASURED,
                f"median of {n} run{'s' if n != 1 else ''} of version {version[:12]} in state")
    hinted = hint_of(res).get("duration")
    if hinted is not None and res is not None:
        try:
            return parse_duration(hinted), Basis.HINT, _where(res, "duration")
        except DurationError:
            pass  # validate reports it; an unreadable hint is no estimate
    why = "no measured run of this version in state" if version else "version known only after apply"
    return None, Basis.UNKNOWN, f"unknown: {why} and no estimate.duration"


def _hardware(job: DesiredJob, adapter: ProviderAdapter, res: Resource | None,
              inp: _Inputs) -> tuple[str | None, str]:
    if adapter.costing.fixed_hardware:
        return adapter.costing.fixed_hardware, adapter.title
    hinted = hint_of(res).get("hardware")
    if isinstance(hinted, str) and hinted and res is not None:
        return hinted, _where(res, "hardware")
    model = adapter.costing.model_of(job.request)
    declared = inp.hardware.get((job.provider, model)) if model else None
    if declared is not None:
        return declared[0], f"{declared[1]} hardware"
    return None, "unknown: no estimate.hardware and no declared Model for this version"


def _estimate_once(job: DesiredJob, inp: _Inputs, same: dict[tuple[Any, ...], Estimate]) -> Estimate:
    """`estimate_job(job, inp)`, made once per combination of what it depends on: provider, job
    kind, resource (its hints) and the request's version and model (run times, hardware). The
    100,000 items of a batch get one estimate, not 100,000 equal ones (strings and all)."""
    adapter = find_adapter(job.provider)
    if adapter is None:
        return estimate_job(job, inp)
    key = (job.provider, job.job_kind, job.resource_address, adapter.costing.version_of(job.request),
           adapter.costing.model_of(job.request))
    est = same.get(key)
    if est is None:
        est = same[key] = estimate_job(job, inp)
    return est


def estimate_job(job: DesiredJob, inp: _Inputs) -> Estimate:
    """The estimate of running `job` once."""
    adapter = find_adapter(job.provider)
    res = inp.resources.get(job.resource_address)
    if adapter is None:
        return Estimate(None, Basis.UNKNOWN, "unknown provider", None, "unknown provider", None, "unknown",
                        job.job_kind)
    seconds, basis, dsrc = _duration(job, adapter, res, inp)
    hardware, hsrc = _hardware(job, adapter, res, inp)
    price = inp.ctx.prices.price(hardware) if hardware else None
    if price is not None and price.usd_per_second == 0:
        usd: float | None = 0.0  # free whatever the run time: a known zero
        csrc = f"{hardware}: free ({price.source})"
    elif price is None:
        usd = None
        csrc = (f"unknown: no price for hardware {hardware!r} (add it under `prices:` in jobrunner.yaml)"
                if hardware else "unknown: hardware unknown")
    else:
        usd = seconds * price.usd_per_second if seconds is not None else None
        csrc = f"{hardware} at ${price.usd_per_second:g}/s ({price.source})"
        if seconds is None:
            csrc = f"unknown: run time unknown ({csrc})"
    return Estimate(seconds, basis, dsrc, hardware, hsrc, usd, csrc, job.job_kind)


def _no_job(change: PlannedChange, inp: _Inputs) -> Estimate | None:
    """The estimate of an update in place with no `estimate.duration` hint: it runs no job."""
    job = change.job
    if change.action != "update" or job is None or job.job_kind != JOB_DEPLOYMENT:
        return None
    if hint_of(inp.resources.get(job.resource_address)).get("duration") is not None:
        return None  # the hint says how long it takes to serve again: priced like any run
    why = "an update in place runs no job (serving time is not estimated)"
    return Estimate(0.0, Basis.NO_JOB, why, None, why, 0.0, why, job.job_kind)


def serving_of(change: PlannedChange, inp: _Inputs) -> Serving | None:
    """The hourly serving cost of a deployment this change creates, replaces or updates."""
    job = change.job
    if job is None or job.job_kind != JOB_DEPLOYMENT:
        return None
    adapter = find_adapter(job.provider)
    if adapter is None or adapter.costing.serving is None:
        why = f"not estimated: {adapter.title if adapter else job.provider} reports no instance counts to price"
        return Serving(job.resource_address, job.provider, None, None, None, None, None, why)
    low, high, hardware = adapter.costing.serving(job.request)
    if adapter.costing.fixed_hardware:
        hardware = adapter.costing.fixed_hardware
    price = inp.ctx.prices.price(hardware) if hardware else None
    if price is None:
        why = (f"unknown: no price for hardware {hardware!r} (add it under `prices:` in jobrunner.yaml)"
               if hardware else "unknown: hardware unknown")
        return Serving(job.resource_address, job.provider, low, high, hardware, None, None, why)
    hourly = price.usd_per_second * 3600.0
    source = (f"{hardware}: free ({price.source})" if hourly == 0
              else f"{hardware} at ${price.usd_per_second:g}/s ({price.source})")
    return Serving(job.resource_address, job.provider, low, high, hardware,
                   None if low is None else low * hourly, None if high is None else high * hourly, source)


def _estimated(change: PlannedChange) -> bool:
    return change.action in ESTIMATED_ACTIONS and change.job is not None and change.job.job_kind != JOB_MODEL


def _rate(ctx: EstimateContext, provider: str, job_kind: str) -> float | None:
    adapter = find_adapter(provider)
    klass = adapter.costing.rate_class.get(job_kind) if adapter else None
    return ctx.rates.get(provider, {}).get(klass) if klass else None


def _resource_estimate(resource: str, provider: str, items: list[Estimate], ctx: EstimateContext) -> ResourceEstimate:
    known = [e.seconds for e in items if e.seconds is not None]
    unknown_duration = len(items) - len(known)
    n, par = len(items), max(1, ctx.parallelism)
    jobs = sum(1 for e in items if e.basis is not Basis.NO_JOB)
    wall: float | None = None
    if not unknown_duration:
        wall = math.ceil(n / par) * (sum(known) / n)
        rate = _rate(ctx, provider, items[0].job_kind)
        if rate:
            wall = max(wall, n / rate * 60.0)
    return ResourceEstimate(
        resource=resource, provider=provider, jobs=jobs, unknown_duration=unknown_duration,
        unknown_cost=sum(1 for e in items if e.usd is None), compute_seconds=sum(known),
        usd=sum(e.usd for e in items if e.usd is not None), wall_seconds=wall,
        sources=tuple(dict.fromkeys(e.duration_source for e in items)),
    )


def _chain_walls(resources: list[ResourceEstimate], depends: Mapping[str, tuple[str, ...]]) -> float | None:
    """The longest dependency chain's wall clock (None when a resource on some chain is unknown)."""
    by_name = {r.resource: r for r in resources}
    memo: dict[str, float | None] = {}

    def finish(name: str, seen: frozenset[str]) -> float | None:
        if name in memo:
            return memo[name]
        own = by_name[name].wall_seconds
        ups = [finish(u, seen | {name}) for u in depends.get(name, ()) if u in by_name and u not in seen]
        value = None if own is None or any(u is None for u in ups) else own + max((u for u in ups if u is not None),
                                                                                  default=0.0)
        memo[name] = value
        return value

    walls = [finish(r.resource, frozenset()) for r in resources]
    return None if any(w is None for w in walls) else max((w for w in walls if w is not None), default=0.0)


def _totals(provider: str, resources: list[ResourceEstimate], depends: Mapping[str, tuple[str, ...]],
            ctx: EstimateContext) -> Totals:
    chain = _chain_walls(resources, depends)
    compute = sum(r.compute_seconds for r in resources)
    wall = None if chain is None else max(chain, compute / max(1, ctx.parallelism))
    return Totals(provider=provider, jobs=sum(r.jobs for r in resources),
                  unknown_cost=sum(r.unknown_cost for r in resources),
                  unknown_duration=sum(r.unknown_duration for r in resources),
                  usd=sum(r.usd for r in resources), wall_seconds=wall)


def estimate_plan(changes: Sequence[PlannedChange], doc: StateDoc, resources: Sequence[Resource],
                  ctx: EstimateContext | None = None) -> PlanEstimate:
    """Estimates of every change that runs something, summed per resource, provider and plan."""
    ctx = ctx or EstimateContext()
    estimated = [c for c in changes if c.job is not None and _estimated(c)]
    # The run times in state are read only when something runs: a converged plan over 100,000
    # succeeded items would walk them all for nothing (twice per apply).
    runs = measured_runs(doc) if estimated else {}
    inp = _Inputs(runs, declared_hardware(resources), {r.address: r for r in resources}, ctx)
    out = PlanEstimate(parallelism=ctx.parallelism)
    groups: dict[str, list[Estimate]] = {}
    providers: dict[str, str] = {}
    depends: dict[str, tuple[str, ...]] = {}
    same: dict[tuple[Any, ...], Estimate] = {}  # the items of a batch share one (Estimate is frozen)
    for change in estimated:
        job = change.job
        assert job is not None
        est = _no_job(change, inp) or _estimate_once(job, inp, same)
        out.changes[change.address] = est
        groups.setdefault(job.resource_address, []).append(est)
        providers[job.resource_address] = job.provider
        depends[job.resource_address] = job.depends_on
        out.creates += change.action in CREATING_ACTIONS
    out.resources = [_resource_estimate(r, providers[r], items, ctx) for r, items in groups.items()]
    out.serving = [s for c in estimated if (s := serving_of(c, inp)) is not None]
    for name in sorted(set(providers.values())):
        mine = [r for r in out.resources if r.provider == name]
        out.providers.append(_totals(name, mine, depends, ctx))
    out.total = _totals("", out.resources, depends, ctx)
    return out


def context_for(config: Any, parallelism: int | None = None) -> EstimateContext:
    """The estimate assumptions of a workspace: its prices, parallelism and each provider's create
    rates (the adapter's documented limits under `providers.<name>.rate_limits`)."""
    rates: dict[str, Mapping[str, float | None]] = {}
    providers = getattr(config, "providers", {}) or {}
    for name, adapter in ADAPTERS.items():
        defaults = adapter.endpoint.rate_limits if adapter.endpoint is not None else UNLIMITED
        limits = RateLimits.from_config((providers.get(name) or {}).get("rate_limits"), defaults)
        rates[name] = {CREATE: limits.create_per_minute, OTHER: limits.other_per_minute}
    return EstimateContext(prices=PriceTable(MappingProxyType(dict(getattr(config, "prices", {}) or {}))),
                           parallelism=parallelism or getattr(config, "parallelism", 10) or 10,
                           rates=MappingProxyType(rates))


__all__ = ["CREATING_ACTIONS", "ESTIMATED_ACTIONS", "EstimateContext", "context_for", "estimate_job", "estimate_plan",
           "measured_runs", "serving_of"]
