"""Cost and duration estimates of a plan, and the workspace budget policy that can refuse it.

`estimator.estimate_plan` (pure) estimates every create, replace, retry and update with its
sources; `prices` is the dated price table; `policy` checks a plan against `policy:` in
jobrunner.yaml. The renderers show the result (`Plan.estimate`); see docs/costs.md.
"""
from __future__ import annotations

from jobrunner.estimate.model import (
    Basis,
    Estimate,
    PlanEstimate,
    ResourceEstimate,
    Totals,
)

__all__ = ["Basis", "Estimate", "PlanEstimate", "ResourceEstimate", "Totals"]
