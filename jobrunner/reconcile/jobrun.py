"""One job from create to its end: create / replace / retry (with attempts), adopt, wait on a running one.

The executor routes each planned change here once its upstreams succeeded and its references are
resolved. Creation itself is exactly-once (`creation`); waiting and recording how the job ended
are `waiting`'s; stopping an old run before a replace is `cancel`'s. A failed or aborted run is
created again while `retry.max_attempts` allows.
"""
from __future__ import annotations

from jobrunner.crashpoints import crash_point
from jobrunner.plan_types import REPLACE, RETRY, PlannedChange, Policy
from jobrunner.providers.base import ABORTED, FAILED, SUCCEEDED, TERMINAL, RemoteJob, job_status
from jobrunner.reconcile import creation
from jobrunner.reconcile.cancel import cancel_remote
from jobrunner.reconcile.context import ApplyContext
from jobrunner.reconcile.outputs import outputs_of
from jobrunner.reconcile.report import O_ADOPTED, O_RUNNING, RUNNING, Unfinished
from jobrunner.reconcile.waiting import finish, wait_terminal
from jobrunner.resources import JOB_PREDICTION, DesiredJob
from jobrunner.state.model import AddressState, Attempt

RETRY_ON = frozenset({FAILED, ABORTED})  # `retry.max_attempts` re-creates after these


async def wait_existing(ctx: ApplyContext, job: DesiredJob, st: AddressState, policy: Policy) -> Unfinished | None:
    """Wait on the job's run already going; a failed one is created again while attempts remain."""
    if not ctx.options.wait:
        ctx.outcome(job.address, O_RUNNING, "not waiting (--no-wait)")
        return RUNNING
    ctx.progress.event(job.address, "waiting", st.remote_id or "")
    final = await wait_terminal(ctx, job, st, policy.timeout)
    if final.status in RETRY_ON and st.attempts < policy.max_attempts:
        return await create_and_wait(ctx, None, job, policy, first_attempt=st.attempts + 1)
    return finish(ctx, job, st, final, 0)


async def adopt(ctx: ApplyContext, job: DesiredJob, remote_id: str, policy: Policy) -> Unfinished | None:
    """Take over the remote job the plan matched (a pending intent's, or an import's) and wait on it."""
    provider = ctx.pool.get(job.provider)
    st = ctx.state_for(job)
    remote = await provider.get(job.job_kind, remote_id, project_id=job.request.get("project_id"))
    intent = st.intent
    attempt = intent.attempt if intent is not None and intent.fingerprint == job.fingerprint else max(1, st.attempts)
    crash_point("create.lookup_found")
    creation.record(ctx, st, job, remote, attempt)
    await ctx.writer.flush(job.address)
    ctx.outcome(job.address, O_ADOPTED, remote.id, adopted=1)
    ctx.progress.event(job.address, "adopted", remote.id)
    if remote.terminal:
        if remote.status == SUCCEEDED:
            st.outputs = outputs_of(job.job_kind, remote)
            await ctx.writer.flush(job.address)
        return finish(ctx, job, st, remote, 0)
    if not ctx.options.wait:
        ctx.outcome(job.address, O_RUNNING, "adopted; not waiting (--no-wait)")
        return RUNNING
    final = await wait_terminal(ctx, job, st, policy.timeout)
    return finish(ctx, job, st, final, 0)


async def _record_lost_create(ctx: ApplyContext, change: PlannedChange, job: DesiredJob, st: AddressState) -> None:
    """A replace whose interrupted create for an older spec reached the provider: record that
    job (so the replace cancels it) before creating the new one."""
    assert change.adopt_remote_id is not None and st.intent is not None
    old = RemoteJob(id=change.adopt_remote_id, job_kind=job.job_kind, status=job_status(change.remote_status))
    ctx.doc.claim_remote_id(job.address, old.id)
    st.history.append(Attempt(remote_id=old.id, fingerprint=st.intent.fingerprint, attempt=st.intent.attempt,
                              created_at=st.intent.created_at, status=old.status))
    st.remote_id, st.status, st.intent = old.id, old.status, None
    ctx.claimed.add(old.id)
    await ctx.writer.flush(job.address)


async def _prepare_replace(ctx: ApplyContext, change: PlannedChange, job: DesiredJob, st: AddressState) -> None:
    if change.adopt_remote_id and change.adopt_remote_id != st.remote_id and st.intent is not None:
        await _record_lost_create(ctx, change, job, st)
    # Replace: stop the old run first if it is still going (never when prevent_cancel).
    running = bool(st.remote_id) and st.status not in TERMINAL
    if running and not change.policy.prevent_cancel:
        await cancel_remote(ctx, st)
        ctx.progress.event(job.address, "canceling", f"old run {st.remote_id}")


async def create_and_wait(ctx: ApplyContext, change: PlannedChange | None, job: DesiredJob, policy: Policy,
                          first_attempt: int | None = None) -> Unfinished | None:
    """Create (or replace, or retry) the job and wait for it, creating it again after a failure
    while `retry.max_attempts` allows. `change` is None for a retry of a run this apply waited on."""
    st = ctx.state_for(job)
    max_attempts = policy.max_attempts
    if first_attempt is None:
        retrying = change is not None and change.action == RETRY and st.fingerprint == job.fingerprint
        first_attempt = st.attempts + 1 if retrying else 1
    if change is not None and change.action == REPLACE:
        await _prepare_replace(ctx, change, job, st)
    if st.fingerprint != job.fingerprint:
        st.attempts = 0
    attempt = first_attempt
    while True:
        remote, adopted = await creation.create_once(ctx, job, st, attempt)
        ctx.progress.event(job.address, "adopted" if adopted else "created",
                           f"{remote.id}, attempt {attempt}" if attempt > 1 else remote.id)
        created, took = (0, 1) if adopted else (1, 0)
        if not ctx.options.wait and not remote.terminal:
            ctx.outcome(job.address, O_RUNNING, f"created {remote.id}; not waiting (--no-wait)",
                        created=created, adopted=took)
            if job.job_kind == JOB_PREDICTION:
                ctx.touched_batches.add(job.resource_address)
            return RUNNING
        ctx.outcome(job.address, O_RUNNING, remote.id, created=created, adopted=took)
        final = remote if remote.terminal else await wait_terminal(ctx, job, st, policy.timeout)
        if final.status == SUCCEEDED and not st.outputs:
            # Finished within the create call (e.g. `Prefer: wait`): record it like a wait would.
            ctx.set_status(st, final)
            st.outputs = outputs_of(job.job_kind, final)
            await ctx.writer.flush(job.address)
        if final.status in RETRY_ON and attempt < max_attempts:
            ctx.stop.check()
            attempt += 1
            ctx.progress.event(job.address, "retrying", f"attempt {attempt} of {max_attempts} after {final.status}"
                               + (f": {final.error}" if final.error else ""))
            continue
        return finish(ctx, job, st, final, 0)
