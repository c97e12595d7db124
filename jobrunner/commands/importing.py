"""`jobrunner import`: adopt an existing remote job as an address, or discover and adopt untracked ones."""
from __future__ import annotations

import asyncio
from typing import Any

import click

from jobrunner.commands.common import (
    with_pool,
)
from jobrunner.completion import complete_addresses
from jobrunner.errors import PlanError, UsageError
from jobrunner.exitcodes import ExitCode
from jobrunner.providers.base import SUCCEEDED, CreateRequest, RemoteJob
from jobrunner.providers.names import PROVIDER_NAMES
from jobrunner.resources import JOB_MODEL, DesiredJob


@click.command("import")
@click.argument("address", required=False, shell_complete=complete_addresses)
@click.argument("remote_id", required=False)
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--discover", is_flag=True,
              help="Find jobs no state address owns, write manifests for them and adopt them.")
@click.option("--since", "since", default="30d", show_default=True, metavar="DURATION",
              help="With --discover: how far back to look.")
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
    from jobrunner.reconcile import requests as rq
    from jobrunner.reconcile.outputs import record_adoption
    from jobrunner.reconcile.planning import expand_desired, open_manifests

    ws, validated = open_manifests(paths)
    resources = list(validated.resources)
    by_res = {r.address: r for r in resources}

    async def run(pool: Any) -> int:
        doc = ws.store.load()
        desired = {j.address: j for j in expand_desired(resources, ws.root, doc, validated.items)}
        job = _importable(address, desired.get(address))
        st = doc.addresses.get(address)
        if st is not None and st.remote_id == remote_id:
            click.echo(f"{address} already tracks {remote_id}.")
            return ExitCode.OK
        if st is not None and st.remote_id and st.fingerprint == job.fingerprint and st.status == SUCCEEDED:
            raise UsageError(f"{address} already tracks {st.remote_id}, which succeeded",
                             hint=f"`jobrunner state rm {address}` first to track another job")
        req = rq.create_request(job, by_res[job.resource_address].spec)
        remote = await pool.get(job.provider).get(job.job_kind, remote_id, project_id=req.project_id)
        _check_matches(address, remote_id, remote, req)
        record_adoption(doc, job, remote, st)
        ws.store.save(doc)
        click.echo(f"Imported {remote.id} as {address} (status {remote.status}).")
        return ExitCode.OK

    with ws.store.lock("import"):
        return asyncio.run(with_pool(ws, run))


def _importable(address: str, job: DesiredJob | None) -> DesiredJob:
    """The manifests' job at `address`, if a remote job can be imported as it (its fingerprint known)."""
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
    return job


def _check_matches(address: str, remote_id: str, remote: RemoteJob, req: CreateRequest) -> None:
    """A PlanError unless the remote job ran exactly what the manifest declares."""
    from jobrunner.reconcile.matching import mismatches

    differences = mismatches(remote, req)
    if differences:
        shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
        raise PlanError(
            f"{address}: remote job {remote_id} does not match the manifest: {shown}",
            hint="import only a job that ran exactly what the manifest declares "
                 "(or change the manifest to match it)")
