"""Pending intents looked up on their providers before anything is created again.

An intent is written before a create is sent; while it is pending, the job may or may not exist.
Planning lists each provider's recent jobs once per (provider, job kind, project) and matches every
pending intent against the listing, so the plan adopts a job a lost create made instead of running
it twice (the executor looks once more before it sends any create: `reconcile.creation`).

Intents are matched earliest first, and a job matched once is never matched again: among identical
rows, each takes one job. An address restored from a backup (`jobrunner state restore-backup`) is
different: the backup may lag by a whole apply, in which the address may have been tried more than
once (attempt 1 failed, attempt 2 succeeded). When no other pending address asks for the same
request, its newest matching job is its current one and the older ones are its earlier attempts,
recorded in its history; taking the oldest would run the request a third time. A newest job that
ended unsuccessfully is held until the lookup window closes: the retry made after it may not be in
a lagging list yet.
"""
from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobrunner.providers.adapters import adapter_for
from jobrunner.providers.base import RemoteJob
from jobrunner.reconcile import requests as rq
from jobrunner.reconcile.matching import find_match, lookup_window, matching_jobs, next_listing_delay
from jobrunner.reconcile.timeutil import parse_rfc3339, to_rfc3339, utcnow
from jobrunner.refresh import claimed_ids, list_candidates
from jobrunner.resources import JOB_DEPLOYMENT, JOB_MODEL, DesiredJob, Resource
from jobrunner.state.model import Attempt, StateDoc
from jobrunner.state.recovery import ENDED_UNSUCCESSFULLY, request_key


def request_from_recorded(st: Any) -> Any:
    """A CreateRequest rebuilt from what state recorded at intent time (for addresses no manifest
    defines any more, whose interrupted create must still be found, not orphaned)."""
    material = (st.intent.inputs if st.intent is not None and st.intent.inputs else None) or st.inputs or {}
    if not material:
        return None
    return adapter_for(st.provider).recorded_request(st.job_kind, material)


@dataclass
class _Lookup:
    """One address to look up on its provider: a pending intent (a restored state's untracked
    addresses get one from `state.recovery.mark_recovery_lookups`)."""

    address: str
    provider: str
    request: Any
    since: datetime  # candidates created from then on (minus the clock skew) may be its job
    window_from: float  # epoch seconds of the create attempt: the list may lag behind it
    restored: bool = False  # marked by a restore from the backup
    newest_wins: bool = False  # restored, and no other pending address asks for the same request

    @property
    def group(self) -> tuple[str, str, str | None]:
        return (self.provider, self.request.job_kind, self.request.project_id)


@dataclass
class _Found:
    """What the rounds of listing have found so far."""

    claimed: set[str]
    jobs: dict[str, RemoteJob] = field(default_factory=dict)
    earlier: dict[str, list[RemoteJob]] = field(default_factory=dict)
    # Restored addresses whose newest match ended unsuccessfully: taken when the window closes.
    held: dict[str, list[RemoteJob]] = field(default_factory=dict)

    def take(self, address: str, jobs: list[RemoteJob]) -> None:
        """`jobs` (oldest first, unclaimed) are `address`'s: the last its current one."""
        self.jobs[address] = jobs[-1]
        if jobs[:-1]:
            self.earlier[address] = jobs[:-1]
        self.claimed.update(job.id for job in jobs)
        self.held.pop(address, None)

    def settle_held(self) -> None:
        for address, jobs in list(self.held.items()):
            free = [job for job in jobs if job.id not in self.claimed]
            if free and address not in self.jobs:
                self.take(address, free)
        self.held.clear()


def _pending_lookups(doc: StateDoc, desired: list[DesiredJob], resources: dict[str, Resource],
                     restored: Collection[str] = ()) -> list[_Lookup]:
    """The lookups of pending intents. Those of `restored` addresses (just marked by a restore from
    the backup) may have been created up to the moment the state was damaged, not only up to the
    intent's date: their lookup window runs from now, so a lagging list still shows them."""
    pending: list[_Lookup] = []
    now = time.time()
    by_address = {j.address: j for j in desired}
    for address, st in doc.addresses.items():
        if st.intent is None or st.job_kind in (JOB_MODEL, JOB_DEPLOYMENT):
            continue  # a deployment's lost create is looked up by name when apply creates it
        since = parse_rfc3339(st.intent.created_at)
        job = by_address.get(address)
        if since is None:
            continue
        if job is not None:
            if job.fingerprint is None or st.intent.fingerprint != job.fingerprint:
                continue
            res = resources.get(job.resource_address)
            req = rq.create_request(job, res.spec if res else {})
        else:
            req = request_from_recorded(st)
            if req is None:
                continue
        was_restored = address in restored
        pending.append(_Lookup(address, st.provider, req, since, now if was_restored else since.timestamp(),
                               restored=was_restored))
    keys = [(e.group, request_key(e.request)) for e in pending]
    asked = Counter(keys)
    for entry, key in zip(pending, keys, strict=True):
        entry.newest_wins = entry.restored and asked[key] == 1
    return pending


async def lookup_intents(doc: StateDoc, desired: list[DesiredJob], resources: dict[str, Resource],
                         pool: Any, *, window: float | None = None,
                         restored: Collection[str] = ()) -> dict[str, RemoteJob]:
    """For addresses with a pending intent: the remote job that create made, if it exists.

    One listing per (provider, job kind, project) back to the earliest of them, however many a
    crash left behind; then each is matched against it (see the module's docstring). An intent not
    found while its create is younger than the lookup window (`matching.lookup_window`) is looked
    for again: the provider's list may lag behind its jobs. Earlier attempts found for a restored
    address are recorded in its history in `doc`, and its intent's attempt number moves past them.
    """
    pending = _pending_lookups(doc, desired, resources, restored)
    if not pending:
        return {}
    if window is None:
        window = lookup_window(os.environ)
    found = _Found(claimed=claimed_ids(doc))
    listings = 0
    while True:
        await _match_round(pending, found, pool)
        now = time.time()
        open_until = [e.window_from + window for e in pending
                      if e.address not in found.jobs and e.window_from + window > now]
        if not open_until:
            break
        pending = [e for e in pending if e.address not in found.jobs]
        await asyncio.sleep(next_listing_delay(listings, max(open_until) - now))
        listings += 1
    found.settle_held()
    _record_earlier(doc, found.earlier)
    return found.jobs


async def _match_round(pending: list[_Lookup], found: _Found, pool: Any) -> None:
    groups: dict[tuple[str, str, str | None], list[_Lookup]] = {}
    for entry in pending:
        if entry.address not in found.jobs:
            groups.setdefault(entry.group, []).append(entry)
    for (provider_name, job_kind, project_id), entries in groups.items():
        versions = {rq.split_version(e.request.model, e.request.version)[1] for e in entries}
        candidates = await list_candidates(
            pool.get(provider_name), job_kind, since=min(e.since for e in entries), project_id=project_id,
            exclude_ids=found.claimed, versions=None if None in versions else versions)
        for entry in sorted(entries, key=lambda e: e.since):
            if entry.newest_wins:
                jobs = matching_jobs(candidates, entry.request, since=entry.since, exclude_ids=found.claimed)
                if jobs and jobs[-1].status in ENDED_UNSUCCESSFULLY:
                    found.held[entry.address] = jobs  # a retry after it may still be missing from the list
                elif jobs:
                    found.take(entry.address, jobs)
                continue
            match = find_match(candidates, entry.request, not_before=entry.since, exclude_ids=found.claimed)
            if match is not None:
                found.take(entry.address, [match])


def _record_earlier(doc: StateDoc, earlier: dict[str, list[RemoteJob]]) -> None:
    """Record each restored address's earlier attempts (oldest first) in its history, claimed, and
    number its intent after them: the job adopted for it is its latest attempt."""
    for address, jobs in earlier.items():
        st = doc.addresses[address]
        intent = st.intent
        assert intent is not None  # only pending intents are looked up
        for job in jobs:
            doc.claim_remote_id(address, job.id)  # one remote job, one address
            st.history.append(Attempt(remote_id=job.id, fingerprint=intent.fingerprint, attempt=intent.attempt,
                                      created_at=to_rfc3339(job.created_at or utcnow()), status=job.status,
                                      project_id=job.project_id))
            intent.attempt += 1


__all__ = ["lookup_intents", "request_from_recorded"]
