"""The plan as a terminal shows it: Terraform-like lines, a reason per line, a summary line.

    + Training/poems-ngram  (new job)
    ~ Deployment/poems-api  (max_instances (1 -> 3) changed: updated in place)
          ~ max_instances: 1 -> 3
  -/+ PredictionBatch/eval[moon]  (input.prompt ("The moon" -> "The sun") changed)
   -> PredictionBatch/poems[moon]  (moved from PredictionBatch/eval[moon]; still running (p-12))
          ~ input.prompt: "The moon" -> "The sun"
    ~ Training/big  (retry: tr-1 failed: out of memory; attempt 2 of 3)

  Plan: 1 to create, 1 to replace, 1 to retry, 0 to cancel, 0 to forget, 0 waiting.

A change that runs something ends with its estimate (`[~2m 10s, $0.18]`), and a table of estimated
durations and costs per resource, provider and in all comes before the summary line
(render.plan_costs; "unknown" where nothing says, never $0.00).

Converged jobs are not listed (only counted); a converged plan says "No changes. Your jobs match
the manifests." Colours are added only when the caller says the stream is a terminal.
"""
from __future__ import annotations

import os
import sys
from typing import TextIO

from jobrunner.plan_types import (
    ADOPT,
    CANCEL,
    CREATE,
    DELETE,
    FORGET,
    MOVED,
    NOOP,
    REPLACE,
    RETRY,
    SYMBOLS,
    UPDATE,
    WAIT,
    Plan,
    PlannedChange,
)
from jobrunner.redact import Secrets, known_secrets, scrub_text
from jobrunner.render.plan_common import (
    change_estimate,
    destructive_line,
    diff_lines,
    no_changes_line,
    summary_line,
    visible,
)
from jobrunner.render.plan_costs import text_lines

_COLOURS = {
    CREATE: "32",  # green
    UPDATE: "33",  # yellow
    REPLACE: "33",  # yellow
    RETRY: "33",
    WAIT: "36",  # cyan
    ADOPT: "36",
    MOVED: "36",
    CANCEL: "31",  # red
    FORGET: "31",
    DELETE: "31",
    NOOP: "2",  # dim
}
# Actions whose symbol is shared with another one say their name before the reason.
_NAMED = {RETRY, WAIT, CANCEL, DELETE, FORGET, ADOPT, NOOP}
_SIGN_COLOURS = {"+": "32", "-": "31", "~": "33"}


def _paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def change_line(change: PlannedChange, *, color: bool = False, secrets: Secrets | None = None) -> str:
    symbol = SYMBOLS.get(change.action, "?") if change.action != NOOP else "="
    reason = f"{change.action}: {change.reason}" if change.action in _NAMED else change.reason
    head = f"{symbol:>3} {change.address}"
    return f"{_paint(head, _COLOURS.get(change.action, '0'), color)}  ({scrub_text(reason, secrets=secrets)})"


def use_colour(stream: TextIO | None = None) -> bool:
    """Colours only on a terminal, and never when NO_COLOR is set or TERM is dumb."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def render(plan: Plan, *, color: bool | None = None) -> str:
    """The text plan; `color=None` means: colours when standard output is a terminal."""
    if color is None:
        color = use_colour()
    lines: list[str] = []
    secrets = known_secrets()
    for warning in plan.warnings:
        lines.append(_paint(f"Warning: {scrub_text(warning)}", "33", color))
    if plan.warnings:
        lines.append("")
    shown = [c for c in plan.changes if visible(c)]
    if shown:
        lines.append("jobrunner will perform these actions:" if plan.has_changes
                     else "Jobs still running or needing attention:")
        lines.append("")
        for change in shown:
            line = change_line(change, color=color, secrets=secrets)
            cost = change_estimate(change, plan)
            lines.append(f"{line}  [{cost}]" if cost else line)
            # Diffs for replaced jobs; all inputs of a new training or model (batch items are
            # too many to list: their inputs are in the JSON plan).
            with_diff = (change.action in (UPDATE, REPLACE, NOOP) and change.prior is not None) or (
                change.action == CREATE and change.job is not None and change.address == change.job.resource_address)
            if with_diff:
                for sign, text in diff_lines(change, secrets=secrets):
                    lines.append("        " + _paint(f"{sign} {text}", _SIGN_COLOURS[sign], color))
        lines.append("")
    lines.extend(text_lines(plan.estimate))
    if plan.has_changes:
        doomed = destructive_line(plan)
        if doomed:
            lines.append(_paint(f"Destructive: {scrub_text(doomed, secrets=secrets)}", "31", color))
        lines.append(_paint(summary_line(plan), "1", color))
        return "\n".join(lines) + "\n"
    lines.append(no_changes_line(plan))
    return "\n".join(lines) + "\n"


__all__ = ["render", "change_line", "use_colour"]
