"""Every exit code jobrunner returns, and the one place each of them is decided.

CI scripts branch on these codes (`plan --detailed-exitcode` → apply; `apply` until 0), so they
are a contract: `TABLE` is the table printed in docs/cli.md and README.md, and the acceptance
tests check it row by row. Commands never pick a number themselves: errors map to a code by type
(`for_error`), a plan by what it shows (`for_plan`), an apply by what happened and what is left
(`for_apply`). Pure: no I/O, only the plan and the executor's report.
"""
from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

from jobrunner.plan_types import CHANGING, NOOP, Plan, PlannedChange
from jobrunner.providers.base import ABORTED, CANCELED, FAILED, GONE
from jobrunner.reconcile.report import (
    O_CANCELED,
    O_ERROR,
    O_FAILED,
    O_NOT_ATTEMPTED,
    O_SKIPPED,
    ApplyReport,
)
from jobrunner.resources import JOB_MODEL


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    CHANGES = 2
    STALE_PLAN = 3
    LOCKED = 4
    NEEDS_ATTENTION = 5
    WAIT_TIMEOUT = 6
    INTERRUPTED = 130


# (code, meaning) in the order docs/cli.md and README.md show them; tests compare the docs to it.
TABLE: tuple[tuple[ExitCode, str], ...] = (
    (ExitCode.OK, "success: every managed job in scope succeeded (or is kept by `lifecycle`; with "
                  "`apply --no-wait`, is still running), or no changes"),
    (ExitCode.ERROR, "error: invalid manifests, a provider rejected a request, bad usage (unknown option, "
                     "command or address, missing argument)"),
    (ExitCode.CHANGES, "`plan --detailed-exitcode`: changes present"),
    (ExitCode.STALE_PLAN, "`apply PLANFILE`: the saved plan is stale (nothing was applied)"),
    (ExitCode.LOCKED, "the state is locked by another command"),
    (ExitCode.NEEDS_ATTENTION, "needs attention: a job failed, was canceled outside jobrunner, or is blocked "
                               "(its upstream failed or succeeded without the output it needs); `apply` "
                               "keeps exiting 5 until that is dealt with, and `plan --detailed-exitcode` "
                               "exits 5 when nothing else changes"),
    (ExitCode.WAIT_TIMEOUT, "`apply --timeout` expired while jobs were still running (they keep running)"),
    (ExitCode.INTERRUPTED, "interrupted by Ctrl-C (state saved, jobs keep running)"),
)

# Statuses of a job that ended without succeeding and will not be run again by itself.
ENDED_BADLY = frozenset({FAILED, ABORTED, CANCELED, GONE})


# --- errors -------------------------------------------------------------------------------------


def for_error(err: BaseException) -> ExitCode:
    """The code of an error that stopped a command (JobrunnerError subclasses, click's own errors)."""
    import click

    from jobrunner import errors as e

    by_type: tuple[tuple[type[BaseException], ExitCode], ...] = (
        (e.StalePlanError, ExitCode.STALE_PLAN),
        (e.StateLockedError, ExitCode.LOCKED),
        (KeyboardInterrupt, ExitCode.INTERRUPTED),
        (click.exceptions.Abort, ExitCode.INTERRUPTED),
    )
    for kind, code in by_type:
        if isinstance(err, kind):
            return code
    # Everything else, click's usage errors included (click's default for those is 2, which CI
    # reads as "changes present" after `plan --detailed-exitcode`).
    return ExitCode.ERROR


# --- plans --------------------------------------------------------------------------------------


def is_attention(change: PlannedChange) -> bool:
    """A managed job that apply cannot bring to success by itself: it ended failed/canceled with
    no attempts left, or it is blocked by an upstream that failed or lacks an output it needs."""
    if change.blocked_by and change.action in CHANGING:
        return True
    if change.action != NOOP or change.quiet or change.job is None or change.job.job_kind == JOB_MODEL:
        return False
    return change.remote_status in ENDED_BADLY


def attention(plan: Plan) -> list[PlannedChange]:
    """The plan's changes that need a person (see `is_attention`), in plan order."""
    return [c for c in plan.changes if is_attention(c)]


def actionable(plan: Plan) -> list[PlannedChange]:
    """Changes apply would really carry out: blocked ones are skipped, so they do not count."""
    return [c for c in plan.changes if c.action in CHANGING and not c.blocked_by]


def for_plan(plan: Plan, *, detailed: bool) -> ExitCode:
    """`plan`: 0; with --detailed-exitcode 2 when apply would change something, else 5 when
    something needs attention (changes win: applying them is still worth it), else 0."""
    if not detailed:
        return ExitCode.OK
    if actionable(plan):
        return ExitCode.CHANGES
    if attention(plan):
        return ExitCode.NEEDS_ATTENTION
    return ExitCode.OK


# --- apply / destroy ----------------------------------------------------------------------------


def for_apply(report: ApplyReport | None, pending: Sequence[PlannedChange] = ()) -> ExitCode:
    """`apply`/`destroy` after the executor ran (`report`, None when nothing had to run).

    `pending` are the plan's attention changes the executor did not touch (jobs that ended badly
    earlier): they keep the code at 5 run after run, so "apply until it exits 0" means success.
    """
    if report is not None:
        if report.interrupted:
            return ExitCode.INTERRUPTED
        if report.count(O_ERROR) or report.count(O_NOT_ATTEMPTED):
            return ExitCode.ERROR
        if report.count(O_FAILED) or report.count(O_CANCELED) or report.count(O_SKIPPED):
            return ExitCode.NEEDS_ATTENTION
    if pending:
        return ExitCode.NEEDS_ATTENTION
    if report is not None and report.timed_out:
        return ExitCode.WAIT_TIMEOUT
    return ExitCode.OK


__all__ = [
    "ENDED_BADLY",
    "TABLE",
    "ExitCode",
    "actionable",
    "attention",
    "for_apply",
    "for_error",
    "for_plan",
    "is_attention",
]
