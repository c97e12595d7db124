"""The apply engine: executes a plan in DAG order with bounded concurrency.

One asyncio task per planned address. A task first waits for the resources it references to
succeed (an upstream failure skips it, with the reason), resolves its `${...}` values from their
fresh outputs, then does its action: create / replace / retry, adopt, wait, cancel or forget; a
deployment's create / update / replace / wait / delete.

This module only routes; the work is done in small rooms that share one `ApplyContext`:
`creation` (exactly-once: intent, create, record, lookups), `waiting` (to the end, the job's own
timeout), `cancel` (cancel, delete, forget), `destmodels` (destination models), `deployments`
(create exactly once, update in place, delete, wait until ready), `outputfiles`
(batch output files), `stopcontrol` (Ctrl-C, the deadline, a provider's refusal) and `report`
(the outcome of each address, which `jobrunner.exitcodes.for_apply` turns into the exit code);
`versions` deletes trained versions, once the deployments and removed batches that may use them
are done.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any

from jobrunner.crashpoints import crash_point
from jobrunner.errors import JobrunnerError, ProviderError
from jobrunner.plan_types import ADOPT, CANCEL, DELETE, FORGET, MOVED, NOOP, WAIT, Plan, PlannedChange
from jobrunner.providers.base import SUCCEEDED, TERMINAL
from jobrunner.reconcile import jobrun
from jobrunner.reconcile.cancel import cancel_or_forget
from jobrunner.reconcile.context import ApplyContext, ApplyOptions
from jobrunner.reconcile.deployments import apply_deployment, delete_deployment
from jobrunner.reconcile.destmodels import ensure_model
from jobrunner.reconcile.outputfiles import write_output_files
from jobrunner.reconcile.outputs import resource_of
from jobrunner.reconcile.pool import in_flight_limit, run_bounded
from jobrunner.reconcile.report import (
    ERROR,
    O_DEFERRED,
    O_ERROR,
    O_NOOP,
    O_NOT_ATTEMPTED,
    O_RUNNING,
    O_SKIPPED,
    RUNNING,
    SKIPPED,
    ApplyReport,
    Unfinished,
    ended,
)
from jobrunner.reconcile.statewriter import StateWriter
from jobrunner.reconcile.stopcontrol import PROVIDER_STOPPING, ProviderStopped, Stopped, error_detail
from jobrunner.reconcile.upstream import Upstreams
from jobrunner.reconcile.versions import VersionDeleteOrder, delete_trained_version, is_version_delete
from jobrunner.reconcile.waiter import Waiter
from jobrunner.references import missing_outputs_text
from jobrunner.resources import JOB_DEPLOYMENT, JOB_MODEL, JOB_PREDICTION, DesiredJob, Resource


class Executor:
    """One apply: `run()` carries out the plan and returns its report; `interrupt()` is Ctrl-C."""

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
        self.ctx = ApplyContext(plan, desired=desired, resources=resources, writer=writer, pool=pool, root=root,
                                progress=progress, options=options or ApplyOptions(), waiter=waiter)
        self.plan = plan
        self.report = self.ctx.report
        self._proven = self.ctx.providers.proven  # providers whose credential a create has proven
        self._by_resource: dict[str, list[PlannedChange]] = defaultdict(list)
        for change in plan.changes:
            self._by_resource[resource_of(change.address)].append(change)
        self.upstream = Upstreams(self.ctx, list(self._by_resource), expand)
        # Trained versions are deleted after the deployments and batches that may still use them.
        self.version_order = VersionDeleteOrder(plan.changes)

    def interrupt(self, why: str = "interrupted") -> None:
        """First Ctrl-C: submit nothing new and stop waiting; jobs already created keep running."""
        self.ctx.stop.interrupt(why)

    # ---- the run ------------------------------------------------------------------------

    async def run(self) -> ApplyReport:
        ctx = self.ctx
        if self.plan.moves:
            # Declared renames: planning re-keyed the state in memory; one atomic save records them
            # all before anything is sent, so a crash later in the run never loses or repeats a move.
            ctx.writer.flush_now()
            crash_point("moves.saved")
            ctx.progress.note(f"Moved {len(self.plan.moves)} address(es) in state (moved list of jobrunner.yaml)")
            # Their batch's output file is written again: its rows now carry the new keys.
            ctx.touched_batches.update(resource_of(new) for _, new in self.plan.moves)
        tasks = [asyncio.create_task(self._run_resource(res, changes)) for res, changes in self._by_resource.items()]
        try:
            await asyncio.gather(*tasks)
        finally:
            await ctx.waiter.aclose()
            if ctx.pending_saves:
                await asyncio.gather(*ctx.pending_saves, return_exceptions=True)
            appended = ctx.appender.close()
            crash_point("outputs.before_write")
            ctx.report.files_written += write_output_files(ctx.root, ctx.resources, ctx.desired.values(), ctx.doc,
                                                           ctx.touched_batches, ctx.progress, appended)
            ctx.writer.flush_now()
        ctx.report.interrupted = ctx.stop.interrupted
        ctx.report.timed_out = ctx.stop.timed_out
        return ctx.report

    async def _run_resource(self, res: str, changes: list[PlannedChange]) -> None:
        results: list[Unfinished | None] = []
        try:
            results = await run_bounded(changes, self._run_change, in_flight_limit(self.ctx.options.parallelism))
        finally:
            self.upstream.finished(res, results)

    # ---- one change ---------------------------------------------------------------------

    async def _run_change(self, change: PlannedChange) -> Unfinished | None:
        """Run one planned change; returns None on success, else a short reason."""
        change = self._settle_move(change)
        try:
            if is_version_delete(change):
                await self.version_order.wait(self.ctx.stop)
            return await self._do_change(change)
        except Stopped as stop:
            return self._on_stopped(change, stop)
        except ProviderStopped as stop:
            self.ctx.outcome(change.address, O_NOT_ATTEMPTED, f"{stop.provider} refused an earlier request",
                             stopped_provider=stop.provider)
            return ERROR
        except ProviderError as exc:
            return self._on_provider_error(change, exc)
        except JobrunnerError as exc:
            self.ctx.outcome(change.address, O_ERROR, str(exc))
            self.ctx.progress.event(change.address, "error", str(exc))
            return ERROR
        finally:
            self.version_order.finished(change.address)

    def _settle_move(self, change: PlannedChange) -> PlannedChange:
        """A moved address whose job needs nothing else: only state moved (saved at the start of
        the run), so a running job is waited on like any other and a finished one is as it was."""
        if change.action != MOVED:
            return change
        st = self.ctx.doc.addresses.get(change.address)
        running = st is not None and bool(st.remote_id) and st.status not in TERMINAL
        return dc_replace(change, action=WAIT if running and change.job is not None else NOOP)

    async def _do_change(self, change: PlannedChange) -> Unfinished | None:
        address = change.address
        if change.action == NOOP:
            return self._noop(change)
        if change.action in (CANCEL, FORGET):
            st = self.ctx.doc.addresses.get(address)
            if change.action == CANCEL and st is not None and st.provider:
                self.ctx.providers.check(st.provider)
            return await cancel_or_forget(self.ctx, change)
        if change.action == DELETE:  # a deployment or a trained version, removed or destroyed
            if change.prior is not None and change.prior.job_kind == JOB_DEPLOYMENT:
                return await delete_deployment(self.ctx, change)
            return await delete_trained_version(self.ctx, change)
        job = change.job
        assert job is not None, f"{change.action} without a desired job"
        why = await self._why_skipped(change, job)
        if why:
            self._skip(address, why)
            return SKIPPED
        if job.fingerprint is None:
            job = await self.upstream.resolve(job)
            if job.missing_outputs:  # the upstream succeeded without an output this job needs
                self._skip(address, missing_outputs_text(job.missing_outputs))
                return SKIPPED
            st = self.ctx.doc.addresses.get(address)
            if st is not None and st.fingerprint == job.fingerprint and st.remote_id:
                if st.status == SUCCEEDED:
                    self.ctx.outcome(address, O_NOOP)
                    self.ctx.progress.event(address, "unchanged", "inputs resolved to what already ran")
                    return None
                if st.status not in TERMINAL:
                    if job.job_kind == JOB_DEPLOYMENT:
                        return await apply_deployment(self.ctx, dc_replace(change, action=WAIT), job)
                    return await jobrun.wait_existing(self.ctx, job, st, change.policy)
        return await self._act(change, job)

    async def _act(self, change: PlannedChange, job: DesiredJob) -> Unfinished | None:
        self.ctx.providers.check(job.provider)
        if job.job_kind == JOB_MODEL:
            return await ensure_model(self.ctx, job)
        if job.job_kind == JOB_DEPLOYMENT:
            return await apply_deployment(self.ctx, change, job)
        if change.action == ADOPT and change.adopt_remote_id:
            return await jobrun.adopt(self.ctx, job, change.adopt_remote_id, change.policy)
        if change.action == WAIT:
            st = self.ctx.doc.addresses.get(change.address)
            if st is not None and st.remote_id:
                return await jobrun.wait_existing(self.ctx, job, st, change.policy)
        return await jobrun.create_and_wait(self.ctx, change, job, change.policy)

    def _noop(self, change: PlannedChange) -> Unfinished | None:
        self.ctx.outcome(change.address, O_NOOP)
        st = self.ctx.doc.addresses.get(change.address)
        if st is not None and st.status not in (SUCCEEDED, None) and st.job_kind != JOB_MODEL:
            if st.job_kind == JOB_PREDICTION and change.job is not None:
                # It may have ended badly unattended (e.g. a platform restart): its row must say so.
                self.ctx.touched_batches.add(change.job.resource_address)
            return ended(st.status)
        return None

    async def _why_skipped(self, change: PlannedChange, job: DesiredJob) -> str | None:
        """Why the job cannot run (blocked at plan time, or an upstream failed in this run)."""
        if change.blocked_by:
            return (missing_outputs_text(job.missing_outputs) if job.missing_outputs
                    else "upstream " + ", ".join(change.blocked_by) + " failed")
        if job.depends_on:
            return await self.upstream.wait(job)
        return None

    def _skip(self, address: str, why: str) -> None:
        self.ctx.outcome(address, O_SKIPPED, why)
        self.ctx.progress.event(address, "skipped", why)

    def _on_stopped(self, change: PlannedChange, stop: Stopped) -> Unfinished:
        address = change.address
        if stop.why == "timeout":
            self.ctx.stop.timed_out = True
        st = self.ctx.doc.addresses.get(address)
        if st is not None and st.remote_id and st.status not in TERMINAL and (
                change.job is None or st.fingerprint == change.job.fingerprint or change.action == WAIT):
            what = "wait timed out; still running" if stop.why == "timeout" else "still running"
            self.ctx.outcome(address, O_RUNNING, what)
            return RUNNING
        prev = self.ctx.report.outcomes.get(address)
        if prev is None or prev.outcome in (O_NOOP,):
            why = stop.why if stop.why.startswith("upstream") else f"not started ({stop.why})"
            self.ctx.outcome(address, O_DEFERRED, why + "; run apply again")
            self.ctx.progress.event(address, "deferred", why)
        # Stopped by Ctrl-C or the deadline, or behind an upstream still running: never a failure.
        return Unfinished(pending=True, reason=stop.why)

    def _on_provider_error(self, change: PlannedChange, exc: ProviderError) -> Unfinished:
        # The message names provider, request, HTTP status and the provider's detail; the hint
        # says what to do (e.g. which credential variable to check).
        address = change.address
        detail = error_detail(exc)
        provider = change.job.provider if change.job is not None else (exc.provider or "")
        if isinstance(exc, PROVIDER_STOPPING):
            first = self.ctx.providers.stop(exc, provider)
            # Requests already in flight when the provider stopped are refused alike: they
            # belong to the one report of the stop, not a line each.
            self.ctx.outcome(address, O_ERROR, detail, stopped_provider=exc.provider or provider)
            if first:
                self.ctx.progress.event(address, "error", detail)
            return ERROR
        self.ctx.outcome(address, O_ERROR, detail)
        self.ctx.progress.event(address, "error", detail)
        return ERROR


__all__ = ["Executor"]
