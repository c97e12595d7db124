"""Apply's deployment room: create exactly once, update in place, delete, and wait until ready.

A deployment is not a one-shot job: it is created once, then changed where it stands. The executor
routes a deployment's planned change here: `create` (then `wait_ready`), `update` (the provider's
updatable fields, sent whole: a PATCH of absolute values also puts back a deployment changed by
hand), a replace (`delete`, then `create`: Replicate names are unique), `delete` (removal and
destroy; the caller forgets the address), `wait` (`wait_ready`).

Exactly once, as for jobs: an intent is saved before the create is sent. After an ambiguous
failure (transport error, 5xx, an unreadable answer), or when a previous run died with the intent
pending, the deployment is looked up before anything is sent again: by its name, which is unique
per Replicate account; on Emissary by name, training job and checkpoint among the project's
deployments created since the intent (minus the clock skew), never one state already records.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from jobrunner.errors import NotFoundError, PlanError, ProtocolError, ServerError, TransportError
from jobrunner.fingerprint import fingerprint
from jobrunner.plan_types import REPLACE, UPDATE, WAIT, PlannedChange, Policy
from jobrunner.providers.adapters import adapter_for
from jobrunner.providers.base import CANCELED, FAILED, GONE, SUCCEEDED, RemoteDeployment
from jobrunner.reconcile.context import ApplyContext
from jobrunner.reconcile.report import (
    O_CANCELED,
    O_DELETED,
    O_FAILED,
    O_FORGOTTEN,
    O_RUNNING,
    O_SUCCEEDED,
    O_UPDATED,
    RUNNING,
    Unfinished,
    ended,
)
from jobrunner.refresh import claimed_ids
from jobrunner.resources import DesiredJob
from jobrunner.state.model import AddressState, Attempt, Intent, StateDoc
from jobrunner.timestamps import CLOCK_SKEW, parse_rfc3339, to_rfc3339, utcnow

# Answers after which the create may or may not have happened: look before sending again.
AMBIGUOUS = (TransportError, ServerError, ProtocolError)
SETTLED = frozenset({SUCCEEDED, FAILED, CANCELED, GONE})  # waiting ends at these
_NOT_SENT = ("provider", "kind", "project_id")  # request keys that are not body fields


def create_body(job: DesiredJob) -> dict[str, Any]:
    """The provider's create body of a desired deployment (its name included)."""
    return {k: v for k, v in job.request.items() if k not in _NOT_SENT}


def update_body(job: DesiredJob) -> dict[str, Any]:
    """Every field the provider updates in place, as the manifest wants it."""
    form = adapter_for(job.provider).deployment
    updatable = form.updatable if form is not None else frozenset()
    return {k: v for k, v in job.request.items() if k in updatable}


@dataclass
class DeploymentRoom:
    """What the room needs from an apply: the state document and a way to save it."""

    doc: StateDoc
    flush: Callable[[], Awaitable[None]]
    poll_seconds: float = 1.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    claimed: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.claimed |= claimed_ids(self.doc)

    # --- create ------------------------------------------------------------------------------

    async def create(self, provider: Any, job: DesiredJob, st: AddressState) -> RemoteDeployment:
        """Create the deployment exactly once (or find the one a lost create made) and record it."""
        project_id = job.request.get("project_id")
        body = create_body(job)
        found = await self.find_created(provider, job, st) if st.intent is not None else None
        if found is None:
            from jobrunner.spec import recorded_inputs

            st.intent = Intent(fingerprint=job.fingerprint or "", attempt=1, created_at=to_rfc3339(utcnow()),
                               request_digest=fingerprint(body), inputs=recorded_inputs(job))
            await self.flush()
            try:
                found = await provider.create_deployment(body, project_id=project_id)
            except AMBIGUOUS:
                found = await self.find_created(provider, job, st)
                if found is None:
                    raise
        self.record(st, job, found)
        await self.flush()
        return found

    async def find_created(self, provider: Any, job: DesiredJob, st: AddressState) -> RemoteDeployment | None:
        """The deployment a create of `job` made since the pending intent, if the provider has it."""
        assert st.intent is not None
        since = parse_rfc3339(st.intent.created_at)
        name = str(job.request.get("name"))
        project_id = job.request.get("project_id")
        for dep in await provider.list_deployments(project_id=project_id):
            if self._taken(dep.id, st.address) or (dep.id.rsplit("/", 1)[-1] != name and dep.name != name):
                continue
            if project_id is None:
                return dep  # Replicate: a name is unique in the account
            if since is not None and dep.created_at is not None and dep.created_at < since - CLOCK_SKEW:
                continue
            detail = await provider.get_deployment(dep.id, project_id=project_id)
            wanted = {k: job.request.get(k) for k in ("training_job_id", "checkpoint")}
            if all(detail.settings.get(k) == v for k, v in wanted.items()):
                return detail
        return None

    def _taken(self, remote_id: str, address: str) -> bool:
        """Claimed by another address. A Replicate deployment replaced under the same name keeps
        its id (`owner/name`): the address's own claim does not hide it from its lookup."""
        return remote_id in self.claimed and self.doc.owner_of(remote_id) != address

    def record(self, st: AddressState, job: DesiredJob, dep: RemoteDeployment) -> None:
        """Record `dep` as the address's deployment (claimed first: raises before recording)."""
        from jobrunner.spec import recorded_inputs

        self.doc.claim_remote_id(st.address, dep.id)
        self.claimed.add(dep.id)
        now = to_rfc3339(utcnow())
        st.remote_id, st.project_id = dep.id, dep.project_id
        st.fingerprint, st.attempts, st.intent = job.fingerprint, 1, None
        st.inputs = recorded_inputs(job)
        self._observe(st, dep)
        if not any(a.remote_id == dep.id for a in st.history):
            st.history.append(Attempt(remote_id=dep.id, fingerprint=job.fingerprint or "", attempt=1,
                                      created_at=now, status=dep.status, project_id=dep.project_id))

    # --- update, delete, wait ----------------------------------------------------------------

    async def update(self, provider: Any, job: DesiredJob, st: AddressState) -> RemoteDeployment:
        """PATCH the updatable fields in place; the address keeps its deployment."""
        from jobrunner.spec import recorded_inputs

        assert st.remote_id is not None
        dep = await provider.update_deployment(st.remote_id, update_body(job), project_id=st.project_id)
        st.fingerprint, st.inputs = job.fingerprint, recorded_inputs(job)
        self._observe(st, dep)
        await self.flush()
        return dep

    async def delete(self, provider: Any, st: AddressState) -> None:
        """Delete the address's deployment on the provider (already gone counts as deleted)."""
        if st.remote_id:
            await provider.delete_deployment(st.remote_id, project_id=st.project_id)
        st.status, st.outputs = GONE, {}
        st.updated_at = to_rfc3339(utcnow())
        await self.flush()

    async def wait_ready(self, provider: Any, st: AddressState, *, deadline: float | None) -> str:
        """Poll until the deployment serves, fails, is canceled or gone, or `deadline` (monotonic)
        passes; returns the last status (recorded in state with the outputs of a ready one)."""
        assert st.remote_id is not None
        while True:
            try:
                dep = await provider.get_deployment(st.remote_id, project_id=st.project_id)
            except NotFoundError:
                st.status = GONE
                await self.flush()
                return GONE
            changed = dep.status != st.status
            self._observe(st, dep)
            if changed:
                await self.flush()
            if dep.status in SETTLED or (deadline is not None and self.clock() >= deadline):
                return dep.status
            await self.sleep(self.poll_seconds)

    @staticmethod
    def _observe(st: AddressState, dep: RemoteDeployment) -> None:
        st.status = dep.status
        st.outputs = dep.outputs() if dep.ready else {}
        st.error = f"deployment {dep.raw_status or dep.status}" if dep.status in (FAILED, CANCELED) else None
        st.updated_at = to_rfc3339(utcnow())
        attempt = st.attempt_of(dep.id)
        if attempt is not None:
            attempt.status = dep.status


# --- the executor's entry points ---------------------------------------------------------------


def _room(ctx: ApplyContext, address: str) -> DeploymentRoom:
    """A room writing through the apply's state writer, claiming ids in the apply's claimed set."""
    return DeploymentRoom(doc=ctx.doc, flush=lambda: ctx.writer.flush(address), claimed=ctx.claimed)


def _ready_deadline(policy: Policy) -> float | None:
    """time.monotonic() at which waiting for the deployment to serve gives up (its `timeout`)."""
    from jobrunner.durations import parse_duration

    return None if policy.timeout is None else time.monotonic() + parse_duration(policy.timeout)


async def apply_deployment(ctx: ApplyContext, change: PlannedChange, job: DesiredJob) -> Unfinished | None:
    """Create, update in place, replace or wait on one deployment, then wait until it serves."""
    provider = ctx.pool.get(job.provider)
    st = ctx.state_for(job)
    room = _room(ctx, job.address)
    ctx.stop.check()
    created = 0
    async with ctx.sem, ctx.providers.gate(job.provider):
        ctx.stop.check()
        if change.action == UPDATE and st.remote_id and st.status != GONE:
            dep = await room.update(provider, job, st)
            verb = "updated"
        elif change.action == WAIT and st.remote_id:
            dep, verb = None, "waiting"
        else:  # create, replace, retry, adopt (a pending intent is looked up first)
            if change.action == REPLACE and st.remote_id and st.status != GONE:
                await room.delete(provider, st)
                ctx.progress.event(job.address, "deleting", f"old deployment {st.remote_id}")
            dep = await room.create(provider, job, st)
            created, verb = 1, "created"
            ctx.providers.proven.add(job.provider)
    ctx.progress.event(job.address, verb, dep.id if dep is not None else st.remote_id or "")
    if dep is not None and dep.ready:
        _served(ctx, job.address, st, verb, created)
        return None
    if not ctx.options.wait:
        ctx.outcome(job.address, O_RUNNING, f"{verb} {st.remote_id}; not waiting (--no-wait)", created=created)
        return RUNNING
    ctx.outcome(job.address, O_RUNNING, st.remote_id or "", created=created)
    status = await ctx.stop.guard(room.wait_ready(provider, st, deadline=_ready_deadline(change.policy)))
    if status == SUCCEEDED:
        _served(ctx, job.address, st, verb, 0)
        return None
    return _not_served(ctx, job.address, st, status, change.policy)


def _served(ctx: ApplyContext, address: str, st: AddressState, verb: str, created: int) -> None:
    """Record a deployment that serves: `updated` for an update in place, else succeeded."""
    url = st.outputs.get("url") or st.remote_id or ""
    outcome = O_UPDATED if verb == "updated" else O_SUCCEEDED
    ctx.outcome(address, outcome, f"ready: {url}" if url else "ready", created=created)
    ctx.progress.event(address, "succeeded", f"ready: {url}" if url else st.remote_id or "")


def _not_served(ctx: ApplyContext, address: str, st: AddressState, status: str, policy: Policy) -> Unfinished:
    """A deployment that failed, went away, or did not serve within its `timeout` (left as it is)."""
    if status in SETTLED:
        why = st.error or f"deployment {status}"
        ctx.outcome(address, O_CANCELED if status in (CANCELED, GONE) else O_FAILED, why)
        ctx.progress.event(address, status, why)
        return ended(status)
    why = (f"{st.remote_id} not ready within its timeout ({policy.timeout}); it is left as it is: "
           "run apply again to wait for it, or raise spec.timeout")
    ctx.outcome(address, O_FAILED, why)
    ctx.progress.event(address, "failed", why)
    return ended(FAILED)


async def delete_deployment(ctx: ApplyContext, change: PlannedChange) -> Unfinished | None:
    """A deployment removed from the manifests (or destroyed): delete it on the provider, then
    forget the address. The plan already refused this when `lifecycle.prevent_destroy` is set."""
    address = change.address
    st = ctx.doc.addresses.get(address)
    if st is None:
        ctx.outcome(address, O_FORGOTTEN)
        return None
    if change.policy.prevent_destroy:  # the plan refuses it already; a saved plan is checked again
        raise PlanError(f"{address}: lifecycle.prevent_destroy is true; refusing to delete {st.remote_id}",
                        hint="set prevent_destroy: false in its manifest and apply that first")
    if change.adopt_remote_id and change.adopt_remote_id != st.remote_id:
        # An interrupted create reached the provider: that deployment is the one to delete.
        ctx.doc.claim_remote_id(address, change.adopt_remote_id)
        st.remote_id, st.intent = change.adopt_remote_id, None
    ctx.providers.check(st.provider)
    ctx.stop.check()
    async with ctx.sem:
        with contextlib.suppress(NotFoundError):  # already gone: deleted all the same
            await _room(ctx, address).delete(ctx.pool.get(st.provider), st)
    gone = st.remote_id or ""
    del ctx.doc.addresses[address]
    await ctx.writer.flush(address)
    ctx.outcome(address, O_DELETED, gone)
    ctx.progress.event(address, "deleted", gone)
    return None


__all__ = ["AMBIGUOUS", "DeploymentRoom", "apply_deployment", "create_body", "delete_deployment", "update_body"]
