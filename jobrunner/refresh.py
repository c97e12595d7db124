"""Refresh: ask providers about tracked jobs that can still change, and about pending intents.

Terminal jobs are immutable, so they are never asked about: a plan over 10,000 succeeded batch
items sends no request at all. Deployments are not jobs: a ready one can still be deleted or
changed outside jobrunner, so every tracked deployment is read (one `get_deployment` each).
Non-terminal jobs are refreshed in bulk where the provider offers it (its adapter's
`bulk_refresh` capability: `refresh_many`, one listing instead of N gets), else one `get` each
with bounded concurrency.
A job the provider no longer knows (404) comes back as status `gone`.

Pending intents (a create was about to be sent when the last run stopped) are resolved by looking
the job up on the provider; a match is reported so the plan can `adopt` it instead of creating a
duplicate.

A refresh never hangs: `refresh_bound` gives the time a command's refresh may take (`--timeout`,
else `JOBRUNNER_REFRESH_TIMEOUT`, else 2 minutes), which the commands install as the command
deadline of every provider request (`jobrunner.providers.http.command_deadline`).
"""
from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from jobrunner.errors import NotFoundError
from jobrunner.providers.adapter import split_version
from jobrunner.providers.adapters import find_adapter
from jobrunner.providers.base import GONE, TERMINAL, RemoteJob
from jobrunner.reconcile.timeutil import parse_rfc3339, utcnow
from jobrunner.resources import JOB_DEPLOYMENT, JOB_MODEL
from jobrunner.state.model import AddressState, StateDoc
from jobrunner.timestamps import CLOCK_SKEW

REFRESH_TIMEOUT_ENV = "JOBRUNNER_REFRESH_TIMEOUT"
DEFAULT_REFRESH_TIMEOUT = 120.0


def refresh_bound(option: str | None, command: str, env: Mapping[str, str] | None = None) -> tuple[float, str]:
    """(seconds, how it was set) for the provider refresh of `command` (plan, status, apply...).

    `--timeout D` wins, then the environment variable, then the default; the second value names
    the setting in messages, so an error says which bound ran out and how to change it.
    """
    from jobrunner.reconcile.timeutil import parse_duration

    if option:
        return float(parse_duration(option, what="--timeout") or 0), f"{command} --timeout {option}"
    value = (os.environ if env is None else env).get(REFRESH_TIMEOUT_ENV, "").strip()
    if value:
        return float(parse_duration(value, what=REFRESH_TIMEOUT_ENV) or 0), f"{REFRESH_TIMEOUT_ENV}={value}"
    return DEFAULT_REFRESH_TIMEOUT, (f"the {command} refresh bound (2m: change it with --timeout "
                                     f"or {REFRESH_TIMEOUT_ENV})")


def needs_refresh(st: AddressState) -> bool:
    if st.job_kind == JOB_DEPLOYMENT:
        return bool(st.remote_id)  # mutable: never "terminal" while it exists
    return bool(st.remote_id) and st.job_kind != JOB_MODEL and st.status not in TERMINAL


def bulk_refresh(provider_name: str) -> bool:
    """Whether the provider's adapter says its client reads many jobs in one walk (`refresh_many`).

    A name no adapter has (a test double's) gets one `get` per job."""
    adapter = find_adapter(provider_name)
    return adapter is not None and adapter.capabilities.bulk_refresh


async def fetch_jobs(
    provider: Any, job_kind: str, ids: list[str], *, bulk: bool, project_id: str | None = None,
    parallelism: int = 10, oldest: datetime | None = None,
) -> dict[str, RemoteJob]:
    """Current view of the given job ids (missing ones as `gone`).

    `bulk` (`bulk_refresh` of the provider) reads several at once with the client's
    `refresh_many`; `oldest` is the earliest creation time among them: it lists pages back to it.
    """
    if not ids:
        return {}
    if bulk and len(ids) > 1:
        since = oldest or (utcnow() - timedelta(days=1))
        if project_id is not None:
            got = await provider.refresh_many(job_kind, set(ids), since, project_id=project_id)
        else:
            got = await provider.refresh_many(job_kind, set(ids), since)
        got = dict(got or {})
        missing = [i for i in ids if i not in got]
    else:
        got, missing = {}, list(ids)
    sem = asyncio.Semaphore(max(1, parallelism))

    async def one(remote_id: str) -> None:
        async with sem:
            try:
                got[remote_id] = await provider.get(job_kind, remote_id, project_id=project_id)
            except NotFoundError:
                got[remote_id] = RemoteJob(id=remote_id, job_kind=job_kind, status=GONE, raw_status="404")

    await asyncio.gather(*(one(i) for i in missing))
    return got


async def fetch_deployments(provider: Any, ids: list[str], *, project_id: str | None = None,
                            parallelism: int = 10) -> dict[str, RemoteJob]:
    """Current view of the given deployments, as RemoteJobs (a 404 as `gone`)."""
    got: dict[str, RemoteJob] = {}
    sem = asyncio.Semaphore(max(1, parallelism))

    async def one(deployment_id: str) -> None:
        async with sem:
            try:
                found = await provider.get_deployment(deployment_id, project_id=project_id)
            except NotFoundError:
                got[deployment_id] = RemoteJob(id=deployment_id, job_kind=JOB_DEPLOYMENT, status=GONE, raw_status="404")
            else:
                got[deployment_id] = found.as_job()

    await asyncio.gather(*(one(i) for i in ids))
    return got


async def refresh_tracked(
    doc: StateDoc, pool: Any, *, addresses: Iterable[str] | None = None, parallelism: int = 10
) -> dict[str, RemoteJob]:
    """address -> RemoteJob for every tracked, non-terminal job (restricted to `addresses` if given)."""
    wanted = set(addresses) if addresses is not None else None
    groups: dict[tuple[str, str, str | None], list[AddressState]] = defaultdict(list)
    for address, st in doc.addresses.items():
        if wanted is not None and address not in wanted:
            continue
        if needs_refresh(st):
            groups[(st.provider, st.job_kind, st.project_id)].append(st)
    out: dict[str, RemoteJob] = {}

    async def group(key: tuple[str, str, str | None], states: list[AddressState]) -> None:
        provider_name, job_kind, project_id = key
        provider = pool.get(provider_name)
        if job_kind == JOB_DEPLOYMENT:
            jobs = await fetch_deployments(provider, [s.remote_id for s in states if s.remote_id],
                                           project_id=project_id, parallelism=parallelism)
        else:
            jobs = await fetch_jobs(provider, job_kind, [s.remote_id for s in states if s.remote_id],
                                    bulk=bulk_refresh(provider_name), project_id=project_id,
                                    parallelism=parallelism,
                                    oldest=min((created_time(s) for s in states), default=None))
        for s in states:
            if s.remote_id in jobs:
                out[s.address] = jobs[s.remote_id]

    await asyncio.gather(*(group(k, v) for k, v in groups.items()))
    return out


def created_time(st: AddressState) -> datetime:
    """When the current remote job was recorded (bulk refresh lists `REFRESH_LOOKBACK` before it)."""
    for attempt in reversed(st.history):
        if attempt.remote_id == st.remote_id:
            when = parse_rfc3339(attempt.created_at)
            if when is not None:
                return when
    return utcnow() - timedelta(days=1)


def claimed_ids(doc: StateDoc) -> set[str]:
    """Every remote id state has ever recorded (never adopt one of these again)."""
    ids: set[str] = set()
    for st in doc.addresses.values():
        if st.remote_id:
            ids.add(st.remote_id)
        ids.update(a.remote_id for a in st.history)
    return ids


def absorb(doc: StateDoc, remote: dict[str, RemoteJob], *, only_succeeded: bool = False) -> list[str]:
    """Record what a refresh learned in `doc` (status, error, outputs); returns the addresses changed.

    A job that finished while nobody waited (`--no-wait`, a wait timeout, another machine) gets its
    outputs recorded here, so references to it resolve and `jobrunner outputs` shows them.
    `only_succeeded` limits it to successes (done before planning, so the plan can still explain
    failures and cancellations as drift against what state last saw).
    """
    from jobrunner.providers.base import SUCCEEDED
    from jobrunner.reconcile.outputs import outputs_of
    from jobrunner.reconcile.timeutil import to_rfc3339
    from jobrunner.redact import SECRETS

    # No manifest needed: the provider's copy of each input names the values state hides, so an
    # error or output quoting them is scrubbed when state is written or shown. All first, so the
    # registry's matcher is built once, not once per job.
    for address, job in remote.items():
        st = doc.addresses.get(address)
        if st is not None and isinstance(st.inputs, dict) and st.remote_id == job.id:
            SECRETS.add_hidden(st.inputs.get("input"), job.input)
    changed = []
    for address, job in remote.items():
        st = doc.addresses.get(address)
        if st is None or st.remote_id != job.id or st.intent is not None:
            continue
        if only_succeeded and job.status != SUCCEEDED:
            continue
        if st.status == job.status and (job.status != SUCCEEDED or st.outputs):
            continue
        st.status = job.status
        st.error = job.error
        if job.status == SUCCEEDED:
            st.outputs = outputs_of(st.job_kind, job)
        st.updated_at = to_rfc3339(utcnow())
        attempt = st.attempt_of(job.id)
        if attempt is not None:
            attempt.status = job.status
        changed.append(address)
    return changed


async def list_candidates(provider: Any, job_kind: str, *, since: datetime, project_id: str | None,
                          exclude_ids: set[str], versions: set[str] | None = None) -> list[RemoteJob]:
    """Jobs created since `since` minus the clock skew that a lost create might have made.

    List pages may abridge jobs (no input): those whose version could match one in `versions`
    (None: any) are fetched in full, since matching compares inputs.
    """
    out: list[RemoteJob] = []
    async for job in provider.list(job_kind, since=since - CLOCK_SKEW, project_id=project_id):
        if job.id in exclude_ids:
            continue
        if job.input is None and project_id is None:
            _, got = split_version(job.model, job.version)
            if versions is not None and got and got not in versions:
                continue
            job = await provider.get(job_kind, job.id, project_id=project_id)
        elif project_id is not None and "train_dataset" not in job.extra:
            # Emissary lists summaries (no datasets, description or parameters): matching needs
            # the detail, or trainings that differ only by dataset could be swapped.
            job = await provider.get(job_kind, job.id, project_id=project_id)
        out.append(job)
    return out


async def lookup_created(provider: Any, req: Any, *, since: datetime, exclude_ids: set[str],
                         desired_body: dict[str, Any] | None = None) -> RemoteJob | None:
    """The job a lost create of `req` made, if the provider has it (see `reconcile.matching`)."""
    from jobrunner.reconcile.matching import find_match

    _, want = split_version(req.model, req.version)
    candidates = await list_candidates(provider, req.job_kind, since=since, project_id=req.project_id,
                                       exclude_ids=exclude_ids, versions={want} if want else None)
    return find_match(candidates, req, not_before=since, exclude_ids=exclude_ids, desired_body=desired_body)
