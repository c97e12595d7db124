"""Dependencies inside one apply: a job waits for the resources it references, then resolves them.

Each resource of the plan has an event set when all its addresses are done, and the first reason
one of them did not succeed. A dependent waits on those events: an upstream failure skips it (with
the reason), an upstream merely still running (--no-wait, --timeout, Ctrl-C) defers it to a later
apply. Its `${...}` values unknown at plan time are then resolved by expanding its resource again
against the outputs its upstreams just recorded (once per resource).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from jobrunner.errors import JobrunnerError
from jobrunner.providers.base import SUCCEEDED
from jobrunner.reconcile.context import ApplyContext
from jobrunner.reconcile.outputs import resource_of
from jobrunner.reconcile.report import Unfinished
from jobrunner.reconcile.stopcontrol import Stopped
from jobrunner.resources import DesiredJob


class Upstreams:
    def __init__(self, ctx: ApplyContext, resources: list[str], expand: Callable[[], list[DesiredJob]]) -> None:
        self.ctx = ctx
        self.expand = expand
        self._done: dict[str, asyncio.Event] = {res: asyncio.Event() for res in resources}
        # resource -> how the first of its addresses that did not succeed ended
        self._failed: dict[str, Unfinished] = {}
        self._resolved: dict[str, asyncio.Task[dict[str, DesiredJob]]] = {}

    def finished(self, res: str, results: list[Unfinished | None]) -> None:
        """All of the resource's addresses are done; `results`: None for each that succeeded."""
        bad = [r for r in results if r is not None]
        if bad:
            self._failed[res] = bad[0]
        self._done[res].set()

    async def wait(self, job: DesiredJob) -> str | None:
        """None when every upstream resource succeeded; else why this job must be skipped.

        Raises Stopped when an upstream is merely still running (--no-wait, --timeout, Ctrl-C):
        the job is deferred to a later apply, not failed.
        """
        for dep in job.depends_on:
            event = self._done.get(dep)
            if event is not None:
                await self.ctx.stop.guard(event.wait())
                why = self._failed.get(dep)
                if why is not None and why.pending:
                    raise Stopped(f"upstream {dep} is still running")
                if why is not None:
                    return f"upstream {dep} did not succeed ({why.reason})"
            else:
                # Not part of this run (e.g. --target): its recorded state must show success.
                states = [s for a, s in self.ctx.doc.addresses.items() if resource_of(a) == dep]
                if dep in self.ctx.resources and (not states or any(s.status != SUCCEEDED for s in states)):
                    return f"upstream {dep} has not succeeded"
        return None

    async def resolve(self, job: DesiredJob) -> DesiredJob:
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
