"""Trained versions deleted on removal: `lifecycle.on_remove: delete_version` of a Replicate training.

Fine-tunes pile up: a training removed from the manifests can take the version it made with it.
The plan shows that as a destructive `delete` (only for a training that succeeded and recorded its
version); apply sends `DELETE /v1/models/{owner}/{name}/versions/{id}` through the wire client's
`delete_version`, then forgets the address. A delete is idempotent (Replicate answers 404 once it
is gone), so a lost answer or a killed apply is simply sent again by the next apply.
"""
from __future__ import annotations

from jobrunner.errors import UsageError
from jobrunner.plan_types import PlannedChange
from jobrunner.reconcile.context import ApplyContext
from jobrunner.reconcile.report import O_DELETED, O_FORGOTTEN, Unfinished


async def delete_trained_version(ctx: ApplyContext, change: PlannedChange) -> Unfinished | None:
    """Delete the version a removed training made, then forget the address."""
    address = change.address
    st = ctx.doc.addresses.get(address)
    version = st.outputs.get("version") if st is not None else None
    if st is None or not isinstance(version, str):
        if st is not None:
            del ctx.doc.addresses[address]
            await ctx.writer.flush(address)
        ctx.outcome(address, O_FORGOTTEN)
        return None
    provider = ctx.pool.get(st.provider)
    delete = getattr(provider, "delete_version", None)
    if delete is None:
        raise UsageError(f"{address}: {st.provider} cannot delete model versions; nothing was deleted",
                         hint="set lifecycle.on_remove to cancel or keep in its manifest")
    ctx.providers.check(st.provider)
    ctx.stop.check()
    async with ctx.sem:
        await delete(None, version)  # False when it was already gone: deleted all the same
    del ctx.doc.addresses[address]
    await ctx.writer.flush(address)
    ctx.outcome(address, O_DELETED, f"version {version}")
    ctx.progress.event(address, "deleted", f"version {version}")
    return None


__all__ = ["delete_trained_version"]
