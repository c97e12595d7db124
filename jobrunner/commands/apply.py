"""`jobrunner apply`: plan, confirm, then run the executor until the world matches (or a saved plan)."""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any

import click

from jobrunner.commands.common import (
    ALLOW_OVER_BUDGET_HELP,
    budget,
    confirm,
    echo_warnings,
    json_events,
    live_progress,
    parse_timeout,
    refresh_deadline,
    render_plan,
    with_pool,
)
from jobrunner.commands.execute import TIMEOUT_GRACE, execute
from jobrunner.commands.output_options import (
    json_option,
    no_color_option,
    require_approval_for_json,
)
from jobrunner.completion import complete_addresses
from jobrunner.errors import UsageError
from jobrunner.exitcodes import ExitCode, actionable, attention, for_apply
from jobrunner.plan_types import WAIT, Plan, PlannedChange
from jobrunner.reconcile.report import ApplyReport, OutcomeKind
from jobrunner.state.model import StateDoc


def _show_plan(ws: Any, doc: StateDoc, planned: Any, saved: dict[str, Any] | None, parallelism: int,
               allow_over_budget: bool, events: Any) -> None:
    """Print the plan (or send its `--json` event) with its estimate; raise the budget refusal
    after it, so the numbers are on screen and nothing was created."""
    from jobrunner.reconcile.planning import estimate_into

    echo_warnings(planned.warnings)
    if saved is not None:
        planned.plan = _check_saved_plan(saved, planned)
    # Estimated again: a saved plan is restricted to what was reviewed, and the wall clock
    # assumes this apply's --parallelism.
    estimate_into(planned.plan, doc, planned.resources, ws.config, parallelism)
    refused = budget(planned.plan, ws, allow_over_budget)
    if events is not None:
        events.plan(planned.plan)
    else:
        click.echo(render_plan(planned.plan, "text"), nl=False)
    if refused is not None:
        raise refused


def _forget_diffs(plan: Plan) -> None:
    """The plan was shown (and checked against a saved one): carrying it out needs no input diffs.
    A batch of 100,000 new items has one per item (some 45 MB): let them go before the run."""
    plan.changes = [dc_replace(c, input_diff={}) if c.input_diff else c for c in plan.changes]


def _check_saved_plan(saved: dict[str, Any], planned: Any) -> Plan:
    """The fresh plan restricted to what the saved plan showed; StalePlanError if what it touches moved."""
    from jobrunner.saved_plan import check_saved_plan

    checked = check_saved_plan(saved, planned.plan, planned.resources)
    echo_warnings(checked.notes())
    return checked.plan


def _mark_settled(ws: Any, doc: StateDoc, planned: Any, code: int = 0) -> int:
    """Mark the batches this apply leaves with every row succeeded at its fingerprint, so the next
    plan need not read their rows (reconcile.settledmarks); drop the marks of the others. `code`
    is returned as it is."""
    from jobrunner.reconcile.settledmarks import record_settled

    record_settled(ws.root, planned.resources, planned.desired, doc, planned.warned)
    return code


def _leave_decoded_copy(ws: Any, code: int, resources: list[Any]) -> int:
    """After the run (its state let go: decoding does not add to the apply's peak), leave the
    decoded copy of a snapshot it wrote (LocalFileStore.leave_decoded_copy), and give the output
    files of the settled batches among `resources` the marks the next apply will find quickly
    (reconcile.settledmarks.prime_output_marks). `code` is returned."""
    from jobrunner.reconcile.settledmarks import prime_output_marks

    leave = getattr(ws.store, "leave_decoded_copy", None)
    addresses = leave() if callable(leave) else None
    if addresses is not None:
        prime_output_marks(ws.root, resources, addresses)
    return code


def _print_report(report: ApplyReport, doc: Any, plan: Plan, events: Any = None) -> int:
    """The closing report; with `--json` (`events`), the output and summary events, and only the
    report's standard-error lines (failures, what to do) as text."""
    from jobrunner.render.report import apply_report, summary_line

    pending = _untouched_attention(plan, report)
    code = for_apply(report, pending)
    verb = "Apply complete" if code == ExitCode.OK else "Apply finished"
    for line, to_stderr in apply_report(report, doc, verb, pending).lines:
        if to_stderr or events is None:
            click.echo(line, err=to_stderr)
    if events is not None:
        finished = (OutcomeKind.SUCCEEDED, OutcomeKind.ADOPTED)
        events.outputs(doc, [o.address for o in report.outcomes.values() if o.outcome in finished])
        events.summary(code, summary_line(verb, report), report)
    return code


def _untouched_attention(plan: Plan, report: ApplyReport | None) -> list[PlannedChange]:
    """Attention changes of the plan that the executor's report does not already count as failed."""
    from jobrunner.reconcile.report import BAD_OUTCOMES

    outcomes = report.outcomes if report is not None else {}
    return [c for c in attention(plan)
            if c.address not in outcomes or outcomes[c.address].outcome not in BAD_OUTCOMES]


def _print_converged(plan: Plan) -> int:
    """Nothing to run: 0, unless a job in scope needs attention (then say which and what to do, 5)."""
    from jobrunner.render.report import attention_lines

    pending = attention(plan)
    for line in attention_lines(pending):
        click.echo(line, err=True)
    return int(for_apply(None, pending))


def _saved_scope(saved: dict[str, Any], root: Path, targets: tuple[str, ...],
                 replace: tuple[str, ...]) -> tuple[list[Path], tuple[str, ...], tuple[str, ...]]:
    """The paths, targets and replacements a saved plan fixed (the command line may not add any)."""
    if targets:
        raise UsageError("--target cannot be combined with a saved plan",
                         hint="targets are fixed when the plan is saved")
    if replace:
        raise UsageError("--replace cannot be combined with a saved plan",
                         hint="replacements are fixed when the plan is saved: `jobrunner plan --replace ADDR --out F`")
    plan_paths = [(root / p).resolve() for p in (saved.get("paths") or ["."])]  # workspace-relative
    return plan_paths, tuple(saved.get("targets") or ()), tuple(saved.get("replace") or ())


async def _apply_converged(ws: Any, pool: Any, doc: StateDoc, planned: Any, parallelism: int, events: Any,
                           no_color: bool) -> int:
    """Nothing to change; still (re)write a batch output file that is missing or stale (a kill
    after the jobs finished and before the file was written): the executor writes only a file
    whose content differs from what it should hold."""
    from jobrunner.reconcile.outputfiles import output_files_due

    stale = output_files_due(ws.root, {r.address: r for r in planned.resources}, planned.desired, doc)
    # A job that ended badly since the last run (e.g. a platform restart failed it): record
    # that in state and in its batch's output file, not only in this run's output. A job that
    # finished unattended (a killed apply, --no-wait) is saved with its status and outputs.
    report = None
    if stale or attention(planned.plan) or planned.absorbed:
        report = await execute(ws, pool, doc, planned, wait=False, deadline=None, parallelism=parallelism,
                               progress=events or live_progress(no_color))
        for f in report.files_written:
            if events is None:
                click.echo(f"Wrote {f}")
    code = _print_converged(planned.plan)
    if events is not None:
        events.summary(code, "No changes. Infrastructure matches the manifests.", report)
    return code


@click.command("apply")
@click.argument("paths", nargs=-1, type=click.Path(), metavar="[PLANFILE | PATHS]...")
@click.option("--auto-approve", is_flag=True, help="Skip the confirmation prompt.")
@click.option("--no-wait", is_flag=True, help="Create jobs and return without waiting for them to finish.")
@click.option("--timeout", "timeout", metavar="DURATION",
              help="Bound the whole apply, planning refresh included (e.g. 30m): waiting stops then, "
                   "jobs keep running, exit 6.")
@click.option("--parallelism", type=click.IntRange(1, 1000), default=None, metavar="N",
              help="Concurrent operations (default from jobrunner.yaml, 10).")
@click.option("--target", "targets", multiple=True, metavar="ADDR", shell_complete=complete_addresses,
              help="Only apply this address and what it depends on (repeatable).")
@click.option("--replace", "replace", multiple=True, metavar="ADDR", shell_complete=complete_addresses,
              help="Re-run this job even though it succeeded or failed (repeatable; a batch means every item).")
@json_option("a stream of events, one per line,")
@no_color_option()
@click.option("--allow-over-budget", is_flag=True, help=ALLOW_OVER_BUDGET_HELP)
def apply(paths: tuple[str, ...], auto_approve: bool, no_wait: bool, timeout: str | None,
          parallelism: int | None, targets: tuple[str, ...], replace: tuple[str, ...], json_out: bool,
          no_color: bool, allow_over_budget: bool) -> int:
    """Create, wait on and cancel jobs until the world matches the manifests (or a saved plan).

    \b
    Examples:
      jobrunner apply specs/examples/
      jobrunner apply --auto-approve --timeout 30m specs/
      jobrunner apply --replace 'PredictionBatch/poems-eval[moon]' specs/examples/
    """
    from jobrunner.reconcile.planning import make_plan, open_workspace, require_manifests, resolve_paths
    from jobrunner.saved_plan import read_saved_plan

    wait_for = parse_timeout(timeout)
    started = time.monotonic()
    saved = read_saved_plan(Path(paths[0])) if len(paths) == 1 else None
    require_approval_for_json(json_out and saved is None, auto_approve, "apply")
    events = json_events("apply") if json_out else None
    # A saved plan file may sit anywhere (a CI artifact): only manifest paths locate the workspace.
    ws = open_workspace(paths=() if saved is not None else paths)
    if saved is not None:
        plan_paths, targets, replace = _saved_scope(saved, ws.root, targets, replace)
        # What was allowed at review time is allowed now (and nothing more).
        allow_over_budget = allow_over_budget or bool(saved.get("allow_over_budget"))
    else:
        plan_paths = resolve_paths(paths, ws.root)
        require_manifests(ws, plan_paths)  # before the lock: nothing is written where nothing is managed
    par = parallelism or getattr(ws.config, "parallelism", 10) or 10
    planned_resources: list[Any] = []  # outlive the run, for its decoded copy (_leave_decoded_copy)

    async def run(pool: Any) -> int:
        doc = ws.store.load()
        with refresh_deadline(timeout, "apply", started):  # --timeout covers planning too
            planned = await make_plan(ws, plan_paths, doc, pool, targets=targets, replace=replace)
        planned_resources.extend(planned.resources)
        _show_plan(ws, doc, planned, saved, par, allow_over_budget, events)
        if not planned.plan.has_changes and not any(c.action == WAIT for c in planned.plan.changes):
            return _mark_settled(ws, doc, planned, await _apply_converged(ws, pool, doc, planned, par, events,
                                                                          no_color))
        # Only waiting for jobs already running, or changes that will all be skipped (blocked by
        # their upstream), change nothing: no need to ask.
        needs_ok = saved is None and bool(actionable(planned.plan))
        asked = time.monotonic()
        if needs_ok and not confirm(auto_approve, "\nDo you want to perform these actions?"):
            click.echo("Apply canceled.", err=True)
            return ExitCode.ERROR
        if events is None:
            click.echo("")
        _forget_diffs(planned.plan)
        # The time spent reading the plan at the prompt is not part of --timeout.
        deadline = started + wait_for + (time.monotonic() - asked) if wait_for else None
        report = await execute(ws, pool, doc, planned, wait=not no_wait, deadline=deadline, parallelism=par,
                                why=f"apply --timeout {timeout} (+{TIMEOUT_GRACE:g}s for requests in flight)",
                                progress=events or live_progress(no_color))
        _mark_settled(ws, doc, planned)
        return _print_report(report, doc, planned.plan, events)

    with ws.store.lock("apply"):
        from jobrunner.crashpoints import crash_point

        crash_point("apply.locked")
        return _leave_decoded_copy(ws, asyncio.run(with_pool(ws, run)), planned_resources)
