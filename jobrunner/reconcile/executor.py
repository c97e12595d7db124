"""The apply engine: executes a plan in DAG order with bounded concurrency.

One asyncio task per planned address. A task first waits for the resources it references to
succeed (an upstream failure skips it, with the reason), resolves its `${...}` values from their
fresh outputs, then does its action: create / replace / retry (with exactly-once creation), adopt,
wait, cancel or forget. Waiting goes through one shared `Waiter` that polls in bulk.

Exactly-once creation: before every create an intent (fingerprint, attempt, time, request digest)
is written to state and saved. If the create fails ambiguously (transport error, timeout, 5xx) or a
previous run died with an intent pending, the provider's recent jobs are listed and matched
(`matching.find_match`) before anything is sent again; a match is adopted. The remote id is saved
as soon as it is known, and every status change is saved, so a crash at any point loses nothing.
Creates and lookups of one provider's jobs go through a `CreateGate`, so a lookup never adopts a
job whose create answer is still on its way to a sibling address that sent the same request, and
a lookup that finds nothing lists again until the lookup window has passed (a lagging list). Every
remote id is claimed in the state model before it is recorded (one remote job, one address).

A first Ctrl-C (`interrupt()`) stops submitting new jobs and stops waiting; jobs already created
keep running on the provider and state says so.

A provider that refuses the credential (401/403) or the account (402) refuses every request alike,
so the first such answer stops all further requests to that provider in this run: its remaining
jobs are not attempted (no intent is saved for them) and are reported once, as a count, while
other providers' jobs carry on. Until one create of a provider has succeeded, its creates go one at
a time, so a wrong token costs one refused request, not one per job.
"""
from __future__ import annotations

import asyncio
import json
import contextlib
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any, Callable

from jobrunner.crashpoints import crash_point
from jobrunner.errors import (
    AuthError,
    JobrunnerError,
    NotFoundError,
    PaymentRequiredError,
    ProtocolError,
    ProviderError,
    RateLimitedError,
    ServerError,
    TransportError,
    UnexpectedIdError,
)
from jobrunner.plan_types import ADOPT, CANCEL, FORGET, MOVED, NOOP, REPLACE, RETRY, WAIT, Plan, PlannedChange
from jobrunner.providers.adapter import RequestForm
from jobrunner.providers.adapters import adapter_for
from jobrunner.providers.base import (
    ABORTED,
    CANCELED,
    FAILED,
    GONE,
    SUCCEEDED,
    TERMINAL,
    RemoteJob,
)
from jobrunner.reconcile import requests as rq
from jobrunner.reconcile.creategate import CreateGate
from jobrunner.reconcile.deadline import deadline_reason
from jobrunner.reconcile.matching import next_listing_delay
from jobrunner.reconcile.outputs import batch_key, output_rows, outputs_of, resource_of, write_jsonl
from jobrunner.reconcile.pool import in_flight_limit, run_bounded
from jobrunner.reconcile.statewriter import StateWriter
from jobrunner.reconcile.timeutil import parse_rfc3339, to_rfc3339, utcnow
from jobrunner.reconcile.waiter import Waiter
from jobrunner.references import missing_outputs_text
from jobrunner.refresh import claimed_ids
from jobrunner.resources import JOB_MODEL, JOB_PREDICTION, JOB_TRAINING, DesiredJob, Resource
from jobrunner.state.model import AddressState, Attempt, Intent, StateDoc

RETRY_ON = frozenset({FAILED, ABORTED})  # `retry.max_attempts` re-creates after these
CREATE_TRIES = 4  # ambiguous-failure rounds (lookup, then re-send) before giving up

# Outcomes per address, as counted in the summary.
O_ADOPTED = "adopted"
O_SUCCEEDED = "succeeded"
O_FAILED = "failed"
O_CANCELED = "canceled"
O_SKIPPED = "skipped"
O_FORGOTTEN = "forgotten"
O_RUNNING = "running"  # left running (--no-wait, --timeout, Ctrl-C)
O_DEFERRED = "deferred"  # not started: its upstream is still running, or apply stopped first
O_NOOP = "noop"
O_ERROR = "error"
O_NOT_ATTEMPTED = "not attempted"  # its provider refused the credential or account earlier in this run

BAD_OUTCOMES = frozenset({O_FAILED, O_CANCELED, O_SKIPPED, O_ERROR, O_NOT_ATTEMPTED})
# Answers that mean every further request to the same provider would be refused too.
PROVIDER_STOPPING = (AuthError, PaymentRequiredError)


@dataclass
class ApplyOptions:
    wait: bool = True
    deadline: float | None = None  # time.monotonic() when waiting gives up (--timeout)
    parallelism: int = 10
    destroy: bool = False  # cancel means delete where the provider can (Emissary)
    lookup_window: float | None = None  # seconds a list may lag (None: JOBRUNNER_LOOKUP_WINDOW or default)


@dataclass
class Outcome:
    address: str
    outcome: str
    detail: str = ""
    created: int = 0  # creates sent for this address in this run
    adopted: int = 0  # existing remote jobs (or models) taken over instead of creating
    stopped_provider: str = ""  # set when the outcome comes from that provider's stop (reported once)


@dataclass
class ApplyReport:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    files_written: list[str] = field(default_factory=list)
    interrupted: bool = False
    timed_out: bool = False
    # provider -> the refusal that stopped it (message, provider detail, hint), in order of stopping
    provider_stops: dict[str, str] = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes.values() if o.outcome == outcome)

    @property
    def created(self) -> int:
        return sum(o.created for o in self.outcomes.values())

    @property
    def adopted(self) -> int:
        return sum(o.adopted for o in self.outcomes.values())

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes.values() if o.outcome in BAD_OUTCOMES]

    @property
    def running(self) -> list[Outcome]:
        return [o for o in self.outcomes.values() if o.outcome == O_RUNNING]


_PENDING_REASONS = frozenset({"running", "timeout", "interrupted"})


class _ProviderStopped(Exception):
    """Raised inside a task instead of sending anything to a provider that refused this run."""

    def __init__(self, provider: str) -> None:
        super().__init__(provider)
        self.provider = provider


class _Stopped(Exception):
    """Raised inside a task when apply is interrupted or the wait deadline passed."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _error_detail(exc: ProviderError) -> str:
    """The provider error as one line: message, the provider's detail, and the hint."""
    detail = str(exc)
    if exc.detail and exc.detail not in detail:
        detail += f": {exc.detail}"
    return detail + (f" ({exc.hint})" if exc.hint else "")


def _spec_int(spec: dict[str, Any], *path: str, default: int) -> int:
    cur: Any = spec
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return default
        cur = cur[p]
    try:
        return int(cur)
    except (TypeError, ValueError):
        return default


def _takes_body(job: DesiredJob) -> bool:
    """Uploads land in a PROJECT_BODY request's body (datasets), not in an `input`."""
    return adapter_for(job.provider).form is RequestForm.PROJECT_BODY


def _with_progress(remote: RemoteJob) -> str:
    """A progress event's detail: the remote id, and `(75%)` when the provider reports a percentage."""
    pct = remote.metrics.get("progress") if isinstance(remote.metrics, dict) else None
    return f"{remote.id} ({int(pct)}%)" if isinstance(pct, (int, float)) else remote.id


class Executor:
    def __init__(
        self,
        plan: Plan,
        *,
        desired: list[DesiredJob],
        resources: list[Resource],
        writer: StateWriter,
        pool: Any,
        root: Path,
        expand: Callable[[], list[DesiredJob]],
        progress: Any,
        options: ApplyOptions | None = None,
        waiter: Waiter | None = None,
    ) -> None:
        self.plan = plan
        self.desired = {j.address: j for j in desired}
        self.resources = {r.address: r for r in resources}
        self.writer = writer
        self.doc = writer.doc
        self.pool = pool
        self.root = root
        self.expand = expand
        self.progress = progress
        self.options = options or ApplyOptions()
        self.waiter = waiter or Waiter(pool, parallelism=self.options.parallelism)
        self.report = ApplyReport()
        self._sem = asyncio.Semaphore(max(1, self.options.parallelism))
        self._stop = asyncio.Event()
        self._stop_why = ""
        self._gate = CreateGate()
        # Ids state records, plus those the plan adopts for an address (not recorded yet): a lookup
        # for another address must never take one of them.
        self._claimed: set[str] = claimed_ids(self.doc) | {c.adopt_remote_id for c in plan.changes if c.adopt_remote_id}
        if self.options.lookup_window is None:
            import os

            from jobrunner.reconcile.matching import lookup_window

            self.options.lookup_window = lookup_window(os.environ)
        self._resource_done: dict[str, asyncio.Event] = {}
        self._resource_failed: dict[str, str] = {}
        self._resolved: dict[str, asyncio.Task] = {}
        self._touched_batches: set[str] = set()
        self._timed_out = False
        self._pending_saves: set[asyncio.Future] = set()
        # Providers whose credential a successful create has proven, and the one-at-a-time gate
        # creates go through until then (see _provider_gate).
        self._proven: set[str] = set()
        self._probe: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._probing: set[asyncio.Task | None] = set()  # tasks inside a one-at-a-time gate

    # ---- control ------------------------------------------------------------------------

    def interrupt(self, why: str = "interrupted") -> None:
        if not self._stop.is_set():
            self._stop_why = why
            self._stop.set()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise _Stopped(self._stop_why)
        if self.options.deadline is not None and time.monotonic() >= self.options.deadline:
            raise _Stopped("timeout")

    async def _guard(self, awaitable: Any) -> Any:
        """Await `awaitable` unless apply is stopped or the deadline passes first (-> _Stopped)."""
        fut = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self._stop.wait())
        timeout = None
        if self.options.deadline is not None:
            timeout = max(0.0, self.options.deadline - time.monotonic())
        try:
            done, _ = await asyncio.wait({fut, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if fut in done:
            return fut.result()
        fut.cancel()  # callers pass asyncio.shield(...) for futures others share
        raise _Stopped(self._stop_why if self._stop.is_set() else "timeout")

    # ---- provider stops ------------------------------------------------------------------

    def _check_provider(self, provider: str) -> None:
        if provider in self.report.provider_stops:
            raise _ProviderStopped(provider)

    def _stop_provider(self, exc: ProviderError, provider: str) -> bool:
        """Record that `provider` refused this run; True the first time (the one to report)."""
        name = exc.provider or provider
        if name in self.report.provider_stops:
            return False
        self.report.provider_stops[name] = _error_detail(exc)
        if name != provider:
            self.report.provider_stops.setdefault(provider, self.report.provider_stops[name])
        return True

    @contextlib.asynccontextmanager
    async def _provider_gate(self, provider: str) -> Any:
        """Around one create: refuse if the provider stopped; one at a time until one succeeded."""
        self._check_provider(provider)
        if provider in self._proven:
            yield
            return
        async with self._probe[provider]:
            self._check_provider(provider)
            task = asyncio.current_task()
            self._probing.add(task)
            try:
                yield
            finally:
                self._probing.discard(task)

    # ---- bookkeeping --------------------------------------------------------------------

    def _outcome(self, address: str, outcome: str, detail: str = "", created: int = 0, adopted: int = 0,
                 stopped_provider: str = "") -> None:
        prev = self.report.outcomes.get(address)
        self.report.outcomes[address] = Outcome(address, outcome, detail, created + (prev.created if prev else 0),
                                                adopted + (prev.adopted if prev else 0), stopped_provider)

    def _state_for(self, job: DesiredJob) -> AddressState:
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

    def _spec(self, job: DesiredJob) -> dict[str, Any]:
        res = self.resources.get(job.resource_address)
        return res.spec if res is not None else {}

    def _redacted_input(self, job: DesiredJob) -> dict[str, Any] | None:
        from jobrunner.spec import recorded_inputs

        return recorded_inputs(job)

    def _set_status(self, st: AddressState, job: RemoteJob) -> None:
        st.status = job.status
        if job.error:
            st.error = job.error
        st.updated_at = to_rfc3339(utcnow())
        attempt = st.attempt_of(job.id)
        if attempt is not None:
            attempt.status = job.status

    # ---- the run ------------------------------------------------------------------------

    async def run(self) -> ApplyReport:
        if self.plan.moves:
            # Declared renames: planning re-keyed the state in memory; one atomic save records them
            # all before anything is sent, so a crash later in the run never loses or repeats a move.
            self.writer.flush_now()
            crash_point("moves.saved")
            self.progress.note(f"Moved {len(self.plan.moves)} address(es) in state (moved list of jobrunner.yaml)")
            # Their batch's output file is written again: its rows now carry the new keys.
            self._touched_batches.update(resource_of(new) for _, new in self.plan.moves)
        by_resource: dict[str, list[PlannedChange]] = defaultdict(list)
        for change in self.plan.changes:
            by_resource[resource_of(change.address)].append(change)
        for res in by_resource:
            self._resource_done[res] = asyncio.Event()
        tasks = [asyncio.create_task(self._run_resource(res, changes)) for res, changes in by_resource.items()]
        try:
            await asyncio.gather(*tasks)
        finally:
            await self.waiter.aclose()
            if self._pending_saves:
                await asyncio.gather(*self._pending_saves, return_exceptions=True)
            crash_point("outputs.before_write")
            self._write_output_files()
            self.writer.flush_now()
        self.report.interrupted = self._stop.is_set() and self._stop_why == "interrupted"
        self.report.timed_out = self._timed_out
        return self.report

    async def _run_resource(self, res: str, changes: list[PlannedChange]) -> None:
        try:
            results = await run_bounded(changes, self._run_change, in_flight_limit(self.options.parallelism))
            bad = [r for r in results if r is not None]
            if bad:
                self._resource_failed[res] = bad[0]
        finally:
            self._resource_done[res].set()

    async def _await_upstream(self, job: DesiredJob) -> str | None:
        """None when every upstream resource succeeded; else why this job must be skipped.

        Raises _Stopped when an upstream is merely still running (--no-wait, --timeout, Ctrl-C):
        the job is deferred to a later apply, not failed.
        """
        for dep in job.depends_on:
            event = self._resource_done.get(dep)
            if event is not None:
                await self._guard(event.wait())
                why = self._resource_failed.get(dep)
                if why in _PENDING_REASONS:
                    raise _Stopped(f"upstream {dep} is still running")
                if why is not None:
                    return f"upstream {dep} did not succeed ({why})"
            else:
                # Not part of this run (e.g. --target): its recorded state must show success.
                states = [s for a, s in self.doc.addresses.items() if resource_of(a) == dep]
                if dep in self.resources and (not states or any(s.status != SUCCEEDED for s in states)):
                    return f"upstream {dep} has not succeeded"
        return None

    async def _resolve(self, job: DesiredJob) -> DesiredJob:
        """Re-expand a job whose references were unknown at plan time, now that upstreams ran."""
        res = job.resource_address
        task = self._resolved.get(res)
        if task is None:
            async def run() -> dict[str, DesiredJob]:
                return {j.address: j for j in self.expand() if j.resource_address == res}

            task = self._resolved[res] = asyncio.ensure_future(run())
        resolved = (await task).get(job.address)
        if resolved is None or (resolved.fingerprint is None and not resolved.missing_outputs):
            raise JobrunnerError(f"{job.address}: references could not be resolved after upstream succeeded",
                                 hint="check the referenced outputs with `jobrunner outputs`")
        return resolved

    def _output_files(self) -> dict[str, str]:
        return {a: str(r.spec["output_file"]) for a, r in self.resources.items()
                if r.kind == "PredictionBatch" and r.spec.get("output_file")}

    async def _run_change(self, change: PlannedChange) -> str | None:
        """Run one planned change; returns None on success, else a short reason."""
        address = change.address
        if change.action == MOVED:
            # Only state moved (saved at the start of the run): a running job is waited on like any
            # other; a finished one is as it was.
            st = self.doc.addresses.get(address)
            running = st is not None and bool(st.remote_id) and st.status not in TERMINAL
            change = dc_replace(change, action=WAIT if running and change.job is not None else NOOP)
        try:
            if change.action == NOOP:
                self._outcome(address, O_NOOP)
                st = self.doc.addresses.get(address)
                if st is not None and st.status not in (SUCCEEDED, None) and st.job_kind != JOB_MODEL:
                    if st.job_kind == JOB_PREDICTION and change.job is not None:
                        # It may have ended badly unattended (e.g. a platform restart): its row must say so.
                        self._touched_batches.add(change.job.resource_address)
                    return st.status
                return None
            if change.action == CANCEL:
                st = self.doc.addresses.get(address)
                if st is not None and st.provider:
                    self._check_provider(st.provider)
            if change.action in (CANCEL, FORGET):
                return await self._cancel_or_forget(change)
            job = change.job
            assert job is not None, f"{change.action} without a desired job"
            if change.blocked_by:
                why = (missing_outputs_text(job.missing_outputs) if job.missing_outputs
                       else "upstream " + ", ".join(change.blocked_by) + " failed")
                self._outcome(address, O_SKIPPED, why)
                self.progress.event(address, "skipped", why)
                return "skipped"
            if job.depends_on:
                why = await self._await_upstream(job)
                if why:
                    self._outcome(address, O_SKIPPED, why)
                    self.progress.event(address, "skipped", why)
                    return "skipped"
            if job.fingerprint is None:
                job = await self._resolve(job)
                if job.missing_outputs:  # the upstream succeeded without an output this job needs
                    why = missing_outputs_text(job.missing_outputs)
                    self._outcome(address, O_SKIPPED, why)
                    self.progress.event(address, "skipped", why)
                    return "skipped"
                st = self.doc.addresses.get(address)
                if st is not None and st.fingerprint == job.fingerprint and st.remote_id:
                    if st.status == SUCCEEDED:
                        self._outcome(address, O_NOOP)
                        self.progress.event(address, "unchanged", "inputs resolved to what already ran")
                        return None
                    if st.status not in TERMINAL:
                        return await self._wait_existing(job, st)
            self._check_provider(job.provider)
            if job.job_kind == JOB_MODEL:
                return await self._ensure_model(job)
            if change.action == ADOPT and change.adopt_remote_id:
                return await self._adopt(job, change.adopt_remote_id)
            if change.action == WAIT:
                st = self.doc.addresses.get(address)
                if st is not None and st.remote_id:
                    return await self._wait_existing(job, st)
            return await self._create_and_wait(change, job)
        except _Stopped as stop:
            if stop.why == "timeout":
                self._timed_out = True
            st = self.doc.addresses.get(address)
            if st is not None and st.remote_id and st.status not in TERMINAL and (
                    change.job is None or st.fingerprint == change.job.fingerprint or change.action == WAIT):
                what = "wait timed out; still running" if stop.why == "timeout" else "still running"
                self._outcome(address, O_RUNNING, what)
                return "running"
            prev = self.report.outcomes.get(address)
            if prev is None or prev.outcome in (O_NOOP,):
                why = stop.why if stop.why.startswith("upstream") else f"not started ({stop.why})"
                self._outcome(address, O_DEFERRED, why + "; run apply again")
                self.progress.event(address, "deferred", why)
            return "running" if stop.why.startswith("upstream") else stop.why
        except _ProviderStopped as stop:
            self._outcome(address, O_NOT_ATTEMPTED, f"{stop.provider} refused an earlier request",
                          stopped_provider=stop.provider)
            return "error"
        except ProviderError as exc:
            # The message names provider, request, HTTP status and the provider's detail; the hint
            # says what to do (e.g. which credential variable to check).
            detail = _error_detail(exc)
            provider = change.job.provider if change.job is not None else (exc.provider or "")
            if isinstance(exc, PROVIDER_STOPPING):
                first = self._stop_provider(exc, provider)
                # Requests already in flight when the provider stopped are refused alike: they
                # belong to the one report of the stop, not a line each.
                self._outcome(address, O_ERROR, detail, stopped_provider=exc.provider or provider)
                if first:
                    self.progress.event(address, "error", detail)
                return "error"
            self._outcome(address, O_ERROR, detail)
            self.progress.event(address, "error", detail)
            return "error"
        except JobrunnerError as exc:
            self._outcome(address, O_ERROR, str(exc))
            self.progress.event(address, "error", str(exc))
            return "error"

    # ---- models -------------------------------------------------------------------------

    async def _ensure_model(self, job: DesiredJob) -> str | None:
        spec = self._spec(job)
        req = {**{k: spec.get(k) for k in ("owner", "name", "visibility", "hardware", "description")}, **job.request}
        owner, name = req.get("owner"), req.get("name")
        if (not owner or not name) and isinstance(req.get("model"), str) and "/" in req["model"]:
            owner, name = req["model"].split("/", 1)
        provider = self.pool.get(job.provider)
        st = self._state_for(job)
        self._check_stop()
        async with self._sem:
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
        await self.writer.flush(job.address)
        self._outcome(job.address, O_SUCCEEDED, verb,
                      created=1 if verb == "created" else 0, adopted=0 if verb == "created" else 1)
        self.progress.event(job.address, verb.split(",")[0], f"{owner}/{name}")
        return None

    # ---- cancel / forget ----------------------------------------------------------------

    def _deletes(self, st: AddressState) -> bool:
        """Destroy deletes the job on providers that can (not only cancels it)."""
        return self.options.destroy and adapter_for(st.provider).capabilities.delete_on_destroy

    async def _cancel_remote(self, st: AddressState) -> RemoteJob | None:
        provider = self.pool.get(st.provider)
        delete = getattr(provider, "delete", None) if self._deletes(st) else None
        async with self._sem:
            try:
                if delete is not None:
                    await delete(st.job_kind, st.remote_id, project_id=st.project_id)
                    return RemoteJob(id=st.remote_id or "", job_kind=st.job_kind, status=GONE)
                await provider.cancel(st.job_kind, st.remote_id, project_id=st.project_id)
            except NotFoundError:
                return RemoteJob(id=st.remote_id or "", job_kind=st.job_kind, status=GONE)
        crash_point("cancel.sent")
        return None

    async def _cancel_or_forget(self, change: PlannedChange) -> str | None:
        address = change.address
        st = self.doc.addresses.get(address)
        if st is None:
            self._outcome(address, O_FORGOTTEN)
            return None
        deleting = self._deletes(st)
        if change.adopt_remote_id and change.adopt_remote_id != st.remote_id:
            # An interrupted create reached the provider: that job is the one to cancel.
            self.doc.claim_remote_id(address, change.adopt_remote_id)
            st.remote_id, st.status, st.intent = change.adopt_remote_id, change.remote_status, None
        if change.action == CANCEL and st.remote_id and st.job_kind != JOB_MODEL and (
                st.status not in TERMINAL or deleting):
            self._check_stop()
            gone = await self._cancel_remote(st)
            self.progress.event(address, "canceling", st.remote_id or "")
            if gone is None and self.options.wait:
                try:
                    final = await self._guard(asyncio.shield(self.waiter.wait(
                        st.provider, st.job_kind, st.remote_id, project_id=st.project_id, status=st.status)))
                    self._set_status(st, final)
                except _Stopped:
                    pass
        del self.doc.addresses[address]
        await self.writer.flush(address)
        self._outcome(address, O_FORGOTTEN if change.action == FORGET else O_CANCELED + "+forgotten")
        self.progress.event(address, "canceled and forgotten" if change.action == CANCEL else "forgotten")
        return None

    # ---- create / wait ------------------------------------------------------------------

    def _record(self, st: AddressState, job: DesiredJob, remote: RemoteJob, attempt: int) -> None:
        self.doc.claim_remote_id(st.address, remote.id)  # raises before anything is recorded
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
        st.inputs = self._redacted_input(job)
        st.updated_at = to_rfc3339(utcnow())
        if not any(a.remote_id == remote.id for a in st.history):
            st.history.append(Attempt(remote_id=remote.id, fingerprint=job.fingerprint or "", attempt=attempt,
                                      created_at=st.updated_at, status=remote.status, project_id=remote.project_id))
        self._claimed.add(remote.id)

    @staticmethod
    def _gate_key(job: DesiredJob, req: Any) -> tuple[str, str, str | None]:
        return (job.provider, job.job_kind, req.project_id)

    async def _pause_without_slot(self, seconds: float) -> None:
        """Sleep without holding a `--parallelism` slot: a create waiting out the lookup window
        must not keep other addresses from being created.

        Not while holding the one-at-a-time gate of an unproven provider: the addresses that would
        take the slot would wait on that gate, and this one on the slot."""
        if asyncio.current_task() in self._probing:
            await self._guard(asyncio.sleep(seconds))
            return
        self._sem.release()
        try:
            await self._guard(asyncio.sleep(seconds))
        finally:
            await self._sem.acquire()

    async def _lookup(self, provider: Any, key: tuple[str, str, str | None], req: Any, desired_body: dict[str, Any],
                      since_text: str, attempted_at: float, *, holds_slot: bool = False) -> RemoteJob | None:
        """The job an earlier create of `req` made, claimed for the caller; None when, after the
        lookup window since `attempted_at` (epoch seconds), the provider still lists none.

        `holds_slot`: the caller holds a parallelism slot, given up while waiting."""
        from jobrunner.refresh import lookup_created

        since = parse_rfc3339(since_text) or utcnow()
        deadline = attempted_at + (self.options.lookup_window or 0.0)
        listings = 0
        while True:
            async with self._gate.looking(key):
                found = await lookup_created(provider, req, since=since, exclude_ids=self._claimed,
                                             desired_body=desired_body)
                if found is not None:
                    self._claimed.add(found.id)  # before leaving the gate: no other lookup may take it
                    return found
            remaining = deadline - time.time()
            if remaining <= 0:
                return None
            # The provider's list may lag behind a job just created: look again before concluding.
            pause = next_listing_delay(listings, remaining)
            if holds_slot:
                await self._pause_without_slot(pause)
            else:
                await self._guard(asyncio.sleep(pause))
            listings += 1

    def _check_answer(self, job: DesiredJob, remote: RemoteJob) -> None:
        """A create answered with the id of a job this workspace already records is no new job."""
        owner = self.doc.owner_of(remote.id)
        if remote.id in self._claimed or (owner is not None and owner != job.address):
            raise UnexpectedIdError(
                f"{job.provider}: create {job.job_kind} for {job.address}: the answer names {remote.id}, "
                f"which is already the job of {owner or 'another address of this plan'}",
                provider=job.provider,
                hint="nothing was recorded from that answer; the create stays pending and the next apply looks "
                     "its job up on the provider",
            )

    async def _create_once(self, job: DesiredJob, st: AddressState, attempt: int) -> tuple[RemoteJob, bool]:
        """Create the job exactly once; returns (remote job, adopted?)."""
        provider = self.pool.get(job.provider)
        spec = self._spec(job)
        desired = rq.create_request(job, spec)
        key = self._gate_key(job, desired)
        base_dirs = [self.root, (self.root / job.file).parent]  # spec.expand made paths workspace-relative
        # A previous run may have died after sending this very create: look before sending.
        if st.intent is not None and st.intent.fingerprint == job.fingerprint:
            self._check_provider(job.provider)
            sent = parse_rfc3339(st.intent.created_at)
            found = await self._lookup(provider, key, desired, desired.body, st.intent.created_at,
                                       sent.timestamp() if sent is not None else time.time())
            if found is not None:
                crash_point("create.lookup_found")
                self._record(st, job, found, st.intent.attempt)
                await self.writer.flush(job.address)
                return found, True
        self._check_stop()
        async with self._sem, self._provider_gate(job.provider):
            self._check_stop()
            body = await rq.upload_files(desired.body, lambda p: provider.upload(p, project_id=desired.project_id),
                                         base_dirs)
            req = rq.create_request(job, spec, {**job.request, **({"input": body["input"]} if "input" in body else {}),
                                                **({"body": body} if _takes_body(job) else {})})
            st.intent = Intent(fingerprint=job.fingerprint or "", attempt=attempt, created_at=to_rfc3339(utcnow()),
                               request_digest=rq.request_digest(req), inputs=self._redacted_input(job))
            await self.writer.flush(job.address)
            crash_point("create.intent_saved")
            delay = 0.5
            for round_no in range(CREATE_TRIES):
                attempted_at = time.time()
                try:
                    # Held until the id is recorded: no lookup lists while this answer is in flight.
                    async with self._gate.creating(key):
                        remote = await provider.create(req)
                        self._proven.add(job.provider)
                        crash_point("create.sent")
                        self._check_answer(job, remote)
                        self._record(st, job, remote, attempt)
                    await self.writer.flush(job.address)
                    crash_point("create.recorded")
                    return remote, False
                except RateLimitedError as exc:  # rejected before creation: safe to send again
                    if round_no == CREATE_TRIES - 1:
                        st.intent = None
                        await self.writer.flush(job.address)
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
                    found = await self._lookup(provider, key, req, desired.body, st.intent.created_at,
                                               attempted_at if not last else 0.0, holds_slot=True)
                    if found is not None:
                        self._record(st, job, found, attempt)
                        await self.writer.flush(job.address)
                        return found, True
                    if last:
                        raise
                    if not self.options.lookup_window:  # else the window already spaced the re-send
                        await asyncio.sleep(delay * (1 + random.random()))
                except ProviderError:
                    # Rejected for certain (invalid input, auth, payment): nothing was created.
                    st.intent = None
                    await self.writer.flush(job.address)
                    raise
                delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    def _watch(self, st: AddressState, address: str) -> asyncio.Future:
        def on_change(remote: RemoteJob) -> None:
            if remote.id != st.remote_id:
                return
            if remote.status == st.status and not remote.terminal:
                # Only the progress the provider reports moved: shown, nothing to save.
                self.progress.event(address, remote.status, _with_progress(remote))
                return
            self._set_status(st, remote)
            self._pending_saves.add(asyncio.ensure_future(self.writer.flush(address)))  # every status change is saved
            crash_point("wait.status_changed")
            if not remote.terminal:
                self.progress.event(address, remote.status, _with_progress(remote))

        from jobrunner.refresh import created_time

        return self.waiter.wait(st.provider, st.job_kind, st.remote_id or "", project_id=st.project_id,
                                status=st.status, on_change=on_change, created=created_time(st))

    async def _wait_terminal(self, job: DesiredJob, st: AddressState) -> RemoteJob:
        """Wait for the job to finish, cancelling it at its own `timeout` deadline if it has one."""
        from jobrunner.durations import parse_duration

        spec = self._spec(job)
        job_deadline = None
        if spec.get("timeout") is not None and st.history:
            started = parse_rfc3339(st.history[-1].created_at) or utcnow()
            job_deadline = started.timestamp() + parse_duration(spec["timeout"])
            if job.job_kind == JOB_PREDICTION and adapter_for(job.provider).capabilities.provider_deadline:
                job_deadline += 10  # Cancel-After does it provider-side; ours is the backstop
        fut = self._watch(st, job.address)
        if job_deadline is not None:
            remaining = job_deadline - time.time()
            try:
                final = await self._guard(asyncio.wait_for(asyncio.shield(fut), timeout=max(0.0, remaining)))
            except asyncio.TimeoutError:
                self.progress.event(job.address, "timeout", f"canceling after {spec['timeout']}")
                await self._cancel_remote(st)
                final = await self._guard(asyncio.shield(fut))
        else:
            final = await self._guard(asyncio.shield(fut))
        self._set_status(st, final)
        crash_point("wait.terminal")
        if final.status == SUCCEEDED:
            st.outputs = outputs_of(job.job_kind, final)
            st.error = None
        await self.writer.flush(job.address)
        return final

    def _finish(self, job: DesiredJob, st: AddressState, final: RemoteJob, created: int) -> str | None:
        if job.job_kind == JOB_PREDICTION:
            self._touched_batches.add(job.resource_address)
        if final.status == SUCCEEDED:
            detail = ""
            if job.job_kind == JOB_TRAINING and st.outputs.get("version"):
                detail = f"version {st.outputs['version']}"
            self._outcome(job.address, O_SUCCEEDED, detail, created=created)
            self.progress.event(job.address, "succeeded", detail or final.id)
            return None
        why = (deadline_reason(final, self._spec(job).get("timeout"))
               or final.error or final.raw_status or final.status)
        outcome = O_CANCELED if final.status in (CANCELED, GONE) else O_FAILED
        self._outcome(job.address, outcome, why if final.status in why else f"{final.status}: {why}", created=created)
        self.progress.event(job.address, final.status, why if why != final.status else final.id)
        return final.status

    async def _wait_existing(self, job: DesiredJob, st: AddressState) -> str | None:
        if not self.options.wait:
            self._outcome(job.address, O_RUNNING, "not waiting (--no-wait)")
            return "running"
        self.progress.event(job.address, "waiting", st.remote_id or "")
        final = await self._wait_terminal(job, st)
        if final.status in RETRY_ON and st.attempts < _spec_int(self._spec(job), "retry", "max_attempts", default=1):
            return await self._create_and_wait(None, job, first_attempt=st.attempts + 1)
        return self._finish(job, st, final, 0)

    async def _adopt(self, job: DesiredJob, remote_id: str) -> str | None:
        provider = self.pool.get(job.provider)
        st = self._state_for(job)
        remote = await provider.get(job.job_kind, remote_id, project_id=getattr(job, "project_id", None)
                                    or job.request.get("project_id"))
        attempt = st.intent.attempt if st.intent is not None and st.intent.fingerprint == job.fingerprint else max(1, st.attempts)
        crash_point("create.lookup_found")
        self._record(st, job, remote, attempt)
        await self.writer.flush(job.address)
        self._outcome(job.address, O_ADOPTED, remote.id, adopted=1)
        self.progress.event(job.address, "adopted", remote.id)
        if remote.terminal:
            if remote.status == SUCCEEDED:
                st.outputs = outputs_of(job.job_kind, remote)
                await self.writer.flush(job.address)
            return self._finish(job, st, remote, 0)
        if not self.options.wait:
            self._outcome(job.address, O_RUNNING, "adopted; not waiting (--no-wait)")
            return "running"
        final = await self._wait_terminal(job, st)
        return self._finish(job, st, final, 0)

    async def _create_and_wait(self, change: PlannedChange | None, job: DesiredJob,
                               first_attempt: int | None = None) -> str | None:
        st = self._state_for(job)
        spec = self._spec(job)
        max_attempts = max(1, _spec_int(spec, "retry", "max_attempts", default=1))
        if first_attempt is None:
            if change is not None and change.action == RETRY and st.fingerprint == job.fingerprint:
                first_attempt = st.attempts + 1
            else:
                first_attempt = 1
        if change is not None and change.action == REPLACE and change.adopt_remote_id \
                and change.adopt_remote_id != st.remote_id and st.intent is not None:
            # An interrupted create for an older spec reached the provider: record it, then replace it.
            old = RemoteJob(id=change.adopt_remote_id, job_kind=job.job_kind, status=change.remote_status or "unknown")
            self.doc.claim_remote_id(job.address, old.id)
            st.history.append(Attempt(remote_id=old.id, fingerprint=st.intent.fingerprint, attempt=st.intent.attempt,
                                      created_at=st.intent.created_at, status=old.status))
            st.remote_id, st.status, st.intent = old.id, old.status, None
            self._claimed.add(old.id)
            await self.writer.flush(job.address)
        # Replace: stop the old run first if it is still going (never when prevent_cancel).
        if change is not None and change.action == REPLACE and st.remote_id and st.status not in TERMINAL:
            if not (spec.get("lifecycle") or {}).get("prevent_cancel"):
                await self._cancel_remote(st)
                self.progress.event(job.address, "canceling", f"old run {st.remote_id}")
        if st.fingerprint != job.fingerprint:
            st.attempts = 0
        attempt = first_attempt
        created = 0
        while True:
            remote, adopted = await self._create_once(job, st, attempt)
            created += 1
            self.progress.event(job.address, "adopted" if adopted else "created",
                                f"{remote.id}, attempt {attempt}" if attempt > 1 else remote.id)
            if not self.options.wait and not remote.terminal:
                self._outcome(job.address, O_RUNNING, f"created {remote.id}; not waiting (--no-wait)",
                              created=0 if adopted else 1, adopted=1 if adopted else 0)
                if job.job_kind == JOB_PREDICTION:
                    self._touched_batches.add(job.resource_address)
                return "running"
            self._outcome(job.address, O_RUNNING, remote.id, created=0 if adopted else 1, adopted=1 if adopted else 0)
            final = remote if remote.terminal else await self._wait_terminal(job, st)
            if final.status == SUCCEEDED and not st.outputs:
                # Finished within the create call (e.g. `Prefer: wait`): record it like a wait would.
                self._set_status(st, final)
                st.outputs = outputs_of(job.job_kind, final)
                await self.writer.flush(job.address)
            if final.status in RETRY_ON and attempt < max_attempts:
                self._check_stop()
                attempt += 1
                self.progress.event(job.address, "retrying", f"attempt {attempt} of {max_attempts} after {final.status}"
                                    + (f": {final.error}" if final.error else ""))
                continue
            return self._finish(job, st, final, 0)

    # ---- batch output files -------------------------------------------------------------

    def _write_output_files(self) -> None:
        for path, rows in output_files_due(self.root, self.resources, self.desired.values(), self.doc,
                                           self._touched_batches):
            write_jsonl(path, rows)
            try:
                shown = str(path.relative_to(self.root))
            except ValueError:
                shown = str(path)
            self.report.files_written.append(shown)
            self.progress.note(f"Wrote {shown} ({len(rows)} item(s))")


def output_files_due(root: Path, resources: dict[str, Resource], desired: Any, doc: StateDoc,
                     touched: set[str] | frozenset[str] = frozenset()) -> list[tuple[Path, list[dict[str, Any]]]]:
    """The batch output files to (re)write, with their rows: a touched batch's always; an untouched
    one's when its file does not hold what it should (rows were removed, or a kill came after the
    jobs finished and before the file was written)."""
    from jobrunner.redact import redact

    jobs = list(desired)
    due = []
    for res_addr, resource in resources.items():
        out_file = resource.spec.get("output_file") if resource.kind == "PredictionBatch" else None
        if not out_file:
            continue
        path = (root / resource.file).parent / str(out_file)
        items = [j for j in jobs if j.resource_address == res_addr]
        if not items or not any(doc.addresses.get(j.address) for j in items):
            continue
        rows = output_rows([
            (batch_key(j.address) or j.address, redact(j.request.get("input") or {}, j.sensitive_paths),
             doc.addresses.get(j.address))
            for j in items
        ])
        if res_addr in touched or not _file_holds(path, rows):
            due.append((path, rows))
    return due


def _file_holds(path: Path, rows: list[dict[str, Any]]) -> bool:
    """Does the output file at `path` already hold exactly `rows` (as `write_jsonl` writes them)?"""
    # Row by row: a 100,000-row file is never held whole, nor parsed whole, nor its rows copied.
    try:
        with open(path, encoding="utf-8") as fh:
            lines = (line for line in fh if line.strip())
            for row in rows:
                line = next(lines, None)
                if line is None or json.loads(line) != json.loads(json.dumps(row, default=str)):
                    return False
            return next(lines, None) is None
    except (OSError, ValueError):
        return False
