"""Wording shared by the plan renderers (text, JSON, markdown), so every format says the same thing."""
from __future__ import annotations

import json
from typing import Any

from jobrunner.estimate.model import Basis
from jobrunner.plan_types import (
    ADOPT,
    CANCEL,
    CREATE,
    DELETE,
    DESTRUCTIVE,
    FORGET,
    NOOP,
    REPLACE,
    RETRY,
    UPDATE,
    WAIT,
    Plan,
    PlannedChange,
)
from jobrunner.redact import Secrets, known_secrets, redact, scrub_text
from jobrunner.references import REF_RE
from jobrunner.resources import JOB_DEPLOYMENT, resource_of

NO_CHANGES = "No changes. Your jobs match the manifests."

# Order of the summary line: what changes first, then what only waits.
SUMMARY_ORDER = (CREATE, REPLACE, RETRY, CANCEL, FORGET)


def summary_line(plan: Plan) -> str:
    """`Plan: 1 to create, 0 to replace, 0 to retry, 0 to cancel, 0 to forget, 2 waiting.`

    Declared renames add `N to move`: every moved address, including those also replaced.
    Deployments add `N to update` and `N to delete` when there are any.
    """
    counts = plan.counts()
    parts = [f"{counts[a]} to {a}" for a in SUMMARY_ORDER]
    if counts[UPDATE]:
        parts.insert(1, f"{counts[UPDATE]} to update")
    if counts[DELETE]:
        parts.insert(parts.index(f"{counts[CANCEL]} to cancel") + 1, f"{counts[DELETE]} to delete")
    if counts[ADOPT]:
        parts.append(f"{counts[ADOPT]} to adopt")
    moves = len(plan.moves)
    if moves:
        parts.append(f"{moves} to move")
    parts.append(f"{counts[WAIT]} waiting")
    return "Plan: " + ", ".join(parts) + "."


def destructive_line(plan: Plan) -> str | None:
    """The warning a reviewer must not miss: what this plan deletes on the provider for good."""
    doomed = [c for c in plan.changes if c.action in DESTRUCTIVE]
    if not doomed:
        return None
    versions = sum(1 for c in doomed if c.prior is not None and c.prior.job_kind != JOB_DEPLOYMENT)
    what = [f"{n} {noun}{'s' if n != 1 else ''}" for n, noun in
            ((len(doomed) - versions, "deployment"), (versions, "trained version")) if n]
    names = [c.address for c in doomed]
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return f"This plan deletes {' and '.join(what)} on the provider: {shown}"


def no_changes_line(plan: Plan) -> str:
    """The closing sentence of a plan without changes: converged, or what still runs or failed."""
    waiting = plan.counts()[WAIT]
    notes = sum(1 for c in plan.changes if c.action == NOOP and not c.quiet)
    if not waiting and not notes:
        return NO_CHANGES
    parts = []
    if waiting:
        parts.append(f"{waiting} job{'s are' if waiting != 1 else ' is'} still running")
    if notes:
        parts.append(f"{notes} need{'s' if notes == 1 else ''} attention (see above)")
    return "No changes. " + "; ".join(parts) + "."


def show_value(value: Any, limit: int = 200, *, secrets: Secrets | None = None) -> str:
    """A diff value for humans: JSON, except file digests; long values cut with an ellipsis."""
    if isinstance(value, str) and value.startswith("file sha256:"):
        text = value
    elif isinstance(value, str) and REF_RE.search(value):
        text = f"{value} (known after apply)"
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = scrub_text(text, secrets=secrets)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def diff_lines(change: PlannedChange, limit: int = 200, *, secrets: Secrets | None = None) -> list[tuple[str, str]]:
    """(sign, text) per changed key: `+` added, `-` removed, `~` changed (`before -> after`)."""
    out: list[tuple[str, str]] = []
    secrets = known_secrets() if secrets is None else secrets
    creating = change.prior is None
    for key, (before, after) in change.input_diff.items():
        if creating or before is None:
            out.append(("+", f"{key}: {show_value(after, limit, secrets=secrets)}"))
        elif after is None:
            out.append(("-", f"{key}: {show_value(before, limit, secrets=secrets)}"))
        else:
            out.append(("~", f"{key}: {show_value(before, limit, secrets=secrets)} -> "
                             f"{show_value(after, limit, secrets=secrets)}"))
    return out


def redacted_request(change: PlannedChange, *, secrets: Secrets | None = None) -> dict[str, Any] | None:
    """What the change would send (or last sent), redacted; None when unknown."""
    shown: dict[str, Any]
    if change.job is not None:
        body = {k: v for k, v in change.job.request.items() if k not in ("provider", "kind")}
        shown = redact(body, change.job.sensitive_paths, secrets=secrets)
        return shown
    if change.prior is not None and change.prior.inputs is not None:
        shown = redact({k: v for k, v in change.prior.inputs.items() if k not in ("provider", "kind")},
                       secrets=secrets)
        return shown
    return None


def fmt_usd(usd: float | None) -> str:
    """Dollars for humans; None is "unknown" (never $0.00: a missing estimate is not free)."""
    if usd is None:
        return "unknown"
    if 0 < usd < 0.01:
        return "<$0.01"
    return f"${usd:,.2f}"


def fmt_seconds(seconds: float | None) -> str:
    """A run time for humans (`0.02s`, `45s`, `2m 10s`, `2h 50m`); None is "unknown"."""
    if seconds is None:
        return "unknown"
    if seconds < 1:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60}s" if whole % 60 else f"{whole // 60}m"
    return f"{whole // 3600}h {whole % 3600 // 60}m"


def fmt_total_usd(usd: float, unknown: int) -> str:
    """A sum whose parts may be unknown: `$12.30 + unknown (3 jobs)`."""
    if not unknown:
        return fmt_usd(usd)
    jobs = f"{unknown:,} job{'s' if unknown != 1 else ''}"
    return f"{fmt_usd(usd)} + unknown ({jobs})" if usd else f"unknown ({jobs})"


def change_estimate(change: PlannedChange, plan: Plan) -> str | None:
    """`~2m 10s, $0.18` for a change the plan estimated, else None."""
    est = plan.estimate.changes.get(change.address) if plan.estimate is not None else None
    if est is None:
        return None
    if est.basis is Basis.NO_JOB:
        return "runs no job"
    took = f"~{fmt_seconds(est.seconds)}" if est.seconds is not None else "duration unknown"
    return f"{took}, {fmt_usd(est.usd) if est.usd is not None else 'cost unknown'}"


def visible(change: PlannedChange) -> bool:
    """Worth a line in a human plan: everything but quiet (converged) noops."""
    return not (change.action == NOOP and change.quiet)


__all__ = [
    "NO_CHANGES",
    "SUMMARY_ORDER",
    "destructive_line",
    "summary_line",
    "no_changes_line",
    "show_value",
    "diff_lines",
    "redacted_request",
    "resource_of",
    "visible",
    "fmt_usd",
    "fmt_seconds",
    "fmt_total_usd",
    "change_estimate",
]
