"""Waiting: follow a created job to its end, cancel it at its own `timeout`, record how it ended.

Every job is watched through the run's one shared `Waiter` (bulk polling); every status change is
saved as it is seen, so a kill while waiting loses nothing. A job with `spec.timeout` is canceled
when that passes (for a Replicate/local prediction the provider does it through Cancel-After, and
ours is the backstop a little later).
"""
from __future__ import annotations

import asyncio
import time

from jobrunner.crashpoints import crash_point
from jobrunner.providers.adapters import adapter_for
from jobrunner.providers.base import CANCELED, GONE, SUCCEEDED, RemoteJob
from jobrunner.reconcile.cancel import cancel_remote
from jobrunner.reconcile.context import ApplyContext
from jobrunner.reconcile.deadline import deadline_reason
from jobrunner.reconcile.outputs import outputs_of
from jobrunner.reconcile.report import (
    O_CANCELED,
    O_FAILED,
    O_SUCCEEDED,
    Unfinished,
    ended,
)
from jobrunner.reconcile.timeutil import parse_rfc3339, utcnow
from jobrunner.resources import JOB_PREDICTION, JOB_TRAINING, DesiredJob
from jobrunner.state.model import AddressState


def _with_progress(remote: RemoteJob) -> str:
    """A progress event's detail: the remote id, and `(75%)` when the provider reports a percentage."""
    pct = remote.metrics.get("progress") if isinstance(remote.metrics, dict) else None
    return f"{remote.id} ({int(pct)}%)" if isinstance(pct, (int, float)) else remote.id


def watch(ctx: ApplyContext, st: AddressState, address: str) -> asyncio.Future[RemoteJob]:
    """The job's final state, as a future the shared waiter resolves; every change is saved."""
    def on_change(remote: RemoteJob) -> None:
        if remote.id != st.remote_id:
            return
        if remote.status == st.status and not remote.terminal:
            # Only the progress the provider reports moved: shown, nothing to save.
            ctx.progress.event(address, remote.status, _with_progress(remote))
            return
        ctx.set_status(st, remote)
        ctx.pending_saves.add(asyncio.ensure_future(ctx.writer.flush(address)))  # every status change is saved
        crash_point("wait.status_changed")
        if not remote.terminal:
            ctx.progress.event(address, remote.status, _with_progress(remote))

    from jobrunner.refresh import created_time

    return ctx.waiter.wait(st.provider, st.job_kind, st.remote_id or "", project_id=st.project_id,
                           status=st.status, on_change=on_change, created=created_time(st))


def _job_deadline(job: DesiredJob, st: AddressState, timeout: str | float | None) -> float | None:
    """Epoch seconds at which the job's own `timeout` cancels it (None: no timeout)."""
    from jobrunner.durations import parse_duration

    if timeout is None or not st.history:
        return None
    started = parse_rfc3339(st.history[-1].created_at) or utcnow()
    deadline = started.timestamp() + parse_duration(timeout)
    if job.job_kind == JOB_PREDICTION and adapter_for(job.provider).capabilities.provider_deadline:
        deadline += 10  # Cancel-After does it provider-side; ours is the backstop
    return deadline


async def wait_terminal(ctx: ApplyContext, job: DesiredJob, st: AddressState, timeout: str | float | None) -> RemoteJob:
    """Wait for the job to finish, cancelling it once its own `timeout` (the plan's) has passed."""
    job_deadline = _job_deadline(job, st, timeout)
    fut = watch(ctx, st, job.address)
    if job_deadline is not None:
        remaining = job_deadline - time.time()
        try:
            final = await ctx.stop.guard(asyncio.wait_for(asyncio.shield(fut), timeout=max(0.0, remaining)))
        except TimeoutError:
            ctx.progress.event(job.address, "timeout", f"canceling after {timeout}")
            await cancel_remote(ctx, st)
            final = await ctx.stop.guard(asyncio.shield(fut))
    else:
        final = await ctx.stop.guard(asyncio.shield(fut))
    ctx.set_status(st, final)
    crash_point("wait.terminal")
    if final.status == SUCCEEDED:
        st.outputs = outputs_of(job.job_kind, final)
        st.error = None
    await ctx.writer.flush(job.address)
    return final


def finish(ctx: ApplyContext, job: DesiredJob, st: AddressState, final: RemoteJob, created: int) -> Unfinished | None:
    """Record how the job ended; None when it succeeded."""
    if job.job_kind == JOB_PREDICTION:
        ctx.touched_batches.add(job.resource_address)
        ctx.appender.item_ended(job, st, input_clear=ctx.input_clear(job))  # saved: its row may be read now
    if final.status == SUCCEEDED:
        detail = ""
        if job.job_kind == JOB_TRAINING and st.outputs.get("version"):
            detail = f"version {st.outputs['version']}"
        ctx.outcome(job.address, O_SUCCEEDED, detail, created=created)
        ctx.progress.event(job.address, "succeeded", detail or final.id)
        return None
    why = (deadline_reason(final, ctx.spec(job).get("timeout"))
           or final.error or final.raw_status or final.status)
    outcome = O_CANCELED if final.status in (CANCELED, GONE) else O_FAILED
    ctx.outcome(job.address, outcome, why if final.status in why else f"{final.status}: {why}", created=created)
    ctx.progress.event(job.address, final.status, why if why != final.status else final.id)
    return ended(final.status)
