"""A state restored from a backup looks its missing jobs up on the provider before creating them.

A backup (`state.json.bak`) lags the state it stood in for: jobs created after it was taken are
not in it. Planned from the backup as it is, those addresses would be plain creates, and the jobs
would run twice. So a restored state carries `StateDoc.recovered_at` (jobrunner state
restore-backup sets it): the instant from which the state may be missing jobs. While it is set,
planning gives every desired job that the state does not track at its current fingerprint a
pending intent dated `recovered_at` (`mark_recovery_lookups`). From there the ordinary
exactly-once machinery takes over: the planner looks each one up on the provider and adopts the
job it finds, and the executor looks once more before it sends any create.

A state lost with its backup has no such instant: `jobrunner state recover`
(jobrunner.commands.state_recover) lists each provider's jobs once, with no time bound, and
`assign_found` decides here which job belongs to which address. One remote job is given to one
address only when nothing else could claim it; identical rows (one input, several keys) are
given their jobs in creation order only when there are exactly as many jobs as rows, and any
other case is reported as ambiguous rather than guessed.

Pure: works on the document in memory; the caller's next save records the intents.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobrunner.providers.base import ABORTED, CANCELED, FAILED, GONE, RemoteJob
from jobrunner.resources import JOB_MODEL, DesiredJob
from jobrunner.state.model import AddressState, Intent, StateDoc
from jobrunner.timestamps import parse_rfc3339

# Statuses after which the same spec may run again (a retry): a retry made after the backup was
# taken is just as missing from it as a first create.
ENDED_UNSUCCESSFULLY = frozenset({FAILED, ABORTED, CANCELED, GONE})


@dataclass(frozen=True)
class RecoveryMarks:
    """What `mark_recovery_lookups` did: the addresses now looked up, and whether the flag was cleared."""

    addresses: tuple[str, ...]
    cleared: bool


def needs_lookup(st: AddressState | None, job: DesiredJob, seen: RemoteJob | None = None) -> bool:
    """Could a job for `job` have been created after the backup without this state knowing it?

    `seen`: the address's job as the refresh just found it. A job the backup records as running
    may have failed since, and been retried: its status is the refreshed one, not the backup's.
    """
    if job.job_kind == JOB_MODEL or job.fingerprint is None:
        return False  # models are found by name; an unknown fingerprint cannot be created yet
    if st is None:
        return True
    if st.intent is not None:
        return False  # already looked up (and looked up again before any create)
    if not st.remote_id or st.fingerprint != job.fingerprint:
        return True
    status = seen.status if seen is not None and seen.id == st.remote_id else st.status
    return (status or "") in ENDED_UNSUCCESSFULLY


def mark_recovery_lookups(doc: StateDoc, desired: Iterable[DesiredJob], *, whole_workspace: bool,
                          seen: Mapping[str, RemoteJob] | None = None) -> RecoveryMarks:
    """While `doc.recovered_at` is set, turn every untracked desired job into a pending intent.

    `seen`: the tracked jobs as the refresh found them (address -> job).
    `whole_workspace`: the desired jobs are every manifest of the workspace. Only then is the flag
    cleared (in memory, saved with the intents by the apply that follows): every address that
    could be missing has an intent of its own from here on, and intents are resolved one by one.
    A plan that is never applied saves nothing, so the flag stays. It stays too while a job's spec
    is known only after apply (a batch on the output of a training found again): such a job gets
    no intent, and every create of an apply on a flagged state looks first
    (`reconcile.creation.create_once`); the next plan, with every spec known, clears it.
    """
    since = doc.recovered_at
    if since is None:
        return RecoveryMarks((), False)
    marked = []
    deferred = False
    for job in desired:
        if job.job_kind != JOB_MODEL and job.fingerprint is None:
            # Its spec waits for an upstream (found again by this very lookup): it cannot be
            # marked now. The flag stays, and the executor looks before creating it.
            deferred = True
            continue
        st = doc.addresses.get(job.address)
        if not needs_lookup(st, job, (seen or {}).get(job.address)):
            continue
        if st is None:
            st = AddressState(address=job.address, kind=job.resource_address.split("/", 1)[0],
                              job_kind=job.job_kind, provider=job.provider, file=job.file)
            doc.addresses[job.address] = st
        same_spec = st.fingerprint == job.fingerprint and bool(st.remote_id)
        st.intent = Intent(fingerprint=job.fingerprint or "", attempt=(st.attempts + 1) if same_spec else 1,
                           created_at=since, request_digest="")
        marked.append(job.address)
    cleared = whole_workspace and not deferred
    if cleared:
        doc.recovered_at = None
    return RecoveryMarks(tuple(marked), cleared)


def lookup_window_start(backup: StateDoc, backup_mtime: datetime) -> datetime:
    """From when jobs may be missing from a restored backup: its last recorded change, or the time
    the backup file was written, whichever is earlier (a backup copied or touched since keeps the
    earlier, safer bound)."""
    stamps = [backup_mtime]
    for st in backup.addresses.values():
        for text in (st.updated_at, st.intent.created_at if st.intent else None):
            parsed = parse_rfc3339(text) if text else None
            if parsed is not None:
                stamps.append(parsed)
    latest_recorded = max(stamps[1:], default=backup_mtime)
    return min(latest_recorded, backup_mtime)


@dataclass
class Found:
    """The jobs found for one address: `job` is its current one, `earlier` its older attempts."""

    job: RemoteJob
    earlier: list[RemoteJob] = field(default_factory=list)
    in_order: bool = False  # given by creation order among identical rows


@dataclass
class Ambiguous:
    """Rows that several jobs could belong to, in a way that names no owner: left for the user."""

    addresses: list[str]
    jobs: list[RemoteJob]
    reason: str


@dataclass
class Assignment:
    """What `assign_found` decided: found per address, ambiguous groups, addresses with no job."""

    found: dict[str, Found] = field(default_factory=dict)
    ambiguous: list[Ambiguous] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)


def created_order(job: RemoteJob) -> tuple[bool, datetime | None, str]:
    return (job.created_at is None, job.created_at, job.id)


def request_key(request: Any) -> str:
    """What makes two rows identical: the same request (the same body, model, version, ...)."""
    fields = {name: getattr(request, name, None)
              for name in ("job_kind", "body", "model", "version", "destination", "project_id")}
    return json.dumps(fields, sort_keys=True, default=str)


def assign_found(wanted: Sequence[tuple[str, Any]], candidates: Sequence[RemoteJob],
                 matches: Callable[[RemoteJob, Any], bool], *, in_order: bool = False) -> Assignment:
    """Which candidate job belongs to which wanted address (`wanted`: (address, request), in
    manifest order; `matches(job, request)`: could `job` be what `request` creates?).

    Addresses whose requests match the very same set of jobs form a group (identical rows do):
    - one address: its newest job is its current one, the older ones are its earlier attempts;
    - as many jobs as addresses: given in creation order, rows in manifest order;
    - otherwise, or when a job also matches another group (a `{$file}` input matches any
      upload): ambiguous, nothing given, unless `in_order`: then each group in manifest order
      takes the earliest jobs no earlier group took, one per row, first rows first (rows left
      over are created by the next apply; jobs left over stay untracked).
    """
    result = Assignment()
    groups: dict[tuple[frozenset[str], str], list[str]] = {}
    by_id = {job.id: job for job in candidates}
    for address, request in wanted:
        ids = frozenset(job.id for job in candidates if matches(job, request))
        if ids:
            groups.setdefault((ids, request_key(request)), []).append(address)
        else:
            result.not_found.append(address)
    taken: set[str] = set()  # with in_order: jobs already given to an earlier group
    for (ids, key), addresses in groups.items():
        jobs = sorted((by_id[i] for i in ids), key=created_order)
        shared = any(other_ids & ids for other_ids, other_key in groups if (other_ids, other_key) != (ids, key))
        if len(addresses) == 1 and not shared:
            result.found[addresses[0]] = Found(job=jobs[-1], earlier=jobs[:-1])
        elif len(addresses) == len(jobs) and not shared:
            for address, job in zip(addresses, jobs, strict=True):
                result.found[address] = Found(job=job, in_order=True)
        elif in_order:
            free = [job for job in jobs if job.id not in taken]
            for address, job in zip(addresses, free, strict=False):  # either may be longer: pair in order
                result.found[address] = Found(job=job, in_order=True)
                taken.add(job.id)
            result.not_found.extend(addresses[len(free):])
        else:
            reason = ("a job matches rows with different inputs (a `{$file}` input matches any upload)" if shared
                      else f"{len(addresses)} rows with one input, {len(jobs)} matching jobs")
            result.ambiguous.append(Ambiguous(addresses=list(addresses), jobs=jobs, reason=reason))
    return result


__all__ = ["ENDED_UNSUCCESSFULLY", "Ambiguous", "Assignment", "Found", "RecoveryMarks", "assign_found", "created_order",
           "lookup_window_start", "mark_recovery_lookups", "needs_lookup", "request_key"]
