"""The plan's estimated durations and costs as each format shows them (text, JSON, Markdown).

One source of wording for the three plan renderers: a table per resource (jobs, wall clock, cost,
where the numbers came from), a row per provider and a total, and the budget verdict. Unknown
numbers read "unknown", never $0.00 (see jobrunner.estimate).
"""
from __future__ import annotations

import html
from typing import Any

from jobrunner.estimate.model import Estimate, PlanEstimate, ResourceEstimate, Serving, Totals
from jobrunner.render.plan_common import fmt_seconds, fmt_total_usd, fmt_usd

# Markdown rows of the per-resource table before it is cut (the comment must stay small).
MAX_MARKDOWN_ROWS = 40


def _jobs(n: int) -> str:
    return f"{n:,} job{'s' if n != 1 else ''}"


def _wall(seconds: float | None) -> str:
    return f"~{fmt_seconds(seconds)}" if seconds is not None else "unknown"


def _source(r: ResourceEstimate) -> str:
    return "; ".join(r.sources[:3]) + (f"; +{len(r.sources) - 3} more" if len(r.sources) > 3 else "")


def budget_lines(est: PlanEstimate) -> list[str]:
    """The policy verdict: what is over budget, and whether --allow-over-budget let it through."""
    if not est.over_budget:
        return []
    head = ("Over budget, allowed by --allow-over-budget:" if est.allow_over_budget
            else "Over budget (policy in jobrunner.yaml):")
    return [head, *(f"  - {v}" for v in est.over_budget)]


SERVING_HEAD = "Serving while deployed (billed per hour for as long as it exists, not in the totals above):"


def _instances(sv: Serving) -> str:
    low = "?" if sv.min_instances is None else str(sv.min_instances)
    high = "?" if sv.max_instances is None else str(sv.max_instances)
    return f"{sv.hardware or 'unknown hardware'} x {low}-{high} instances"


def _hourly(sv: Serving) -> str:
    """`$0.81/h idle, up to $2.43/h`: the floor min_instances keep billed, and the ceiling."""
    if sv.usd_per_hour_min is None and sv.usd_per_hour_max is None:
        return "unknown"
    return f"{fmt_usd(sv.usd_per_hour_min)}/h idle, up to {fmt_usd(sv.usd_per_hour_max)}/h"


def serving_lines(est: PlanEstimate) -> list[str]:
    """The text plan's serving section: a row per deployment created or changed."""
    if not est.serving:
        return []
    rows = [(sv.resource, _instances(sv), _hourly(sv), sv.source) for sv in est.serving]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return ["", SERVING_HEAD, *(f"  {'  '.join(c.ljust(widths[i]) for i, c in enumerate(row[:3]))}  {row[3]}".rstrip()
                            for row in rows)]


def text_lines(est: PlanEstimate | None) -> list[str]:
    """The text plan's cost section (empty when nothing is estimated)."""
    if est is None or not est.resources:
        return []
    rows = [(r.resource, _jobs(r.jobs), _wall(r.wall_seconds), fmt_total_usd(r.usd, r.unknown_cost), _source(r))
            for r in est.resources]
    if len(est.providers) > 1:
        rows += [(f"{t.provider} (total)", _jobs(t.jobs), _wall(t.wall_seconds), fmt_total_usd(t.usd, t.unknown_cost),
                  "") for t in est.providers]
    t = est.total
    rows.append(("Total", _jobs(t.jobs), _wall(t.wall_seconds), fmt_total_usd(t.usd, t.unknown_cost), ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"Estimated duration and cost (wall clock at parallelism {est.parallelism} "
             "and the providers' rate limits):"]
    for row in rows:
        cells = "  ".join(cell.ljust(widths[i]) if i != 3 else cell.rjust(widths[i]) for i, cell in enumerate(row[:4]))
        lines.append(f"  {cells}  {row[4]}".rstrip())
    return [*lines, *serving_lines(est), *budget_lines(est), ""]


def _estimate_dict(e: Estimate) -> dict[str, Any]:
    return {"seconds": e.seconds, "basis": e.basis.value, "duration_source": e.duration_source,
            "hardware": e.hardware, "hardware_source": e.hardware_source, "usd": e.usd, "cost_source": e.cost_source}


def change_json(est: PlanEstimate | None, address: str) -> dict[str, Any] | None:
    """A change's `estimate` in the JSON plan (None: not estimated)."""
    e = est.changes.get(address) if est is not None else None
    return _estimate_dict(e) if e is not None else None


def _totals_dict(t: Totals) -> dict[str, Any]:
    # usd sums the known costs only; unknown_cost says how many jobs it leaves out.
    return {"jobs": t.jobs, "usd": t.usd, "unknown_cost": t.unknown_cost, "unknown_duration": t.unknown_duration,
            "wall_seconds": t.wall_seconds}


def plan_json(est: PlanEstimate | None) -> dict[str, Any] | None:
    """The JSON plan's top-level `estimate`."""
    if est is None:
        return None
    return {
        "parallelism": est.parallelism,
        "creates": est.creates,
        "total": _totals_dict(est.total),
        "providers": [{"provider": t.provider, **_totals_dict(t)} for t in est.providers],
        "resources": [{"resource": r.resource, "provider": r.provider, "jobs": r.jobs, "usd": r.usd,
                       "unknown_cost": r.unknown_cost, "unknown_duration": r.unknown_duration,
                       "compute_seconds": r.compute_seconds, "wall_seconds": r.wall_seconds,
                       "sources": list(r.sources)} for r in est.resources],
        "serving": [{"resource": sv.resource, "provider": sv.provider, "min_instances": sv.min_instances,
                     "max_instances": sv.max_instances, "hardware": sv.hardware,
                     "usd_per_hour_min": sv.usd_per_hour_min, "usd_per_hour_max": sv.usd_per_hour_max,
                     "source": sv.source} for sv in est.serving],
        "over_budget": list(est.over_budget),
        "allow_over_budget": est.allow_over_budget,
    }


def _md(text: str) -> str:
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def _markdown_serving(est: PlanEstimate) -> list[str]:
    if not est.serving:
        return []
    out = ["**Serving while deployed** (billed per hour for as long as it exists, not in the totals above)\n\n",
           "| Deployment | Instances | Per hour | Source |\n", "|---|---|---:|---|\n"]
    out += [f"| `{sv.resource}` | {_md(_instances(sv))} | {_md(_hourly(sv))} | {_md(sv.source)} |\n"
            for sv in est.serving[:MAX_MARKDOWN_ROWS]]
    return [*out, "\n"]


def markdown_table(est: PlanEstimate | None) -> str:
    """The PR comment's cost table, read first: one row per resource (cut after
    MAX_MARKDOWN_ROWS), one per provider when there are several, and the total in bold."""
    if est is None or not est.resources:
        return ""
    out = ["#### Estimated cost\n\n", "| Resource | Jobs | Wall clock | Cost | Source |\n",
           "|---|---:|---:|---:|---|\n"]
    for r in est.resources[:MAX_MARKDOWN_ROWS]:
        out.append(f"| `{r.resource}` | {r.jobs:,} | {_wall(r.wall_seconds)} | {fmt_total_usd(r.usd, r.unknown_cost)} "
                   f"| {_md(_source(r))} |\n")
    cut = len(est.resources) - MAX_MARKDOWN_ROWS
    if cut > 0:
        out.append(f"| … {cut:,} more resources | | | | see the JSON plan |\n")
    if len(est.providers) > 1:
        for t in est.providers:
            out.append(f"| {t.provider} | {t.jobs:,} | {_wall(t.wall_seconds)} "
                       f"| {fmt_total_usd(t.usd, t.unknown_cost)} | |\n")
    t = est.total
    out.append(f"| **Total** | **{t.jobs:,}** | **{_wall(t.wall_seconds)}** "
               f"| **{fmt_total_usd(t.usd, t.unknown_cost)}** | parallelism {est.parallelism} |\n\n")
    out.extend(_markdown_serving(est))
    verdict = budget_lines(est)
    if verdict:
        out.append(f"> **{_md(verdict[0])}**\n")
        out.extend(f"> {_md(line.strip())}\n" for line in verdict[1:])
        out.append("\n")
    return "".join(out)


__all__ = ["MAX_MARKDOWN_ROWS", "budget_lines", "change_json", "markdown_table", "plan_json", "serving_lines",
           "text_lines"]
