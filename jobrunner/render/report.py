"""What apply and destroy print when they finish: the summary line and the closing notes.

Pure functions of the apply report (`jobrunner.reconcile.report`) (and state, for outputs); the commands print the lines
these return, on stdout or stderr as each line says.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobrunner.reconcile.report import (
    O_CANCELED,
    O_CANCELED_FORGOTTEN,
    O_DEFERRED,
    O_DELETED,
    O_ERROR,
    O_FAILED,
    O_FORGOTTEN,
    O_NOT_ATTEMPTED,
    O_SKIPPED,
    O_SUCCEEDED,
    O_UPDATED,
    ApplyReport,
)
from jobrunner.state.model import StateDoc


@dataclass
class ReportText:
    """Lines in the order they are printed, each marked for standard output or standard error."""

    lines: list[tuple[str, bool]] = field(default_factory=list)  # (text, to_stderr)

    def out(self, line: str) -> None:
        self.lines.append((line, False))

    def err(self, line: str) -> None:
        self.lines.append((line, True))


def _count(n: int, noun: str) -> str:
    """`1 error`, `2 errors`; words that are adjectives (`3 created`) pass `noun` with no plural."""
    if noun == "error":
        return f"{n} error" + ("" if n == 1 else "s")
    return f"{n} {noun}"


def summary_line(verb: str, report: ApplyReport) -> str:
    """`Apply complete: 3 created, 3 succeeded, 0 failed.` and the other counts that are not zero.

    Apply always shows created/succeeded/failed; destroy (a verb starting with `Destroy`) creates
    and runs nothing, so it shows only the counts that are not zero: `Destroy complete: 2 canceled,
    5 forgotten.` A job canceled because the manifests dropped it counts as canceled and forgotten.
    """
    destroying = verb.startswith("Destroy")
    canceled_and_forgotten = report.count(O_CANCELED_FORGOTTEN)
    counts: list[tuple[str, int, bool]] = [  # (noun, count, shown even when zero)
        ("created", report.created, not destroying),
        ("adopted", report.adopted, False),
        ("updated", report.count(O_UPDATED), False),
        ("succeeded", report.count(O_SUCCEEDED), not destroying),
        ("failed", report.count(O_FAILED), not destroying),
        ("canceled", report.count(O_CANCELED) + canceled_and_forgotten, False),
        ("skipped", report.count(O_SKIPPED), False),
        ("error", report.count(O_ERROR), False),
        ("deleted", report.count(O_DELETED), False),
        ("forgotten", report.count(O_FORGOTTEN) + canceled_and_forgotten, False),
        ("not attempted", report.count(O_NOT_ATTEMPTED), False),
        ("still running", len(report.running), False),
        ("deferred", report.count(O_DEFERRED), False),
    ]
    parts = [_count(n, noun) for noun, n, always in counts if n or always]
    return f"{verb}: " + (", ".join(parts) if parts else "nothing to do") + "."


def _outcome_and_detail(outcome: str, detail: str) -> str:
    """`canceled: <why>`, never `canceled: canceled` or `canceled: canceled: <why>`."""
    detail = (detail or "").removeprefix(f"{outcome}: ")
    return outcome if detail in ("", outcome) else f"{outcome}: {detail}"


def failure_lines(report: ApplyReport) -> list[str]:
    """One line per job that did not succeed, with the provider's error.

    Jobs caught by a provider's stop (it refused the credential or account) are not listed one by
    one: each stopped provider gets one block naming the refusal and how many jobs it affected.
    """
    lines = [f"  {o.address}: {_outcome_and_detail(o.outcome, o.detail)}"
             for o in sorted(report.failed, key=lambda o: o.address) if not o.stopped_provider]
    for provider, detail in report.provider_stops.items():
        mine = [o for o in report.outcomes.values() if o.stopped_provider == provider]
        if not mine:
            continue
        refused = sorted(o.address for o in mine if o.outcome != O_NOT_ATTEMPTED)
        skipped = sum(1 for o in mine if o.outcome == O_NOT_ATTEMPTED)
        lines.append(f"  provider {provider} refused this run, so apply sent it nothing more: {detail}")
        if refused:
            more = f" and {len(refused) - 1} more in flight" if len(refused) > 1 else ""
            lines.append(f"    refused: {refused[0]}{more}")
        if skipped:
            lines.append(f"    not attempted: {skipped} job(s) of {provider}; run `jobrunner apply` again once fixed")
    return lines


# At most this many attention lines; the plan above them lists every one.
MAX_ATTENTION_LINES = 20
ATTENTION_HINT = (
    "hint: fix what made a job fail, then change its manifest or raise spec.retry.max_attempts to run it "
    "again (or `jobrunner apply --replace ADDRESS` to run it again as it is); a job blocked by its "
    "upstream runs once that upstream succeeds with the outputs it needs."
)


def attention_lines(changes: list[Any]) -> list[str]:
    """Which jobs need a person and what to do, for standard error (empty when none).

    `changes` are the plan's attention changes (`jobrunner.exitcodes.attention`) that this run
    did not already report as failed or skipped.
    """
    from jobrunner.redact import scrub_text

    if not changes:
        return []
    n = len(changes)
    lines = [f"{n} job{'s' if n != 1 else ''} need{'s' if n == 1 else ''} attention "
             "(apply exits 5 until this is dealt with):"]
    for change in changes[:MAX_ATTENTION_LINES]:
        lines.append(f"  {change.address}: {scrub_text(change.reason)}")
    if n > MAX_ATTENTION_LINES:
        lines.append(f"  ... and {n - MAX_ATTENTION_LINES} more (`jobrunner status` lists them)")
    lines.append(ATTENTION_HINT)
    return lines


def apply_report(report: ApplyReport, doc: StateDoc, verb: str, pending: list[Any] | None = None) -> ReportText:
    """Everything apply prints after the executor ran: summary, outputs, failures, what is left.

    `pending`: attention changes of the plan that the executor did not run (see `attention_lines`).
    """
    from jobrunner.render.outputs import summary_outputs_lines

    text = ReportText()
    text.out("")
    text.out(summary_line(verb, report))
    touched = {o.address.split("[", 1)[0] for o in report.outcomes.values()}
    lines = summary_outputs_lines(doc, touched, report.files_written)
    if lines:
        text.out("Outputs:")
        for line in lines:
            text.out(line)
    for line in failure_lines(report):
        text.err(line)
    if report.running:
        if report.interrupted:
            text.err(f"Interrupted: state saved; {len(report.running)} job(s) keep running on the provider. "
                            "Run `jobrunner apply` again to resume waiting.")
        elif report.timed_out:
            text.err(f"Wait timed out: {len(report.running)} job(s) still running (they keep running). "
                            "Run `jobrunner apply` again to resume waiting.")
        else:
            text.out(f"{len(report.running)} job(s) still running; `jobrunner status` shows them, "
                            "`jobrunner apply` waits for them.")
    elif report.interrupted:
        text.err("Interrupted: state saved.")
    if report.count(O_DEFERRED):
        text.out(f"{report.count(O_DEFERRED)} job(s) deferred until their upstream succeeds: "
                        "run `jobrunner apply` again.")
    pending = list(pending or ())
    for line in attention_lines(pending):
        text.err(line)
    if not pending and any(report.count(o) for o in (O_FAILED, O_CANCELED, O_SKIPPED)):
        text.err(ATTENTION_HINT)
    return text


__all__ = ["ATTENTION_HINT", "MAX_ATTENTION_LINES", "ReportText", "apply_report", "attention_lines", "failure_lines",
           "summary_line"]
