"""The job commands: plan, apply, destroy, status, logs, outputs, import.

Thin on purpose: each command parses its options, calls `jobrunner.reconcile` (planning and the
executor) or the state store, and hands finished values to a renderer. Errors are
`JobrunnerError`s; `jobrunner.cli.main` prints them and exits with their code.
"""
from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from jobrunner.commands.output_options import json_option, no_color_option, pick_format, require_approval_for_json
from jobrunner.completion import complete_addresses
from jobrunner.errors import EXIT_ERROR, EXIT_OK, UsageError
from jobrunner.exitcodes import ExitCode, actionable, attention, for_apply, for_plan
from jobrunner.plan_types import WAIT, Plan
from jobrunner.providers.names import PROVIDER_NAMES

# --- shared helpers -------------------------------------------------------------------------


def _render(plan: Plan, fmt: str) -> str:
    import importlib

    module = {"text": "plan_text", "json": "plan_json", "markdown": "plan_markdown"}[fmt]
    return importlib.import_module(f"jobrunner.render.{module}").render(plan)


def _echo_warnings(warnings: list[str]) -> None:
    for w in warnings:
        click.echo(w, err=True)


def _parse_timeout(value: str | None) -> float | None:
    from jobrunner.reconcile.timeutil import parse_duration

    return parse_duration(value, what="--timeout")


# After `apply --timeout` passes, provider requests still in flight (a create being answered, a
# poll) get this much longer before they are cut, so an answer that is arriving gets recorded.
TIMEOUT_GRACE = 10.0


def _refresh_deadline(option: str | None, command: str, started: float | None = None) -> Any:
    """The command deadline of a command's provider refresh (see `jobrunner.refresh.refresh_bound`)."""
    from jobrunner.providers.http import command_deadline
    from jobrunner.refresh import refresh_bound

    seconds, why = refresh_bound(option, command)
    return command_deadline((started if started is not None else time.monotonic()) + seconds, why)


async def _with_pool(ws: Any, fn: Any) -> Any:
    from jobrunner.reconcile.pool import ProviderPool

    pool = ProviderPool(ws.config, ws.root)
    try:
        return await fn(pool)
    finally:
        await pool.aclose()


def _saved_plan_json(planned: Any, targets: tuple[str, ...], replace: tuple[str, ...] = (),
                     allow_over_budget: bool = False) -> dict[str, Any]:
    from jobrunner.saved_plan import render_json_or_none, saved_plan_document

    from jobrunner.redact import scrub_data

    rendered = render_json_or_none(lambda p: _render(p, "json"), planned.plan)
    # The saved plan's file boundary: no secret value (a webhook's `?code=`, a quoted error) in the
    # plan it shows. The rest is addresses and digests the staleness check compares as they are.
    return saved_plan_document(planned.plan, planned.resources, targets, scrub_data(rendered), replace=replace,
                               allow_over_budget=allow_over_budget)


_ALLOW_OVER_BUDGET_HELP = ("Run changes over the `policy:` budget of jobrunner.yaml (or of unknown cost) anyway; "
                           "recorded in the plan.")


def _budget(plan: Plan, ws: Any, allow: bool) -> Any:
    """The policy check (jobrunner.estimate.policy): prints what an allowance let through; returns
    the refusal to raise once the plan has been shown (None: within budget or allowed)."""
    from jobrunner.estimate.policy import check_budget

    allowed, refused = check_budget(plan.estimate, ws.config, allow=allow)
    for line in allowed:
        click.echo(f"warning: over budget, allowed by --allow-over-budget: {line}", err=True)
    return refused


def _check_saved_plan(saved: dict[str, Any], planned: Any) -> Plan:
    """The fresh plan restricted to what the saved plan showed; StalePlanError if what it touches moved."""
    from jobrunner.saved_plan import check_saved_plan

    checked = check_saved_plan(saved, planned.plan, planned.resources)
    _echo_warnings(checked.notes())
    return checked.plan


def _confirm(auto_approve: bool, question: str) -> bool:
    if auto_approve:
        return True
    if not sys.stdin.isatty():
        raise UsageError("confirmation needed but standard input is not a terminal",
                         hint="review the plan and pass --auto-approve (e.g. in CI)")
    # The prompt runs inside asyncio.run, whose SIGINT handler only cancels the main task, which a
    # blocking read never notices: the first Ctrl-C would be swallowed. Python's own handler raises
    # KeyboardInterrupt in the read, and click turns that into Abort ("Interrupted.", exit 130).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        answer = click.prompt(f"{question}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value",
                              default="", show_default=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    return answer.strip() == "yes"


def _json_events(operation: str) -> Any:
    from jobrunner.render.json_events import JsonEvents

    return JsonEvents(operation, sys.stdout)  # type: ignore[arg-type]


def _progress(no_color: bool) -> Any:
    """The live view on a terminal, plain lines otherwise (or with --no-color / NO_COLOR)."""
    from jobrunner.render.progress import make_progress

    return make_progress(sys.stdout, color=not no_color)


def _exit_code(report: Any, pending: list[Any] | None = None) -> int:
    """Decided by `jobrunner.exitcodes.for_apply`; `pending`: attention changes apply did not run."""
    return int(for_apply(report, list(pending or ())))


async def _execute(ws: Any, pool: Any, doc: Any, planned: Any, *, wait: bool, deadline: float | None,
                   parallelism: int, destroy: bool = False, why: str = "", progress: Any = None) -> Any:
    """Run the executor with Ctrl-C handling: the first stops submitting and waiting.

    `deadline` (time.monotonic()) is when waiting stops (`--timeout`); provider requests still in
    flight then are cut TIMEOUT_GRACE seconds later, so the command ends in bounded time.
    """
    from jobrunner.providers.http import command_deadline
    from jobrunner.reconcile.executor import ApplyOptions, Executor
    from jobrunner.reconcile.statewriter import StateWriter
    from jobrunner.render.progress import make_progress
    from jobrunner.spec import expand

    progress = progress or make_progress(sys.stdout)
    progress.begin(planned.plan)
    resources = planned.resources
    executor = Executor(
        planned.plan,
        desired=planned.desired,
        resources=resources,
        writer=StateWriter(ws.store, doc),
        pool=pool,
        root=ws.root,
        expand=lambda: expand(resources, ws.root, state=doc, items=planned.items),
        progress=progress,
        options=ApplyOptions(wait=wait, deadline=deadline, parallelism=parallelism, destroy=destroy),
    )
    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            progress.note("Interrupt received: submitting no new jobs, saving state; running jobs keep running. "
                          "Press Ctrl-C again to quit at once.")
            executor.interrupt()
        else:
            loop.remove_signal_handler(signal.SIGINT)
            raise KeyboardInterrupt

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        installed = True
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (e.g. some test runners)
        installed = False
    try:
        with command_deadline(deadline + TIMEOUT_GRACE if deadline is not None else None, why):
            return await executor.run()
    finally:
        progress.close()
        if installed:
            loop.remove_signal_handler(signal.SIGINT)


def _print_report(report: Any, doc: Any, plan: Plan, events: Any = None) -> int:
    """The closing report; with `--json` (`events`), the output and summary events, and only the
    report's standard-error lines (failures, what to do) as text."""
    from jobrunner.render.report import apply_report, summary_line

    pending = _untouched_attention(plan, report)
    code = _exit_code(report, pending)
    verb = "Apply complete" if code == ExitCode.OK else "Apply finished"
    for line, to_stderr in apply_report(report, doc, verb, pending).lines:
        if to_stderr or events is None:
            click.echo(line, err=to_stderr)
    if events is not None:
        events.outputs(doc, [o.address for o in report.outcomes.values() if o.outcome in ("succeeded", "adopted")])
        events.summary(code, summary_line(verb, report), report)
    return code


def _untouched_attention(plan: Plan, report: Any | None) -> list[Any]:
    """Attention changes of the plan that the executor's report does not already count as failed."""
    from jobrunner.reconcile.report import BAD_OUTCOMES

    outcomes = report.outcomes if report is not None else {}
    return [c for c in attention(plan)
            if c.address not in outcomes or outcomes[c.address].outcome not in BAD_OUTCOMES]


# --- plan ------------------------------------------------------------------------------------


@click.command("plan")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Save the plan to this file for `apply PLANFILE`.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
              help="Output format: text for people, json for tools, markdown for a pull-request comment.")
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 0 when there are no changes, 2 when there are, 5 when none but a job needs attention.")
@click.option("--target", "targets", multiple=True, metavar="ADDR", shell_complete=complete_addresses,
              help="Only plan this address and what it depends on (repeatable).")
@click.option("--timeout", "timeout", metavar="DURATION",
              help="Give up asking the providers after this long (default 2m, or $JOBRUNNER_REFRESH_TIMEOUT); exit 1.")
@click.option("--replace", "replace", multiple=True, metavar="ADDR", shell_complete=complete_addresses,
              help="Re-run this job even though it succeeded or failed (repeatable; a batch means every item).")
@json_option("the plan")
@click.option("--allow-over-budget", is_flag=True, help=_ALLOW_OVER_BUDGET_HELP)
def plan(paths: tuple[str, ...], out: str | None, fmt: str, detailed_exitcode: bool, targets: tuple[str, ...],
         timeout: str | None, replace: tuple[str, ...], json_out: bool, allow_over_budget: bool) -> int:
    """Show what apply would do: diff the manifests against state and the providers' live status.

    \b
    Examples:
      jobrunner plan specs/examples/
      jobrunner plan --out plan.json specs/ && jobrunner apply plan.json
      jobrunner plan --detailed-exitcode --format markdown > plan.md   # CI: exit 2 = changes
    """
    from jobrunner.reconcile.planning import make_plan, open_workspace, require_manifests, resolve_paths

    fmt = pick_format(fmt, json_out)

    bound = _refresh_deadline(timeout, "plan")
    ws = open_workspace(paths=paths)
    abs_paths = resolve_paths(paths, ws.root)
    require_manifests(ws, abs_paths)
    doc = ws.store.load()
    with bound:
        planned = asyncio.run(_with_pool(
            ws, lambda pool: make_plan(ws, abs_paths, doc, pool, targets=targets, replace=replace)))
    _echo_warnings(planned.warnings)
    refused = _budget(planned.plan, ws, allow_over_budget)
    text = _render(planned.plan, fmt)
    click.echo(text, nl=not text.endswith("\n"))
    if refused is not None:
        raise refused  # shown first, so the numbers are on screen; not saved
    if out:
        saved_doc = _saved_plan_json(planned, targets, replace, allow_over_budget)
        Path(out).write_text(json.dumps(saved_doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if fmt == "text":
            click.echo(f"\nSaved the plan to {out}; `jobrunner apply {out}` executes exactly this plan.")
    return int(for_plan(planned.plan, detailed=detailed_exitcode))


# --- apply -----------------------------------------------------------------------------------


def _print_converged(plan: Plan) -> int:
    """Nothing to run: 0, unless a job in scope needs attention (then say which and what to do, 5)."""
    from jobrunner.render.report import attention_lines

    pending = attention(plan)
    for line in attention_lines(pending):
        click.echo(line, err=True)
    return _exit_code(None, pending)


@click.command("apply")
@click.argument("paths", nargs=-1, type=click.Path(), metavar="[PLANFILE | PATHS]...")
@click.option("--auto-approve", is_flag=True, help="Skip the confirmation prompt.")
@click.option("--no-wait", is_flag=True, help="Create jobs and return without waiting for them to finish.")
@click.option("--timeout", "timeout", metavar="DURATION",
              help="Bound the whole apply, planning refresh included (e.g. 30m): waiting stops then, jobs keep running, exit 6.")
@click.option("--parallelism", type=click.IntRange(1, 1000), default=None, metavar="N", help="Concurrent operations (default from jobrunner.yaml, 10).")
@click.option("--target", "targets", multiple=True, metavar="ADDR", shell_complete=complete_addresses,
              help="Only apply this address and what it depends on (repeatable).")
@click.option("--replace", "replace", multiple=True, metavar="ADDR", shell_complete=complete_addresses,
              help="Re-run this job even though it succeeded or failed (repeatable; a batch means every item).")
@json_option("a stream of events, one per line,")
@no_color_option()
@click.option("--allow-over-budget", is_flag=True, help=_ALLOW_OVER_BUDGET_HELP)
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
    from jobrunner.reconcile.planning import estimate_into, make_plan, open_workspace, require_manifests, resolve_paths
    from jobrunner.saved_plan import read_saved_plan

    wait_for = _parse_timeout(timeout)
    started = time.monotonic()
    saved = read_saved_plan(Path(paths[0])) if len(paths) == 1 else None
    require_approval_for_json(json_out and saved is None, auto_approve, "apply")
    events = _json_events("apply") if json_out else None
    # A saved plan file may sit anywhere (a CI artifact): only manifest paths locate the workspace.
    ws = open_workspace(paths=() if saved is not None else paths)
    if saved is not None:
        if targets:
            raise UsageError("--target cannot be combined with a saved plan", hint="targets are fixed when the plan is saved")
        if replace:
            raise UsageError("--replace cannot be combined with a saved plan",
                             hint="replacements are fixed when the plan is saved: `jobrunner plan --replace ADDR --out F`")
        plan_paths = [(ws.root / p).resolve() for p in (saved.get("paths") or ["."])]  # workspace-relative
        targets = tuple(saved.get("targets") or ())
        replace = tuple(saved.get("replace") or ())
        # What was allowed at review time is allowed now (and nothing more).
        allow_over_budget = allow_over_budget or bool(saved.get("allow_over_budget"))
    else:
        plan_paths = resolve_paths(paths, ws.root)
        require_manifests(ws, plan_paths)  # before the lock: nothing is written where nothing is managed
    par = parallelism or getattr(ws.config, "parallelism", 10) or 10

    async def run(pool: Any) -> int:
        doc = ws.store.load()
        with _refresh_deadline(timeout, "apply", started):  # --timeout covers planning too
            planned = await make_plan(ws, plan_paths, doc, pool, targets=targets, replace=replace)
        _echo_warnings(planned.warnings)
        if saved is not None:
            planned.plan = _check_saved_plan(saved, planned)
        # Estimated again: a saved plan is restricted to what was reviewed, and the wall clock
        # assumes this apply's --parallelism.
        estimate_into(planned.plan, doc, planned.resources, ws.config, par)
        refused = _budget(planned.plan, ws, allow_over_budget)
        if events is not None:
            events.plan(planned.plan)
        else:
            click.echo(_render(planned.plan, "text"), nl=False)
        if refused is not None:
            raise refused  # shown first, so the numbers are on screen; nothing was created
        if not planned.plan.has_changes and not any(c.action == WAIT for c in planned.plan.changes):
            # Converged; still (re)write a batch output file that is missing or stale (a kill after
            # the jobs finished and before the file was written): the executor writes only a file
            # whose content differs from what it should hold.
            from jobrunner.reconcile.outputfiles import output_files_due

            stale = output_files_due(ws.root, {r.address: r for r in planned.resources}, planned.desired, doc)
            # A job that ended badly since the last run (e.g. a platform restart failed it): record
            # that in state and in its batch's output file, not only in this run's output. A job that
            # finished unattended (a killed apply, --no-wait) is saved with its status and outputs.
            report = None
            if stale or attention(planned.plan) or planned.absorbed:
                report = await _execute(ws, pool, doc, planned, wait=False, deadline=None, parallelism=par,
                                        progress=events or _progress(no_color))
                for f in report.files_written:
                    if events is None:
                        click.echo(f"Wrote {f}")
            code = _print_converged(planned.plan)
            if events is not None:
                events.summary(code, "No changes. Infrastructure matches the manifests.", report)
            return code
        # Only waiting for jobs already running, or changes that will all be skipped (blocked by
        # their upstream), change nothing: no need to ask.
        needs_ok = saved is None and bool(actionable(planned.plan))
        asked = time.monotonic()
        if needs_ok and not _confirm(auto_approve, "\nDo you want to perform these actions?"):
            click.echo("Apply canceled.", err=True)
            return EXIT_ERROR
        if events is None:
            click.echo("")
        # The time spent reading the plan at the prompt is not part of --timeout.
        deadline = started + wait_for + (time.monotonic() - asked) if wait_for else None
        report = await _execute(ws, pool, doc, planned, wait=not no_wait, deadline=deadline, parallelism=par,
                                why=f"apply --timeout {timeout} (+{TIMEOUT_GRACE:g}s for requests in flight)",
                                progress=events or _progress(no_color))
        return _print_report(report, doc, planned.plan, events)

    with ws.store.lock("apply"):
        from jobrunner.crashpoints import crash_point

        crash_point("apply.locked")
        return asyncio.run(_with_pool(ws, run))


# --- destroy ---------------------------------------------------------------------------------


def _check_destroy_targets(targets: tuple[str, ...], tracked: dict[str, Any]) -> None:
    """A --target that names nothing in state is a mistake (a typo must not read as "nothing to
    destroy", exit 0), exactly as `apply --target` treats an address missing from its plan."""
    from jobrunner.reconcile.outputs import resource_of

    resources = {resource_of(a) for a in tracked}
    missing = [t for t in targets if t not in tracked and t not in resources]
    if missing:
        raise UsageError(
            f"--target {', '.join(missing)}: no such address in state",
            hint="addresses look like Training/name, PredictionBatch/name or PredictionBatch/name[key]; "
            "see `jobrunner state list`",
        )


@click.command("destroy")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--auto-approve", is_flag=True, help="Skip the confirmation prompt.")
@click.option("--target", "targets", multiple=True, metavar="ADDR", shell_complete=complete_addresses,
              help="Only destroy this address (repeatable).")
@click.option("--no-wait", is_flag=True, help="Do not wait for canceled jobs to stop.")
@json_option("a stream of events, one per line,")
@no_color_option()
def destroy(paths: tuple[str, ...], auto_approve: bool, targets: tuple[str, ...], no_wait: bool, json_out: bool,
            no_color: bool) -> int:
    """Cancel running managed jobs (Emissary jobs are deleted) and forget every address.

    Models are kept on the provider (only forgotten). A job with `lifecycle.prevent_cancel` that
    is still running stops the destroy.

    \b
    Examples:
      jobrunner destroy
      jobrunner destroy --auto-approve --target PredictionBatch/poems-eval
    """
    from jobrunner.errors import ManifestError
    from jobrunner.reconcile.outputs import resource_of
    from jobrunner.reconcile.planning import (Planned, destroy_changes, load_resources, open_workspace,
                                              require_manifests, resolve_paths)
    from jobrunner.refresh import refresh_tracked

    require_approval_for_json(json_out, auto_approve, "destroy")
    events = _json_events("destroy") if json_out else None
    ws = open_workspace(paths=paths)
    destroy_paths = resolve_paths(paths, ws.root)
    require_manifests(ws, destroy_paths, whole_state=True)
    try:
        resources, _, _ = load_resources(destroy_paths, ws.root)
    except ManifestError:
        resources = []
        click.echo("warning: manifests are invalid; lifecycle settings are ignored by this destroy", err=True)
    by_res = {r.address: r for r in resources}

    async def run(pool: Any) -> int:
        doc = ws.store.load()
        if doc.recovered_at is not None:  # restored from a backup: find the jobs it lacks first
            from jobrunner.commands.state_recover import look_up_after_restore

            with _refresh_deadline(None, "destroy"):
                await look_up_after_restore(doc, resources, ws.root, pool,
                                            whole_workspace=any(p == ws.root or p in ws.root.parents
                                                                for p in destroy_paths))
        _check_destroy_targets(targets, doc.addresses)
        chosen = {a: st for a, st in doc.addresses.items()
                  if not targets or a in targets or resource_of(a) in targets}
        with _refresh_deadline(None, "destroy"):
            remote = await refresh_tracked(doc, pool, addresses=chosen)
        for addr, job in remote.items():
            doc.addresses[addr].status = job.status
        changes = destroy_changes(chosen, by_res)
        plan_obj = Plan(changes=changes, state_lineage=doc.lineage, state_serial=doc.serial)
        if events is not None:
            events.plan(plan_obj)
        if not changes:
            if events is not None:
                events.summary(EXIT_OK, "No changes. Nothing to destroy.")
            else:
                click.echo("No changes. Nothing to destroy.")
            return EXIT_OK
        if events is None:
            click.echo(_render(plan_obj, "text"), nl=False)
        if not _confirm(auto_approve, "\nDo you really want to destroy these?"):
            click.echo("Destroy canceled.", err=True)
            return EXIT_ERROR
        planned = Planned(plan=plan_obj, resources=resources, desired=[], remote=remote, files=[])
        report = await _execute(ws, pool, doc, planned, wait=not no_wait, deadline=None,
                                parallelism=getattr(ws.config, "parallelism", 10) or 10, destroy=True,
                                progress=events or _progress(no_color))
        from jobrunner.render.report import failure_lines, summary_line

        code = _exit_code(report)
        summary = summary_line("Destroy complete" if code == ExitCode.OK else "Destroy finished", report)
        if events is not None:
            events.summary(code, summary, report)
        else:
            click.echo("")
            click.echo(summary)
        for line in failure_lines(report):
            click.echo(line, err=True)
        return code

    with ws.store.lock("destroy"):
        return asyncio.run(_with_pool(ws, run))


# --- status ----------------------------------------------------------------------------------


@click.command("status")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format: a table for people, or json for tools.")
@click.option("--no-refresh", is_flag=True, help="Show what state recorded without asking the providers.")
@click.option("--timeout", "timeout", metavar="DURATION",
              help="Give up asking the providers after this long (default 2m, or $JOBRUNNER_REFRESH_TIMEOUT); exit 1.")
@json_option("the table")
def status(fmt: str, no_refresh: bool, timeout: str | None, json_out: bool) -> int:
    """Every tracked address: provider, remote id, status, age, attempts (refreshes running jobs).

    \b
    Examples:
      jobrunner status
      jobrunner status --no-refresh          # what state recorded, no provider asked
      jobrunner status --format json | jq '.addresses'
    """
    fmt = pick_format(fmt, json_out)
    from jobrunner.errors import ProviderError, StateLockedError
    from jobrunner.reconcile.planning import open_workspace
    from jobrunner.reconcile.timeutil import utcnow
    from jobrunner.refresh import refresh_tracked

    ws = open_workspace()
    doc = ws.store.load()
    if not no_refresh:
        from jobrunner.refresh import absorb

        try:
            with _refresh_deadline(timeout, "status"):
                remote = asyncio.run(_with_pool(ws, lambda pool: refresh_tracked(doc, pool)))
        except ProviderError as err:
            err.hint = (err.hint + "; " if err.hint else "") + "`jobrunner status --no-refresh` shows what state recorded"
            raise
        if absorb(doc, remote):  # record what we learned, unless another command holds the state
            try:
                with ws.store.lock("status"):
                    fresh = ws.store.load()
                    if absorb(fresh, remote):
                        ws.store.save(fresh)
            except StateLockedError:
                pass
    from jobrunner.render.outputs import status_json, status_rows, status_text

    rows = status_rows(doc, utcnow())
    click.echo(status_json(rows) if fmt == "json" else status_text(rows))
    return EXIT_OK


# --- logs ------------------------------------------------------------------------------------


def _tracked_under(doc: Any, address: str) -> list[str]:
    """The state addresses ADDRESS names: itself, or every item of a batch address."""
    if address in doc.addresses:
        return [address]
    return sorted(k for k in doc.addresses if k.split("[", 1)[0] == address)


def _not_in_state(doc: Any, address: str) -> UsageError:
    """`ADDRESS: not in state`, with the closest tracked addresses when it looks like a typo."""
    import difflib

    known = sorted({k for k in doc.addresses} | {k.split("[", 1)[0] for k in doc.addresses})
    close = difflib.get_close_matches(address, known, n=3, cutoff=0.6)
    hint = (f"did you mean {' or '.join(close)}? " if close else "") + "`jobrunner status` lists the tracked addresses"
    return UsageError(f"{address}: not in state", hint=hint)


@click.command("logs")
@click.argument("address", shell_complete=complete_addresses)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new log lines until the job finishes (one job, not a batch).")
def logs(address: str, follow: bool) -> int:
    """Print the logs of a tracked job, or of every item of a batch (ADDRESS as in `jobrunner status`).

    A log longer than providers.<name>.max_log_bytes (1 MiB) is shown from its end, after a
    `[jobrunner: log truncated: ...]` line saying how much was left out. A job that failed or was
    canceled ends with a `-- ADDRESS: failed: <error>` line on stderr.

    \b
    Examples:
      jobrunner logs 'PredictionBatch/poems-eval[moon]'
      jobrunner logs PredictionBatch/poems-eval        # every item, one after another
      jobrunner logs --follow Training/poems-ngram
    """
    from jobrunner.reconcile.planning import open_workspace
    from jobrunner.resources import JOB_MODEL

    ws = open_workspace()
    doc = ws.store.load()
    addresses = _tracked_under(doc, address)
    if not addresses:
        raise _not_in_state(doc, address)
    batch = addresses != [address]
    if batch and follow:
        raise UsageError(f"{address}: --follow takes one job, and this batch has {len(addresses)} items",
                         hint=f"follow one item, e.g. jobrunner logs --follow '{addresses[0]}'")
    for one in addresses:
        st = doc.addresses[one]
        if not st.remote_id or st.job_kind == JOB_MODEL:
            if batch:
                continue
            raise UsageError(f"{address}: has no job to show logs for")

    async def run(pool: Any) -> int:
        for one in addresses:
            st = doc.addresses[one]
            if not st.remote_id or st.job_kind == JOB_MODEL:
                continue
            if batch:
                click.echo(f"==> {one} ({st.status or '-'}) <==")
            await _print_logs(pool, one, st, follow, ws.root)
        return EXIT_OK

    return asyncio.run(_with_pool(ws, run))


async def _print_logs(pool: Any, address: str, st: Any, follow: bool, root: Path) -> None:
    """One job's log (followed until it ends with `follow`), then its error when it did not succeed."""
    from jobrunner.providers.base import TERMINAL
    from jobrunner.providers.bodies import LOG_TRUNCATED_PREFIX
    from jobrunner.redact import SECRETS, hidden_values, known_secrets, scrub_text
    from jobrunner.render.logs import ANCHOR_CHARS, log_increment

    provider = pool.get(st.provider)
    job = await provider.get(st.job_kind, st.remote_id, project_id=st.project_id)
    # A model may print its input: hide the values state keeps redacted (secret-named keys,
    # spec.sensitive), which only the provider's copy of the input still has; and the contents
    # of sensitive {$file} inputs, which only the manifest's files have.
    SECRETS.add_manifest_file(root / st.file)
    secrets = known_secrets()
    if isinstance(st.inputs, dict) and isinstance(st.inputs.get("input"), dict):
        secrets = secrets + hidden_values(st.inputs["input"], job.input)

    def scrub(text: str) -> str:
        return scrub_text(text, secrets=secrets)

    shown = ""
    delay = 0.5
    while True:
        text = await provider.logs(st.job_kind, st.remote_id, project_id=st.project_id) or ""
        # A long log comes back as its end only (behind a marker line): find what is new.
        new, continues = log_increment(shown, text)
        if not continues:  # rewritten upstream, or grew past what is kept: print it whole
            shown = ""
        if follow:
            # A line still being written waits for its end: a secret value it holds is never
            # printed in two halves that the scrubber cannot recognise.
            new = new[: new.rfind("\n") + 1]
        if new:
            click.echo(scrub(new), nl=not new.endswith("\n") and not follow)
            shown += new
        if text.startswith(LOG_TRUNCATED_PREFIX):
            shown = shown[-ANCHOR_CHARS[0]:]  # only its end is ever looked for again
        if not follow:
            break
        job = await provider.get(st.job_kind, st.remote_id, project_id=st.project_id)
        if job.status in TERMINAL:
            final = await provider.logs(st.job_kind, st.remote_id, project_id=st.project_id) or ""
            rest, continues = log_increment(shown, final)
            if rest and continues:
                click.echo(scrub(rest), nl=False)
            break
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 3.0)
    if follow or job.status in TERMINAL - {"succeeded"}:
        click.echo(scrub(_ending(address, job)), err=True)


def _ending(address: str, job: Any) -> str:
    """`-- ADDRESS: failed: <error>`: the last thing a log of a job that did not succeed must say."""
    why = job.error or (job.raw_status if job.raw_status and job.raw_status != job.status else "")
    return f"-- {address}: {job.status}" + (f": {why}" if why else "")


# --- outputs ---------------------------------------------------------------------------------


@click.command("outputs")
@click.argument("addresses", nargs=-1, shell_complete=complete_addresses)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format: text for people, or json for tools.")
@json_option("the outputs")
def outputs(addresses: tuple[str, ...], fmt: str, json_out: bool) -> int:
    """Print the outputs recorded in state (trained versions, batch item outputs).

    \b
    Examples:
      jobrunner outputs
      jobrunner outputs Training/poems-ngram
      jobrunner outputs --format json PredictionBatch/poems-eval
    """
    fmt = pick_format(fmt, json_out)
    from jobrunner.reconcile.planning import open_workspace
    from jobrunner.render.outputs import outputs_json, outputs_text, recorded_outputs

    ws = open_workspace()
    doc = ws.store.load()
    for address in addresses:  # a typo must not read as "no outputs yet", exit 0
        if not _tracked_under(doc, address):
            raise _not_in_state(doc, address)
    data = recorded_outputs(doc, addresses)
    click.echo(outputs_json(data) if fmt == "json" else outputs_text(data))
    return EXIT_OK


# --- import ----------------------------------------------------------------------------------


@click.command("import")
@click.argument("address", required=False, shell_complete=complete_addresses)
@click.argument("remote_id", required=False)
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--discover", is_flag=True, help="Find jobs no state address owns, write manifests for them and adopt them.")
@click.option("--since", "since", default="30d", show_default=True, metavar="DURATION", help="With --discover: how far back to look.")
@click.option("--provider", "providers", multiple=True, type=click.Choice(PROVIDER_NAMES),
              help="With --discover: provider to look at (repeatable; default: those the manifests and state use).")
@click.option("--out", "out", default="discovered.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="With --discover: the manifest file to write (never overwritten).")
def import_(address: str | None, remote_id: str | None, paths: tuple[str, ...], discover: bool, since: str,
            providers: tuple[str, ...], out: str) -> int:
    """Adopt an existing remote job as ADDRESS after checking it matches the manifest.

    With --discover (no ADDRESS/REMOTE_ID; PATHS are the manifests): adopt every recent job that
    nothing tracks, writing manifests for the ones no manifest declares.

    \b
    Examples:
      jobrunner import Training/poems-ngram r8-abc123 specs/
      jobrunner import --discover --since 7d --provider replicate specs/
    """
    if discover:
        from jobrunner.discover import run_discover

        given = tuple(p for p in (address, remote_id) if p) + paths
        return run_discover(paths=given, since_text=since, providers=providers, out=out, echo=click.echo)
    if not address or not remote_id:
        raise UsageError("import needs ADDRESS and REMOTE_ID (or --discover)",
                         hint="e.g. `jobrunner import Training/poems-ngram r8abc...`, or `jobrunner import --discover`")
    from jobrunner.errors import PlanError
    from jobrunner.providers.base import SUCCEEDED
    from jobrunner.reconcile import requests as rq
    from jobrunner.reconcile.matching import mismatches
    from jobrunner.reconcile.outputs import record_adoption
    from jobrunner.reconcile.planning import (expand_desired, load_validated, open_workspace, require_manifests,
                                              resolve_paths)
    from jobrunner.resources import JOB_MODEL

    ws = open_workspace(paths=paths)
    import_paths = resolve_paths(paths, ws.root)
    require_manifests(ws, import_paths)
    validated = load_validated(import_paths, ws.root)
    resources = list(validated.resources)
    by_res = {r.address: r for r in resources}

    async def run(pool: Any) -> int:
        doc = ws.store.load()
        desired = {j.address: j for j in expand_desired(resources, ws.root, doc, validated.items)}
        job = desired.get(address)
        if job is None:
            raise UsageError(f"{address}: no such address in the manifests",
                             hint="addresses look like Training/name or PredictionBatch/name[key]")
        if job.job_kind == JOB_MODEL:
            raise UsageError(f"{address}: models are adopted automatically by apply when they exist")
        if job.fingerprint is None and job.missing_outputs:
            from jobrunner.references import missing_outputs_text

            raise PlanError(f"{address}: cannot be imported: {missing_outputs_text(job.missing_outputs)}")
        if job.fingerprint is None:
            raise PlanError(f"{address}: its references are not known yet; apply its upstream first")
        st = doc.addresses.get(address)
        if st is not None and st.remote_id == remote_id:
            click.echo(f"{address} already tracks {remote_id}.")
            return EXIT_OK
        if st is not None and st.remote_id and st.fingerprint == job.fingerprint and st.status == SUCCEEDED:
            raise UsageError(f"{address} already tracks {st.remote_id}, which succeeded",
                             hint=f"`jobrunner state rm {address}` first to track another job")
        req = rq.create_request(job, by_res[job.resource_address].spec)
        remote = await pool.get(job.provider).get(job.job_kind, remote_id, project_id=req.project_id)
        differences = mismatches(remote, req)
        if differences:
            shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
            raise PlanError(
                f"{address}: remote job {remote_id} does not match the manifest: {shown}",
                hint="import only a job that ran exactly what the manifest declares (or change the manifest to match it)")
        record_adoption(doc, job, remote, st)
        ws.store.save(doc)
        click.echo(f"Imported {remote.id} as {address} (status {remote.status}).")
        return EXIT_OK

    with ws.store.lock("import"):
        return asyncio.run(_with_pool(ws, run))
