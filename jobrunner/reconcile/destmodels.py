"""Destination models: a `Model` resource is adopted when it exists on the provider, else created.

A model is never deleted by apply; its outputs (`name`, `url`) are what a training's `destination`
and `${Model.x.output.name}` references read.
"""
from __future__ import annotations

from typing import Any

from jobrunner.errors import NotFoundError
from jobrunner.providers.base import SUCCEEDED
from jobrunner.reconcile.context import ApplyContext
from jobrunner.reconcile.report import O_SUCCEEDED, Unfinished
from jobrunner.reconcile.timeutil import to_rfc3339, utcnow
from jobrunner.resources import DesiredJob


def _model_request(ctx: ApplyContext, job: DesiredJob) -> tuple[dict[str, Any], Any, Any]:
    spec = ctx.spec(job)
    req = {**{k: spec.get(k) for k in ("owner", "name", "visibility", "hardware", "description")}, **job.request}
    owner, name = req.get("owner"), req.get("name")
    if (not owner or not name) and isinstance(req.get("model"), str) and "/" in req["model"]:
        owner, name = req["model"].split("/", 1)
    return req, owner, name


async def ensure_model(ctx: ApplyContext, job: DesiredJob) -> Unfinished | None:
    """Adopt or create the model; records it as succeeded (a model has no run to wait for)."""
    req, owner, name = _model_request(ctx, job)
    provider = ctx.pool.get(job.provider)
    st = ctx.state_for(job)
    ctx.stop.check()
    async with ctx.sem:
        try:
            info = await provider.get_model(owner, name)
        except NotFoundError:
            info = None
        verb = "exists, adopted"
        if info is None:
            info = await provider.create_model(
                owner, name, req.get("visibility") or "private", req.get("hardware") or "cpu",
                req.get("description"),
            )
            verb = "created"
    url = info.get("url") if isinstance(info, dict) else None
    st.remote_id = f"{owner}/{name}"
    st.status = SUCCEEDED
    st.fingerprint = job.fingerprint
    st.attempts = max(st.attempts, 1)
    st.outputs = {"name": f"{owner}/{name}", **({"url": url} if url else {})}
    st.updated_at = to_rfc3339(utcnow())
    await ctx.writer.flush(job.address)
    ctx.outcome(job.address, O_SUCCEEDED, verb,
                created=1 if verb == "created" else 0, adopted=0 if verb == "created" else 1)
    ctx.progress.event(job.address, verb.split(",")[0], f"{owner}/{name}")
    return None
