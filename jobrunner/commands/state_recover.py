"""`jobrunner state recover`: the way back from a state lost together with its backup.

With no state, every address of the manifests plans as a plain create, and every job that already
ran would run again. This command looks every address up on its provider first: it lists each
provider's jobs once (no time bound: the state could have been lost long after its jobs ran),
matches them against what each address asks for (reconcile.matching, the same rules as the
lookup after a crash), decides who owns what (state.recovery.assign_found) and records the jobs
it found, under the state lock, before anything is created. Batches that reference a training's
output are looked up once that training is found. Anything ambiguous is reported and nothing at
all is recorded, so a later apply cannot create what a decision would have adopted.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import click

from jobrunner.errors import StateError
from jobrunner.exitcodes import ExitCode

# No time bound: a state can be lost long after its jobs ran (matching subtracts its clock skew).
_BEGINNING = datetime(1971, 1, 1, tzinfo=UTC)


@dataclass
class RecoverReport:
    """What a recovery found: adopted addresses, ambiguous groups, addresses with no job yet."""

    found: dict[str, Any] = field(default_factory=dict)  # address -> state.recovery.Found
    ambiguous: list[Any] = field(default_factory=list)  # state.recovery.Ambiguous
    not_found: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # declared models that exist, recorded by name
    listed: int = 0  # provider listings made


def load_even_if_lost(store: Any) -> Any:
    """The current state, or an empty one when the state file and its backup are both gone (what
    `load` refuses to read as empty after the workspace tracked jobs): for commands that write a
    whole state, `state recover` and `state migrate`."""
    from jobrunner.state.local_file import LocalFileStore

    if isinstance(store, LocalFileStore) and not store.path.exists() and not store.backup_path.exists():
        return store.empty_doc()  # lost with its backup: what `load` refuses to read as empty
    return store.load()


async def recover(doc: Any, resources: list[Any], root: Any, items: Any, pool: Any, *,
                  in_order: bool = False) -> RecoverReport:
    """Look every untracked address up on its provider and record what is found in `doc`.

    Passes repeat while they find something: a batch whose version references a training's
    output has a request (and can be matched) only once that training is recorded.
    """
    from jobrunner.reconcile.planning import expand_desired

    report = RecoverReport()
    listings: dict[tuple[Any, ...], list[Any]] = {}
    seen: set[str] = set()
    await _recover_models(doc, expand_desired(resources, root, doc, items), resources, pool, report)
    while True:
        desired = expand_desired(resources, root, doc, items)
        found_before = len(report.found)
        fresh = [job for job in desired if job.address not in seen and _wanted(doc, job)]
        seen.update(job.address for job in fresh)
        await _recover_pass(doc, fresh, resources, pool, listings, report, in_order)
        if len(report.found) == found_before:
            return report


async def _recover_models(doc: Any, desired: list[Any], resources: list[Any], pool: Any,
                          report: RecoverReport) -> None:
    """Record the declared models that exist (apply would adopt them too, by name)."""
    from jobrunner.errors import NotFoundError
    from jobrunner.providers.base import SUCCEEDED
    from jobrunner.resources import JOB_MODEL
    from jobrunner.state.model import AddressState
    from jobrunner.timestamps import to_rfc3339, utcnow

    specs = {r.address: r.spec for r in resources}
    for job in desired:
        if job.job_kind != JOB_MODEL or job.address in doc.addresses:
            continue
        spec = specs.get(job.resource_address, {})
        owner, name = spec.get("owner"), spec.get("name")
        try:
            info = await pool.get(job.provider).get_model(owner, name)
        except NotFoundError:
            info = None
        if info is None:
            report.not_found.append(job.address)
            continue
        url = info.get("url") if isinstance(info, dict) else None
        doc.addresses[job.address] = AddressState(
            address=job.address, kind=job.resource_address.split("/", 1)[0], job_kind=job.job_kind,
            provider=job.provider, file=job.file, remote_id=f"{owner}/{name}", status=SUCCEEDED,
            fingerprint=job.fingerprint, attempts=1,
            outputs={"name": f"{owner}/{name}", **({"url": url} if url else {})},
            updated_at=to_rfc3339(utcnow()))
        report.models.append(job.address)


def _wanted(doc: Any, job: Any) -> bool:
    from jobrunner.state.recovery import needs_lookup

    return job.fingerprint is not None and needs_lookup(doc.addresses.get(job.address), job)


async def _recover_pass(doc: Any, jobs: list[Any], resources: list[Any], pool: Any,
                        listings: dict[tuple[Any, ...], list[Any]], report: RecoverReport, in_order: bool) -> None:
    from jobrunner.reconcile import requests as rq
    from jobrunner.reconcile.matching import matches
    from jobrunner.refresh import claimed_ids, list_candidates
    from jobrunner.state.recovery import assign_found

    by_res = {r.address: r for r in resources}
    groups: dict[tuple[Any, ...], list[tuple[Any, Any]]] = {}  # -> [(DesiredJob, CreateRequest)]
    for job in jobs:
        req = rq.create_request(job, by_res[job.resource_address].spec)
        groups.setdefault((job.provider, req.job_kind, req.project_id), []).append((job, req))
    for (provider, job_kind, project_id), entries in groups.items():
        found_versions = {rq.split_version(req.model, req.version)[1] for _job, req in entries}
        versions = None if None in found_versions else {v for v in found_versions if v is not None}
        key = (provider, job_kind, project_id, None if versions is None else frozenset(versions))
        if key not in listings:
            listings[key] = await list_candidates(
                pool.get(provider), job_kind, since=_BEGINNING, project_id=project_id, exclude_ids=set(),
                versions=versions)
            report.listed += 1
        claimed = claimed_ids(doc)
        candidates = [c for c in listings[key] if c.id not in claimed]
        assignment = assign_found([(job.address, req) for job, req in entries], candidates, matches,
                                  in_order=in_order)
        by_address = {job.address: job for job, _req in entries}
        for address, found in assignment.found.items():
            _record(doc, by_address[address], found)
        report.found.update(assignment.found)
        report.ambiguous.extend(assignment.ambiguous)
        report.not_found.extend(assignment.not_found)


def _record(doc: Any, job: Any, found: Any) -> None:
    """Record `found` as `job`'s jobs: its current one last, its earlier attempts before it."""
    from jobrunner.reconcile.outputs import record_adoption
    from jobrunner.state.model import Attempt
    from jobrunner.timestamps import to_rfc3339, utcnow

    st = record_adoption(doc, job, found.job, doc.addresses.get(job.address))
    earlier = []
    for remote in found.earlier:
        doc.claim_remote_id(job.address, remote.id)  # one remote job, one address
        earlier.append(Attempt(remote_id=remote.id, fingerprint=job.fingerprint, attempt=0,
                               created_at=to_rfc3339(remote.created_at or utcnow()), status=remote.status,
                               project_id=remote.project_id))
    st.history[-1:-1] = earlier
    for number, attempt in enumerate(a for a in st.history if a.fingerprint == job.fingerprint):
        attempt.attempt = number + 1
    st.attempts = len(earlier) + 1


async def look_up_after_restore(doc: Any, resources: list[Any], root: Any, pool: Any, *,
                                whole_workspace: bool) -> list[str]:
    """For a state restored from its backup (`doc.recovered_at` set): find, and record, the jobs
    of the manifests' addresses the backup lacks, as apply would before creating anything.

    Used by destroy, which acts on what state tracks: without this, a job created after the backup
    was taken would be neither canceled nor forgotten, just left running. Returns the addresses
    whose job was found. Addresses with no job keep their pending intent (a later apply resolves
    it); the recovered flag is cleared once the whole workspace was looked at.
    """
    from jobrunner.reconcile.planning import expand_desired, lookup_intents
    from jobrunner.state.recovery import Found, mark_recovery_lookups

    since = doc.recovered_at
    if since is None or not resources:
        return []
    by_res = {r.address: r for r in resources}
    adopted: list[str] = []
    tracked_before = set(doc.addresses)
    while True:  # again while something is found: a batch that references a found training's output
        doc.recovered_at = since
        desired = {job.address: job for job in expand_desired(resources, root, doc)}
        mark_recovery_lookups(doc, desired.values(), whole_workspace=False)
        found = await lookup_intents(doc, list(desired.values()), by_res, pool)
        for address, remote in found.items():
            _record(doc, desired[address], Found(job=remote))
            adopted.append(address)
        if not found:
            doc.recovered_at = None if whole_workspace else since
            # Addresses the backup lacked whose lookup found nothing: no job to destroy, nothing to record.
            for address in [a for a, st in doc.addresses.items() if a not in tracked_before and not st.remote_id]:
                del doc.addresses[address]
            return adopted


def _job_line(remote: Any) -> str:
    created = remote.created_at.strftime("%Y-%m-%dT%H:%M:%SZ") if remote.created_at else "unknown time"
    return f"{remote.id} ({remote.status}, created {created})"


def describe(report: RecoverReport, echo: Any) -> None:
    """The report, one line per address found, ambiguous group and address left to create."""
    for address in report.models:
        echo(f"  found    {address}: the model exists")
    for address, found in sorted(report.found.items()):
        how = ", given in creation order among identical rows" if found.in_order else ""
        more = f", after {len(found.earlier)} earlier attempt(s)" if found.earlier else ""
        echo(f"  found    {address}: {_job_line(found.job)}{more}{how}")
    for group in report.ambiguous:
        echo(f"  ambiguous  {', '.join(group.addresses)}: {group.reason}:")
        for remote in group.jobs:
            echo(f"             {_job_line(remote)}")
    for address in sorted(report.not_found):
        echo(f"  no job   {address}: the next apply creates it")


def _ambiguous_error(report: RecoverReport) -> StateError:
    rows = sum(len(group.addresses) for group in report.ambiguous)
    return StateError(
        f"recovery found jobs it cannot give to one row each ({len(report.ambiguous)} group(s), {rows} row(s), "
        "listed above); nothing was recorded",
        hint="decide, then run again: `jobrunner state recover --assign-in-order` gives each group's rows the "
        "earliest matching jobs in creation order (rows left over are created by the next apply, jobs left "
        "over stay untracked).",
    )


@click.command("recover")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--dry-run", is_flag=True, help="Look up and report; record nothing.")
@click.option("--assign-in-order", is_flag=True,
              help="Give ambiguous identical rows the earliest matching jobs in creation order.")
def recover_command(paths: tuple[str, ...], dry_run: bool, assign_in_order: bool) -> int:
    """Look every address up on its provider and record the jobs found (after a lost state).

    \b
    For a state file lost together with its backup (state.json and state.json.bak both gone):
    lists each provider's jobs once, with no time bound, records in state every job that runs
    exactly what an address asks for, and nothing else. Identical rows get their jobs in
    creation order only when there are as many jobs as rows; anything ambiguous is reported and
    nothing is recorded (see --assign-in-order). Run `jobrunner plan` next.

    \b
    Examples:
      jobrunner state recover --dry-run
      jobrunner state recover
    """
    from jobrunner.commands.common import with_pool
    from jobrunner.reconcile.planning import open_manifests

    ws, validated = open_manifests(paths)
    with ws.store.lock("state recover"):
        doc = load_even_if_lost(ws.store)

        async def run(pool: Any) -> RecoverReport:
            return await recover(doc, list(validated.resources), ws.root, validated.items, pool,
                                 in_order=assign_in_order)

        report = asyncio.run(with_pool(ws, run))
        describe(report, click.echo)
        if report.ambiguous:
            raise _ambiguous_error(report)
        if dry_run:
            click.echo(f"Dry run: {len(report.found)} job(s) found, {len(report.not_found)} address(es) with none; "
                       "nothing was recorded.")
            return ExitCode.OK
        ws.store.save(doc)  # also when nothing was found: the state exists again, so plans can run
    click.echo(f"Recorded {len(report.found)} job(s) found on the provider in {ws.store.describe()}; "
               f"{len(report.not_found)} address(es) have no job yet and are created by the next apply. "
               "Run `jobrunner plan` next.")
    return ExitCode.OK


__all__ = ["RecoverReport", "describe", "load_even_if_lost", "look_up_after_restore", "recover",
           "recover_command"]
