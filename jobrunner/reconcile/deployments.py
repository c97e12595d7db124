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
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from jobrunner.errors import NotFoundError, ProtocolError, ServerError, TransportError
from jobrunner.fingerprint import fingerprint
from jobrunner.providers.adapters import adapter_for
from jobrunner.providers.base import CANCELED, FAILED, GONE, SUCCEEDED, RemoteDeployment
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
            if dep.id in self.claimed or (dep.id.rsplit("/", 1)[-1] != name and dep.name != name):
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


__all__ = ["AMBIGUOUS", "DeploymentRoom", "create_body", "update_body"]
