"""Cancel and delete: stop a running job (or delete it where destroy can), and forget an address.

Emissary jobs are deleted on `destroy` (the provider can); everything else is canceled. A job the
provider no longer knows (404) counts as gone. Forgetting drops the address from state, never the
remote job.
"""
from __future__ import annotations

import asyncio

from jobrunner.crashpoints import crash_point
from jobrunner.errors import NotFoundError
from jobrunner.plan_types import CANCEL, FORGET, PlannedChange
from jobrunner.providers.adapters import adapter_for
from jobrunner.providers.base import GONE, TERMINAL, RemoteJob
from jobrunner.reconcile.context import ApplyContext
from jobrunner.reconcile.report import O_CANCELED_FORGOTTEN, O_FORGOTTEN, Unfinished
from jobrunner.reconcile.stopcontrol import Stopped
from jobrunner.resources import JOB_MODEL
from jobrunner.state.model import AddressState


def _deletes(ctx: ApplyContext, st: AddressState) -> bool:
    """Does this run delete the job instead of canceling it (destroy, on a provider that can)?"""
    return ctx.options.destroy and adapter_for(st.provider).capabilities.delete_on_destroy


async def cancel_remote(ctx: ApplyContext, st: AddressState) -> RemoteJob | None:
    """Ask the provider to cancel (or delete) the job; a RemoteJob when it is already gone."""
    provider = ctx.pool.get(st.provider)
    async with ctx.sem:
        try:
            if _deletes(ctx, st):  # the adapter's delete_on_destroy: its client has `delete`
                await provider.delete(st.job_kind, st.remote_id, project_id=st.project_id)
                return RemoteJob(id=st.remote_id or "", job_kind=st.job_kind, status=GONE)
            await provider.cancel(st.job_kind, st.remote_id, project_id=st.project_id)
        except NotFoundError:
            return RemoteJob(id=st.remote_id or "", job_kind=st.job_kind, status=GONE)
    crash_point("cancel.sent")
    return None


async def cancel_or_forget(ctx: ApplyContext, change: PlannedChange) -> Unfinished | None:
    """A removed address: cancel its run if the plan says so (and wait for it to stop), then forget it."""
    address = change.address
    st = ctx.doc.addresses.get(address)
    if st is None:
        ctx.outcome(address, O_FORGOTTEN)
        return None
    if change.adopt_remote_id and change.adopt_remote_id != st.remote_id:
        # An interrupted create reached the provider: that job is the one to cancel.
        ctx.doc.claim_remote_id(address, change.adopt_remote_id)
        st.remote_id, st.status, st.intent = change.adopt_remote_id, change.remote_status, None
    if change.action == CANCEL and st.remote_id and st.job_kind != JOB_MODEL and (
            st.status not in TERMINAL or _deletes(ctx, st)):
        await _cancel_and_wait(ctx, st, address)
    del ctx.doc.addresses[address]
    await ctx.writer.flush(address)
    ctx.outcome(address, O_FORGOTTEN if change.action == FORGET else O_CANCELED_FORGOTTEN)
    ctx.progress.event(address, "canceled and forgotten" if change.action == CANCEL else "forgotten")
    return None


async def _cancel_and_wait(ctx: ApplyContext, st: AddressState, address: str) -> None:
    ctx.stop.check()
    gone = await cancel_remote(ctx, st)
    ctx.progress.event(address, "canceling", st.remote_id or "")
    if gone is None and ctx.options.wait:
        try:
            final = await ctx.stop.guard(asyncio.shield(ctx.waiter.wait(
                st.provider, st.job_kind, st.remote_id or "", project_id=st.project_id, status=st.status)))
            ctx.set_status(st, final)
        except Stopped:
            pass
