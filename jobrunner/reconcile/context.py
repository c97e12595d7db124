"""What the rooms of one apply share: its inputs, the state being written, the report, the controls.

The executor builds one `ApplyContext` per run and hands it to each room (`creation`, `cancel`,
`waiting`, `destmodels`, `outputfiles`); they mutate state through it and record outcomes in its
report, so no room needs another room's private attributes.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobrunner.plan_types import Plan
from jobrunner.providers.base import RemoteJob
from jobrunner.reconcile.creategate import CreateGate
from jobrunner.reconcile.outputfiles import OutputAppender
from jobrunner.reconcile.report import ApplyReport, OutcomeKind
from jobrunner.reconcile.statewriter import StateWriter
from jobrunner.reconcile.stopcontrol import ProviderStops, StopControl
from jobrunner.reconcile.timeutil import to_rfc3339, utcnow
from jobrunner.reconcile.waiter import Waiter
from jobrunner.refresh import claimed_ids
from jobrunner.resources import DesiredJob, Resource
from jobrunner.state.model import AddressState


@dataclass
class ApplyOptions:
    wait: bool = True
    deadline: float | None = None  # time.monotonic() when waiting gives up (--timeout)
    parallelism: int = 10
    destroy: bool = False  # cancel means delete where the provider can (Emissary)
    lookup_window: float | None = None  # seconds a list may lag (None: JOBRUNNER_LOOKUP_WINDOW or default)


class ApplyContext:
    def __init__(self, plan: Plan, *, desired: list[DesiredJob], resources: list[Resource], writer: StateWriter,
                 pool: Any, root: Path, progress: Any, options: ApplyOptions, waiter: Waiter | None) -> None:
        self.plan = plan
        self.desired = {j.address: j for j in desired}
        self.resources = {r.address: r for r in resources}
        self.writer = writer
        self.doc = writer.doc
        self.pool = pool
        self.root = root
        self.progress = progress
        self.options = options
        if options.lookup_window is None:
            from jobrunner.reconcile.matching import lookup_window

            options.lookup_window = lookup_window(os.environ)
        self.waiter = waiter or Waiter(pool, parallelism=options.parallelism)
        self.report = ApplyReport()
        self.sem = asyncio.Semaphore(max(1, options.parallelism))
        self.stop = StopControl(options.deadline)
        self.providers = ProviderStops(self.report.provider_stops)
        self.gate = CreateGate()
        # Ids state records, plus those the plan adopts for an address (not recorded yet): a lookup
        # for another address must never take one of them.
        self.claimed: set[str] = claimed_ids(self.doc) | {c.adopt_remote_id for c in plan.changes if c.adopt_remote_id}
        self.touched_batches: set[str] = set()  # batches whose output file is written again
        self.appender = OutputAppender(root, self.resources, self.desired, self.doc, plan)  # rows as items end
        self.pending_saves: set[asyncio.Future[Any]] = set()
        # The last recorded inputs made per address, until a second use takes them (redacted_input).
        self._recorded: dict[str, tuple[DesiredJob, Any, dict[str, Any]]] = {}
        # Jobs whose material redaction left as it was, and under which secrets (input_clear).
        self._clear: dict[str, tuple[DesiredJob, Any]] = {}

    def outcome(self, address: str, outcome: OutcomeKind, detail: str = "", created: int = 0, adopted: int = 0,
                stopped_provider: str = "") -> None:
        self.report.record(address, outcome, detail, created, adopted, stopped_provider)

    def state_for(self, job: DesiredJob) -> AddressState:
        """The job's state entry (made when new), with file, provider and lifecycle brought up to date."""
        st = self.doc.addresses.get(job.address)
        if st is None:
            st = AddressState(
                address=job.address, kind=job.resource_address.split("/", 1)[0], job_kind=job.job_kind,
                provider=job.provider, file=job.file,
            )
            self.doc.addresses[job.address] = st
        st.file = job.file
        st.provider = job.provider
        res = self.resources.get(job.resource_address)
        if res is not None:
            st.lifecycle = dict(res.spec.get("lifecycle") or {}) or None
        return st

    def spec(self, job: DesiredJob) -> dict[str, Any]:
        res = self.resources.get(job.resource_address)
        return res.spec if res is not None else {}

    def redacted_input(self, job: DesiredJob) -> dict[str, Any] | None:
        """What state records as the job's inputs (`spec.recorded_inputs`). A create stores it
        twice, in its intent and then with the remote id: the second call hands back what the
        first made for the same job under the same known secrets instead of redacting again."""
        from jobrunner.redact import known_secrets, redact_unless_clear
        from jobrunner.spec import recorded_inputs

        secrets = known_secrets()  # the registry hands back the same object while nothing is added
        held = self._recorded.pop(job.address, None)
        if held is not None and held[0] is job and held[1] is secrets:
            return held[2]
        if job.sensitive_paths or job.material is None:
            value = recorded_inputs(job)
        else:
            # Nothing to hide in the material (its JSON text shows it): recorded as it is, shared
            # with the job (neither is changed in place), instead of copied by a walk per item.
            value = redact_unless_clear(job.material, secrets, whole_values=True)
            if value is job.material:
                self._clear[job.address] = (job, secrets)
        self._recorded[job.address] = (job, secrets, value)
        return value

    def input_clear(self, job: DesiredJob) -> bool:
        """Whether the job's request input is known to hold nothing to hide: it is its material's
        input, which `redacted_input` found clear under the secrets known now (asked once, at the
        item's end: its output row then takes the input as it is, without checking it again)."""
        from jobrunner.redact import known_secrets

        held = self._clear.pop(job.address, None)
        if held is None or held[0] is not job or held[1] is not known_secrets():
            return False
        material = job.material or {}
        return "input" in material and job.request.get("input") is material["input"]

    @staticmethod
    def set_status(st: AddressState, job: RemoteJob) -> None:
        st.status = job.status
        if job.error:
            st.error = job.error
        st.updated_at = to_rfc3339(utcnow())
        attempt = st.attempt_of(job.id)
        if attempt is not None:
            attempt.status = job.status

    async def pause_without_slot(self, seconds: float) -> None:
        """Sleep without holding a `--parallelism` slot: a create waiting out the lookup window
        must not keep other addresses from being created.

        Not while holding the one-at-a-time gate of an unproven provider: the addresses that would
        take the slot would wait on that gate, and this one on the slot."""
        if self.providers.holds_gate():
            await self.stop.guard(asyncio.sleep(seconds))
            return
        self.sem.release()
        try:
            await self.stop.guard(asyncio.sleep(seconds))
        finally:
            await self.sem.acquire()
