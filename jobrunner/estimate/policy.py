"""The workspace's budget policy: refuse plans that spend more than jobrunner.yaml allows.

    policy:
      max_cost_per_apply: 50        # USD, summed over the plan's estimated changes
      max_creates_per_apply: 1000   # jobs created (create, replace, retry; Model units excluded)

`plan` and `apply` check it after planning; a plan over budget is refused (exit 1) with the
numbers, unless `--allow-over-budget` is given, which the plan then records (saved plans too, so
`apply PLANFILE` runs what was allowed at review time, and the JSON plan and PR comment say so).

Unknown cost against a cost limit: refused. A job whose cost nobody can estimate could cost
anything, so a budget that lets it through is not a budget; the message names every resource
whose cost is unknown and how to give it an `estimate:` hint (or a price) so the next plan knows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobrunner.errors import PolicyError
from jobrunner.estimate.model import PlanEstimate

POLICY_KEYS = ("max_cost_per_apply", "max_creates_per_apply")
HINT_EXAMPLE = "estimate: {duration: 30s, hardware: gpu-t4}"


@dataclass(frozen=True)
class BudgetPolicy:
    """`policy:` of jobrunner.yaml; None = no limit."""

    max_cost_per_apply: float | None = None
    max_creates_per_apply: int | None = None

    @property
    def empty(self) -> bool:
        return self.max_cost_per_apply is None and self.max_creates_per_apply is None


def policy_of(config: Any) -> BudgetPolicy:
    """The `policy:` of a workspace config (jobrunner.workspace.WorkspaceConfig)."""
    return BudgetPolicy(getattr(config, "max_cost_per_apply", None), getattr(config, "max_creates_per_apply", None))


def violations(est: PlanEstimate, policy: BudgetPolicy) -> list[str]:
    """What in the plan breaks the policy, each with its numbers (empty: within budget)."""
    out: list[str] = []
    if policy.max_creates_per_apply is not None and est.creates > policy.max_creates_per_apply:
        out.append(f"the plan creates {est.creates:,} jobs; policy.max_creates_per_apply is "
                   f"{policy.max_creates_per_apply:,}")
    limit = policy.max_cost_per_apply
    if limit is None:
        return out
    total = est.total
    if total.usd > limit:
        out.append(f"the estimated cost is ${total.usd:,.2f}"
                   f"{' plus unknown' if total.unknown_cost else ''}; policy.max_cost_per_apply is ${limit:,.2f}")
    unknown = [r for r in est.resources if r.unknown_cost]
    if unknown:
        names = ", ".join(f"{r.resource} ({r.unknown_cost:,} job{'s' if r.unknown_cost != 1 else ''})"
                          for r in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        out.append(f"the cost of {names}{more} is unknown, so the plan cannot be shown to stay under "
                   f"policy.max_cost_per_apply (${limit:,.2f}); give each an `{HINT_EXAMPLE}` hint in its spec")
    return out


def enforce(est: PlanEstimate | None, policy: BudgetPolicy, *, allow: bool) -> list[str]:
    """Record the verdict on `est`; raise PolicyError when over budget and not allowed.

    Returns the violations (warnings to print when `allow` let them through).
    """
    if est is None or policy.empty:
        return []
    found = violations(est, policy)
    est.over_budget = found
    est.allow_over_budget = allow and bool(found)
    if found and not allow:
        raise PolicyError(
            "the plan is over the workspace budget (policy in jobrunner.yaml):\n  " + "\n  ".join(found),
            hint="reduce the change, raise the limit in jobrunner.yaml, or pass --allow-over-budget "
                 "(recorded in the plan)",
        )
    return found


def check_budget(est: PlanEstimate | None, config: Any, *, allow: bool) -> tuple[list[str], PolicyError | None]:
    """`enforce` for commands that show the plan before refusing it: (allowed violations, the
    refusal or None). The verdict is recorded on `est` either way, so renderers show it."""
    try:
        return enforce(est, policy_of(config), allow=allow), None
    except PolicyError as refused:
        return [], refused


__all__ = ["HINT_EXAMPLE", "POLICY_KEYS", "BudgetPolicy", "check_budget", "enforce", "policy_of", "violations"]
