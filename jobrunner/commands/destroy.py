"""`jobrunner destroy`: cancel running managed jobs (Emissary jobs are deleted), delete deployments and
the trained versions `lifecycle.on_remove: delete_version` gives up, and forget every address."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from jobrunner.commands.common import (
    confirm,
    json_events,
    live_progress,
    refresh_deadline,
    render_plan,
    with_pool,
)
from jobrunner.commands.execute import execute
from jobrunner.commands.output_options import (
    json_option,
    no_color_option,
    require_approval_for_json,
)
from jobrunner.completion import complete_addresses
from jobrunner.errors import UsageError
from jobrunner.exitcodes import ExitCode, for_apply
from jobrunner.plan_types import Plan

if TYPE_CHECKING:
    from jobrunner.providers.base import RemoteJob
    from jobrunner.reconcile.planning import Workspace
    from jobrunner.reconcile.report import ApplyReport
    from jobrunner.resources import Resource
    from jobrunner.state.model import StateDoc


def _check_destroy_targets(targets: tuple[str, ...], tracked: dict[str, Any]) -> None:
    """A --target that names nothing in state is a mistake (a typo must not read as "nothing to
    destroy", exit 0), exactly as `apply --target` treats an address missing from its plan."""
    from jobrunner.resources import resource_of

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

    Deployments are deleted; so is the version a training made when its
    `lifecycle.on_remove` is delete_version (after the deployments and batches
    that use it). Models are kept on the provider (only forgotten). A job with
    `lifecycle.prevent_cancel` that is still running, or a deployment with
    `lifecycle.prevent_destroy`, stops the destroy.

    \b
    Examples:
      jobrunner destroy
      jobrunner destroy --auto-approve --target PredictionBatch/poems-eval
    """
    from jobrunner.reconcile.planning import Planned, open_workspace, require_manifests, resolve_paths

    require_approval_for_json(json_out, auto_approve, "destroy")
    events = json_events("destroy") if json_out else None
    ws = open_workspace(paths=paths)
    destroy_paths = resolve_paths(paths, ws.root)
    require_manifests(ws, destroy_paths, whole_state=True)
    resources = _lifecycle_resources(destroy_paths, ws.root)

    async def run(pool: Any) -> int:
        doc = ws.store.load()
        plan_obj, remote = await _destroy_plan(ws, pool, doc, resources, destroy_paths, targets)
        if events is not None:
            events.plan(plan_obj)
        if not plan_obj.changes:
            return _nothing_to_destroy(events)
        if events is None:
            click.echo(render_plan(plan_obj, "text"), nl=False)
        if not confirm(auto_approve, "\nDo you really want to destroy these?"):
            click.echo("Destroy canceled.", err=True)
            return ExitCode.ERROR
        planned = Planned(plan=plan_obj, resources=resources, desired=[], remote=remote, files=[])
        report = await execute(ws, pool, doc, planned, wait=not no_wait, deadline=None,
                                parallelism=getattr(ws.config, "parallelism", 10) or 10, destroy=True,
                                progress=events or live_progress(no_color))
        return _report(report, events)

    with ws.store.lock("destroy"):
        return asyncio.run(with_pool(ws, run))


def _lifecycle_resources(destroy_paths: list[Path], root: Path) -> list[Resource]:
    """The manifests' resources, for their lifecycle settings; none (with a warning) when they are
    invalid: a broken manifest must not keep its jobs from being destroyed."""
    from jobrunner.errors import ManifestError
    from jobrunner.reconcile.planning import load_resources

    try:
        resources, _, _ = load_resources(destroy_paths, root)
    except ManifestError:
        click.echo("warning: manifests are invalid; lifecycle settings are ignored by this destroy", err=True)
        return []
    return resources


async def _destroy_plan(ws: Workspace, pool: Any, doc: StateDoc, resources: list[Resource],
                        destroy_paths: list[Path], targets: tuple[str, ...]) -> tuple[Plan, dict[str, RemoteJob]]:
    """The plan that cancels (or deletes) and forgets the chosen addresses, from refreshed statuses."""
    from jobrunner.reconcile.planning import destroy_changes
    from jobrunner.refresh import refresh_tracked
    from jobrunner.resources import resource_of

    if doc.recovered_at is not None:  # restored from a backup: find the jobs it lacks first
        from jobrunner.commands.state_recover import look_up_after_restore

        with refresh_deadline(None, "destroy"):
            await look_up_after_restore(doc, resources, ws.root, pool,
                                        whole_workspace=any(p == ws.root or p in ws.root.parents
                                                            for p in destroy_paths))
    _check_destroy_targets(targets, doc.addresses)
    chosen = {a: st for a, st in doc.addresses.items()
              if not targets or a in targets or resource_of(a) in targets}
    with refresh_deadline(None, "destroy"):
        remote = await refresh_tracked(doc, pool, addresses=chosen)
    for addr, job in remote.items():
        doc.addresses[addr].status = job.status
    changes = destroy_changes(chosen, {r.address: r for r in resources}, doc.addresses)
    return Plan(changes=changes, state_lineage=doc.lineage, state_serial=doc.serial), remote


def _nothing_to_destroy(events: Any) -> int:
    if events is not None:
        events.summary(ExitCode.OK, "No changes. Nothing to destroy.")
    else:
        click.echo("No changes. Nothing to destroy.")
    return ExitCode.OK


def _report(report: ApplyReport, events: Any) -> int:
    """The summary (or `--json` summary event) and the failures; the exit code of the destroy."""
    from jobrunner.render.report import failure_lines, summary_line

    code = for_apply(report)
    summary = summary_line("Destroy complete" if code == ExitCode.OK else "Destroy finished", report)
    if events is not None:
        events.summary(code, summary, report)
    else:
        click.echo("")
        click.echo(summary)
    for line in failure_lines(report):
        click.echo(line, err=True)
    return code
