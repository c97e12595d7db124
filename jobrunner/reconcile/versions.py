"""Trained versions deleted: `lifecycle.on_remove: delete_version` of a Replicate training.

Fine-tunes pile up: a training removed from the manifests, or destroyed, can take the version it
made with it. The plan shows that as a destructive `delete` (only for a training that succeeded
and recorded its version); apply sends `DELETE /v1/models/{owner}/{name}/versions/{id}` through
the wire client's `delete_version` (providers whose adapter has the `delete_versions`
capability), then forgets the address. A delete is idempotent (Replicate answers 404 once it is
gone), so a lost answer or a killed apply is simply sent again by the next apply.

Order: the provider refuses (409) to delete a version a deployment still serves or predictions
still run on, so every version delete of a plan waits until the plan's deployment changes and
removed batches (canceled, forgotten) are done (`VersionDeleteOrder`).
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterable

from jobrunner.errors import UsageError
from jobrunner.plan_types import DELETE, PlannedChange
from jobrunner.providers.adapters import adapter_for
from jobrunner.reconcile.context import ApplyContext
from jobrunner.reconcile.report import O_DELETED, O_FORGOTTEN, Unfinished
from jobrunner.reconcile.stopcontrol import StopControl
from jobrunner.resources import JOB_DEPLOYMENT, JOB_PREDICTION, JOB_TRAINING


def is_version_delete(change: PlannedChange) -> bool:
    """Whether the change deletes the version a training made (a deployment's delete is not)."""
    return change.action == DELETE and change.prior is not None and change.prior.job_kind == JOB_TRAINING


def _may_use_a_version(change: PlannedChange) -> bool:
    """A change a version delete must wait for: any deployment change (it may serve the version,
    or stop serving it), or a batch job being removed (canceled or forgotten)."""
    kind = change.prior.job_kind if change.prior is not None else None
    if change.job is not None:
        kind = change.job.job_kind
    if kind == JOB_DEPLOYMENT:
        return True
    return kind == JOB_PREDICTION and change.job is None


class VersionDeleteOrder:
    """Holds a plan's version deletes until its deployment changes and removed batches are done."""

    def __init__(self, changes: Iterable[PlannedChange]) -> None:
        planned = list(changes)
        self._left = {c.address for c in planned if _may_use_a_version(c)}
        self._ready = asyncio.Event()
        if not self._left or not any(is_version_delete(c) for c in planned):
            self._ready.set()

    def finished(self, address: str) -> None:
        """One change is done (however it ended): the version deletes may go once all are."""
        self._left.discard(address)
        if not self._left:
            self._ready.set()

    async def wait(self, stop: StopControl) -> None:
        """Until the changes that go first are done (raises Stopped on Ctrl-C or the deadline)."""
        if not self._ready.is_set():
            await stop.guard(self._ready.wait())


async def delete_trained_version(ctx: ApplyContext, change: PlannedChange) -> Unfinished | None:
    """Delete the version a removed (or destroyed) training made, then forget the address."""
    address = change.address
    st = ctx.doc.addresses.get(address)
    version = st.outputs.get("version") if st is not None else None
    if st is None or not isinstance(version, str):
        if st is not None:
            del ctx.doc.addresses[address]
            await ctx.writer.flush(address)
        ctx.outcome(address, O_FORGOTTEN)
        return None
    adapter = adapter_for(st.provider)
    if not adapter.capabilities.delete_versions:
        raise UsageError(f"{address}: {adapter.title} cannot delete model versions; nothing was deleted",
                         hint="set lifecycle.on_remove to cancel or keep in its manifest")
    ctx.providers.check(st.provider)
    ctx.stop.check()
    async with ctx.sem:
        await ctx.pool.get(st.provider).delete_version(None, version)  # False when already gone: deleted all the same
    del ctx.doc.addresses[address]
    await ctx.writer.flush(address)
    ctx.outcome(address, O_DELETED, f"version {version}")
    ctx.progress.event(address, "deleted", f"version {version}")
    return None


__all__ = ["VersionDeleteOrder", "delete_trained_version", "is_version_delete"]
