"""Exactly-once creation: intent, then create, then record, with a lookup wherever the fate is unknown.

Before every create an intent (fingerprint, attempt, time, request digest) is written to state and
saved. If the create fails ambiguously (transport error, timeout, 5xx, an unreadable 2xx) or a
previous run died with an intent pending, the provider's recent jobs are listed and matched
(`matching`, through `refresh.lookup_created`) before anything is sent again; a match is adopted.
The remote id is saved as soon as it is known, so a crash at any point loses nothing.

Creates and lookups of one provider's jobs go through a `CreateGate`, so a lookup never adopts a
job whose create answer is still on its way to a sibling address that sent the same request, and
a lookup that finds nothing lists again until the lookup window has passed (a lagging list). Every
remote id is claimed in the state model before it is recorded (one remote job, one address).
"""
from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from jobrunner.crashpoints import crash_point
from jobrunner.errors import (
    ProtocolError,
    ProviderError,
    RateLimitedError,
    ServerError,
    TransportError,
    UnexpectedIdError,
)
from jobrunner.providers.adapter import RequestForm
from jobrunner.providers.adapters import adapter_for
from jobrunner.providers.base import SUCCEEDED, CreateRequest, RemoteJob
from jobrunner.reconcile import requests as rq
from jobrunner.reconcile.context import ApplyContext
from jobrunner.reconcile.matching import next_listing_delay
from jobrunner.reconcile.outputs import outputs_of
from jobrunner.reconcile.timeutil import parse_rfc3339, to_rfc3339, utcnow
from jobrunner.resources import DesiredJob
from jobrunner.state.model import AddressState, Attempt, Intent

CREATE_TRIES = 4  # ambiguous-failure rounds (lookup, then re-send) before giving up

GateKey = tuple[str, str, "str | None"]


def _takes_body(job: DesiredJob) -> bool:
    """Uploads land in a PROJECT_BODY request's body (datasets), not in an `input`."""
    return adapter_for(job.provider).form is RequestForm.PROJECT_BODY


def gate_key(job: DesiredJob, req: CreateRequest) -> GateKey:
    return (job.provider, job.job_kind, req.project_id)


def record(ctx: ApplyContext, st: AddressState, job: DesiredJob, remote: RemoteJob, attempt: int) -> None:
    """Record `remote` as the address's job (claimed first: raises before anything is recorded)."""
    ctx.doc.claim_remote_id(st.address, remote.id)
    st.remote_id = remote.id
    st.project_id = remote.project_id or st.project_id
    st.fingerprint = job.fingerprint
    st.attempts = attempt
    st.status = remote.status
    st.error = remote.error
    # A create answered already finished (Prefer: wait) carries its outputs: recording them
    # now saves the separate save that waiting would otherwise make for them.
    st.outputs = outputs_of(job.job_kind, remote) if remote.status == SUCCEEDED else {}
    st.intent = None
    st.inputs = ctx.redacted_input(job)
    st.updated_at = to_rfc3339(utcnow())
    if not any(a.remote_id == remote.id for a in st.history):
        st.history.append(Attempt(remote_id=remote.id, fingerprint=job.fingerprint or "", attempt=attempt,
                                  created_at=st.updated_at, status=remote.status, project_id=remote.project_id))
    ctx.claimed.add(remote.id)


def check_answer(ctx: ApplyContext, job: DesiredJob, remote: RemoteJob) -> None:
    """A create answered with the id of a job this workspace already records is no new job."""
    owner = ctx.doc.owner_of(remote.id)
    if remote.id in ctx.claimed or (owner is not None and owner != job.address):
        raise UnexpectedIdError(
            f"{job.provider}: create {job.job_kind} for {job.address}: the answer names {remote.id}, "
            f"which is already the job of {owner or 'another address of this plan'}",
            provider=job.provider,
            hint="nothing was recorded from that answer; the create stays pending and the next apply looks "
                 "its job up on the provider",
        )


async def lookup(ctx: ApplyContext, provider: Any, key: GateKey, req: Any, desired_body: dict[str, Any],
                 since_text: str, attempted_at: float, *, holds_slot: bool = False) -> RemoteJob | None:
    """The job an earlier create of `req` made, claimed for the caller; None when, after the
    lookup window since `attempted_at` (epoch seconds), the provider still lists none.

    `holds_slot`: the caller holds a parallelism slot, given up while waiting."""
    from jobrunner.refresh import lookup_created

    since = parse_rfc3339(since_text) or utcnow()
    deadline = attempted_at + (ctx.options.lookup_window or 0.0)
    listings = 0
    while True:
        async with ctx.gate.looking(key):
            found = await lookup_created(provider, req, since=since, exclude_ids=ctx.claimed,
                                         desired_body=desired_body)
            if found is not None:
                ctx.claimed.add(found.id)  # before leaving the gate: no other lookup may take it
                return found
        remaining = deadline - time.time()
        if remaining <= 0:
            return None
        # The provider's list may lag behind a job just created: look again before concluding.
        pause = next_listing_delay(listings, remaining)
        if holds_slot:
            await ctx.pause_without_slot(pause)
        else:
            await ctx.stop.guard(asyncio.sleep(pause))
        listings += 1


async def create_once(ctx: ApplyContext, job: DesiredJob, st: AddressState, attempt: int) -> tuple[RemoteJob, bool]:
    """Create the job exactly once; returns (remote job, adopted?)."""
    provider = ctx.pool.get(job.provider)
    spec = ctx.spec(job)
    desired = rq.create_request(job, spec)
    key = gate_key(job, desired)
    # A previous run may have died after sending this very create: look before sending.
    if st.intent is not None and st.intent.fingerprint == job.fingerprint:
        found = await _find_earlier_create(ctx, provider, key, job, st, desired, st.intent.created_at,
                                           st.intent.attempt)
        if found is not None:
            return found, True
    elif ctx.doc.recovered_at is not None:
        # State restored from a backup, and this job's spec was unknown when planning marked the
        # lookups (jobrunner.state.recovery): it may have been created since the backup, too.
        # (It may have been made up to the moment the state was damaged: the window runs from now.)
        found = await _find_earlier_create(ctx, provider, key, job, st, desired, ctx.doc.recovered_at, attempt,
                                           window_from=time.time())
        if found is not None:
            return found, True
    ctx.stop.check()
    async with ctx.sem, ctx.providers.gate(job.provider):
        ctx.stop.check()
        req = await _request_with_intent(ctx, provider, job, st, spec, desired, attempt)
        remote, adopted = await _send(ctx, provider, key, job, st, req, desired, attempt)
    # The record is saved after the parallelism slot is given back: its save is not a request,
    # and holding the slot for it too bounded a fast batch's pace by two saves per create. The
    # intent stays durable until this save is (a crash before it is resolved by a lookup), and
    # the caller goes on only once it is on disk.
    await ctx.writer.flush(job.address)
    if not adopted:
        crash_point("create.recorded")
    return remote, adopted


async def _find_earlier_create(ctx: ApplyContext, provider: Any, key: GateKey, job: DesiredJob, st: AddressState,
                               desired: CreateRequest, since: str, attempt: int,
                               window_from: float | None = None) -> RemoteJob | None:
    """The job an earlier create sent from `since` on made, recorded; None when none is listed
    within the lookup window from `window_from` (default: `since`)."""
    ctx.providers.check(job.provider)
    if window_from is None:
        sent = parse_rfc3339(since)
        window_from = sent.timestamp() if sent is not None else time.time()
    found = await lookup(ctx, provider, key, desired, desired.body, since, window_from)
    if found is not None:
        crash_point("create.lookup_found")
        record(ctx, st, job, found, attempt)
        await ctx.writer.flush(job.address)
    return found


async def _request_with_intent(ctx: ApplyContext, provider: Any, job: DesiredJob, st: AddressState,
                               spec: dict[str, Any], desired: CreateRequest, attempt: int) -> CreateRequest:
    """Upload the `{$file}` inputs, build the request, and save the intent to send it."""
    if _takes_body(job) or rq.has_file_marker(desired.body):
        base_dirs = [ctx.root, (ctx.root / job.file).parent]  # spec.expand made paths workspace-relative
        body = await rq.upload_files(desired.body, lambda p: provider.upload(p, project_id=desired.project_id),
                                     base_dirs)
        req = rq.create_request(job, spec, {**job.request, **({"input": body["input"]} if "input" in body else {}),
                                            **({"body": body} if _takes_body(job) else {})})
    else:
        req = desired  # nothing to upload: the request already built is the one to send
    st.intent = Intent(fingerprint=job.fingerprint or "", attempt=attempt, created_at=to_rfc3339(utcnow()),
                       request_digest=rq.request_digest(req), inputs=ctx.redacted_input(job))
    await ctx.writer.flush(job.address)
    crash_point("create.intent_saved")
    return req


async def _send(ctx: ApplyContext, provider: Any, key: GateKey, job: DesiredJob, st: AddressState,
                req: CreateRequest, desired: CreateRequest, attempt: int) -> tuple[RemoteJob, bool]:
    """Send the create; after an ambiguous failure look it up before ever sending it again. The job
    it returns is recorded in memory, not yet saved (`create_once` saves it)."""
    assert st.intent is not None
    delay = 0.5
    for round_no in range(CREATE_TRIES):
        attempted_at = time.time()
        try:
            # Held until the id is recorded: no lookup lists while this answer is in flight.
            async with ctx.gate.creating(key):
                remote = await provider.create(req)
                ctx.providers.proven.add(job.provider)
                crash_point("create.sent")
                check_answer(ctx, job, remote)
                record(ctx, st, job, remote, attempt)
            return remote, False  # recorded in memory; saved by the caller
        except RateLimitedError as exc:  # rejected before creation: safe to send again
            if round_no == CREATE_TRIES - 1:
                st.intent = None
                await ctx.writer.flush(job.address)
                raise
            await asyncio.sleep(exc.retry_after or delay * (1 + random.random()))
        except (TransportError, ServerError, ProtocolError) as exc:
            if isinstance(exc, ProtocolError) and not 200 <= (exc.status or 0) < 300:
                raise  # an unreadable error answer: the create was refused
            # An unreadable 2xx answer means the job was created, as surely as a dropped
            # connection may have: look it up, never send it again.
            # The job may exist: never re-send before looking (the intent stays until known).
            last = round_no == CREATE_TRIES - 1
            # The window is waited out only before a re-send: after the last round the intent
            # stays, and the next run's lookup finds a job that was slow to be listed.
            found = await lookup(ctx, provider, key, req, desired.body, st.intent.created_at,
                                 attempted_at if not last else 0.0, holds_slot=True)
            if found is not None:
                record(ctx, st, job, found, attempt)
                return found, True  # saved by the caller
            if last:
                raise
            if not ctx.options.lookup_window:  # else the window already spaced the re-send
                await asyncio.sleep(delay * (1 + random.random()))
        except ProviderError:
            # Rejected for certain (invalid input, auth, payment): nothing was created.
            st.intent = None
            await ctx.writer.flush(job.address)
            raise
        delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")
